// Retained messages of this node: topic -> last retained message. Thread-safe.
#pragma once

#include <cstddef>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "actors/message.hpp"

namespace tern::actors::router {

class retain_store {
 public:
  /// Stores `m` as the retained message of its topic; an empty payload deletes it
  /// [MQTT-3.3.1-10], [MQTT-3.3.1-11].
  void put(const message_ptr& m);

  /// Retained messages whose topic matches `filter`, in topic order; expired ones are left out
  /// [MQTT-3.3.2-5].
  std::vector<message_ptr> match(std::string_view filter) const;

  std::size_t size() const;

 private:
  mutable std::mutex mtx_;
  std::map<std::string, message_ptr, std::less<>> by_topic_;
};

}  // namespace tern::actors::router
