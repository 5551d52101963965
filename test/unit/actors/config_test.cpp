// Unit tests for actors/config/config: defaults, every key, strict errors naming file:line: key,
// listeners, parse_duration, split_host_port, and the shipped etc/tern.toml.
#include "actors/config/config.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#ifndef TERN_SOURCE_DIR
#error "TERN_SOURCE_DIR must name the project root (set by test/unit/actors/CMakeLists.txt)"
#endif

namespace {

using namespace std::chrono_literals;
using tern::actors::config::config;
using tern::actors::config::config_error;
using tern::actors::config::listener_config;
using tern::actors::config::parse;
using tern::actors::config::parse_duration;
using tern::actors::config::split_host_port;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

const std::string origin = "test.toml";

// Parses `text`, failing the test (with the message) if it is rejected.
config parse_ok(const std::string& text, config base = {}) {
  auto r = parse(text, origin, std::move(base));
  const auto* e = std::get_if<config_error>(&r);
  INFO("error: " << (e ? e->message : std::string()));
  REQUIRE(e == nullptr);
  return std::get<config>(std::move(r));
}

// Parses `text`, failing the test if it is accepted; returns the error message.
std::string parse_err(const std::string& text) {
  auto r = parse(text, origin);
  const auto* e = std::get_if<config_error>(&r);
  INFO("text:\n" << text);
  REQUIRE(e != nullptr);
  return e->message;
}

void check_same_listener(const listener_config& a, const listener_config& b) {
  CHECK(a.name == b.name);
  CHECK(a.kind == b.kind);
  CHECK(a.bind == b.bind);
  CHECK(a.max_connections == b.max_connections);
  CHECK(a.acceptors == b.acceptors);
  CHECK(a.max_conn_rate == b.max_conn_rate);
  CHECK(a.max_bytes_in_rate == b.max_bytes_in_rate);
  CHECK(a.max_bytes_in_burst == b.max_bytes_in_burst);
  CHECK(a.max_publish_rate == b.max_publish_rate);
  CHECK(a.max_publish_burst == b.max_publish_burst);
  CHECK(a.proxy_protocol == b.proxy_protocol);
}

// Field-by-field equality (C++17: no defaulted operator==).
void check_same(const config& a, const config& b) {
  CHECK(a.node_name == b.node_name);
  CHECK(a.data_dir == b.data_dir);
  CHECK(a.log_level == b.log_level);
  CHECK(a.worker_threads == b.worker_threads);
  CHECK(a.io_threads == b.io_threads);
  CHECK(a.mqtt.max_packet_size == b.mqtt.max_packet_size);
  CHECK(a.mqtt.max_clientid_len == b.mqtt.max_clientid_len);
  CHECK(a.mqtt.max_topic_levels == b.mqtt.max_topic_levels);
  CHECK(a.mqtt.keepalive_backoff == b.mqtt.keepalive_backoff);
  CHECK(a.mqtt.connect_timeout == b.mqtt.connect_timeout);
  CHECK(a.session.expiry_interval == b.session.expiry_interval);
  CHECK(a.session.max_inflight == b.session.max_inflight);
  CHECK(a.session.max_queued_messages == b.session.max_queued_messages);
  CHECK(a.session.queue_qos0 == b.session.queue_qos0);
  CHECK(a.session.retry_interval == b.session.retry_interval);
  CHECK(a.session.max_awaiting_rel == b.session.max_awaiting_rel);
  CHECK(a.session.await_rel_timeout == b.session.await_rel_timeout);
  CHECK(a.session.max_subscriptions == b.session.max_subscriptions);
  CHECK(a.session.max_send_buffer == b.session.max_send_buffer);
  CHECK(a.flow.high_watermark == b.flow.high_watermark);
  CHECK(a.flow.max_pause == b.flow.max_pause);
  CHECK(a.flow.max_buffered_mb == b.flow.max_buffered_mb);
  CHECK(a.mqtt5.max_keepalive == b.mqtt5.max_keepalive);
  CHECK(a.mqtt5.topic_alias_maximum == b.mqtt5.topic_alias_maximum);
  CHECK(a.mqtt5.response_information == b.mqtt5.response_information);
  CHECK(a.mqtt5.server_reference == b.mqtt5.server_reference);
  CHECK(a.mqtt5.shared_subscription_strategy == b.mqtt5.shared_subscription_strategy);
  CHECK(a.http.enabled == b.http.enabled);
  CHECK(a.http.bind == b.http.bind);
  CHECK(a.http.port == b.http.port);
  CHECK(a.http.users == b.http.users);
  CHECK(a.http.api_keys == b.http.api_keys);
  CHECK(a.http.tls_cert == b.http.tls_cert);
  CHECK(a.http.tls_key == b.http.tls_key);
  CHECK(a.sys.interval == b.sys.interval);
  CHECK(a.sys.presence == b.sys.presence);
  CHECK(a.scheduler.policy == b.scheduler.policy);
  CHECK(a.scheduler.max_throughput == b.scheduler.max_throughput);
  CHECK(a.scheduler.aggressive_poll_attempts == b.scheduler.aggressive_poll_attempts);
  CHECK(a.scheduler.aggressive_steal_interval == b.scheduler.aggressive_steal_interval);
  CHECK(a.scheduler.moderate_poll_attempts == b.scheduler.moderate_poll_attempts);
  CHECK(a.scheduler.moderate_steal_interval == b.scheduler.moderate_steal_interval);
  CHECK(a.scheduler.moderate_sleep_us == b.scheduler.moderate_sleep_us);
  CHECK(a.scheduler.relaxed_steal_interval == b.scheduler.relaxed_steal_interval);
  CHECK(a.scheduler.relaxed_sleep_us == b.scheduler.relaxed_sleep_us);
  REQUIRE(a.listeners.size() == b.listeners.size());
  for (auto ia = a.listeners.begin(), ib = b.listeners.begin(); ia != a.listeners.end();
       ++ia, ++ib) {
    CHECK(ia->first == ib->first);
    check_same_listener(ia->second, ib->second);
  }
}

}  // namespace

TEST_CASE("config: empty text gives the embedded defaults", "[config]") {
  auto c = parse_ok("");
  check_same(c, config{});
  CHECK(c.node_name == "tern@127.0.0.1");
  CHECK(c.data_dir == "data");
  CHECK(c.log_level == "info");
  CHECK(c.worker_threads == 0);
  CHECK(c.io_threads == 0);
  CHECK(c.mqtt.max_packet_size == 1048576);
  CHECK(c.mqtt.max_clientid_len == 65535);
  CHECK(c.mqtt.max_topic_levels == 128);
  CHECK(c.mqtt.keepalive_backoff == 1.5);
  CHECK(c.mqtt.connect_timeout == 15s);
  CHECK(c.session.expiry_interval == 2h);
  CHECK(c.session.max_inflight == 32);
  CHECK(c.session.max_queued_messages == 1000);
  CHECK(c.session.queue_qos0);
  CHECK(c.session.retry_interval == 0s);
  CHECK(c.session.max_awaiting_rel == 100);
  CHECK(c.session.await_rel_timeout == 20s);
  CHECK(c.session.max_subscriptions == 0);
  CHECK(c.session.max_send_buffer == 4u * 1024 * 1024);
  REQUIRE(c.listeners.size() == 1);
  REQUIRE(c.listeners.count("tcp.default") == 1);
  const auto& l = c.listeners.at("tcp.default");
  CHECK(l.name == "default");
  CHECK(l.kind == "tcp");
  CHECK(l.bind == "127.0.0.1:1883");
  CHECK(l.max_connections == 1024000);

  // Comments and empty known sections change nothing.
  check_same(parse_ok("# nothing\n\n[node]\n[session]\n# still nothing\n"), config{});
}

TEST_CASE("config: every key parses", "[config]") {
  const std::string text = R"([node]
name = "tern@10.0.0.7"
data_dir = "/var/lib/tern"
worker_threads = 8
io_threads = 4

[log]
level = "debug"

[mqtt]
max_packet_size = 65536
max_clientid_len = 128
max_topic_levels = 0
keepalive_backoff = 2.5
connect_timeout = "500ms"

[session]
expiry_interval = "1d"
max_inflight = 16
max_queued_messages = 0
queue_qos0 = false
retry_interval = "5m"
max_awaiting_rel = 7
await_rel_timeout = 30
max_subscriptions = 50
max_send_buffer = 8192
)";
  auto c = parse_ok(text);
  CHECK(c.node_name == "tern@10.0.0.7");
  CHECK(c.data_dir == "/var/lib/tern");
  CHECK(c.worker_threads == 8);
  CHECK(c.io_threads == 4);
  CHECK(c.log_level == "debug");
  CHECK(c.mqtt.max_packet_size == 65536);
  CHECK(c.mqtt.max_clientid_len == 128);
  CHECK(c.mqtt.max_topic_levels == 0);
  CHECK(c.mqtt.keepalive_backoff == 2.5);
  CHECK(c.mqtt.connect_timeout == 500ms);
  CHECK(c.session.expiry_interval == 24h);
  CHECK(c.session.max_inflight == 16);
  CHECK(c.session.max_queued_messages == 0);
  CHECK_FALSE(c.session.queue_qos0);
  CHECK(c.session.retry_interval == 5min);
  CHECK(c.session.max_awaiting_rel == 7);
  CHECK(c.session.await_rel_timeout == 30s);
  CHECK(c.session.max_subscriptions == 50);
  CHECK(c.session.max_send_buffer == 8192);
  // No [listeners] given: the default listener stays.
  CHECK(c.listeners.size() == 1);
  CHECK(c.listeners.count("tcp.default") == 1);
}

TEST_CASE("config: every log level is accepted", "[config]") {
  for (const char* level : {"trace", "debug", "info", "warn", "error", "off"}) {
    auto c = parse_ok(std::string("[log]\nlevel = \"") + level + "\"\n");
    CHECK(c.log_level == level);
  }
}

TEST_CASE("config: duration keys take units or whole seconds", "[config]") {
  using ms = std::chrono::milliseconds;
  const std::vector<std::pair<std::string, std::function<ms(const config&)>>> keys = {
      {"[mqtt]\nconnect_timeout", [](const config& c) { return c.mqtt.connect_timeout; }},
      {"[session]\nexpiry_interval", [](const config& c) { return c.session.expiry_interval; }},
      {"[session]\nretry_interval", [](const config& c) { return c.session.retry_interval; }},
      {"[session]\nawait_rel_timeout",
       [](const config& c) { return c.session.await_rel_timeout; }},
  };
  const std::vector<std::pair<std::string, ms>> values = {
      {"\"500ms\"", 500ms}, {"\"20s\"", 20s}, {"\"5m\"", 5min}, {"\"2h\"", 2h},
      {"\"1d\"", 24h},      {"45", 45s},      {"0", 0s},      {"\"0s\"", 0s},
      {"\"7\"", 7s},
  };
  for (const auto& [key, get] : keys) {
    for (const auto& [value, expect] : values) {
      auto text = key + " = " + value + "\n";
      INFO(text);
      CHECK(get(parse_ok(text)) == expect);
    }
    for (const char* bad : {"\"20 s\"", "\"5x\"", "\"-5s\"", "-5", "1.5", "\"\"", "true"}) {
      auto text = key + " = " + bad + "\n";
      INFO(text);
      CHECK_THAT(parse_err(text),
                 StartsWith(origin + ":2: ") &&
                     (Contains("expected a duration") || Contains("must not be negative")));
    }
  }
}

TEST_CASE("config: an unknown key names file, line and key", "[config]") {
  const std::string text =
      "[node]\n"
      "name = \"a\"\n"
      "\n"
      "[session]\n"
      "max_inflight = 10\n"
      "max_infligth = 10\n";
  CHECK(parse_err(text) == "test.toml:6: session.max_infligth: unknown key");

  CHECK(parse_err("\n\n[bogus]\nkey = 1\n") == "test.toml:4: bogus.key: unknown key");
  CHECK_THAT(parse_err("# top\nfoo = 1\n"), StartsWith("test.toml:2: foo: unknown key"));
  CHECK_THAT(parse_err("[log]\nlevel = \"info\"\nfile = \"x.log\"\n"),
             StartsWith("test.toml:3: log.file: unknown key"));
  // A key of one section is unknown in another.
  CHECK_THAT(parse_err("[node]\nmax_inflight = 3\n"),
             StartsWith("test.toml:2: node.max_inflight: unknown key"));
  // The origin is whatever the caller names.
  auto r = parse("[x]\ny = 1\n", "<flags>");
  REQUIRE(std::holds_alternative<config_error>(r));
  CHECK(std::get<config_error>(r).message == "<flags>:2: x.y: unknown key");
}

TEST_CASE("config: wrong types and out-of-range values name line and key", "[config]") {
  struct bad_case {
    std::string text;
    std::string prefix;  // "file:line: key: "
    std::string what;
  };
  const std::vector<bad_case> cases = {
      {"[session]\nmax_inflight = \"32\"\n", "test.toml:2: session.max_inflight: ",
       "expected an integer"},
      {"[session]\nmax_inflight = 0\n", "test.toml:2: session.max_inflight: ",
       "must be between 1 and 65535"},
      {"[session]\nmax_inflight = 65536\n", "test.toml:2: session.max_inflight: ",
       "must be between 1 and 65535"},
      {"[session]\n\nmax_queued_messages = -1\n", "test.toml:3: session.max_queued_messages: ",
       "must be between"},
      {"[session]\nmax_queued_messages = 4294967296\n",
       "test.toml:2: session.max_queued_messages: ", "must be between"},
      {"[session]\nmax_inflight = 3.0\n", "test.toml:2: session.max_inflight: ",
       "expected an integer"},
      {"[session]\nqueue_qos0 = 1\n", "test.toml:2: session.queue_qos0: ",
       "expected true or false"},
      {"[session]\nqueue_qos0 = \"true\"\n", "test.toml:2: session.queue_qos0: ",
       "expected true or false"},
      {"[session]\nmax_awaiting_rel = 0\n", "test.toml:2: session.max_awaiting_rel: ",
       "must be between 1 and 65535"},
      {"[session]\nmax_send_buffer = 4095\n", "test.toml:2: session.max_send_buffer: ",
       "must be between 4096"},
      {"[node]\nname = 5\n", "test.toml:2: node.name: ", "expected a string"},
      {"[node]\ndata_dir = true\n", "test.toml:2: node.data_dir: ", "expected a string"},
      {"[node]\nio_threads = 257\n", "test.toml:2: node.io_threads: ",
       "must be between 0 and 256"},
      {"[node]\nworker_threads = 257\n", "test.toml:2: node.worker_threads: ",
       "must be between 0 and 256"},
      {"[log]\nlevel = \"verbose\"\n", "test.toml:2: log.level: ", "expected one of"},
      {"[log]\nlevel = \"INFO\"\n", "test.toml:2: log.level: ", "expected one of"},
      {"[mqtt]\nmax_packet_size = 15\n", "test.toml:2: mqtt.max_packet_size: ",
       "must be between 16 and 268435460"},
      {"[mqtt]\nmax_packet_size = 268435461\n", "test.toml:2: mqtt.max_packet_size: ",
       "must be between 16 and 268435460"},
      {"[mqtt]\nmax_clientid_len = 22\n", "test.toml:2: mqtt.max_clientid_len: ",
       "must be between 23 and 65535"},
      {"[mqtt]\nkeepalive_backoff = 0.5\n", "test.toml:2: mqtt.keepalive_backoff: ",
       "between 1.0 and 10.0"},
      {"[mqtt]\nkeepalive_backoff = 10.5\n", "test.toml:2: mqtt.keepalive_backoff: ",
       "between 1.0 and 10.0"},
      {"[mqtt]\nkeepalive_backoff = \"1.5\"\n", "test.toml:2: mqtt.keepalive_backoff: ",
       "between 1.0 and 10.0"},
      {"[mqtt]\nconnect_timeout = \"15 seconds\"\n", "test.toml:2: mqtt.connect_timeout: ",
       "expected a duration"},
      {"[session]\nretry_interval = -1\n", "test.toml:2: session.retry_interval: ",
       "must not be negative"},
      {"node = 1\n", "test.toml:1: node: ", "unknown key"},
  };
  for (const auto& c : cases) {
    auto msg = parse_err(c.text);
    CHECK_THAT(msg, StartsWith(c.prefix) && Contains(c.what));
  }
  // The bounds themselves are accepted.
  CHECK(parse_ok("[mqtt]\nmax_packet_size = 268435460\n").mqtt.max_packet_size == 268435460);
  CHECK(parse_ok("[mqtt]\nmax_packet_size = 16\n").mqtt.max_packet_size == 16);
  CHECK(parse_ok("[session]\nmax_inflight = 65535\n").session.max_inflight == 65535);
  CHECK(parse_ok("[session]\nmax_send_buffer = 4096\n").session.max_send_buffer == 4096);
  CHECK(parse_ok("[session]\nmax_queued_messages = 4294967295\n")
            .session.max_queued_messages == 4294967295u);
  CHECK(parse_ok("[mqtt]\nkeepalive_backoff = 1.0\n").mqtt.keepalive_backoff == 1.0);
  CHECK(parse_ok("[mqtt]\nkeepalive_backoff = 10.0\n").mqtt.keepalive_backoff == 10.0);
}

TEST_CASE("config: a TOML syntax error names the line", "[config]") {
  CHECK_THAT(parse_err("[node]\nname = \"a\"\nio_threads = = 2\n"), StartsWith("test.toml:3: "));
  CHECK_THAT(parse_err("[node]\n\n\n\nname = \"unterminated\n"), StartsWith("test.toml:5: "));
  CHECK_THAT(parse_err("[session\nmax_inflight = 1\n"), StartsWith("test.toml:1: "));
  // A key given twice is a TOML error too.
  CHECK_THAT(parse_err("[session]\nmax_inflight = 1\nmax_inflight = 2\n"),
             StartsWith("test.toml:3: "));
}

TEST_CASE("config: listeners", "[config]") {
  SECTION("a listed listener replaces the default one") {
    auto c = parse_ok("[listeners.tcp.x]\nbind = \"0.0.0.0:1884\"\n");
    REQUIRE(c.listeners.size() == 1);
    REQUIRE(c.listeners.count("tcp.x") == 1);
    const auto& l = c.listeners.at("tcp.x");
    CHECK(l.name == "x");
    CHECK(l.kind == "tcp");
    CHECK(l.bind == "0.0.0.0:1884");
    CHECK(l.max_connections == listener_config{}.max_connections);
  }
  SECTION("several listeners, IPv6, max_connections") {
    auto c = parse_ok(
        "[listeners.tcp.v4]\nbind = \"127.0.0.1:1883\"\nmax_connections = 10\n"
        "[listeners.tcp.v6]\nbind = \"[::1]:1883\"\n");
    REQUIRE(c.listeners.size() == 2);
    CHECK(c.listeners.at("tcp.v4").max_connections == 10);
    CHECK(c.listeners.at("tcp.v4").name == "v4");
    CHECK(c.listeners.at("tcp.v6").bind == "[::1]:1883");
    CHECK(c.listeners.at("tcp.v6").name == "v6");
  }
  SECTION("a listener without bind gets the default address") {
    auto c = parse_ok("[listeners.tcp.only]\nmax_connections = 5\n");
    REQUIRE(c.listeners.size() == 1);
    CHECK(c.listeners.at("tcp.only").bind == "127.0.0.1:1883");
    CHECK(c.listeners.at("tcp.only").max_connections == 5);
  }
  SECTION("a listed listener replaces the base's listeners too") {
    config base;
    base.node_name = "from-base";
    auto c = parse_ok("[listeners.tcp.y]\nbind = \"10.0.0.1:2000\"\n", base);
    CHECK(c.node_name == "from-base");
    REQUIRE(c.listeners.size() == 1);
    CHECK(c.listeners.count("tcp.y") == 1);
  }
  SECTION("a bad bind address is rejected") {
    for (const char* bind : {"localhost", "1.2.3.4:70000", "1.2.3.4:", ":1883", "::1:1883",
                             "[::1]1883", "host:80a"}) {
      auto msg = parse_err(std::string("[listeners.tcp.x]\n\nbind = \"") + bind + "\"\n");
      INFO(bind);
      CHECK_THAT(msg, StartsWith("test.toml:3: listeners.tcp.x.bind: ") &&
                          Contains("host:port"));
    }
    CHECK_THAT(parse_err("[listeners.tcp.x]\nbind = 1883\n"),
               StartsWith("test.toml:2: listeners.tcp.x.bind: expected a string"));
  }
  SECTION("an unknown listener kind is rejected") {
    auto msg = parse_err("[listeners.udp.x]\nbind = \"127.0.0.1:1883\"\n");
    CHECK_THAT(msg, StartsWith("test.toml:") &&
                        Contains("listeners.udp: unknown listener kind (supported: tcp, ssl, ws, wss)"));
  }
  SECTION("unknown keys and bad values inside a listener are rejected") {
    CHECK(parse_err("[listeners.tcp.x]\nbind = \"127.0.0.1:1\"\nport = 1883\n") ==
          "test.toml:3: listeners.tcp.x.port: unknown key");
    CHECK_THAT(parse_err("[listeners.tcp.x]\nmax_connections = 0\n"),
               StartsWith("test.toml:2: listeners.tcp.x.max_connections: must be between 1"));
    CHECK_THAT(parse_err("[listeners]\ntcp = 1\n"),
               StartsWith("test.toml:2: listeners.tcp: expected a table"));
    CHECK_THAT(parse_err("[listeners.tcp]\nx = 1\n"),
               StartsWith("test.toml:2: listeners.tcp.x: expected a table"));
    CHECK_THAT(parse_err("listeners = 1\n"), StartsWith("test.toml:1: listeners: "));
  }
  SECTION("ssl, ws and wss listeners, limits, disabled listeners") {
    auto c = parse_ok(
        "[listeners.tcp.a]\nacceptors = 2\nmax_conn_rate = 50\nmax_bytes_in_rate = 1000\n"
        "max_publish_rate = 10\nproxy_protocol = true\n"
        "[listeners.ssl.s]\ncertfile = \"c.pem\"\nkeyfile = \"k.pem\"\ncacertfile = \"ca.pem\"\n"
        "verify = \"require\"\npeer_cert_as_username = \"cn\"\ntls_versions = \"tlsv1.3\"\n"
        "[listeners.ws.w]\npath = \"/m\"\n"
        "[listeners.wss.off]\nenabled = false\ncertfile = \"c.pem\"\nkeyfile = \"k.pem\"\n");
    REQUIRE(c.listeners.size() == 3);
    const auto& a = c.listeners.at("tcp.a");
    CHECK(a.acceptors == 2);
    CHECK(a.max_conn_rate == 50);
    CHECK(a.max_bytes_in_rate == 1000);
    CHECK(a.max_publish_rate == 10);
    CHECK(a.proxy_protocol);
    const auto& s = c.listeners.at("ssl.s");
    CHECK(s.bind == "127.0.0.1:8883");
    CHECK(s.verify == "require");
    CHECK(s.peer_cert_as_username == "cn");
    CHECK(s.tls_versions == "tlsv1.3");
    CHECK(c.listeners.at("ws.w").bind == "127.0.0.1:8083");
    CHECK(c.listeners.at("ws.w").path == "/m");
    CHECK(c.listeners.count("wss.off") == 0);
  }
  SECTION("bad TLS and WebSocket settings name the line") {
    CHECK_THAT(parse_err("[listeners.ssl.s]\nkeyfile = \"k.pem\"\n"),
               StartsWith("test.toml:1: listeners.ssl.s: ") && Contains("certfile"));
    CHECK_THAT(parse_err("[listeners.ssl.s]\ncertfile = \"c\"\nkeyfile = \"k\"\n"
                         "verify = \"require\"\n"),
               Contains("needs cacertfile"));
    CHECK_THAT(parse_err("[listeners.ssl.s]\ncertfile = \"c\"\nkeyfile = \"k\"\n"
                         "verify = \"maybe\"\n"),
               StartsWith("test.toml:4: listeners.ssl.s.verify: expected one of"));
    CHECK_THAT(parse_err("[listeners.ssl.s]\ncertfile = \"c\"\nkeyfile = \"k\"\n"
                         "tls_versions = \"tlsv1.0\"\n"),
               StartsWith("test.toml:4: listeners.ssl.s.tls_versions: "));
    CHECK(parse_err("[listeners.tcp.x]\ncertfile = \"c\"\n") ==
          "test.toml:2: listeners.tcp.x.certfile: unknown key for a listener of kind tcp");
    CHECK_THAT(parse_err("[listeners.ws.x]\npath = \"mqtt\"\n"),
               StartsWith("test.toml:2: listeners.ws.x.path: "));
  }
}

TEST_CASE("config: parse_duration", "[config]") {
  CHECK(parse_duration("500ms") == std::chrono::milliseconds(500));
  CHECK(parse_duration("20s") == std::chrono::milliseconds(20000));
  CHECK(parse_duration("5m") == std::chrono::milliseconds(300000));
  CHECK(parse_duration("2h") == std::chrono::milliseconds(7200000));
  CHECK(parse_duration("1d") == std::chrono::milliseconds(86400000));
  CHECK(parse_duration("30") == std::chrono::milliseconds(30000));
  CHECK(parse_duration("0") == std::chrono::milliseconds(0));
  CHECK(parse_duration("0ms") == std::chrono::milliseconds(0));
  CHECK(parse_duration("007s") == std::chrono::milliseconds(7000));
  CHECK(parse_duration("1000000000000ms") == std::chrono::milliseconds(1000000000000));

  for (const char* bad : {"", "ms", "s", "-1", "-1s", "+1s", " 5s", "5s ", "5 s", "1.5s",
                          "5x", "5S", "5sec", "5min", "5mss", "1000000000001"}) {
    INFO('"' << bad << '"');
    CHECK_FALSE(parse_duration(bad).has_value());
  }
}

TEST_CASE("config: split_host_port", "[config]") {
  using hp = std::pair<std::string, std::uint16_t>;
  CHECK(split_host_port("127.0.0.1:1883") == hp{"127.0.0.1", 1883});
  CHECK(split_host_port("0.0.0.0:0") == hp{"0.0.0.0", 0});
  CHECK(split_host_port("localhost:65535") == hp{"localhost", 65535});
  CHECK(split_host_port("[::1]:1883") == hp{"::1", 1883});
  CHECK(split_host_port("[::]:8883") == hp{"::", 8883});
  CHECK(split_host_port("[fe80::1%eth0]:1") == hp{"fe80::1%eth0", 1});

  for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", ":1883", "host:65536", "host:99999",
                          "host:100000", "host:12a", "host:-1", "host: 1", "host:0x10",
                          "::1:1883", "[::1]", "[::1]:", "[::1]1883", "[]:1883", "[::1:1883",
                          "a:b:1"}) {
    INFO('"' << bad << '"');
    CHECK_FALSE(split_host_port(bad).has_value());
  }
}

TEST_CASE("config: load_file reports a missing file", "[config]") {
  auto r = tern::actors::config::load_file("no/such/dir/tern.toml");
  REQUIRE(std::holds_alternative<config_error>(r));
  CHECK_THAT(std::get<config_error>(r).message,
             StartsWith("no/such/dir/tern.toml") && Contains("cannot open"));
}

TEST_CASE("config: the shipped etc/tern.toml parses and equals the embedded defaults",
          "[config]") {
  const std::string path = std::string(TERN_SOURCE_DIR) + "/etc/tern.toml";
  auto r = tern::actors::config::load_file(path);
  const auto* e = std::get_if<config_error>(&r);
  INFO("error: " << (e ? e->message : std::string()));
  REQUIRE(e == nullptr);
  check_same(std::get<config>(r), config{});
}

// A duration too large for milliseconds must be rejected, not wrap around to a negative value.
TEST_CASE("config: durations too large for milliseconds are rejected", "[config]") {
  // parse_duration caps the number at 10^12 but not the product: 10^12 days overflows.
  CHECK_FALSE(parse_duration("200000000000d").has_value());
  // Whole seconds are not range-checked before the conversion to milliseconds.
  CHECK_THAT(parse_err("[session]\nretry_interval = 9223372036854775807\n"),
             StartsWith("test.toml:2: session.retry_interval: "));
  CHECK_THAT(parse_err("[session]\nexpiry_interval = \"200000000000d\"\n"),
             StartsWith("test.toml:2: session.expiry_interval: "));
}

TEST_CASE("config: an unknown empty section is an error", "[config]") {
  CHECK_THAT(parse_err("[bogus]\n"), StartsWith("test.toml:1: bogus: unknown section"));
}

TEST_CASE("config: a file that removes every listener is an error", "[config]") {
  CHECK_THAT(parse_err("[listeners]\n"), StartsWith("test.toml: listeners: no listener"));
  CHECK_THAT(parse_err("[listeners.tcp]\n"), StartsWith("test.toml: listeners: no listener"));
}

TEST_CASE("config: [mqtt5] keys", "[config]") {
  auto c = parse_ok(R"([mqtt5]
max_keepalive = 120
topic_alias_maximum = 0
response_information = "reply/"
server_reference = "tern:1883"
shared_subscription_strategy = "hash_clientid"
)");
  CHECK(c.mqtt5.max_keepalive == 120);
  CHECK(c.mqtt5.topic_alias_maximum == 0);
  CHECK(c.mqtt5.response_information == "reply/");
  CHECK(c.mqtt5.server_reference == "tern:1883");
  CHECK(c.mqtt5.shared_subscription_strategy == "hash_clientid");
  auto bad = parse(R"([mqtt5]
shared_subscription_strategy = "fastest"
)", "t.toml");
  REQUIRE(std::holds_alternative<config_error>(bad));
  CHECK(std::get<config_error>(bad).message.find("t.toml:2: mqtt5.shared_subscription_strategy") !=
        std::string::npos);
}

TEST_CASE("config: [http] and [sys] sections", "[config]") {
  auto c = parse_ok(
      "[http]\nbind = \"0.0.0.0\"\nport = 0\nusers = [\"ops:s3cret\"]\n"
      "api_keys = [\"0123456789abcdef\"]\n[sys]\ninterval = \"1s\"\npresence = false\n");
  CHECK(c.http.bind == "0.0.0.0");
  CHECK(c.http.port == 0);
  CHECK(c.http.users == std::vector<std::string>{"ops:s3cret"});
  CHECK(c.http.api_keys == std::vector<std::string>{"0123456789abcdef"});
  CHECK(c.sys.interval == std::chrono::seconds(1));
  CHECK_FALSE(c.sys.presence);
  CHECK_THAT(parse_err("[http]\nport = 70000\n"), StartsWith("test.toml:2: http.port: "));
  CHECK_THAT(parse_err("[http]\nusers = [\"nopassword\"]\n"),
             StartsWith("test.toml:2: http.users: "));
  CHECK_THAT(parse_err("[http]\napi_keys = [\"short\"]\n"),
             StartsWith("test.toml:2: http.api_keys: "));
  CHECK_THAT(parse_err("[http]\ntls_cert = \"a.pem\"\n"),
             StartsWith("test.toml: http: tls_cert and tls_key"));
}

TEST_CASE("config: [scheduler] is parsed and checked", "[config]") {
  auto c = parse_ok(
      "[scheduler]\npolicy = \"sharing\"\nmax_throughput = 50\n"
      "aggressive_poll_attempts = 7\nmoderate_poll_attempts = 0\nmoderate_sleep_us = 0\n"
      "relaxed_sleep_us = 2000\n");
  CHECK(c.scheduler.policy == "sharing");
  CHECK(c.scheduler.max_throughput == 50);
  CHECK(c.scheduler.aggressive_poll_attempts == 7);
  CHECK(c.scheduler.moderate_poll_attempts == 0);
  CHECK(c.scheduler.moderate_sleep_us == 0);
  CHECK(c.scheduler.relaxed_sleep_us == 2000);
  CHECK_THAT(parse_err("[scheduler]\npolicy = \"fifo\"\n"),
             StartsWith("test.toml:2: scheduler.policy: "));
  // A steal interval of 0 would divide by zero in CAF's worker loop.
  CHECK_THAT(parse_err("[scheduler]\n\nmoderate_steal_interval = 0\n"),
             StartsWith("test.toml:3: scheduler.moderate_steal_interval: "));
  CHECK_THAT(parse_err("[scheduler]\nrelaxed_sleep_us = 0\n"),
             StartsWith("test.toml:2: scheduler.relaxed_sleep_us: "));
  CHECK_THAT(parse_err("[scheduler]\nspin = 1\n"), StartsWith("test.toml:2: scheduler.spin: "));
}

TEST_CASE("config: [flow] back-pressure settings", "[config]") {
  auto c = parse_ok("[flow]\nhigh_watermark = 200\nmax_pause = \"2s\"\n");
  CHECK(c.flow.high_watermark == 200);
  CHECK(c.flow.max_pause == 2s);
  CHECK(parse_ok("[flow]\nhigh_watermark = 0\n").flow.high_watermark == 0);
  CHECK(parse_ok("").flow.max_buffered_mb == 512);
  CHECK(parse_ok("[flow]\nmax_buffered_mb = 64\n").flow.max_buffered_mb == 64);
  CHECK(parse_ok("[flow]\nmax_buffered_mb = 0\n").flow.max_buffered_mb == 0);
  CHECK_THAT(parse_err("[flow]\nmax_buffered_mb = -1\n"),
             StartsWith("test.toml:2: flow.max_buffered_mb: "));
  CHECK_THAT(parse_err("[flow]\nmax_pause = \"0s\"\n"),
             StartsWith("test.toml:2: flow.max_pause: "));
  CHECK_THAT(parse_err("[flow]\nhigh_watermark = -1\n"),
             StartsWith("test.toml:2: flow.high_watermark: "));
  CHECK_THAT(parse_err("[flow]\nwatermark = 1\n"), StartsWith("test.toml:2: flow.watermark: "));
}
