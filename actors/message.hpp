// The broker's immutable application message: built once per PUBLISH, shared by every
// subscriber that receives it (payload never copied per subscriber).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "proto/mqtt/packet.hpp"

namespace tern::actors {

struct message {
  std::string topic;
  std::string payload;
  proto::mqtt::qos q = proto::mqtt::qos::at_most_once;
  bool retain = false;
  std::string from;  ///< client id of the publisher ("" for the broker itself)
  std::chrono::steady_clock::time_point received_at{};
  proto::mqtt::properties props;  ///< v5 properties forwarded to subscribers
  /// Actor id of the publisher's session (0: none); subscriptions with No Local skip it.
  std::uint64_t from_session = 0;
  /// Published to `$local/...`: for this node's subscribers only, never forwarded.
  bool is_local = false;
  /// Published on this node by bridge number `from_bridge` (0: not by a bridge); that bridge
  /// never sends it back out (loop prevention).
  std::uint32_t from_bridge = 0;
  /// Cluster: the node the message was published on (a hash of its name) and its number
  /// there, the same in every copy; a session moving between nodes drops the second copy
  /// of a message that reaches it both ways. Stamped by broker::dispatch before the message
  /// is shared with anyone (hence mutable); 0 outside a cluster.
  mutable std::uint64_t origin = 0;
  mutable std::uint64_t origin_seq = 0;

  /// When the Message Expiry Interval has passed; max() when the message never expires.
  std::chrono::steady_clock::time_point expires_at() const {
    if (!props.message_expiry_interval) {
      return std::chrono::steady_clock::time_point::max();
    }
    return received_at + std::chrono::seconds(*props.message_expiry_interval);
  }
  /// [MQTT-3.3.2-5] an expired message is not delivered to subscribers that have not yet
  /// started receiving it.
  bool is_expired(std::chrono::steady_clock::time_point now) const {
    return props.message_expiry_interval && now >= expires_at();
  }
};

using message_ptr = std::shared_ptr<const message>;

}  // namespace tern::actors
