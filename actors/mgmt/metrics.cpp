// Node metrics: counters and gauges in Prometheus text and emqttd's names.
#include "actors/mgmt/metrics.hpp"

#include <dirent.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "actors/session/backlog.hpp"

#ifndef TERN_VERSION
#define TERN_VERSION "0.0.0"
#endif

namespace tern::actors::mgmt {

namespace {

// Packet type names by MQTT control packet type number (0 and 15 included for completeness).
const char* const packet_names[16] = {"reserved",  "connect",  "connack",     "publish",
                                      "puback",    "pubrec",   "pubrel",      "pubcomp",
                                      "subscribe", "suback",   "unsubscribe", "unsuback",
                                      "pingreq",   "pingresp", "disconnect",  "auth"};

std::uint64_t get(const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); }

std::string format_value(double v) {
  if (std::isnan(v)) {
    return "NaN";
  }
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

// Prometheus label values escape backslash, double quote and newline.
std::string label_value(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

const char* version() { return TERN_VERSION; }

std::string to_prometheus(const std::vector<metric_family>& families) {
  std::string out;
  for (auto& f : families) {
    out += "# HELP " + f.name + " " + f.help + "\n";
    out += "# TYPE " + f.name + " " + f.type + "\n";
    for (auto& [labels, value] : f.samples) {
      out += f.name;
      if (!labels.empty()) {
        out += "{" + labels + "}";
      }
      out += " " + format_value(value) + "\n";
    }
  }
  return out;
}

std::string format_uptime(std::chrono::seconds s) {
  auto total = s.count();
  auto days = total / 86400;
  auto hours = total % 86400 / 3600;
  auto minutes = total % 3600 / 60;
  auto seconds = total % 60;
  std::string out;
  if (days > 0) {
    out += std::to_string(days) + " days,";
  }
  if (days > 0 || hours > 0) {
    out += std::to_string(hours) + " hours, ";
  }
  if (days > 0 || hours > 0 || minutes > 0) {
    out += std::to_string(minutes) + " minutes, ";
  }
  out += std::to_string(seconds) + " seconds";
  return out;
}

process_stats read_process_stats() {
  process_stats p;
  long page = sysconf(_SC_PAGESIZE);
  long ticks = sysconf(_SC_CLK_TCK);
  if (std::ifstream statm{"/proc/self/statm"}) {
    double size = 0;
    double resident = 0;
    statm >> size >> resident;
    p.virtual_bytes = size * static_cast<double>(page);
    p.resident_bytes = resident * static_cast<double>(page);
  }
  if (std::ifstream stat{"/proc/self/stat"}) {
    std::string line;
    std::getline(stat, line);
    // Fields after the command name (which may contain spaces) start after ')'.
    auto close = line.rfind(')');
    if (close != std::string::npos) {
      std::istringstream rest(line.substr(close + 2));
      std::string field;
      double utime = 0;
      double stime = 0;
      for (int i = 3; rest >> field; ++i) {
        if (i == 14) {
          utime = std::stod(field);
        } else if (i == 15) {
          stime = std::stod(field);
          break;
        }
      }
      if (ticks > 0) {
        p.cpu_seconds = (utime + stime) / static_cast<double>(ticks);
      }
    }
  }
  if (DIR* d = opendir("/proc/self/fd")) {
    int n = 0;
    while (readdir(d) != nullptr) {
      ++n;
    }
    closedir(d);
    p.open_fds = std::max(0, n - 3);  // ".", ".." and the DIR's own descriptor
  }
  return p;
}

std::vector<std::pair<std::string, std::uint64_t>> stats_tracker::read(const broker::context& ctx) {
  std::uint64_t sessions = get(ctx.stats.sessions);
  std::uint64_t subs = ctx.routes.subscription_count();
  std::uint64_t topics = ctx.routes.route_count();
  std::uint64_t retained = ctx.retained.size();
  std::lock_guard lock{mtx_};
  sessions_max_ = std::max(sessions_max_, sessions);
  subs_max_ = std::max(subs_max_, subs);
  topics_max_ = std::max(topics_max_, topics);
  retained_max_ = std::max(retained_max_, retained);
  return {
      {"clients/count", ctx.clients.size()},
      {"clients/max", ctx.clients.max()},
      {"sessions/count", sessions},
      {"sessions/max", sessions_max_},
      {"subscriptions/count", subs},
      {"subscriptions/max", subs_max_},
      {"topics/count", topics},
      {"topics/max", topics_max_},
      {"routes/count", topics},
      {"retained/count", retained},
      {"retained/max", retained_max_},
  };
}

std::vector<std::pair<std::string, std::uint64_t>> emqttd_metrics(const broker::context& ctx) {
  auto& s = ctx.stats;
  std::uint64_t in = 0;
  std::uint64_t out = 0;
  for (std::size_t i = 0; i < 16; ++i) {
    in += get(s.packets_received[i]);
    out += get(s.packets_sent[i]);
  }
  auto rx = [&](int t) { return get(s.packets_received[t]); };
  auto tx = [&](int t) { return get(s.packets_sent[t]); };
  return {
      {"bytes/received", get(s.bytes_received)},
      {"bytes/sent", get(s.bytes_sent)},
      {"packets/received", in},
      {"packets/sent", out},
      {"packets/connect", rx(1)},
      {"packets/connack", tx(2)},
      {"packets/publish/received", rx(3)},
      {"packets/publish/sent", tx(3)},
      {"packets/puback/received", rx(4)},
      {"packets/puback/sent", tx(4)},
      {"packets/pubrec/received", rx(5)},
      {"packets/pubrec/sent", tx(5)},
      {"packets/pubrel/received", rx(6)},
      {"packets/pubrel/sent", tx(6)},
      {"packets/pubcomp/received", rx(7)},
      {"packets/pubcomp/sent", tx(7)},
      {"packets/subscribe", rx(8)},
      {"packets/suback", tx(9)},
      {"packets/unsubscribe", rx(10)},
      {"packets/unsuback", tx(11)},
      {"packets/pingreq", rx(12)},
      {"packets/pingresp", tx(13)},
      {"packets/disconnect", rx(14)},
      {"messages/received", get(s.messages_received)},
      {"messages/sent", get(s.messages_sent)},
      {"messages/qos0/received", get(s.publish_received[0])},
      {"messages/qos0/sent", get(s.publish_sent[0])},
      {"messages/qos1/received", get(s.publish_received[1])},
      {"messages/qos1/sent", get(s.publish_sent[1])},
      {"messages/qos2/received", get(s.publish_received[2])},
      {"messages/qos2/sent", get(s.publish_sent[2])},
      {"messages/retained", ctx.retained.size()},
      {"messages/dropped", get(s.messages_dropped)},
  };
}

namespace {

/// One sample per bridge (label bridge="<name>") of each bridge counter; nothing without
/// bridges.
void add_bridge_families(const broker::context& ctx, std::vector<metric_family>& out) {
  if (ctx.bridges.empty()) {
    return;
  }
  using stats = bridge::bridge_stats;
  auto family = [&](const char* name, const char* type, const char* help, auto value) {
    metric_family f{name, type, help, {}};
    for (const auto& b : ctx.bridges) {
      f.samples.emplace_back("bridge=\"" + label_value(b->name) + "\"",
                             static_cast<double>(value(*b)));
    }
    out.push_back(std::move(f));
  };
  family("tern_bridge_connected", "gauge", "1 while the bridge is connected to its remote broker.",
         [](const stats& b) { return b.connected.load() ? 1 : 0; });
  family("tern_bridge_messages_out_total", "counter",
         "Messages the remote broker took from this bridge (acknowledged at QoS 1/2).",
         [](const stats& b) { return b.forwarded_out.load(); });
  family("tern_bridge_messages_in_total", "counter",
         "Messages from the remote broker published on this node.",
         [](const stats& b) { return b.forwarded_in.load(); });
  family("tern_bridge_messages_dropped_total", "counter",
         "Messages for the remote broker dropped because the bridge queue was full.",
         [](const stats& b) { return b.dropped.load(); });
  family("tern_bridge_queued_messages", "gauge",
         "Messages waiting to be sent to the remote broker.",
         [](const stats& b) { return b.queued.load(); });
  family("tern_bridge_inflight_messages", "gauge",
         "Messages sent to the remote broker and not yet acknowledged.",
         [](const stats& b) { return b.inflight.load(); });
  family("tern_bridge_connects_total", "counter", "Connections the remote broker accepted.",
         [](const stats& b) { return b.connects.load(); });
  family("tern_bridge_refusals_total", "counter", "CONNECTs the remote broker refused.",
         [](const stats& b) { return b.refusals.load(); });
}

}  // namespace

std::vector<metric_family> collect_families(const broker::context& ctx, stats_tracker& tracker) {
  auto& s = ctx.stats;
  auto gauges = tracker.read(ctx);
  auto gauge_value = [&](const std::string& name) -> double {
    for (auto& [n, v] : gauges) {
      if (n == name) {
        return static_cast<double>(v);
      }
    }
    return 0;
  };
  auto one = [](double v) { return std::vector<std::pair<std::string, double>>{{"", v}}; };
  auto by_qos = [&](const std::array<std::atomic<std::uint64_t>, 3>& a) {
    std::vector<std::pair<std::string, double>> v;
    for (int q = 0; q < 3; ++q) {
      v.emplace_back("qos=\"" + std::to_string(q) + "\"", static_cast<double>(get(a[q])));
    }
    return v;
  };
  auto by_type = [&](const std::array<std::atomic<std::uint64_t>, 16>& a) {
    std::vector<std::pair<std::string, double>> v;
    for (int t = 1; t < 16; ++t) {
      v.emplace_back(std::string("type=\"") + packet_names[t] + "\"",
                     static_cast<double>(get(a[t])));
    }
    return v;
  };
  auto uptime = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() -
                                                                 ctx.started_at);
  auto start = std::chrono::duration_cast<std::chrono::seconds>(ctx.started_at.time_since_epoch());
  auto proc = read_process_stats();
  auto d = [](std::uint64_t v) { return static_cast<double>(v); };
  std::vector<metric_family> out = {
      {"tern_build_info",
       "gauge",
       "Version and node name of this broker.",
       {{"version=\"" + std::string(version()) + "\",node=\"" + label_value(ctx.cfg.node_name) +
             "\"",
         1}}},
      {"tern_uptime_seconds", "gauge", "Seconds since the node started.",
       one(static_cast<double>(uptime.count()))},
      {"tern_connections", "gauge", "Connected MQTT clients.", one(d(get(s.connections)))},
      {"tern_connections_max", "gauge", "Most clients connected at once since start.",
       one(gauge_value("clients/max"))},
      {"tern_connections_accepted_total", "counter", "Sockets accepted since start.",
       one(d(get(s.connections_total)))},
      {"tern_sessions", "gauge", "Sessions, online and offline.",
       one(gauge_value("sessions/count"))},
      {"tern_subscriptions", "gauge", "Subscriptions (filter, client pairs).",
       one(gauge_value("subscriptions/count"))},
      {"tern_routes", "gauge", "Distinct subscribed topic filters.",
       one(gauge_value("routes/count"))},
      {"tern_retained_messages", "gauge", "Retained messages stored.",
       one(gauge_value("retained/count"))},
      {"tern_messages_received_total", "counter", "PUBLISH packets received from clients, by QoS.",
       by_qos(s.publish_received)},
      {"tern_messages_sent_total", "counter", "PUBLISH packets sent to clients, by QoS.",
       by_qos(s.publish_sent)},
      {"tern_messages_dropped_total", "counter",
       "Messages dropped (queue overflow, slow consumer).", one(d(get(s.messages_dropped)))},
      {"tern_bytes_received_total", "counter", "MQTT bytes read from clients.",
       one(d(get(s.bytes_received)))},
      {"tern_bytes_sent_total", "counter", "MQTT bytes queued for clients.",
       one(d(get(s.bytes_sent)))},
      {"tern_packets_received_total", "counter", "MQTT packets received, by type.",
       by_type(s.packets_received)},
      {"tern_packets_sent_total", "counter", "MQTT packets sent, by type.",
       by_type(s.packets_sent)},
      {"tern_protocol_errors_total", "counter", "Connections closed for protocol violations.",
       one(d(get(s.protocol_errors)))},
      {"tern_auth_failures_total", "counter", "CONNECTs refused for bad credentials.",
       one(d(get(s.auth_failures)))},
      {"tern_acl_denied_total", "counter", "Publishes and subscriptions denied by the ACL.",
       one(d(get(s.acl_denied)))},
      {"tern_limit_hits_total", "counter", "Times a listener or connection limit bit, by limit.",
       {{"limit=\"max_connections\"", d(get(s.refused_max_connections))},
        {"limit=\"max_conn_rate\"", d(get(s.refused_conn_rate))},
        {"limit=\"max_bytes_in_rate\"", d(get(s.bytes_in_limited))},
        {"limit=\"max_publish_rate\"", d(get(s.publish_in_limited))},
        {"limit=\"connect_timeout\"", d(get(s.connect_timeouts))},
        {"limit=\"max_send_buffer\"", d(get(s.send_buffer_overflows))},
        {"limit=\"flow_max_pause\"", d(get(s.stalled_subscribers))},
        {"limit=\"handshake\"", d(get(s.handshake_failures))}}},
      {"tern_flow_pauses_total", "counter",
       "Times a publisher was paused because a session it publishes to (or the node's buffer "
       "budget) was full.",
       one(d(get(s.flow_pauses)))},
      {"tern_flow_buffered_bytes", "gauge",
       "Bytes of deliveries held for connected sessions, as the buffer budget counts them.",
       one(static_cast<double>(std::max<std::int64_t>(0, flow::budget()->size())))},
      {"tern_flow_buffer_limit_bytes", "gauge",
       "The buffer budget (flow.max_buffered_mb); publishers pause at it. 0: no budget.",
       one(static_cast<double>(flow::budget_marks().high))},
      {"tern_cluster_members", "gauge", "Running nodes in this node's cluster (itself included).",
       one(d(get(s.cluster_members)))},
      {"tern_cluster_forwarded_messages_total", "counter", "Messages forwarded to other nodes.",
       one(d(get(s.forwarded)))},
      {"tern_store_healthy", "gauge",
       "1 while the store writes, 0 while it fails (QoS 1/2 publishes that need it are refused).",
       one(ctx.db && !ctx.db->is_healthy() ? 0 : 1)},
      {"tern_store_commits_total", "counter", "Group commits written to the store.",
       one(ctx.db ? d(ctx.db->stats().commits.load()) : 0)},
      {"tern_store_writes_total", "counter", "Changes (puts and deletes) written to the store.",
       one(ctx.db ? d(ctx.db->stats().ops.load()) : 0)},
      {"tern_store_write_failures_total", "counter", "Group commits the store could not write.",
       one(ctx.db ? d(ctx.db->stats().failures.load()) : 0)},
      {"tern_store_refused_publishes_total", "counter",
       "QoS 1/2 publishes refused because the store could not write them.",
       one(ctx.db ? d(ctx.db->stats().refused.load()) : 0)},
      {"tern_store_commit_seconds_total", "counter", "Time spent writing group commits.",
       one(ctx.db ? d(ctx.db->stats().commit_us_total.load()) / 1e6 : 0)},
      {"process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
       one(proc.resident_bytes)},
      {"process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
       one(proc.virtual_bytes)},
      {"process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.",
       one(proc.cpu_seconds)},
      {"process_open_fds", "gauge", "Open file descriptors.", one(proc.open_fds)},
      {"process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch.",
       one(static_cast<double>(start.count()))},
  };
  add_bridge_families(ctx, out);
  return out;
}

}  // namespace tern::actors::mgmt
