// Everything a node's actors share: configuration, the route and retain tables that the
// publish path reads directly, counters, and the handles of the node's singleton actors.
//
// Created once by the node before any actor starts, destroyed after all have stopped;
// actors hold it by shared_ptr. No other process-wide state exists.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/actor.hpp>

#include "actors/bridge/stats.hpp"
#include "actors/broker/session_ref.hpp"
#include "actors/config/config.hpp"
#include "actors/connection/enhanced_auth.hpp"
#include "actors/mgmt/client_registry.hpp"
#include "actors/router/retain_store.hpp"
#include "actors/router/route_table.hpp"
#include "actors/session/backlog.hpp"
#include "actors/store/store.hpp"

namespace tern::actors::access {
class engine;
}
namespace tern::actors::hooks {
class registry;
}

namespace tern::actors::broker {

/// Node-wide counters (read by $SYS, metrics and the HTTP API).
struct counters {
  std::atomic<std::uint64_t> connections{0};       ///< currently connected clients
  std::atomic<std::uint64_t> connections_total{0};  ///< accepted sockets since start
  std::atomic<std::uint64_t> sessions{0};           ///< live sessions (online and offline)
  std::atomic<std::uint64_t> messages_received{0};  ///< PUBLISH from clients
  std::atomic<std::uint64_t> messages_sent{0};      ///< PUBLISH to clients
  std::atomic<std::uint64_t> messages_dropped{0};   ///< queue overflow, no subscriber is not a drop
  std::atomic<std::uint64_t> protocol_errors{0};
  std::atomic<std::uint64_t> auth_failures{0};  ///< refused CONNECTs (credentials, bans)
  std::atomic<std::uint64_t> acl_denied{0};     ///< publishes and subscriptions denied by ACL
  // Listener protection: how often each limit bit (each also logs a line).
  std::atomic<std::uint64_t> refused_max_connections{0};  ///< sockets closed at accept
  std::atomic<std::uint64_t> refused_conn_rate{0};        ///< over max_conn_rate, closed at accept
  std::atomic<std::uint64_t> bytes_in_limited{0};    ///< read pauses for max_bytes_in_rate
  std::atomic<std::uint64_t> publish_in_limited{0};  ///< read pauses for max_publish_rate
  std::atomic<std::uint64_t> connect_timeouts{0};    ///< no CONNECT within connect_timeout
  std::atomic<std::uint64_t> send_buffer_overflows{0};  ///< clients closed for not reading
  std::atomic<std::uint64_t> stalled_subscribers{0};  ///< closed: took nothing for max_pause
  std::atomic<std::uint64_t> flow_pauses{0};  ///< publishers paused by flow control
  std::atomic<std::uint64_t> handshake_failures{0};     ///< TLS / WebSocket / PROXY failures

  // Traffic, for metrics and $SYS (counted by conn_io).
  std::atomic<std::uint64_t> bytes_received{0};
  std::atomic<std::uint64_t> bytes_sent{0};
  std::array<std::atomic<std::uint64_t>, 16> packets_received{};  ///< by MQTT packet type
  std::array<std::atomic<std::uint64_t>, 16> packets_sent{};
  std::array<std::atomic<std::uint64_t>, 3> publish_received{};  ///< PUBLISH packets by QoS
  std::array<std::atomic<std::uint64_t>, 3> publish_sent{};
  std::atomic<std::uint64_t> forwarded{0};      ///< messages forwarded to other nodes
  std::atomic<std::uint64_t> cluster_members{1};  ///< running nodes of the cluster, self included

  /// One decoded incoming packet: type (1..15) and, for PUBLISH, its QoS.
  void count_in(unsigned type, unsigned q) {
    packets_received[type & 15].fetch_add(1, std::memory_order_relaxed);
    if (type == 3) {
      publish_received[q % 3].fetch_add(1, std::memory_order_relaxed);
    }
  }
  /// Whole encoded packets queued for a client: counts bytes and each packet's type by
  /// walking the fixed headers.
  void count_out(const std::string& bytes) {
    bytes_sent.fetch_add(bytes.size(), std::memory_order_relaxed);
    std::size_t pos = 0;
    while (pos < bytes.size()) {
      auto b0 = static_cast<unsigned char>(bytes[pos]);
      std::size_t len = 0;
      std::size_t i = pos + 1;
      for (unsigned shift = 0; i < bytes.size() && shift <= 21; shift += 7) {
        auto b = static_cast<unsigned char>(bytes[i++]);
        len |= static_cast<std::size_t>(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
          break;
        }
      }
      packets_sent[b0 >> 4].fetch_add(1, std::memory_order_relaxed);
      if ((b0 >> 4) == 3) {
        publish_sent[((b0 >> 1) & 3) % 3].fetch_add(1, std::memory_order_relaxed);
      }
      pos = i + len;
    }
  }
};

struct context {
  explicit context(config::config c) : cfg(std::move(c)) {}

  const config::config cfg;
  router::route_table<session_ref> routes;
  router::retain_store retained;
  counters stats;
  /// Disk store; set before any actor starts, null only in tests without persistence.
  std::unique_ptr<store::store> db;
  std::atomic<std::uint64_t> next_conn_id{1};
  /// Cluster: this node's message::origin and the last origin_seq it gave.
  std::uint64_t origin = 0;
  std::atomic<std::uint64_t> origin_seq{0};
  /// Hook registry and access engine (authentication, ACL); set before any actor starts.
  std::shared_ptr<hooks::registry> hooks;
  std::shared_ptr<access::engine> access;

  /// Cluster hooks, set before any actor starts when clustering is on (empty otherwise).
  /// forward_remote: a message published on this node, after local delivery, with the
  /// shared groups a local member got it through (no other node serves those).
  /// route_changed: a subscription key (filter or shared group) gained its first (true) or
  /// lost its last (false) subscriber.
  /// A `publisher` given is paused while a node the message goes to is behind (flow control).
  std::function<void(const message_ptr&, const std::vector<router::share_key>& served_here,
                     const std::shared_ptr<flow::gate>& publisher)>
      forward_remote;
  std::function<void(const std::string& filter, bool added)> route_changed;
  /// The routes replicated from the other nodes: filter -> nodes with a subscriber (sorted).
  std::function<std::map<std::string, std::vector<std::string>>()> remote_routes;
  /// The cluster actor (claims client ids cluster-wide before a session opens); null alone.
  caf::actor cluster;
  /// MQTT 5 enhanced authentication methods (AUTH); set before any listener starts.
  connection::auth_methods auth_methods;
  /// Connected clients, for the management API and $SYS.
  mgmt::client_registry clients;
  /// One entry per configured bridge (config order); set before any actor starts.
  std::vector<std::shared_ptr<bridge::bridge_stats>> bridges;
  const std::chrono::system_clock::time_point started_at = std::chrono::system_clock::now();

  /// The node's singleton actors. Their supervisor may restart them, so readers take a
  /// copy of the current handle (a short uncontended lock, off the per-message path).
  caf::actor router() const {
    std::lock_guard lock{actors_mtx_};
    return router_;
  }
  caf::actor sessions() const {
    std::lock_guard lock{actors_mtx_};
    return sessions_;
  }
  void set_router(caf::actor a) {
    std::lock_guard lock{actors_mtx_};
    router_ = std::move(a);
  }
  void set_sessions(caf::actor a) {
    std::lock_guard lock{actors_mtx_};
    sessions_ = std::move(a);
  }

 private:
  mutable std::mutex actors_mtx_;
  caf::actor router_;
  caf::actor sessions_;
};

using context_ptr = std::shared_ptr<context>;

}  // namespace tern::actors::broker
