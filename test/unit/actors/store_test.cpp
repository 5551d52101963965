// Unit tests of the disk store: session encoding round trip and RocksDB persistence.
#include "actors/store/store.hpp"

#include <unistd.h>

#include <filesystem>

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

  store::saved_session d;
  REQUIRE(store::store::decode(store::store::encode(s), d));
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

TEST_CASE("store: retained messages and sessions survive reopening", "[store]") {
  auto dir = temp_dir("reopen");
  {
    auto opened = store::store::open(dir);
    REQUIRE(std::holds_alternative<std::unique_ptr<store::store>>(opened));
    auto& db = *std::get<0>(opened);
    db.put_retained(*msg("r/1", "one", mqtt::qos::at_least_once));
    db.put_retained(*msg("r/2", "two", mqtt::qos::at_most_once));
    db.put_retained(*msg("r/2", "", mqtt::qos::at_most_once));  // delete
    store::saved_session s;
    s.client_id = "keep";
    s.expiry_left = std::chrono::minutes(5);
    db.save_session(s);
  }
  auto opened = store::store::open(dir);
  REQUIRE(std::holds_alternative<std::unique_ptr<store::store>>(opened));
  auto& db = *std::get<0>(opened);
  auto retained = db.load_retained();
  REQUIRE(retained.size() == 1);
  CHECK(retained[0]->topic == "r/1");
  CHECK(retained[0]->payload == "one");
  CHECK(retained[0]->q == mqtt::qos::at_least_once);
  auto sessions = db.take_sessions();
  REQUIRE(sessions.size() == 1);
  CHECK(sessions[0].client_id == "keep");
  CHECK(db.take_sessions().empty());  // taken means removed
  std::filesystem::remove_all(dir);
}

TEST_CASE("store: a bridge's queue survives reopening, in order, and is taken once", "[store]") {
  auto dir = temp_dir("bridge");
  {
    auto opened = store::store::open(dir);
    REQUIRE(std::holds_alternative<std::unique_ptr<store::store>>(opened));
    auto& db = *std::get<0>(opened);
    db.save_bridge_queue("up", {msg("site1/a", "1", mqtt::qos::at_least_once),
                                msg("site1/b", "2", mqtt::qos::exactly_once)});
    db.save_bridge_queue("other", {msg("x", "3", mqtt::qos::at_least_once)});
    db.save_bridge_queue("other", {});  // nothing left: removed
  }
  auto opened = store::store::open(dir);
  REQUIRE(std::holds_alternative<std::unique_ptr<store::store>>(opened));
  auto& db = *std::get<0>(opened);
  auto q = db.take_bridge_queue("up");
  REQUIRE(q.size() == 2);
  CHECK(q[0]->topic == "site1/a");
  CHECK(q[0]->payload == "1");
  CHECK(q[1]->q == mqtt::qos::exactly_once);
  CHECK(q[1]->props.content_type == std::optional<std::string>("text/plain"));
  CHECK(db.take_bridge_queue("up").empty());
  CHECK(db.take_bridge_queue("other").empty());
  CHECK(db.take_sessions().empty());  // bridge queues are not sessions
  std::filesystem::remove_all(dir);
}
