// Connected clients of this node (emqttd's mqtt_client table): client id -> connection info.
//
// Written by connection actors (one call when CONNECT succeeds, one when the socket closes),
// read by the management API and $SYS. Thread-safe; never on the per-message path.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>

#include "actors/listener/peer_address.hpp"

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
    auto id = std::move(c.client_id);
    by_id_[std::move(id)] = entry::from(std::move(c));
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
    return it->second.to_info(it->first);
  }
  /// Every registered client, ordered by client id.
  std::vector<client_info> snapshot() const {
    std::lock_guard lock{mtx_};
    std::vector<client_info> out;
    out.reserve(by_id_.size());
    for (auto& kv : by_id_) {
      out.push_back(kv.second.to_info(kv.first));
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
  /// client_info without the client id (the map's key) and with the peer in binary form:
  /// one entry per connected client, so it is kept small.
  struct entry {
    static entry from(client_info&& c) {
      entry e;
      e.username = std::move(c.username);
      if (auto p = listener::peer_address::parse(c.peer)) {
        e.peer = *p;
      } else if (!c.peer.empty()) {
        e.peer_text = std::make_unique<std::string>(std::move(c.peer));
      }
      e.proto_level = c.proto_level;
      e.clean_start = c.clean_start;
      e.keepalive = c.keepalive;
      e.connected_at_ms = c.connected_at_ms;
      e.conn_id = c.conn_id;
      e.conn = std::move(c.conn);
      return e;
    }
    client_info to_info(const std::string& client_id) const {
      client_info c;
      c.client_id = client_id;
      c.username = username;
      c.peer = peer_text ? *peer_text : peer.to_string();
      c.proto_level = proto_level;
      c.keepalive = keepalive;
      c.clean_start = clean_start;
      c.connected_at_ms = connected_at_ms;
      c.conn_id = conn_id;
      c.conn = conn;
      return c;
    }

    std::string username;
    listener::peer_address peer;
    std::uint8_t proto_level = 4;
    bool clean_start = true;
    std::uint16_t keepalive = 0;
    std::unique_ptr<std::string> peer_text;  // only a peer that is not "address:port"
    std::int64_t connected_at_ms = 0;
    std::uint64_t conn_id = 0;
    caf::actor conn;
  };

  mutable std::mutex mtx_;
  std::map<std::string, entry> by_id_;
  std::size_t max_ = 0;
};

}  // namespace tern::actors::mgmt
