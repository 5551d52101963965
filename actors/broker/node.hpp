// One Tern node: the actor system, the node's singleton actors, the I/O threads and the
// listeners, started in order and stopped in reverse order.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "actors/config/config.hpp"

namespace caf {
class actor_system;
}

namespace tern::actors::broker {

struct context;

class node {
 public:
  explicit node(config::config cfg);
  ~node();
  node(const node&) = delete;
  node& operator=(const node&) = delete;

  /// Starts actors, I/O threads and listeners. Returns an error message (e.g. a port that
  /// cannot be bound) and leaves nothing running when it fails.
  std::optional<std::string> start();

  /// Re-reads the ACL, password and client id files (SIGHUP, management API). Returns ""
  /// or the errors; on error the previous rules stay in force.
  std::string reload_access();

  /// Graceful stop: listeners stop accepting, connections close, actors exit. Idempotent.
  void stop();

  /// For the management layer, valid between start() and stop(): the node's shared state
  /// and its actor system.
  std::shared_ptr<context> shared_context() const;
  caf::actor_system& system() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace tern::actors::broker
