// The node's management layer: the HTTP API server and the periodic $SYS publisher, on their
// own Asio threads so a slow API client never delays MQTT traffic.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "actors/broker/context.hpp"

namespace caf {
class actor_system;
}

namespace tern::actors::mgmt {

class service {
 public:
  service(caf::actor_system& sys, broker::context_ptr ctx);
  ~service();
  service(const service&) = delete;
  service& operator=(const service&) = delete;

  /// Starts the HTTP server (when [http] enabled) and the $SYS timer (when [sys] interval is
  /// not 0). Returns an error message and leaves nothing running when it fails.
  std::optional<std::string> start();
  /// Stops both and joins their threads. Idempotent.
  void stop();
  /// The HTTP port actually bound (0 when the API is disabled).
  std::uint16_t http_port() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Publishes one round of $SYS/brokers/<node>/... topics (version, sysdescr, uptime,
/// datetime, stats/*, metrics/*) and $SYS/brokers. Exposed for tests.
class stats_tracker;
void publish_sys_round(broker::context& ctx, stats_tracker& stats);

}  // namespace tern::actors::mgmt
