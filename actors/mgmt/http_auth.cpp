// Access to the management API: basic auth and bearer API keys.
#include "actors/mgmt/http_auth.hpp"

#include <cctype>

namespace tern::actors::mgmt {

namespace {

constexpr const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int sextet(char c) {
  if (c >= 'A' && c <= 'Z') {
    return c - 'A';
  }
  if (c >= 'a' && c <= 'z') {
    return c - 'a' + 26;
  }
  if (c >= '0' && c <= '9') {
    return c - '0' + 52;
  }
  if (c == '+') {
    return 62;
  }
  if (c == '/') {
    return 63;
  }
  return -1;
}

/// Compares without an early exit, so response time does not reveal a matching prefix.
bool same(std::string_view a, std::string_view b) {
  unsigned diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto other = i < b.size() ? static_cast<unsigned char>(b[i]) : 0u;
    diff |= static_cast<unsigned char>(a[i]) ^ other;
  }
  return diff == 0;
}

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) {
    return false;
  }
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) !=
        std::tolower(static_cast<unsigned char>(prefix[i]))) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::optional<std::string> base64_decode(std::string_view in) {
  while (!in.empty() && in.back() == '=') {
    in.remove_suffix(1);
  }
  if (in.size() % 4 == 1) {
    return std::nullopt;
  }
  std::string out;
  unsigned acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = sextet(c);
    if (v < 0) {
      return std::nullopt;
    }
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

std::string base64_encode(std::string_view in) {
  std::string out;
  unsigned acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += alphabet[(acc >> bits) & 63];
    }
  }
  if (bits > 0) {
    out += alphabet[(acc << (6 - bits)) & 63];
  }
  while (out.size() % 4 != 0) {
    out += '=';
  }
  return out;
}

auth_result check_authorization(std::string_view header, const config::http_config& cfg) {
  while (!header.empty() && header.front() == ' ') {
    header.remove_prefix(1);
  }
  if (header.empty()) {
    return auth_result::missing;
  }
  if (starts_with_ci(header, "basic ")) {
    auto decoded = base64_decode(header.substr(6));
    if (!decoded) {
      return auth_result::invalid;
    }
    bool ok = false;
    for (auto& u : cfg.users) {
      ok = same(*decoded, u) || ok;
    }
    return ok ? auth_result::ok : auth_result::invalid;
  }
  if (starts_with_ci(header, "bearer ")) {
    auto key = header.substr(7);
    bool ok = false;
    for (auto& k : cfg.api_keys) {
      ok = same(key, k) || ok;
    }
    return ok ? auth_result::ok : auth_result::invalid;
  }
  return auth_result::invalid;
}

bool uses_default_credential(const config::http_config& cfg) {
  for (auto& u : cfg.users) {
    if (u == "admin:public") {
      return true;
    }
  }
  return false;
}

}  // namespace tern::actors::mgmt
