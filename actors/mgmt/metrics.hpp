// Node metrics: a snapshot of the counters and gauges, rendered as Prometheus text, as
// emqttd's $SYS metric/stat names, and as JSON for the API.
//
// to_prometheus and format_uptime are pure; collect_* read the node's shared state.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "actors/broker/context.hpp"

namespace tern::actors::mgmt {

/// One Prometheus metric family: samples are (label set, value), label set like
/// `qos="1"` or "" for none.
struct metric_family {
  std::string name;
  std::string type;  ///< "counter" or "gauge"
  std::string help;
  std::vector<std::pair<std::string, double>> samples;
};

/// Prometheus text exposition format 0.0.4.
std::string to_prometheus(const std::vector<metric_family>& families);

/// "5 seconds", "3 minutes, 4 seconds", "1 days,2 hours, 3 minutes, 4 seconds" (emqttd).
std::string format_uptime(std::chrono::seconds s);

/// The process's memory and CPU from /proc (zeros where unavailable).
struct process_stats {
  double resident_bytes = 0;
  double virtual_bytes = 0;
  double cpu_seconds = 0;
  double open_fds = 0;
};
process_stats read_process_stats();

/// Gauges of the node with the maximum seen so far (emqttd's stats/<name>/count|max).
/// Thread-safe; the max is updated whenever gauges are read.
class stats_tracker {
 public:
  /// Ordered (name, value) pairs: "clients/count", "clients/max", ...
  std::vector<std::pair<std::string, std::uint64_t>> read(const broker::context& ctx);

 private:
  std::mutex mtx_;
  std::uint64_t sessions_max_ = 0;
  std::uint64_t subs_max_ = 0;
  std::uint64_t topics_max_ = 0;
  std::uint64_t retained_max_ = 0;
};

/// emqttd's metric names ("bytes/received", "packets/publish/sent", "messages/qos1/received",
/// ...) with their values.
std::vector<std::pair<std::string, std::uint64_t>> emqttd_metrics(const broker::context& ctx);

/// Every family /metrics exposes.
std::vector<metric_family> collect_families(const broker::context& ctx, stats_tracker& stats);

/// The node's version string.
const char* version();

}  // namespace tern::actors::mgmt
