// A listener: one listening socket of kind tcp, ssl, ws or wss, a pool of concurrent accept
// operations, and the admission limits (max_connections, max_conn_rate) applied at accept.
//
// Accepted sockets are handed to an io_pool, which picks the I/O thread that will serve the
// connection and starts its actor. Created, started and stopped by the node; it must outlive
// the io_context it accepts on (the node stops that context before destroying listeners).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <variant>

#include <boost/asio/io_context.hpp>

#include "actors/broker/context.hpp"
#include "actors/config/config.hpp"

namespace tern::actors::connection {
class conn_io;
}

namespace tern::actors::listener {

/// The node's I/O threads, as listeners see them.
class io_pool {
 public:
  virtual ~io_pool() = default;
  /// The worker for the next connection.
  virtual std::size_t pick() = 0;
  virtual boost::asio::io_context& io_of(std::size_t worker) = 0;
  /// Registers the connection with its worker (timeouts, shutdown) and starts its actor.
  virtual void adopt(std::size_t worker, const std::shared_ptr<connection::conn_io>& io) = 0;
};

class listener {
 public:
  /// Binds lc.bind (without listening yet) and loads the TLS files of ssl/wss listeners.
  /// Returns an error message naming the listener when that fails.
  static std::variant<std::unique_ptr<listener>, std::string> open(
      boost::asio::io_context& accept_io, const config::listener_config& lc,
      broker::context_ptr ctx, io_pool& pool);

  ~listener();
  listener(const listener&) = delete;
  listener& operator=(const listener&) = delete;

  /// Listens and starts `acceptors` concurrent accept operations. The node binds every
  /// listener before any starts, so a client never finds one port open and another not yet.
  std::optional<std::string> start();
  /// Stops accepting (the close runs on the acceptor's thread). Open connections stay.
  void stop();

  /// Current open sockets of this listener.
  std::uint32_t active() const;

 private:
  struct impl;
  explicit listener(std::unique_ptr<impl> m);
  std::unique_ptr<impl> impl_;
};

}  // namespace tern::actors::listener
