// Transports: plain TCP (readiness-driven), TLS (asio::ssl), WebSocket and WebSocket over TLS
// (Boost.Beast).
#include "actors/listener/transport.hpp"

#include <array>

#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include "actors/connection/conn_io.hpp"
#include "actors/listener/handler_slot.hpp"
#include "actors/listener/tls.hpp"

namespace tern::actors::listener {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using asio::ip::tcp;
using boost::system::error_code;

// Reads per readiness event before yielding to other connections on this thread.
constexpr int max_reads_per_event = 16;
// Read buffer of the stream transports (TLS records carry at most 16 KB of data).
constexpr std::size_t stream_buffer_size = 16 * 1024;

std::string describe(const error_code& ec) {
  if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
    return "peer closed the connection";
  }
  if (ec == websocket::error::closed) {
    return "peer closed the WebSocket";
  }
  if (ec == asio::error::operation_aborted) {
    return "closed";
  }
  return ec.message();
}

void close_socket(tcp::socket& s) {
  error_code ec;
  s.shutdown(tcp::socket::shutdown_both, ec);
  s.close(ec);
}

/// Memory for the one operation a connection nearly always has pending: its wait for
/// readability. Without it Asio takes the operation from a per-thread cache of recycled
/// blocks, each as large as the largest operation the thread ran (an accept, ~190 B), and
/// an idle connection holds one of them. The wait operation with its handler is 136 B
/// (Boost 1.74, any_io_executor); a larger one falls back to the heap.
using op_slot = handler_slot<136, alignof(void*)>;

/// Plain TCP: wait for readability, drain into a per-thread buffer.
class tcp_transport final : public transport {
 public:
  explicit tcp_transport(tcp::socket s) : sock_(std::move(s)) {}

  const char* kind() const override { return "tcp"; }
  tcp::socket& socket() override { return sock_; }

  void handshake(const conn_io_ptr& io) override { io->on_handshake(""); }

  void read(const conn_io_ptr& io) override {
    sock_.async_wait(tcp::socket::wait_read, in(wait_slot_, [io, this](error_code ec) {
      if (ec) {
        io->on_read_error(describe(ec));
        return;
      }
      thread_local std::array<char, 65536> buf;
      for (int round = 0; round < max_reads_per_event; ++round) {
        error_code rec;
        auto n = sock_.read_some(asio::buffer(buf), rec);
        if (rec == asio::error::would_block || rec == asio::error::try_again) {
          break;
        }
        if (rec) {
          io->on_read_error(describe(rec));
          return;
        }
        if (!io->on_input(std::string_view(buf.data(), n)) || n < buf.size()) {
          break;
        }
      }
      io->after_input();
    }));
  }

  void write(const conn_io_ptr& io, const std::string& bytes) override {
    asio::async_write(sock_, asio::buffer(bytes),
                      [io](error_code ec, std::size_t n) { io->on_written(ec, n); });
  }

  void close() override { close_socket(sock_); }

 private:
  tcp::socket sock_;
  op_slot wait_slot_;  // Asio frees the operation before it runs the handler
};

using tls_stream = asio::ssl::stream<tcp::socket>;

/// TLS over TCP. The server side of the handshake; the client certificate is verified by
/// the context (verify = request | require).
class tls_transport final : public transport {
 public:
  tls_transport(tcp::socket s, asio::ssl::context& ctx) : stream_(std::move(s), ctx) {}

  const char* kind() const override { return "ssl"; }
  tcp::socket& socket() override { return stream_.next_layer(); }

  void handshake(const conn_io_ptr& io) override {
    stream_.async_handshake(asio::ssl::stream_base::server, [io, this](error_code ec) {
      if (ec) {
        io->on_handshake(ec.message());
        return;
      }
      cert_ = read_peer_cert(stream_.native_handle());
      buf_ = std::make_unique<char[]>(stream_buffer_size);
      io->on_handshake("");
    });
  }

  void read(const conn_io_ptr& io) override {
    stream_.async_read_some(asio::buffer(buf_.get(), stream_buffer_size),
                            [io, this](error_code ec, std::size_t n) {
                              if (ec) {
                                io->on_read_error(describe(ec));
                                return;
                              }
                              io->on_input(std::string_view(buf_.get(), n));
                              io->after_input();
                            });
  }

  void write(const conn_io_ptr& io, const std::string& bytes) override {
    asio::async_write(stream_, asio::buffer(bytes),
                      [io](error_code ec, std::size_t n) { io->on_written(ec, n); });
  }

  void close() override { close_socket(stream_.next_layer()); }

  peer_cert client_cert() const override { return cert_; }

 private:
  tls_stream stream_;
  std::unique_ptr<char[]> buf_;
  peer_cert cert_;
};

/// MQTT over WebSocket (RFC 6455, MQTT 5 section 6): an HTTP upgrade on the configured path
/// with subprotocol mqtt; then binary frames carry the MQTT byte stream, whatever the frame
/// boundaries. Over TCP (Next = tcp::socket) or TLS (Next = tls_stream).
template <class Next>
class ws_transport final : public transport {
 public:
  static constexpr bool is_tls = std::is_same_v<Next, tls_stream>;

  ws_transport(tcp::socket s, const ws_options& opts) : ws_(std::move(s)), opts_(opts) {}
  ws_transport(tcp::socket s, asio::ssl::context& ctx, const ws_options& opts)
      : ws_(std::move(s), ctx), opts_(opts) {}

  const char* kind() const override { return is_tls ? "wss" : "ws"; }
  tcp::socket& socket() override { return beast::get_lowest_layer(ws_); }

  void handshake(const conn_io_ptr& io) override {
    if constexpr (is_tls) {
      ws_.next_layer().async_handshake(asio::ssl::stream_base::server, [io, this](error_code ec) {
        if (ec) {
          io->on_handshake(ec.message());
          return;
        }
        cert_ = read_peer_cert(ws_.next_layer().native_handle());
        upgrade(io);
      });
    } else {
      upgrade(io);
    }
  }

  void read(const conn_io_ptr& io) override {
    ws_.async_read_some(asio::buffer(buf_.get(), stream_buffer_size),
                        [io, this](error_code ec, std::size_t n) {
                          if (ec) {
                            io->on_read_error(describe(ec));
                            return;
                          }
                          if (ws_.got_text()) {
                            // [MQTT-6.0.0-1] MQTT travels in binary frames only.
                            io->on_read_error("text WebSocket frame");
                            return;
                          }
                          io->on_input(std::string_view(buf_.get(), n));
                          io->after_input();
                        });
  }

  void write(const conn_io_ptr& io, const std::string& bytes) override {
    ws_.async_write(asio::buffer(bytes),
                    [io](error_code ec, std::size_t n) { io->on_written(ec, n); });
  }

  void close() override { close_socket(beast::get_lowest_layer(ws_)); }

  peer_cert client_cert() const override { return cert_; }

 private:
  struct upgrade_state {
    beast::flat_buffer buffer;
    http::request_parser<http::empty_body> parser;
    http::response<http::string_body> refusal;
  };

  void upgrade(const conn_io_ptr& io) {
    up_ = std::make_unique<upgrade_state>();
    up_->parser.header_limit(8 * 1024);
    http::async_read(ws_.next_layer(), up_->buffer, up_->parser,
                     [io, this](error_code ec, std::size_t) {
                       if (ec) {
                         io->on_handshake("HTTP request: " + describe(ec));
                         return;
                       }
                       on_request(io);
                     });
  }

  void on_request(const conn_io_ptr& io) {
    const auto& req = up_->parser.get();
    if (!websocket::is_upgrade(req)) {
      refuse(io, http::status::bad_request, "not a WebSocket upgrade request");
      return;
    }
    auto target = std::string(req.target());
    if (auto q = target.find('?'); q != std::string::npos) {
      target.resize(q);
    }
    if (target != opts_.path) {
      refuse(io, http::status::not_found, "path " + target + " (expected " + opts_.path + ")");
      return;
    }
    auto offered = req[http::field::sec_websocket_protocol];
    auto proto = choose_ws_subprotocol(std::string_view(offered.data(), offered.size()));
    if (!proto) {
      refuse(io, http::status::bad_request,
             "no MQTT WebSocket subprotocol offered (mqtt, mqttv3.1, mqttv5)");
      return;
    }
    ws_.set_option(
        websocket::stream_base::decorator([proto = *proto](websocket::response_type& res) {
          res.set(http::field::server, "tern");
          if (!proto.empty()) {
            res.set(http::field::sec_websocket_protocol, proto);
          }
        }));
    ws_.binary(true);
    ws_.auto_fragment(false);
    ws_.read_message_max(opts_.max_message);
    ws_.async_accept(req, [io, this](error_code ec) {
      up_.reset();
      if (ec) {
        io->on_handshake("WebSocket accept: " + describe(ec));
        return;
      }
      buf_ = std::make_unique<char[]>(stream_buffer_size);
      io->on_handshake("");
    });
  }

  void refuse(const conn_io_ptr& io, http::status status, std::string why) {
    auto& res = up_->refusal;
    res.result(status);
    res.version(11);
    res.set(http::field::server, "tern");
    res.set(http::field::connection, "close");
    res.set(http::field::content_type, "text/plain");
    res.body() = why + "\n";
    res.prepare_payload();
    http::async_write(ws_.next_layer(), res, [io, why](error_code, std::size_t) {
      io->on_handshake("WebSocket upgrade refused: " + why);
    });
  }

  websocket::stream<Next> ws_;
  const ws_options opts_;
  std::unique_ptr<upgrade_state> up_;  // only during the upgrade
  std::unique_ptr<char[]> buf_;
  peer_cert cert_;
};

std::string trim(std::string_view s) {
  auto b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) {
    return {};
  }
  auto e = s.find_last_not_of(" \t");
  return std::string(s.substr(b, e - b + 1));
}

}  // namespace

std::optional<std::string> choose_ws_subprotocol(std::string_view offered) {
  if (trim(offered).empty()) {
    return std::string();  // no header: accepted without a subprotocol
  }
  // [MQTT-6.0.0-4] "mqtt" whenever it is offered; the older names only for clients that
  // offer nothing else (emqttd answers them too).
  std::optional<std::string> legacy;
  std::size_t i = 0;
  while (i <= offered.size()) {
    auto j = offered.find(',', i);
    if (j == std::string_view::npos) {
      j = offered.size();
    }
    auto p = trim(offered.substr(i, j - i));
    if (p == "mqtt") {
      return p;
    }
    if (!legacy && (p == "mqttv3.1" || p == "mqttv5")) {
      legacy = p;
    }
    i = j + 1;
  }
  return legacy;
}

std::unique_ptr<transport> make_tcp_transport(tcp::socket s) {
  return std::make_unique<tcp_transport>(std::move(s));
}

std::unique_ptr<transport> make_tls_transport(tcp::socket s, asio::ssl::context& ctx) {
  return std::make_unique<tls_transport>(std::move(s), ctx);
}

std::unique_ptr<transport> make_ws_transport(tcp::socket s, const ws_options& opts) {
  return std::make_unique<ws_transport<tcp::socket>>(std::move(s), opts);
}

std::unique_ptr<transport> make_wss_transport(tcp::socket s, asio::ssl::context& ctx,
                                              const ws_options& opts) {
  return std::make_unique<ws_transport<tls_stream>>(std::move(s), ctx, opts);
}

}  // namespace tern::actors::listener
