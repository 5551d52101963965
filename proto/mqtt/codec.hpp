// MQTT wire codec: incremental decoder and exact encoder for 3.1, 3.1.1 and 5.0.
//
// The decoder never throws, never reads out of bounds, and never buffers more than the
// configured maximum packet size. Errors carry the MQTT 5 reason code a server would send
// (0x81 malformed, 0x82 protocol error, 0x95 packet too large, 0x84 unsupported version, ...)
// and a short human-readable detail for the log.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "proto/mqtt/packet.hpp"

namespace tern::proto::mqtt {

/// Default maximum packet size (whole packet: fixed header + remaining length).
inline constexpr std::uint32_t default_max_packet_size = 1024 * 1024;

struct decode_error {
  reason_code code = reason_code::malformed_packet;
  std::string detail;
  /// The packet that failed was a CONNECT; `connect_level` is the protocol level it named
  /// (0 when it was not read). The server answers such a CONNECT with a CONNACK.
  bool in_connect = false;
  std::uint8_t connect_level = 0;
  bool bad_protocol_name = false;  ///< CONNECT named neither "MQTT" nor "MQIsdp"
};

/// Result of decoding one packet from a contiguous buffer.
enum class decode_status : std::uint8_t {
  ok,         ///< a whole packet was decoded
  need_more,  ///< the buffer holds only part of a packet
  error,      ///< the input is not a valid packet; the connection must be closed
};

/// Decodes one packet from the start of `in`.
/// - `version`: the protocol of the connection; ignored for CONNECT, whose own protocol level
///   decides how it is parsed (a CONNECT with an unknown level fails with
///   unsupported_protocol_version).
/// - On ok, `out` holds the packet and `consumed` the number of bytes it took.
/// - On need_more nothing is written; `consumed` is 0.
/// - On error `err` says why; `out` is unspecified. A remaining length that would exceed
///   `max_packet_size` fails with packet_too_large as soon as the fixed header is readable.
decode_status decode_one(std::string_view in, protocol_version version,
                         std::uint32_t max_packet_size, packet& out, std::size_t& consumed,
                         decode_error& err);

/// Stateful, incremental decoder for one connection. Feed bytes as they arrive, split
/// anywhere; call next() until it returns need_more. After an error the decoder stays in the
/// error state.
class decoder {
 public:
  explicit decoder(std::uint32_t max_packet_size = default_max_packet_size,
                   protocol_version version = protocol_version::v3_1_1);

  /// Appends bytes to the pending input.
  void feed(std::string_view bytes);

  /// Decodes the next whole packet into `out`. A decoded CONNECT sets version() to its level.
  decode_status next(packet& out);

  const decode_error& error() const { return err_; }
  protocol_version version() const { return version_; }
  void set_version(protocol_version v) { version_ = v; }
  std::uint32_t max_packet_size() const { return max_; }
  void set_max_packet_size(std::uint32_t n) { max_ = n; }

  /// Bytes held for a packet not yet complete.
  std::size_t buffered() const { return buf_.size() - pos_; }
  /// Heap bytes the input buffer holds (0 while nothing is buffered after CONNECT).
  std::size_t heap_bytes() const {
    return buf_.capacity() > std::string().capacity() ? buf_.capacity() : 0;
  }

 private:
  std::string buf_;
  std::size_t pos_ = 0;
  std::uint32_t max_;
  protocol_version version_;
  bool failed_ = false;
  decode_error err_;
};

/// Appends the exact wire bytes of `p` for protocol `version` to `out`.
/// Fields that `version` cannot carry (v5 properties and reason codes under 3.1.1) are
/// omitted, as are properties the packet type may not carry. A CONNECT is encoded with its own
/// `version` field, mirroring decode_one. The caller must pass a packet that is valid for the
/// version; the encoder does not validate topics or strings.
void encode(const packet& p, protocol_version version, std::string& out);

/// Convenience: the wire bytes of `p`.
std::string encode(const packet& p, protocol_version version);

/// As encode(), for a peer whose Maximum Packet Size is `max` (0: none): an MQTT 5 packet
/// that would be larger goes without its Reason String and User Properties, which the
/// sender must drop rather than exceed the maximum [MQTT-3.1.2-24] [MQTT-3.1.2-25]
/// [MQTT-3.2.2-19] [MQTT-3.14.2-3]. Returns false when it is still too large (the caller
/// does not send it).
bool encode_within(const packet& p, protocol_version version, std::uint32_t max,
                   std::string& out);

}  // namespace tern::proto::mqtt
