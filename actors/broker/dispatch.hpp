// The publish path: store a retained message, find the local subscribers of a topic and
// hand the message to each one's session, one copy per session.
#pragma once

#include <cstddef>

#include "actors/broker/context.hpp"
#include "actors/message.hpp"

namespace tern::actors::broker {

/// Routes `m` to every local session with a matching subscription. A session with several
/// matching subscriptions gets one copy at the highest granted QoS carrying every matching
/// subscription identifier (MQTT 5 3.3.4; allowed by 3.1.1). Returns the number of sessions
/// the message went to. Callable from any thread. A message published on this node is then
/// handed to the cluster (one copy per remote node with a matching route); one that arrived
/// from another node (`from_cluster`) is delivered locally only, never forwarded again.
std::size_t dispatch(context& ctx, const message_ptr& m, bool from_cluster = false);

}  // namespace tern::actors::broker
