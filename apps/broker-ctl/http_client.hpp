// A small blocking HTTP/1.1 client (Boost.Beast) for broker-ctl: one request per connection.
#pragma once

#include <chrono>
#include <string>
#include <variant>

#include "actors/access/url_encode.hpp"

namespace tern::ctl {

struct endpoint {
  std::string host = "127.0.0.1";
  std::string port = "18083";
  bool tls = false;
  bool verify = true;   ///< verify the server certificate (TLS)
  std::string ca_file;  ///< extra trusted CA (PEM); "" = system store
  std::chrono::seconds timeout{10};
};

struct reply {
  unsigned status = 0;
  std::string body;
};

/// Performs one request. Returns the reply, or a message saying why there is none
/// (cannot resolve/connect, TLS failure, timeout, malformed response).
std::variant<reply, std::string> request(const endpoint& ep, const std::string& method,
                                         const std::string& target, const std::string& body,
                                         const std::string& authorization);

/// Percent-encodes a path segment or query value.
using actors::access::url_encode;

}  // namespace tern::ctl
