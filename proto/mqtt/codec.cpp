// codec.cpp: MQTT 3.1/3.1.1/5.0 wire decoder and encoder; pure, never throws on input bytes.
#include "proto/mqtt/codec.hpp"

#include <algorithm>
#include <array>
#include <cassert>
#include <type_traits>
#include <utility>

#include "proto/mqtt/topic.hpp"

namespace tern::proto::mqtt {
namespace {

// Largest value of a four-byte Variable Byte Integer (spec 5.0, 1.5.5).
[[maybe_unused]] constexpr std::uint32_t max_varint = 268'435'455;  // for asserts

// ---------------------------------------------------------------------------------------------
// Property table (spec 5.0, 2.2.2.2)

enum class wire : std::uint8_t { none, byte, two_byte, four_byte, varint, utf8, binary, pair };

// Where a property may appear: bit n for packet type n, bit 0 for CONNECT's will properties.
constexpr std::uint32_t context_of(packet_type t) { return 1U << static_cast<unsigned>(t); }
constexpr std::uint32_t will_context = 1U;

struct property_rule {
  wire type = wire::none;
  std::uint32_t allowed = 0;
  const char* name = nullptr;
};

constexpr std::size_t property_table_size = 0x2B;

constexpr std::array<property_rule, property_table_size> make_property_rules() {
  using pt = packet_type;
  constexpr std::uint32_t pub_acks = context_of(pt::puback) | context_of(pt::pubrec) |
                                     context_of(pt::pubrel) | context_of(pt::pubcomp);
  constexpr std::uint32_t message = context_of(pt::publish) | will_context;
  std::array<property_rule, property_table_size> r{};
  r[0x01] = {wire::byte, message, "payload format indicator"};
  r[0x02] = {wire::four_byte, message, "message expiry interval"};
  r[0x03] = {wire::utf8, message, "content type"};
  r[0x08] = {wire::utf8, message, "response topic"};
  r[0x09] = {wire::binary, message, "correlation data"};
  r[0x0B] = {wire::varint, context_of(pt::publish) | context_of(pt::subscribe),
             "subscription identifier"};
  r[0x11] = {wire::four_byte,
             context_of(pt::connect) | context_of(pt::connack) | context_of(pt::disconnect),
             "session expiry interval"};
  r[0x12] = {wire::utf8, context_of(pt::connack), "assigned client identifier"};
  r[0x13] = {wire::two_byte, context_of(pt::connack), "server keep alive"};
  r[0x15] = {wire::utf8, context_of(pt::connect) | context_of(pt::connack) | context_of(pt::auth),
             "authentication method"};
  r[0x16] = {wire::binary, context_of(pt::connect) | context_of(pt::connack) | context_of(pt::auth),
             "authentication data"};
  r[0x17] = {wire::byte, context_of(pt::connect), "request problem information"};
  r[0x18] = {wire::four_byte, will_context, "will delay interval"};
  r[0x19] = {wire::byte, context_of(pt::connect), "request response information"};
  r[0x1A] = {wire::utf8, context_of(pt::connack), "response information"};
  r[0x1C] = {wire::utf8, context_of(pt::connack) | context_of(pt::disconnect), "server reference"};
  r[0x1F] = {wire::utf8,
             context_of(pt::connack) | pub_acks | context_of(pt::suback) |
                 context_of(pt::unsuback) | context_of(pt::disconnect) | context_of(pt::auth),
             "reason string"};
  r[0x21] = {wire::two_byte, context_of(pt::connect) | context_of(pt::connack), "receive maximum"};
  r[0x22] = {wire::two_byte, context_of(pt::connect) | context_of(pt::connack),
             "topic alias maximum"};
  r[0x23] = {wire::two_byte, context_of(pt::publish), "topic alias"};
  r[0x24] = {wire::byte, context_of(pt::connack), "maximum QoS"};
  r[0x25] = {wire::byte, context_of(pt::connack), "retain available"};
  r[0x26] = {wire::pair,
             context_of(pt::connect) | context_of(pt::connack) | message | pub_acks |
                 context_of(pt::subscribe) | context_of(pt::suback) | context_of(pt::unsubscribe) |
                 context_of(pt::unsuback) | context_of(pt::disconnect) | context_of(pt::auth),
             "user property"};
  r[0x27] = {wire::four_byte, context_of(pt::connect) | context_of(pt::connack),
             "maximum packet size"};
  r[0x28] = {wire::byte, context_of(pt::connack), "wildcard subscription available"};
  r[0x29] = {wire::byte, context_of(pt::connack), "subscription identifier available"};
  r[0x2A] = {wire::byte, context_of(pt::connack), "shared subscription available"};
  return r;
}

constexpr std::array<property_rule, property_table_size> property_rules = make_property_rules();

constexpr const property_rule& rule_of(property_id id) {
  return property_rules[static_cast<std::size_t>(id)];
}

constexpr bool is_allowed(property_id id, std::uint32_t context) {
  return (rule_of(id).allowed & context) != 0;
}

/// Ensures capacity for `n` bytes. Before C++20 std::string::reserve may shrink, and exact
/// growth would make appending many packets to one buffer quadratic, so grow geometrically.
void make_room(std::string& s, std::size_t n) {
  if (n > s.capacity()) {
    s.reserve(std::max(n, 2 * s.capacity()));
  }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Bounds-checked cursor over the bytes of one packet. A failed read records the reason in the
/// shared decode_error and returns false; callers stop at the first false.
class reader {
 public:
  reader(const char* data, std::size_t size, decode_error& err)
      : p_(data), end_(data + size), err_(&err) {}

  std::size_t left() const { return static_cast<std::size_t>(end_ - p_); }
  bool at_end() const { return p_ == end_; }

  decode_error& error() { return *err_; }

  bool fail(reason_code code, std::string detail) {
    err_->code = code;
    err_->detail = std::move(detail);
    return false;
  }

  bool truncated(const char* what) {
    return fail(reason_code::malformed_packet,
                std::string("remaining length too short for ") + what);
  }

  bool u8(std::uint8_t& v, const char* what) {
    if (at_end()) {
      return truncated(what);
    }
    v = byte(0);
    p_ += 1;
    return true;
  }

  bool u16(std::uint16_t& v, const char* what) {
    if (left() < 2) {
      return truncated(what);
    }
    v = static_cast<std::uint16_t>((byte(0) << 8) | byte(1));
    p_ += 2;
    return true;
  }

  bool u32(std::uint32_t& v, const char* what) {
    if (left() < 4) {
      return truncated(what);
    }
    v = (std::uint32_t{byte(0)} << 24) | (std::uint32_t{byte(1)} << 16) |
        (std::uint32_t{byte(2)} << 8) | std::uint32_t{byte(3)};
    p_ += 4;
    return true;
  }

  /// Variable Byte Integer of MQTT 5: at most four bytes, minimal encoding [MQTT-1.5.5-1].
  bool varint(std::uint32_t& v, const char* what) {
    v = 0;
    for (unsigned i = 0; i < 4; ++i) {
      std::uint8_t b = 0;
      if (!u8(b, what)) {
        return false;
      }
      v |= std::uint32_t{b & 0x7FU} << (7 * i);
      if ((b & 0x80U) == 0) {
        if (b == 0 && i > 0) {
          return fail(reason_code::malformed_packet,
                      std::string(what) + " is not minimally encoded [MQTT-1.5.5-1]");
        }
        return true;
      }
    }
    return fail(reason_code::malformed_packet,
                std::string(what) + " is longer than four bytes (spec 1.5.5)");
  }

  /// Binary Data: two-byte length and that many bytes (spec 1.5.6).
  bool binary(std::string_view& v, const char* what) {
    std::uint16_t n = 0;
    if (!u16(n, what)) {
      return false;
    }
    if (left() < n) {
      return truncated(what);
    }
    v = std::string_view(p_, n);
    p_ += n;
    return true;
  }

  /// UTF-8 Encoded String: like binary data, but well-formed UTF-8 without U+0000
  /// [MQTT-1.5.4-1], [MQTT-1.5.4-2].
  bool utf8(std::string_view& v, const char* what) {
    if (!binary(v, what)) {
      return false;
    }
    if (!is_valid_utf8(v)) {
      return fail(reason_code::malformed_packet,
                  std::string(what) + " is not valid MQTT UTF-8 [MQTT-1.5.4-1]");
    }
    return true;
  }

  bool utf8(std::string& v, const char* what) {
    std::string_view s;
    if (!utf8(s, what)) {
      return false;
    }
    v.assign(s);
    return true;
  }

  bool binary(std::string& v, const char* what) {
    std::string_view s;
    if (!binary(s, what)) {
      return false;
    }
    v.assign(s);
    return true;
  }

  /// Consumes and returns everything left.
  std::string_view rest() {
    std::string_view v(p_, left());
    p_ = end_;
    return v;
  }

  /// Splits off the next `n` bytes (n <= left()) as their own reader.
  reader take(std::size_t n) {
    reader sub(p_, n, *err_);
    p_ += n;
    return sub;
  }

  /// Checks that the packet's content ended exactly at its remaining length.
  bool expect_end() {
    if (!at_end()) {
      return fail(reason_code::malformed_packet,
                  std::to_string(left()) + " bytes beyond the packet's content");
    }
    return true;
  }

 private:
  std::uint8_t byte(std::size_t i) const { return static_cast<std::uint8_t>(p_[i]); }

  const char* p_;
  const char* end_;
  decode_error* err_;
};

bool read_packet_id(reader& r, std::uint16_t& id) {
  if (!r.u16(id, "packet identifier")) {
    return false;
  }
  if (id == 0) {
    return r.fail(reason_code::protocol_error, "packet identifier 0 [MQTT-2.3.1-1] [MQTT-2.2.1-3]");
  }
  return true;
}

// -- properties --

bool duplicate(reader& r, property_id id) {
  return r.fail(reason_code::protocol_error,
                std::string("duplicate property: ") + rule_of(id).name + " (spec 2.2.2.2)");
}

template <class T>
bool store_once(reader& r, property_id id, std::optional<T>& field, T value) {
  if (field) {
    return duplicate(r, id);
  }
  field = std::move(value);
  return true;
}

bool read_byte_property(reader& r, property_id id, std::optional<std::uint8_t>& field,
                        std::uint8_t max_value) {
  std::uint8_t v = 0;
  if (!r.u8(v, rule_of(id).name)) {
    return false;
  }
  if (v > max_value) {
    // e.g. "It is a Protocol Error to include the Maximum QoS more than once, or to have a
    // value other than 0 or 1" (3.2.2.3.4); the other byte properties are booleans alike.
    return r.fail(reason_code::protocol_error,
                  std::string("invalid value ") + std::to_string(v) + " of " + rule_of(id).name);
  }
  return store_once(r, id, field, v);
}

bool read_two_byte_property(reader& r, property_id id, std::optional<std::uint16_t>& field,
                            bool allow_zero, reason_code zero_code = reason_code::protocol_error) {
  std::uint16_t v = 0;
  if (!r.u16(v, rule_of(id).name)) {
    return false;
  }
  if (v == 0 && !allow_zero) {
    return r.fail(zero_code, std::string(rule_of(id).name) + " of 0");
  }
  return store_once(r, id, field, v);
}

bool read_four_byte_property(reader& r, property_id id, std::optional<std::uint32_t>& field,
                             bool allow_zero = true) {
  std::uint32_t v = 0;
  if (!r.u32(v, rule_of(id).name)) {
    return false;
  }
  if (v == 0 && !allow_zero) {
    return r.fail(reason_code::protocol_error, std::string(rule_of(id).name) + " of 0");
  }
  return store_once(r, id, field, v);
}

bool read_string_property(reader& r, property_id id, std::optional<std::string>& field) {
  std::string_view v;
  const bool ok =
      rule_of(id).type == wire::utf8 ? r.utf8(v, rule_of(id).name) : r.binary(v, rule_of(id).name);
  if (!ok) {
    return false;
  }
  if (field) {
    return duplicate(r, id);
  }
  field.emplace(v);
  return true;
}

bool read_subscription_identifier(reader& r, std::uint32_t context, properties& p) {
  std::uint32_t v = 0;
  if (!r.varint(v, "subscription identifier")) {
    return false;
  }
  if (v == 0) {
    return r.fail(reason_code::protocol_error, "subscription identifier 0 (spec 3.3.2.3.8)");
  }
  // Several are allowed only in PUBLISH (one per matching subscription) (spec 3.8.2.1.2).
  if (context != context_of(packet_type::publish) && !p.subscription_identifiers.empty()) {
    return duplicate(r, property_id::subscription_identifier);
  }
  p.subscription_identifiers.push_back(v);
  return true;
}

bool read_user_property(reader& r, properties& p) {
  std::string_view key;
  std::string_view value;
  if (!r.utf8(key, "user property name") || !r.utf8(value, "user property value")) {
    return false;
  }
  p.user_properties.emplace_back(std::string(key), std::string(value));
  return true;
}

bool read_property(reader& r, property_id id, std::uint32_t context, properties& p) {
  using pid = property_id;
  switch (id) {
    case pid::payload_format_indicator:
      return read_byte_property(r, id, p.payload_format_indicator, 1);
    case pid::message_expiry_interval:
      return read_four_byte_property(r, id, p.message_expiry_interval);
    case pid::content_type:
      return read_string_property(r, id, p.content_type);
    case pid::response_topic:
      return read_string_property(r, id, p.response_topic);
    case pid::correlation_data:
      return read_string_property(r, id, p.correlation_data);
    case pid::subscription_identifier:
      return read_subscription_identifier(r, context, p);
    case pid::session_expiry_interval:
      return read_four_byte_property(r, id, p.session_expiry_interval);
    case pid::assigned_client_identifier:
      return read_string_property(r, id, p.assigned_client_identifier);
    case pid::server_keep_alive:
      return read_two_byte_property(r, id, p.server_keep_alive, true);
    case pid::authentication_method:
      return read_string_property(r, id, p.authentication_method);
    case pid::authentication_data:
      return read_string_property(r, id, p.authentication_data);
    case pid::request_problem_information:
      return read_byte_property(r, id, p.request_problem_information, 1);
    case pid::will_delay_interval:
      return read_four_byte_property(r, id, p.will_delay_interval);
    case pid::request_response_information:
      return read_byte_property(r, id, p.request_response_information, 1);
    case pid::response_information:
      return read_string_property(r, id, p.response_information);
    case pid::server_reference:
      return read_string_property(r, id, p.server_reference);
    case pid::reason_string:
      return read_string_property(r, id, p.reason_string);
    case pid::receive_maximum:
      // "It is a Protocol Error to include the Receive Maximum value ... of 0" (3.1.2.11.3)
      return read_two_byte_property(r, id, p.receive_maximum, false);
    case pid::topic_alias_maximum:
      return read_two_byte_property(r, id, p.topic_alias_maximum, true);
    case pid::topic_alias:
      // [MQTT-3.3.2-8] a Topic Alias of 0 must not be sent.
      return read_two_byte_property(r, id, p.topic_alias, false, reason_code::topic_alias_invalid);
    case pid::maximum_qos:
      return read_byte_property(r, id, p.maximum_qos, 1);
    case pid::retain_available:
      return read_byte_property(r, id, p.retain_available, 1);
    case pid::user_property:
      return read_user_property(r, p);
    case pid::maximum_packet_size:
      // "It is a Protocol Error to include ... the Maximum Packet Size ... of 0" (3.1.2.11.4)
      return read_four_byte_property(r, id, p.maximum_packet_size, false);
    case pid::wildcard_subscription_available:
      return read_byte_property(r, id, p.wildcard_subscription_available, 1);
    case pid::subscription_identifier_available:
      return read_byte_property(r, id, p.subscription_identifier_available, 1);
    case pid::shared_subscription_available:
      return read_byte_property(r, id, p.shared_subscription_available, 1);
  }
  return r.fail(reason_code::malformed_packet, "unknown property");  // unreachable
}

/// Reads a property length and the properties it covers, checking each is known and allowed
/// in `context` (a packet type bit or will_context).
bool read_properties(reader& r, std::uint32_t context, properties& p) {
  std::uint32_t length = 0;
  if (!r.varint(length, "property length")) {
    return false;
  }
  if (length > r.left()) {
    return r.truncated("properties");
  }
  reader pr = r.take(length);
  while (!pr.at_end()) {
    std::uint8_t raw = 0;
    pr.u8(raw, "property identifier");
    // Identifiers are Variable Byte Integers, but all defined ones fit in one byte, so any
    // byte with the continuation bit set is an unknown identifier as well.
    if (raw >= property_table_size || property_rules[raw].type == wire::none) {
      return pr.fail(reason_code::malformed_packet,
                     "unknown property identifier " + std::to_string(raw) + " (spec 2.2.2.2)");
    }
    const auto id = static_cast<property_id>(raw);
    if (!is_allowed(id, context)) {
      return pr.fail(reason_code::malformed_packet, std::string("property not allowed here: ") +
                                                        rule_of(id).name + " (spec 2.2.2.2)");
    }
    if (!read_property(pr, id, context, p)) {
      return false;
    }
  }
  return true;
}

/// "It is a Protocol Error to include Authentication Data if there is no Authentication
/// Method" (3.1.2.11.10, 3.2.2.3.18, 3.15.2.2.4).
bool check_authentication(reader& r, const properties& p) {
  if (p.authentication_data && !p.authentication_method) {
    return r.fail(reason_code::protocol_error, "authentication data without method");
  }
  return true;
}

// -- fixed header --

struct fixed_header {
  packet_type type = packet_type::connect;
  std::uint8_t flags = 0;
  std::size_t header_size = 0;  // first byte + remaining length bytes
  std::uint32_t remaining = 0;
};

decode_status header_error(decode_error& err, reason_code code, std::string detail) {
  err.code = code;
  err.detail = std::move(detail);
  return decode_status::error;
}

/// Checks the flag nibble of byte 1 (spec 3.1.1 2.2.2, 5.0 2.1.3).
decode_status check_flags(packet_type t, std::uint8_t flags, protocol_version v,
                          decode_error& err) {
  if (t == packet_type::publish) {
    const unsigned q = (flags >> 1) & 3U;
    if (q == 3) {
      return header_error(err, reason_code::malformed_packet, "PUBLISH: QoS 3 [MQTT-3.3.1-4]");
    }
    if (q == 0 && (flags & 0x08U) != 0) {
      return header_error(err, reason_code::malformed_packet,
                          "PUBLISH: DUP set with QoS 0 [MQTT-3.3.1-2]");
    }
    return decode_status::ok;
  }
  const bool needs_0010 =
      t == packet_type::pubrel || t == packet_type::subscribe || t == packet_type::unsubscribe;
  std::uint8_t checked = flags;
  if (needs_0010 && v == protocol_version::v3_1) {
    // MQTT 3.1 sets DUP on a resent PUBREL/SUBSCRIBE/UNSUBSCRIBE; its value carries nothing.
    checked = static_cast<std::uint8_t>(flags & 0x07U);
  }
  if (checked != (needs_0010 ? 0x02 : 0x00)) {
    return header_error(
        err, reason_code::malformed_packet,
        std::string(to_string(t)) + ": invalid fixed header flags " + std::to_string(flags) +
            (needs_0010 ? " [MQTT-3.6.1-1] [MQTT-3.8.1-1] [MQTT-3.10.1-1]" : " [MQTT-2.2.2-1]"));
  }
  return decode_status::ok;
}

/// Parses byte 1 and the remaining length. ok means the header is complete and valid; the
/// packet body may still be incomplete.
decode_status read_fixed_header(std::string_view in, protocol_version v,
                                std::uint32_t max_packet_size, fixed_header& h, decode_error& err) {
  if (in.empty()) {
    return decode_status::need_more;
  }
  const auto b0 = static_cast<std::uint8_t>(in[0]);
  const unsigned type = b0 >> 4;
  if (type == 0) {
    return header_error(err, reason_code::malformed_packet, "packet type 0 is reserved");
  }
  h.type = static_cast<packet_type>(type);
  if (h.type == packet_type::auth && v != protocol_version::v5) {
    return header_error(err, reason_code::malformed_packet,
                        "AUTH: packet type 15 is reserved before MQTT 5");
  }
  h.flags = static_cast<std::uint8_t>(b0 & 0x0FU);
  if (check_flags(h.type, h.flags, v, err) == decode_status::error) {
    return decode_status::error;
  }
  std::uint32_t value = 0;
  std::size_t i = 1;
  for (;; ++i) {
    if (i > 4) {
      return header_error(err, reason_code::malformed_packet,
                          "remaining length longer than four bytes");
    }
    if (i >= in.size()) {
      return decode_status::need_more;
    }
    const auto b = static_cast<std::uint8_t>(in[i]);
    value |= std::uint32_t{b & 0x7FU} << (7 * (i - 1));
    if ((b & 0x80U) == 0) {
      if (b == 0 && i > 1 && v == protocol_version::v5) {
        return header_error(err, reason_code::malformed_packet,
                            "remaining length is not minimally encoded [MQTT-1.5.5-1]");
      }
      break;
    }
  }
  h.header_size = i + 1;
  h.remaining = value;
  if (std::uint64_t{value} + h.header_size > max_packet_size) {
    return header_error(err, reason_code::packet_too_large,
                        std::string(to_string(h.type)) + ": packet of " +
                            std::to_string(std::uint64_t{value} + h.header_size) +
                            " bytes exceeds the maximum packet size " +
                            std::to_string(max_packet_size));
  }
  return decode_status::ok;
}

/// Whether packet type T carries MQTT 5 properties.
template <class T, class = void>
struct has_props : std::false_type {};
template <class T>
struct has_props<T, std::void_t<decltype(std::declval<T&>().props)>> : std::true_type {};

// -- packet bodies --

bool read_protocol(reader& r, protocol_version& version) {
  std::string_view name;
  if (!r.binary(name, "protocol name")) {
    return false;
  }
  std::uint8_t level = 0;
  if (!r.u8(level, "protocol level")) {
    return false;
  }
  r.error().connect_level = level;
  if (name != "MQTT" && name != "MQIsdp") {
    // MQTT 5 lets the server answer CONNACK 0x84; 3.1.1 closes without one [MQTT-3.1.4-1].
    r.error().bad_protocol_name = true;
    return r.fail(reason_code::unsupported_protocol_version,
                  "unknown protocol name [MQTT-3.1.2-1]");
  }
  const bool is_mqtt = name == "MQTT";
  if ((is_mqtt && (level == 4 || level == 5)) || (!is_mqtt && level == 3)) {
    version = static_cast<protocol_version>(level);
    return true;
  }
  return r.fail(reason_code::unsupported_protocol_version,
                "unsupported protocol level " + std::to_string(level) + " for " +
                    std::string(name) + " [MQTT-3.1.2-2]");
}

bool read_connect(reader& r, connect& c) {
  if (!read_protocol(r, c.version)) {
    return false;
  }
  const bool is_v5 = c.version == protocol_version::v5;
  std::uint8_t flags = 0;
  if (!r.u8(flags, "connect flags") || !r.u16(c.keep_alive, "keep alive")) {
    return false;
  }
  if ((flags & 0x01U) != 0) {
    return r.fail(reason_code::malformed_packet, "reserved connect flag set [MQTT-3.1.2-3]");
  }
  c.clean_start = (flags & 0x02U) != 0;
  const bool has_will = (flags & 0x04U) != 0;
  const unsigned will_qos = (flags >> 3) & 3U;
  const bool will_retain = (flags & 0x20U) != 0;
  const bool has_password = (flags & 0x40U) != 0;
  const bool has_username = (flags & 0x80U) != 0;
  if (!has_will && (will_qos != 0 || will_retain)) {
    return r.fail(reason_code::malformed_packet,
                  "will QoS or retain set without will flag [MQTT-3.1.2-13] [MQTT-3.1.2-15]");
  }
  if (will_qos == 3) {
    return r.fail(reason_code::malformed_packet, "will QoS 3 [MQTT-3.1.2-14]");
  }
  if (!is_v5 && has_password && !has_username) {
    return r.fail(reason_code::malformed_packet,
                  "password flag without user name flag [MQTT-3.1.2-22]");
  }
  if (is_v5 && (!read_properties(r, context_of(packet_type::connect), c.props) ||
                !check_authentication(r, c.props))) {
    return false;
  }
  std::string_view id;
  if (!r.binary(id, "client identifier")) {
    return false;
  }
  if (!is_valid_utf8(id)) {
    // v5: CONNACK 0x85 (Client Identifier not valid) rather than only "malformed".
    return r.fail(is_v5 ? reason_code::client_identifier_not_valid : reason_code::malformed_packet,
                  "client identifier is not valid MQTT UTF-8 [MQTT-1.5.4-1]");
  }
  c.client_id.assign(id);
  if (has_will) {
    auto& w = c.will_msg.emplace();
    w.q = static_cast<qos>(will_qos);
    w.retain = will_retain;
    if ((is_v5 && !read_properties(r, will_context, w.props)) || !r.utf8(w.topic, "will topic") ||
        !r.binary(w.payload, "will payload")) {
      return false;
    }
  }
  // MQTT 3.1: "the Remaining Length field ... takes precedence over the User Name flag": a
  // client may set the flag and omit the string. Same for the password.
  const bool is_v31 = c.version == protocol_version::v3_1;
  if (has_username && !(is_v31 && r.at_end())) {
    if (!r.utf8(c.username.emplace(), "user name")) {
      return false;
    }
  }
  if (has_password && !(is_v31 && r.at_end())) {
    if (!r.binary(c.password.emplace(), "password")) {
      return false;
    }
  }
  return r.expect_end();
}

bool read_connack(reader& r, protocol_version v, connack& c) {
  std::uint8_t flags = 0;
  if (!r.u8(flags, "acknowledge flags") || !r.u8(c.reason, "reason code")) {
    return false;
  }
  // MQTT 3.1 leaves the byte unused, so only 3.1.1 and 5.0 check its reserved bits.
  if (v != protocol_version::v3_1 && (flags & 0xFEU) != 0) {
    return r.fail(reason_code::malformed_packet, "reserved acknowledge flags set [MQTT-3.2.2-1]");
  }
  c.session_present = (flags & 0x01U) != 0;
  if (v == protocol_version::v5 &&
      (!read_properties(r, context_of(packet_type::connack), c.props) ||
       !check_authentication(r, c.props))) {
    return false;
  }
  return r.expect_end();
}

bool read_publish(reader& r, std::uint8_t flags, protocol_version v, publish& p) {
  p.dup = (flags & 0x08U) != 0;
  p.q = static_cast<qos>((flags >> 1) & 3U);
  p.retain = (flags & 0x01U) != 0;
  std::string_view topic;
  if (!r.utf8(topic, "topic name")) {
    return false;
  }
  if (p.q != qos::at_most_once && !read_packet_id(r, p.packet_id)) {
    return false;
  }
  if (v == protocol_version::v5) {
    if (!read_properties(r, context_of(packet_type::publish), p.props)) {
      return false;
    }
    if (topic.empty() && !p.props.topic_alias) {
      return r.fail(reason_code::protocol_error,
                    "empty topic name without topic alias (spec 3.3.2.1)");
    }
  } else if (topic.empty()) {
    return r.fail(reason_code::protocol_error, "empty topic name [MQTT-4.7.3-1]");
  }
  // One allocation each for topic and payload.
  p.topic.assign(topic);
  p.payload.assign(r.rest());
  return true;
}

bool read_pub_response(reader& r, protocol_version v, packet_type t, pub_response& a) {
  if (!read_packet_id(r, a.packet_id)) {
    return false;
  }
  // MQTT 5: reason code and properties may be omitted (3.4.2.1, 3.4.2.2.1).
  if (v == protocol_version::v5 && !r.at_end()) {
    if (!r.u8(a.reason, "reason code")) {
      return false;
    }
    if (!r.at_end() && !read_properties(r, context_of(t), a.props)) {
      return false;
    }
  }
  return r.expect_end();
}

bool check_subscription_options(reader& r, std::uint8_t o, protocol_version v) {
  if (v != protocol_version::v5) {
    if ((o & 0xFCU) != 0 || (o & 0x03U) == 3) {
      return r.fail(reason_code::malformed_packet,
                    "reserved bits or QoS 3 in requested QoS [MQTT-3-8.3-4]");
    }
    return true;
  }
  if ((o & 0xC0U) != 0) {
    return r.fail(reason_code::malformed_packet,
                  "reserved bits set in subscription options [MQTT-3.8.3-5]");
  }
  if ((o & 0x03U) == 3) {
    return r.fail(reason_code::protocol_error, "maximum QoS 3 in subscription (3.8.3.1)");
  }
  if (((o >> 4) & 0x03U) == 3) {
    return r.fail(reason_code::protocol_error, "retain handling 3 in subscription (3.8.3.1)");
  }
  return true;
}

/// Counts the length-prefixed entries of a SUBSCRIBE/UNSUBSCRIBE payload so the vector is
/// allocated once; `extra` is the number of bytes after each string. Stops at garbage, which
/// the real parse then reports.
std::size_t count_entries(std::string_view payload, std::size_t extra) {
  std::size_t n = 0;
  while (payload.size() >= 2) {
    const std::size_t len = (std::size_t{static_cast<std::uint8_t>(payload[0])} << 8) |
                            static_cast<std::uint8_t>(payload[1]);
    const std::size_t entry = 2 + len + extra;
    if (entry > payload.size()) {
      break;
    }
    payload.remove_prefix(entry);
    ++n;
  }
  return n;
}

bool read_subscribe(reader& r, protocol_version v, subscribe& s) {
  if (!read_packet_id(r, s.packet_id)) {
    return false;
  }
  if (v == protocol_version::v5 &&
      !read_properties(r, context_of(packet_type::subscribe), s.props)) {
    return false;
  }
  if (r.at_end()) {
    return r.fail(reason_code::protocol_error,
                  "no topic filter (3.1.1 [MQTT-3.8.3-3], 5.0 [MQTT-3.8.3-2])");
  }
  reader payload = r.take(r.left());
  s.subscriptions.reserve(count_entries(reader(payload).rest(), 1));
  while (!payload.at_end()) {
    auto& sub = s.subscriptions.emplace_back();
    std::uint8_t o = 0;
    if (!payload.utf8(sub.filter, "topic filter") || !payload.u8(o, "subscription options") ||
        !check_subscription_options(payload, o, v)) {
      return false;
    }
    sub.max_qos = static_cast<qos>(o & 0x03U);
    if (v == protocol_version::v5) {
      sub.no_local = (o & 0x04U) != 0;
      sub.retain_as_published = (o & 0x08U) != 0;
      sub.retain_handling = static_cast<std::uint8_t>((o >> 4) & 0x03U);
      if (sub.no_local && sub.filter.rfind("$share/", 0) == 0) {
        return payload.fail(reason_code::protocol_error,
                            "no local on a shared subscription [MQTT-3.8.3-4]");
      }
    }
  }
  return true;
}

bool read_suback(reader& r, protocol_version v, suback& s) {
  if (!read_packet_id(r, s.packet_id)) {
    return false;
  }
  if (v == protocol_version::v5 && !read_properties(r, context_of(packet_type::suback), s.props)) {
    return false;
  }
  if (r.at_end()) {
    return r.fail(reason_code::protocol_error, "no return code (spec 3.9.3)");
  }
  const std::string_view codes = r.rest();
  if (v != protocol_version::v5) {
    for (const char c : codes) {
      const auto rc = static_cast<std::uint8_t>(c);
      if (rc > 2 && rc != 0x80) {
        return r.fail(reason_code::malformed_packet,
                      "reserved return code " + std::to_string(rc) + " [MQTT-3.9.3-2]");
      }
    }
  }
  s.reasons.assign(codes.begin(), codes.end());
  return true;
}

bool read_unsubscribe(reader& r, protocol_version v, unsubscribe& u) {
  if (!read_packet_id(r, u.packet_id)) {
    return false;
  }
  if (v == protocol_version::v5 &&
      !read_properties(r, context_of(packet_type::unsubscribe), u.props)) {
    return false;
  }
  if (r.at_end()) {
    return r.fail(reason_code::protocol_error, "no topic filter [MQTT-3.10.3-2]");
  }
  reader payload = r.take(r.left());
  u.filters.reserve(count_entries(reader(payload).rest(), 0));
  while (!payload.at_end()) {
    if (!payload.utf8(u.filters.emplace_back(), "topic filter")) {
      return false;
    }
  }
  return true;
}

bool read_unsuback(reader& r, protocol_version v, unsuback& u) {
  if (!read_packet_id(r, u.packet_id)) {
    return false;
  }
  if (v == protocol_version::v5) {
    if (!read_properties(r, context_of(packet_type::unsuback), u.props)) {
      return false;
    }
    if (r.at_end()) {
      return r.fail(reason_code::protocol_error, "no reason code (spec 3.11.3)");
    }
    const std::string_view codes = r.rest();
    u.reasons.assign(codes.begin(), codes.end());
  }
  return r.expect_end();
}

bool read_disconnect(reader& r, protocol_version v, disconnect& d) {
  // MQTT 5: remaining length 0 means reason 0; below 2 there are no properties (3.14.2.1).
  if (v == protocol_version::v5 && !r.at_end()) {
    if (!r.u8(d.reason, "reason code")) {
      return false;
    }
    if (!r.at_end() && !read_properties(r, context_of(packet_type::disconnect), d.props)) {
      return false;
    }
  }
  return r.expect_end();
}

bool read_auth(reader& r, auth& a) {
  // Remaining length 0 means Success without properties (3.15.2.1).
  if (r.at_end()) {
    return true;
  }
  if (!r.u8(a.reason, "reason code") ||
      !read_properties(r, context_of(packet_type::auth), a.props) ||
      !check_authentication(r, a.props)) {
    return false;
  }
  const auto rc = static_cast<reason_code>(a.reason);
  if (rc != reason_code::success && rc != reason_code::continue_authentication &&
      rc != reason_code::re_authenticate) {
    return r.fail(reason_code::protocol_error,
                  "reason code " + std::to_string(a.reason) + " [MQTT-3.15.2-1]");
  }
  return r.expect_end();
}

bool read_body(const fixed_header& h, protocol_version v, reader& r, packet& out) {
  switch (h.type) {
    case packet_type::connect:
      return read_connect(r, out.emplace<connect>());
    case packet_type::connack:
      return read_connack(r, v, out.emplace<connack>());
    case packet_type::publish:
      return read_publish(r, h.flags, v, out.emplace<publish>());
    case packet_type::puback:
      return read_pub_response(r, v, h.type, out.emplace<puback>());
    case packet_type::pubrec:
      return read_pub_response(r, v, h.type, out.emplace<pubrec>());
    case packet_type::pubrel:
      return read_pub_response(r, v, h.type, out.emplace<pubrel>());
    case packet_type::pubcomp:
      return read_pub_response(r, v, h.type, out.emplace<pubcomp>());
    case packet_type::subscribe:
      return read_subscribe(r, v, out.emplace<subscribe>());
    case packet_type::suback:
      return read_suback(r, v, out.emplace<suback>());
    case packet_type::unsubscribe:
      return read_unsubscribe(r, v, out.emplace<unsubscribe>());
    case packet_type::unsuback:
      return read_unsuback(r, v, out.emplace<unsuback>());
    case packet_type::pingreq:
      out.emplace<pingreq>();
      return r.expect_end();
    case packet_type::pingresp:
      out.emplace<pingresp>();
      return r.expect_end();
    case packet_type::disconnect:
      return read_disconnect(r, v, out.emplace<disconnect>());
    case packet_type::auth:
      return read_auth(r, out.emplace<auth>());
  }
  return r.fail(reason_code::malformed_packet, "unknown packet type");  // unreachable
}

// ---------------------------------------------------------------------------------------------
// Writing

void put_u8(std::string& o, std::uint8_t v) { o.push_back(static_cast<char>(v)); }

void put_u16(std::string& o, std::uint16_t v) {
  const char b[2] = {static_cast<char>(v >> 8), static_cast<char>(v & 0xFFU)};
  o.append(b, 2);
}

void put_u32(std::string& o, std::uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>((v >> 16) & 0xFFU),
                     static_cast<char>((v >> 8) & 0xFFU), static_cast<char>(v & 0xFFU)};
  o.append(b, 4);
}

std::size_t varint_size(std::uint32_t v) {
  return v < 0x80U ? 1 : v < 0x4000U ? 2 : v < 0x200000U ? 3 : 4;
}

void put_varint(std::string& o, std::uint32_t v) {
  assert(v <= max_varint);
  do {
    auto b = static_cast<std::uint8_t>(v & 0x7FU);
    v >>= 7;
    if (v != 0) {
      b = static_cast<std::uint8_t>(b | 0x80U);
    }
    put_u8(o, b);
  } while (v != 0);
}

void put_string(std::string& o, std::string_view s) {
  assert(s.size() <= 0xFFFF);
  put_u16(o, static_cast<std::uint16_t>(s.size()));
  o.append(s);
}

// -- properties --

struct varint_value {
  std::uint32_t v;
};

std::size_t value_size(std::uint8_t) { return 1; }
std::size_t value_size(std::uint16_t) { return 2; }
std::size_t value_size(std::uint32_t) { return 4; }
std::size_t value_size(varint_value v) { return varint_size(v.v); }
std::size_t value_size(const std::string& s) { return 2 + s.size(); }
std::size_t value_size(const user_property& u) { return 4 + u.first.size() + u.second.size(); }

void put_value(std::string& o, std::uint8_t v) { put_u8(o, v); }
void put_value(std::string& o, std::uint16_t v) { put_u16(o, v); }
void put_value(std::string& o, std::uint32_t v) { put_u32(o, v); }
void put_value(std::string& o, varint_value v) { put_varint(o, v.v); }
void put_value(std::string& o, const std::string& s) { put_string(o, s); }
void put_value(std::string& o, const user_property& u) {
  put_string(o, u.first);
  put_string(o, u.second);
}

/// Calls f(id, value) for each set property that `context` allows, in identifier order.
/// Properties a packet cannot carry are skipped, so the output always parses.
template <class F>
void for_each_property(const properties& p, std::uint32_t context, F&& f) {
  using pid = property_id;
  auto one = [&](pid id, const auto& field) {
    if (field && is_allowed(id, context)) {
      f(id, *field);
    }
  };
  one(pid::payload_format_indicator, p.payload_format_indicator);
  one(pid::message_expiry_interval, p.message_expiry_interval);
  one(pid::content_type, p.content_type);
  one(pid::response_topic, p.response_topic);
  one(pid::correlation_data, p.correlation_data);
  if (is_allowed(pid::subscription_identifier, context)) {
    for (const std::uint32_t id : p.subscription_identifiers) {
      f(pid::subscription_identifier, varint_value{id});
    }
  }
  one(pid::session_expiry_interval, p.session_expiry_interval);
  one(pid::assigned_client_identifier, p.assigned_client_identifier);
  one(pid::server_keep_alive, p.server_keep_alive);
  one(pid::authentication_method, p.authentication_method);
  one(pid::authentication_data, p.authentication_data);
  one(pid::request_problem_information, p.request_problem_information);
  one(pid::will_delay_interval, p.will_delay_interval);
  one(pid::request_response_information, p.request_response_information);
  one(pid::response_information, p.response_information);
  one(pid::server_reference, p.server_reference);
  one(pid::reason_string, p.reason_string);
  one(pid::receive_maximum, p.receive_maximum);
  one(pid::topic_alias_maximum, p.topic_alias_maximum);
  one(pid::topic_alias, p.topic_alias);
  one(pid::maximum_qos, p.maximum_qos);
  one(pid::retain_available, p.retain_available);
  if (is_allowed(pid::user_property, context)) {
    for (const auto& u : p.user_properties) {
      f(pid::user_property, u);
    }
  }
  one(pid::maximum_packet_size, p.maximum_packet_size);
  one(pid::wildcard_subscription_available, p.wildcard_subscription_available);
  one(pid::subscription_identifier_available, p.subscription_identifier_available);
  one(pid::shared_subscription_available, p.shared_subscription_available);
}

/// The properties of one packet in wire form: the byte count after the property length.
struct property_block {
  const properties* props;
  std::uint32_t context;
  std::uint32_t length;

  /// Bytes including the property length itself.
  std::size_t wire_size() const { return varint_size(length) + length; }
};

property_block measure(const properties& p, std::uint32_t context) {
  if (p.empty()) {
    return {&p, context, 0};  // the common case on the hot path
  }
  std::size_t n = 0;
  for_each_property(p, context, [&n](property_id, const auto& v) { n += 1 + value_size(v); });
  return {&p, context, static_cast<std::uint32_t>(n)};
}

void put_properties(std::string& o, const property_block& b) {
  put_varint(o, b.length);
  if (b.length == 0) {
    return;
  }
  for_each_property(*b.props, b.context, [&o](property_id id, const auto& v) {
    put_u8(o, static_cast<std::uint8_t>(id));
    put_value(o, v);
  });
}

// -- packets --

void put_fixed_header(std::string& o, std::uint8_t b0, std::size_t remaining) {
  assert(remaining <= max_varint);
  make_room(o, o.size() + 1 + varint_size(static_cast<std::uint32_t>(remaining)) + remaining);
  put_u8(o, b0);
  put_varint(o, static_cast<std::uint32_t>(remaining));
}

constexpr std::uint8_t first_byte(packet_type t, unsigned flags = 0) {
  return static_cast<std::uint8_t>((static_cast<unsigned>(t) << 4) | flags);
}

class encoder {
 public:
  encoder(protocol_version v, std::string& out) : is_v5_(v == protocol_version::v5), o_(out) {}

  // CONNECT carries its own protocol level and is encoded by it, mirroring decode_one.
  void operator()(const connect& c) {
    const bool is_v5 = c.version == protocol_version::v5;
    const std::string_view name = c.version == protocol_version::v3_1 ? "MQIsdp" : "MQTT";
    std::size_t n = 2 + name.size() + 1 + 1 + 2 + 2 + c.client_id.size();
    property_block props{};
    property_block will_props{};
    if (is_v5) {
      props = measure(c.props, context_of(packet_type::connect));
      n += props.wire_size();
    }
    std::uint8_t flags = c.clean_start ? 0x02 : 0x00;
    if (c.will_msg) {
      const will& w = *c.will_msg;
      flags = static_cast<std::uint8_t>(flags | 0x04U | (static_cast<unsigned>(w.q) << 3) |
                                        (w.retain ? 0x20U : 0U));
      n += 4 + w.topic.size() + w.payload.size();
      if (is_v5) {
        will_props = measure(w.props, will_context);
        n += will_props.wire_size();
      }
    }
    if (c.username) {
      flags |= 0x80;
      n += 2 + c.username->size();
    }
    if (c.password) {
      flags |= 0x40;
      n += 2 + c.password->size();
    }
    put_fixed_header(o_, first_byte(packet_type::connect), n);
    put_string(o_, name);
    put_u8(o_, static_cast<std::uint8_t>(c.version));
    put_u8(o_, flags);
    put_u16(o_, c.keep_alive);
    if (is_v5) {
      put_properties(o_, props);
    }
    put_string(o_, c.client_id);
    if (c.will_msg) {
      if (is_v5) {
        put_properties(o_, will_props);
      }
      put_string(o_, c.will_msg->topic);
      put_string(o_, c.will_msg->payload);
    }
    if (c.username) {
      put_string(o_, *c.username);
    }
    if (c.password) {
      put_string(o_, *c.password);
    }
  }

  void operator()(const connack& c) {
    const property_block props = block(c.props, packet_type::connack);
    put_fixed_header(o_, first_byte(packet_type::connack), 2 + size_of(props));
    put_u8(o_, c.session_present ? 1 : 0);
    put_u8(o_, c.reason);
    put(props);
  }

  void operator()(const publish& p) {
    const property_block props = block(p.props, packet_type::publish);
    const bool has_id = p.q != qos::at_most_once;
    const std::size_t n = 2 + p.topic.size() + (has_id ? 2 : 0) + size_of(props) + p.payload.size();
    const unsigned flags =
        (p.dup ? 0x08U : 0U) | (static_cast<unsigned>(p.q) << 1) | (p.retain ? 0x01U : 0U);
    put_fixed_header(o_, first_byte(packet_type::publish, flags), n);
    put_string(o_, p.topic);
    if (has_id) {
      put_u16(o_, p.packet_id);
    }
    put(props);
    o_.append(p.payload);
  }

  void operator()(const puback& a) { pub_response(packet_type::puback, 0, a); }
  void operator()(const pubrec& a) { pub_response(packet_type::pubrec, 0, a); }
  void operator()(const pubrel& a) { pub_response(packet_type::pubrel, 2, a); }
  void operator()(const pubcomp& a) { pub_response(packet_type::pubcomp, 0, a); }

  void operator()(const subscribe& s) {
    const property_block props = block(s.props, packet_type::subscribe);
    std::size_t n = 2 + size_of(props);
    for (const auto& sub : s.subscriptions) {
      n += 3 + sub.filter.size();
    }
    put_fixed_header(o_, first_byte(packet_type::subscribe, 2), n);
    put_u16(o_, s.packet_id);
    put(props);
    for (const auto& sub : s.subscriptions) {
      put_string(o_, sub.filter);
      unsigned o = static_cast<unsigned>(sub.max_qos);
      if (is_v5_) {
        o |= (sub.no_local ? 0x04U : 0U) | (sub.retain_as_published ? 0x08U : 0U) |
             ((sub.retain_handling & 0x03U) << 4);
      }
      put_u8(o_, static_cast<std::uint8_t>(o));
    }
  }

  void operator()(const suback& s) {
    const property_block props = block(s.props, packet_type::suback);
    put_fixed_header(o_, first_byte(packet_type::suback), 2 + size_of(props) + s.reasons.size());
    put_u16(o_, s.packet_id);
    put(props);
    for (const std::uint8_t rc : s.reasons) {
      // 3.1.1 knows only one failure code, 0x80 [MQTT-3.9.3-2].
      put_u8(o_, !is_v5_ && rc >= 0x80 ? std::uint8_t{0x80} : rc);
    }
  }

  void operator()(const unsubscribe& u) {
    const property_block props = block(u.props, packet_type::unsubscribe);
    std::size_t n = 2 + size_of(props);
    for (const auto& f : u.filters) {
      n += 2 + f.size();
    }
    put_fixed_header(o_, first_byte(packet_type::unsubscribe, 2), n);
    put_u16(o_, u.packet_id);
    put(props);
    for (const auto& f : u.filters) {
      put_string(o_, f);
    }
  }

  void operator()(const unsuback& u) {
    if (!is_v5_) {
      put_fixed_header(o_, first_byte(packet_type::unsuback), 2);
      put_u16(o_, u.packet_id);
      return;
    }
    const property_block props = block(u.props, packet_type::unsuback);
    put_fixed_header(o_, first_byte(packet_type::unsuback), 2 + size_of(props) + u.reasons.size());
    put_u16(o_, u.packet_id);
    put(props);
    for (const std::uint8_t rc : u.reasons) {
      put_u8(o_, rc);
    }
  }

  void operator()(const pingreq&) { put_fixed_header(o_, first_byte(packet_type::pingreq), 0); }
  void operator()(const pingresp&) { put_fixed_header(o_, first_byte(packet_type::pingresp), 0); }

  void operator()(const disconnect& d) {
    if (!is_v5_) {
      put_fixed_header(o_, first_byte(packet_type::disconnect), 0);
      return;
    }
    reason_and_properties(packet_type::disconnect, 0, std::nullopt, d.reason, d.props);
  }

  void operator()(const auth& a) {
    // AUTH does not exist before MQTT 5; the caller must not ask for it.
    assert(is_v5_);
    if (!is_v5_) {
      return;
    }
    const property_block props = measure(a.props, context_of(packet_type::auth));
    if (a.reason == 0 && props.length == 0) {
      put_fixed_header(o_, first_byte(packet_type::auth), 0);  // 3.15.2.1
      return;
    }
    // Unlike the acks, AUTH has no form with a reason code but no property length.
    put_fixed_header(o_, first_byte(packet_type::auth), 1 + props.wire_size());
    put_u8(o_, a.reason);
    put_properties(o_, props);
  }

 private:
  /// The property block of a packet, empty (and absent from the wire) before MQTT 5.
  property_block block(const properties& p, packet_type t) const {
    if (!is_v5_) {
      return {&p, 0, 0};
    }
    return measure(p, context_of(t));
  }
  std::size_t size_of(const property_block& b) const { return is_v5_ ? b.wire_size() : 0; }
  void put(const property_block& b) {
    if (is_v5_) {
      put_properties(o_, b);
    }
  }

  void pub_response(packet_type t, unsigned flags, const pub_response& a) {
    if (!is_v5_) {
      put_fixed_header(o_, first_byte(t, flags), 2);
      put_u16(o_, a.packet_id);
      return;
    }
    reason_and_properties(t, flags, a.packet_id, a.reason, a.props);
  }

  /// MQTT 5 acks and DISCONNECT: [packet id] [reason code [properties]]. Reason code 0 without
  /// properties is left out entirely (3.4.2.1, 3.14.2.1), and so is an empty property length
  /// after another reason code (3.4.2.2.1, 3.14.2.2.1).
  void reason_and_properties(packet_type t, unsigned flags, std::optional<std::uint16_t> id,
                             std::uint8_t reason, const properties& p) {
    const property_block props = measure(p, context_of(t));
    const std::size_t id_size = id ? 2 : 0;
    if (reason == 0 && props.length == 0) {
      put_fixed_header(o_, first_byte(t, flags), id_size);
      if (id) {
        put_u16(o_, *id);
      }
      return;
    }
    const std::size_t prop_size = props.length == 0 ? 0 : props.wire_size();
    put_fixed_header(o_, first_byte(t, flags), id_size + 1 + prop_size);
    if (id) {
      put_u16(o_, *id);
    }
    put_u8(o_, reason);
    if (prop_size != 0) {
      put_properties(o_, props);
    }
  }

  bool is_v5_;
  std::string& o_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public API

decode_status decode_one(std::string_view in, protocol_version version,
                         std::uint32_t max_packet_size, packet& out, std::size_t& consumed,
                         decode_error& err) {
  consumed = 0;
  err.in_connect = false;
  err.connect_level = 0;
  err.bad_protocol_name = false;
  fixed_header h;
  const decode_status st = read_fixed_header(in, version, max_packet_size, h, err);
  if (st == decode_status::error && err.code == reason_code::packet_too_large &&
      h.type == packet_type::connect) {
    // A CONNECT too large to read: when the bytes naming its level are here, they pick the
    // answer (CONNACK 0x95 for MQTT 5, 4.13).
    auto body = in.substr(h.header_size);
    if (body.size() >= 7 && body.compare(0, 6, std::string_view("\x00\x04MQTT", 6)) == 0) {
      err.in_connect = true;
      err.connect_level = static_cast<std::uint8_t>(body[6]);
    }
  }
  if (st != decode_status::ok) {
    return st;
  }
  if (in.size() - h.header_size < h.remaining) {
    return decode_status::need_more;
  }
  reader r(in.data() + h.header_size, h.remaining, err);
  err.in_connect = h.type == packet_type::connect;
  if (!read_body(h, version, r, out)) {
    err.detail = std::string(to_string(h.type)) + ": " + err.detail;
    return decode_status::error;
  }
  consumed = h.header_size + h.remaining;
  return decode_status::ok;
}

decoder::decoder(std::uint32_t max_packet_size, protocol_version version)
    : max_(max_packet_size), version_(version) {}

void decoder::feed(std::string_view bytes) {
  if (failed_) {
    return;  // the connection is being closed; do not hold more input
  }
  buf_.append(bytes);
}

decode_status decoder::next(packet& out) {
  if (failed_) {
    return decode_status::error;
  }
  const std::string_view pending = std::string_view(buf_).substr(pos_);
  std::size_t consumed = 0;
  const decode_status st = decode_one(pending, version_, max_, out, consumed, err_);
  switch (st) {
    case decode_status::ok:
      pos_ += consumed;
      if (pos_ == buf_.size()) {
        buf_.clear();
        pos_ = 0;
      }
      if (const auto* c = std::get_if<connect>(&out)) {
        version_ = c->version;
        if (buf_.empty()) {
          // Most clients go idle after CONNECT: keep no input buffer for them.
          std::string().swap(buf_);
        }
      }
      break;
    case decode_status::need_more: {
      // Keep only the partial packet, and make room for all of it once its size is known so
      // that appending never grows the buffer past the packet (and so past max_).
      if (pos_ != 0) {
        buf_.erase(0, pos_);
        pos_ = 0;
      }
      fixed_header h;
      decode_error ignored;
      if (read_fixed_header(buf_, version_, max_, h, ignored) == decode_status::ok) {
        const std::size_t total = h.header_size + h.remaining;
        if (total > buf_.capacity()) {
          buf_.reserve(total);  // exact: one packet, at most max_
        }
      }
      break;
    }
    case decode_status::error:
      failed_ = true;
      buf_.clear();
      buf_.shrink_to_fit();
      pos_ = 0;
      break;
  }
  return st;
}

void encode(const packet& p, protocol_version version, std::string& out) {
  std::visit(encoder{version, out}, p);
}

std::string encode(const packet& p, protocol_version version) {
  std::string out;
  encode(p, version, out);
  return out;
}

bool encode_within(const packet& p, protocol_version version, std::uint32_t max,
                   std::string& out) {
  const auto start = out.size();
  encode(p, version, out);
  if (max == 0 || out.size() - start <= max) {
    return true;
  }
  out.resize(start);
  if (version != protocol_version::v5) {
    return false;
  }
  packet lean = p;
  bool stripped = std::visit(
      [](auto& x) {
        if constexpr (std::is_same_v<std::decay_t<decltype(x)>, publish> ||
                      std::is_same_v<std::decay_t<decltype(x)>, connect>) {
          return false;  // their properties are the message's own
        } else if constexpr (has_props<std::decay_t<decltype(x)>>::value) {
          bool any = x.props.reason_string.has_value() || !x.props.user_properties.empty();
          x.props.reason_string.reset();
          x.props.user_properties.clear();
          return any;
        } else {
          return false;
        }
      },
      lean);
  if (!stripped) {
    return false;
  }
  encode(lean, version, out);
  if (out.size() - start > max) {
    out.resize(start);
    return false;
  }
  return true;
}

}  // namespace tern::proto::mqtt
