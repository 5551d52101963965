// The session actor: one per client id; owns the client's subscriptions and its `session`
// state, delivers messages to whichever connection is attached, and outlives disconnects
// until the session manager expires it.
#pragma once

#include <optional>
#include <string>

#include <caf/fwd.hpp>

#include "actors/broker/context.hpp"
#include "actors/store/store.hpp"

namespace tern::actors::session {

/// Spawns a session actor for `client_id`, monitored by `parent` (the session manager);
/// `restored` brings back a session saved at the last shutdown (it starts offline).
/// On an exit message (node shutdown) a session with a non-zero expiry saves itself to the
/// store before it quits.
caf::actor spawn_session(caf::local_actor* parent, const broker::context_ptr& ctx,
                         const std::string& client_id,
                         std::optional<store::saved_session> restored = std::nullopt);

}  // namespace tern::actors::session
