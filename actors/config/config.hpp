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

/// One listener ("[listeners.<kind>.<name>]", kind = tcp, ssl, ws or wss).
struct listener_config {
  std::string name;
  std::string kind = "tcp";
  std::string bind = "127.0.0.1:1883";  ///< host:port; IPv6 as [::1]:1883
  std::uint32_t max_connections = 1024000;
  /// Concurrent accept operations on the listening socket.
  std::uint32_t acceptors = 4;
  /// New connections per second accepted (token bucket, burst = rate); 0: no limit.
  std::uint32_t max_conn_rate = 0;
  /// Bytes per second read from one connection; 0: no limit. Burst 0 means burst = rate.
  std::uint32_t max_bytes_in_rate = 0;
  std::uint32_t max_bytes_in_burst = 0;
  /// PUBLISH packets per second read from one connection; 0: no limit.
  std::uint32_t max_publish_rate = 0;
  std::uint32_t max_publish_burst = 0;
  /// Expect a PROXY protocol v1/v2 header before the client's bytes.
  bool proxy_protocol = false;
  // TLS (kinds ssl and wss).
  std::string certfile{};
  std::string keyfile{};
  std::string cacertfile{};
  std::string verify = "none";                  ///< none | request | require
  std::string tls_versions = "tlsv1.2,tlsv1.3";  ///< comma-separated
  std::string ciphers{};     ///< TLS 1.2 cipher list (OpenSSL syntax); "" = OpenSSL default
  std::string ciphersuites{};  ///< TLS 1.3 suites; "" = OpenSSL default
  std::string peer_cert_as_username = "none";  ///< none | cn | san
  std::string peer_cert_as_clientid = "none";  ///< none | cn | san
  // WebSocket (kinds ws and wss).
  std::string path = "/mqtt";

  bool is_tls() const { return kind == "ssl" || kind == "wss"; }
  bool is_ws() const { return kind == "ws" || kind == "wss"; }
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
  /// Resend unacknowledged QoS 1/2 to a connected MQTT 3.x client after this; 0 = only on
  /// reconnect (MQTT 5 clients: always only on reconnect, [MQTT-4.4.0-1]).
  std::chrono::milliseconds retry_interval{0};
  std::uint32_t max_awaiting_rel = 100;
  std::chrono::milliseconds await_rel_timeout{20000};
  std::uint32_t max_subscriptions = 0;  ///< 0: no limit
  /// Bytes written to a socket but not yet accepted by the kernel before QoS 0 messages are
  /// dropped for that client; at twice this the client is disconnected.
  std::uint32_t max_send_buffer = 4 * 1024 * 1024;
};

/// Back-pressure from slow subscribers to publishers ("[flow]", see docs/benchmark.md).
struct flow_config {
  /// Deliveries waiting in front of one session (in its mailbox, or queued while its client
  /// is connected) beyond which a publisher adding to them stops being read until they are
  /// down to half of it. At most half of a non-zero session.max_queued_messages is used.
  /// 0 = no back-pressure.
  std::uint32_t high_watermark = 1000;
  /// A connected client that takes nothing (no acknowledgement, nothing written) for this
  /// long while publishers wait for room in its queue is closed (MQTT 5: DISCONNECT 0x97);
  /// its session keeps its messages as for any client that went away, and the publishers go on.
  std::chrono::milliseconds max_pause{5000};
  /// Node-wide budget (MiB) for messages held for sessions: in their mailboxes, in the queues
  /// of connected clients and in their in-flight windows (each delivery counts its message's
  /// topic and payload plus its bookkeeping). At the budget publishers are paused until it is
  /// down to 7/8. Offline queues are bounded by session.max_queued_messages instead. 0 = off.
  std::uint32_t max_buffered_mb = 512;
};

/// The disk store ("[store]", see docs/durability.md).
struct store_config {
  /// "batch" (write-ahead, group commit: survives a crash of the process), "sync" (also
  /// fsync per commit: survives a power loss) or "none" (sessions written at a graceful stop
  /// only).
  std::string durability = "batch";
  /// Free space (MiB) the store leaves on its file system: below it, writes are refused
  /// (as for a full disk) before the file system itself runs out. 0 = no check.
  std::uint32_t min_free_mb = 64;
};

/// Clustering ("[cluster]"); off while `listen` is empty.
struct cluster_config {
  std::string listen;      ///< host:port of the cluster (CAF middleman) listener; "" = no cluster
  std::string advertise;   ///< host:port other nodes use to reach this one; "" = listen
  std::vector<std::string> seeds;  ///< host:port of members to join (any one is enough)
  std::string cookie;      ///< shared secret; required when clustering is on
  std::chrono::milliseconds heartbeat_interval{500};
  std::chrono::milliseconds connection_timeout{2000};  ///< silent peer declared down after this
  std::chrono::milliseconds reconnect_interval{1000};  ///< retry seeds and lost members
  /// Publishes waiting in the cluster actor to be forwarded to other nodes: publishers are
  /// paused at half of it, and QoS 0 ones beyond it are dropped (counted in messages_dropped).
  std::uint32_t max_forward_queue = 100000;
  /// TLS between nodes (CAF's OpenSSL module). Without certificates the channel is encrypted
  /// but only the cookie authenticates; with cert, key and cafile both sides are verified.
  bool tls = false;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_cafile;
  bool enabled() const { return !listen.empty(); }
};

/// [auth]: the authentication chain (see docs/access.md).
struct auth_config {
  /// Let in clients that no provider allowed or denied (emqttd's "anonymous" module).
  bool allow_anonymous = true;
  /// Providers tried in order before the anonymous rule: "password_file", "clientid",
  /// "cert", "http", "pgsql". Each answers allow, deny or ignore (pass on).
  std::vector<std::string> chain;
  std::string password_file;  ///< user:$7$... lines, managed with tern-passwd
  std::string clientid_file;  ///< "client-id [address or CIDR]" lines
  std::string http_url;       ///< http://host:port/path
  std::string http_body = "json";  ///< "json" or "form"
  std::chrono::milliseconds http_timeout{5000};
  std::string pgsql_conninfo;  ///< libpq connection string
  std::string pgsql_query = "SELECT password_hash FROM mqtt_user WHERE username = $1 LIMIT 1";
  std::chrono::milliseconds pgsql_timeout{5000};
};

/// [acl]: topic access rules.
struct acl_config {
  std::string file;               ///< empty: no ACL (everything allowed)
  std::string format = "emqttd";  ///< "emqttd" (acl.conf) or "mosquitto" (acl_file)
  bool no_match_allow = true;     ///< decision when no rule matches ("allow" / "deny")
  std::uint32_t cache_size = 32;  ///< decisions cached per client; 0 disables the cache
};

/// [ban]: temporary bans after repeated authentication failures.
struct ban_config {
  bool enabled = false;
  std::uint32_t max_failures = 5;  ///< failures within `window` that trigger a ban
  std::chrono::milliseconds window{60000};
  std::chrono::milliseconds duration{300000};
};

/// [hooks]: built-in hook callbacks.
struct hooks_config {
  std::string audit_log;  ///< file the audit hook appends to; empty: off
  /// Hook points the audit log records.
  std::vector<std::string> audit_events = {"client.connected", "client.disconnected",
                                           "client.subscribe", "client.unsubscribe"};
};

/// MQTT 5 features and shared subscriptions ("[mqtt5]").
struct mqtt5_config {
  /// Largest keepalive a client may use, in seconds; a client asking for more (or for none)
  /// is told this value as Server Keep Alive (MQTT 5) and held to it. 0: the client's choice.
  std::uint32_t max_keepalive = 0;
  /// Topic Alias Maximum offered to MQTT 5 clients (inbound aliases); 0 disables aliases.
  std::uint32_t topic_alias_maximum = 64;
  /// Prefix of the Response Information sent to a client that requests it (the client id is
  /// appended); empty: none is sent.
  std::string response_information;
  /// Where MQTT 5 clients should reconnect when this node shuts down ("host:port", or several
  /// separated by spaces, e.g. a Kubernetes Service): sent as Server Reference with DISCONNECT
  /// 0x9C (use another server). Empty: they get DISCONNECT 0x8B (server shutting down).
  std::string server_reference;
  /// How a message to a shared subscription group picks its member: "random", "round_robin",
  /// "sticky" or "hash_clientid".
  std::string shared_subscription_strategy = "random";
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

/// CAF's scheduler ("[scheduler]"): how idle worker threads wait for work. Each worker first
/// polls its queue `aggressive_poll_attempts` times without sleeping, then
/// `moderate_poll_attempts` times with `moderate_sleep_us` between attempts, and then sleeps on
/// a condition variable that a new job from an I/O thread wakes (at most `relaxed_sleep_us`, then
/// it tries to steal). Every `*_steal_interval`-th attempt steals from another worker.
struct scheduler_config {
  std::string policy = "stealing";  ///< "stealing" or "sharing"
  std::uint32_t max_throughput = 0;  ///< messages per actor per turn; 0: no limit
  std::uint32_t aggressive_poll_attempts = 100;
  std::uint32_t aggressive_steal_interval = 10;
  std::uint32_t moderate_poll_attempts = 0;  // CAF: 500 (see docs/benchmark.md, 5)
  std::uint32_t moderate_steal_interval = 5;
  std::uint32_t moderate_sleep_us = 50;
  std::uint32_t relaxed_steal_interval = 1;
  std::uint32_t relaxed_sleep_us = 10000;
};

/// One forwarding rule of a bridge ([[bridges.<name>.topics]] entries).
struct bridge_topic_config {
  std::string filter;                 ///< topic filter, relative to the prefixes
  std::string direction = "out";      ///< out | in | both
  std::uint8_t qos = 1;               ///< highest QoS forwarded (min with the message's)
  std::string local_prefix;           ///< prepended to the filter on this broker
  std::string remote_prefix;          ///< prepended to the filter on the remote broker
};

/// A bridge: an MQTT client from this node to a remote broker ([bridges.<name>]).
struct bridge_config {
  std::string name;
  std::string address;     ///< remote host:port; IPv6 as [::1]:1883
  std::string client_id;   ///< "" = "<node name>-bridge-<name>"
  std::string username;    ///< "" = none sent
  std::string password;    ///< "" = none sent
  bool clean_session = true;
  std::chrono::milliseconds keepalive{60000};
  std::chrono::milliseconds reconnect_interval{5000};
  std::string protocol = "v4";  ///< v4 (MQTT 3.1.1) | v5
  std::string node;             ///< run only on the node of this name; "" = on every node
  std::uint32_t max_queued = 10000;  ///< outgoing messages held while the remote is away
  std::uint32_t max_inflight = 32;   ///< outgoing QoS 1/2 messages awaiting acknowledgement
  // TLS to the remote broker.
  bool tls = false;
  std::string cacertfile;   ///< CA certificates (PEM) to verify the remote; "" = system CAs
  std::string certfile;     ///< client certificate chain (PEM); "" = none
  std::string keyfile;      ///< its private key
  bool verify = true;       ///< verify the remote's certificate and name
  std::string server_name;  ///< name checked and sent as SNI; "" = the address's host
  std::vector<bridge_topic_config> topics;
};

struct config {
  std::string node_name = "tern@127.0.0.1";
  std::string data_dir = "data";
  std::string log_level = "info";
  /// CAF scheduler workers and Asio I/O threads; 0 = one per core.
  std::uint32_t worker_threads = 0;
  std::uint32_t io_threads = 0;  ///< 0: one per CPU core
  mqtt_config mqtt;
  session_config session;
  auth_config auth;
  acl_config acl;
  ban_config ban;
  hooks_config hooks;
  mqtt5_config mqtt5;
  http_config http;
  sys_config sys;
  scheduler_config scheduler;
  std::map<std::string, listener_config> listeners{{"tcp.default", listener_config{"default"}}};
  cluster_config cluster;
  flow_config flow;
  store_config store;
  std::map<std::string, bridge_config> bridges;  ///< by name; none by default
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
