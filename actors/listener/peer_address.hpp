// The address and port of a client connection, held in 20 bytes.
//
// Every connection keeps its peer's address for logs, the management API and access
// control. As text ("192.168.100.200:54321", "[2001:db8::1]:1883") it usually outgrows
// std::string's inline buffer and costs a heap block per connection; this keeps the bytes
// and formats the text when asked.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tern::actors::listener {

class peer_address {
 public:
  peer_address() = default;
  /// From an address in text form (dotted IPv4 or IPv6); empty (is_set() false) when it is
  /// neither.
  static peer_address from_ip(const std::string& ip, std::uint16_t port);
  /// From "a.b.c.d:port" or "[v6]:port", as to_string() writes it; nullopt otherwise.
  static std::optional<peer_address> parse(std::string_view text);

  bool is_set() const { return is_set_; }
  bool is_v6() const { return is_v6_; }
  std::uint16_t port() const { return port_; }
  /// "a.b.c.d:port", "[v6]:port", or "" when not set.
  std::string to_string() const;
  /// The address alone, without brackets or port ("" when not set).
  std::string ip() const;

  friend bool operator==(const peer_address& a, const peer_address& b) {
    return a.is_set_ == b.is_set_ && a.is_v6_ == b.is_v6_ && a.port_ == b.port_ &&
           a.bytes_ == b.bytes_;
  }

 private:
  std::array<std::uint8_t, 16> bytes_{};
  std::uint16_t port_ = 0;
  bool is_v6_ = false;
  bool is_set_ = false;
};

}  // namespace tern::actors::listener
