// tern-bench engine: MQTT clients on Boost.Asio io threads, driven through the phases of one
// scenario (connect, subscribe, publish, drain, disconnect), with progress and a summary.
//
// TLS: with options::is_tls every client runs MQTT over TLS (Boost.Asio ssl, OpenSSL); the
// handshake counts as part of connecting. The plain TCP path is unchanged by it.
//
// Contract: run() blocks the calling thread until the scenario has finished (or SIGINT/SIGTERM
// cut it short) and returns the merged numbers. Setup errors (an unresolvable host, a bad
// source address) are thrown as std::runtime_error before any connection is made; network
// failures of single connections are counted in the summary, never thrown.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "apps/tern-bench/stats.hpp"

namespace tern::bench {

enum class scenario { conn, pub, sub, fanin, fanout, pairs };

/// Parses "conn", "pub", ...; returns false for an unknown name.
bool parse_scenario(const std::string& name, scenario& out);
const char* to_string(scenario s);

struct options {
  scenario kind = scenario::pub;
  std::string host = "127.0.0.1";
  std::uint16_t port = 1883;
  int protocol = 4;  // 4 = MQTT 3.1.1, 5 = MQTT 5.0
  int qos = 0;       // publish QoS
  int sub_qos = -1;  // subscription QoS; -1 = same as qos
  std::size_t size = 256;  // payload bytes, at least stamp_size

  std::uint32_t conns = 0;  // conn: idle connections
  std::uint32_t pubs = 0;   // pub, fanin: publishers; sub: publishers to expect (optional)
  std::uint32_t subs = 0;   // sub, fanout: subscribers
  std::uint32_t pairs = 0;  // pairs: publisher/subscriber pairs

  std::uint64_t count = 0;  // messages per publisher; 0 = until --duration
  std::chrono::duration<double> duration{0};  // publish (or hold) time; 0 = count decides
  double rate = 0;            // msg/s per publisher (pairs: in total); 0 = flow control only
  std::uint32_t inflight = 32;  // unacked QoS 1/2 messages per publisher

  std::string topic;   // publish topic pattern, %i = client index; "" = scenario default
  std::string filter;  // subscription filter, %i = client index; "" = scenario default

  double conn_rate = 0;             // new connections per second; 0 = unlimited
  std::uint32_t conn_parallel = 256;  // connection attempts in progress at once
  std::chrono::seconds connect_timeout{30};
  std::uint16_t keepalive = 60;  // seconds
  // Persistent sessions for every client: clean session 0 (3.1.1), or clean start 0 and a
  // Session Expiry Interval of one hour (5.0).
  bool is_persistent = false;
  std::string client_prefix = "tb";
  std::uint32_t id_offset = 0;  // first client index of this process
  std::vector<std::string> source_ips;  // local addresses to spread connections over
  std::string username;
  std::string password;

  // TLS (MQTT over TLS): off unless is_tls. With a CA file the broker's certificate chain is
  // verified (and its name, when tls_server_name is set); without one it is not checked.
  bool is_tls = false;
  std::string ca_file;          // PEM CA certificate(s) to verify the broker with
  std::string cert_file;        // PEM client certificate, for brokers that require one
  std::string key_file;         // PEM private key of cert_file
  std::string tls_server_name;  // SNI and the name the certificate must carry; "" = none

  int threads = 2;
  std::chrono::duration<double> drain{5};
  bool is_strict = false;  // decode every packet with the full codec
  bool is_quiet = false;   // no progress lines
};

/// The subscription QoS that takes effect.
inline int effective_sub_qos(const options& o) { return o.sub_qos < 0 ? o.qos : o.sub_qos; }

/// Runs one scenario; see the file comment.
summary run(const options& o);

}  // namespace tern::bench
