// Node configuration: TOML parsing with a fixed schema and errors that name file:line: key.
#include "actors/config/config.hpp"

#include <algorithm>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <vector>

#include <toml++/toml.h>

namespace tern::actors::config {

namespace {

// Longest duration accepted anywhere: 100 years, far from overflowing any clock arithmetic.
constexpr std::uint64_t max_duration_ms = 100ULL * 365 * 24 * 3600 * 1000;

struct bad_value {
  std::string what;
};

std::string where(const std::string& origin, const toml::node& n, const std::string& key) {
  return origin + ":" + std::to_string(n.source().begin.line) + ": " + key + ": ";
}

std::uint32_t as_u32(const toml::node& n, std::uint32_t min = 0,
                     std::uint32_t max = std::numeric_limits<std::uint32_t>::max()) {
  auto v = n.value<std::int64_t>();
  if (!n.is_integer() || !v) {
    throw bad_value{"expected an integer"};
  }
  if (*v < static_cast<std::int64_t>(min) || *v > static_cast<std::int64_t>(max)) {
    throw bad_value{"must be between " + std::to_string(min) + " and " + std::to_string(max)};
  }
  return static_cast<std::uint32_t>(*v);
}

bool as_bool(const toml::node& n) {
  if (!n.is_boolean()) {
    throw bad_value{"expected true or false"};
  }
  return *n.value<bool>();
}

std::string as_string(const toml::node& n) {
  if (!n.is_string()) {
    throw bad_value{"expected a string"};
  }
  return *n.value<std::string>();
}

std::chrono::milliseconds as_duration(const toml::node& n) {
  if (n.is_integer()) {
    auto v = *n.value<std::int64_t>();
    if (v < 0) {
      throw bad_value{"must not be negative"};
    }
    if (static_cast<std::uint64_t>(v) > max_duration_ms / 1000) {
      throw bad_value{"must be at most 100 years"};
    }
    return std::chrono::seconds(v);
  }
  if (n.is_string()) {
    if (auto d = parse_duration(*n.value<std::string>())) {
      return *d;
    }
  }
  throw bad_value{
      "expected a duration of at most 100 years such as \"500ms\", \"20s\", \"5m\", \"2h\" or "
      "seconds"};
}

/// A "host:port" string ("" allowed when `allow_empty`).
std::string as_address(const toml::node& n, bool allow_empty) {
  auto v = as_string(n);
  if ((v.empty() && allow_empty) || split_host_port(v)) {
    return v;
  }
  throw bad_value{"expected \"host:port\" or \"[ipv6]:port\""};
}

std::vector<std::string> as_strings(const toml::node& n) {
  auto* arr = n.as_array();
  if (!arr) {
    throw bad_value{"expected an array of strings"};
  }
  std::vector<std::string> out;
  for (const auto& e : *arr) {
    out.push_back(as_string(e));
  }
  return out;
}

std::string one_of(const toml::node& n, std::initializer_list<const char*> allowed) {
  auto v = as_string(n);
  std::string list;
  for (const auto* a : allowed) {
    if (v == a) {
      return v;
    }
    list += list.empty() ? a : std::string(", ") + a;
  }
  throw bad_value{"expected one of " + list};
}

using setter = std::function<void(config&, const toml::node&)>;

const std::map<std::string, setter>& schema() {
  static const std::map<std::string, setter> s = {
      {"node.name", [](config& c, const toml::node& n) { c.node_name = as_string(n); }},
      {"node.data_dir", [](config& c, const toml::node& n) { c.data_dir = as_string(n); }},
      {"node.worker_threads",
       [](config& c, const toml::node& n) { c.worker_threads = as_u32(n, 0, 256); }},
      {"node.io_threads", [](config& c, const toml::node& n) { c.io_threads = as_u32(n, 0, 256); }},
      // [scheduler]
      {"scheduler.policy",
       [](config& c, const toml::node& n) { c.scheduler.policy = one_of(n, {"stealing", "sharing"}); }},
      {"scheduler.max_throughput",
       [](config& c, const toml::node& n) { c.scheduler.max_throughput = as_u32(n); }},
      {"scheduler.aggressive_poll_attempts",
       [](config& c, const toml::node& n) {
         c.scheduler.aggressive_poll_attempts = as_u32(n, 0, 1000000);
       }},
      {"scheduler.aggressive_steal_interval",
       [](config& c, const toml::node& n) {
         c.scheduler.aggressive_steal_interval = as_u32(n, 1, 1000000);
       }},
      {"scheduler.moderate_poll_attempts",
       [](config& c, const toml::node& n) {
         c.scheduler.moderate_poll_attempts = as_u32(n, 0, 1000000);
       }},
      {"scheduler.moderate_steal_interval",
       [](config& c, const toml::node& n) {
         c.scheduler.moderate_steal_interval = as_u32(n, 1, 1000000);
       }},
      {"scheduler.moderate_sleep_us",
       [](config& c, const toml::node& n) {
         c.scheduler.moderate_sleep_us = as_u32(n, 0, 1000000);
       }},
      {"scheduler.relaxed_steal_interval",
       [](config& c, const toml::node& n) {
         c.scheduler.relaxed_steal_interval = as_u32(n, 1, 1000000);
       }},
      {"scheduler.relaxed_sleep_us",
       [](config& c, const toml::node& n) {
         c.scheduler.relaxed_sleep_us = as_u32(n, 1, 60000000);
       }},
      {"log.level",
       [](config& c, const toml::node& n) {
         auto v = as_string(n);
         static const char* levels[] = {"trace", "debug", "info", "warn", "error", "off"};
         for (auto* l : levels) {
           if (v == l) {
             c.log_level = v;
             return;
           }
         }
         throw bad_value{"expected one of trace, debug, info, warn, error, off"};
       }},
      {"mqtt.max_packet_size",
       [](config& c, const toml::node& n) {
         c.mqtt.max_packet_size = as_u32(n, 16, 268435455 + 5);
       }},
      {"mqtt.max_clientid_len",
       [](config& c, const toml::node& n) { c.mqtt.max_clientid_len = as_u32(n, 23, 65535); }},
      {"mqtt.max_topic_levels",
       [](config& c, const toml::node& n) { c.mqtt.max_topic_levels = as_u32(n, 0, 65535); }},
      {"mqtt.keepalive_backoff",
       [](config& c, const toml::node& n) {
         auto v = n.value<double>();
         if (!v || *v < 1.0 || *v > 10.0) {
           throw bad_value{"expected a number between 1.0 and 10.0"};
         }
         c.mqtt.keepalive_backoff = *v;
       }},
      {"mqtt.connect_timeout",
       [](config& c, const toml::node& n) { c.mqtt.connect_timeout = as_duration(n); }},
      {"session.expiry_interval",
       [](config& c, const toml::node& n) { c.session.expiry_interval = as_duration(n); }},
      {"session.max_inflight",
       [](config& c, const toml::node& n) { c.session.max_inflight = as_u32(n, 1, 65535); }},
      {"session.max_queued_messages",
       [](config& c, const toml::node& n) { c.session.max_queued_messages = as_u32(n, 0); }},
      {"session.queue_qos0",
       [](config& c, const toml::node& n) { c.session.queue_qos0 = as_bool(n); }},
      {"session.retry_interval",
       [](config& c, const toml::node& n) { c.session.retry_interval = as_duration(n); }},
      {"session.max_awaiting_rel",
       [](config& c, const toml::node& n) { c.session.max_awaiting_rel = as_u32(n, 1, 65535); }},
      {"session.await_rel_timeout",
       [](config& c, const toml::node& n) { c.session.await_rel_timeout = as_duration(n); }},
      {"session.max_subscriptions",
       [](config& c, const toml::node& n) { c.session.max_subscriptions = as_u32(n); }},
      // [cluster]
      {"cluster.listen",
       [](config& c, const toml::node& n) { c.cluster.listen = as_address(n, true); }},
      {"cluster.advertise",
       [](config& c, const toml::node& n) { c.cluster.advertise = as_address(n, true); }},
      {"cluster.seeds",
       [](config& c, const toml::node& n) {
         auto* a = n.as_array();
         if (!a) {
           throw bad_value{"expected an array of \"host:port\" strings"};
         }
         c.cluster.seeds.clear();
         for (auto&& e : *a) {
           c.cluster.seeds.push_back(as_address(e, false));
         }
       }},
      {"cluster.cookie", [](config& c, const toml::node& n) { c.cluster.cookie = as_string(n); }},
      {"cluster.heartbeat_interval",
       [](config& c, const toml::node& n) { c.cluster.heartbeat_interval = as_duration(n); }},
      {"cluster.connection_timeout",
       [](config& c, const toml::node& n) { c.cluster.connection_timeout = as_duration(n); }},
      {"cluster.reconnect_interval",
       [](config& c, const toml::node& n) {
         c.cluster.reconnect_interval = as_duration(n);
         if (c.cluster.reconnect_interval.count() < 10) {
           throw bad_value{"must be at least 10ms"};
         }
       }},
      {"cluster.tls", [](config& c, const toml::node& n) { c.cluster.tls = as_bool(n); }},
      {"cluster.tls_cert",
       [](config& c, const toml::node& n) { c.cluster.tls_cert = as_string(n); }},
      {"cluster.tls_key", [](config& c, const toml::node& n) { c.cluster.tls_key = as_string(n); }},
      {"cluster.tls_cafile",
       [](config& c, const toml::node& n) { c.cluster.tls_cafile = as_string(n); }},
      {"cluster.max_forward_queue",
       [](config& c, const toml::node& n) { c.cluster.max_forward_queue = as_u32(n, 1); }},
      {"session.max_send_buffer",
       [](config& c, const toml::node& n) { c.session.max_send_buffer = as_u32(n, 4096); }},
      {"store.durability",
       [](config& c, const toml::node& n) {
         c.store.durability = one_of(n, {"batch", "sync", "none"});
       }},
      {"store.min_free_mb",
       [](config& c, const toml::node& n) { c.store.min_free_mb = as_u32(n); }},
      // [flow]: back-pressure from slow subscribers to publishers.
      {"flow.max_buffered_mb",
       [](config& c, const toml::node& n) { c.flow.max_buffered_mb = as_u32(n); }},
      {"flow.high_watermark",
       [](config& c, const toml::node& n) { c.flow.high_watermark = as_u32(n); }},
      {"flow.max_pause",
       [](config& c, const toml::node& n) {
         c.flow.max_pause = as_duration(n);
         if (c.flow.max_pause.count() < 1) {
           throw bad_value{"must be positive"};
         }
       }},
      // [auth] [acl] [ban] [hooks]: access control and hooks.
      {"auth.allow_anonymous",
       [](config& c, const toml::node& n) { c.auth.allow_anonymous = as_bool(n); }},
      {"auth.chain",
       [](config& c, const toml::node& n) {
         auto v = as_strings(n);
         for (const auto& p : v) {
           if (p != "password_file" && p != "clientid" && p != "cert" && p != "http" &&
               p != "pgsql") {
             throw bad_value{"unknown provider \"" + p +
                             "\" (expected password_file, clientid, cert, http, pgsql)"};
           }
         }
         c.auth.chain = std::move(v);
       }},
      {"auth.password_file",
       [](config& c, const toml::node& n) { c.auth.password_file = as_string(n); }},
      {"auth.clientid_file",
       [](config& c, const toml::node& n) { c.auth.clientid_file = as_string(n); }},
      {"auth.http_url",
       [](config& c, const toml::node& n) {
         auto v = as_string(n);
         if (!v.empty() && v.rfind("http://", 0) != 0) {
           throw bad_value{"expected an http:// URL"};
         }
         c.auth.http_url = v;
       }},
      {"auth.http_body",
       [](config& c, const toml::node& n) { c.auth.http_body = one_of(n, {"json", "form"}); }},
      {"auth.http_timeout",
       [](config& c, const toml::node& n) { c.auth.http_timeout = as_duration(n); }},
      {"auth.pgsql_conninfo",
       [](config& c, const toml::node& n) { c.auth.pgsql_conninfo = as_string(n); }},
      {"auth.pgsql_query",
       [](config& c, const toml::node& n) { c.auth.pgsql_query = as_string(n); }},
      {"auth.pgsql_timeout",
       [](config& c, const toml::node& n) { c.auth.pgsql_timeout = as_duration(n); }},
      {"acl.file", [](config& c, const toml::node& n) { c.acl.file = as_string(n); }},
      {"acl.format",
       [](config& c, const toml::node& n) { c.acl.format = one_of(n, {"emqttd", "mosquitto"}); }},
      {"acl.no_match",
       [](config& c, const toml::node& n) {
         c.acl.no_match_allow = one_of(n, {"allow", "deny"}) == "allow";
       }},
      {"acl.cache_size",
       [](config& c, const toml::node& n) { c.acl.cache_size = as_u32(n, 0, 65535); }},
      {"ban.enabled", [](config& c, const toml::node& n) { c.ban.enabled = as_bool(n); }},
      {"ban.max_failures",
       [](config& c, const toml::node& n) { c.ban.max_failures = as_u32(n, 1, 1000000); }},
      {"ban.window", [](config& c, const toml::node& n) { c.ban.window = as_duration(n); }},
      {"ban.duration", [](config& c, const toml::node& n) { c.ban.duration = as_duration(n); }},
      {"hooks.audit_log", [](config& c, const toml::node& n) { c.hooks.audit_log = as_string(n); }},
      {"hooks.audit_events",
       [](config& c, const toml::node& n) {
         static const char* points[] = {
             "client.connect",    "client.connected",   "client.disconnected",
             "client.authenticate", "client.check_acl", "client.subscribe",
             "client.unsubscribe", "session.created",   "session.subscribed",
             "session.terminated", "message.publish",   "message.delivered",
             "message.acked",     "message.dropped"};
         auto v = as_strings(n);
         for (const auto& e : v) {
           if (std::find(std::begin(points), std::end(points), e) == std::end(points)) {
             throw bad_value{"unknown hook point \"" + e + "\""};
           }
         }
         c.hooks.audit_events = std::move(v);
       }},
      {"mqtt5.max_keepalive",
       [](config& c, const toml::node& n) { c.mqtt5.max_keepalive = as_u32(n, 0, 65535); }},
      {"mqtt5.topic_alias_maximum",
       [](config& c, const toml::node& n) { c.mqtt5.topic_alias_maximum = as_u32(n, 0, 65535); }},
      {"mqtt5.response_information",
       [](config& c, const toml::node& n) { c.mqtt5.response_information = as_string(n); }},
      {"mqtt5.server_reference",
       [](config& c, const toml::node& n) { c.mqtt5.server_reference = as_string(n); }},
      {"mqtt5.shared_subscription_strategy",
       [](config& c, const toml::node& n) {
         auto v = as_string(n);
         static const char* names[] = {"random", "round_robin", "sticky", "hash_clientid"};
         if (std::find(std::begin(names), std::end(names), v) == std::end(names)) {
           throw bad_value{"expected one of random, round_robin, sticky, hash_clientid"};
         }
         c.mqtt5.shared_subscription_strategy = v;
       }},
      // [http] and [sys]: management API and $SYS topics.
      {"http.enabled", [](config& c, const toml::node& n) { c.http.enabled = as_bool(n); }},
      {"http.bind", [](config& c, const toml::node& n) { c.http.bind = as_string(n); }},
      {"http.port",
       [](config& c, const toml::node& n) {
         c.http.port = static_cast<std::uint16_t>(as_u32(n, 0, 65535));
       }},
      {"http.users",
       [](config& c, const toml::node& n) {
         auto users = as_strings(n);
         for (auto& u : users) {
           auto colon = u.find(':');
           if (colon == 0 || colon == std::string::npos || colon + 1 == u.size()) {
             throw bad_value{"expected \"name:password\" entries"};
           }
         }
         c.http.users = std::move(users);
       }},
      {"http.api_keys",
       [](config& c, const toml::node& n) {
         auto keys = as_strings(n);
         for (auto& k : keys) {
           if (k.size() < 16) {
             throw bad_value{"API keys must have at least 16 characters"};
           }
         }
         c.http.api_keys = std::move(keys);
       }},
      {"http.tls_cert", [](config& c, const toml::node& n) { c.http.tls_cert = as_string(n); }},
      {"http.tls_key", [](config& c, const toml::node& n) { c.http.tls_key = as_string(n); }},
      {"sys.interval", [](config& c, const toml::node& n) { c.sys.interval = as_duration(n); }},
      {"sys.presence", [](config& c, const toml::node& n) { c.sys.presence = as_bool(n); }},
  };
  return s;
}

std::string default_bind(const std::string& kind) {
  if (kind == "ssl") {
    return "127.0.0.1:8883";
  }
  if (kind == "ws") {
    return "127.0.0.1:8083";
  }
  if (kind == "wss") {
    return "127.0.0.1:8084";
  }
  return "127.0.0.1:1883";
}

std::string as_choice(const toml::node& n, std::initializer_list<const char*> choices) {
  auto v = as_string(n);
  std::string all;
  for (auto* c : choices) {
    if (v == c) {
      return v;
    }
    all += all.empty() ? c : std::string(", ") + c;
  }
  throw bad_value{"expected one of " + all};
}

std::string as_tls_versions(const toml::node& n) {
  auto v = as_string(n);
  std::stringstream ss(v);
  std::string item;
  int count = 0;
  while (std::getline(ss, item, ',')) {
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (item != "tlsv1.2" && item != "tlsv1.3") {
      throw bad_value{"expected a comma-separated list of tlsv1.2, tlsv1.3"};
    }
    ++count;
  }
  if (count == 0) {
    throw bad_value{"expected a comma-separated list of tlsv1.2, tlsv1.3"};
  }
  return v;
}

// Listener keys valid for every kind, for TLS kinds and for WebSocket kinds.
bool set_listener_key(listener_config& l, const std::string& k, const toml::node& v) {
  if (k == "bind") {
    l.bind = as_string(v);
    if (!split_host_port(l.bind)) {
      throw bad_value{"expected \"host:port\" or \"[ipv6]:port\""};
    }
  } else if (k == "max_connections") {
    l.max_connections = as_u32(v, 1);
  } else if (k == "acceptors") {
    l.acceptors = as_u32(v, 1, 1024);
  } else if (k == "max_conn_rate") {
    l.max_conn_rate = as_u32(v);
  } else if (k == "max_bytes_in_rate") {
    l.max_bytes_in_rate = as_u32(v);
  } else if (k == "max_bytes_in_burst") {
    l.max_bytes_in_burst = as_u32(v);
  } else if (k == "max_publish_rate") {
    l.max_publish_rate = as_u32(v);
  } else if (k == "max_publish_burst") {
    l.max_publish_burst = as_u32(v);
  } else if (k == "proxy_protocol") {
    l.proxy_protocol = as_bool(v);
  } else if (l.is_tls() && k == "certfile") {
    l.certfile = as_string(v);
  } else if (l.is_tls() && k == "keyfile") {
    l.keyfile = as_string(v);
  } else if (l.is_tls() && k == "cacertfile") {
    l.cacertfile = as_string(v);
  } else if (l.is_tls() && k == "verify") {
    l.verify = as_choice(v, {"none", "request", "require"});
  } else if (l.is_tls() && k == "tls_versions") {
    l.tls_versions = as_tls_versions(v);
  } else if (l.is_tls() && k == "ciphers") {
    l.ciphers = as_string(v);
  } else if (l.is_tls() && k == "ciphersuites") {
    l.ciphersuites = as_string(v);
  } else if (l.is_tls() && k == "peer_cert_as_username") {
    l.peer_cert_as_username = as_choice(v, {"none", "cn", "san"});
  } else if (l.is_tls() && k == "peer_cert_as_clientid") {
    l.peer_cert_as_clientid = as_choice(v, {"none", "cn", "san"});
  } else if (l.is_ws() && k == "path") {
    l.path = as_string(v);
    if (l.path.empty() || l.path[0] != '/') {
      throw bad_value{"expected a path starting with /"};
    }
  } else {
    return false;
  }
  return true;
}

void apply_listener(config& c, const std::string& kind, const std::string& name,
                    const toml::table& t, const std::string& origin) {
  if (kind != "tcp" && kind != "ssl" && kind != "ws" && kind != "wss") {
    throw std::runtime_error(where(origin, t, "listeners." + kind) +
                             "unknown listener kind (supported: tcp, ssl, ws, wss)");
  }
  auto key = kind + "." + name;
  listener_config l;
  if (auto it = c.listeners.find(key); it != c.listeners.end()) {
    l = it->second;
  } else {
    l.bind = default_bind(kind);
  }
  l.name = name;
  l.kind = kind;
  bool enabled = true;
  for (auto&& [k, v] : t) {
    std::string full = "listeners." + key + "." + std::string(k.str());
    try {
      if (k == "enabled") {
        enabled = as_bool(v);
      } else if (!set_listener_key(l, std::string(k.str()), v)) {
        static const char* tls_ws_keys[] = {
            "certfile", "keyfile", "cacertfile", "verify", "tls_versions", "ciphers",
            "ciphersuites", "peer_cert_as_username", "peer_cert_as_clientid", "path"};
        bool is_other_kinds = std::find(std::begin(tls_ws_keys), std::end(tls_ws_keys),
                                        std::string(k.str())) != std::end(tls_ws_keys);
        throw bad_value{is_other_kinds ? "unknown key for a listener of kind " + kind
                                       : std::string("unknown key")};
      }
    } catch (const bad_value& e) {
      throw std::runtime_error(where(origin, v, full) + e.what);
    }
  }
  if (l.is_tls() && (l.certfile.empty() || l.keyfile.empty())) {
    throw std::runtime_error(where(origin, t, "listeners." + key) +
                             "a TLS listener needs certfile and keyfile");
  }
  if (l.is_tls() && l.verify != "none" && l.cacertfile.empty()) {
    throw std::runtime_error(where(origin, t, "listeners." + key) +
                             "verify = \"" + l.verify + "\" needs cacertfile");
  }
  if (enabled) {
    c.listeners[key] = std::move(l);
  } else {
    c.listeners.erase(key);  // shown in the file, switched off
  }
}

void apply_listeners(config& c, const toml::table& t, const std::string& origin) {
  for (auto&& [kind, kinds] : t) {
    auto* kt = kinds.as_table();
    if (!kt) {
      throw std::runtime_error(where(origin, kinds, "listeners." + std::string(kind.str())) +
                               "expected a table [listeners.<kind>.<name>]");
    }
    for (auto&& [name, body] : *kt) {
      auto* bt = body.as_table();
      std::string full = "listeners." + std::string(kind.str()) + "." + std::string(name.str());
      if (!bt) {
        throw std::runtime_error(where(origin, body, full) + "expected a table");
      }
      apply_listener(c, std::string(kind.str()), std::string(name.str()), *bt, origin);
    }
  }
}

// [bridges.<name>]: one MQTT bridge to a remote broker per table.

/// A topic filter by the MQTT rules ('+' and '#' whole levels, '#' last); `allow_wildcards`
/// false for prefixes.
bool is_valid_filter_text(const std::string& f, bool allow_wildcards) {
  if (f.find('\0') != std::string::npos) {
    return false;
  }
  for (std::size_t i = 0; i < f.size(); ++i) {
    if (f[i] != '+' && f[i] != '#') {
      continue;
    }
    if (!allow_wildcards) {
      return false;
    }
    bool starts_level = i == 0 || f[i - 1] == '/';
    bool ends_level = i + 1 == f.size() || f[i + 1] == '/';
    if (!starts_level || !ends_level || (f[i] == '#' && i + 1 != f.size())) {
      return false;
    }
  }
  return true;
}

bridge_topic_config as_bridge_topic(const toml::node& n) {
  auto* t = n.as_table();
  if (!t) {
    throw bad_value{"expected an inline table { filter = \"...\", direction = \"out\" }"};
  }
  bridge_topic_config r;
  bool has_filter = false;
  for (auto&& [k, v] : *t) {
    std::string key(k.str());
    if (key == "filter") {
      r.filter = as_string(v);
      has_filter = true;
    } else if (key == "direction") {
      r.direction = one_of(v, {"out", "in", "both"});
    } else if (key == "qos") {
      r.qos = static_cast<std::uint8_t>(as_u32(v, 0, 2));
    } else if (key == "local_prefix") {
      r.local_prefix = as_string(v);
    } else if (key == "remote_prefix") {
      r.remote_prefix = as_string(v);
    } else {
      throw bad_value{"unknown key \"" + key +
                      "\" in a topic rule (filter, direction, qos, local_prefix, remote_prefix)"};
    }
  }
  if (!has_filter || r.filter.empty()) {
    throw bad_value{"a topic rule needs a non-empty filter"};
  }
  if (!is_valid_filter_text(r.filter, true)) {
    throw bad_value{"invalid topic filter \"" + r.filter + "\""};
  }
  if (!is_valid_filter_text(r.local_prefix, false) ||
      !is_valid_filter_text(r.remote_prefix, false)) {
    throw bad_value{"prefixes must not contain wildcards"};
  }
  return r;
}

void set_bridge_key(bridge_config& b, const std::string& k, const toml::node& v) {
  if (k == "address") {
    b.address = as_address(v, false);
  } else if (k == "client_id") {
    b.client_id = as_string(v);
  } else if (k == "username") {
    b.username = as_string(v);
  } else if (k == "password") {
    b.password = as_string(v);
  } else if (k == "clean_session") {
    b.clean_session = as_bool(v);
  } else if (k == "keepalive") {
    b.keepalive = as_duration(v);
    if (b.keepalive > std::chrono::seconds(65535)) {
      throw bad_value{"must be at most 65535s"};
    }
  } else if (k == "reconnect_interval") {
    b.reconnect_interval = as_duration(v);
    if (b.reconnect_interval < std::chrono::milliseconds(10)) {
      throw bad_value{"must be at least 10ms"};
    }
  } else if (k == "protocol") {
    b.protocol = one_of(v, {"v4", "v5"});
  } else if (k == "node") {
    b.node = as_string(v);
  } else if (k == "max_queued") {
    b.max_queued = as_u32(v, 1, 100000000);
  } else if (k == "max_inflight") {
    b.max_inflight = as_u32(v, 1, 65000);  // packet ids left for SUBSCRIBE
  } else if (k == "tls") {
    b.tls = as_bool(v);
  } else if (k == "cacertfile") {
    b.cacertfile = as_string(v);
  } else if (k == "certfile") {
    b.certfile = as_string(v);
  } else if (k == "keyfile") {
    b.keyfile = as_string(v);
  } else if (k == "verify") {
    b.verify = as_bool(v);
  } else if (k == "server_name") {
    b.server_name = as_string(v);
  } else if (k == "topics") {
    auto* arr = v.as_array();
    if (!arr) {
      throw bad_value{"expected an array of topic rules"};
    }
    b.topics.clear();
    for (const auto& e : *arr) {
      b.topics.push_back(as_bridge_topic(e));
    }
  } else {
    throw bad_value{"unknown key"};
  }
}

void apply_bridges(config& c, const toml::table& t, const std::string& origin) {
  for (auto&& [name, body] : t) {
    std::string full = "bridges." + std::string(name.str());
    auto* bt = body.as_table();
    if (!bt) {
      throw std::runtime_error(where(origin, body, full) + "expected a table [" + full + "]");
    }
    bridge_config b;
    if (auto it = c.bridges.find(std::string(name.str())); it != c.bridges.end()) {
      b = it->second;
    }
    b.name = std::string(name.str());
    for (auto&& [k, v] : *bt) {
      try {
        set_bridge_key(b, std::string(k.str()), v);
      } catch (const bad_value& e) {
        throw std::runtime_error(where(origin, v, full + "." + std::string(k.str())) + e.what);
      }
    }
    if (b.address.empty()) {
      throw std::runtime_error(where(origin, body, full) + "a bridge needs an address");
    }
    if (b.topics.empty()) {
      throw std::runtime_error(where(origin, body, full) + "a bridge needs at least one topic rule");
    }
    if (b.certfile.empty() != b.keyfile.empty()) {
      throw std::runtime_error(where(origin, body, full) + "certfile and keyfile go together");
    }
    c.bridges[b.name] = std::move(b);
  }
}

void apply(config& c, const toml::table& root, const std::string& origin) {
  bool listeners_given = false;
  for (auto&& [section, body] : root) {
    std::string sec(section.str());
    if (sec == "listeners") {
      auto* t = body.as_table();
      if (!t) {
        throw std::runtime_error(where(origin, body, sec) + "expected a table");
      }
      if (!listeners_given) {
        c.listeners.clear();  // a file that lists listeners replaces the default one
        listeners_given = true;
      }
      apply_listeners(c, *t, origin);
      continue;
    }
    if (sec == "bridges") {
      auto* t = body.as_table();
      if (!t) {
        throw std::runtime_error(where(origin, body, sec) + "expected [bridges.<name>] tables");
      }
      apply_bridges(c, *t, origin);
      continue;
    }
    auto* t = body.as_table();
    if (!t) {
      throw std::runtime_error(where(origin, body, sec) + "unknown key (expected a [section])");
    }
    static const char* sections[] = {"node", "log",  "mqtt", "session", "mqtt5", "cluster",
                                     "auth", "acl", "ban",  "hooks",   "http",  "sys",
                                     "scheduler", "flow"};
    // An unknown section with keys is reported at its first key, below.
    if (t->empty() &&
        std::find(std::begin(sections), std::end(sections), sec) == std::end(sections)) {
      throw std::runtime_error(where(origin, body, sec) + "unknown section");
    }
    for (auto&& [k, v] : *t) {
      std::string full = sec + "." + std::string(k.str());
      auto it = schema().find(full);
      if (it == schema().end()) {
        throw std::runtime_error(where(origin, v, full) + "unknown key");
      }
      try {
        it->second(c, v);
      } catch (const bad_value& e) {
        throw std::runtime_error(where(origin, v, full) + e.what);
      }
    }
  }
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  if (text.empty()) {
    return std::nullopt;
  }
  std::size_t i = 0;
  std::uint64_t n = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    n = n * 10 + static_cast<std::uint64_t>(text[i] - '0');
    if (n > 1000000000000ULL) {
      return std::nullopt;
    }
    ++i;
  }
  if (i == 0) {
    return std::nullopt;
  }
  auto unit = text.substr(i);
  std::uint64_t unit_ms = 0;
  if (unit.empty() || unit == "s") {
    unit_ms = 1000;
  } else if (unit == "ms") {
    unit_ms = 1;
  } else if (unit == "m") {
    unit_ms = 60 * 1000;
  } else if (unit == "h") {
    unit_ms = 3600 * 1000;
  } else if (unit == "d") {
    unit_ms = 24 * 3600 * 1000;
  } else {
    return std::nullopt;
  }
  if (n > max_duration_ms / unit_ms) {
    return std::nullopt;
  }
  return std::chrono::milliseconds(n * unit_ms);
}

std::optional<std::pair<std::string, std::uint16_t>> split_host_port(std::string_view s) {
  std::string host;
  std::string_view port;
  if (!s.empty() && s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      return std::nullopt;
    }
    host = std::string(s.substr(1, close - 1));
    port = s.substr(close + 2);
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string_view::npos || s.find(':') != colon) {
      return std::nullopt;
    }
    host = std::string(s.substr(0, colon));
    port = s.substr(colon + 1);
  }
  if (host.empty() || port.empty() || port.size() > 5) {
    return std::nullopt;
  }
  std::uint32_t p = 0;
  for (char ch : port) {
    if (ch < '0' || ch > '9') {
      return std::nullopt;
    }
    p = p * 10 + static_cast<std::uint32_t>(ch - '0');
  }
  if (p > 65535) {
    return std::nullopt;
  }
  return std::make_pair(host, static_cast<std::uint16_t>(p));
}

std::variant<config, config_error> parse(std::string_view toml_text, const std::string& origin,
                                         config base) {
  try {
    auto root = toml::parse(toml_text, origin);
    apply(base, root, origin);
    if (base.listeners.empty()) {
      return config_error{origin + ": listeners: no listener configured (add e.g. "
                                   "[listeners.tcp.default] bind = \"127.0.0.1:1883\")"};
    }
    if (base.http.tls_cert.empty() != base.http.tls_key.empty()) {
      return config_error{origin + ": http: tls_cert and tls_key must be set together"};
    }
    return base;
  } catch (const toml::parse_error& e) {
    return config_error{origin + ":" + std::to_string(e.source().begin.line) + ": " +
                        std::string(e.description())};
  } catch (const std::runtime_error& e) {
    return config_error{e.what()};
  }
}

std::variant<config, config_error> load_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return config_error{path + ": cannot open file"};
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

}  // namespace tern::actors::config
