// Unit tests for the connected-client registry: takeover-safe removal, snapshot order, max.
#include "actors/mgmt/client_registry.hpp"

#include <catch2/catch.hpp>

using tern::actors::mgmt::client_info;
using tern::actors::mgmt::client_registry;

namespace {

client_info info(const std::string& id, std::uint64_t conn_id) {
  client_info c;
  c.client_id = id;
  c.conn_id = conn_id;
  return c;
}

}  // namespace

TEST_CASE("client registry: add, find, snapshot in id order", "[mgmt]") {
  client_registry r;
  r.add(info("b", 1));
  r.add(info("a", 2));
  REQUIRE(r.size() == 2);
  CHECK(r.find("a")->conn_id == 2);
  CHECK_FALSE(r.find("c").has_value());
  auto all = r.snapshot();
  REQUIRE(all.size() == 2);
  CHECK(all[0].client_id == "a");
  CHECK(all[1].client_id == "b");
}

TEST_CASE("client registry: a taken-over connection does not remove its successor", "[mgmt]") {
  client_registry r;
  r.add(info("x", 1));
  r.add(info("x", 2));            // takeover: the new connection registers first
  CHECK_FALSE(r.remove("x", 1));  // the old one closes afterwards
  REQUIRE(r.find("x").has_value());
  CHECK(r.find("x")->conn_id == 2);
  CHECK(r.remove("x", 2));
  CHECK(r.size() == 0);
  CHECK_FALSE(r.remove("x", 2));
}

TEST_CASE("client registry: max keeps the most clients seen at once", "[mgmt]") {
  client_registry r;
  r.add(info("a", 1));
  r.add(info("b", 2));
  r.add(info("c", 3));
  r.remove("a", 1);
  r.remove("b", 2);
  r.add(info("d", 4));
  CHECK(r.size() == 2);
  CHECK(r.max() == 3);
}

TEST_CASE("client registry: entries come back as they were added", "[mgmt]") {
  client_registry r;
  auto c = info("p", 7);
  c.username = "user";
  c.peer = "192.168.100.200:54321";
  c.proto_level = 5;
  c.keepalive = 30;
  c.clean_start = false;
  c.connected_at_ms = 1234;
  r.add(c);
  auto odd = info("q", 8);
  odd.peer = "not an address";  // kept as text
  r.add(odd);
  auto got = r.find("p");
  REQUIRE(got.has_value());
  CHECK(got->client_id == "p");
  CHECK(got->username == "user");
  CHECK(got->peer == "192.168.100.200:54321");
  CHECK(got->proto_level == 5);
  CHECK(got->keepalive == 30);
  CHECK_FALSE(got->clean_start);
  CHECK(got->connected_at_ms == 1234);
  CHECK(got->conn_id == 7);
  CHECK(r.find("q")->peer == "not an address");
  CHECK(r.snapshot()[1].peer == "not an address");
  CHECK(info("z", 1).peer.empty());
  r.add(info("z", 1));
  CHECK(r.find("z")->peer.empty());
}
