// Outbound MQTT 5 topic aliases of one connection: which topic the broker has bound to which
// alias. Pure; one instance per attached connection (aliases never outlive it).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tern::actors::session {

class topic_aliases {
 public:
  /// `max`: the client's Topic Alias Maximum (0: the client accepts no aliases).
  explicit topic_aliases(std::uint16_t max) : max_(max) {}

  struct use {
    std::uint16_t alias = 0;  ///< 0: send the topic without an alias
    bool send_topic = true;   ///< false: the alias is known to the client, send an empty topic
  };

  /// The alias for a PUBLISH on `topic`. The first `max` distinct topics get aliases 1..max,
  /// bound for the connection's lifetime [MQTT-3.3.2-12]; later topics are sent in full.
  use for_topic(std::string_view topic);

  /// Undoes the binding of `topic` made by the last for_topic() (its PUBLISH was not sent, so
  /// the client never learnt it); the alias becomes free again.
  void forget(std::string_view topic);

 private:
  std::uint16_t max_;
  std::uint16_t next_ = 1;
  std::vector<std::uint16_t> free_;
  std::unordered_map<std::string, std::uint16_t> bound_;
};

}  // namespace tern::actors::session
