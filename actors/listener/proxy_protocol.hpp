// PROXY protocol v1 (text) and v2 (binary) header parser (haproxy's proxy-protocol.txt).
//
// Pure: bytes in, a verdict out; no sockets. A load balancer in front of a listener with
// proxy_protocol = true prefixes each connection with this header, which names the real
// client; the broker then uses that address instead of the balancer's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tern::actors::listener {

/// What the header says about the connection.
struct proxy_header {
  int version = 0;  ///< 1 or 2
  /// v1 "UNKNOWN", v2 LOCAL or an address family we do not map: keep the socket's own address.
  bool is_local = false;
  std::string source_ip;  ///< "192.0.2.1" or "2001:db8::1"
  std::uint16_t source_port = 0;
  std::string dest_ip;
  std::uint16_t dest_port = 0;
};

struct proxy_result {
  enum class status { need_more, done, error };
  status st = status::need_more;
  /// done: length of the header (the client's own bytes follow it).
  /// need_more: how many leading bytes of the input certainly belong to the header, so a
  /// reader may consume them from the socket without taking any of the client's bytes.
  std::size_t length = 0;
  proxy_header header;
  std::string error;  ///< error: what is wrong, for the log
};

/// Longest v1 header, CRLF included (the spec's limit).
constexpr std::size_t proxy_v1_max = 107;
/// Longest v2 header we accept (16-byte preamble + addresses + TLVs).
constexpr std::size_t proxy_v2_max = 16 + 1024;

/// Parses the start of a connection's byte stream. `data` is everything received so far.
proxy_result parse_proxy_header(std::string_view data);

}  // namespace tern::actors::listener
