// The management HTTP(S) server on Boost.Beast: accepts on [http] bind:port, parses
// requests, hands them to `api`, writes the responses. Keep-alive, bounded request size,
// idle timeout, optional TLS. Runs on the io_context it is given.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>

#include "actors/config/config.hpp"

namespace tern::actors::mgmt {

class api;

class http_server {
 public:
  http_server(boost::asio::io_context& io, api& handler, const config::http_config& cfg);
  ~http_server();
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  /// Binds and starts accepting. Returns an error message (bad address, port in use, TLS
  /// files unreadable) and accepts nothing when it fails.
  std::optional<std::string> start();
  /// The bound port (useful when the configured port is 0).
  std::uint16_t port() const;
  /// Stops accepting. Call it when the io_context no longer runs (or from its thread); open
  /// connections end when the io_context stops and is destroyed.
  void stop();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace tern::actors::mgmt
