// Disk store: RocksDB keys "r/<topic>" (retained) and "s/<client id>" (sessions), values in
// the Protobuf formats of proto/store.proto.
#include "actors/store/store.hpp"

#include <filesystem>

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

#include "store.pb.h"  // generated from proto/store.proto

namespace tern::actors::store {

namespace {

namespace mqtt = proto::mqtt;
constexpr const char* retained_prefix = "r/";
constexpr const char* session_prefix = "s/";
constexpr const char* bridge_prefix = "b/";

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

}  // namespace

store::store(std::unique_ptr<rocksdb::DB> db) : db_(std::move(db)) {}

store::~store() = default;

std::variant<std::unique_ptr<store>, std::string> store::open(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return "cannot create data directory " + dir + ": " + ec.message();
  }
  rocksdb::Options opts;
  opts.create_if_missing = true;
  opts.max_open_files = 64;
  opts.keep_log_file_num = 2;
  rocksdb::DB* raw = nullptr;
  auto st = rocksdb::DB::Open(opts, (std::filesystem::path(dir) / "store").string(), &raw);
  if (!st.ok()) {
    return "cannot open store in " + dir + ": " + st.ToString();
  }
  return std::unique_ptr<store>(new store(std::unique_ptr<rocksdb::DB>(raw)));
}

void store::put_retained(const message& m) {
  auto key = retained_prefix + m.topic;
  rocksdb::Status st;
  if (m.payload.empty()) {
    st = db_->Delete(rocksdb::WriteOptions(), key);
  } else {
    tern::store::Message pb;
    to_pb(m, pb);
    st = db_->Put(rocksdb::WriteOptions(), key, pb.SerializeAsString());
  }
  if (!st.ok()) {
    spdlog::error("store: retained {}: {}", m.topic, st.ToString());
  }
}

std::vector<message_ptr> store::load_retained() const {
  std::vector<message_ptr> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(retained_prefix); it->Valid() && it->key().starts_with(retained_prefix);
       it->Next()) {
    tern::store::Message pb;
    if (pb.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      out.push_back(from_pb(pb));
    } else {
      spdlog::warn("store: skipping unreadable retained message {}", it->key().ToString());
    }
  }
  return out;
}

std::string store::encode(const saved_session& s) {
  tern::store::Session pb;
  pb.set_client_id(s.client_id);
  pb.set_protocol_version(static_cast<std::uint32_t>(s.version));
  pb.set_expiry_left_ms(static_cast<std::uint64_t>(s.expiry_left.count()));
  pb.set_saved_at_unix_ms(static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count()));
  for (auto& [filter, o] : s.subscriptions) {
    auto* sub = pb.add_subscriptions();
    sub->set_filter(filter);
    sub->set_max_qos(static_cast<std::uint32_t>(o.max_qos));
    sub->set_no_local(o.no_local);
    sub->set_retain_as_published(o.retain_as_published);
    sub->set_retain_handling(o.retain_handling);
    sub->set_subscription_id(o.subscription_id);
  }
  for (auto& p : s.state.messages) {
    auto* pe = pb.add_pending();
    if (p.d.msg) {
      to_pb(*p.d.msg, *pe->mutable_msg());
    }
    pe->set_qos(static_cast<std::uint32_t>(p.d.q));
    pe->set_retain(p.d.retain);
    pe->set_packet_id(p.packet_id);
    pe->set_phase(static_cast<tern::store::Pending::Phase>(p.phase));
    for (auto id : p.d.subscription_ids) {
      pe->add_subscription_ids(id);
    }
  }
  for (auto id : s.state.awaiting_rel) {
    pb.add_awaiting_rel(id);
  }
  pb.set_last_packet_id(s.state.last_packet_id);
  return pb.SerializeAsString();
}

bool store::decode(const std::string& bytes, saved_session& out) {
  tern::store::Session pb;
  if (!pb.ParseFromString(bytes)) {
    return false;
  }
  out.client_id = pb.client_id();
  auto v = pb.protocol_version();
  if (v < 3 || v > 5) {
    return false;
  }
  out.version = static_cast<mqtt::protocol_version>(v);
  auto now_ms = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                               std::chrono::system_clock::now().time_since_epoch())
                                               .count());
  auto elapsed = now_ms > pb.saved_at_unix_ms() ? now_ms - pb.saved_at_unix_ms() : 0;
  auto left = pb.expiry_left_ms() > elapsed ? pb.expiry_left_ms() - elapsed : 0;
  out.expiry_left = std::chrono::milliseconds(left);
  for (auto& sub : pb.subscriptions()) {
    router::sub_options o;
    o.max_qos = static_cast<mqtt::qos>(std::min<std::uint32_t>(sub.max_qos(), 2));
    o.no_local = sub.no_local();
    o.retain_as_published = sub.retain_as_published();
    o.retain_handling = static_cast<std::uint8_t>(std::min<std::uint32_t>(sub.retain_handling(), 2));
    o.subscription_id = sub.subscription_id();
    out.subscriptions.emplace_back(sub.filter(), o);
  }
  for (auto& pe : pb.pending()) {
    session::session::pending p;
    if (pe.has_msg()) {
      p.d.msg = from_pb(pe.msg());
    } else if (pe.phase() != tern::store::Pending::WAIT_PUBCOMP) {
      continue;  // a message without its content cannot be delivered
    }
    p.d.q = static_cast<mqtt::qos>(std::min<std::uint32_t>(pe.qos(), 2));
    p.d.retain = pe.retain();
    p.d.subscription_ids.assign(pe.subscription_ids().begin(), pe.subscription_ids().end());
    p.packet_id = static_cast<std::uint16_t>(pe.packet_id());
    p.phase = static_cast<std::uint8_t>(pe.phase());
    out.state.messages.push_back(std::move(p));
  }
  for (auto id : pb.awaiting_rel()) {
    out.state.awaiting_rel.push_back(static_cast<std::uint16_t>(id));
  }
  out.state.last_packet_id = static_cast<std::uint16_t>(pb.last_packet_id());
  return true;
}

void store::save_session(const saved_session& s) {
  auto st = db_->Put(rocksdb::WriteOptions(), session_prefix + s.client_id, encode(s));
  if (!st.ok()) {
    spdlog::error("store: session {}: {}", s.client_id, st.ToString());
  }
}

std::vector<saved_session> store::take_sessions() {
  std::vector<saved_session> out;
  rocksdb::WriteBatch batch;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(session_prefix); it->Valid() && it->key().starts_with(session_prefix);
       it->Next()) {
    saved_session s;
    if (decode(it->value().ToString(), s)) {
      out.push_back(std::move(s));
    } else {
      spdlog::warn("store: skipping unreadable session {}", it->key().ToString());
    }
    batch.Delete(it->key());
  }
  auto st = db_->Write(rocksdb::WriteOptions(), &batch);
  if (!st.ok()) {
    spdlog::error("store: clearing loaded sessions: {}", st.ToString());
  }
  return out;
}

void store::save_bridge_queue(const std::string& bridge, const std::vector<message_ptr>& msgs) {
  rocksdb::Status st;
  if (msgs.empty()) {
    st = db_->Delete(rocksdb::WriteOptions(), bridge_prefix + bridge);
  } else {
    tern::store::BridgeQueue pb;
    for (const auto& m : msgs) {
      to_pb(*m, *pb.add_messages());
    }
    st = db_->Put(rocksdb::WriteOptions(), bridge_prefix + bridge, pb.SerializeAsString());
  }
  if (!st.ok()) {
    spdlog::error("store: bridge {}: {}", bridge, st.ToString());
  }
}

std::vector<message_ptr> store::take_bridge_queue(const std::string& bridge) {
  std::vector<message_ptr> out;
  std::string bytes;
  auto st = db_->Get(rocksdb::ReadOptions(), bridge_prefix + bridge, &bytes);
  if (!st.ok()) {
    return out;  // none saved (or unreadable: logged by RocksDB)
  }
  tern::store::BridgeQueue pb;
  if (!pb.ParseFromString(bytes)) {
    spdlog::warn("store: skipping the unreadable queue of bridge {}", bridge);
  } else {
    for (const auto& m : pb.messages()) {
      out.push_back(from_pb(m));
    }
  }
  db_->Delete(rocksdb::WriteOptions(), bridge_prefix + bridge);
  return out;
}

}  // namespace tern::actors::store
