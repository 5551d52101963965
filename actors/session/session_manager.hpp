// The session manager: the node's client id -> session registry (emqttd's sm). Creates,
// resumes, takes over and expires sessions; the only actor that decides a session's life.
#pragma once

#include <caf/fwd.hpp>

#include "actors/broker/context.hpp"

namespace tern::actors::session {

/// Spawns the session manager. Protocol (all from connection actors):
/// - (open_atom, open_request) -> open_reply: attach the connection to the client id's
///   session, creating it, resuming it, or replacing it when clean_start is set. The
///   session writes CONNACK before it resends anything.
/// - (detach_atom, client_id, conn): the connection ended; a session with expiry 0 ends now,
///   others wait for reconnect until their expiry interval passes.
/// - (count_atom) -> size_t: number of sessions.
caf::actor spawn_session_manager(caf::actor_system& sys, const broker::context_ptr& ctx);

}  // namespace tern::actors::session
