// Unit tests for proto/mqtt/topic: UTF-8, topic name/filter validation, matching, $share parsing.
#include "proto/mqtt/topic.hpp"

#include <catch2/catch.hpp>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace tern::proto::mqtt;
using namespace std::string_literals;

std::string bytes(std::initializer_list<unsigned> list) {
  std::string s;
  for (const unsigned b : list) {
    s.push_back(static_cast<char>(b));
  }
  return s;
}

// Reference UTF-8 check written from the bit patterns (not the ranges table the code uses):
// decode, then reject overlong forms, surrogates, code points above U+10FFFF and U+0000.
bool reference_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto lead = static_cast<unsigned char>(s[i]);
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if ((lead & 0x80U) == 0) {
      len = 1;
      cp = lead;
    } else if ((lead & 0xE0U) == 0xC0U) {
      len = 2;
      cp = lead & 0x1FU;
    } else if ((lead & 0xF0U) == 0xE0U) {
      len = 3;
      cp = lead & 0x0FU;
    } else if ((lead & 0xF8U) == 0xF0U) {
      len = 4;
      cp = lead & 0x07U;
    } else {
      return false;
    }
    if (s.size() - i < len) {
      return false;
    }
    for (std::size_t k = 1; k < len; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0U) != 0x80U) {
        return false;
      }
      cp = (cp << 6) | (c & 0x3FU);
    }
    static constexpr std::uint32_t min_for_len[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_len[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0) {
      return false;
    }
    i += len;
  }
  return true;
}

std::vector<std::string> split_levels(const std::string& s) {
  std::vector<std::string> out;
  std::size_t begin = 0;
  while (true) {
    const std::size_t slash = s.find('/', begin);
    out.push_back(s.substr(begin, slash == std::string::npos ? std::string::npos : slash - begin));
    if (slash == std::string::npos) {
      return out;
    }
    begin = slash + 1;
  }
}

// Reference matcher over split levels, recursive and obviously following the spec text.
bool reference_match_levels(const std::vector<std::string>& f, std::size_t fi,
                            const std::vector<std::string>& n, std::size_t ni) {
  if (fi == f.size()) {
    return ni == n.size();
  }
  if (f[fi] == "#") {
    return true;
  }
  if (ni == n.size()) {
    return false;
  }
  if (f[fi] != "+" && f[fi] != n[ni]) {
    return false;
  }
  return reference_match_levels(f, fi + 1, n, ni + 1);
}

bool reference_match(const std::string& filter, const std::string& name) {
  if (name[0] == '$' && (filter[0] == '+' || filter[0] == '#')) {
    return false;
  }
  return reference_match_levels(split_levels(filter), 0, split_levels(name), 0);
}

}  // namespace

TEST_CASE("utf8: well-formed strings are accepted", "[topic][utf8]") {
  CHECK(is_valid_utf8(""));
  CHECK(is_valid_utf8("sport/tennis/player1"));
  CHECK(is_valid_utf8(bytes({0xC2, 0x80})));              // U+0080, smallest 2-byte
  CHECK(is_valid_utf8(bytes({0xC3, 0xA9})));              // é
  CHECK(is_valid_utf8(bytes({0xDF, 0xBF})));              // U+07FF, largest 2-byte
  CHECK(is_valid_utf8(bytes({0xE0, 0xA0, 0x80})));        // U+0800, smallest 3-byte
  CHECK(is_valid_utf8(bytes({0xE2, 0x82, 0xAC})));        // €
  CHECK(is_valid_utf8(bytes({0xED, 0x9F, 0xBF})));        // U+D7FF, just below surrogates
  CHECK(is_valid_utf8(bytes({0xEE, 0x80, 0x80})));        // U+E000, just above surrogates
  CHECK(is_valid_utf8(bytes({0xEF, 0xBB, 0xBF})));        // U+FEFF BOM [MQTT-1.5.4-3]
  CHECK(is_valid_utf8(bytes({0xEF, 0xBF, 0xBF})));        // U+FFFF non-character, allowed
  CHECK(is_valid_utf8(bytes({0xF0, 0x90, 0x80, 0x80})));  // U+10000, smallest 4-byte
  CHECK(is_valid_utf8(bytes({0xF0, 0x9D, 0x84, 0x9E})));  // U+1D11E musical G clef
  CHECK(is_valid_utf8(bytes({0xF4, 0x8F, 0xBF, 0xBF})));  // U+10FFFF, largest code point
  CHECK(is_valid_utf8("\x01\x1F\x7F"));                   // control characters are allowed
  CHECK(is_valid_utf8("k\xC3\xBChl/\xE2\x82\xAC/\xF0\x9F\x98\x80/ok"));
}

TEST_CASE("utf8: U+0000 is rejected anywhere [MQTT-1.5.4-2]", "[topic][utf8]") {
  CHECK_FALSE(is_valid_utf8("\0"s));
  CHECK_FALSE(is_valid_utf8(bytes({0xC0, 0x80})));  // overlong NUL ("modified UTF-8")
  // Put the NUL at every offset, so both the 8-byte fast path and the tail see it.
  for (std::size_t len = 1; len <= 33; ++len) {
    for (std::size_t at = 0; at < len; ++at) {
      std::string s(len, 'a');
      s[at] = '\0';
      INFO("len " << len << " at " << at);
      CHECK_FALSE(is_valid_utf8(s));
    }
  }
}

TEST_CASE("utf8: overlong forms are rejected", "[topic][utf8]") {
  CHECK_FALSE(is_valid_utf8(bytes({0xC0, 0xAF})));                          // '/' in 2 bytes
  CHECK_FALSE(is_valid_utf8(bytes({0xC1, 0xBF})));                          // U+007F in 2 bytes
  CHECK_FALSE(is_valid_utf8(bytes({0xE0, 0x80, 0xAF})));                    // '/' in 3 bytes
  CHECK_FALSE(is_valid_utf8(bytes({0xE0, 0x9F, 0xBF})));                    // U+07FF in 3 bytes
  CHECK_FALSE(is_valid_utf8(bytes({0xF0, 0x80, 0x80, 0xAF})));              // '/' in 4 bytes
  CHECK_FALSE(is_valid_utf8(bytes({0xF0, 0x8F, 0xBF, 0xBF})));              // U+FFFF in 4 bytes
  CHECK_FALSE(is_valid_utf8(bytes({0xF8, 0x88, 0x80, 0x80, 0x80})));        // 5-byte form
  CHECK_FALSE(is_valid_utf8(bytes({0xFC, 0x84, 0x80, 0x80, 0x80, 0x80})));  // 6-byte form
}

TEST_CASE("utf8: surrogates and code points above U+10FFFF are rejected", "[topic][utf8]") {
  CHECK_FALSE(is_valid_utf8(bytes({0xED, 0xA0, 0x80})));  // U+D800 [MQTT-1.5.4-1]
  CHECK_FALSE(is_valid_utf8(bytes({0xED, 0xAD, 0xBF})));  // U+DB7F
  CHECK_FALSE(is_valid_utf8(bytes({0xED, 0xB0, 0x80})));  // U+DC00
  CHECK_FALSE(is_valid_utf8(bytes({0xED, 0xBF, 0xBF})));  // U+DFFF
  // A CESU-8 surrogate pair for U+1F600.
  CHECK_FALSE(is_valid_utf8(bytes({0xED, 0xA0, 0xBD, 0xED, 0xB8, 0x80})));
  CHECK_FALSE(is_valid_utf8(bytes({0xF4, 0x90, 0x80, 0x80})));  // U+110000
  CHECK_FALSE(is_valid_utf8(bytes({0xF5, 0x80, 0x80, 0x80})));
  CHECK_FALSE(is_valid_utf8(bytes({0xF7, 0xBF, 0xBF, 0xBF})));
  CHECK_FALSE(is_valid_utf8(bytes({0xFE})));
  CHECK_FALSE(is_valid_utf8(bytes({0xFF})));
}

TEST_CASE("utf8: truncated sequences and stray bytes are rejected", "[topic][utf8]") {
  CHECK_FALSE(is_valid_utf8(bytes({0x80})));  // lone continuation
  CHECK_FALSE(is_valid_utf8(bytes({0xBF})));
  CHECK_FALSE(is_valid_utf8(bytes({0xC3})));
  CHECK_FALSE(is_valid_utf8(bytes({0xE2, 0x82})));
  CHECK_FALSE(is_valid_utf8(bytes({0xF0, 0x9D, 0x84})));
  CHECK_FALSE(is_valid_utf8(bytes({0xC3, 0x41})));              // continuation replaced by 'A'
  CHECK_FALSE(is_valid_utf8(bytes({0xE2, 0x28, 0xA1})));        // bad 2nd byte
  CHECK_FALSE(is_valid_utf8(bytes({0xE2, 0x82, 0x28})));        // bad 3rd byte
  CHECK_FALSE(is_valid_utf8(bytes({0xF0, 0x9D, 0x84, 0x41})));  // bad 4th byte
  CHECK_FALSE(is_valid_utf8(bytes({0xC3, 0xA9, 0xA9})));        // one continuation too many
  // Truncated after a long ASCII run (the fast path must hand over the tail correctly).
  CHECK(is_valid_utf8(std::string(1000, 'x') + bytes({0xE2, 0x82, 0xAC})));
  CHECK_FALSE(is_valid_utf8(std::string(1000, 'x') + bytes({0xE2, 0x82})));
  CHECK_FALSE(is_valid_utf8(std::string(1001, 'x') + bytes({0x80}) + std::string(20, 'y')));
}

TEST_CASE("utf8: every 1-, 2- and 3-byte sequence agrees with a reference decoder",
          "[topic][utf8][property]") {
  std::size_t disagreements = 0;
  std::string s;
  for (unsigned a = 0; a < 256; ++a) {
    s = bytes({a});
    disagreements += is_valid_utf8(s) != reference_utf8(s) ? 1 : 0;
    for (unsigned b = 0; b < 256; ++b) {
      s = bytes({a, b});
      disagreements += is_valid_utf8(s) != reference_utf8(s) ? 1 : 0;
      if (a < 0xC0) {
        continue;  // a 3-byte string starting with ASCII or a continuation is covered above
      }
      for (unsigned c = 0; c < 256; ++c) {
        s = bytes({a, b, c});
        disagreements += is_valid_utf8(s) != reference_utf8(s) ? 1 : 0;
      }
    }
  }
  CHECK(disagreements == 0);
}

TEST_CASE("utf8: 4-byte sequences agree with a reference decoder", "[topic][utf8][property]") {
  std::size_t disagreements = 0;
  const unsigned tails[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF};
  for (unsigned a = 0xF0; a < 0x100; ++a) {
    for (unsigned b = 0; b < 256; ++b) {
      for (const unsigned c : tails) {
        for (const unsigned d : tails) {
          const std::string s = bytes({a, b, c, d});
          disagreements += is_valid_utf8(s) != reference_utf8(s) ? 1 : 0;
        }
      }
    }
  }
  CHECK(disagreements == 0);
}

TEST_CASE("utf8: random strings agree with a reference decoder", "[topic][utf8][property]") {
  std::mt19937 rng(20240611);
  // Mostly ASCII with some lead and continuation bytes, so valid strings are common too.
  const std::vector<unsigned> alphabet = {'a',  'b',  '/',  0x00, 0x7F, 0x80, 0x9F, 0xA0, 0xBF,
                                          0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5};
  std::size_t valid = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string s;
    const std::size_t len = rng() % 40;
    for (std::size_t i = 0; i < len; ++i) {
      s.push_back(static_cast<char>(rng() % 4 == 0 ? alphabet[rng() % alphabet.size()] : 'x'));
    }
    INFO("round " << round);
    REQUIRE(is_valid_utf8(s) == reference_utf8(s));
    valid += reference_utf8(s) ? 1 : 0;
  }
  CHECK(valid > 1000);  // the generator really exercised both outcomes
  CHECK(valid < 19000);
}

TEST_CASE("topic names [MQTT-4.7.3]", "[topic][name]") {
  CHECK(is_valid_topic_name("sport/tennis/player1"));
  CHECK(is_valid_topic_name("/"));
  CHECK(is_valid_topic_name("/finance"));
  CHECK(is_valid_topic_name("Accounts payable"));  // spaces are allowed
  CHECK(is_valid_topic_name("$SYS/broker/uptime"));
  CHECK(is_valid_topic_name("a//b"));
  CHECK(is_valid_topic_name(bytes({0xE2, 0x82, 0xAC})));
  CHECK_FALSE(is_valid_topic_name(""));  // [MQTT-4.7.3-1]
  // [MQTT-4.7.1-1] wildcards only in filters.
  CHECK_FALSE(is_valid_topic_name("sport/+"));
  CHECK_FALSE(is_valid_topic_name("sport/#"));
  CHECK_FALSE(is_valid_topic_name("+"));
  CHECK_FALSE(is_valid_topic_name("#"));
  CHECK_FALSE(is_valid_topic_name("sport+"));
  CHECK_FALSE(is_valid_topic_name("a#b"));
  CHECK_FALSE(is_valid_topic_name("a\0b"s));                    // [MQTT-4.7.3-2]
  CHECK_FALSE(is_valid_topic_name(bytes({0xED, 0xA0, 0x80})));  // surrogate
  CHECK_FALSE(is_valid_topic_name(bytes({0xC0, 0xAF})));        // overlong '/'
}

TEST_CASE("topic names and filters: 65535 bytes is the limit [MQTT-4.7.3-3]", "[topic][length]") {
  const std::string max(max_topic_length, 'a');
  const std::string over(max_topic_length + 1, 'a');
  CHECK(is_valid_topic_name(max));
  CHECK_FALSE(is_valid_topic_name(over));
  CHECK(is_valid_topic_filter(max));
  CHECK_FALSE(is_valid_topic_filter(over));
  // The limit is in bytes, not characters: 21845 three-byte characters = 65535 bytes.
  std::string euros;
  for (int i = 0; i < 21845; ++i) {
    euros += bytes({0xE2, 0x82, 0xAC});
  }
  CHECK(is_valid_topic_name(euros));
  CHECK_FALSE(is_valid_topic_name(euros + "x"));
  // A filter of 32767 '+' levels and a '#' at the end: 65535 bytes, all wildcards.
  std::string pluses;
  for (int i = 0; i < 32767; ++i) {
    pluses += "+/";
  }
  pluses += "#";
  REQUIRE(pluses.size() == max_topic_length);
  CHECK(is_valid_topic_filter(pluses));
  CHECK_FALSE(is_valid_topic_filter(pluses, 32767));
  CHECK(is_valid_topic_filter(pluses, 32768));
}

TEST_CASE("topic filters: multi-level wildcard [MQTT-4.7.1-2]", "[topic][filter]") {
  CHECK(is_valid_topic_filter("sport/tennis/player1/#"));
  CHECK(is_valid_topic_filter("#"));
  CHECK(is_valid_topic_filter("sport/tennis/#"));
  CHECK(is_valid_topic_filter("/#"));
  CHECK(is_valid_topic_filter("$SYS/#"));
  CHECK_FALSE(is_valid_topic_filter("sport/tennis#"));
  CHECK_FALSE(is_valid_topic_filter("sport/tennis/#/ranking"));
  CHECK_FALSE(is_valid_topic_filter("#/"));
  CHECK_FALSE(is_valid_topic_filter("##"));
  CHECK_FALSE(is_valid_topic_filter("#sport"));
}

TEST_CASE("topic filters: single-level wildcard [MQTT-4.7.1-3]", "[topic][filter]") {
  CHECK(is_valid_topic_filter("+"));
  CHECK(is_valid_topic_filter("+/tennis/#"));
  CHECK(is_valid_topic_filter("sport/+/player1"));
  CHECK(is_valid_topic_filter("+/+"));
  CHECK(is_valid_topic_filter("/+"));
  CHECK(is_valid_topic_filter("+/"));
  CHECK(is_valid_topic_filter("$SYS/monitor/+"));
  CHECK_FALSE(is_valid_topic_filter("sport+"));
  CHECK_FALSE(is_valid_topic_filter("sport/+tennis"));
  CHECK_FALSE(is_valid_topic_filter("++"));
  CHECK_FALSE(is_valid_topic_filter("+#"));
  CHECK_FALSE(is_valid_topic_filter("a/+b/c"));
}

TEST_CASE("topic filters: other rules", "[topic][filter]") {
  CHECK(is_valid_topic_filter("/"));
  CHECK(is_valid_topic_filter("a//b"));
  CHECK(is_valid_topic_filter("Accounts payable"));
  CHECK_FALSE(is_valid_topic_filter(""));  // [MQTT-4.7.3-1]
  CHECK_FALSE(is_valid_topic_filter("a/\0/b"s));
  CHECK_FALSE(is_valid_topic_filter(bytes({'a', '/', 0xED, 0xBF, 0xBF})));
  CHECK_FALSE(is_valid_topic_filter(bytes({'a', '/', 0xF4, 0x90, 0x80, 0x80})));
}

TEST_CASE("topic filters: level limit", "[topic][filter][levels]") {
  CHECK(is_valid_topic_filter("a/b/c", 3));
  CHECK_FALSE(is_valid_topic_filter("a/b/c", 2));
  CHECK(is_valid_topic_filter("a/b/c", 0));  // 0 = no limit
  CHECK(is_valid_topic_filter("a", 1));
  CHECK(is_valid_topic_filter("#", 1));
  CHECK_FALSE(is_valid_topic_filter("a/#", 1));  // '#' is a level of its own
  CHECK(is_valid_topic_filter("a/#", 2));
  CHECK_FALSE(is_valid_topic_filter("/", 1));  // "/" is two empty levels
  CHECK(is_valid_topic_filter("/", 2));
  CHECK_FALSE(is_valid_topic_filter("a//b/", 3));
  CHECK(is_valid_topic_filter("a//b/", 4));
}

TEST_CASE("has_wildcards", "[topic]") {
  CHECK(has_wildcards("+"));
  CHECK(has_wildcards("#"));
  CHECK(has_wildcards("a/+/c"));
  CHECK(has_wildcards("a/#"));
  CHECK_FALSE(has_wildcards("a/b/c"));
  CHECK_FALSE(has_wildcards("$SYS/x"));
  CHECK_FALSE(has_wildcards("/"));
}

TEST_CASE("matching: multi-level wildcard examples [MQTT-4.7.1.2]", "[topic][match]") {
  const std::string_view f = "sport/tennis/player1/#";
  CHECK(topic_matches(f, "sport/tennis/player1"));
  CHECK(topic_matches(f, "sport/tennis/player1/ranking"));
  CHECK(topic_matches(f, "sport/tennis/player1/score/wimbledon"));
  CHECK_FALSE(topic_matches(f, "sport/tennis/player2"));
  CHECK_FALSE(topic_matches(f, "sport/tennis"));
  CHECK(topic_matches("sport/#", "sport"));  // '#' includes the parent level
  CHECK(topic_matches("sport/#", "sport/"));
  CHECK(topic_matches("#", "sport"));
  CHECK(topic_matches("#", "/"));
  CHECK(topic_matches("#", "sport/tennis/player1"));
  CHECK_FALSE(topic_matches("sport/tennis/#", "sport"));
  CHECK_FALSE(topic_matches("sport/#", "sports"));
}

TEST_CASE("matching: single-level wildcard examples [MQTT-4.7.1.3]", "[topic][match]") {
  CHECK(topic_matches("sport/tennis/+", "sport/tennis/player1"));
  CHECK(topic_matches("sport/tennis/+", "sport/tennis/player2"));
  CHECK_FALSE(topic_matches("sport/tennis/+", "sport/tennis/player1/ranking"));
  CHECK_FALSE(topic_matches("sport/+", "sport"));
  CHECK(topic_matches("sport/+", "sport/"));  // '+' matches an empty level
  CHECK(topic_matches("+/+", "/finance"));
  CHECK(topic_matches("/+", "/finance"));
  CHECK_FALSE(topic_matches("+", "/finance"));
  CHECK(topic_matches("sport/+/player1", "sport/tennis/player1"));
  CHECK(topic_matches("+/tennis/#", "sport/tennis/player1/ranking"));
  CHECK(topic_matches("+/tennis/#", "sport/tennis"));
  CHECK(topic_matches("a/+/c", "a//c"));
  CHECK(topic_matches("+/+", "/"));
  CHECK(topic_matches("+", "x"));
  CHECK_FALSE(topic_matches("+", "x/y"));
  CHECK(topic_matches("+/#", "x"));
}

TEST_CASE("matching: topics beginning with $ [MQTT-4.7.2-1]", "[topic][match][sys]") {
  CHECK_FALSE(topic_matches("#", "$SYS/monitor/Clients"));
  CHECK_FALSE(topic_matches("#", "$SYS"));
  CHECK_FALSE(topic_matches("+/monitor/Clients", "$SYS/monitor/Clients"));
  CHECK_FALSE(topic_matches("+", "$SYS"));
  CHECK_FALSE(topic_matches("+/#", "$SYS/x"));
  CHECK(topic_matches("$SYS/#", "$SYS/monitor/Clients"));
  CHECK(topic_matches("$SYS/#", "$SYS"));
  CHECK(topic_matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
  CHECK(topic_matches("$SYS/+/Clients", "$SYS/monitor/Clients"));
  // Only the first level is special.
  CHECK(topic_matches("a/+", "a/$b"));
  CHECK(topic_matches("a/#", "a/$b/c"));
  CHECK(topic_matches("#", "a$"));
}

TEST_CASE("matching: exact levels [MQTT-4.7.3]", "[topic][match]") {
  CHECK(topic_matches("sport/tennis", "sport/tennis"));
  CHECK_FALSE(topic_matches("ACCOUNTS", "Accounts"));  // case sensitive
  CHECK(topic_matches("Accounts payable", "Accounts payable"));
  CHECK_FALSE(topic_matches("/finance", "finance"));  // a leading '/' is a distinct level
  CHECK_FALSE(topic_matches("finance", "/finance"));
  CHECK(topic_matches("/", "/"));
  CHECK_FALSE(topic_matches("a/b", "a"));
  CHECK_FALSE(topic_matches("a", "a/b"));
  CHECK_FALSE(topic_matches("a/b", "a/b/"));
  CHECK_FALSE(topic_matches("a/b/", "a/b"));
  CHECK_FALSE(topic_matches("a/bc", "a/b"));
  CHECK_FALSE(topic_matches("a/b", "a/bc"));
}

TEST_CASE("matching: random filters agree with a reference matcher", "[topic][match][property]") {
  std::mt19937 rng(4711);
  const char* const levels[] = {"a", "b", "", "$x", "+", "+", "#"};
  const char* const name_levels[] = {"a", "b", "", "$x"};
  std::size_t matches = 0;
  for (int round = 0; round < 50000; ++round) {
    std::string filter;
    const std::size_t flen = 1 + rng() % 5;
    for (std::size_t i = 0; i < flen; ++i) {
      const std::string level = levels[rng() % 7];
      filter += (i > 0 ? "/" : "") + level;
      if (level == "#") {
        break;
      }
    }
    std::string name;
    const std::size_t nlen = 1 + rng() % 5;
    for (std::size_t i = 0; i < nlen; ++i) {
      name += (i > 0 ? "/"s : ""s) + name_levels[rng() % 4];
    }
    if (name.empty() || filter.empty()) {
      continue;
    }
    REQUIRE(is_valid_topic_filter(filter));
    REQUIRE(is_valid_topic_name(name));
    INFO(filter << " vs " << name);
    REQUIRE(topic_matches(filter, name) == reference_match(filter, name));
    matches += topic_matches(filter, name) ? 1 : 0;
  }
  CHECK(matches > 1000);
}

TEST_CASE("parse_filter: plain filters have no group", "[topic][share]") {
  for (const char* f : {"a/b", "#", "$SYS/#", "$share", "$sharex/g/a", "$queue", "a/$share/g/b"}) {
    const auto p = parse_filter(f);
    INFO(f);
    REQUIRE(p.has_value());
    CHECK_FALSE(p->share_group.has_value());
    CHECK(p->filter == f);
  }
}

TEST_CASE("parse_filter: $share/{group}/{filter} [MQTT-4.8.2]", "[topic][share]") {
  auto p = parse_filter("$share/consumer1/sport/tennis/+");
  REQUIRE(p.has_value());
  CHECK(p->share_group == "consumer1");
  CHECK(p->filter == "sport/tennis/+");

  p = parse_filter("$share/consumer1//finance");  // the filter is "/finance"
  REQUIRE(p.has_value());
  CHECK(p->share_group == "consumer1");
  CHECK(p->filter == "/finance");

  p = parse_filter("$share/g/#");
  REQUIRE(p.has_value());
  CHECK(p->share_group == "g");
  CHECK(p->filter == "#");

  p = parse_filter("$share/$g/$SYS/x");  // '$' in a share name is allowed
  REQUIRE(p.has_value());
  CHECK(p->share_group == "$g");
  CHECK(p->filter == "$SYS/x");

  p = parse_filter("$share/g/$queue/x");  // prefixes are not nested
  REQUIRE(p.has_value());
  CHECK(p->share_group == "g");
  CHECK(p->filter == "$queue/x");
}

TEST_CASE("parse_filter: malformed $share filters [MQTT-4.8.2-1] [MQTT-4.8.2-2]",
          "[topic][share]") {
  for (const char* f : {"$share/", "$share/g", "$share/g/", "$share//a", "$share//", "$share/+/a",
                        "$share/#/a", "$share/a+/b", "$share/a#b/c", "$share/#", "$share/+"}) {
    INFO(f);
    CHECK_FALSE(parse_filter(f).has_value());
  }
}

TEST_CASE("parse_filter: $queue/{filter}", "[topic][share]") {
  auto p = parse_filter("$queue/a/b");
  REQUIRE(p.has_value());
  CHECK(p->share_group == "$queue");
  CHECK(p->filter == "a/b");

  p = parse_filter("$queue//a");
  REQUIRE(p.has_value());
  CHECK(p->share_group == "$queue");
  CHECK(p->filter == "/a");

  CHECK_FALSE(parse_filter("$queue/").has_value());
}

TEST_CASE("strip_local", "[topic][local]") {
  CHECK(strip_local("$local/a/b") == std::optional<std::string_view>("a/b"));
  CHECK(strip_local("$local//a") == std::optional<std::string_view>("/a"));
  CHECK(strip_local("$local/$SYS/x") == std::optional<std::string_view>("$SYS/x"));
  CHECK_FALSE(strip_local("$local/").has_value());  // nothing left to publish to
  CHECK_FALSE(strip_local("$local").has_value());
  CHECK_FALSE(strip_local("$LOCAL/a").has_value());
  CHECK_FALSE(strip_local("a/$local/b").has_value());
  CHECK_FALSE(strip_local("$localx/a").has_value());
  CHECK_FALSE(strip_local("local/a").has_value());
}
