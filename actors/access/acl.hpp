// ACL rules and their evaluation: emqttd's acl.conf grammar and Mosquitto's acl_file.
//
// Pure: parsing yields an `acl` or an error naming "file:line: what"; `check` is a read-only
// walk of the rules (safe to call from many threads at once on a const acl).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "actors/access/types.hpp"

namespace tern::actors::access {

/// Who a rule applies to.
struct who {
  enum class kind : std::uint8_t { all, user, client, ipaddr, anonymous, and_, or_ };
  kind k = kind::all;
  std::string name;  ///< user or client; empty with `any` = {user, all}
  bool any = false;
  cidr net;
  std::vector<who> subs;  ///< and_ / or_

  bool matches(const client_info& c) const;
};

/// One topic item of a rule: an MQTT filter, or with `eq` a literal topic.
struct topic_item {
  std::string text;
  bool eq = false;
  bool has_placeholders = false;  ///< %u %c anywhere, or $u $c as a whole level
};

struct acl_rule {
  decision effect = decision::deny;  ///< allow or deny
  who w;
  bool for_publish = true;
  bool for_subscribe = true;
  bool all_topics = false;  ///< `{allow, all}` / `{deny, all}`: any topic
  std::vector<topic_item> topics;
  unsigned line = 0;  ///< source line, for logs and tests
};

struct acl_error {
  std::string message;  ///< "origin:line: what is wrong"
};

class acl {
 public:
  acl() = default;
  explicit acl(std::vector<acl_rule> rules) : rules_(std::move(rules)) {}

  /// emqttd grammar: `{allow|deny, Who, publish|subscribe|pubsub, [Topics]}.` and
  /// `{allow|deny, all}.`, `%` comments.
  static std::variant<acl, acl_error> parse_emqttd(std::string_view text,
                                                   const std::string& origin);
  /// Mosquitto acl_file: `topic [read|write|readwrite|deny] t`, `user u`, `pattern ...`.
  static std::variant<acl, acl_error> parse_mosquitto(std::string_view text,
                                                      const std::string& origin);
  /// Reads a file; `format` is "emqttd" or "mosquitto".
  static std::variant<acl, acl_error> load_file(const std::string& path, const std::string& format);

  /// First matching rule decides allow or deny; nullopt when no rule matches.
  std::optional<decision> check(const client_info& c, access_kind k, std::string_view topic) const;
  /// Like check, and reports the line of the deciding rule (0 when none matched).
  std::optional<decision> check(const client_info& c, access_kind k, std::string_view topic,
                                unsigned& line) const;

  const std::vector<acl_rule>& rules() const { return rules_; }

 private:
  std::vector<acl_rule> rules_;
};

/// MQTT matching as emqttd's ACL does it: `filter` may hold + and #; `topic` (a topic name,
/// or for a subscribe check the requested filter) is compared level by level, so the rule
/// "#" covers the request "#". A leading "$" level is never matched by a wildcard.
bool acl_topic_matches(std::string_view filter, std::string_view topic);

/// Replaces %u/%c (anywhere) and $u/$c (whole levels) with the username and client id.
/// Returns nullopt when a username placeholder is used and the client has none.
std::optional<std::string> expand_placeholders(std::string_view pattern, const client_info& c);

}  // namespace tern::actors::access
