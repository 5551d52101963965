// MQTT packet model for versions 3.1, 3.1.1 and 5.0: plain values, no I/O.
//
// One struct per control packet; `packet` is the variant of all fifteen. Fields that exist
// only in MQTT 5 (properties, reason codes of acks) are present for every version and must be
// left at their defaults for 3.1/3.1.1; the encoder ignores them there and the decoder leaves
// them default. Strings hold raw bytes (UTF-8 for text, arbitrary for binary data/payloads).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace tern::proto::mqtt {

/// Protocol level byte of CONNECT.
enum class protocol_version : std::uint8_t { v3_1 = 3, v3_1_1 = 4, v5 = 5 };

enum class packet_type : std::uint8_t {
  connect = 1,
  connack = 2,
  publish = 3,
  puback = 4,
  pubrec = 5,
  pubrel = 6,
  pubcomp = 7,
  subscribe = 8,
  suback = 9,
  unsubscribe = 10,
  unsuback = 11,
  pingreq = 12,
  pingresp = 13,
  disconnect = 14,
  auth = 15,
};

enum class qos : std::uint8_t { at_most_once = 0, at_least_once = 1, exactly_once = 2 };

/// MQTT 5.0 reason codes (spec 2.4). Several names share a value, as in the spec.
enum class reason_code : std::uint8_t {
  success = 0x00,
  normal_disconnection = 0x00,
  granted_qos_0 = 0x00,
  granted_qos_1 = 0x01,
  granted_qos_2 = 0x02,
  disconnect_with_will_message = 0x04,
  no_matching_subscribers = 0x10,
  no_subscription_existed = 0x11,
  continue_authentication = 0x18,
  re_authenticate = 0x19,
  unspecified_error = 0x80,
  malformed_packet = 0x81,
  protocol_error = 0x82,
  implementation_specific_error = 0x83,
  unsupported_protocol_version = 0x84,
  client_identifier_not_valid = 0x85,
  bad_user_name_or_password = 0x86,
  not_authorized = 0x87,
  server_unavailable = 0x88,
  server_busy = 0x89,
  banned = 0x8A,
  server_shutting_down = 0x8B,
  bad_authentication_method = 0x8C,
  keep_alive_timeout = 0x8D,
  session_taken_over = 0x8E,
  topic_filter_invalid = 0x8F,
  topic_name_invalid = 0x90,
  packet_identifier_in_use = 0x91,
  packet_identifier_not_found = 0x92,
  receive_maximum_exceeded = 0x93,
  topic_alias_invalid = 0x94,
  packet_too_large = 0x95,
  message_rate_too_high = 0x96,
  quota_exceeded = 0x97,
  administrative_action = 0x98,
  payload_format_invalid = 0x99,
  retain_not_supported = 0x9A,
  qos_not_supported = 0x9B,
  use_another_server = 0x9C,
  server_moved = 0x9D,
  shared_subscriptions_not_supported = 0x9E,
  connection_rate_exceeded = 0x9F,
  maximum_connect_time = 0xA0,
  subscription_identifiers_not_supported = 0xA1,
  wildcard_subscriptions_not_supported = 0xA2,
};

/// CONNACK return codes of MQTT 3.1/3.1.1 (spec 3.1.1, 3.2.2.3).
enum class connack_v3 : std::uint8_t {
  accepted = 0,
  unacceptable_protocol_version = 1,
  identifier_rejected = 2,
  server_unavailable = 3,
  bad_user_name_or_password = 4,
  not_authorized = 5,
};

/// Maps an MQTT 5 CONNACK reason code to the closest 3.1.1 return code.
connack_v3 to_connack_v3(reason_code rc);

/// Property identifiers (spec 2.2.2.2).
enum class property_id : std::uint8_t {
  payload_format_indicator = 0x01,
  message_expiry_interval = 0x02,
  content_type = 0x03,
  response_topic = 0x08,
  correlation_data = 0x09,
  subscription_identifier = 0x0B,
  session_expiry_interval = 0x11,
  assigned_client_identifier = 0x12,
  server_keep_alive = 0x13,
  authentication_method = 0x15,
  authentication_data = 0x16,
  request_problem_information = 0x17,
  will_delay_interval = 0x18,
  request_response_information = 0x19,
  response_information = 0x1A,
  server_reference = 0x1C,
  reason_string = 0x1F,
  receive_maximum = 0x21,
  topic_alias_maximum = 0x22,
  topic_alias = 0x23,
  maximum_qos = 0x24,
  retain_available = 0x25,
  user_property = 0x26,
  maximum_packet_size = 0x27,
  wildcard_subscription_available = 0x28,
  subscription_identifier_available = 0x29,
  shared_subscription_available = 0x2A,
};

using user_property = std::pair<std::string, std::string>;

/// The MQTT 5 properties of one packet. An unset optional means "absent on the wire".
/// Which properties a packet may carry is checked by the codec (spec table 2-4);
/// the will properties of CONNECT live in `will::props`.
struct properties {
  std::optional<std::uint8_t> payload_format_indicator;
  std::optional<std::uint32_t> message_expiry_interval;
  std::optional<std::string> content_type;
  std::optional<std::string> response_topic;
  std::optional<std::string> correlation_data;  // binary
  /// Several only in PUBLISH server -> client; at most one in SUBSCRIBE. Values 1..268435455.
  std::vector<std::uint32_t> subscription_identifiers;
  std::optional<std::uint32_t> session_expiry_interval;
  std::optional<std::string> assigned_client_identifier;
  std::optional<std::uint16_t> server_keep_alive;
  std::optional<std::string> authentication_method;
  std::optional<std::string> authentication_data;  // binary
  std::optional<std::uint8_t> request_problem_information;
  std::optional<std::uint32_t> will_delay_interval;
  std::optional<std::uint8_t> request_response_information;
  std::optional<std::string> response_information;
  std::optional<std::string> server_reference;
  std::optional<std::string> reason_string;
  std::optional<std::uint16_t> receive_maximum;
  std::optional<std::uint16_t> topic_alias_maximum;
  std::optional<std::uint16_t> topic_alias;
  std::optional<std::uint8_t> maximum_qos;
  std::optional<std::uint8_t> retain_available;
  std::vector<user_property> user_properties;  // order is significant and kept
  std::optional<std::uint32_t> maximum_packet_size;
  std::optional<std::uint8_t> wildcard_subscription_available;
  std::optional<std::uint8_t> subscription_identifier_available;
  std::optional<std::uint8_t> shared_subscription_available;

  /// True when no property is set.
  bool empty() const;
};

struct will {
  std::string topic;
  std::string payload;
  qos q = qos::at_most_once;
  bool retain = false;
  properties props;  // v5 will properties
};

struct connect {
  protocol_version version = protocol_version::v3_1_1;
  /// Clean Session (3.1/3.1.1) or Clean Start (5.0).
  bool clean_start = true;
  std::uint16_t keep_alive = 0;  // seconds
  std::string client_id;
  std::optional<will> will_msg;
  std::optional<std::string> username;
  std::optional<std::string> password;  // binary
  properties props;
};

struct connack {
  bool session_present = false;
  /// v5: a reason_code; 3.1/3.1.1: a connack_v3 value.
  std::uint8_t reason = 0;
  properties props;
};

struct publish {
  bool dup = false;
  qos q = qos::at_most_once;
  bool retain = false;
  std::string topic;  // may be empty in v5 when a topic alias is set
  std::uint16_t packet_id = 0;  // 0 for QoS 0
  std::string payload;
  properties props;
};

/// PUBACK, PUBREC, PUBREL and PUBCOMP share a layout.
struct pub_response {
  std::uint16_t packet_id = 0;
  std::uint8_t reason = 0;  // v5 only; reason_code
  properties props;
};
struct puback : pub_response {};
struct pubrec : pub_response {};
struct pubrel : pub_response {};
struct pubcomp : pub_response {};

/// One entry of SUBSCRIBE's payload (spec 3.8.3.1).
struct subscription {
  std::string filter;
  qos max_qos = qos::at_most_once;
  bool no_local = false;             // v5
  bool retain_as_published = false;  // v5
  std::uint8_t retain_handling = 0;  // v5: 0, 1 or 2
};

struct subscribe {
  std::uint16_t packet_id = 0;
  std::vector<subscription> subscriptions;
  properties props;
};

struct suback {
  std::uint16_t packet_id = 0;
  /// One per requested subscription: granted QoS (0..2) or a failure code (0x80.. / v5 reasons).
  std::vector<std::uint8_t> reasons;
  properties props;
};

struct unsubscribe {
  std::uint16_t packet_id = 0;
  std::vector<std::string> filters;
  properties props;
};

struct unsuback {
  std::uint16_t packet_id = 0;
  std::vector<std::uint8_t> reasons;  // v5 only; one per filter
  properties props;
};

struct pingreq {};
struct pingresp {};

struct disconnect {
  std::uint8_t reason = 0;  // v5 only
  properties props;
};

/// MQTT 5 only.
struct auth {
  std::uint8_t reason = 0;
  properties props;
};

using packet = std::variant<connect, connack, publish, puback, pubrec, pubrel, pubcomp, subscribe,
                            suback, unsubscribe, unsuback, pingreq, pingresp, disconnect, auth>;

/// The control packet type of `p` (variant index + 1).
inline packet_type type_of(const packet& p) {
  return static_cast<packet_type>(p.index() + 1);
}

/// Short upper-case name for logs ("CONNECT", "PUBLISH", ...).
const char* to_string(packet_type t);

// Structural equality, used by round-trip tests and by session logic.
bool operator==(const properties& a, const properties& b);
bool operator==(const will& a, const will& b);
bool operator==(const connect& a, const connect& b);
bool operator==(const connack& a, const connack& b);
bool operator==(const publish& a, const publish& b);
bool operator==(const pub_response& a, const pub_response& b);
bool operator==(const subscription& a, const subscription& b);
bool operator==(const subscribe& a, const subscribe& b);
bool operator==(const suback& a, const suback& b);
bool operator==(const unsubscribe& a, const unsubscribe& b);
bool operator==(const unsuback& a, const unsuback& b);
bool operator==(const pingreq&, const pingreq&);
bool operator==(const pingresp&, const pingresp&);
bool operator==(const disconnect& a, const disconnect& b);
bool operator==(const auth& a, const auth& b);

}  // namespace tern::proto::mqtt
