// Hook registry: priority order, stop, fold, unique names, cheap has().
#include "actors/hooks/hooks.hpp"

#include <catch2/catch.hpp>

#include "actors/hooks/audit_log.hpp"

using namespace tern::actors::hooks;
using Catch::Matchers::Contains;
using Catch::Matchers::EndsWith;

TEST_CASE("hooks: callbacks run by priority, highest first, stable", "[hooks]") {
  registry r;
  std::string order;
  auto mk = [&](char c) {
    return [&order, c](const args&, acc&) {
      order += c;
      return result::ok;
    };
  };
  CHECK_FALSE(r.has(point::client_connected));
  REQUIRE(r.add(point::client_connected, "a", 0, mk('a')));
  REQUIRE(r.add(point::client_connected, "b", 10, mk('b')));
  REQUIRE(r.add(point::client_connected, "c", 0, mk('c')));
  REQUIRE(r.add(point::client_connected, "d", -5, mk('d')));
  CHECK_FALSE(r.add(point::client_connected, "a", 3, mk('x')));  // duplicate name
  CHECK(r.has(point::client_connected));
  CHECK_FALSE(r.has(point::client_disconnected));
  r.run(point::client_connected, args{});
  CHECK(order == "bacd");
  CHECK(r.names(point::client_connected) == std::vector<std::string>{"b", "a", "c", "d"});
  CHECK(r.remove(point::client_connected, "b"));
  CHECK_FALSE(r.remove(point::client_connected, "b"));
  order.clear();
  r.run(point::client_connected, args{});
  CHECK(order == "acd");
  for (auto n : {"a", "c", "d"}) {
    r.remove(point::client_connected, n);
  }
  CHECK_FALSE(r.has(point::client_connected));
}

TEST_CASE("hooks: stop ends the chain; fold threads the accumulator", "[hooks]") {
  registry r;
  int calls = 0;
  r.add(point::client_check_acl, "deny-secret", 10, [&](const args& a, acc& x) {
    ++calls;
    if (a.topic == "secret") {
      x.v = verdict::deny;
      return result::stop;
    }
    return result::ok;
  });
  r.add(point::client_check_acl, "allow-all", 0, [&](const args&, acc& x) {
    ++calls;
    x.v = verdict::allow;
    x.reason_code = 7;
    return result::ok;
  });
  args a;
  a.topic = "secret";
  CHECK(r.run_fold(point::client_check_acl, a).v == verdict::deny);
  CHECK(calls == 1);
  a.topic = "open";
  auto out = r.run_fold(point::client_check_acl, a);
  CHECK(out.v == verdict::allow);
  CHECK(out.reason_code == 7);
  CHECK(calls == 3);
  // No callback: the initial value comes back unchanged.
  acc init;
  init.v = verdict::deny;
  CHECK(r.run_fold(point::message_publish, a, init).v == verdict::deny);
}

TEST_CASE("hooks: names of every hook point round-trip", "[hooks]") {
  for (std::size_t i = 0; i < point_count; ++i) {
    auto p = static_cast<point>(i);
    CHECK(point_from_name(name(p)) == p);
  }
  CHECK_FALSE(point_from_name("client.nope"));
  CHECK(std::string(name(point::message_dropped)) == "message.dropped");
}

TEST_CASE("hooks: audit lines carry the event fields but never the password", "[hooks]") {
  args a;
  a.client_id = "c1";
  a.username = "alice";
  a.peer = "127.0.0.1:5555";
  a.password = "hunter2";
  a.code = 5;
  auto line = format_audit_line(point::client_connected, a);
  CHECK_THAT(line, Contains(" client.connected client=c1 user=alice peer=127.0.0.1:5555"));
  CHECK_THAT(line, EndsWith("code=5"));
  CHECK(line.find("hunter2") == std::string::npos);
  a.topic = "a/\nb";
  a.qos = 1;
  auto sub = format_audit_line(point::client_subscribe, a);
  CHECK_THAT(sub, Contains("topic=a/\\x0ab qos=1"));
}
