// Bridge forwarding rules: which topics cross a bridge, in which direction, under which name.
//
// Pure: topic strings in, topic strings out. Mosquitto's `topic pattern direction qos
// local_prefix remote_prefix`: a local topic local_prefix+X matching local_prefix+filter is
// remote_prefix+X on the remote broker, and the other way round.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actors/config/config.hpp"
#include "proto/mqtt/packet.hpp"

namespace tern::actors::bridge {

enum class direction { out, in, both };

struct rule {
  std::string filter;
  direction dir = direction::out;
  proto::mqtt::qos q = proto::mqtt::qos::at_least_once;
  std::string local_prefix;
  std::string remote_prefix;

  bool is_out() const { return dir != direction::in; }
  bool is_in() const { return dir != direction::out; }
  /// The filter as subscribed on this broker (out) and on the remote broker (in).
  std::string local_filter() const { return local_prefix + filter; }
  std::string remote_filter() const { return remote_prefix + filter; }
};

/// The rules of a bridge's configuration.
std::vector<rule> rules_from(const config::bridge_config& c);

/// A topic mapped across the bridge, with the QoS it crosses at.
struct mapped {
  std::string topic;
  proto::mqtt::qos q = proto::mqtt::qos::at_most_once;
};

/// The remote topic and QoS for local message `topic` published at `q`: the first `out` rule
/// whose local filter matches; nullopt when none does.
std::optional<mapped> map_out(const std::vector<rule>& rules, std::string_view topic,
                              proto::mqtt::qos q);

/// The local topic and QoS for remote message `topic` published at `q`: the first `in` rule
/// whose remote filter matches; nullopt when none does (or the mapped name is not a valid
/// topic name).
std::optional<mapped> map_in(const std::vector<rule>& rules, std::string_view topic,
                             proto::mqtt::qos q);

/// Whether bridge `c` may run on node `node_name`: when its `node` key names that node, is
/// empty (then on every node that has it configured), or is "*" (then on the live cluster
/// member with the lowest name, decided at run time).
bool runs_on(const config::bridge_config& c, const std::string& node_name);

/// Replaces prefix `from` of `topic` (which must start with it) with `to`.
std::string replace_prefix(std::string_view topic, std::string_view from, std::string_view to);

}  // namespace tern::actors::bridge
