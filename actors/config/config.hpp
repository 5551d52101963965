// Node configuration: the values of etc/tern.toml, with embedded defaults and strict checking.
//
// Pure: parsing a file or a string yields a `config` or an error that names file, line and
// key. Unknown keys and values of the wrong type or range are errors, never ignored.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace tern::actors::config {

/// One listener ("[listeners.tcp.<name>]").
struct listener_config {
  std::string name;
  std::string kind = "tcp";
  std::string bind = "127.0.0.1:1883";  ///< host:port; IPv6 as [::1]:1883
  std::uint32_t max_connections = 1024000;
};

struct mqtt_config {
  std::uint32_t max_packet_size = 1024 * 1024;
  std::uint32_t max_clientid_len = 65535;
  std::uint32_t max_topic_levels = 128;
  /// A client silent for keepalive * backoff is disconnected ([MQTT-3.1.2-24]: 1.5).
  double keepalive_backoff = 1.5;
  /// Time a new socket has to send CONNECT.
  std::chrono::milliseconds connect_timeout{15000};
};

struct session_config {
  std::chrono::milliseconds expiry_interval{std::chrono::hours(2)};
  std::uint32_t max_inflight = 32;
  std::uint32_t max_queued_messages = 1000;
  bool queue_qos0 = true;
  std::chrono::milliseconds retry_interval{20000};
  std::uint32_t max_awaiting_rel = 100;
  std::chrono::milliseconds await_rel_timeout{20000};
  std::uint32_t max_subscriptions = 0;  ///< 0: no limit
  /// Bytes written to a socket but not yet accepted by the kernel before QoS 0 messages are
  /// dropped for that client; at twice this the client is disconnected.
  std::uint32_t max_send_buffer = 4 * 1024 * 1024;
};

/// The management HTTP API, metrics and dashboard ("[http]").
struct http_config {
  bool enabled = true;
  std::string bind = "127.0.0.1";  ///< address only; IPv6 without brackets
  std::uint16_t port = 18083;      ///< 0: any free port (logged at start)
  /// Basic-auth users, "name:password". The default must be changed by the operator.
  std::vector<std::string> users{"admin:public"};
  std::vector<std::string> api_keys;  ///< accepted as "Authorization: Bearer <key>"
  std::string tls_cert;               ///< PEM files; both set: the API speaks HTTPS only
  std::string tls_key;
};

/// $SYS publishing ("[sys]").
struct sys_config {
  std::chrono::milliseconds interval{10000};  ///< 0: no periodic $SYS topics
  bool presence = true;  ///< publish clients/<id>/connected|disconnected events
};

struct config {
  std::string node_name = "tern@127.0.0.1";
  std::string data_dir = "data";
  std::string log_level = "info";
  /// CAF scheduler workers and Asio I/O threads; 0 = one per core.
  std::uint32_t worker_threads = 0;
  std::uint32_t io_threads = 1;
  mqtt_config mqtt;
  session_config session;
  http_config http;
  sys_config sys;
  std::map<std::string, listener_config> listeners{{"tcp.default", listener_config{"default"}}};
};

struct config_error {
  std::string message;  ///< "file:line: key: what is wrong"
};

/// Parses TOML text. `origin` names the source in error messages (a file path or "<flags>").
std::variant<config, config_error> parse(std::string_view toml_text, const std::string& origin,
                                         config base = {});

/// Reads and parses a file; the embedded defaults fill what the file does not set.
std::variant<config, config_error> load_file(const std::string& path);

/// Parses "500ms", "20s", "5m", "2h", "1d" or a bare number of seconds.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

/// Splits "host:port" / "[v6]:port". Returns nullopt on a malformed address or port.
std::optional<std::pair<std::string, std::uint16_t>> split_host_port(std::string_view s);

}  // namespace tern::actors::config
