// Bridges without sockets: config parsing, rule matching and prefix mapping, the bounded
// outgoing queue, and the MQTT client session (CONNECT, subscriptions, QoS 1/2 both ways,
// resends after a reconnect, keepalive).
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "actors/bridge/client_session.hpp"
#include "actors/bridge/rules.hpp"
#include "actors/config/config.hpp"
#include "proto/mqtt/codec.hpp"

#ifndef TERN_SOURCE_DIR
#error "TERN_SOURCE_DIR must name the project root"
#endif

namespace {

using namespace std::chrono_literals;
using namespace tern::actors::bridge;
namespace config = tern::actors::config;
namespace mqtt = tern::proto::mqtt;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

config::config parse_ok(const std::string& text) {
  auto r = config::parse(text, "b.toml");
  if (auto* e = std::get_if<config::config_error>(&r)) {
    FAIL("rejected: " << e->message);
  }
  return std::get<config::config>(r);
}

std::string parse_err(const std::string& text) {
  auto r = config::parse(text, "b.toml");
  REQUIRE(std::holds_alternative<config::config_error>(r));
  return std::get<config::config_error>(r).message;
}

rule make_rule(std::string filter, direction d, mqtt::qos q = mqtt::qos::exactly_once,
               std::string lp = "", std::string rp = "") {
  return rule{std::move(filter), d, q, std::move(lp), std::move(rp)};
}

tern::actors::message_ptr msg(const std::string& payload, mqtt::qos q = mqtt::qos::at_least_once) {
  auto m = std::make_shared<tern::actors::message>();
  m->payload = payload;
  m->q = q;
  return m;
}

outgoing out(const std::string& topic, const std::string& payload, mqtt::qos q) {
  return outgoing{msg(payload, q), topic, q, false};
}

template <class T>
std::vector<T> of_type(const step& s) {
  std::vector<T> v;
  for (auto& p : s.send) {
    if (auto* x = std::get_if<T>(&p)) {
      v.push_back(*x);
    }
  }
  return v;
}

const auto t0 = clock::time_point{} + 1000s;

session_options opts(std::size_t max_inflight = 32, std::size_t max_queued = 100) {
  session_options o;
  o.client_id = "n1-bridge-up";
  o.keepalive = 10s;
  o.max_inflight = max_inflight;
  o.max_queued = max_queued;
  return o;
}

std::vector<rule> both_rules() {
  return {make_rule("sensors/#", direction::out, mqtt::qos::exactly_once, "", "site1/"),
          make_rule("cmd/#", direction::in, mqtt::qos::at_least_once, "from-b/", "site1/")};
}

/// A session that has connected (CONNECT written, CONNACK accepted).
step connect(client_session& s, bool session_present = false) {
  s.on_open(t0);
  return s.on_packet(mqtt::connack{session_present, 0, {}}, t0);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Config

TEST_CASE("bridge config: a full bridge parses", "[bridge][config]") {
  auto c = parse_ok(R"(
[bridges.upstream]
address = "[::1]:1884"
client_id = "edge"
username = "u"
password = "p"
clean_session = false
keepalive = "30s"
reconnect_interval = "250ms"
protocol = "v5"
node = "n1"
max_queued = 50
max_inflight = 4
tls = true
cacertfile = "ca.pem"
certfile = "c.pem"
keyfile = "c.key"
verify = false
server_name = "broker.example"
topics = [
  { filter = "sensors/#", direction = "out", qos = 0, local_prefix = "a/", remote_prefix = "site1/" },
  { filter = "cmd/+", direction = "both" },
]
)");
  REQUIRE(c.bridges.count("upstream") == 1);
  const auto& b = c.bridges.at("upstream");
  CHECK(b.name == "upstream");
  CHECK(b.address == "[::1]:1884");
  CHECK(b.client_id == "edge");
  CHECK(b.username == "u");
  CHECK(b.password == "p");
  CHECK_FALSE(b.clean_session);
  CHECK(b.keepalive == 30s);
  CHECK(b.reconnect_interval == 250ms);
  CHECK(b.protocol == "v5");
  CHECK(b.node == "n1");
  CHECK(b.max_queued == 50);
  CHECK(b.max_inflight == 4);
  CHECK(b.tls);
  CHECK(b.cacertfile == "ca.pem");
  CHECK(b.certfile == "c.pem");
  CHECK(b.keyfile == "c.key");
  CHECK_FALSE(b.verify);
  CHECK(b.server_name == "broker.example");
  REQUIRE(b.topics.size() == 2);
  CHECK(b.topics[0].filter == "sensors/#");
  CHECK(b.topics[0].direction == "out");
  CHECK(b.topics[0].qos == 0);
  CHECK(b.topics[0].local_prefix == "a/");
  CHECK(b.topics[0].remote_prefix == "site1/");
  CHECK(b.topics[1].direction == "both");
  CHECK(b.topics[1].qos == 1);  // default
  CHECK(b.topics[1].local_prefix.empty());
}

TEST_CASE("bridge config: errors name the file, line and key", "[bridge][config]") {
  CHECK_THAT(parse_err("[bridges.x]\naddress = \"nohost\"\ntopics = [{ filter = \"a\" }]\n"),
             StartsWith("b.toml:2: bridges.x.address: "));
  CHECK_THAT(parse_err("[bridges.x]\naddress = \"h:1\"\nprotocol = \"v3\"\n"
                       "topics = [{ filter = \"a\" }]\n"),
             StartsWith("b.toml:3: bridges.x.protocol: ") && Contains("v4, v5"));
  CHECK_THAT(parse_err("[bridges.x]\naddress = \"h:1\"\n"
                       "topics = [{ filter = \"a\", direction = \"sideways\" }]\n"),
             StartsWith("b.toml:3: bridges.x.topics: ") && Contains("out, in, both"));
  CHECK_THAT(parse_err("[bridges.x]\naddress = \"h:1\"\ntopics = [{ filter = \"a/#/b\" }]\n"),
             StartsWith("b.toml:3: bridges.x.topics: ") && Contains("invalid topic filter"));
  CHECK_THAT(parse_err("[bridges.x]\naddress = \"h:1\"\n"
                       "topics = [{ filter = \"a\", remote_prefix = \"+/\" }]\n"),
             Contains("wildcards"));
  CHECK_THAT(parse_err("[bridges.x]\naddress = \"h:1\"\ntopics = [{ filter = \"a\", qos = 3 }]\n"),
             StartsWith("b.toml:3: bridges.x.topics: "));
  CHECK_THAT(parse_err("[bridges.x]\naddress = \"h:1\"\ntopics = [{ filter = \"a\", x = 1 }]\n"),
             Contains("unknown key \"x\""));
  CHECK_THAT(parse_err("[bridges.x]\naddress = \"h:1\"\ntopics = [{ filter = \"a\" }]\nfoo = 1\n"),
             StartsWith("b.toml:4: bridges.x.foo: unknown key"));
  CHECK_THAT(parse_err("[bridges.x]\ntopics = [{ filter = \"a\" }]\n"),
             StartsWith("b.toml:1: bridges.x: ") && Contains("address"));
  CHECK_THAT(parse_err("[bridges.x]\naddress = \"h:1\"\ncertfile = \"c.pem\"\n"
                       "topics = [{ filter = \"a\" }]\n"),
             StartsWith("b.toml:1: bridges.x: ") && Contains("keyfile"));
  CHECK_THAT(parse_err("[bridges.x]\naddress = \"h:1\"\n"),
             StartsWith("b.toml:1: bridges.x: ") && Contains("topic rule"));
  CHECK_THAT(parse_err("[bridges.x]\naddress = \"h:1\"\nreconnect_interval = \"1ms\"\n"
                       "topics = [{ filter = \"a\" }]\n"),
             StartsWith("b.toml:3: bridges.x.reconnect_interval: "));
}

TEST_CASE("bridge config: none by default; etc/tern.toml's example shows the defaults",
          "[bridge][config]") {
  CHECK(config::config{}.bridges.empty());
  auto shipped = config::load_file(std::string(TERN_SOURCE_DIR) + "/etc/tern.toml");
  REQUIRE(std::holds_alternative<config::config>(shipped));
  CHECK(std::get<config::config>(shipped).bridges.empty());  // shipped with none configured
  std::ifstream in(std::string(TERN_SOURCE_DIR) + "/etc/tern.toml");
  REQUIRE(in);
  std::string line;
  std::string example;
  bool inside = false;
  while (std::getline(in, line)) {
    if (line == "# BEGIN bridge example") {
      inside = true;
    } else if (line == "# END bridge example") {
      inside = false;
    } else if (inside) {
      REQUIRE(line.rfind("# ", 0) == 0);
      example += line.substr(2) + "\n";
    }
  }
  REQUIRE_FALSE(example.empty());
  auto c = parse_ok(example);
  REQUIRE(c.bridges.size() == 1);
  const auto& b = c.bridges.at("upstream");
  const config::bridge_config d;
  CHECK(b.client_id == d.client_id);
  CHECK(b.username == d.username);
  CHECK(b.password == d.password);
  CHECK(b.clean_session == d.clean_session);
  CHECK(b.keepalive == d.keepalive);
  CHECK(b.reconnect_interval == d.reconnect_interval);
  CHECK(b.protocol == d.protocol);
  CHECK(b.node == d.node);
  CHECK(b.max_queued == d.max_queued);
  CHECK(b.max_inflight == d.max_inflight);
  CHECK(b.tls == d.tls);
  CHECK(b.cacertfile == d.cacertfile);
  CHECK(b.certfile == d.certfile);
  CHECK(b.keyfile == d.keyfile);
  CHECK(b.verify == d.verify);
  CHECK(b.server_name == d.server_name);
  CHECK(b.topics.size() == 2);
}

TEST_CASE("bridge: runs only on the node it names", "[bridge]") {
  config::bridge_config b;
  CHECK(runs_on(b, "n1"));
  b.node = "n1";
  CHECK(runs_on(b, "n1"));
  CHECK_FALSE(runs_on(b, "n2"));
  b.node = "*";  // decided at run time among the live members
  CHECK(runs_on(b, "n2"));
}

// ---------------------------------------------------------------------------------------------
// Rules and prefixes

TEST_CASE("bridge rules: out maps local_prefix+X to remote_prefix+X", "[bridge]") {
  std::vector<rule> rules{
      make_rule("sensors/#", direction::out, mqtt::qos::at_least_once, "local/", "site1/")};
  auto m = map_out(rules, "local/sensors/t1", mqtt::qos::exactly_once);
  REQUIRE(m);
  CHECK(m->topic == "site1/sensors/t1");
  CHECK(m->q == mqtt::qos::at_least_once);  // min(message, rule)
  CHECK(map_out(rules, "local/sensors/t1", mqtt::qos::at_most_once)->q == mqtt::qos::at_most_once);
  CHECK_FALSE(map_out(rules, "sensors/t1", mqtt::qos::at_least_once));  // no local prefix
  CHECK_FALSE(map_out(rules, "local/other", mqtt::qos::at_least_once));
  CHECK_FALSE(map_in(rules, "site1/sensors/t1", mqtt::qos::at_least_once));  // out only
}

TEST_CASE("bridge rules: in maps remote_prefix+X to local_prefix+X", "[bridge]") {
  std::vector<rule> rules{
      make_rule("cmd/+", direction::in, mqtt::qos::exactly_once, "from-b/", "site1/")};
  auto m = map_in(rules, "site1/cmd/reboot", mqtt::qos::exactly_once);
  REQUIRE(m);
  CHECK(m->topic == "from-b/cmd/reboot");
  CHECK(m->q == mqtt::qos::exactly_once);
  CHECK_FALSE(map_in(rules, "site1/cmd/a/b", mqtt::qos::at_least_once));  // '+' is one level
  CHECK_FALSE(map_in(rules, "cmd/reboot", mqtt::qos::at_least_once));
  CHECK_FALSE(map_out(rules, "from-b/cmd/reboot", mqtt::qos::at_least_once));  // in only
}

TEST_CASE("bridge rules: both, first matching rule, wildcard and $ topics", "[bridge]") {
  std::vector<rule> rules{make_rule("a/#", direction::both, mqtt::qos::at_most_once),
                          make_rule("#", direction::out, mqtt::qos::exactly_once, "", "all/")};
  CHECK(map_out(rules, "a/x", mqtt::qos::exactly_once)->topic == "a/x");
  CHECK(map_out(rules, "a/x", mqtt::qos::exactly_once)->q == mqtt::qos::at_most_once);
  CHECK(map_out(rules, "b/x", mqtt::qos::exactly_once)->topic == "all/b/x");
  CHECK(map_in(rules, "a/x", mqtt::qos::at_least_once)->topic == "a/x");
  // [MQTT-4.7.2-1] a leading wildcard does not match $ topics.
  CHECK_FALSE(map_out(rules, "$SYS/x", mqtt::qos::at_most_once));
  CHECK(rules[0].local_filter() == "a/#");
  CHECK(rules[1].remote_filter() == "all/#");
}

TEST_CASE("bridge rules: prefix replacement and the config's rules", "[bridge]") {
  CHECK(replace_prefix("a/b/c", "a/", "x/y/") == "x/y/b/c");
  CHECK(replace_prefix("a/b", "", "p/") == "p/a/b");
  CHECK(replace_prefix("p/a/b", "p/", "") == "a/b");
  config::bridge_config c;
  c.topics.push_back({"s/#", "both", 2, "l/", "r/"});
  auto rules = rules_from(c);
  REQUIRE(rules.size() == 1);
  CHECK(rules[0].dir == direction::both);
  CHECK(rules[0].q == mqtt::qos::exactly_once);
  CHECK(rules[0].is_in());
  CHECK(rules[0].is_out());
}

// ---------------------------------------------------------------------------------------------
// Outgoing queue

TEST_CASE("bridge outbox: when full, the oldest QoS 0 goes first", "[bridge]") {
  outbox q(3);
  CHECK(q.push(out("t", "1", mqtt::qos::at_least_once)) == 0);
  CHECK(q.push(out("t", "2", mqtt::qos::at_most_once)) == 0);
  CHECK(q.push(out("t", "3", mqtt::qos::at_most_once)) == 0);
  CHECK(q.push(out("t", "4", mqtt::qos::at_least_once)) == 1);  // "2" dropped
  std::vector<std::string> left;
  while (auto m = q.pop()) {
    left.push_back(m->msg->payload);
  }
  CHECK(left == std::vector<std::string>{"1", "3", "4"});
}

TEST_CASE("bridge outbox: full of QoS 1, a new QoS 0 is dropped, a new QoS 1 drops the oldest",
          "[bridge]") {
  outbox q(2);
  q.push(out("t", "1", mqtt::qos::at_least_once));
  q.push(out("t", "2", mqtt::qos::exactly_once));
  CHECK(q.push(out("t", "x", mqtt::qos::at_most_once)) == 1);
  CHECK(q.size() == 2);
  CHECK(q.front().msg->payload == "1");
  CHECK(q.push(out("t", "3", mqtt::qos::at_least_once)) == 1);
  CHECK(q.pop()->msg->payload == "2");
  CHECK(q.pop()->msg->payload == "3");
  CHECK_FALSE(q.pop());
}

// ---------------------------------------------------------------------------------------------
// Client session

TEST_CASE("bridge session: CONNECT carries the options", "[bridge]") {
  auto o = opts();
  o.username = "u";
  o.password = "p";
  o.clean_session = false;
  o.version = mqtt::protocol_version::v5;
  client_session s(o, both_rules());
  auto st = s.on_open(t0);
  REQUIRE(st.send.size() == 1);
  auto& c = std::get<mqtt::connect>(st.send[0]);
  CHECK(c.client_id == "n1-bridge-up");
  CHECK(c.keep_alive == 10);
  CHECK_FALSE(c.clean_start);
  CHECK(c.username == std::optional<std::string>("u"));
  CHECK(c.password == std::optional<std::string>("p"));
  CHECK(c.version == mqtt::protocol_version::v5);
  CHECK(c.props.session_expiry_interval.has_value());
  CHECK_FALSE(s.is_connected());

  client_session anon(opts(), both_rules());
  auto& c2 = std::get<mqtt::connect>(anon.on_open(t0).send[0]);
  CHECK_FALSE(c2.username);
  CHECK_FALSE(c2.password);
  CHECK(c2.clean_start);
}

TEST_CASE("bridge session: CONNACK subscribes the in rules (No Local under v5)", "[bridge]") {
  for (auto v : {mqtt::protocol_version::v3_1_1, mqtt::protocol_version::v5}) {
    auto o = opts();
    o.version = v;
    client_session s(o, both_rules());
    auto st = connect(s);
    CHECK(st.is_now_connected);
    CHECK(s.is_connected());
    auto subs = of_type<mqtt::subscribe>(st);
    REQUIRE(subs.size() == 1);
    REQUIRE(subs[0].subscriptions.size() == 1);  // the out rule is not subscribed remotely
    CHECK(subs[0].subscriptions[0].filter == "site1/cmd/#");
    CHECK(subs[0].subscriptions[0].max_qos == mqtt::qos::at_least_once);
    CHECK(subs[0].subscriptions[0].no_local == (v == mqtt::protocol_version::v5));
    CHECK(subs[0].packet_id != 0);
  }
}

TEST_CASE("bridge session: a refused CONNECT closes with its code", "[bridge]") {
  client_session s(opts(), both_rules());
  s.on_open(t0);
  auto st = s.on_packet(mqtt::connack{false, 5, {}}, t0);
  CHECK(st.refused == std::optional<std::uint8_t>(5));
  REQUIRE(st.close);
  CHECK_THAT(*st.close, Contains("code 5"));
  CHECK_FALSE(s.is_connected());
  // Anything but CONNACK first is a protocol error.
  client_session s2(opts(), both_rules());
  s2.on_open(t0);
  CHECK(s2.on_packet(mqtt::pingresp{}, t0).close);
}

TEST_CASE("bridge session: queued while away, sent in order after CONNACK within the window",
          "[bridge]") {
  client_session s(opts(2), both_rules());
  for (int i = 0; i < 4; ++i) {
    auto st = s.enqueue(out("site1/sensors/x", std::to_string(i), mqtt::qos::at_least_once), t0);
    CHECK(st.send.empty());  // not connected
  }
  CHECK(s.queued() == 4);
  auto st = connect(s);
  auto pubs = of_type<mqtt::publish>(st);
  REQUIRE(pubs.size() == 2);  // the inflight window
  CHECK(pubs[0].payload == "0");
  CHECK(pubs[1].payload == "1");
  CHECK_FALSE(pubs[0].dup);
  CHECK(pubs[0].q == mqtt::qos::at_least_once);
  CHECK(pubs[0].topic == "site1/sensors/x");
  CHECK(s.inflight() == 2);
  CHECK(s.queued() == 2);
  // An acknowledgement makes room for the next one.
  auto st2 = s.on_packet(mqtt::puback{{pubs[0].packet_id, 0, {}}}, t0);
  auto next = of_type<mqtt::publish>(st2);
  REQUIRE(next.size() == 1);
  CHECK(next[0].payload == "2");
  CHECK(s.counters().forwarded_out == 1);
  // A duplicate acknowledgement changes nothing.
  CHECK(s.on_packet(mqtt::puback{{pubs[0].packet_id, 0, {}}}, t0).send.empty());
  CHECK(s.counters().forwarded_out == 1);
}

TEST_CASE("bridge session: unacknowledged messages are resent with DUP after a reconnect",
          "[bridge]") {
  client_session s(opts(8), both_rules());
  connect(s);
  std::vector<mqtt::publish> first;
  for (int i = 0; i < 3; ++i) {
    auto st = s.enqueue(out("t", std::to_string(i), mqtt::qos::at_least_once), t0);
    auto p = of_type<mqtt::publish>(st);
    REQUIRE(p.size() == 1);
    first.push_back(p[0]);
  }
  s.on_packet(mqtt::puback{{first[1].packet_id, 0, {}}}, t0);  // only "1" got through
  s.on_close();
  CHECK_FALSE(s.is_connected());
  s.enqueue(out("t", "3", mqtt::qos::at_least_once), t0);  // while away
  auto st = connect(s);
  auto again = of_type<mqtt::publish>(st);
  REQUIRE(again.size() == 3);
  CHECK(again[0].payload == "0");
  CHECK(again[0].dup);
  CHECK(again[0].packet_id == first[0].packet_id);
  CHECK(again[1].payload == "2");
  CHECK(again[1].dup);
  CHECK(again[2].payload == "3");
  CHECK_FALSE(again[2].dup);
}

TEST_CASE("bridge session: QoS 2 out (PUBREC -> PUBREL -> PUBCOMP), PUBREL resent", "[bridge]") {
  client_session s(opts(), both_rules());
  connect(s);
  auto p = of_type<mqtt::publish>(s.enqueue(out("t", "x", mqtt::qos::exactly_once), t0));
  REQUIRE(p.size() == 1);
  CHECK(p[0].q == mqtt::qos::exactly_once);
  auto id = p[0].packet_id;
  auto rel = of_type<mqtt::pubrel>(s.on_packet(mqtt::pubrec{{id, 0, {}}}, t0));
  REQUIRE(rel.size() == 1);
  CHECK(rel[0].packet_id == id);
  s.on_close();
  auto st = connect(s);
  CHECK(of_type<mqtt::publish>(st).empty());  // not published twice
  REQUIRE(of_type<mqtt::pubrel>(st).size() == 1);
  s.on_packet(mqtt::pubcomp{{id, 0, {}}}, t0);
  CHECK(s.inflight() == 0);
  CHECK(s.counters().forwarded_out == 1);
}

TEST_CASE("bridge session: the remote's Maximum QoS and Receive Maximum are obeyed", "[bridge]") {
  auto o = opts(8);
  o.version = mqtt::protocol_version::v5;
  client_session s(o, both_rules());
  s.on_open(t0);
  mqtt::connack ca;
  ca.props.maximum_qos = 1;
  ca.props.receive_maximum = 1;
  s.on_packet(ca, t0);
  auto p = of_type<mqtt::publish>(s.enqueue(out("t", "a", mqtt::qos::exactly_once), t0));
  REQUIRE(p.size() == 1);
  CHECK(p[0].q == mqtt::qos::at_least_once);
  CHECK(s.enqueue(out("t", "b", mqtt::qos::at_least_once), t0).send.empty());
  CHECK(s.queued() == 1);
}

TEST_CASE("bridge session: QoS 0 out is written at once, never held in flight", "[bridge]") {
  client_session s(opts(), both_rules());
  connect(s);
  auto p = of_type<mqtt::publish>(s.enqueue(out("t", "a", mqtt::qos::at_most_once), t0));
  REQUIRE(p.size() == 1);
  CHECK(p[0].packet_id == 0);
  CHECK(s.inflight() == 0);
  CHECK(s.counters().forwarded_out == 1);
}

TEST_CASE("bridge session: inbound QoS 1 and 2 are delivered once and acknowledged", "[bridge]") {
  client_session s(opts(), both_rules());
  connect(s);
  mqtt::publish p1;
  p1.topic = "site1/cmd/a";
  p1.payload = "one";
  p1.q = mqtt::qos::at_least_once;
  p1.packet_id = 7;
  auto st = s.on_packet(p1, t0);
  REQUIRE(st.deliver.size() == 1);
  CHECK(st.deliver[0].topic == "from-b/cmd/a");
  CHECK(st.deliver[0].payload == "one");
  REQUIRE(of_type<mqtt::puback>(st).size() == 1);
  CHECK(of_type<mqtt::puback>(st)[0].packet_id == 7);

  mqtt::publish p2 = p1;
  p2.q = mqtt::qos::exactly_once;
  p2.packet_id = 9;
  p2.retain = true;
  st = s.on_packet(p2, t0);
  REQUIRE(st.deliver.size() == 1);
  CHECK(st.deliver[0].retain);
  CHECK(of_type<mqtt::pubrec>(st).size() == 1);
  p2.dup = true;
  st = s.on_packet(p2, t0);  // resent before PUBREL: not delivered again
  CHECK(st.deliver.empty());
  CHECK(of_type<mqtt::pubrec>(st).size() == 1);
  st = s.on_packet(mqtt::pubrel{{9, 0, {}}}, t0);
  REQUIRE(of_type<mqtt::pubcomp>(st).size() == 1);
  st = s.on_packet(p2, t0);  // the id is free again: a new message
  CHECK(st.deliver.size() == 1);

  mqtt::publish stray = p1;
  stray.topic = "elsewhere/x";
  st = s.on_packet(stray, t0);
  CHECK(st.deliver.empty());
  CHECK(of_type<mqtt::puback>(st).size() == 1);  // still acknowledged
}

TEST_CASE("bridge session: keepalive pings and gives up on a silent remote", "[bridge]") {
  client_session s(opts(), both_rules());  // keepalive 10 s
  CHECK(s.on_tick(t0).send.empty());       // not open: nothing
  connect(s);
  CHECK(s.on_tick(t0 + 1s).send.empty());
  CHECK(of_type<mqtt::pingreq>(s.on_tick(t0 + 5s)).size() == 1);
  CHECK(s.on_tick(t0 + 6s).send.empty());
  s.on_packet(mqtt::pingresp{}, t0 + 6s);
  CHECK_FALSE(s.on_tick(t0 + 20s).close);
  CHECK(s.on_tick(t0 + 21s).close);  // 15 s without a packet
}

TEST_CASE("bridge session: no CONNACK in time closes", "[bridge]") {
  client_session s(opts(), both_rules());
  s.on_open(t0);
  CHECK_FALSE(s.on_tick(t0 + 9s).close);
  CHECK(s.on_tick(t0 + 10s).close);
}

TEST_CASE("bridge session: a full queue drops and counts", "[bridge]") {
  client_session s(opts(32, 2), both_rules());
  s.enqueue(out("t", "0", mqtt::qos::at_most_once), t0);
  s.enqueue(out("t", "1", mqtt::qos::at_least_once), t0);
  s.enqueue(out("t", "2", mqtt::qos::at_least_once), t0);
  CHECK(s.counters().dropped == 1);
  auto p = of_type<mqtt::publish>(connect(s));
  REQUIRE(p.size() == 2);
  CHECK(p[0].payload == "1");
  CHECK(p[1].payload == "2");
}

// ---------------------------------------------------------------------------------------------
// The codec on the client side: what a broker sends a bridge decodes, what the bridge sends
// round-trips.

TEST_CASE("bridge codec: a client-side decoder reads the broker's packets, split anywhere",
          "[bridge]") {
  for (auto v : {mqtt::protocol_version::v3_1_1, mqtt::protocol_version::v5}) {
    mqtt::connack ca{true, 0, {}};
    if (v == mqtt::protocol_version::v5) {
      ca.props.receive_maximum = 10;
      ca.props.maximum_qos = 1;
      ca.props.assigned_client_identifier = "x";
    }
    mqtt::publish p;
    p.topic = "site1/cmd/a";
    p.payload = "on";
    p.q = mqtt::qos::exactly_once;
    p.packet_id = 3;
    p.dup = true;
    std::vector<mqtt::packet> sent{ca,
                                   mqtt::suback{1, {1, 0x80}, {}},
                                   p,
                                   mqtt::puback{{2, 0, {}}},
                                   mqtt::pubrec{{4, 0, {}}},
                                   mqtt::pubcomp{{4, 0, {}}},
                                   mqtt::pubrel{{3, 0, {}}},
                                   mqtt::pingresp{}};
    std::string wire;
    for (auto& x : sent) {
      mqtt::encode(x, v, wire);
    }
    mqtt::decoder dec(mqtt::default_max_packet_size, v);
    std::vector<mqtt::packet> got;
    for (char c : wire) {  // one byte at a time
      dec.feed(std::string_view(&c, 1));
      mqtt::packet out;
      while (dec.next(out) == mqtt::decode_status::ok) {
        got.push_back(out);
      }
    }
    REQUIRE(got.size() == sent.size());
    CHECK(std::get<mqtt::connack>(got[0]) == ca);
    CHECK(std::get<mqtt::suback>(got[1]).reasons == std::vector<std::uint8_t>{1, 0x80});
    CHECK(std::get<mqtt::publish>(got[2]) == p);
    CHECK(std::holds_alternative<mqtt::pingresp>(got.back()));
  }
}

TEST_CASE("bridge codec: what the session sends encodes and decodes unchanged", "[bridge]") {
  auto o = opts();
  o.version = mqtt::protocol_version::v5;
  o.username = "u";
  o.password = "p";
  client_session s(o, both_rules());
  std::vector<mqtt::packet> sent;
  for (auto& p : s.on_open(t0).send) {
    sent.push_back(p);
  }
  for (auto& p : s.on_packet(mqtt::connack{false, 0, {}}, t0).send) {
    sent.push_back(p);
  }
  for (auto& p : s.enqueue(out("site1/sensors/x", "v", mqtt::qos::at_least_once), t0).send) {
    sent.push_back(p);
  }
  REQUIRE(sent.size() == 3);  // CONNECT, SUBSCRIBE, PUBLISH
  for (auto& p : sent) {
    auto wire = mqtt::encode(p, o.version);
    mqtt::packet back;
    std::size_t used = 0;
    mqtt::decode_error err;
    REQUIRE(mqtt::decode_one(wire, o.version, mqtt::default_max_packet_size, back, used, err) ==
            mqtt::decode_status::ok);
    CHECK(used == wire.size());
    CHECK(back == p);
  }
}

TEST_CASE("bridge session: pending() lists what a restart must keep; restore() queues it first",
          "[bridge]") {
  client_session s(opts(2), both_rules());
  connect(s);
  auto a = of_type<mqtt::publish>(s.enqueue(out("t", "a", mqtt::qos::exactly_once), t0));
  auto b = of_type<mqtt::publish>(s.enqueue(out("t", "b", mqtt::qos::at_least_once), t0));
  s.enqueue(out("t", "c", mqtt::qos::at_least_once), t0);  // waits for the window
  REQUIRE(a.size() == 1);
  REQUIRE(b.size() == 1);
  std::vector<std::string> names;
  for (auto& o : s.pending()) {
    names.push_back(o.msg->payload);
  }
  CHECK(names == std::vector<std::string>{"a", "b", "c"});
  s.on_packet(mqtt::pubrec{{a[0].packet_id, 0, {}}}, t0);  // the remote has "a"
  names.clear();
  for (auto& o : s.pending()) {
    names.push_back(o.msg->payload);
  }
  CHECK(names == std::vector<std::string>{"b", "c"});

  client_session fresh(opts(8, 3), both_rules());
  fresh.enqueue(out("t", "new", mqtt::qos::at_least_once), t0);
  fresh.restore(s.pending());
  CHECK(fresh.queued() == 3);
  auto p = of_type<mqtt::publish>(connect(fresh));
  REQUIRE(p.size() == 3);
  CHECK(p[0].payload == "b");
  CHECK(p[1].payload == "c");
  CHECK(p[2].payload == "new");
  CHECK_FALSE(p[0].dup);
}

TEST_CASE("bridge session: a message kept on disk is released once the remote has it",
          "[bridge][store]") {
  auto stored = [](const std::string& payload, mqtt::qos q, std::uint64_t seq) {
    auto o = out("t", payload, q);
    o.seq = seq;
    return o;
  };
  client_session s(opts(8, 3), both_rules());
  // Queued while the remote is away: nothing is released.
  s.enqueue(stored("a", mqtt::qos::at_least_once, 1), t0);
  s.enqueue(stored("b", mqtt::qos::exactly_once, 2), t0);
  s.enqueue(out("t", "zero", mqtt::qos::at_most_once), t0);
  CHECK(s.take_released().empty());
  auto p = of_type<mqtt::publish>(connect(s));
  REQUIRE(p.size() == 3);
  CHECK(s.take_released().empty());  // sent is not acknowledged
  s.on_packet(mqtt::puback{{p[0].packet_id, 0, {}}}, t0);
  CHECK(s.take_released() == std::vector<std::uint64_t>{1});
  s.on_packet(mqtt::pubrec{{p[1].packet_id, 0, {}}}, t0);  // QoS 2: the remote has it
  CHECK(s.take_released() == std::vector<std::uint64_t>{2});
  s.on_packet(mqtt::pubrec{{p[1].packet_id, 0, {}}}, t0);  // a duplicate PUBREC
  s.on_packet(mqtt::pubcomp{{p[1].packet_id, 0, {}}}, t0);
  CHECK(s.take_released().empty());
  // A late acknowledgement of the same id releases nothing twice.
  s.on_packet(mqtt::puback{{p[0].packet_id, 0, {}}}, t0);
  CHECK(s.take_released().empty());
}

TEST_CASE("bridge session: dropped or downgraded stored messages are released",
          "[bridge][store]") {
  auto stored = [](const std::string& payload, std::uint64_t seq) {
    auto o = out("t", payload, mqtt::qos::at_least_once);
    o.seq = seq;
    return o;
  };
  client_session s(opts(8, 2), both_rules());
  s.enqueue(stored("a", 1), t0);
  s.enqueue(stored("b", 2), t0);
  s.enqueue(stored("c", 3), t0);  // the queue holds 2: the oldest goes
  CHECK(s.take_released() == std::vector<std::uint64_t>{1});
  s.restore({stored("r", 9)});  // restored in front: the limit drops the oldest again
  CHECK(s.take_released() == std::vector<std::uint64_t>{9});

  // A remote that takes QoS 0 only: the stored messages go out as QoS 0 and are done.
  client_session q0(opts(8, 10), both_rules());
  q0.enqueue(stored("x", 4), t0);
  q0.on_open(t0);
  mqtt::connack ca{false, 0, {}};
  ca.props.maximum_qos = 0;
  auto p = of_type<mqtt::publish>(q0.on_packet(ca, t0));
  REQUIRE(p.size() == 1);
  CHECK(p[0].q == mqtt::qos::at_most_once);
  CHECK(q0.take_released() == std::vector<std::uint64_t>{4});
}

TEST_CASE("bridge session: a PUBREC with an error code ends the exchange and frees the window",
          "[bridge]") {
  client_session s(opts(1), both_rules());
  connect(s);
  auto o = out("t", "refused", mqtt::qos::exactly_once);
  o.seq = 5;
  auto p = of_type<mqtt::publish>(s.enqueue(std::move(o), t0));
  REQUIRE(p.size() == 1);
  s.enqueue(out("t", "next", mqtt::qos::exactly_once), t0);  // waits: the window is 1
  auto st = s.on_packet(mqtt::pubrec{{p[0].packet_id, 0x87, {}}}, t0);  // not authorized
  CHECK(of_type<mqtt::pubrel>(st).empty());
  auto next = of_type<mqtt::publish>(st);
  REQUIRE(next.size() == 1);
  CHECK(next[0].payload == "next");
  CHECK(s.take_released() == std::vector<std::uint64_t>{5});
  CHECK(s.counters().dropped == 1);
  CHECK(s.inflight() == 1);
}
