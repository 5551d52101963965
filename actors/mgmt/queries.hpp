// Read-only questions the management API asks the session manager and session actors.
//
// Heavy (pulls in caf/all.hpp through types.hpp): include it only from actor implementation
// files. Answers are snapshots; nothing here changes a session.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "actors/broker/types.hpp"

namespace tern::actors::mgmt {

/// session manager: (sessions_atom) -> std::vector<session_summary>
using sessions_atom = caf::atom_constant<caf::atom("sessions")>;
/// session actor: (sinfo_atom) -> session_details
using sinfo_atom = caf::atom_constant<caf::atom("sinfo")>;

struct session_summary {
  std::string client_id;
  caf::actor session;
  bool is_connected = false;
  std::int64_t expiry_ms = 0;  ///< lifetime after disconnect
};

struct session_details {
  std::string client_id;
  bool is_connected = false;
  std::size_t inflight = 0;
  std::size_t max_inflight = 0;
  std::size_t queued = 0;
  std::size_t awaiting_rel = 0;
  std::int64_t expiry_ms = 0;
  std::vector<std::pair<std::string, std::uint8_t>> subscriptions;  ///< filter, max QoS
};

}  // namespace tern::actors::mgmt

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<tern::actors::mgmt::session_summary>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tern::actors::mgmt::session_details)
