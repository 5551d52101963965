// Small wrappers over OpenSSL used by the password file and SCRAM: base64, HMAC, PBKDF2.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tern::actors::access::crypto {

std::string base64_encode(std::string_view bytes);
/// Strict: nullopt on characters outside the alphabet or a bad length.
std::optional<std::string> base64_decode(std::string_view text);

std::string random_bytes(std::size_t n);
std::string sha256(std::string_view data);
std::string sha512(std::string_view data);
std::string hmac_sha256(std::string_view key, std::string_view data);
/// PBKDF2 with HMAC-SHA-256 or HMAC-SHA-512 (`sha512`), `len` bytes of output.
std::string pbkdf2(std::string_view password, std::string_view salt, std::uint32_t iterations,
                   bool sha512, std::size_t len);
/// Comparison whose time does not depend on where the inputs differ.
bool equal_ct(std::string_view a, std::string_view b);

}  // namespace tern::actors::access::crypto
