// tern-bench measurement: payload stamp, delivery checker, latency histogram, summary output.
#include "apps/tern-bench/stats.hpp"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace tern::bench {

namespace {

// Sequence numbers at or above this are taken as garbage: the bitmap would not fit.
constexpr std::uint64_t max_seq = std::uint64_t{1} << 32;

void put_u32(char* out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) {
    out[i] = static_cast<char>((v >> (8 * i)) & 0xFFU);
  }
}

void put_u64(char* out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<char>((v >> (8 * i)) & 0xFFU);
  }
}

std::uint64_t get_le(const char* in, int bytes) {
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) {
    v = (v << 8) | static_cast<unsigned char>(in[i]);
  }
  return v;
}

double us(std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

}  // namespace

void write_stamp(const stamp& s, char* out) {
  put_u32(out, stamp_magic);
  put_u32(out + 4, s.publisher);
  put_u64(out + 8, s.seq);
  put_u64(out + 16, s.sent_ns);
}

std::optional<stamp> read_stamp(std::string_view payload) {
  if (payload.size() < stamp_size || get_le(payload.data(), 4) != stamp_magic) {
    return std::nullopt;
  }
  stamp s;
  s.publisher = static_cast<std::uint32_t>(get_le(payload.data() + 4, 4));
  s.seq = get_le(payload.data() + 8, 8);
  s.sent_ns = get_le(payload.data() + 16, 8);
  if (s.seq >= max_seq) {
    return std::nullopt;
  }
  return s;
}

std::size_t latency_histogram::bucket_of(std::uint64_t v) {
  if (v < (std::uint64_t{1} << sub_bits)) {
    return static_cast<std::size_t>(v);
  }
  const unsigned msb = 63U - static_cast<unsigned>(__builtin_clzll(v));
  const unsigned shift = msb - sub_bits;
  return (static_cast<std::size_t>(shift) << sub_bits) + static_cast<std::size_t>(v >> shift);
}

std::uint64_t latency_histogram::midpoint_of(std::size_t bucket) {
  if (bucket < (std::size_t{2} << sub_bits)) {
    return bucket;
  }
  const unsigned shift = static_cast<unsigned>(bucket >> sub_bits) - 1;
  const std::uint64_t mantissa = (bucket & ((std::size_t{1} << sub_bits) - 1)) +
                                 (std::uint64_t{1} << sub_bits);
  return (mantissa << shift) + ((std::uint64_t{1} << shift) >> 1);
}

void latency_histogram::record(std::uint64_t ns) {
  ++buckets_[bucket_of(ns)];
  ++count_;
  max_ = std::max(max_, ns);
}

void latency_histogram::merge(const latency_histogram& other) {
  for (std::size_t i = 0; i < bucket_count; ++i) {
    buckets_[i] += other.buckets_[i];
  }
  count_ += other.count_;
  max_ = std::max(max_, other.max_);
}

std::uint64_t latency_histogram::quantile(double q) const {
  if (count_ == 0) {
    return 0;
  }
  // The rank of the sample at quantile q, 1-based, as in "nearest rank".
  const auto rank = std::max<std::uint64_t>(
      1, static_cast<std::uint64_t>(q * static_cast<double>(count_) + 0.5));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < bucket_count; ++i) {
    seen += buckets_[i];
    if (seen >= rank) {
      return std::min(midpoint_of(i), max_);
    }
  }
  return max_;
}

void delivery_checker::reserve(std::uint32_t publisher, std::uint64_t messages) {
  stream_state& st = streams_[publisher];
  st.seen.reserve(static_cast<std::size_t>(std::min(messages, max_seq) / 64 + 1));
  last_stream_ = nullptr;  // rehashing may have moved nothing, but keep the cache simple
}

void delivery_checker::on_delivery(const stamp& s) {
  if (last_stream_ == nullptr || last_publisher_ != s.publisher) {
    last_stream_ = &streams_[s.publisher];  // node-based map: the pointer stays valid
    last_publisher_ = s.publisher;
  }
  stream_state& st = *last_stream_;
  const std::size_t word = static_cast<std::size_t>(s.seq >> 6);
  const std::uint64_t bit = std::uint64_t{1} << (s.seq & 63U);
  if (word >= st.seen.size()) {
    st.seen.resize(std::max(word + 1, st.seen.size() * 2), 0);
  }
  if ((st.seen[word] & bit) != 0) {
    ++st.duplicated;
  } else {
    st.seen[word] |= bit;
    ++st.distinct;
    if (static_cast<std::int64_t>(s.seq) < st.last_seq) {
      ++st.reordered;
    }
  }
  st.last_seq = static_cast<std::int64_t>(s.seq);
  st.max_seq = std::max(st.max_seq, s.seq);
}

std::uint64_t delivery_checker::distinct_from(std::uint32_t publisher) const {
  const auto it = streams_.find(publisher);
  return it == streams_.end() ? 0 : it->second.distinct;
}

void set_latency(summary& s, const latency_histogram& h) {
  s.latency_count = h.count();
  s.latency_p50_us = us(h.quantile(0.50));
  s.latency_p90_us = us(h.quantile(0.90));
  s.latency_p99_us = us(h.quantile(0.99));
  s.latency_max_us = us(h.max());
}

std::string to_text(const summary& s) {
  std::string t;
  const auto line = [&t](const std::string& key, const std::string& value) {
    t += key;
    t.append(key.size() < 22 ? 22 - key.size() : 1, ' ');
    t += value;
    t += '\n';
  };
  const bool has_messages = s.publishers > 0 || s.subscribers > 0;
  line("scenario", s.scenario + " (MQTT " + (s.protocol == 5 ? "5.0" : "3.1.1") +
                       (has_messages ? ", QoS " + std::to_string(s.qos) : std::string()) + ")");
  line("connections", std::to_string(s.connected) + "/" + std::to_string(s.connections) +
                          " connected, " + std::to_string(s.connect_failed) + " failed, " +
                          std::to_string(s.disconnected_early) + " dropped");
  line("connect time", fixed(s.connect_seconds, 3) + " s (" + fixed(s.connect_rate, 0) +
                           " conn/s)");
  const auto over = [](double rate, double secs) {
    return secs > 0 ? " (" + fixed(rate, 0) + " msg/s over " + fixed(secs, 2) + " s)"
                    : std::string(" (in one burst)");
  };
  if (has_messages) {
    line("clients", std::to_string(s.publishers) + " publishers, " +
                        std::to_string(s.subscribers) + " subscribers");
    line("sent", std::to_string(s.sent) + over(s.sent_rate, s.publish_seconds) + ", " +
                     std::to_string(s.acked) + " acked" +
                     (s.is_stalled ? ", STALLED (nothing sent or acked for 10 s)" : ""));
    line("received", std::to_string(s.received) + over(s.received_rate, s.receive_seconds));
    line("expected", s.has_expected ? std::to_string(s.expected) : std::string("n/a"));
    line("lost", s.has_expected ? std::to_string(s.lost) : std::string("n/a"));
    line("duplicated", std::to_string(s.duplicated));
    line("reordered", std::to_string(s.reordered));
    if (s.foreign > 0) {
      line("foreign", std::to_string(s.foreign) + " (payload without a tern-bench stamp)");
    }
    line("latency (us)", "p50 " + fixed(s.latency_p50_us, 0) + "  p90 " +
                             fixed(s.latency_p90_us, 0) + "  p99 " + fixed(s.latency_p99_us, 0) +
                             "  max " + fixed(s.latency_max_us, 0) + "  (" +
                             std::to_string(s.latency_count) + " samples)");
  }
  return t;
}

std::string to_json(const summary& s) {
  nlohmann::json j;
  j["scenario"] = s.scenario;
  j["protocol"] = s.protocol;
  j["qos"] = s.qos;
  j["connections"] = s.connections;
  j["connected"] = s.connected;
  j["connect_failed"] = s.connect_failed;
  j["disconnected_early"] = s.disconnected_early;
  j["connect_seconds"] = s.connect_seconds;
  j["connect_rate"] = s.connect_rate;
  j["publishers"] = s.publishers;
  j["subscribers"] = s.subscribers;
  j["sent"] = s.sent;
  j["acked"] = s.acked;
  j["received"] = s.received;
  j["expected"] = s.has_expected ? nlohmann::json(s.expected) : nlohmann::json(nullptr);
  j["lost"] = s.has_expected ? nlohmann::json(s.lost) : nlohmann::json(nullptr);
  j["duplicated"] = s.duplicated;
  j["reordered"] = s.reordered;
  j["foreign"] = s.foreign;
  j["stalled"] = s.is_stalled;
  j["publish_seconds"] = s.publish_seconds;
  j["receive_seconds"] = s.receive_seconds;
  j["sent_rate"] = s.sent_rate;
  j["received_rate"] = s.received_rate;
  j["latency_us"] = {{"count", s.latency_count},
                     {"p50", s.latency_p50_us},
                     {"p90", s.latency_p90_us},
                     {"p99", s.latency_p99_us},
                     {"max", s.latency_max_us}};
  j["errors"] = s.errors;
  return j.dump();
}

}  // namespace tern::bench
