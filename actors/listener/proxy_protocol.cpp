// PROXY protocol v1/v2 parsing.
#include "actors/listener/proxy_protocol.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace tern::actors::listener {

namespace {

using status = proxy_result::status;

constexpr char v2_sig[12] = {'\r', '\n', '\r', '\n', '\0', '\r', '\n', 'Q', 'U', 'I', 'T', '\n'};
constexpr std::string_view v1_prefix = "PROXY ";

proxy_result fail(std::string why) {
  proxy_result r;
  r.st = status::error;
  r.error = std::move(why);
  return r;
}

proxy_result more(std::size_t safe) {
  proxy_result r;
  r.st = status::need_more;
  r.length = safe;
  return r;
}

std::vector<std::string_view> split_spaces(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i <= s.size()) {
    auto j = s.find(' ', i);
    if (j == std::string_view::npos) {
      j = s.size();
    }
    out.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

bool parse_port(std::string_view s, std::uint16_t& port) {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) {
    return false;
  }
  std::uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return false;
    }
    v = v * 10 + static_cast<std::uint32_t>(c - '0');
  }
  if (v > 65535) {
    return false;
  }
  port = static_cast<std::uint16_t>(v);
  return true;
}

bool valid_ip(std::string_view s, int family) {
  if (s.empty() || s.size() >= 46) {
    return false;
  }
  char text[46];
  std::memcpy(text, s.data(), s.size());
  text[s.size()] = '\0';
  unsigned char out[16];
  return inet_pton(family, text, out) == 1;
}

proxy_result parse_v1(std::string_view data) {
  // The prefix must match as far as it has arrived.
  auto n = std::min(data.size(), v1_prefix.size());
  if (data.substr(0, n) != v1_prefix.substr(0, n)) {
    return fail("not a PROXY protocol header");
  }
  auto crlf = data.find("\r\n");
  if (crlf == std::string_view::npos) {
    if (data.size() >= proxy_v1_max) {
      return fail("PROXY v1 header longer than 107 bytes");
    }
    // A CR must be followed by LF; anything else before the CRLF is header text.
    auto cr = data.find('\r');
    if (cr != std::string_view::npos && cr + 1 < data.size()) {
      return fail("PROXY v1 header: CR without LF");
    }
    return more(data.size());
  }
  std::size_t len = crlf + 2;
  if (len > proxy_v1_max) {
    return fail("PROXY v1 header longer than 107 bytes");
  }
  auto line = data.substr(v1_prefix.size(), crlf - v1_prefix.size());
  auto parts = split_spaces(line);
  proxy_result r;
  r.st = status::done;
  r.length = len;
  r.header.version = 1;
  if (!parts.empty() && parts[0] == "UNKNOWN") {
    r.header.is_local = true;  // the rest of the line is to be ignored
    return r;
  }
  if (parts.size() != 5) {
    return fail("PROXY v1 header: expected TCP4|TCP6 src dst sport dport");
  }
  int family = 0;
  if (parts[0] == "TCP4") {
    family = AF_INET;
  } else if (parts[0] == "TCP6") {
    family = AF_INET6;
  } else {
    return fail("PROXY v1 header: unknown protocol " + std::string(parts[0]));
  }
  if (!valid_ip(parts[1], family) || !valid_ip(parts[2], family)) {
    return fail("PROXY v1 header: bad address");
  }
  if (!parse_port(parts[3], r.header.source_port) || !parse_port(parts[4], r.header.dest_port)) {
    return fail("PROXY v1 header: bad port");
  }
  r.header.source_ip = std::string(parts[1]);
  r.header.dest_ip = std::string(parts[2]);
  return r;
}

std::string ip_text(int family, const unsigned char* bytes) {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, bytes, text, sizeof(text));
  return text;
}

std::uint16_t be16(const unsigned char* p) {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}

proxy_result parse_v2(std::string_view data) {
  auto n = std::min(data.size(), sizeof(v2_sig));
  if (std::memcmp(data.data(), v2_sig, n) != 0) {
    return fail("not a PROXY protocol header");
  }
  if (data.size() < 16) {
    return more(data.size());  // every v2 header has a 16-byte preamble
  }
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  if ((p[12] >> 4) != 2) {
    return fail("PROXY v2 header: unsupported version " + std::to_string(p[12] >> 4));
  }
  auto cmd = p[12] & 0x0f;
  if (cmd > 1) {
    return fail("PROXY v2 header: unknown command " + std::to_string(cmd));
  }
  std::size_t len = 16 + be16(p + 14);
  if (len > proxy_v2_max) {
    return fail("PROXY v2 header longer than " + std::to_string(proxy_v2_max) + " bytes");
  }
  if (data.size() < len) {
    return more(data.size());
  }
  proxy_result r;
  r.st = status::done;
  r.length = len;
  r.header.version = 2;
  auto family = p[13] >> 4;
  const unsigned char* a = p + 16;
  std::size_t alen = len - 16;
  if (cmd == 0) {
    r.header.is_local = true;  // LOCAL: health check by the balancer itself
    return r;
  }
  if (family == 1) {  // AF_INET: 4 + 4 + 2 + 2
    if (alen < 12) {
      return fail("PROXY v2 header: short IPv4 address block");
    }
    r.header.source_ip = ip_text(AF_INET, a);
    r.header.dest_ip = ip_text(AF_INET, a + 4);
    r.header.source_port = be16(a + 8);
    r.header.dest_port = be16(a + 10);
  } else if (family == 2) {  // AF_INET6: 16 + 16 + 2 + 2
    if (alen < 36) {
      return fail("PROXY v2 header: short IPv6 address block");
    }
    r.header.source_ip = ip_text(AF_INET6, a);
    r.header.dest_ip = ip_text(AF_INET6, a + 16);
    r.header.source_port = be16(a + 32);
    r.header.dest_port = be16(a + 34);
  } else {
    r.header.is_local = true;  // UNSPEC or UNIX: nothing we can use as a peer address
  }
  return r;
}

}  // namespace

proxy_result parse_proxy_header(std::string_view data) {
  if (data.empty()) {
    return more(0);
  }
  if (data[0] == 'P') {
    return parse_v1(data);
  }
  if (data[0] == '\r') {
    return parse_v2(data);
  }
  return fail("not a PROXY protocol header");
}

}  // namespace tern::actors::listener
