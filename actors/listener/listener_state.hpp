// What one listener shares with its connections: its settings, its live connection count
// and the node context (counters).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "actors/broker/context.hpp"
#include "actors/config/config.hpp"

namespace tern::actors::listener {

struct listener_state {
  listener_state(config::listener_config c, broker::context_ptr x)
      : cfg(std::move(c)), id(cfg.kind + "." + cfg.name), ctx(std::move(x)) {}

  const config::listener_config cfg;
  const std::string id;  ///< "tcp.default"
  const broker::context_ptr ctx;
  /// Open sockets of this listener (decremented when a connection's socket closes).
  std::atomic<std::uint32_t> active{0};

  /// Whether a "limit hit" line may be logged now: at most one per second per listener, so
  /// a flood cannot flood the log. `suppressed` returns how many were skipped since.
  bool may_log(std::uint64_t& suppressed) {
    std::lock_guard lock{log_mtx_};
    auto now = std::chrono::steady_clock::now();
    if (now - last_log_ < std::chrono::seconds(1)) {
      ++suppressed_;
      return false;
    }
    last_log_ = now;
    suppressed = suppressed_;
    suppressed_ = 0;
    return true;
  }

 private:
  std::mutex log_mtx_;
  std::chrono::steady_clock::time_point last_log_{};
  std::uint64_t suppressed_ = 0;
};

}  // namespace tern::actors::listener
