// Addresses, CIDR ranges and names of the access layer's enums.
#include "actors/access/types.hpp"

#include <arpa/inet.h>

#include <cstring>

namespace tern::actors::access {

std::optional<ip_address> ip_address::parse(std::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  if (text.empty() || text.size() > 64) {
    return std::nullopt;
  }
  std::string s(text);
  ip_address a;
  in_addr v4{};
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    a.bytes[10] = 0xff;
    a.bytes[11] = 0xff;
    std::memcpy(a.bytes.data() + 12, &v4, 4);
    a.is_v4 = true;
    return a;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    std::memcpy(a.bytes.data(), &v6, 16);
    static const std::uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    a.is_v4 = std::memcmp(a.bytes.data(), mapped, 12) == 0;
    return a;
  }
  return std::nullopt;
}

std::optional<ip_address> ip_address::from_peer(std::string_view peer) {
  if (!peer.empty() && peer.front() == '[') {
    auto close = peer.find(']');
    if (close == std::string_view::npos) {
      return std::nullopt;
    }
    return parse(peer.substr(1, close - 1));
  }
  auto colon = peer.rfind(':');
  if (colon != std::string_view::npos && peer.find(':') == colon) {
    return parse(peer.substr(0, colon));
  }
  return parse(peer);
}

std::string ip_address::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (is_v4) {
    inet_ntop(AF_INET, bytes.data() + 12, buf, sizeof buf);
  } else {
    inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
  }
  return buf;
}

std::optional<cidr> cidr::parse(std::string_view text) {
  auto slash = text.find('/');
  auto addr = ip_address::parse(text.substr(0, slash));
  if (!addr) {
    return std::nullopt;
  }
  cidr c;
  c.net = *addr;
  unsigned max_len = addr->is_v4 ? 32 : 128;
  unsigned len = max_len;
  if (slash != std::string_view::npos) {
    auto digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3) {
      return std::nullopt;
    }
    len = 0;
    for (char ch : digits) {
      if (ch < '0' || ch > '9') {
        return std::nullopt;
      }
      len = len * 10 + static_cast<unsigned>(ch - '0');
    }
    if (len > max_len) {
      return std::nullopt;
    }
  }
  c.prefix = addr->is_v4 ? len + 96 : len;
  // Normalise: clear host bits so contains() compares whole bytes cheaply.
  for (unsigned bit = c.prefix; bit < 128; ++bit) {
    c.net.bytes[bit / 8] &= static_cast<std::uint8_t>(~(0x80u >> (bit % 8)));
  }
  return c;
}

bool cidr::contains(const ip_address& a) const {
  unsigned full = prefix / 8;
  if (std::memcmp(a.bytes.data(), net.bytes.data(), full) != 0) {
    return false;
  }
  unsigned rest = prefix % 8;
  if (rest == 0) {
    return true;
  }
  auto mask = static_cast<std::uint8_t>(0xff00u >> rest);
  return (a.bytes[full] & mask) == net.bytes[full];
}

const char* to_string(decision d) {
  switch (d) {
    case decision::allow:
      return "allow";
    case decision::deny:
      return "deny";
    case decision::ignore:
      return "ignore";
  }
  return "?";
}

const char* to_string(access_kind k) { return k == access_kind::publish ? "publish" : "subscribe"; }

}  // namespace tern::actors::access
