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
};

using message_ptr = std::shared_ptr<const message>;

}  // namespace tern::actors
