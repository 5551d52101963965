// tern-bench measurement: payload stamp, per-stream delivery checker, latency histogram and
// the end-of-run summary (text and JSON).
//
// Everything here is plain single-threaded data: each io thread owns its own checkers and
// histogram, and the engine merges them after the threads have stopped.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tern::bench {

/// The first bytes of every payload tern-bench publishes (little-endian):
/// magic u32, publisher id u32, sequence number u64, send time u64 (steady clock, ns).
/// The rest of the payload is filler up to --size. Publishers number their messages 0, 1, 2...
struct stamp {
  std::uint32_t publisher = 0;
  std::uint64_t seq = 0;
  std::uint64_t sent_ns = 0;
};

inline constexpr std::size_t stamp_size = 24;
inline constexpr std::uint32_t stamp_magic = 0x31424E54;  // "TNB1"

/// Writes `s` into the first stamp_size bytes of `out`; `out` must hold at least that many.
void write_stamp(const stamp& s, char* out);

/// Reads the stamp at the start of `payload`; nullopt when it is too short or not ours.
std::optional<stamp> read_stamp(std::string_view payload);

/// Log-linear histogram of nanosecond values: exact below 64, then 64 buckets per power of
/// two (relative error under 1.6%), up to 2^63.
class latency_histogram {
 public:
  void record(std::uint64_t ns);
  void merge(const latency_histogram& other);
  std::uint64_t count() const { return count_; }
  std::uint64_t max() const { return max_; }
  /// The value at quantile `q` in [0, 1] (midpoint of its bucket); 0 when empty.
  std::uint64_t quantile(double q) const;

 private:
  static constexpr unsigned sub_bits = 6;
  static constexpr std::size_t bucket_count = (64 - sub_bits + 1) << sub_bits;
  static std::size_t bucket_of(std::uint64_t v);
  static std::uint64_t midpoint_of(std::size_t bucket);

  std::array<std::uint64_t, bucket_count> buckets_{};
  std::uint64_t count_ = 0;
  std::uint64_t max_ = 0;
};

/// What one subscriber saw from one publisher.
struct stream_state {
  std::int64_t last_seq = -1;
  std::uint64_t max_seq = 0;
  std::uint64_t distinct = 0;
  std::uint64_t duplicated = 0;
  std::uint64_t reordered = 0;
  std::vector<std::uint64_t> seen;  // bitmap of received sequence numbers
};

/// Checks the deliveries of one subscriber, keyed by publisher id.
class delivery_checker {
 public:
  /// Pre-sizes the stream of `publisher` for `messages` sequence numbers, so that the steady
  /// state does not allocate.
  void reserve(std::uint32_t publisher, std::uint64_t messages);

  /// Records one delivery. A sequence number seen before counts as duplicated; a new one lower
  /// than the previous delivery's counts as reordered.
  void on_delivery(const stamp& s);

  const std::unordered_map<std::uint32_t, stream_state>& streams() const { return streams_; }

  /// Distinct deliveries from `publisher` (0 if none).
  std::uint64_t distinct_from(std::uint32_t publisher) const;

 private:
  std::unordered_map<std::uint32_t, stream_state> streams_;
  std::uint32_t last_publisher_ = 0;
  stream_state* last_stream_ = nullptr;  // cache for runs of deliveries from one publisher
};

/// The end-of-run numbers. Rates are per second over the window from the first to the last
/// event of their kind; latencies are in microseconds.
struct summary {
  std::string scenario;
  int protocol = 4;
  int qos = 0;
  std::uint64_t connections = 0;  // requested
  std::uint64_t connected = 0;
  std::uint64_t connect_failed = 0;
  std::uint64_t disconnected_early = 0;  // lost after CONNACK, before the end
  double connect_seconds = 0;            // first connect attempt to last CONNACK
  double connect_rate = 0;
  std::uint64_t publishers = 0;
  std::uint64_t subscribers = 0;
  std::uint64_t sent = 0;
  std::uint64_t acked = 0;
  std::uint64_t received = 0;
  bool has_expected = false;  // false when no subscriber of this process checks the publishers
  std::uint64_t expected = 0;
  std::uint64_t lost = 0;
  std::uint64_t duplicated = 0;
  std::uint64_t reordered = 0;
  std::uint64_t foreign = 0;  // deliveries without a tern-bench stamp
  bool is_stalled = false;    // publishing stopped early: nothing sent or acked for 10 s
  double publish_seconds = 0;
  double receive_seconds = 0;
  double sent_rate = 0;
  double received_rate = 0;
  std::uint64_t latency_count = 0;
  double latency_p50_us = 0;
  double latency_p90_us = 0;
  double latency_p99_us = 0;
  double latency_max_us = 0;
  std::vector<std::string> errors;  // first few connection errors, for the log
};

/// Fills the latency fields of `s` from `h`.
void set_latency(summary& s, const latency_histogram& h);

/// Human-readable summary, several lines.
std::string to_text(const summary& s);

/// The summary as one JSON object on one line.
std::string to_json(const summary& s);

}  // namespace tern::bench
