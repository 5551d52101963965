// Unit tests of the disk store: session encoding round trip, write-ahead records, RocksDB
// persistence, and the writer's behaviour when the backend fails (a fault-injecting double).
#include "actors/store/store.hpp"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <catch2/catch.hpp>

using namespace tern::actors;
namespace mqtt = tern::proto::mqtt;

namespace {

message_ptr msg(const std::string& topic, const std::string& payload, mqtt::qos q) {
  auto m = std::make_shared<message>();
  m->topic = topic;
  m->payload = payload;
  m->q = q;
  m->from = "pub";
  m->props.user_properties = {{"k", "v"}, {"k", "w"}};
  m->props.content_type = "text/plain";
  return m;
}

std::string temp_dir(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() /
           ("tern-store-test-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  return d.string();
}

/// An in-memory backend whose writes fail while `failing` is set (a full disk).
class fake_backend final : public store::backend {
 public:
  struct shared {
    std::mutex mtx;
    std::map<std::string, std::string> data;
    bool failing = false;
    int writes = 0;
    int recovers = 0;
  };
  explicit fake_backend(std::shared_ptr<shared> s) : s_(std::move(s)) {}

  std::string write(const std::vector<store::op>& ops, bool) override {
    std::lock_guard lock{s_->mtx};
    if (s_->failing) {
      return "IO error: No space left on device";
    }
    ++s_->writes;
    for (auto& o : ops) {
      switch (o.k) {
        case store::op::kind::put:
          s_->data[o.key] = o.value;
          break;
        case store::op::kind::del:
          s_->data.erase(o.key);
          break;
        case store::op::kind::del_range:
          s_->data.erase(s_->data.lower_bound(o.key), s_->data.lower_bound(o.value));
          break;
      }
    }
    return {};
  }
  bool recover() override {
    std::lock_guard lock{s_->mtx};
    ++s_->recovers;
    return !s_->failing;
  }
  void scan(std::string_view prefix,
            const std::function<void(std::string_view, std::string_view)>& f) const override {
    std::vector<std::pair<std::string, std::string>> copy;
    {
      std::lock_guard lock{s_->mtx};
      for (auto it = s_->data.lower_bound(std::string(prefix));
           it != s_->data.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
        copy.emplace_back(*it);
      }
    }
    for (auto& [k, v] : copy) {
      f(k, v);
    }
  }
  std::optional<std::string> get(const std::string& key) const override {
    std::lock_guard lock{s_->mtx};
    auto it = s_->data.find(key);
    if (it == s_->data.end()) {
      return std::nullopt;
    }
    return it->second;
  }

 private:
  std::shared_ptr<shared> s_;
};

std::unique_ptr<store::store> fake_store(const std::shared_ptr<fake_backend::shared>& s,
                                         store::durability mode = store::durability::batch) {
  return std::make_unique<store::store>(std::make_unique<fake_backend>(s), mode,
                                        std::chrono::milliseconds(1));
}

store::saved_session meta(const std::string& id, std::chrono::milliseconds expiry) {
  store::saved_session s;
  s.client_id = id;
  s.version = mqtt::protocol_version::v5;
  s.expiry = expiry;
  s.expiry_left = expiry;
  router::sub_options o;
  o.max_qos = mqtt::qos::exactly_once;
  s.subscriptions.emplace_back("a/#", o);
  return s;
}

session::delivery delivery(const std::string& payload, mqtt::qos q) {
  return session::delivery{msg("a/1", payload, q), q, false, {3}};
}

}  // namespace

TEST_CASE("store: a saved session decodes to the same state", "[store]") {
  store::saved_session s;
  s.client_id = "c1";
  s.version = mqtt::protocol_version::v5;
  s.expiry_left = std::chrono::hours(1);
  router::sub_options o;
  o.max_qos = mqtt::qos::exactly_once;
  o.no_local = true;
  o.subscription_id = 7;
  s.subscriptions.emplace_back("a/#", o);
  s.state.messages.push_back({{msg("a/1", "x", mqtt::qos::at_least_once), mqtt::qos::at_least_once,
                               false, {7}},
                              10, 1});
  s.state.messages.push_back({{nullptr, mqtt::qos::exactly_once, false, {}}, 11, 3});
  s.state.messages.push_back({{msg("a/2", "y", mqtt::qos::at_most_once), mqtt::qos::at_most_once,
                               true, {}},
                              0, 0});
  s.state.awaiting_rel = {5, 6};
  s.state.last_packet_id = 11;
  s.move_id = 0x1234567890abcdefULL;  // handed over between nodes

  store::saved_session d;
  REQUIRE(store::store::decode(store::store::encode(s), d));
  CHECK(d.move_id == 0x1234567890abcdefULL);
  CHECK(d.client_id == "c1");
  CHECK(d.version == mqtt::protocol_version::v5);
  CHECK(d.expiry_left <= std::chrono::hours(1));
  CHECK(d.expiry_left > std::chrono::minutes(59));
  REQUIRE(d.subscriptions.size() == 1);
  CHECK(d.subscriptions[0].first == "a/#");
  CHECK(d.subscriptions[0].second.max_qos == mqtt::qos::exactly_once);
  CHECK(d.subscriptions[0].second.no_local);
  CHECK(d.subscriptions[0].second.subscription_id == 7);
  REQUIRE(d.state.messages.size() == 3);
  CHECK(d.state.messages[0].packet_id == 10);
  CHECK(d.state.messages[0].phase == 1);
  CHECK(d.state.messages[0].d.msg->payload == "x");
  CHECK(d.state.messages[0].d.msg->props.user_properties == s.state.messages[0].d.msg->props.user_properties);
  CHECK(d.state.messages[0].d.subscription_ids == std::vector<std::uint32_t>{7});
  CHECK(d.state.messages[1].phase == 3);
  CHECK(d.state.messages[1].d.msg == nullptr);
  CHECK(d.state.messages[2].packet_id == 0);
  CHECK(d.state.messages[2].d.retain);
  CHECK(d.state.awaiting_rel == std::vector<std::uint16_t>{5, 6});
  CHECK(d.state.last_packet_id == 11);
}

TEST_CASE("store: garbage does not decode", "[store]") {
  store::saved_session d;
  CHECK_FALSE(store::store::decode(std::string("\xff\xff\xff\x01", 4), d));
}

TEST_CASE("store: write-ahead records load back as the session, in seq order", "[store]") {
  auto data = std::make_shared<fake_backend::shared>();
  {
    auto db = fake_store(data);
    store::txn t;
    t.put_meta(meta("c1", std::chrono::hours(1)), true);
    // Out of order on purpose: the key order (seq) decides.
    t.put_pending("c1", 3, delivery("three", mqtt::qos::at_least_once));
    t.put_pending("c1", 1, delivery("one", mqtt::qos::exactly_once));
    t.put_pending("c1", 2, delivery("two", mqtt::qos::exactly_once));
    t.put_pending("c1", 4, delivery("four", mqtt::qos::at_least_once));
    t.put_inflight("c1", 1, 7, 3);  // past PUBREC: the message itself goes
    t.put_inflight("c1", 2, 8, 2);
    t.put_inflight("c1", 3, 9, 1);
    t.del_pending("c1", 4);  // acknowledged
    t.put_awaiting("c1", 42);
    t.put_awaiting("c1", 43);
    t.del_awaiting("c1", 43);
    // Another client whose id is a prefix of the first one's: its records stay its own.
    t.put_meta(meta("c", std::chrono::hours(1)), false);
    t.put_pending("c", 1, delivery("other", mqtt::qos::at_least_once));
    bool written = false;
    db->submit(std::move(t), [&](bool ok) { written = ok; });
    db->flush();
    CHECK(written);
  }
  auto db = fake_store(data);
  auto sessions = db->load_sessions();
  REQUIRE(sessions.size() == 2);
  auto& c = sessions[0].client_id == "c" ? sessions[0] : sessions[1];
  auto& c1 = sessions[0].client_id == "c1" ? sessions[0] : sessions[1];
  REQUIRE(c.state.messages.size() == 1);
  CHECK(c.state.messages[0].d.msg->payload == "other");
  CHECK(c1.expiry == std::chrono::hours(1));
  CHECK(c1.expiry_left == std::chrono::hours(1));  // connected at the crash: counts from now
  REQUIRE(c1.subscriptions.size() == 1);
  CHECK(c1.subscriptions[0].first == "a/#");
  REQUIRE(c1.state.messages.size() == 3);
  CHECK(c1.state.messages[0].d.seq == 1);
  CHECK(c1.state.messages[0].phase == 3);
  CHECK(c1.state.messages[0].packet_id == 7);
  CHECK(c1.state.messages[0].d.msg == nullptr);
  CHECK(c1.state.messages[1].d.msg->payload == "two");
  CHECK(c1.state.messages[1].phase == 2);
  CHECK(c1.state.messages[1].packet_id == 8);
  CHECK(c1.state.messages[2].d.msg->payload == "three");
  CHECK(c1.state.messages[2].phase == 1);
  CHECK(c1.state.messages[2].d.subscription_ids == std::vector<std::uint32_t>{3});
  CHECK(c1.state.awaiting_rel == std::vector<std::uint16_t>{42});
  CHECK(c1.state.last_packet_id == 9);

  // A session's deletion takes every record of it, and only its own.
  store::txn del;
  del.del_session("c1");
  db->submit(std::move(del));
  db->flush();
  auto left = db->load_sessions();
  REQUIRE(left.size() == 1);
  CHECK(left[0].client_id == "c");
  std::lock_guard lock{data->mtx};
  for (auto& [k, v] : data->data) {
    CHECK(k.find("c1") == std::string::npos);
  }
}

TEST_CASE("store: a session away longer than its expiry is deleted at load", "[store]") {
  auto data = std::make_shared<fake_backend::shared>();
  auto db = fake_store(data);
  store::txn t;
  auto s = meta("gone", std::chrono::milliseconds(1));
  t.put_meta(s, false);
  t.put_pending("gone", 1, delivery("x", mqtt::qos::at_least_once));
  t.put_pending("orphan", 1, delivery("y", mqtt::qos::at_least_once));  // no session record
  db->submit(std::move(t));
  db->flush();
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // let the 1 ms expiry pass
  CHECK(db->load_sessions().empty());
  std::lock_guard lock{data->mtx};
  CHECK(data->data.empty());
}

TEST_CASE("store: with durability none, loaded sessions leave the disk", "[store]") {
  auto data = std::make_shared<fake_backend::shared>();
  {
    auto db = fake_store(data, store::durability::none);
    CHECK_FALSE(db->is_durable());
    auto s = meta("keep", std::chrono::minutes(5));
    s.state.messages.push_back({delivery("q", mqtt::qos::at_least_once), 0, 0});
    db->save_session(s);
  }
  auto db = fake_store(data, store::durability::none);
  auto sessions = db->load_sessions();
  REQUIRE(sessions.size() == 1);
  CHECK(sessions[0].client_id == "keep");
  REQUIRE(sessions[0].state.messages.size() == 1);
  CHECK(sessions[0].state.messages[0].d.msg->payload == "q");
  CHECK(db->load_sessions().empty());  // a crash now must not bring back this copy
}

TEST_CASE("store: a failing backend refuses, reports and recovers by itself", "[store]") {
  auto data = std::make_shared<fake_backend::shared>();
  auto db = fake_store(data);
  CHECK(db->is_healthy());
  data->failing = true;
  std::atomic<int> failed{0};
  store::txn t;
  t.put_pending("c", 1, delivery("lost", mqtt::qos::at_least_once));
  db->submit(std::move(t), [&](bool ok) { failed += ok ? 0 : 1; });
  db->flush();
  CHECK(failed == 1);
  CHECK_FALSE(db->is_healthy());
  CHECK(db->last_error().find("No space left") != std::string::npos);
  CHECK(db->stats().failures >= 1);
  auto epoch = db->recoveries();
  // While it fails, every submit is answered at once, and not written.
  store::txn t2;
  t2.put_pending("c", 2, delivery("lost too", mqtt::qos::at_least_once));
  db->submit(std::move(t2), [&](bool ok) { failed += ok ? 0 : 1; });
  db->flush();
  CHECK(failed == 2);
  data->failing = false;
  // The writer probes every millisecond (this store's retry) and turns healthy again.
  for (int i = 0; i < 2000 && !db->is_healthy(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CHECK(db->is_healthy());
  CHECK(db->recoveries() == epoch + 1);
  CHECK(data->recovers >= 1);
  bool ok = false;
  store::txn t3;
  t3.put_pending("c", 3, delivery("kept", mqtt::qos::at_least_once));
  db->submit(std::move(t3), [&](bool r) { ok = r; });
  db->flush();
  CHECK(ok);
  std::lock_guard lock{data->mtx};
  std::size_t pending = 0;
  for (auto& [k, v] : data->data) {
    pending += k.compare(0, 2, "q/") == 0 ? 1 : 0;
  }
  CHECK(pending == 1);  // only what was written while it worked
}

TEST_CASE("store: commits from many threads each complete in submission order", "[store]") {
  auto data = std::make_shared<fake_backend::shared>();
  auto db = fake_store(data);
  constexpr int threads = 4;
  constexpr int per_thread = 2000;
  std::vector<std::vector<int>> seen(threads);
  std::mutex mtx;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        store::txn x;
        x.put_awaiting("t" + std::to_string(t), static_cast<std::uint16_t>(i));
        db->submit(std::move(x), [&, t, i](bool) {
          std::lock_guard lock{mtx};
          seen[static_cast<std::size_t>(t)].push_back(i);
        });
      }
    });
  }
  for (auto& x : ts) {
    x.join();
  }
  db->flush();
  for (auto& v : seen) {
    REQUIRE(v.size() == per_thread);
    CHECK(std::is_sorted(v.begin(), v.end()));
  }
  // Grouped: fewer writes than submits (the writer takes whatever waits).
  CHECK(db->stats().commits <= threads * per_thread);
  CHECK(db->stats().ops == threads * per_thread);
}

TEST_CASE("store: a message's expiry keeps counting from its reception", "[store]") {
  auto data = std::make_shared<fake_backend::shared>();
  auto m = std::make_shared<message>();
  m->topic = "e";
  m->payload = "p";
  m->q = mqtt::qos::at_least_once;
  m->props.message_expiry_interval = 60;
  m->received_at = std::chrono::steady_clock::now() - std::chrono::seconds(30);
  {
    auto db = fake_store(data);
    store::txn t;
    t.put_meta(meta("e", std::chrono::hours(1)), false);
    t.put_pending("e", 1, session::delivery{m, mqtt::qos::at_least_once});
    db->submit(std::move(t));
  }
  auto db = fake_store(data);
  auto sessions = db->load_sessions();
  REQUIRE(sessions.size() == 1);
  REQUIRE(sessions[0].state.messages.size() == 1);
  auto& back = *sessions[0].state.messages[0].d.msg;
  auto left = back.expires_at() - std::chrono::steady_clock::now();
  CHECK(left < std::chrono::seconds(31));
  CHECK(left > std::chrono::seconds(25));
}

TEST_CASE("store: a bridge's written-ahead messages load back in seq order", "[store]") {
  auto data = std::make_shared<fake_backend::shared>();
  auto db = fake_store(data);
  store::txn t;
  t.put_bridge("up", 2, delivery("two", mqtt::qos::exactly_once));
  t.put_bridge("up", 1, delivery("one", mqtt::qos::at_least_once));
  t.put_bridge("up", 3, delivery("three", mqtt::qos::at_least_once));
  t.del_bridge("up", 3);                                               // the remote has it
  t.put_bridge("u", 1, delivery("other bridge", mqtt::qos::at_least_once));  // a prefix name
  t.put_pending("up", 1, delivery("a session named up", mqtt::qos::at_least_once));
  db->submit(std::move(t));
  db->flush();
  auto up = db->load_bridge("up");
  REQUIRE(up.size() == 2);
  CHECK(up[0].msg->payload == "one");
  CHECK(up[0].seq == 1);
  CHECK(up[0].q == mqtt::qos::at_least_once);
  CHECK(up[1].msg->payload == "two");
  CHECK(up[1].seq == 2);
  CHECK(up[1].q == mqtt::qos::exactly_once);
  CHECK(db->load_bridge("up").size() == 2);  // loading leaves them on disk
  REQUIRE(db->load_bridge("u").size() == 1);
  CHECK(db->load_bridge("none").empty());
  // A session's records are not a bridge's, and the session loader leaves bridges alone.
  db->load_sessions();
  CHECK(db->load_bridge("up").size() == 2);
}

TEST_CASE("store: RocksDB keeps retained messages, sessions and bridge queues", "[store]") {
  auto dir = temp_dir("reopen");
  {
    auto opened = store::store::open(dir, store::durability::sync);
    REQUIRE(std::holds_alternative<std::unique_ptr<store::store>>(opened));
    auto& db = *std::get<0>(opened);
    db.put_retained(*msg("r/1", "one", mqtt::qos::at_least_once));
    db.put_retained(*msg("r/2", "two", mqtt::qos::at_most_once));
    db.put_retained(*msg("r/2", "", mqtt::qos::at_most_once));  // delete
    store::txn t;
    t.put_meta(meta("keep", std::chrono::minutes(5)), false);
    t.put_pending("keep", 1, delivery("x", mqtt::qos::at_least_once));
    db.submit(std::move(t));
    db.save_bridge_queue("up", {msg("site1/a", "1", mqtt::qos::at_least_once),
                                msg("site1/b", "2", mqtt::qos::exactly_once)});
    db.save_bridge_queue("other", {msg("x", "3", mqtt::qos::at_least_once)});
    db.save_bridge_queue("other", {});  // nothing left: removed
  }
  auto opened = store::store::open(dir, store::durability::batch);
  REQUIRE(std::holds_alternative<std::unique_ptr<store::store>>(opened));
  auto& db = *std::get<0>(opened);
  auto retained = db.load_retained();
  REQUIRE(retained.size() == 1);
  CHECK(retained[0]->topic == "r/1");
  CHECK(retained[0]->payload == "one");
  CHECK(retained[0]->q == mqtt::qos::at_least_once);
  auto sessions = db.load_sessions();
  REQUIRE(sessions.size() == 1);
  CHECK(sessions[0].client_id == "keep");
  REQUIRE(sessions[0].state.messages.size() == 1);
  CHECK(db.load_sessions().size() == 1);  // written ahead: loading leaves it on disk
  auto q = db.take_bridge_queue("up");
  REQUIRE(q.size() == 2);
  CHECK(q[0]->topic == "site1/a");
  CHECK(q[0]->payload == "1");
  CHECK(q[1]->q == mqtt::qos::exactly_once);
  CHECK(q[1]->props.content_type == std::optional<std::string>("text/plain"));
  CHECK(db.take_bridge_queue("up").empty());
  CHECK(db.take_bridge_queue("other").empty());
  std::filesystem::remove_all(dir);
}

TEST_CASE("store: an unusable store directory is an error naming it", "[store]") {
  auto dir = temp_dir("bad");
  std::filesystem::create_directories(dir);
  {
    std::ofstream f(dir + "/store");  // a file where the database directory should be
    f << "not a database";
  }
  auto opened = store::store::open(dir, store::durability::batch);
  REQUIRE(std::holds_alternative<std::string>(opened));
  CHECK(std::get<std::string>(opened).find(dir) != std::string::npos);
  std::filesystem::remove_all(dir);
}
