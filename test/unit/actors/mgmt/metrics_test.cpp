// Unit tests for metric rendering: Prometheus text, emqttd uptime text, outgoing packet counts.
#include "actors/mgmt/metrics.hpp"

#include <catch2/catch.hpp>

using namespace tern::actors::mgmt;

TEST_CASE("Prometheus text exposition", "[mgmt]") {
  std::vector<metric_family> f = {
      {"tern_x_total", "counter", "Things.", {{"", 3}}},
      {"tern_y", "gauge", "Labelled.", {{"qos=\"0\"", 1.5}, {"qos=\"1\"", 12345678901.0}}},
  };
  CHECK(to_prometheus(f) ==
        "# HELP tern_x_total Things.\n# TYPE tern_x_total counter\ntern_x_total 3\n"
        "# HELP tern_y Labelled.\n# TYPE tern_y gauge\ntern_y{qos=\"0\"} 1.5\n"
        "tern_y{qos=\"1\"} 12345678901\n");
  CHECK(to_prometheus({}).empty());
}

TEST_CASE("uptime text as emqttd wrote it", "[mgmt]") {
  using std::chrono::seconds;
  CHECK(format_uptime(seconds(0)) == "0 seconds");
  CHECK(format_uptime(seconds(5)) == "5 seconds");
  CHECK(format_uptime(seconds(184)) == "3 minutes, 4 seconds");
  CHECK(format_uptime(seconds(7384)) == "2 hours, 3 minutes, 4 seconds");
  CHECK(format_uptime(seconds(93784)) == "1 days,2 hours, 3 minutes, 4 seconds");
  CHECK(format_uptime(seconds(86400)) == "1 days,0 hours, 0 minutes, 0 seconds");
}

TEST_CASE("outgoing bytes are counted per packet type and PUBLISH QoS", "[mgmt]") {
  tern::actors::broker::counters c;
  std::string batch;
  batch += std::string("\x20\x02\x00\x00", 4);           // CONNACK
  batch += std::string("\x32\x05\x00\x01t\x00\x01", 7);  // PUBLISH QoS 1
  batch += std::string("\x34\x05\x00\x01t\x00\x02", 7);  // PUBLISH QoS 2
  batch += std::string("\x30\x04\x00\x01tx", 6);         // PUBLISH QoS 0
  // PUBLISH QoS 0 with a two-byte remaining length (201 = 0xc9 0x01)
  batch += std::string("\x30\xc9\x01\x00\x01t", 6) + std::string(198, 'p');
  batch += std::string("\xd0\x00", 2);  // PINGRESP
  c.count_out(batch);
  CHECK(c.bytes_sent.load() == batch.size());
  CHECK(c.packets_sent[2].load() == 1);
  CHECK(c.packets_sent[3].load() == 4);
  CHECK(c.packets_sent[13].load() == 1);
  CHECK(c.publish_sent[0].load() == 2);
  CHECK(c.publish_sent[1].load() == 1);
  CHECK(c.publish_sent[2].load() == 1);
  c.count_in(3, 2);
  c.count_in(12, 0);
  CHECK(c.packets_received[3].load() == 1);
  CHECK(c.publish_received[2].load() == 1);
  CHECK(c.packets_received[12].load() == 1);
}
