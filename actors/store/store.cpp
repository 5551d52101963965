// Disk store. RocksDB keys, values in the Protobuf formats of proto/store.proto:
//   r/<topic>                 retained message
//   s/<client id>             a persistent session's own record (Session, without pending)
//   q/<cid16><seq64>          a QoS 1/2 message pending for the session (Pending)
//   i/<cid16><seq64>          its in-flight state once sent (Inflight)
//   a/<cid16><id16>           an inbound QoS 2 packet id awaiting PUBREL (empty value)
//   o/<name16><seq64>         a QoS 1/2 message a bridge has not handed to its remote yet
//                             (Pending; written ahead like a session's)
//   b/<bridge>                what else a bridge had queued at a graceful stop (BridgeQueue)
// <cid16> is the client id's length (2 bytes, big endian) followed by the id, so that one
// session's records are one key range whatever bytes the id holds; <seq64> is big endian,
// so the range reads in delivery order.
#include "actors/store/store.hpp"

#include <algorithm>
#include <sys/statvfs.h>

#include <filesystem>
#include <map>

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

#include "store.pb.h"  // generated from proto/store.proto

namespace tern::actors::store {

namespace {

namespace mqtt = proto::mqtt;
constexpr std::string_view retained_prefix = "r/";
constexpr std::string_view session_prefix = "s/";
constexpr std::string_view pending_prefix = "q/";
constexpr std::string_view inflight_prefix = "i/";
constexpr std::string_view awaiting_prefix = "a/";
constexpr std::string_view bridge_prefix = "b/";
constexpr std::string_view bridge_out_prefix = "o/";

std::uint64_t unix_ms_now() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

void append_be(std::string& out, std::uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) {
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
}

std::uint64_t read_be(std::string_view in, std::size_t pos, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) {
    v = (v << 8) | static_cast<unsigned char>(in[pos + static_cast<std::size_t>(i)]);
  }
  return v;
}

/// "<prefix><len16><client id>": the start of one session's key range.
std::string session_key(std::string_view prefix, const std::string& client_id) {
  std::string k(prefix);
  append_be(k, client_id.size() & 0xffff, 2);
  k += client_id;
  return k;
}

std::string seq_key(std::string_view prefix, const std::string& client_id, std::uint64_t seq) {
  auto k = session_key(prefix, client_id);
  append_be(k, seq, 8);
  return k;
}

/// Splits "<prefix><len16><client id><suffix>" into the client id and the suffix.
bool split_key(std::string_view key, std::size_t prefix_len, std::string& client_id,
               std::string_view& suffix) {
  if (key.size() < prefix_len + 2) {
    return false;
  }
  auto len = read_be(key, prefix_len, 2);
  if (key.size() < prefix_len + 2 + len) {
    return false;
  }
  client_id.assign(key.substr(prefix_len + 2, len));
  suffix = key.substr(prefix_len + 2 + len);
  return true;
}

void to_pb(const message& m, tern::store::Message& pb) {
  pb.set_topic(m.topic);
  pb.set_payload(m.payload);
  pb.set_qos(static_cast<std::uint32_t>(m.q));
  pb.set_retain(m.retain);
  pb.set_from(m.from);
  const auto& p = m.props;
  if (p.payload_format_indicator) {
    pb.set_payload_format_indicator(*p.payload_format_indicator);
  }
  if (p.message_expiry_interval) {
    pb.set_message_expiry_interval(*p.message_expiry_interval);
    // The expiry counts from reception: keep when that was, in wall-clock time.
    auto age = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - m.received_at)
                   .count();
    pb.set_received_unix_ms(unix_ms_now() - static_cast<std::uint64_t>(std::max<long long>(age, 0)));
  }
  if (p.content_type) {
    pb.set_content_type(*p.content_type);
  }
  if (p.response_topic) {
    pb.set_response_topic(*p.response_topic);
  }
  if (p.correlation_data) {
    pb.set_correlation_data(*p.correlation_data);
  }
  for (auto& [k, v] : p.user_properties) {
    auto* up = pb.add_user_properties();
    up->set_key(k);
    up->set_value(v);
  }
}

message_ptr from_pb(const tern::store::Message& pb) {
  auto m = std::make_shared<message>();
  m->topic = pb.topic();
  m->payload = pb.payload();
  m->q = static_cast<mqtt::qos>(std::min<std::uint32_t>(pb.qos(), 2));
  m->retain = pb.retain();
  m->from = pb.from();
  m->received_at = std::chrono::steady_clock::now();
  if (pb.received_unix_ms() != 0) {
    auto now = unix_ms_now();
    auto age = now > pb.received_unix_ms() ? now - pb.received_unix_ms() : 0;
    m->received_at -= std::chrono::milliseconds(age);
  }
  auto& p = m->props;
  if (pb.has_payload_format_indicator()) {
    p.payload_format_indicator = static_cast<std::uint8_t>(pb.payload_format_indicator());
  }
  if (pb.has_message_expiry_interval()) {
    p.message_expiry_interval = pb.message_expiry_interval();
  }
  if (pb.has_content_type()) {
    p.content_type = pb.content_type();
  }
  if (pb.has_response_topic()) {
    p.response_topic = pb.response_topic();
  }
  if (pb.has_correlation_data()) {
    p.correlation_data = pb.correlation_data();
  }
  for (auto& up : pb.user_properties()) {
    p.user_properties.emplace_back(up.key(), up.value());
  }
  return m;
}

void to_pb(const session::delivery& d, tern::store::Pending& pe) {
  if (d.msg) {
    to_pb(*d.msg, *pe.mutable_msg());
  }
  pe.set_qos(static_cast<std::uint32_t>(d.q));
  pe.set_retain(d.retain);
  pe.set_seq(d.seq);
  for (auto id : d.subscription_ids) {
    pe.add_subscription_ids(id);
  }
}

/// The session's own fields (everything but its messages).
void meta_to_pb(const saved_session& s, bool connected, tern::store::Session& pb) {
  pb.set_client_id(s.client_id);
  pb.set_protocol_version(static_cast<std::uint32_t>(s.version));
  pb.set_expiry_left_ms(static_cast<std::uint64_t>(s.expiry_left.count()));
  pb.set_expiry_ms(static_cast<std::uint64_t>(s.expiry.count()));
  pb.set_saved_at_unix_ms(unix_ms_now());
  pb.set_connected(connected);
  for (auto& [filter, o] : s.subscriptions) {
    auto* sub = pb.add_subscriptions();
    sub->set_filter(filter);
    sub->set_max_qos(static_cast<std::uint32_t>(o.max_qos));
    sub->set_no_local(o.no_local);
    sub->set_retain_as_published(o.retain_as_published);
    sub->set_retain_handling(o.retain_handling);
    sub->set_subscription_id(o.subscription_id);
  }
  if (s.will) {
    to_pb(*s.will, *pb.mutable_will());
    pb.set_will_delay_ms(static_cast<std::uint64_t>(s.will_delay.count()));
  }
}

bool pending_from_pb(const tern::store::Pending& pe, session::session::pending& p) {
  if (pe.has_msg()) {
    p.d.msg = from_pb(pe.msg());
  } else if (pe.phase() != tern::store::Pending::WAIT_PUBCOMP) {
    return false;  // a message without its content cannot be delivered
  }
  p.d.q = static_cast<mqtt::qos>(std::min<std::uint32_t>(pe.qos(), 2));
  p.d.retain = pe.retain();
  p.d.seq = pe.seq();
  p.d.subscription_ids.assign(pe.subscription_ids().begin(), pe.subscription_ids().end());
  p.packet_id = static_cast<std::uint16_t>(pe.packet_id());
  p.phase = static_cast<std::uint8_t>(std::min<std::uint32_t>(pe.phase(), 3));
  return true;
}

bool meta_from_pb(const tern::store::Session& pb, saved_session& out) {
  out.client_id = pb.client_id();
  auto v = pb.protocol_version();
  if (v < 3 || v > 5) {
    return false;
  }
  out.version = static_cast<mqtt::protocol_version>(v);
  out.expiry = std::chrono::milliseconds(pb.expiry_ms());
  if (pb.connected()) {
    // Connected when the node stopped: away since the restart.
    out.expiry_left = out.expiry.count() != 0 ? out.expiry
                                              : std::chrono::milliseconds(pb.expiry_left_ms());
  } else {
    auto now_ms = unix_ms_now();
    auto elapsed = now_ms > pb.saved_at_unix_ms() ? now_ms - pb.saved_at_unix_ms() : 0;
    auto left = pb.expiry_left_ms() > elapsed ? pb.expiry_left_ms() - elapsed : 0;
    out.expiry_left = std::chrono::milliseconds(left);
  }
  if (out.expiry.count() == 0) {
    out.expiry = std::chrono::milliseconds(pb.expiry_left_ms());  // written before 0.x kept it
  }
  for (auto& sub : pb.subscriptions()) {
    router::sub_options o;
    o.max_qos = static_cast<mqtt::qos>(std::min<std::uint32_t>(sub.max_qos(), 2));
    o.no_local = sub.no_local();
    o.retain_as_published = sub.retain_as_published();
    o.retain_handling = static_cast<std::uint8_t>(std::min<std::uint32_t>(sub.retain_handling(), 2));
    o.subscription_id = sub.subscription_id();
    out.subscriptions.emplace_back(sub.filter(), o);
  }
  if (pb.has_will()) {
    out.will = from_pb(pb.will());
    out.will_delay = std::chrono::milliseconds(pb.will_delay_ms());
  }
  for (auto& pe : pb.pending()) {
    session::session::pending p;
    if (pending_from_pb(pe, p)) {
      out.state.messages.push_back(std::move(p));
    }
  }
  for (auto id : pb.awaiting_rel()) {
    out.state.awaiting_rel.push_back(static_cast<std::uint16_t>(id));
  }
  out.state.last_packet_id = static_cast<std::uint16_t>(pb.last_packet_id());
  return true;
}

// ---------------------------------------------------------------------------------------------
// RocksDB

class rocksdb_backend final : public backend {
 public:
  rocksdb_backend(std::unique_ptr<rocksdb::DB> db, std::string path)
      : db_(std::move(db)), path_(std::move(path)) {}

  std::optional<std::uint64_t> free_bytes() const override {
    struct statvfs vfs {};
    if (::statvfs(path_.c_str(), &vfs) != 0) {
      return std::nullopt;
    }
    return static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  }

  std::string write(const std::vector<op>& ops, bool sync) override {
    rocksdb::WriteBatch batch;
    for (auto& o : ops) {
      switch (o.k) {
        case op::kind::put:
          batch.Put(o.key, o.value);
          break;
        case op::kind::del:
          batch.Delete(o.key);
          break;
        case op::kind::del_range:
          batch.DeleteRange(o.key, o.value);
          break;
      }
    }
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    auto st = db_->Write(wo, &batch);
    return st.ok() ? std::string() : st.ToString();
  }

  bool recover() override {
    auto st = db_->Resume();
    return st.ok();
  }

  void scan(std::string_view prefix,
            const std::function<void(std::string_view, std::string_view)>& f) const override {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
    rocksdb::Slice p(prefix.data(), prefix.size());
    for (it->Seek(p); it->Valid() && it->key().starts_with(p); it->Next()) {
      f(std::string_view(it->key().data(), it->key().size()),
        std::string_view(it->value().data(), it->value().size()));
    }
    if (!it->status().ok()) {
      throw std::runtime_error("reading the store: " + it->status().ToString());
    }
  }

  std::optional<std::string> get(const std::string& key) const override {
    std::string v;
    auto st = db_->Get(rocksdb::ReadOptions(), key, &v);
    if (!st.ok()) {
      return std::nullopt;
    }
    return v;
  }

 private:
  std::unique_ptr<rocksdb::DB> db_;
  std::string path_;
};

}  // namespace

std::variant<std::unique_ptr<backend>, std::string> open_rocksdb(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return "cannot create data directory " + dir + ": " + ec.message();
  }
  auto path = (std::filesystem::path(dir) / "store").string();
  rocksdb::Options opts;
  opts.create_if_missing = true;
  opts.max_open_files = 64;
  opts.keep_log_file_num = 2;
  opts.paranoid_checks = true;  // a corrupt file stops the open, never serves wrong data
  rocksdb::DB* raw = nullptr;
  auto st = rocksdb::DB::Open(opts, path, &raw);
  if (!st.ok()) {
    return "cannot open the store " + path + ": " + st.ToString() +
           " (see docs/durability.md, \"Recovering a store\")";
  }
  return std::unique_ptr<backend>(new rocksdb_backend(std::unique_ptr<rocksdb::DB>(raw), path));
}

// ---------------------------------------------------------------------------------------------
// txn

void txn::put_meta(const saved_session& s, bool connected) {
  tern::store::Session pb;
  meta_to_pb(s, connected, pb);
  ops_.push_back({op::kind::put, std::string(session_prefix) + s.client_id, pb.SerializeAsString()});
}

void txn::put_pending(const std::string& client_id, std::uint64_t seq,
                      const session::delivery& d) {
  tern::store::Pending pe;
  to_pb(d, pe);
  pe.set_seq(seq);
  ops_.push_back({op::kind::put, seq_key(pending_prefix, client_id, seq), pe.SerializeAsString()});
}

void txn::put_bridge(const std::string& bridge, std::uint64_t seq, const session::delivery& d) {
  tern::store::Pending pe;
  to_pb(d, pe);
  pe.set_seq(seq);
  ops_.push_back({op::kind::put, seq_key(bridge_out_prefix, bridge, seq), pe.SerializeAsString()});
}

void txn::del_bridge(const std::string& bridge, std::uint64_t seq) {
  ops_.push_back({op::kind::del, seq_key(bridge_out_prefix, bridge, seq), {}});
}

void txn::put_inflight(const std::string& client_id, std::uint64_t seq, std::uint16_t packet_id,
                       std::uint8_t phase) {
  tern::store::Inflight pb;
  pb.set_packet_id(packet_id);
  pb.set_phase(phase);
  ops_.push_back({op::kind::put, seq_key(inflight_prefix, client_id, seq), pb.SerializeAsString()});
  if (phase == 3) {
    // Past PUBREC the client has the message: only the packet id is kept.
    ops_.push_back({op::kind::del, seq_key(pending_prefix, client_id, seq), {}});
  }
}

void txn::del_pending(const std::string& client_id, std::uint64_t seq) {
  ops_.push_back({op::kind::del, seq_key(pending_prefix, client_id, seq), {}});
  ops_.push_back({op::kind::del, seq_key(inflight_prefix, client_id, seq), {}});
}

void txn::put_awaiting(const std::string& client_id, std::uint16_t id) {
  auto k = session_key(awaiting_prefix, client_id);
  append_be(k, id, 2);
  ops_.push_back({op::kind::put, std::move(k), {}});
}

void txn::del_awaiting(const std::string& client_id, std::uint16_t id) {
  auto k = session_key(awaiting_prefix, client_id);
  append_be(k, id, 2);
  ops_.push_back({op::kind::del, std::move(k), {}});
}

void txn::del_session(const std::string& client_id) {
  ops_.push_back({op::kind::del, std::string(session_prefix) + client_id, {}});
  for (auto prefix : {pending_prefix, inflight_prefix, awaiting_prefix}) {
    auto begin = session_key(prefix, client_id);
    auto end = begin + std::string(9, '\xff');  // past any 8-byte (or 2-byte) suffix
    ops_.push_back({op::kind::del_range, std::move(begin), std::move(end)});
  }
}

void txn::put_retained(const message& m) {
  auto key = std::string(retained_prefix) + m.topic;
  if (m.payload.empty()) {
    ops_.push_back({op::kind::del, std::move(key), {}});
  } else {
    tern::store::Message pb;
    to_pb(m, pb);
    ops_.push_back({op::kind::put, std::move(key), pb.SerializeAsString()});
  }
}

// ---------------------------------------------------------------------------------------------
// store

store::store(std::unique_ptr<backend> b, durability mode, std::chrono::milliseconds retry,
             std::uint64_t min_free)
    : db_(std::move(b)), mode_(mode), retry_(retry), min_free_(min_free) {
  writer_ = std::thread([this] { run(); });
}

store::~store() {
  {
    std::lock_guard lock{mtx_};
    stop_ = true;
  }
  wake_.notify_all();
  writer_.join();
}

std::variant<std::unique_ptr<store>, std::string> store::open(const std::string& dir,
                                                              durability mode,
                                                              std::uint64_t min_free) {
  auto b = open_rocksdb(dir);
  if (auto* err = std::get_if<std::string>(&b)) {
    return *err;
  }
  return std::make_unique<store>(std::move(std::get<0>(b)), mode, std::chrono::milliseconds(500),
                                 min_free);
}

std::string store::last_error() const {
  std::lock_guard lock{mtx_};
  return last_error_;
}

void store::submit(txn&& t, std::function<void(bool)> done) {
  {
    std::lock_guard lock{mtx_};
    auto& ops = t.ops();
    if (next_.ops.empty()) {
      next_.ops = std::move(ops);
    } else {
      next_.ops.insert(next_.ops.end(), std::make_move_iterator(ops.begin()),
                       std::make_move_iterator(ops.end()));
    }
    if (done) {
      next_.done.push_back(std::move(done));
    }
    ++submitted_;
  }
  wake_.notify_one();
}

void store::flush() {
  std::unique_lock lock{mtx_};
  auto target = submitted_;
  flushed_.wait(lock, [&] { return written_ >= target || stop_; });
}

std::string store::write_now(const std::vector<op>& ops) {
  if (min_free_ != 0) {
    // Refused before the file system runs out: RocksDB recovers badly from a write that
    // fails half way (and Debian's build asserts on one), a refusal costs nothing.
    if (auto free = db_->free_bytes(); free && *free < min_free_) {
      return "disk almost full: " + std::to_string(*free >> 20) + " MiB free, the store keeps " +
             std::to_string(min_free_ >> 20) + " MiB (store.min_free_mb)";
    }
  }
  auto t0 = std::chrono::steady_clock::now();
  auto err = db_->write(ops, mode_ == durability::sync);
  stats_.commit_us_total.fetch_add(
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                     std::chrono::steady_clock::now() - t0)
                                     .count()),
      std::memory_order_relaxed);
  return err;
}

bool store::write_batch(pending_batch& b) {
  if (b.ops.empty()) {
    return true;
  }
  auto err = write_now(b.ops);
  if (err.empty()) {
    stats_.commits.fetch_add(1, std::memory_order_relaxed);
    stats_.ops.fetch_add(b.ops.size(), std::memory_order_relaxed);
    return true;
  }
  stats_.failures.fetch_add(1, std::memory_order_relaxed);
  if (healthy_.exchange(false, std::memory_order_acq_rel)) {
    spdlog::error("store: writing failed: {}; publishes that need the store are refused until "
                  "it works again",
                  err);
  }
  std::lock_guard lock{mtx_};
  last_error_ = err;
  return false;
}

void store::run() {
  pending_batch batch;
  auto next_probe = std::chrono::steady_clock::now();
  for (;;) {
    std::uint64_t taken = 0;
    {
      std::unique_lock lock{mtx_};
      if (healthy_.load()) {
        wake_.wait(lock, [&] { return stop_ || written_ < submitted_; });
      } else {
        // Failing: try again now and then, whether or not anything waits.
        wake_.wait_until(lock, next_probe, [&] { return stop_ || written_ < submitted_; });
      }
      if (stop_ && written_ >= submitted_) {
        return;
      }
      std::swap(batch, next_);
      taken = submitted_;
    }
    if (!healthy_.load()) {
      if (std::chrono::steady_clock::now() >= next_probe) {
        next_probe = std::chrono::steady_clock::now() + retry_;
        // A write error makes RocksDB read-only until it is resumed; then a probe write
        // must succeed before publishes are let through again.
        db_->recover();
        std::vector<op> probe{{op::kind::put, "probe", std::to_string(unix_ms_now())}};
        if (write_now(probe).empty()) {
          healthy_.store(true, std::memory_order_release);
          recoveries_.fetch_add(1, std::memory_order_acq_rel);
          spdlog::warn("store: writing works again");
        }
      }
    }
    bool ok = healthy_.load() && write_batch(batch);
    for (auto& d : batch.done) {
      d(ok);
    }
    batch.ops.clear();
    batch.done.clear();
    {
      std::lock_guard lock{mtx_};
      written_ = taken;
    }
    flushed_.notify_all();
  }
}

void store::put_retained(const message& m) {
  txn t;
  t.put_retained(m);
  submit(std::move(t));
}

std::vector<message_ptr> store::load_retained() const {
  std::vector<message_ptr> out;
  db_->scan(retained_prefix, [&](std::string_view key, std::string_view value) {
    tern::store::Message pb;
    if (pb.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
      out.push_back(from_pb(pb));
    } else {
      spdlog::warn("store: skipping unreadable retained message {}", key);
    }
  });
  return out;
}

std::vector<saved_session> store::load_sessions() {
  std::map<std::string, saved_session> by_id;
  txn cleanup;
  db_->scan(session_prefix, [&](std::string_view key, std::string_view value) {
    tern::store::Session pb;
    saved_session s;
    if (!pb.ParseFromArray(value.data(), static_cast<int>(value.size())) ||
        !meta_from_pb(pb, s)) {
      spdlog::warn("store: deleting unreadable session record {}", key);
      cleanup.ops().push_back({op::kind::del, std::string(key), {}});
      return;
    }
    auto id = s.client_id;
    by_id.emplace(std::move(id), std::move(s));
  });
  // Pending messages, in seq order per session; then their in-flight state.
  std::map<std::string, std::map<std::uint64_t, session::session::pending>> pending;
  std::string cid;
  std::string_view suffix;
  db_->scan(pending_prefix, [&](std::string_view key, std::string_view value) {
    tern::store::Pending pe;
    session::session::pending p;
    if (!split_key(key, pending_prefix.size(), cid, suffix) || suffix.size() != 8 ||
        by_id.count(cid) == 0 || !pe.ParseFromArray(value.data(), static_cast<int>(value.size())) ||
        !pending_from_pb(pe, p)) {
      cleanup.ops().push_back({op::kind::del, std::string(key), {}});  // orphan or unreadable
      return;
    }
    p.d.seq = read_be(suffix, 0, 8);
    pending[cid].emplace(p.d.seq, std::move(p));
  });
  db_->scan(inflight_prefix, [&](std::string_view key, std::string_view value) {
    tern::store::Inflight pb;
    if (!split_key(key, inflight_prefix.size(), cid, suffix) || suffix.size() != 8 ||
        by_id.count(cid) == 0 || !pb.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
      cleanup.ops().push_back({op::kind::del, std::string(key), {}});
      return;
    }
    auto seq = read_be(suffix, 0, 8);
    auto& msgs = pending[cid];
    auto it = msgs.find(seq);
    auto phase = static_cast<std::uint8_t>(std::min<std::uint32_t>(pb.phase(), 3));
    if (it == msgs.end()) {
      if (phase != 3) {
        cleanup.ops().push_back({op::kind::del, std::string(key), {}});  // acknowledged
        return;
      }
      // Past PUBREC: only the packet id is left, and a PUBREL to resend.
      session::session::pending p;
      p.d.q = mqtt::qos::exactly_once;
      p.d.seq = seq;
      it = msgs.emplace(seq, std::move(p)).first;
    }
    it->second.packet_id = static_cast<std::uint16_t>(pb.packet_id());
    it->second.phase = phase;
  });
  db_->scan(awaiting_prefix, [&](std::string_view key, std::string_view) {
    auto s = split_key(key, awaiting_prefix.size(), cid, suffix);
    auto it = s && suffix.size() == 2 ? by_id.find(cid) : by_id.end();
    if (it == by_id.end()) {
      cleanup.ops().push_back({op::kind::del, std::string(key), {}});
      return;
    }
    it->second.state.awaiting_rel.push_back(static_cast<std::uint16_t>(read_be(suffix, 0, 2)));
  });
  std::vector<saved_session> out;
  for (auto& [id, s] : by_id) {
    if (s.expiry_left.count() <= 0) {
      spdlog::info("store: session {} expired while the node was down", id);
      cleanup.del_session(id);
      continue;
    }
    if (mode_ == durability::none) {
      // Saved at the last stop, now in memory: a crash must not bring back this copy.
      cleanup.del_session(id);
    }
    // Records from before write-ahead (a graceful stop of an older version) come first;
    // they carry no seq, so the records' seqs start after them.
    std::uint16_t last_id = s.state.last_packet_id;
    for (auto& [seq, p] : pending[id]) {
      if (p.packet_id != 0) {
        last_id = std::max(last_id, p.packet_id);
      }
      s.state.messages.push_back(std::move(p));
    }
    s.state.last_packet_id = last_id;
    out.push_back(std::move(s));
  }
  if (!cleanup.empty()) {
    submit(std::move(cleanup));
    flush();
  }
  return out;
}

void store::write_whole(txn& t, const saved_session& s, bool connected) {
  t.del_session(s.client_id);
  t.put_meta(s, connected);
  for (auto& p : s.state.messages) {
    if (p.d.seq == 0) {
      continue;  // QoS 0: memory only
    }
    if (p.d.msg) {
      t.put_pending(s.client_id, p.d.seq, p.d);
    }
    if (p.packet_id != 0 && p.phase != 0) {
      t.put_inflight(s.client_id, p.d.seq, p.packet_id, p.phase);
    }
  }
  for (auto id : s.state.awaiting_rel) {
    t.put_awaiting(s.client_id, id);
  }
}

void store::save_session(const saved_session& s) {
  txn t;
  t.del_session(s.client_id);
  t.ops().push_back({op::kind::put, std::string(session_prefix) + s.client_id, encode(s)});
  submit(std::move(t));
}

std::string store::encode(const saved_session& s) {
  tern::store::Session pb;
  meta_to_pb(s, false, pb);
  for (auto& p : s.state.messages) {
    auto* pe = pb.add_pending();
    to_pb(p.d, *pe);
    pe->set_packet_id(p.packet_id);
    pe->set_phase(static_cast<tern::store::Pending::Phase>(p.phase));
  }
  for (auto id : s.state.awaiting_rel) {
    pb.add_awaiting_rel(id);
  }
  pb.set_last_packet_id(s.state.last_packet_id);
  pb.set_move_id(s.move_id);
  return pb.SerializeAsString();
}

bool store::decode(const std::string& bytes, saved_session& out) {
  tern::store::Session pb;
  if (!pb.ParseFromString(bytes)) {
    return false;
  }
  out.move_id = pb.move_id();
  return meta_from_pb(pb, out);
}

void store::save_bridge_queue(const std::string& bridge, const std::vector<message_ptr>& msgs) {
  std::vector<op> ops;
  auto key = std::string(bridge_prefix) + bridge;
  if (msgs.empty()) {
    ops.push_back({op::kind::del, key, {}});
  } else {
    tern::store::BridgeQueue pb;
    for (const auto& m : msgs) {
      to_pb(*m, *pb.add_messages());
    }
    ops.push_back({op::kind::put, key, pb.SerializeAsString()});
  }
  auto err = write_now(ops);
  if (!err.empty()) {
    spdlog::error("store: bridge {}: {}", bridge, err);
  }
}

std::vector<session::delivery> store::load_bridge(const std::string& bridge) {
  std::vector<session::delivery> out;
  txn cleanup;
  std::string name;
  std::string_view suffix;
  db_->scan(session_key(bridge_out_prefix, bridge),
            [&](std::string_view key, std::string_view value) {
              tern::store::Pending pe;
              session::session::pending p;
              if (!split_key(key, bridge_out_prefix.size(), name, suffix) || suffix.size() != 8 ||
                  !pe.ParseFromArray(value.data(), static_cast<int>(value.size())) ||
                  !pending_from_pb(pe, p) || !p.d.msg) {
                spdlog::warn("store: bridge {}: deleting an unreadable message", bridge);
                cleanup.ops().push_back({op::kind::del, std::string(key), {}});
                return;
              }
              p.d.seq = read_be(suffix, 0, 8);
              out.push_back(std::move(p.d));
            });
  if (!cleanup.empty()) {
    submit(std::move(cleanup));
    flush();
  }
  return out;
}

std::vector<message_ptr> store::take_bridge_queue(const std::string& bridge) {
  std::vector<message_ptr> out;
  auto key = std::string(bridge_prefix) + bridge;
  auto bytes = db_->get(key);
  if (!bytes) {
    return out;
  }
  tern::store::BridgeQueue pb;
  if (!pb.ParseFromString(*bytes)) {
    spdlog::warn("store: skipping the unreadable queue of bridge {}", bridge);
  } else {
    for (const auto& m : pb.messages()) {
      out.push_back(from_pb(m));
    }
  }
  write_now({{op::kind::del, key, {}}});
  return out;
}

}  // namespace tern::actors::store
