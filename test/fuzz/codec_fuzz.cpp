// codec_fuzz.cpp: libFuzzer target for the MQTT codec: decode, re-encode, decode, compare.
//
// For each protocol version the input goes to a decoder, once whole and once in small chunks.
// Both must yield the same packets and end the same way, and every decoded packet must
// survive decode(encode(p)) == p with encode(p) a fixed point. Any mismatch aborts.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "proto/mqtt/codec.hpp"
#include "proto/mqtt/packet.hpp"

namespace {

using namespace tern::proto::mqtt;

// Small enough that the fuzzer reaches packet_too_large, large enough for real packets.
constexpr std::uint32_t fuzz_max_packet_size = 2048;

[[noreturn]] void fail(const char* what, protocol_version v, const packet& p,
                       const std::string& bytes, const decode_error& err) {
  std::fprintf(stderr, "codec_fuzz: %s (v%d, %s, %zu encoded bytes, error 0x%02x %s)\n", what,
               static_cast<int>(v), to_string(type_of(p)), bytes.size(),
               static_cast<unsigned>(err.code), err.detail.c_str());
  for (const char c : bytes) {
    std::fprintf(stderr, "%02x ", static_cast<unsigned>(static_cast<unsigned char>(c)));
  }
  std::fprintf(stderr, "\n");
  std::abort();
}

void check_round_trip(const packet& p, protocol_version v) {
  const std::string bytes = encode(p, v);
  packet again;
  std::size_t consumed = 0;
  decode_error err;
  // Re-encoding never grows a packet, but allow any size so the check is about content only.
  if (decode_one(bytes, v, UINT32_MAX, again, consumed, err) != decode_status::ok) {
    fail("re-encoded packet does not decode", v, p, bytes, err);
  }
  if (consumed != bytes.size()) {
    fail("re-encoded packet decodes to a different length", v, p, bytes, err);
  }
  if (!(again == p)) {
    fail("decode(encode(p)) != p", v, p, bytes, err);
  }
  if (encode(again, v) != bytes) {
    fail("encode is not a fixed point", v, p, bytes, err);
  }
}

struct run {
  std::vector<packet> packets;
  decode_status last = decode_status::need_more;
  reason_code code = reason_code::success;
};

run decode_in_chunks(std::string_view input, protocol_version v, std::size_t chunk) {
  decoder d(fuzz_max_packet_size, v);
  run r;
  packet p;
  for (std::size_t pos = 0; pos < input.size(); pos += chunk) {
    d.feed(input.substr(pos, chunk));
    while ((r.last = d.next(p)) == decode_status::ok) {
      check_round_trip(p, d.version());
      r.packets.push_back(p);
    }
    if (r.last == decode_status::error) {
      r.code = d.error().code;
      break;
    }
  }
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t chunk = size == 0 ? 1 : 1 + data[0] % 13;
  for (const auto v : {protocol_version::v3_1, protocol_version::v3_1_1, protocol_version::v5}) {
    const run whole = decode_in_chunks(input, v, input.empty() ? 1 : input.size());
    const run pieces = decode_in_chunks(input, v, chunk);
    if (whole.packets != pieces.packets || whole.last != pieces.last || whole.code != pieces.code) {
      std::fprintf(stderr, "codec_fuzz: chunked feed (chunk %zu) differs: %zu vs %zu packets\n",
                   chunk, whole.packets.size(), pieces.packets.size());
      std::abort();
    }
  }
  return 0;
}
