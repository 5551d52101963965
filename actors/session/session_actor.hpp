// The session actor: one per client id; owns the client's subscriptions and its `session`
// state, delivers messages to whichever connection is attached, and outlives disconnects
// until the session manager expires it.
#pragma once

#include <string>

#include <caf/fwd.hpp>

#include "actors/broker/context.hpp"

namespace tern::actors::session {

/// Spawns a session actor for `client_id`, monitored by `parent` (the session manager).
caf::actor spawn_session(caf::local_actor* parent, const broker::context_ptr& ctx,
                         const std::string& client_id);

}  // namespace tern::actors::session
