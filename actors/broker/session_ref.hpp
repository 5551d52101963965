// What a route entry holds for a local subscriber: its session actor, and the session's
// back-pressure counter (so the publish path finds both with one lookup).
#pragma once

#include <caf/actor.hpp>

#include "actors/session/backlog.hpp"

namespace tern::actors::broker {

struct session_ref {
  session_ref() = default;
  session_ref(caf::actor a, flow::backlog_ptr b = {})  // NOLINT: implicit from an actor
      : actor(std::move(a)), backlog(std::move(b)) {}

  caf::actor actor;
  flow::backlog_ptr backlog;  ///< null only for a session that has not subscribed

  caf::actor_id id() const { return actor.id(); }
  /// A session is one subscriber whatever backlog pointer a lookup key carries.
  friend bool operator==(const session_ref& a, const session_ref& b) { return a.actor == b.actor; }
  friend bool operator!=(const session_ref& a, const session_ref& b) { return !(a == b); }
};

}  // namespace tern::actors::broker
