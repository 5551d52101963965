// Live state and counters of one bridge, written by its actor, read by metrics and the API.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace tern::actors::bridge {

struct bridge_stats {
  std::string name;
  std::string address;
  /// Working on this node now (see the bridge's `node` key).
  std::atomic<bool> runs_here{false};
  std::atomic<bool> connected{false};
  /// Its local subscriptions are in the router (the node opens its listeners only then: a
  /// message published right after a start must not miss the bridge).
  std::atomic<bool> routed{false};
  std::atomic<std::uint64_t> forwarded_out{0};  ///< messages acknowledged by the remote
  std::atomic<std::uint64_t> forwarded_in{0};   ///< remote messages published here
  std::atomic<std::uint64_t> dropped{0};        ///< queue overflow
  std::atomic<std::uint64_t> connects{0};       ///< accepted CONNECTs
  std::atomic<std::uint64_t> refusals{0};       ///< refused CONNECTs
  std::atomic<std::uint64_t> queued{0};         ///< waiting to be sent
  std::atomic<std::uint64_t> inflight{0};       ///< sent, not yet acknowledged
  std::atomic<std::uint32_t> last_refusal{0};   ///< the last refusal's CONNACK code
};

}  // namespace tern::actors::bridge
