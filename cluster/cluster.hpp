// The cluster layer of a node: membership over CAF's middleman, route replication and
// forwarding of publishes to other nodes. One `cluster` actor per node does all three, so
// every message between two nodes travels on one ordered channel (one BASP connection).
//
// Heavy CAF includes stay in cluster.cpp; this header is cheap.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <caf/fwd.hpp>

#include "actors/broker/context.hpp"

namespace tern::cluster {

class route_view;

/// Adds what clustering needs to a CAF config before the actor system is created: the
/// middleman, the wire message type and the heartbeat settings. No-op when clustering is off.
void configure(caf::actor_system_config& cfg, const actors::config::config& c);

class node_cluster {
 public:
  node_cluster();
  ~node_cluster();
  node_cluster(const node_cluster&) = delete;
  node_cluster& operator=(const node_cluster&) = delete;

  /// Publishes the cluster actor on cluster.listen, sets the context's cluster hooks and
  /// starts joining the seeds (in the background: a node whose seeds are all down starts
  /// alone and keeps trying). Call before the node's other actors start. Returns an error
  /// message (no cookie, port in use) and leaves nothing running when it fails.
  std::optional<std::string> start(caf::actor_system& sys, const actors::broker::context_ptr& ctx);

  /// Tells the peers this node leaves (they drop its routes and do not reconnect), then stops
  /// the cluster actor. Idempotent.
  void stop();

  std::shared_ptr<route_view> routes() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace tern::cluster
