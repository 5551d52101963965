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
/// `restored` brings back a session read from the store (`from_disk`) or handed over by
/// another node (it starts offline). A session with a non-zero expiry writes its changes
/// ahead to a durable store (docs/durability.md); with durability "none" it saves itself
/// on an exit message (node shutdown) before it quits.
caf::actor spawn_session(caf::local_actor* parent, const broker::context_ptr& ctx,
                         const std::string& client_id,
                         std::optional<store::saved_session> restored = std::nullopt,
                         bool from_disk = false);

}  // namespace tern::actors::session
