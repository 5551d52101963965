// Bridge forwarding rules: prefix mapping and rule matching.
#include "actors/bridge/rules.hpp"

#include <algorithm>

#include "proto/mqtt/topic.hpp"

namespace tern::actors::bridge {

namespace {

direction direction_from(const std::string& s) {
  if (s == "in") {
    return direction::in;
  }
  if (s == "both") {
    return direction::both;
  }
  return direction::out;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

/// The rule of `dir` side whose filter (with `prefix_of`) matches `topic`.
template <class Prefix, class Wanted>
std::optional<mapped> map(const std::vector<rule>& rules, std::string_view topic,
                          proto::mqtt::qos q, Wanted wanted, Prefix from_to) {
  if (!proto::mqtt::is_valid_topic_name(topic)) {
    return std::nullopt;
  }
  for (const auto& r : rules) {
    if (!wanted(r)) {
      continue;
    }
    auto [from, to] = from_to(r);
    if (!starts_with(topic, from)) {
      continue;
    }
    auto filter = std::string(from) + r.filter;
    if (!proto::mqtt::is_valid_topic_filter(filter) || !proto::mqtt::topic_matches(filter, topic)) {
      continue;
    }
    auto name = replace_prefix(topic, from, to);
    if (!proto::mqtt::is_valid_topic_name(name)) {
      continue;
    }
    return mapped{std::move(name), std::min(q, r.q)};
  }
  return std::nullopt;
}

}  // namespace

std::vector<rule> rules_from(const config::bridge_config& c) {
  std::vector<rule> out;
  for (const auto& t : c.topics) {
    out.push_back(rule{t.filter, direction_from(t.direction), static_cast<proto::mqtt::qos>(t.qos),
                       t.local_prefix, t.remote_prefix});
  }
  return out;
}

bool runs_on(const config::bridge_config& c, const std::string& node_name) {
  return c.node.empty() || c.node == "*" || c.node == node_name;
}

std::string replace_prefix(std::string_view topic, std::string_view from, std::string_view to) {
  std::string out(to);
  out.append(topic.substr(std::min(from.size(), topic.size())));
  return out;
}

std::optional<mapped> map_out(const std::vector<rule>& rules, std::string_view topic,
                              proto::mqtt::qos q) {
  return map(
      rules, topic, q, [](const rule& r) { return r.is_out(); },
      [](const rule& r) {
        return std::pair<std::string_view, std::string_view>{r.local_prefix, r.remote_prefix};
      });
}

std::optional<mapped> map_in(const std::vector<rule>& rules, std::string_view topic,
                             proto::mqtt::qos q) {
  return map(
      rules, topic, q, [](const rule& r) { return r.is_in(); },
      [](const rule& r) {
        return std::pair<std::string_view, std::string_view>{r.remote_prefix, r.local_prefix};
      });
}

}  // namespace tern::actors::bridge
