// Connected clients of this node (emqttd's mqtt_client table): client id -> connection info.
//
// Written by connection actors (one call when CONNECT succeeds, one when the socket closes),
// read by the management API and $SYS. Thread-safe; never on the per-message path.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>

namespace tern::actors::mgmt {

struct client_info {
  std::string client_id;
  std::string username;          ///< "" when the client sent none
  std::string peer;              ///< "address:port"
  std::uint8_t proto_level = 4;  ///< 3 (MQTT 3.1), 4 (3.1.1) or 5
  std::uint16_t keepalive = 0;   ///< seconds, as sent in CONNECT
  bool clean_start = true;
  std::int64_t connected_at_ms = 0;  ///< Unix time in milliseconds
  std::uint64_t conn_id = 0;         ///< the socket's id, unique on this node
  caf::actor conn;                   ///< the connection actor (kick goes here)
};

class client_registry {
 public:
  /// Registers (or replaces, on takeover) the connection of `c.client_id`.
  void add(client_info c) {
    std::lock_guard lock{mtx_};
    auto id = c.client_id;
    by_id_[id] = std::move(c);
    max_ = std::max(max_, by_id_.size());
  }
  /// Unregisters `client_id` if `conn_id` is still its connection (not a newer one).
  bool remove(const std::string& client_id, std::uint64_t conn_id) {
    std::lock_guard lock{mtx_};
    auto it = by_id_.find(client_id);
    if (it == by_id_.end() || it->second.conn_id != conn_id) {
      return false;
    }
    by_id_.erase(it);
    return true;
  }
  std::optional<client_info> find(const std::string& client_id) const {
    std::lock_guard lock{mtx_};
    auto it = by_id_.find(client_id);
    if (it == by_id_.end()) {
      return std::nullopt;
    }
    return it->second;
  }
  /// Every registered client, ordered by client id.
  std::vector<client_info> snapshot() const {
    std::lock_guard lock{mtx_};
    std::vector<client_info> out;
    out.reserve(by_id_.size());
    for (auto& kv : by_id_) {
      out.push_back(kv.second);
    }
    return out;
  }
  std::size_t size() const {
    std::lock_guard lock{mtx_};
    return by_id_.size();
  }
  /// Most clients registered at once since start.
  std::size_t max() const {
    std::lock_guard lock{mtx_};
    return max_;
  }

 private:
  mutable std::mutex mtx_;
  std::map<std::string, client_info> by_id_;
  std::size_t max_ = 0;
};

}  // namespace tern::actors::mgmt
