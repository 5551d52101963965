// Peer address: binary form, text on demand.
#include "actors/listener/peer_address.hpp"

#include <arpa/inet.h>

#include <charconv>

namespace tern::actors::listener {

peer_address peer_address::from_ip(const std::string& ip, std::uint16_t port) {
  peer_address p;
  if (inet_pton(AF_INET, ip.c_str(), p.bytes_.data()) == 1) {
    p.is_v6_ = false;
  } else if (inet_pton(AF_INET6, ip.c_str(), p.bytes_.data()) == 1) {
    p.is_v6_ = true;
  } else {
    return {};
  }
  p.port_ = port;
  p.is_set_ = true;
  return p;
}

std::optional<peer_address> peer_address::parse(std::string_view text) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return std::nullopt;
  }
  auto addr = text.substr(0, colon);
  auto port_text = text.substr(colon + 1);
  bool bracketed = addr.size() >= 2 && addr.front() == '[' && addr.back() == ']';
  if (bracketed) {
    addr = addr.substr(1, addr.size() - 2);
  }
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || end != port_text.data() + port_text.size() || port > 65535 ||
      port_text.empty()) {
    return std::nullopt;
  }
  auto p = from_ip(std::string(addr), static_cast<std::uint16_t>(port));
  if (!p.is_set() || p.is_v6() != bracketed) {
    return std::nullopt;
  }
  return p;
}

std::string peer_address::ip() const {
  if (!is_set_) {
    return {};
  }
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(is_v6_ ? AF_INET6 : AF_INET, bytes_.data(), text, sizeof(text));
  return text;
}

std::string peer_address::to_string() const {
  if (!is_set_) {
    return {};
  }
  auto port = std::to_string(port_);
  return is_v6_ ? "[" + ip() + "]:" + port : ip() + ":" + port;
}

}  // namespace tern::actors::listener
