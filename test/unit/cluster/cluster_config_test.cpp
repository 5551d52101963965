// [cluster] configuration: defaults, values, errors naming file:line: key.
#include <catch2/catch.hpp>
#include <string>
#include <variant>

#include "actors/config/config.hpp"

using namespace tern::actors::config;

TEST_CASE("cluster config: off by default; the shipped etc/tern.toml has the defaults",
          "[cluster]") {
  config d;
  CHECK_FALSE(d.cluster.enabled());
  auto r = load_file(std::string(TERN_SOURCE_DIR) + "/etc/tern.toml");
  REQUIRE(std::holds_alternative<config>(r));
  auto& c = std::get<config>(r).cluster;
  CHECK(c.listen == d.cluster.listen);
  CHECK(c.advertise == d.cluster.advertise);
  CHECK(c.seeds == d.cluster.seeds);
  CHECK(c.cookie == d.cluster.cookie);
  CHECK(c.heartbeat_interval == d.cluster.heartbeat_interval);
  CHECK(c.connection_timeout == d.cluster.connection_timeout);
  CHECK(c.reconnect_interval == d.cluster.reconnect_interval);
  CHECK(c.max_forward_queue == d.cluster.max_forward_queue);
  CHECK(c.tls == d.cluster.tls);
  CHECK(c.tls_cert == d.cluster.tls_cert);
  CHECK(c.tls_key == d.cluster.tls_key);
  CHECK(c.tls_cafile == d.cluster.tls_cafile);
}

TEST_CASE("cluster config: values", "[cluster]") {
  auto r = parse(
      "[cluster]\nlisten = \"127.0.0.1:4370\"\nseeds = [\"10.0.0.1:4370\", \"[::1]:4371\"]\n"
      "cookie = \"s\"\nheartbeat_interval = \"250ms\"\nconnection_timeout = \"1s\"\n",
      "t.toml");
  REQUIRE(std::holds_alternative<config>(r));
  auto& c = std::get<config>(r).cluster;
  CHECK(c.enabled());
  CHECK(c.seeds == std::vector<std::string>{"10.0.0.1:4370", "[::1]:4371"});
  CHECK(c.heartbeat_interval == std::chrono::milliseconds(250));
  CHECK(c.connection_timeout == std::chrono::seconds(1));
}

TEST_CASE("cluster config: errors name the line and key", "[cluster]") {
  auto bad = [](const std::string& text) {
    auto r = parse(text, "t.toml");
    REQUIRE(std::holds_alternative<config_error>(r));
    return std::get<config_error>(r).message;
  };
  CHECK_THAT(bad("[cluster]\nlisten = \"nope\"\n"),
             Catch::StartsWith("t.toml:2: cluster.listen:"));
  CHECK_THAT(bad("[cluster]\n\nseeds = [\"a:1\", 5]\n"),
             Catch::StartsWith("t.toml:3: cluster.seeds:"));
  CHECK_THAT(bad("[cluster]\nseeds = \"a:1\"\n"), Catch::Contains("expected an array"));
  CHECK_THAT(bad("[cluster]\nreconnect_interval = \"1ms\"\n"), Catch::Contains("at least"));
  CHECK_THAT(bad("[cluster]\nbogus = 1\n"), Catch::Contains("cluster.bogus: unknown key"));
}
