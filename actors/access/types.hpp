// Shared vocabulary of the access layer: who a client is, what it asks for, and decisions.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tern::actors::access {

/// An IPv4 or IPv6 address; IPv4 is kept as an IPv4-mapped IPv6 address (::ffff:a.b.c.d)
/// so one CIDR comparison serves both families.
struct ip_address {
  std::array<std::uint8_t, 16> bytes{};
  bool is_v4 = false;

  /// Parses "1.2.3.4", "::1", "[::1]" or a peer string "1.2.3.4:5678" / "[::1]:5678".
  static std::optional<ip_address> parse(std::string_view text);
  /// Like parse, but accepts a trailing ":port" (the form connections report their peer in).
  static std::optional<ip_address> from_peer(std::string_view peer);
  std::string to_string() const;
  bool operator==(const ip_address& o) const { return bytes == o.bytes; }
};

/// "a.b.c.d/len", "v6/len" or a bare address (a host route).
struct cidr {
  ip_address net;
  unsigned prefix = 128;  ///< in bits of the 128-bit (mapped) form

  static std::optional<cidr> parse(std::string_view text);
  bool contains(const ip_address& a) const;
};

/// What the access layer knows about a client when it decides.
struct client_info {
  std::string client_id;
  std::optional<std::string> username;
  std::optional<ip_address> address;  ///< none for clients without a network peer
  std::string peer;                   ///< "host:port", for logs
  /// Verified TLS client certificate of the connection: subject CN and first subject
  /// alternative name (both empty without a certificate).
  std::string cert_cn;
  std::string cert_san;
};

enum class access_kind : std::uint8_t { publish, subscribe };

/// A provider's or rule's answer. `ignore` (no opinion) passes to the next in a chain.
enum class decision : std::uint8_t { allow, deny, ignore };

const char* to_string(decision d);
const char* to_string(access_kind k);

}  // namespace tern::actors::access
