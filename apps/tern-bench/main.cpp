// tern-bench: MQTT load generator and delivery checker (flag parsing and wiring only).
//
//   tern-bench conn   --conns 5000 --conn-rate 2000 -d 30
//   tern-bench pub    --pubs 100 -q 1 -r 100 -t 'bench/%i' -d 60
//   tern-bench sub    --subs 10 --filter 'bench/#'
//   tern-bench fanin  --pubs 100 -q 1 -n 2000
//   tern-bench fanout --subs 1000 -n 200
//   tern-bench pairs  --pairs 1000 -r 10000 -q 1 -d 30 --json --check
//   tern-bench fanin  --pubs 100 -q 1 --persistent -d 10
//   tern-bench conn   --conns 1000 -p 8883 --tls --cafile ca.pem --tls-server-name broker
//
// A process holds at most one socket per client and the open-file limit caps that (20,000
// here): for more connections run several processes with disjoint --id-offset ranges, and
// give each its own --source-ip (127.0.0.2, 127.0.0.3, ...) once one address runs out of
// ephemeral ports (about 28,000 connections to one broker port).
#include <cstdio>
#include <exception>
#include <string>
#include <utility>

#include <CLI/CLI.hpp>

#include "apps/tern-bench/engine.hpp"
#include "apps/tern-bench/stats.hpp"

namespace {

using tern::bench::options;
using tern::bench::scenario;

struct flags {
  std::string scenario_name;
  double duration_s = 0;
  double drain_s = 5;
  int connect_timeout_s = 30;
  bool is_json = false;
  bool is_check = false;
};

void add_flags(CLI::App& app, options& o, flags& f) {
  app.set_help_flag("--help", "Print this help and exit");
  app.add_option("--scenario", f.scenario_name,
                 "conn, pub, sub, fanin, fanout or pairs (instead of a subcommand)");
  app.add_option("-h,--host", o.host, "broker host")->capture_default_str();
  app.add_option("-p,--port", o.port, "broker port")->capture_default_str();
  app.add_option("-V,--protocol-version", o.protocol, "4 = MQTT 3.1.1, 5 = MQTT 5.0")
      ->check(CLI::IsMember({4, 5}))
      ->capture_default_str();
  app.add_option("-q,--qos", o.qos, "publish QoS")->check(CLI::Range(0, 2))->capture_default_str();
  app.add_option("--sub-qos", o.sub_qos, "subscription QoS (default: --qos)")
      ->check(CLI::Range(0, 2));
  app.add_option("-s,--size", o.size, "payload bytes (at least 24, the stamp)")
      ->check(CLI::Range(tern::bench::stamp_size, std::size_t{1000} * 1000))
      ->capture_default_str();
  app.add_option("--conns", o.conns, "conn: connections (default 1000)");
  app.add_option("--pubs", o.pubs,
                 "pub/fanin: publishers (default 10); sub: publishers to expect, with --count");
  app.add_option("--subs", o.subs, "sub/fanout: subscribers (default 10)");
  app.add_option("--pairs", o.pairs, "pairs: publisher/subscriber pairs (default 10)");
  app.add_option("-n,--count", o.count,
                 "messages per publisher (sub: per publisher to expect); 0 = use --duration");
  app.add_option("-d,--duration", f.duration_s,
                 "seconds to publish (conn: to hold); default 10 when --count is 0");
  app.add_option("-r,--rate", o.rate,
                 "messages/s per publisher (pairs: in total); 0 = as fast as flow control allows")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--inflight", o.inflight, "unacknowledged QoS 1/2 messages per publisher")
      ->check(CLI::Range(1, 65535))
      ->capture_default_str();
  app.add_option("-t,--topic", o.topic, "publish topic, %i = client index");
  app.add_option("--filter", o.filter, "subscription filter, %i = client index");
  app.add_option("--conn-rate", o.conn_rate, "new connections/s; 0 = unlimited")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--conn-parallel", o.conn_parallel, "connection handshakes in progress at once")
      ->check(CLI::Range(1U, 1000000U))
      ->capture_default_str();
  app.add_option("--connect-timeout", f.connect_timeout_s, "seconds to wait for CONNACK/SUBACK")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("-k,--keepalive", o.keepalive, "keep alive seconds (0 = off)")
      ->capture_default_str();
  app.add_option("--client-prefix", o.client_prefix, "client ids are PREFIX-{pub,sub,conn}-INDEX")
      ->capture_default_str();
  app.add_flag("--persistent", o.is_persistent,
               "persistent sessions: clean session 0 (3.1.1), clean start 0 and session expiry "
               "3600 s (5.0); a rerun against the same broker needs another --client-prefix");
  app.add_option("--id-offset", o.id_offset,
                 "first client index of this process, for several processes in one run")
      ->capture_default_str();
  app.add_option("--source-ip", o.source_ips,
                 "local addresses to connect from, round robin (e.g. 127.0.0.2 127.0.0.3)");
  app.add_option("-u,--username", o.username, "user name");
  app.add_option("-P,--password", o.password, "password");
  app.add_flag("--tls", o.is_tls, "MQTT over TLS (implied by --cafile, --cert and --key)");
  app.add_option("--cafile", o.ca_file,
                 "PEM CA certificate(s): verify the broker's certificate with them "
                 "(without: not verified)")
      ->check(CLI::ExistingFile);
  app.add_option("--cert", o.cert_file, "PEM client certificate (chain)")->check(CLI::ExistingFile);
  app.add_option("--key", o.key_file, "PEM private key of --cert (default: in --cert)")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-server-name", o.tls_server_name,
                 "TLS server name: sent as SNI and, with --cafile, required in the broker's "
                 "certificate");
  app.add_option("--threads", o.threads, "io threads")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--drain", f.drain_s,
                 "seconds to wait for outstanding acks and deliveries after publishing "
                 "(sub: end after this long without deliveries)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_flag("--strict", o.is_strict, "decode every packet with the full codec");
  app.add_flag("--quiet", o.is_quiet, "no progress lines");
  app.add_flag("--json", f.is_json, "print the summary as one JSON object");
  app.add_flag("--check", f.is_check,
               "exit 1 if a connection failed, or a QoS>=1 message was lost, duplicated or "
               "reordered");
}

/// Fills the per-scenario defaults; returns an error message or "".
std::string finish(options& o, const flags& f) {
  if (!tern::bench::parse_scenario(f.scenario_name, o.kind)) {
    return "unknown scenario \"" + f.scenario_name + "\"";
  }
  const auto or_default = [](std::uint32_t& v) {
    if (v == 0) {
      v = 10;
    }
  };
  switch (o.kind) {
    case scenario::conn:
      if (o.conns == 0) {
        o.conns = 1000;
      }
      break;
    case scenario::pub:
    case scenario::fanin:
      or_default(o.pubs);
      break;
    case scenario::sub:
    case scenario::fanout:
      or_default(o.subs);
      break;
    case scenario::pairs:
      or_default(o.pairs);
      break;
  }
  if (o.topic.find_first_of("+#") != std::string::npos) {
    return "--topic must not contain wildcards";
  }
  if (!o.ca_file.empty() || !o.cert_file.empty() || !o.key_file.empty() ||
      !o.tls_server_name.empty()) {
    o.is_tls = true;
  }
  if (!o.key_file.empty() && o.cert_file.empty()) {
    return "--key needs --cert";
  }
  o.duration = std::chrono::duration<double>(f.duration_s);
  if (f.duration_s <= 0 && o.count == 0 && o.kind != scenario::sub) {
    o.duration = std::chrono::seconds(10);
  }
  o.drain = std::chrono::duration<double>(f.drain_s);
  o.connect_timeout = std::chrono::seconds(f.connect_timeout_s);
  return {};
}

/// Why --check fails, or "" when it passes.
std::string check(const tern::bench::summary& s, const options& o) {
  std::string why;
  if (s.connect_failed + s.disconnected_early > 0) {
    why += " connections failed: " + std::to_string(s.connect_failed + s.disconnected_early) + ";";
  }
  const int qos = std::min(o.qos, tern::bench::effective_sub_qos(o));
  if (qos >= 1 && s.has_expected && s.lost > 0) {
    why += " lost " + std::to_string(s.lost) + ";";
  }
  if (qos >= 1 && s.duplicated > 0) {
    why += " duplicated " + std::to_string(s.duplicated) + ";";
  }
  if (qos >= 1 && s.reordered > 0) {
    why += " reordered " + std::to_string(s.reordered) + ";";
  }
  return why;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tern-bench: MQTT load generator and delivery checker"};
  options o;
  flags f;
  add_flags(app, o, f);
  app.fallthrough();
  app.require_subcommand(0, 1);
  const std::pair<const char*, const char*> scenarios[] = {
      {"conn", "open --conns connections at --conn-rate, hold them idle for --duration"},
      {"pub", "--pubs publishers on --topic (bench/%i); checked by a separate 'sub' run"},
      {"sub", "--subs subscribers on --filter (bench/#), checking any tern-bench publisher"},
      {"fanin", "--pubs publishers -> 1 subscriber on a wildcard (bench/fanin/%i, +)"},
      {"fanout", "1 publisher -> --subs subscribers (bench/fanout)"},
      {"pairs", "--pairs publisher/subscriber pairs, one topic each (bench/pairs/%i); "
                "--rate is the total"},
  };
  for (const auto& [name, what] : scenarios) {
    app.add_subcommand(name, what)->fallthrough();
  }
  CLI11_PARSE(app, argc, argv);
  for (const auto* sub : app.get_subcommands()) {
    f.scenario_name = sub->get_name();
  }
  if (f.scenario_name.empty()) {
    std::fprintf(stderr, "tern-bench: name a scenario (conn, pub, sub, fanin, fanout, pairs)\n");
    return 2;
  }
  if (const std::string err = finish(o, f); !err.empty()) {
    std::fprintf(stderr, "tern-bench: %s\n", err.c_str());
    return 2;
  }
  tern::bench::summary s;
  try {
    s = tern::bench::run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tern-bench: %s\n", e.what());
    return 2;
  }
  for (const auto& e : s.errors) {
    std::fprintf(stderr, "error: %s\n", e.c_str());
  }
  const std::string out = f.is_json ? tern::bench::to_json(s) + "\n" : tern::bench::to_text(s);
  std::fputs(out.c_str(), stdout);
  if (f.is_check) {
    if (const std::string why = check(s, o); !why.empty()) {
      std::fprintf(stderr, "check failed:%s\n", why.c_str());
      return 1;
    }
  }
  return 0;
}
