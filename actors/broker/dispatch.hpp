// The publish path: store a retained message, find the local subscribers of a topic and
// hand the message to each one's session, one copy per session.
#pragma once

#include <cstddef>

#include "actors/broker/context.hpp"
#include "actors/message.hpp"
#include "actors/session/session.hpp"

namespace caf {
class actor;
}

namespace tern::actors::broker {

/// Routes `m` to every local session with a matching subscription. A session with several
/// matching subscriptions gets one copy at the highest granted QoS carrying every matching
/// subscription identifier (MQTT 5 3.3.4; allowed by 3.1.1). Returns the number of sessions
/// the message went to. Callable from any thread. A message published on this node is then
/// handed to the cluster (one copy per remote node with a matching route); one that arrived
/// from another node (`from_cluster`) is delivered locally only, never forwarded again.
std::size_t dispatch(context& ctx, const message_ptr& m, bool from_cluster = false);

/// Hands `d`, which came through shared subscription `*d.share` to the session `from`, to
/// another member of that group (chosen by the configured strategy), because `from` left the
/// group before the message was acknowledged. Returns false when no other member exists (the
/// message is then lost, as for a group without subscribers).
bool redispatch_shared(context& ctx, const caf::actor& from, session::delivery d);

}  // namespace tern::actors::broker
