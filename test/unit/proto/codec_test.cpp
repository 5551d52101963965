// Unit tests for proto/mqtt/codec and packet: spec byte examples, errors, round trips, splits.
#include "proto/mqtt/codec.hpp"

#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proto/mqtt/packet.hpp"

namespace {

using namespace tern::proto::mqtt;

constexpr auto v31 = protocol_version::v3_1;
constexpr auto v311 = protocol_version::v3_1_1;
constexpr auto v5 = protocol_version::v5;

/// One piece of a hand-written packet: a byte or a run of ASCII characters.
struct piece {
  piece(int byte) : text(1, static_cast<char>(byte)) {}  // NOLINT: implicit on purpose
  piece(const char* chars) : text(chars) {}              // NOLINT
  piece(std::string chars) : text(std::move(chars)) {}   // NOLINT
  std::string text;
};

std::string wire(std::initializer_list<piece> pieces) {
  std::string out;
  for (const auto& p : pieces) {
    out += p.text;
  }
  return out;
}

std::string hex(std::string_view s) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (const char c : s) {
    const auto b = static_cast<unsigned char>(c);
    out += digits[b >> 4];
    out += digits[b & 0x0FU];
    out += ' ';
  }
  return out;
}

packet decode_ok(const std::string& bytes, protocol_version v) {
  packet p;
  std::size_t consumed = 0;
  decode_error err;
  const auto st = decode_one(bytes, v, default_max_packet_size, p, consumed, err);
  INFO("bytes: " << hex(bytes) << " error: " << err.detail);
  REQUIRE(st == decode_status::ok);
  REQUIRE(consumed == bytes.size());
  return p;
}

/// The wire bytes decode to `expected` and `expected` encodes to exactly the wire bytes.
void check_exact(const std::string& bytes, const packet& expected, protocol_version v) {
  CHECK(decode_ok(bytes, v) == expected);
  const std::string encoded = encode(expected, v);
  INFO("expected " << hex(bytes) << "\nencoded  " << hex(encoded));
  CHECK(encoded == bytes);
}

decode_error decode_fail(const std::string& bytes, protocol_version v,
                         std::uint32_t max = default_max_packet_size) {
  packet p;
  std::size_t consumed = 12345;
  decode_error err;
  const auto st = decode_one(bytes, v, max, p, consumed, err);
  INFO("bytes: " << hex(bytes));
  REQUIRE(st == decode_status::error);
  CHECK(consumed == 0);
  CHECK_FALSE(err.detail.empty());
  return err;
}

void check_error(const std::string& bytes, protocol_version v, reason_code code) {
  const decode_error err = decode_fail(bytes, v);
  INFO("detail: " << err.detail);
  CHECK(static_cast<int>(err.code) == static_cast<int>(code));
}

void check_round_trip(const packet& p, protocol_version v) {
  const std::string bytes = encode(p, v);
  INFO(to_string(type_of(p)) << " v" << static_cast<int>(v) << ": " << hex(bytes));
  CHECK(decode_ok(bytes, v) == p);
}

// ---------------------------------------------------------------------------------------------
// Sample packets for round trips and split feeds

properties rich_message_properties() {
  properties p;
  p.payload_format_indicator = 1;
  p.message_expiry_interval = 3600;
  p.content_type = "text/plain";
  p.response_topic = "reply/here";
  p.correlation_data = std::string("\x00\x01\xFF", 3);
  p.user_properties = {{"k", "v"}, {"k", "v2"}, {"", ""}};
  return p;
}

connect sample_connect(protocol_version v) {
  connect c;
  c.version = v;
  c.clean_start = false;
  c.keep_alive = 60;
  c.client_id = "client-1";
  c.username = "user";
  c.password = std::string("p\x00w", 3);
  will w;
  w.topic = "last/will";
  w.payload = std::string("\x00gone", 5);
  w.q = qos::exactly_once;
  w.retain = true;
  if (v == v5) {
    w.props = rich_message_properties();
    w.props.will_delay_interval = 30;
    c.props.session_expiry_interval = 0xFFFFFFFF;
    c.props.receive_maximum = 100;
    c.props.maximum_packet_size = 65536;
    c.props.topic_alias_maximum = 10;
    c.props.request_response_information = 1;
    c.props.request_problem_information = 0;
    c.props.user_properties = {{"a", "b"}};
    c.props.authentication_method = "SCRAM-SHA-1";
    c.props.authentication_data = std::string("\x01\x02", 2);
  }
  c.will_msg = w;
  return c;
}

std::vector<packet> samples(protocol_version v) {
  const bool is_v5 = v == v5;
  std::vector<packet> out;
  out.emplace_back(sample_connect(v));

  connect minimal;
  minimal.version = v;
  minimal.client_id = "";
  if (v == v31) {
    minimal.client_id = "x";
  }

  connack ca;
  ca.session_present = true;
  if (is_v5) {
    ca.reason = static_cast<std::uint8_t>(reason_code::success);
    ca.props.session_expiry_interval = 7;
    ca.props.receive_maximum = 20;
    ca.props.maximum_qos = 1;
    ca.props.retain_available = 0;
    ca.props.maximum_packet_size = 1000;
    ca.props.assigned_client_identifier = "auto-1";
    ca.props.topic_alias_maximum = 5;
    ca.props.reason_string = "welcome";
    ca.props.user_properties = {{"node", "n1"}};
    ca.props.wildcard_subscription_available = 1;
    ca.props.subscription_identifier_available = 0;
    ca.props.shared_subscription_available = 1;
    ca.props.server_keep_alive = 30;
    ca.props.response_information = "resp/";
    ca.props.server_reference = "other:1883";
    ca.props.authentication_method = "SCRAM-SHA-1";
    ca.props.authentication_data = "data";
  }
  out.emplace_back(ca);
  out.emplace_back(connack{false, 5, {}});

  publish p0;
  p0.topic = "a/b";
  p0.payload = "hello";
  out.emplace_back(p0);

  publish p1;
  p1.q = qos::at_least_once;
  p1.retain = true;
  p1.dup = true;
  p1.topic = "sensors/\xC3\xA9t\xC3\xA9";  // "été"
  p1.packet_id = 1;
  p1.payload = std::string(300, '\x00');  // two-byte remaining length
  out.emplace_back(p1);

  publish p2;
  p2.q = qos::exactly_once;
  p2.topic = "x";
  p2.packet_id = 65535;
  if (is_v5) {
    p2.props = rich_message_properties();
    p2.props.topic_alias = 3;
    p2.props.subscription_identifiers = {1, 268435455, 128};
  }
  out.emplace_back(p2);

  if (is_v5) {
    publish aliased;
    aliased.props.topic_alias = 3;
    aliased.payload = "via alias";
    out.emplace_back(aliased);
  }

  pub_response ack;
  ack.packet_id = 7;
  pub_response rich_ack = ack;
  if (is_v5) {
    rich_ack.reason = 0x10;
    rich_ack.props.reason_string = "nobody listens";
    rich_ack.props.user_properties = {{"x", "y"}};
  }
  out.emplace_back(puback{ack});
  out.emplace_back(pubrec{ack});
  out.emplace_back(pubrel{ack});
  out.emplace_back(pubcomp{ack});
  out.emplace_back(puback{rich_ack});
  out.emplace_back(pubrec{rich_ack});
  out.emplace_back(pubrel{rich_ack});
  out.emplace_back(pubcomp{rich_ack});
  if (is_v5) {
    pub_response reason_only;
    reason_only.packet_id = 8;
    reason_only.reason = 0x92;
    out.emplace_back(pubrel{reason_only});
  }

  subscribe s;
  s.packet_id = 10;
  s.subscriptions.push_back({"a/+", qos::at_most_once, false, false, 0});
  s.subscriptions.push_back({"b/#", qos::at_least_once, false, false, 0});
  s.subscriptions.push_back({"$share/g/c", qos::exactly_once, false, false, 0});
  if (is_v5) {
    s.subscriptions.push_back({"d", qos::at_least_once, true, true, 2});
    s.subscriptions.push_back({"e", qos::exactly_once, false, true, 1});
    s.props.subscription_identifiers = {42};
    s.props.user_properties = {{"u", "p"}};
  }
  out.emplace_back(s);

  suback sa;
  sa.packet_id = 10;
  sa.reasons = {0, 1, 2, 0x80};
  if (is_v5) {
    sa.reasons.push_back(0x87);
    sa.props.reason_string = "partly";
    sa.props.user_properties = {{"u", "p"}};
  }
  out.emplace_back(sa);

  unsubscribe us;
  us.packet_id = 11;
  us.filters = {"a/+", "b/#"};
  if (is_v5) {
    us.props.user_properties = {{"u", "p"}};
  }
  out.emplace_back(us);

  unsuback ua;
  ua.packet_id = 11;
  if (is_v5) {
    ua.reasons = {0x00, 0x11};
    ua.props.reason_string = "done";
    ua.props.user_properties = {{"u", "p"}};
  }
  out.emplace_back(ua);

  out.emplace_back(pingreq{});
  out.emplace_back(pingresp{});

  if (is_v5) {
    auth au;
    au.reason = static_cast<std::uint8_t>(reason_code::continue_authentication);
    au.props.authentication_method = "SCRAM-SHA-1";
    au.props.authentication_data = std::string("\x00\x01", 2);
    au.props.reason_string = "go on";
    au.props.user_properties = {{"u", "p"}};
    out.emplace_back(au);
    out.emplace_back(auth{});

    disconnect rich;
    rich.reason = static_cast<std::uint8_t>(reason_code::server_moved);
    rich.props.session_expiry_interval = 0;
    rich.props.reason_string = "bye";
    rich.props.server_reference = "elsewhere";
    rich.props.user_properties = {{"u", "p"}};
    out.emplace_back(rich);
    out.emplace_back(disconnect{4, {}});
  }
  out.emplace_back(disconnect{});
  return out;
}

std::string encode_all(const std::vector<packet>& ps, protocol_version v) {
  std::string out;
  for (const auto& p : ps) {
    encode(p, v, out);
  }
  return out;
}

/// Drains `d`, appending decoded packets; fails the test on error.
void drain(decoder& d, std::vector<packet>& out) {
  packet p;
  for (;;) {
    const auto st = d.next(p);
    if (st == decode_status::need_more) {
      return;
    }
    INFO("decoder error: " << d.error().detail);
    REQUIRE(st == decode_status::ok);
    out.push_back(p);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Byte-exact examples

TEST_CASE("3.1.1 CONNECT with will, user name and password", "[codec][v311]") {
  // Variable header as in the 3.1.1 spec example (3.1.2.10): flags 0xCE, keep alive 10.
  const auto bytes = wire({0x10, 0x25, 0,      4, "MQTT", 4,     0xCE, 0, 10,     // header
                           0,    3,    "cid",  0, 3,      "w/t", 0,    3, "bye",  // id, will
                           0,    4,    "user", 0, 4,      "pass"});
  connect c;
  c.version = v311;
  c.clean_start = true;
  c.keep_alive = 10;
  c.client_id = "cid";
  c.will_msg = will{"w/t", "bye", qos::at_least_once, false, {}};
  c.username = "user";
  c.password = "pass";
  check_exact(bytes, c, v311);
  // CONNECT is parsed by its own level whatever the connection version says.
  CHECK(decode_ok(bytes, v5) == packet{c});
}

TEST_CASE("3.1 MQIsdp CONNECT", "[codec][v31]") {
  const auto bytes = wire({0x10, 0x11, 0, 6, "MQIsdp", 3, 0x02, 0, 60, 0, 3, "cid"});
  connect c;
  c.version = v31;
  c.keep_alive = 60;
  c.client_id = "cid";
  check_exact(bytes, c, v311);

  decoder d;
  d.feed(bytes);
  packet p;
  REQUIRE(d.next(p) == decode_status::ok);
  CHECK(d.version() == v31);
}

TEST_CASE("3.1 CONNECT may set the user name flag without a user name", "[codec][v31]") {
  // 3.1: "the Remaining Length field ... takes precedence over the User Name flag".
  const auto bytes = wire({0x10, 0x11, 0, 6, "MQIsdp", 3, 0xC2, 0, 60, 0, 3, "cid"});
  const auto c = std::get<connect>(decode_ok(bytes, v31));
  CHECK_FALSE(c.username);
  CHECK_FALSE(c.password);
}

TEST_CASE("CONNACK 3.1.1", "[codec][v311]") {
  check_exact(wire({0x20, 2, 1, 0}), connack{true, 0, {}}, v311);
  check_exact(wire({0x20, 2, 0, 5}), connack{false, 5, {}}, v311);
}

TEST_CASE("PUBLISH QoS 0, 1 and 2", "[codec][v311]") {
  publish p0;
  p0.topic = "a/b";
  p0.payload = "hi";
  check_exact(wire({0x30, 7, 0, 3, "a/b", "hi"}), p0, v311);

  // Variable header as in the spec example (3.3.2.3): topic "a/b", packet identifier 10.
  publish p1 = p0;
  p1.q = qos::at_least_once;
  p1.retain = true;
  p1.packet_id = 10;
  check_exact(wire({0x33, 9, 0, 3, "a/b", 0, 10, "hi"}), p1, v311);

  publish p2 = p0;
  p2.q = qos::exactly_once;
  p2.dup = true;
  p2.packet_id = 10;
  check_exact(wire({0x3C, 9, 0, 3, "a/b", 0, 10, "hi"}), p2, v311);

  publish empty_payload;
  empty_payload.topic = "t";
  check_exact(wire({0x30, 3, 0, 1, "t"}), empty_payload, v311);
}

TEST_CASE("PUBLISH with a four-byte remaining length", "[codec]") {
  publish p;
  p.topic = "t";
  p.payload = std::string(2'097'152 - 3, 'x');  // remaining length 2^21 needs four bytes
  std::string bytes = encode(p, v311);
  REQUIRE(bytes.size() == 5 + 2'097'152);
  CHECK(bytes.substr(0, 5) == wire({0x30, 0x80, 0x80, 0x80, 0x01}));
  packet out;
  std::size_t consumed = 0;
  decode_error err;
  REQUIRE(decode_one(bytes, v311, 4 * 1024 * 1024, out, consumed, err) == decode_status::ok);
  CHECK(out == packet{p});
}

TEST_CASE("PUBACK, PUBREC, PUBREL, PUBCOMP", "[codec][v311]") {
  pub_response r;
  r.packet_id = 10;
  check_exact(wire({0x40, 2, 0, 10}), puback{r}, v311);
  check_exact(wire({0x50, 2, 0, 10}), pubrec{r}, v311);
  check_exact(wire({0x62, 2, 0, 10}), pubrel{r}, v311);
  check_exact(wire({0x70, 2, 0, 10}), pubcomp{r}, v311);
}

TEST_CASE("SUBSCRIBE with several filters, SUBACK with a failure", "[codec][v311]") {
  // Payload as in the spec example (3.8.3.1): "a/b" QoS 1, "c/d" QoS 2.
  subscribe s;
  s.packet_id = 10;
  s.subscriptions = {{"a/b", qos::at_least_once, false, false, 0},
                     {"c/d", qos::exactly_once, false, false, 0}};
  check_exact(wire({0x82, 14, 0, 10, 0, 3, "a/b", 1, 0, 3, "c/d", 2}), s, v311);

  // Payload as in the spec example (3.9.3): 0, 2, failure.
  suback sa;
  sa.packet_id = 10;
  sa.reasons = {0, 2, 0x80};
  check_exact(wire({0x90, 5, 0, 10, 0, 2, 0x80}), sa, v311);

  // v5 failure codes map to 3.1.1's single failure code.
  suback v5_codes = sa;
  v5_codes.reasons = {0, 0x87};
  CHECK(encode(v5_codes, v311) == wire({0x90, 4, 0, 10, 0, 0x80}));
}

TEST_CASE("UNSUBSCRIBE and UNSUBACK", "[codec][v311]") {
  unsubscribe u;
  u.packet_id = 10;
  u.filters = {"a/b", "c/d"};
  check_exact(wire({0xA2, 12, 0, 10, 0, 3, "a/b", 0, 3, "c/d"}), u, v311);
  unsuback ua;
  ua.packet_id = 10;
  check_exact(wire({0xB0, 2, 0, 10}), ua, v311);
  // v5-only fields are left out under 3.1.1.
  ua.reasons = {0};
  ua.props.reason_string = "x";
  CHECK(encode(ua, v311) == wire({0xB0, 2, 0, 10}));
}

TEST_CASE("PINGREQ, PINGRESP, DISCONNECT", "[codec]") {
  for (const auto v : {v31, v311, v5}) {
    check_exact(wire({0xC0, 0}), pingreq{}, v);
    check_exact(wire({0xD0, 0}), pingresp{}, v);
    check_exact(wire({0xE0, 0}), disconnect{}, v);
  }
}

TEST_CASE("v5 CONNECT with properties and will properties", "[codec][v5]") {
  // Variable header as in the 5.0 spec example (3.1.2.11.11) apart from the flags: flags
  // 0xC6 (user name, password, will, clean start), keep alive 10, session expiry 10.
  // clang-format off
  const auto bytes = wire({0x10, 0x37, 0, 4, "MQTT", 5, 0xC6, 0, 10,
                           15, 0x11, 0, 0, 0, 10, 0x21, 0, 20, 0x26, 0, 1, "k", 0, 1, "v",
                           0, 3, "cid",
                           11, 0x01, 1, 0x03, 0, 1, "t", 0x18, 0, 0, 0, 5,
                           0, 1, "w", 0, 1, "x", 0, 1, "u", 0, 1, "p"});
  // clang-format on
  connect c;
  c.version = v5;
  c.keep_alive = 10;
  c.client_id = "cid";
  c.props.session_expiry_interval = 10;
  c.props.receive_maximum = 20;
  c.props.user_properties = {{"k", "v"}};
  will w;
  w.topic = "w";
  w.payload = "x";
  w.props.will_delay_interval = 5;
  w.props.payload_format_indicator = 1;
  w.props.content_type = "t";
  c.will_msg = w;
  c.username = "u";
  c.password = "p";
  check_exact(bytes, c, v311);

  // The spec's own variable header example: flags 0xC2, keep alive 10, properties 05 11 0000000A.
  const auto spec = wire({0x10, 25, 0,  4, "MQTT", 5,   0xC2, 0, 10,  5, 0x11, 0,
                          0,    0,  10, 0, 1,      "c", 0,    1, "u", 0, 1,    "p"});
  connect s;
  s.version = v5;
  s.keep_alive = 10;
  s.client_id = "c";
  s.props.session_expiry_interval = 10;
  s.username = "u";
  s.password = "p";
  check_exact(spec, s, v5);
}

TEST_CASE("v5 CONNECT may carry a password without a user name", "[codec][v5]") {
  const auto bytes = wire({0x10, 17, 0, 4, "MQTT", 5, 0x42, 0, 0, 0, 0, 1, "c", 0, 1, "p"});
  const auto c = std::get<connect>(decode_ok(bytes, v5));
  CHECK_FALSE(c.username);
  CHECK(c.password == "p");
}

TEST_CASE("v5 CONNACK with properties", "[codec][v5]") {
  connack c;
  c.reason = 0;
  c.props.assigned_client_identifier = "x";
  c.props.topic_alias_maximum = 10;
  check_exact(wire({0x20, 10, 0, 0, 7, 0x12, 0, 1, "x", 0x22, 0, 10}), c, v5);
  check_exact(wire({0x20, 3, 0, 0x87, 0}), connack{false, 0x87, {}}, v5);
}

TEST_CASE("v5 PUBLISH with user properties", "[codec][v5]") {
  publish p;
  p.q = qos::at_least_once;
  p.topic = "a/b";
  p.packet_id = 1;
  p.payload = "hi";
  p.props.user_properties = {{"a", "1"}, {"b", "2"}};
  check_exact(wire({0x32, 24, 0, 3,   "a/b", 0, 1,   14,  // header, property length 14
                    0x26, 0,  1, "a", 0,     1, "1", 0x26, 0, 1, "b", 0, 1, "2", "hi"}),
              p, v5);
  // The order of user properties is kept, duplicates included.
  p.props.user_properties = {{"b", "2"}, {"a", "1"}, {"b", "2"}};
  check_round_trip(p, v5);
}

TEST_CASE("v5 PUBLISH with a topic alias and no topic", "[codec][v5]") {
  publish p;
  p.props.topic_alias = 2;
  p.payload = "x";
  check_exact(wire({0x30, 7, 0, 0, 3, 0x23, 0, 2, "x"}), p, v5);
}

TEST_CASE("v5 acks: short and long forms", "[codec][v5]") {
  pub_response r;
  r.packet_id = 1;
  // Reason 0 without properties: remaining length 2 (3.4.2.1).
  check_exact(wire({0x40, 2, 0, 1}), puback{r}, v5);
  check_exact(wire({0x62, 2, 0, 1}), pubrel{r}, v5);
  // The long forms of the same packet decode alike.
  CHECK(decode_ok(wire({0x40, 3, 0, 1, 0}), v5) == packet{puback{r}});
  CHECK(decode_ok(wire({0x40, 4, 0, 1, 0, 0}), v5) == packet{puback{r}});
  CHECK(decode_ok(wire({0x70, 4, 0, 1, 0, 0}), v5) == packet{pubcomp{r}});

  r.reason = 0x10;
  check_exact(wire({0x40, 3, 0, 1, 0x10}), puback{r}, v5);
  r.props.reason_string = "ok";
  check_exact(wire({0x50, 9, 0, 1, 0x10, 5, 0x1F, 0, 2, "ok"}), pubrec{r}, v5);
  // Reason code and properties are v5-only.
  CHECK(encode(pubrec{r}, v311) == wire({0x50, 2, 0, 1}));
}

TEST_CASE("v5 SUBSCRIBE options, SUBACK and UNSUBACK", "[codec][v5]") {
  subscribe s;
  s.packet_id = 1;
  s.props.subscription_identifiers = {5};
  s.subscriptions = {{"a/b", qos::at_least_once, true, true, 2}};
  check_exact(wire({0x82, 11, 0, 1, 2, 0x0B, 5, 0, 3, "a/b", 0x2D}), s, v5);
  // Under 3.1.1 only the QoS survives.
  CHECK(encode(s, v311) == wire({0x82, 8, 0, 1, 0, 3, "a/b", 1}));

  suback sa;
  sa.packet_id = 1;
  sa.reasons = {1, 0x87};
  check_exact(wire({0x90, 5, 0, 1, 0, 1, 0x87}), sa, v5);

  unsuback ua;
  ua.packet_id = 1;
  ua.reasons = {0, 0x11};
  check_exact(wire({0xB0, 5, 0, 1, 0, 0, 0x11}), ua, v5);

  unsubscribe u;
  u.packet_id = 1;
  u.filters = {"a"};
  check_exact(wire({0xA2, 6, 0, 1, 0, 0, 1, "a"}), u, v5);
}

TEST_CASE("v5 DISCONNECT and AUTH forms", "[codec][v5]") {
  check_exact(wire({0xE0, 0}), disconnect{}, v5);
  check_exact(wire({0xE0, 1, 4}), disconnect{4, {}}, v5);
  CHECK(decode_ok(wire({0xE0, 1, 0}), v5) == packet{disconnect{}});
  CHECK(decode_ok(wire({0xE0, 2, 0, 0}), v5) == packet{disconnect{}});
  disconnect d;
  d.reason = 0x8B;
  d.props.reason_string = "down";
  check_exact(wire({0xE0, 9, 0x8B, 7, 0x1F, 0, 4, "down"}), d, v5);
  // A v5 reason is not sent to a 3.1.1 client.
  CHECK(encode(d, v311) == wire({0xE0, 0}));

  check_exact(wire({0xF0, 0}), auth{}, v5);
  CHECK(decode_ok(wire({0xF0, 2, 0, 0}), v5) == packet{auth{}});
  auth a;
  a.reason = 0x18;
  a.props.authentication_method = "M";
  a.props.authentication_data = "D";
  check_exact(wire({0xF0, 10, 0x18, 8, 0x15, 0, 1, "M", 0x16, 0, 1, "D"}), a, v5);
}

TEST_CASE("the encoder leaves out properties the packet cannot carry", "[codec][v5]") {
  pub_response r;
  r.packet_id = 1;
  r.props.session_expiry_interval = 5;  // not allowed in PUBACK
  CHECK(encode(puback{r}, v5) == wire({0x40, 2, 0, 1}));
}

TEST_CASE("encode appends to the caller's buffer", "[codec]") {
  std::string out = "xy";
  encode(pingreq{}, v311, out);
  encode(pingresp{}, v311, out);
  CHECK(out == wire({"xy", 0xC0, 0, 0xD0, 0}));
}

// ---------------------------------------------------------------------------------------------
// Errors

TEST_CASE("error: remaining length longer than four bytes", "[codec][error]") {
  check_error(wire({0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}), v311, reason_code::malformed_packet);
  // Fails even before the fifth byte arrives.
  check_error(wire({0x30, 0xFF, 0xFF, 0xFF, 0xFF}), v311, reason_code::malformed_packet);
}

TEST_CASE("error: non-minimal remaining length in v5", "[codec][error]") {
  // [MQTT-1.5.5-1]; 3.1.1 has no such rule and is accepted leniently.
  check_error(wire({0xC0, 0x80, 0x00}), v5, reason_code::malformed_packet);
  CHECK(decode_ok(wire({0xC0, 0x80, 0x00}), v311) == packet{pingreq{}});
}

TEST_CASE("error: packet too large as soon as the fixed header is readable", "[codec][error]") {
  // Header of a 16383-byte PUBLISH, nothing else.
  const auto err = decode_fail(wire({0x30, 0xFF, 0x7F}), v311, 100);
  CHECK(err.code == reason_code::packet_too_large);
  // The limit counts the whole packet: 2 header bytes + 98.
  std::string exact = wire({0x30, 98, 0, 1, "t"});
  exact.resize(100, 'x');
  packet p;
  std::size_t consumed = 0;
  decode_error e;
  CHECK(decode_one(exact, v311, 100, p, consumed, e) == decode_status::ok);
  CHECK(decode_one(exact, v311, 99, p, consumed, e) == decode_status::error);
  CHECK(e.code == reason_code::packet_too_large);
}

TEST_CASE("error: a CONNECT too large names its level when its first bytes are there",
          "[codec][error]") {
  packet p;
  std::size_t consumed = 0;
  decode_error e;
  // CONNECT of 1000 bytes, MQTT level 5, limit 100: the level picks the CONNACK (0x95).
  std::string big = wire({0x10, 0xE8, 0x07, 0, 4, "MQTT", 5, 0x02, 0, 60});
  CHECK(decode_one(big, v311, 100, p, consumed, e) == decode_status::error);
  CHECK(e.code == reason_code::packet_too_large);
  CHECK(e.in_connect);
  CHECK(e.connect_level == 5);
  // Only its header here: nothing known of it.
  CHECK(decode_one(wire({0x10, 0xE8, 0x07, 0, 4}), v311, 100, p, consumed, e) ==
        decode_status::error);
  CHECK_FALSE(e.in_connect);
  CHECK(e.connect_level == 0);
  // Another protocol name: not taken for a level.
  CHECK(decode_one(wire({0x10, 0xE8, 0x07, 0, 4, "MQTX", 5}), v311, 100, p, consumed, e) ==
        decode_status::error);
  CHECK_FALSE(e.in_connect);
  // A large PUBLISH is not a CONNECT.
  CHECK(decode_one(wire({0x30, 0xE8, 0x07, 0, 4, "MQTT", 5}), v311, 100, p, consumed, e) ==
        decode_status::error);
  CHECK_FALSE(e.in_connect);
}

TEST_CASE("error: remaining length does not match the content", "[codec][error]") {
  check_error(wire({0xC0, 1, 0}), v311, reason_code::malformed_packet);          // trailing
  check_error(wire({0x40, 3, 0, 1, 0}), v311, reason_code::malformed_packet);    // trailing
  check_error(wire({0x40, 1, 0}), v311, reason_code::malformed_packet);          // short id
  check_error(wire({0x30, 3, 0, 5, "a"}), v311, reason_code::malformed_packet);  // short topic
  check_error(wire({0xB0, 3, 0, 1, 0}), v311, reason_code::malformed_packet);    // unsuback
  check_error(wire({0x20, 3, 0, 0, 0}), v311, reason_code::malformed_packet);    // connack
  check_error(wire({0x20, 3, 0, 0, 5}), v5, reason_code::malformed_packet);      // props
  check_error(wire({0xE0, 1, 0}), v311, reason_code::malformed_packet);          // disconnect
  check_error(wire({0x10, 0x11, 0, 6, "MQIsdp", 3, 0x02, 0, 60, 0, 4, "cid"}), v311,
              reason_code::malformed_packet);
}

TEST_CASE("error: invalid UTF-8 in strings", "[codec][error]") {
  check_error(wire({0x30, 5, 0, 3, "a", 0xFF, "b"}), v311, reason_code::malformed_packet);
  check_error(wire({0x30, 5, 0, 3, "a", 0x00, "b"}), v311, reason_code::malformed_packet);
  check_error(wire({0x30, 5, 0, 3, 0xED, 0xA0, 0x80}), v311,
              reason_code::malformed_packet);  // U+D800
  check_error(wire({0x82, 7, 0, 1, 0, 2, 0xC0, 0xAF, 0}), v311,
              reason_code::malformed_packet);  // overlong
  check_error(wire({0x10, 14, 0, 4, "MQTT", 4, 0x02, 0, 0, 0, 2, 0xC3, 0x28}), v311,
              reason_code::malformed_packet);  // client id
  // User property value.
  check_error(wire({0x30, 12, 0, 1, "t", 8, 0x26, 0, 1, "k", 0, 1, 0xFF, "p"}), v5,
              reason_code::malformed_packet);
}

TEST_CASE("error: reserved fixed header flags", "[codec][error]") {
  check_error(wire({0x80, 6, 0, 1, 0, 1, "a", 0}), v311, reason_code::malformed_packet);
  check_error(wire({0xA0, 5, 0, 1, 0, 1, "a"}), v311, reason_code::malformed_packet);
  check_error(wire({0x60, 2, 0, 1}), v311, reason_code::malformed_packet);
  check_error(wire({0x41, 2, 0, 1}), v311, reason_code::malformed_packet);
  check_error(wire({0xC1, 0}), v5, reason_code::malformed_packet);
  check_error(wire({0x12, 0}), v311, reason_code::malformed_packet);
  check_error(wire({0xE8, 0}), v5, reason_code::malformed_packet);
  // MQTT 3.1 resends SUBSCRIBE/PUBREL with DUP set; that is accepted for 3.1 only.
  CHECK(std::holds_alternative<pubrel>(decode_ok(wire({0x6A, 2, 0, 1}), v31)));
  check_error(wire({0x6A, 2, 0, 1}), v311, reason_code::malformed_packet);
}

TEST_CASE("error: PUBLISH QoS 3", "[codec][error]") {
  check_error(wire({0x36, 5, 0, 1, "t", 0, 1}), v311, reason_code::malformed_packet);
}

TEST_CASE("error: PUBLISH DUP with QoS 0", "[codec][error]") {
  // [MQTT-3.3.1-2]
  check_error(wire({0x38, 3, 0, 1, "t"}), v311, reason_code::malformed_packet);
}

TEST_CASE("error: packet identifier 0", "[codec][error]") {
  check_error(wire({0x32, 5, 0, 1, "t", 0, 0}), v311, reason_code::protocol_error);
  check_error(wire({0x82, 6, 0, 0, 0, 1, "a", 0}), v311, reason_code::protocol_error);
  check_error(wire({0xA2, 5, 0, 0, 0, 1, "a"}), v311, reason_code::protocol_error);
  check_error(wire({0x40, 2, 0, 0}), v5, reason_code::protocol_error);
  check_error(wire({0x62, 2, 0, 0}), v311, reason_code::protocol_error);
  check_error(wire({0x90, 3, 0, 0, 0}), v311, reason_code::protocol_error);
}

TEST_CASE("error: CONNECT with a bad protocol name", "[codec][error]") {
  // [MQTT-3.1.2-1] refused as an unsupported protocol; the level is kept for the answer.
  auto err = decode_fail(wire({0x10, 12, 0, 4, "MQTX", 5, 0x02, 0, 0, 0, 0}), v311);
  CHECK(static_cast<int>(err.code) == static_cast<int>(reason_code::unsupported_protocol_version));
  CHECK(err.in_connect);
  CHECK(err.bad_protocol_name);
  CHECK(err.connect_level == 5);
}

TEST_CASE("error: a failed CONNECT says so, other packets do not", "[codec][error]") {
  auto level = decode_fail(wire({0x10, 12, 0, 4, "MQTT", 6, 0x02, 0, 0, 0, 0}), v311);
  CHECK(level.in_connect);
  CHECK_FALSE(level.bad_protocol_name);
  CHECK(level.connect_level == 6);
  // A reserved flag in a v5 CONNECT: level 5 is known, so the server can answer CONNACK.
  auto flags = decode_fail(wire({0x10, 13, 0, 4, "MQTT", 5, 0x03, 0, 0, 0, 0, 0}), v311);
  CHECK(flags.in_connect);
  CHECK(flags.connect_level == 5);
  auto pub = decode_fail(wire({0x36, 3, 0, 1, "a"}), v5);
  CHECK_FALSE(pub.in_connect);
  // A decoder that read a CONNECT reports a later bad fixed header as not in CONNECT.
  decoder dec;
  dec.feed(wire({0x10, 13, 0, 4, "MQTT", 5, 0x02, 0, 0, 0, 0, 0}));
  dec.feed(wire({0x82, 0x80, 0x00}));  // SUBSCRIBE, non-minimal remaining length
  packet p;
  REQUIRE(dec.next(p) == decode_status::ok);
  REQUIRE(dec.next(p) == decode_status::error);
  CHECK_FALSE(dec.error().in_connect);
}

TEST_CASE("error: v5 CONNECT with a client identifier that is not UTF-8", "[codec][error]") {
  // [MQTT-3.1.3-5] v5 answers CONNACK 0x85; 3.1.1 calls the packet malformed.
  check_error(wire({0x10, 16, 0, 4, "MQTT", 5, 0x02, 0, 0, 0, 0, 3, "a", 0, "b"}), v311,
              reason_code::client_identifier_not_valid);
  check_error(wire({0x10, 15, 0, 4, "MQTT", 4, 0x02, 0, 0, 0, 3, "a", 0, "b"}), v311,
              reason_code::malformed_packet);
}

TEST_CASE("encode_within: drops Reason String and User Properties to fit", "[codec]") {
  disconnect d;
  d.reason = 0x93;
  d.props.reason_string = "too many QoS 2 messages awaiting PUBREL";
  d.props.user_properties.push_back({"k", "v"});
  std::string full;
  REQUIRE(encode_within(d, v5, 0, full));
  CHECK(full == encode(d, v5));
  std::string lean;
  REQUIRE(encode_within(d, v5, 12, lean));  // [MQTT-3.1.2-24] [MQTT-3.14.2-3]
  CHECK(lean.size() <= 12);
  auto back = std::get<disconnect>(decode_ok(lean, v5));
  CHECK(back.reason == 0x93);
  CHECK_FALSE(back.props.reason_string);
  CHECK(back.props.user_properties.empty());
  std::string none = "keep";
  CHECK_FALSE(encode_within(d, v5, 2, none));  // not even the reason code fits
  CHECK(none == "keep");
  // A PUBLISH is never stripped: its properties belong to the message.
  publish p;
  p.topic = "t";
  p.props.user_properties.push_back({"key", "value"});
  std::string out;
  CHECK_FALSE(encode_within(p, v5, 8, out));
  CHECK(out.empty());
}

TEST_CASE("error: CONNECT with an unknown protocol level", "[codec][error]") {
  check_error(wire({0x10, 12, 0, 4, "MQTT", 6, 0x02, 0, 0, 0, 0}), v311,
              reason_code::unsupported_protocol_version);
  check_error(wire({0x10, 12, 0, 4, "MQTT", 3, 0x02, 0, 0, 0, 0}), v311,
              reason_code::unsupported_protocol_version);
  check_error(wire({0x10, 14, 0, 6, "MQIsdp", 4, 0x02, 0, 0, 0, 0}), v311,
              reason_code::unsupported_protocol_version);
}

TEST_CASE("error: CONNECT reserved flag", "[codec][error]") {
  // [MQTT-3.1.2-3]
  check_error(wire({0x10, 12, 0, 4, "MQTT", 4, 0x03, 0, 0, 0, 0}), v311,
              reason_code::malformed_packet);
}

TEST_CASE("error: CONNECT will QoS or retain without will flag", "[codec][error]") {
  check_error(wire({0x10, 12, 0, 4, "MQTT", 4, 0x0A, 0, 0, 0, 0}), v311,
              reason_code::malformed_packet);
  check_error(wire({0x10, 12, 0, 4, "MQTT", 4, 0x22, 0, 0, 0, 0}), v311,
              reason_code::malformed_packet);
  check_error(wire({0x10, 13, 0, 4, "MQTT", 5, 0x22, 0, 0, 0, 0, 0}), v5,
              reason_code::malformed_packet);
}

TEST_CASE("error: CONNECT will QoS 3", "[codec][error]") {
  check_error(wire({0x10, 18, 0, 4, "MQTT", 4, 0x1E, 0, 0, 0, 0, 0, 1, "t", 0, 1, "p"}), v311,
              reason_code::malformed_packet);
}

TEST_CASE("error: 3.1.1 CONNECT password without user name", "[codec][error]") {
  // [MQTT-3.1.2-22]
  check_error(wire({0x10, 15, 0, 4, "MQTT", 4, 0x42, 0, 0, 0, 0, 0, 1, "p"}), v311,
              reason_code::malformed_packet);
}

TEST_CASE("error: SUBSCRIBE without topic filters", "[codec][error]") {
  // [MQTT-3.8.3-3]
  check_error(wire({0x82, 2, 0, 1}), v311, reason_code::protocol_error);
  check_error(wire({0x82, 3, 0, 1, 0}), v5, reason_code::protocol_error);
}

TEST_CASE("error: SUBSCRIBE option reserved bits", "[codec][error]") {
  check_error(wire({0x82, 6, 0, 1, 0, 1, "a", 0x04}), v311, reason_code::malformed_packet);
  check_error(wire({0x82, 6, 0, 1, 0, 1, "a", 0x03}), v311, reason_code::malformed_packet);
  // [MQTT-3.8.3-5]
  check_error(wire({0x82, 7, 0, 1, 0, 0, 1, "a", 0x40}), v5, reason_code::malformed_packet);
}

TEST_CASE("error: SUBSCRIBE retain handling 3 and QoS 3 in v5", "[codec][error]") {
  // "It is a Protocol Error to send a Retain Handling value of 3" (3.8.3.1).
  check_error(wire({0x82, 7, 0, 1, 0, 0, 1, "a", 0x30}), v5, reason_code::protocol_error);
  check_error(wire({0x82, 7, 0, 1, 0, 0, 1, "a", 0x03}), v5, reason_code::protocol_error);
}

TEST_CASE("error: SUBSCRIBE no local on a shared subscription", "[codec][error]") {
  // [MQTT-3.8.3-4]
  check_error(wire({0x82, 14, 0, 1, 0, 0, 8, "$share/g", 0x04}), v5, reason_code::protocol_error);
}

TEST_CASE("error: UNSUBSCRIBE without topic filters", "[codec][error]") {
  // [MQTT-3.10.3-2]
  check_error(wire({0xA2, 2, 0, 1}), v311, reason_code::protocol_error);
  check_error(wire({0xA2, 3, 0, 1, 0}), v5, reason_code::protocol_error);
}

TEST_CASE("error: SUBACK reserved return code in 3.1.1", "[codec][error]") {
  // [MQTT-3.9.3-2]
  check_error(wire({0x90, 3, 0, 1, 3}), v311, reason_code::malformed_packet);
  check_error(wire({0x90, 2, 0, 1}), v311, reason_code::protocol_error);
}

TEST_CASE("error: duplicated property", "[codec][error]") {
  // Two content types in PUBLISH.
  check_error(wire({0x30, 14, 0, 1, "t", 10, 0x03, 0, 2, "ab", 0x03, 0, 2, "cd"}), v5,
              reason_code::protocol_error);
  // Two session expiry intervals in CONNECT.
  check_error(wire({0x10, 24, 0, 4,    "MQTT", 5, 0x02, 0, 0, 10, 0x11, 0,
                    0,    0,  1, 0x11, 0,      0, 0,    2, 0, 1,  "c"}),
              v5, reason_code::protocol_error);
  // Two subscription identifiers in SUBSCRIBE (at most one, 3.8.2.1.2).
  check_error(wire({0x82, 11, 0, 1, 4, 0x0B, 1, 0x0B, 2, 0, 1, "a", 0}), v5,
              reason_code::protocol_error);
}

TEST_CASE("repeatable properties: user property and PUBLISH subscription identifiers", "[codec]") {
  const auto p =
      std::get<publish>(decode_ok(wire({0x30, 22,  0, 1, "t", 18,   0x0B, 1, 0x0B, 2, 0x26, 0,
                                        1,    "k", 0, 1, "v", 0x26, 0,    1, "k",  0, 1,    "v"}),
                                  v5));
  CHECK(p.props.subscription_identifiers == std::vector<std::uint32_t>{1, 2});
  CHECK(p.props.user_properties.size() == 2);
}

TEST_CASE("error: property not allowed in the packet", "[codec][error]") {
  // Session expiry interval in PUBLISH.
  check_error(wire({0x30, 9, 0, 1, "t", 5, 0x11, 0, 0, 0, 1}), v5, reason_code::malformed_packet);
  // Will delay interval in CONNECT's own properties.
  check_error(wire({0x10, 18, 0, 4, "MQTT", 5, 0x02, 0, 0, 5, 0x18, 0, 0, 0, 1, 0, 1, "c"}), v5,
              reason_code::malformed_packet);
  // Topic alias in the will properties.
  check_error(
      wire({0x10, 23, 0, 4, "MQTT", 5, 0x06, 0, 0, 0, 0, 1, "c", 3, 0x23, 0, 1, 0, 1, "t", 0, 0}),
      v5, reason_code::malformed_packet);
}

TEST_CASE("error: unknown property identifier", "[codec][error]") {
  check_error(wire({0x30, 6, 0, 1, "t", 2, 0x05, 0}), v5, reason_code::malformed_packet);
  check_error(wire({0x30, 6, 0, 1, "t", 2, 0x80, 0x01}), v5, reason_code::malformed_packet);
}

TEST_CASE("error: subscription identifier 0", "[codec][error]") {
  check_error(wire({0x82, 8, 0, 1, 2, 0x0B, 0, 0, 1, "a", 0}), v5, reason_code::protocol_error);
  check_error(wire({0x30, 6, 0, 1, "t", 2, 0x0B, 0}), v5, reason_code::protocol_error);
}

TEST_CASE("error: non-minimal variable byte integer in a property", "[codec][error]") {
  check_error(wire({0x30, 7, 0, 1, "t", 3, 0x0B, 0x81, 0x00}), v5, reason_code::malformed_packet);
}

TEST_CASE("error: property length beyond the packet", "[codec][error]") {
  check_error(wire({0x30, 5, 0, 1, "t", 9, 0x01}), v5, reason_code::malformed_packet);
  // A property value cut by the property length.
  check_error(wire({0x30, 8, 0, 1, "t", 2, 0x02, 0, 0, 0}), v5, reason_code::malformed_packet);
}

TEST_CASE("error: property values the spec forbids", "[codec][error]") {
  // Topic alias 0 [MQTT-3.3.2-8].
  check_error(wire({0x30, 7, 0, 1, "t", 3, 0x23, 0, 0}), v5, reason_code::topic_alias_invalid);
  // Receive maximum 0 and maximum packet size 0 (3.1.2.11.3, 3.1.2.11.4).
  check_error(wire({0x10, 16, 0, 4, "MQTT", 5, 0x02, 0, 0, 3, 0x21, 0, 0, 0, 1, "c"}), v5,
              reason_code::protocol_error);
  check_error(wire({0x10, 18, 0, 4, "MQTT", 5, 0x02, 0, 0, 5, 0x27, 0, 0, 0, 0, 0, 1, "c"}), v5,
              reason_code::protocol_error);
  // Request problem information 2.
  check_error(wire({0x10, 15, 0, 4, "MQTT", 5, 0x02, 0, 0, 2, 0x17, 2, 0, 1, "c"}), v5,
              reason_code::protocol_error);
  // Maximum QoS 2 in CONNACK (3.2.2.3.4).
  check_error(wire({0x20, 5, 0, 0, 2, 0x24, 2}), v5, reason_code::protocol_error);
  // Authentication data without method.
  check_error(wire({0x10, 17, 0, 4, "MQTT", 5, 0x02, 0, 0, 4, 0x16, 0, 1, "d", 0, 1, "c"}), v5,
              reason_code::protocol_error);
}

TEST_CASE("error: empty topic", "[codec][error]") {
  check_error(wire({0x30, 3, 0, 0, 0}), v5, reason_code::protocol_error);  // no alias
  check_error(wire({0x30, 2, 0, 0}), v311, reason_code::protocol_error);
}

TEST_CASE("error: AUTH before v5", "[codec][error]") {
  check_error(wire({0xF0, 0}), v311, reason_code::malformed_packet);
  check_error(wire({0xF0, 0}), v31, reason_code::malformed_packet);
}

TEST_CASE("error: AUTH with a reason code other than 0x00, 0x18, 0x19", "[codec][error]") {
  // [MQTT-3.15.2-1]
  check_error(wire({0xF0, 2, 0x87, 0}), v5, reason_code::protocol_error);
  // Reason without property length is not one of the allowed short forms.
  check_error(wire({0xF0, 1, 0x18}), v5, reason_code::malformed_packet);
}

TEST_CASE("error: packet type 0", "[codec][error]") {
  check_error(wire({0x00, 0}), v311, reason_code::malformed_packet);
  check_error(wire({0x00}), v5, reason_code::malformed_packet);
}

TEST_CASE("error: CONNACK reserved acknowledge flags", "[codec][error]") {
  // [MQTT-3.2.2-1]
  check_error(wire({0x20, 2, 2, 0}), v311, reason_code::malformed_packet);
}

TEST_CASE("errors name the packet in their detail", "[codec][error]") {
  const auto err = decode_fail(wire({0x40, 3, 0, 1, 0}), v311);
  CHECK(err.detail.rfind("PUBACK: ", 0) == 0);
}

TEST_CASE("decode_one wants more for every proper prefix and writes nothing", "[codec]") {
  for (const auto v : {v31, v311, v5}) {
    for (const auto& p : samples(v)) {
      const std::string bytes = encode(p, v);
      for (std::size_t n = 0; n < bytes.size(); ++n) {
        packet out = pingresp{};
        std::size_t consumed = 99;
        decode_error err;
        REQUIRE(decode_one(std::string_view(bytes).substr(0, n), v, default_max_packet_size, out,
                           consumed, err) == decode_status::need_more);
        CHECK(consumed == 0);
        CHECK(std::holds_alternative<pingresp>(out));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Round trips

TEST_CASE("round trip of every packet kind in every version", "[codec][round-trip]") {
  for (const auto v : {v31, v311, v5}) {
    const auto ps = samples(v);
    for (const auto& p : ps) {
      check_round_trip(p, v);
    }
    // Every packet kind is covered (AUTH in v5 only).
    std::vector<bool> seen(16, false);
    for (const auto& p : ps) {
      seen[static_cast<std::size_t>(type_of(p))] = true;
    }
    for (std::size_t t = 1; t <= (v == v5 ? 15U : 14U); ++t) {
      INFO("packet type " << t << " v" << static_cast<int>(v));
      CHECK(seen[t]);
    }
  }
}

TEST_CASE("round trip of CONNECT variants", "[codec][round-trip]") {
  for (const auto v : {v31, v311, v5}) {
    connect c;
    c.version = v;
    c.client_id = "c";
    check_round_trip(c, v);
    c.username = "u";
    check_round_trip(c, v);
    c.password = "";
    check_round_trip(c, v);
    c.will_msg = will{"t", "", qos::at_most_once, false, {}};
    check_round_trip(c, v);
    c.will_msg->q = qos::at_least_once;
    c.clean_start = false;
    check_round_trip(c, v);
  }
}

TEST_CASE("properties::empty and equality", "[packet]") {
  properties p;
  CHECK(p.empty());
  p.user_properties.push_back({"a", "b"});
  CHECK_FALSE(p.empty());
  properties q;
  q.shared_subscription_available = 0;
  CHECK_FALSE(q.empty());
  CHECK_FALSE(p == q);
  q = p;
  CHECK(p == q);
  q.user_properties.push_back({"a", "b"});
  CHECK_FALSE(p == q);
  // Every field takes part in equality.
  const auto rich = std::get<connack>(samples(v5)[1]).props;
  properties copy = rich;
  CHECK(copy == rich);
  copy.server_reference = "changed";
  CHECK_FALSE(copy == rich);
}

TEST_CASE("to_string and to_connack_v3", "[packet]") {
  CHECK(std::string(to_string(packet_type::connect)) == "CONNECT");
  CHECK(std::string(to_string(packet_type::unsuback)) == "UNSUBACK");
  CHECK(std::string(to_string(packet_type::auth)) == "AUTH");
  CHECK(to_connack_v3(reason_code::success) == connack_v3::accepted);
  CHECK(to_connack_v3(reason_code::unsupported_protocol_version) ==
        connack_v3::unacceptable_protocol_version);
  CHECK(to_connack_v3(reason_code::client_identifier_not_valid) == connack_v3::identifier_rejected);
  CHECK(to_connack_v3(reason_code::bad_user_name_or_password) ==
        connack_v3::bad_user_name_or_password);
  CHECK(to_connack_v3(reason_code::not_authorized) == connack_v3::not_authorized);
  CHECK(to_connack_v3(reason_code::banned) == connack_v3::not_authorized);
  CHECK(to_connack_v3(reason_code::server_busy) == connack_v3::server_unavailable);
}

// ---------------------------------------------------------------------------------------------
// Incremental decoder

TEST_CASE("decoder yields the same packets for every split point", "[codec][decoder]") {
  for (const auto v : {v31, v311, v5}) {
    const auto expected = samples(v);
    const std::string bytes = encode_all(expected, v);
    for (std::size_t split = 0; split <= bytes.size(); ++split) {
      decoder d;  // starts at 3.1.1; the CONNECT at the front sets the version
      std::vector<packet> got;
      d.feed(std::string_view(bytes).substr(0, split));
      drain(d, got);
      d.feed(std::string_view(bytes).substr(split));
      drain(d, got);
      INFO("v" << static_cast<int>(v) << " split at " << split);
      REQUIRE(got == expected);
      CHECK(d.buffered() == 0);
      CHECK(d.version() == v);
    }
  }
}

TEST_CASE("decoder keeps no input buffer after a CONNECT it consumed whole", "[codec][decoder]") {
  for (const auto v : {v31, v311, v5}) {
    std::string bytes;
    encode(packet{sample_connect(v)}, v, bytes);
    REQUIRE(bytes.size() > 15);  // larger than std::string's inline buffer
    decoder d;
    d.feed(bytes);
    CHECK(d.heap_bytes() > 0);
    packet p;
    REQUIRE(d.next(p) == decode_status::ok);
    CHECK(std::holds_alternative<connect>(p));
    CHECK(d.heap_bytes() == 0);
    // A CONNECT followed by part of the next packet keeps that part.
    decoder d2;
    d2.feed(bytes + std::string("\x30\x10", 2));
    REQUIRE(d2.next(p) == decode_status::ok);
    CHECK(d2.buffered() == 2);
    CHECK(d2.next(p) == decode_status::need_more);
  }
}

TEST_CASE("decoder fed one byte at a time", "[codec][decoder]") {
  for (const auto v : {v31, v311, v5}) {
    const auto expected = samples(v);
    const std::string bytes = encode_all(expected, v);
    decoder d(default_max_packet_size, v);
    std::vector<packet> got;
    for (const char c : bytes) {
      d.feed(std::string_view(&c, 1));
      drain(d, got);
    }
    CHECK(got == expected);
    CHECK(d.buffered() == 0);
  }
}

TEST_CASE("decoder uses the version of a decoded CONNECT", "[codec][decoder]") {
  decoder d;
  CHECK(d.version() == v311);
  d.feed(encode(sample_connect(v5), v5));
  // A v5 DISCONNECT with a reason would be malformed under 3.1.1.
  d.feed(wire({0xE0, 1, 4}));
  packet p;
  REQUIRE(d.next(p) == decode_status::ok);
  CHECK(d.version() == v5);
  REQUIRE(d.next(p) == decode_status::ok);
  CHECK(p == packet{disconnect{4, {}}});
}

TEST_CASE("decoder enforces the maximum packet size without buffering", "[codec][decoder]") {
  decoder d(1000);
  // The fixed header of a 1 MB PUBLISH: remaining length 1048576 = 80 80 40.
  d.feed(wire({0x30, 0x80, 0x80}));
  packet p;
  CHECK(d.next(p) == decode_status::need_more);
  d.feed(wire({0x40}));
  CHECK(d.next(p) == decode_status::error);
  CHECK(d.error().code == reason_code::packet_too_large);
  CHECK(d.buffered() == 0);
  // The decoder stays failed and holds no more input.
  d.feed(std::string(5000, 'x'));
  CHECK(d.buffered() == 0);
  CHECK(d.next(p) == decode_status::error);
}

TEST_CASE("decoder max packet size applies per packet", "[codec][decoder]") {
  publish pub;
  pub.topic = "t";
  pub.payload = std::string(90, 'x');
  const std::string one = encode(pub, v311);  // 2 + 3 + 90 = 95 bytes
  REQUIRE(one.size() == 95);
  decoder d(95);
  std::string many;
  for (int i = 0; i < 5; ++i) {
    many += one;
  }
  d.feed(many);
  std::vector<packet> got;
  drain(d, got);
  CHECK(got.size() == 5);
  d.set_max_packet_size(94);
  d.feed(one);
  packet p;
  CHECK(d.next(p) == decode_status::error);
  CHECK(d.error().code == reason_code::packet_too_large);
}

TEST_CASE("decoder keeps only the partial packet", "[codec][decoder]") {
  decoder d;
  const std::string ping = wire({0xC0, 0});
  d.feed(ping + ping + wire({0x30, 10, 0, 1}));
  packet p;
  REQUIRE(d.next(p) == decode_status::ok);
  REQUIRE(d.next(p) == decode_status::ok);
  REQUIRE(d.next(p) == decode_status::need_more);
  CHECK(d.buffered() == 4);
  d.feed(wire({"t", "1234567"}));
  REQUIRE(d.next(p) == decode_status::ok);
  CHECK(std::get<publish>(p).payload == "1234567");
  CHECK(d.buffered() == 0);
}

TEST_CASE("decoder stays in the error state", "[codec][decoder]") {
  decoder d;
  d.feed(wire({0xC0, 0, 0x00, 0, 0xC0, 0}));
  packet p;
  CHECK(d.next(p) == decode_status::ok);
  CHECK(d.next(p) == decode_status::error);
  CHECK(d.error().code == reason_code::malformed_packet);
  d.feed(wire({0xC0, 0}));
  CHECK(d.next(p) == decode_status::error);
}
