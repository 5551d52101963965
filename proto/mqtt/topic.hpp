// MQTT topic names and filters: validation, matching, shared/queue subscription parsing.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace tern::proto::mqtt {

/// Largest topic length the wire allows (a UTF-8 string's 16-bit length).
inline constexpr std::size_t max_topic_length = 65535;

/// A topic name a client may PUBLISH to: 1..65535 bytes, valid UTF-8 without U+0000,
/// no '+' or '#'. [MQTT-4.7.3-1], [MQTT-4.7.3-2], [MQTT-4.7.3-3].
bool is_valid_topic_name(std::string_view name);

/// A topic filter a client may SUBSCRIBE to: 1..65535 bytes, valid UTF-8 without U+0000,
/// '+' only as a whole level, '#' only as the whole last level. [MQTT-4.7.1-2], [MQTT-4.7.1-3].
/// `max_levels` of 0 means no limit on the number of levels.
bool is_valid_topic_filter(std::string_view filter, std::size_t max_levels = 0);

/// True when `filter` contains '+' or '#'.
bool has_wildcards(std::string_view filter);

/// Whether topic `name` matches `filter`. Topics starting with '$' are not matched by a
/// filter starting with a wildcard [MQTT-4.7.2-1]. Both arguments must be valid.
bool topic_matches(std::string_view filter, std::string_view name);

/// A subscription filter split into its share group and real filter.
/// `$share/{group}/{filter}` gives group "{group}"; emqttd's `$queue/{filter}` is the group
/// "$queue". A plain filter has no group.
struct parsed_filter {
  std::optional<std::string> share_group;
  std::string filter;
};

/// Parses `$share/` and `$queue/` prefixes. Returns nullopt when a `$share/` filter is
/// malformed (empty or wildcard group name, no filter after the group) [MQTT-4.8.2-1],
/// [MQTT-4.8.2-2]. The inner filter is not validated here.
std::optional<parsed_filter> parse_filter(std::string_view filter);

/// Whether `name` is a `$local/` topic (delivered to this node's subscribers only) and, if so,
/// the topic without the prefix.
std::optional<std::string_view> strip_local(std::string_view name);

/// Whether `s` is valid MQTT UTF-8: well-formed UTF-8, no U+0000, no UTF-16 surrogates
/// [MQTT-1.5.4-1], [MQTT-1.5.4-2].
bool is_valid_utf8(std::string_view s);

}  // namespace tern::proto::mqtt
