// MQTT topic rules: UTF-8 checks, topic name/filter validation, wildcard matching, $share parsing.
#include "proto/mqtt/topic.hpp"

#include <cstdint>
#include <cstring>

namespace tern::proto::mqtt {

namespace {

constexpr std::string_view share_prefix = "$share/";
constexpr std::string_view queue_prefix = "$queue/";
constexpr std::string_view local_prefix = "$local/";
constexpr std::string_view queue_group = "$queue";

constexpr std::uint64_t ones = 0x0101010101010101ULL;
constexpr std::uint64_t highs = 0x8080808080808080ULL;

// True when all 8 bytes at `p` are ASCII and none is 0x00 (the classic "has zero byte" trick;
// exact once we know no byte has its high bit set).
bool is_plain_ascii_word(const char* p) {
  std::uint64_t v = 0;
  std::memcpy(&v, p, sizeof v);
  return ((v & highs) == 0) && (((v - ones) & ~v & highs) == 0);
}

bool is_continuation(unsigned char c) { return (c & 0xC0U) == 0x80U; }

// Length of the well-formed multi-byte sequence at s[i] (lead byte >= 0x80), or 0 if it is
// ill-formed. Ranges from the Unicode Standard, Table 3-7 (RFC 3629 section 4): they exclude
// overlong forms (C0, C1, E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code points above
// U+10FFFF (F4 90.., F5..FF).
std::size_t multibyte_length(std::string_view s, std::size_t i) {
  const auto lead = static_cast<unsigned char>(s[i]);
  std::size_t len = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    len = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    len = 3;
    if (lead == 0xE0) {
      lo = 0xA0;
    } else if (lead == 0xED) {
      hi = 0x9F;  // [MQTT-1.5.4-1] no UTF-16 surrogates U+D800..U+DFFF
    }
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    len = 4;
    if (lead == 0xF0) {
      lo = 0x90;
    } else if (lead == 0xF4) {
      hi = 0x8F;
    }
  } else {
    return 0;  // stray continuation byte, C0/C1 overlong lead, or F5..FF
  }
  if (s.size() - i < len) {
    return 0;  // truncated sequence
  }
  const auto second = static_cast<unsigned char>(s[i + 1]);
  if (second < lo || second > hi) {
    return 0;
  }
  for (std::size_t k = 2; k < len; ++k) {
    if (!is_continuation(static_cast<unsigned char>(s[i + k]))) {
      return 0;
    }
  }
  return len;
}

// The level of `s` that starts at `begin`, and where the next one starts (npos after the last).
struct level_cursor {
  std::string_view level;
  std::size_t next;
};

level_cursor level_at(std::string_view s, std::size_t begin) {
  const std::size_t slash = s.find('/', begin);
  if (slash == std::string_view::npos) {
    return {s.substr(begin), std::string_view::npos};
  }
  return {s.substr(begin, slash - begin), slash + 1};
}

bool has_valid_length(std::string_view s) { return !s.empty() && s.size() <= max_topic_length; }

}  // namespace

bool is_valid_utf8(std::string_view s) {
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    // Fast path: topics and most strings are plain ASCII.
    while (n - i >= 8 && is_plain_ascii_word(s.data() + i)) {
      i += 8;
    }
    if (i >= n) {
      break;
    }
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == 0) {
      return false;  // [MQTT-1.5.4-2] no U+0000
    }
    if (c < 0x80) {
      ++i;
      continue;
    }
    const std::size_t len = multibyte_length(s, i);
    if (len == 0) {
      return false;
    }
    i += len;
  }
  return true;
}

bool is_valid_topic_name(std::string_view name) {
  // [MQTT-4.7.3-1] at least one character; [MQTT-4.7.3-3] at most 65535 bytes.
  if (!has_valid_length(name)) {
    return false;
  }
  // [MQTT-4.7.1-1] wildcards are only for filters; [MQTT-4.7.3-2] no U+0000.
  return name.find_first_of("+#") == std::string_view::npos && is_valid_utf8(name);
}

bool is_valid_topic_filter(std::string_view filter, std::size_t max_levels) {
  if (!has_valid_length(filter) || !is_valid_utf8(filter)) {
    return false;
  }
  std::size_t levels = 0;
  std::size_t pos = 0;
  while (pos != std::string_view::npos) {
    const auto [level, next] = level_at(filter, pos);
    ++levels;
    if (max_levels != 0 && levels > max_levels) {
      return false;
    }
    if (level.size() > 1 && level.find_first_of("+#") != std::string_view::npos) {
      return false;  // [MQTT-4.7.1-2] [MQTT-4.7.1-3] a wildcard must occupy a whole level
    }
    if (level == "#" && next != std::string_view::npos) {
      return false;  // [MQTT-4.7.1-2] '#' must be the last level
    }
    pos = next;
  }
  return true;
}

bool has_wildcards(std::string_view filter) {
  return filter.find_first_of("+#") != std::string_view::npos;
}

bool topic_matches(std::string_view filter, std::string_view name) {
  // [MQTT-4.7.2-1] a filter starting with a wildcard does not match a '$' topic.
  if (!name.empty() && name.front() == '$' && !filter.empty() &&
      (filter.front() == '+' || filter.front() == '#')) {
    return false;
  }
  std::size_t filter_pos = 0;
  std::size_t name_pos = 0;
  bool is_name_done = false;
  while (true) {
    const auto [flevel, fnext] = level_at(filter, filter_pos);
    if (flevel == "#") {
      return true;  // '#' also matches the parent level: "sport/#" matches "sport"
    }
    if (is_name_done) {
      return false;
    }
    const auto [nlevel, nnext] = level_at(name, name_pos);
    if (flevel != "+" && flevel != nlevel) {
      return false;
    }
    if (fnext == std::string_view::npos) {
      return nnext == std::string_view::npos;
    }
    is_name_done = nnext == std::string_view::npos;
    filter_pos = fnext;
    name_pos = nnext;
  }
}

std::optional<parsed_filter> parse_filter(std::string_view filter) {
  if (filter.substr(0, share_prefix.size()) == share_prefix) {
    const std::string_view rest = filter.substr(share_prefix.size());
    const std::size_t slash = rest.find('/');
    if (slash == std::string_view::npos) {
      return std::nullopt;  // [MQTT-4.8.2-2] a '/' must follow the share name
    }
    const std::string_view group = rest.substr(0, slash);
    const std::string_view inner = rest.substr(slash + 1);
    // [MQTT-4.8.2-1] the share name is at least one character and has no '/', '+' or '#'.
    if (group.empty() || has_wildcards(group) || inner.empty()) {
      return std::nullopt;
    }
    return parsed_filter{std::string(group), std::string(inner)};
  }
  if (filter.substr(0, queue_prefix.size()) == queue_prefix) {
    const std::string_view inner = filter.substr(queue_prefix.size());
    if (inner.empty()) {
      return std::nullopt;  // like "$share/g/": nothing to subscribe to
    }
    return parsed_filter{std::string(queue_group), std::string(inner)};
  }
  return parsed_filter{std::nullopt, std::string(filter)};
}

std::optional<std::string_view> strip_local(std::string_view name) {
  // "$local/" alone names no topic; it stays an ordinary (unmatchable by wildcards) $-topic
  // rather than becoming the invalid empty topic.
  if (name.size() > local_prefix.size() && name.substr(0, local_prefix.size()) == local_prefix) {
    return name.substr(local_prefix.size());
  }
  return std::nullopt;
}

}  // namespace tern::proto::mqtt
