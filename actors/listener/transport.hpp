// Transports under a client connection: plain TCP, TLS, WebSocket and WebSocket over TLS,
// behind one interface that conn_io drives.
//
// Every call happens on the connection's I/O thread, and every completion calls back into
// the conn_io that was passed in (which the completion keeps alive). Plain TCP keeps the
// memory-lean path: it waits for readability and reads into a per-thread buffer, so an idle
// connection holds no read buffer. The stream transports (TLS via asio::ssl, WebSocket via
// Boost.Beast) read into a per-connection buffer allocated when the handshake is done.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>

namespace boost::asio::ssl {
class context;
}

namespace tern::actors::connection {
class conn_io;
}

namespace tern::actors::listener {

using conn_io_ptr = std::shared_ptr<connection::conn_io>;

/// The identity in a verified TLS client certificate.
struct peer_cert {
  bool is_present = false;
  std::string cn;   ///< subject common name
  std::string san;  ///< first DNS, e-mail or URI subject alternative name
};

class transport {
 public:
  virtual ~transport() = default;

  /// "tcp", "ssl", "ws" or "wss".
  virtual const char* kind() const = 0;

  /// The TCP socket at the bottom (peer address, PROXY header, close).
  virtual boost::asio::ip::tcp::socket& socket() = 0;

  /// Runs the transport's own handshake (TLS, HTTP upgrade), then calls
  /// io->on_handshake("") or io->on_handshake(reason) when it failed.
  virtual void handshake(const conn_io_ptr& io) = 0;

  /// Waits for input once: hands what arrives to io->on_input() (possibly several times),
  /// then calls io->after_input(); on an error or end of stream calls io->on_read_error().
  virtual void read(const conn_io_ptr& io) = 0;

  /// Writes all of `bytes` (which stays valid until the completion), then calls
  /// io->on_written(ec, n). At most one write is outstanding.
  virtual void write(const conn_io_ptr& io, const std::string& bytes) = 0;

  /// Closes the socket at once; outstanding operations complete with an error.
  virtual void close() = 0;

  /// The client certificate, after a TLS handshake with verify = request or require.
  virtual peer_cert client_cert() const { return {}; }
};

/// Options of the WebSocket upgrade.
struct ws_options {
  std::string path = "/mqtt";
  std::size_t max_message = 16 * 1024 * 1024;
};

std::unique_ptr<transport> make_tcp_transport(boost::asio::ip::tcp::socket s);
std::unique_ptr<transport> make_tls_transport(boost::asio::ip::tcp::socket s,
                                              boost::asio::ssl::context& ctx);
std::unique_ptr<transport> make_ws_transport(boost::asio::ip::tcp::socket s,
                                             const ws_options& opts);
std::unique_ptr<transport> make_wss_transport(boost::asio::ip::tcp::socket s,
                                              boost::asio::ssl::context& ctx,
                                              const ws_options& opts);

/// Picks the MQTT WebSocket subprotocol to answer from a Sec-WebSocket-Protocol header:
/// "mqtt" when offered, else the first of mqttv3.1, mqttv5 offered; "" when the header is
/// empty (accepted without a subprotocol); nullopt when it offers only protocols we do not
/// speak (refused).
std::optional<std::string> choose_ws_subprotocol(std::string_view offered);

}  // namespace tern::actors::listener
