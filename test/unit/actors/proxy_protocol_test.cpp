// PROXY protocol v1/v2 header parser: complete, partial, malformed headers.
#include "actors/listener/proxy_protocol.hpp"

#include <catch2/catch.hpp>
#include <string>

namespace {

using tern::actors::listener::parse_proxy_header;
using tern::actors::listener::proxy_result;
using status = proxy_result::status;

const std::string sig("\r\n\r\n\0\r\nQUIT\n", 12);

std::string v2(unsigned char ver_cmd, unsigned char fam, const std::string& addr) {
  std::string h = sig;
  h += static_cast<char>(ver_cmd);
  h += static_cast<char>(fam);
  h += static_cast<char>(addr.size() >> 8);
  h += static_cast<char>(addr.size() & 0xff);
  return h + addr;
}

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int x : b) {
    s += static_cast<char>(x);
  }
  return s;
}

}  // namespace

TEST_CASE("proxy v1: TCP4 header followed by client bytes", "[proxy]") {
  std::string h = "PROXY TCP4 192.0.2.10 198.51.100.1 56324 1883\r\n";
  auto r = parse_proxy_header(h + "\x10\x0c");
  REQUIRE(r.st == status::done);
  CHECK(r.length == h.size());
  CHECK(r.header.version == 1);
  CHECK_FALSE(r.header.is_local);
  CHECK(r.header.source_ip == "192.0.2.10");
  CHECK(r.header.source_port == 56324);
  CHECK(r.header.dest_ip == "198.51.100.1");
  CHECK(r.header.dest_port == 1883);
}

TEST_CASE("proxy v1: TCP6 and UNKNOWN", "[proxy]") {
  auto r = parse_proxy_header("PROXY TCP6 2001:db8::1 ::1 4000 1883\r\n");
  REQUIRE(r.st == status::done);
  CHECK(r.header.source_ip == "2001:db8::1");
  CHECK(r.header.source_port == 4000);
  auto u = parse_proxy_header("PROXY UNKNOWN whatever\r\nxyz");
  REQUIRE(u.st == status::done);
  CHECK(u.header.is_local);
  CHECK(u.length == 24);
}

TEST_CASE("proxy v1: a partial header asks for more and may be consumed", "[proxy]") {
  std::string h = "PROXY TCP4 192.0.2.10 198.51.100.1 56324 1883\r\n";
  for (std::size_t n = 1; n < h.size(); ++n) {
    auto r = parse_proxy_header(h.substr(0, n));
    INFO("prefix " << n);
    REQUIRE(r.st == status::need_more);
    CHECK(r.length == n);
  }
  CHECK(parse_proxy_header("").st == status::need_more);
}

TEST_CASE("proxy v1: malformed headers are errors", "[proxy]") {
  for (std::string bad : {
           "PROXY TCP4 192.0.2.10 198.51.100.1 56324\r\n",   // missing port
           "PROXY TCP4 192.0.2.256 198.51.100.1 1 2\r\n",    // bad address
           "PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n",    // v6 address in TCP4
           "PROXY TCP4 192.0.2.1 198.51.100.1 65536 2\r\n",  // port out of range
           "PROXY TCP4 192.0.2.1 198.51.100.1 01 2\r\n",     // leading zero
           "PROXY UDP4 192.0.2.1 198.51.100.1 1 2\r\n",      // unknown protocol
           "PROXY TCP4 192.0.2.1 198.51.100.1 1 2\rX",       // CR without LF
           "PROXX TCP4",                                     // wrong prefix
           "\x10\x0c\x00\x04MQTT",                           // plain MQTT CONNECT
       }) {
    INFO(bad);
    CHECK(parse_proxy_header(bad).st == status::error);
  }
  CHECK(parse_proxy_header("PROXY " + std::string(120, 'A')).st == status::error);  // > 107
}

TEST_CASE("proxy v2: IPv4 PROXY command", "[proxy]") {
  auto addr = bytes({192, 0, 2, 10, 198, 51, 100, 1, 0xdc, 0x04, 0x07, 0x5b});
  auto h = v2(0x21, 0x11, addr);
  auto r = parse_proxy_header(h + "\x10");
  REQUIRE(r.st == status::done);
  CHECK(r.length == 28);
  CHECK(r.header.version == 2);
  CHECK(r.header.source_ip == "192.0.2.10");
  CHECK(r.header.source_port == 56324);
  CHECK(r.header.dest_port == 1883);
}

TEST_CASE("proxy v2: IPv6 with TLVs, LOCAL, and partial input", "[proxy]") {
  std::string a6(16, '\0');
  a6[0] = 0x20;
  a6[1] = 0x01;
  a6[2] = 0x0d;
  a6[3] = static_cast<char>(0xb8);
  a6[15] = 0x07;
  std::string d6(16, '\0');
  d6[15] = 1;
  auto tlv = bytes({0x04, 0x00, 0x02, 'h', 'i'});  // a NOOP TLV, ignored
  auto h = v2(0x21, 0x21, a6 + d6 + bytes({0x01, 0x00, 0x07, 0x5b}) + tlv);
  auto r = parse_proxy_header(h);
  REQUIRE(r.st == status::done);
  CHECK(r.length == h.size());
  CHECK(r.header.source_ip == "2001:db8::7");
  CHECK(r.header.source_port == 256);
  for (std::size_t n = 1; n < h.size(); ++n) {
    auto p = parse_proxy_header(h.substr(0, n));
    INFO("prefix " << n);
    REQUIRE(p.st == status::need_more);
    CHECK(p.length == n);
  }
  auto local = parse_proxy_header(v2(0x20, 0x00, ""));
  REQUIRE(local.st == status::done);
  CHECK(local.header.is_local);
}

TEST_CASE("proxy v2: malformed headers are errors", "[proxy]") {
  CHECK(parse_proxy_header(v2(0x11, 0x11, std::string(12, '\0'))).st == status::error);  // ver 1
  CHECK(parse_proxy_header(v2(0x22, 0x11, std::string(12, '\0'))).st == status::error);  // cmd 2
  CHECK(parse_proxy_header(v2(0x21, 0x11, std::string(4, '\0'))).st == status::error);   // short
  CHECK(parse_proxy_header(v2(0x21, 0x21, std::string(20, '\0'))).st == status::error);  // short
  CHECK(parse_proxy_header(v2(0x21, 0x11, std::string(2000, '\0'))).st == status::error);
  CHECK(parse_proxy_header(std::string("\r\n\r\nX", 5)).st == status::error);
}
