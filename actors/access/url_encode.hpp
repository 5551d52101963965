// Percent-encoding for URL query values and path segments (RFC 3986 unreserved characters
// stay as they are). Header only: used by the HTTP auth provider and by broker-ctl.
#pragma once

#include <cctype>
#include <string>
#include <string_view>

namespace tern::actors::access {

inline std::string url_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace tern::actors::access
