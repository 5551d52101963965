// The publish path: store a retained message, find the local subscribers of a topic and
// hand the message to each one's session, one copy per session.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "actors/broker/context.hpp"
#include "actors/message.hpp"
#include "actors/session/session.hpp"

namespace caf {
class actor;
}
namespace tern::actors::flow {
class gate;
}

namespace tern::actors::broker {

/// The sends of a publish held back until the store has its records (durable_publish::defer).
struct deferred_sends;

/// Write-ahead of a QoS 1/2 publish (store durability batch or sync): the publish path adds
/// a record for every persistent session the message reaches to `txn` (which may hold the
/// publisher's own records already), submits it before any session sees the message, and
/// the caller acknowledges the publish once `done` reports it written.
struct durable_publish {
  store::txn txn;
  /// Hold the sends back until the records are written (QoS 2 from a persistent session:
  /// no subscriber may see a message whose PUBLISH could still be routed again after a crash).
  bool defer = false;
  /// Set by dispatch: the txn was submitted (`done` will be called), else nothing waits.
  bool waits = false;
  /// Set by dispatch when defer and waits (the store's writer runs the sends).
  std::shared_ptr<deferred_sends> deferred;
  /// Set by dispatch: the store is failing and the message needs it; nothing was sent.
  bool refused = false;
};

/// Routes `m` to every local session with a matching subscription. A session with several
/// matching subscriptions gets one copy at the highest granted QoS carrying every matching
/// subscription identifier (MQTT 5 3.3.4; allowed by 3.1.1). Returns the number of sessions
/// the message went to. Callable from any thread. A message published on this node is then
/// handed to the cluster (one copy per remote node with a matching route); one that arrived
/// from another node (`from_cluster`) is delivered locally only, never forwarded again.
///
/// Back-pressure: when `publisher` is given and the message takes a session other than the
/// publisher's own over the high-water mark (config flow.high_watermark), the publisher is
/// paused until every such session is down to the low-water mark (or has ended).
///
/// Write-ahead: with `durable` (a QoS 1/2 publish from a client), see durable_publish; `done`
/// is then called on the store's writer thread.
std::size_t dispatch(context& ctx, const message_ptr& m, bool from_cluster = false,
                     const std::shared_ptr<flow::gate>& publisher = nullptr,
                     durable_publish* durable = nullptr, std::function<void(bool)> done = {});

/// Makes the sends of a deferred publish, once its records are written (`ok`) or dropped.
void run_deferred(context& ctx, deferred_sends& d, bool ok,
                  const std::shared_ptr<flow::gate>& publisher);

/// What a publish forwarded by another node is for on this node: the publishing node chose
/// it for its normal subscribers and/or to serve some shared groups (one member in the whole
/// cluster gets each message of a group).
struct forwarded_for {
  bool subscribers = true;          ///< the normal (non-shared) subscribers
  bool every_group = false;         ///< every matching group (a sender without the groups)
  std::vector<std::string> groups;  ///< else these groups ("$share/g/f", "$queue/f")
};

/// Delivers `m`, which came from another node, as `f` says (never forwarded again). A named
/// group that does not match the topic or has no member here any more gets nothing. `link`
/// (the sending node's forwarding, as a publisher) is paused when a session is over its mark.
std::size_t dispatch_forwarded(context& ctx, const message_ptr& m, const forwarded_for& f,
                               const std::shared_ptr<flow::gate>& link = nullptr);

/// Hands `d`, which came through shared subscription `*d.share` to the session `from`, to
/// another member of that group (chosen by the configured strategy), because `from` left the
/// group before the message was acknowledged. Returns false when no other member exists (the
/// message is then lost, as for a group without subscribers).
bool redispatch_shared(context& ctx, const caf::actor& from, session::delivery d);

}  // namespace tern::actors::broker
