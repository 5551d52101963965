// Unit tests for the binary peer address: text round trips and what is refused.
#include "actors/listener/peer_address.hpp"

#include <catch2/catch.hpp>

using tern::actors::listener::peer_address;

TEST_CASE("peer address: IPv4 and IPv6 text round trip", "[listener]") {
  for (std::string text : {"127.0.0.10:54321", "192.168.100.200:1883", "[::1]:8883",
                           "[2001:db8::1]:1", "[::ffff:10.0.0.1]:65535"}) {
    auto p = peer_address::parse(text);
    REQUIRE(p.has_value());
    CHECK(p->to_string() == text);
  }
  auto p = peer_address::from_ip("10.1.2.3", 7);
  CHECK(p.is_set());
  CHECK_FALSE(p.is_v6());
  CHECK(p.port() == 7);
  CHECK(p.ip() == "10.1.2.3");
  CHECK(peer_address::from_ip("fe80::2", 9).to_string() == "[fe80::2]:9");
  CHECK(sizeof(peer_address) <= 20);
}

TEST_CASE("peer address: malformed text is refused", "[listener]") {
  for (std::string text : {"", "1.2.3.4", "1.2.3.4:", "1.2.3.4:65536", "1.2.3.4:12x",
                           "::1:80", "[1.2.3.4]:80", "host:80", "[::1]"}) {
    CHECK_FALSE(peer_address::parse(text).has_value());
  }
  CHECK_FALSE(peer_address::from_ip("not an address", 1).is_set());
  CHECK(peer_address{}.to_string().empty());
}
