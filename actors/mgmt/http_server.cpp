// Management HTTP(S) server: Beast sessions in front of the API router.
#include "actors/mgmt/http_server.hpp"

#include <atomic>

#include <spdlog/spdlog.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/version.hpp>

#include "actors/mgmt/api.hpp"

namespace tern::actors::mgmt {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr std::size_t max_body = 1024 * 1024;
constexpr std::size_t max_connections = 256;
constexpr auto idle_timeout = std::chrono::seconds(60);

/// One HTTP connection; Stream is beast::tcp_stream or beast::ssl_stream<beast::tcp_stream>.
template <class Stream>
class session : public std::enable_shared_from_this<session<Stream>> {
 public:
  template <class... Args>
  session(api& handler, std::shared_ptr<std::atomic<std::size_t>> open, Args&&... args)
      : stream_(std::forward<Args>(args)...), handler_(handler), open_(std::move(open)) {
    ++*open_;
  }
  // The io_context may destroy a pending session after the server is gone: the counter is
  // shared, never a reference into the server.
  ~session() { --*open_; }

  void run() {
    auto self = this->shared_from_this();
    asio::dispatch(stream_.get_executor(), [self] { self->start(); });
  }

 private:
  void start() {
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      read();
    } else {
      beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(10));
      auto self = this->shared_from_this();
      stream_.async_handshake(asio::ssl::stream_base::server, [self](beast::error_code ec) {
        if (!ec) {
          self->read();
        }
      });
    }
  }

  void read() {
    parser_.emplace();
    parser_->body_limit(max_body);
    parser_->header_limit(16 * 1024);
    beast::get_lowest_layer(stream_).expires_after(idle_timeout);
    auto self = this->shared_from_this();
    http::async_read(stream_, buffer_, *parser_,
                     [self](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream) {
      close();
      return;
    }
    if (ec) {
      if (ec == http::error::body_limit || ec == http::error::header_limit) {
        http_response r;
        r.status = 413;
        r.body = R"({"error":"request too large"})";
        write(r, false, 11);
      }
      return;  // a broken or idle connection just ends
    }
    auto req = parser_->release();
    http_request in;
    in.method = std::string(req.method_string());
    in.target = std::string(req.target());
    in.body = std::move(req.body());
    if (auto it = req.find(http::field::authorization); it != req.end()) {
      in.authorization = std::string(it->value());
    }
    auto out = handler_.handle(in);
    if (in.method == "HEAD") {
      out.body.clear();
    }
    write(out, req.keep_alive(), req.version());
  }

  void write(const http_response& r, bool keep_alive, unsigned version) {
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(r.status), version);
    res->set(http::field::server, "tern");
    res->set(http::field::content_type, r.content_type);
    for (auto& [k, v] : r.headers) {
      res->set(k, v);
    }
    res->keep_alive(keep_alive);
    res->body() = r.body;
    res->prepare_payload();
    auto self = this->shared_from_this();
    http::async_write(stream_, *res, [self, res](beast::error_code ec, std::size_t) {
      if (ec) {
        return;
      }
      if (res->keep_alive()) {
        self->read();
      } else {
        self->close();
      }
    });
  }

  void close() {
    beast::error_code ec;
    beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  api& handler_;
  std::shared_ptr<std::atomic<std::size_t>> open_;
};

}  // namespace

struct http_server::impl {
  impl(asio::io_context& io, api& h, const config::http_config& c)
      : io(io), handler(h), cfg(c), acceptor(asio::make_strand(io)) {}

  asio::io_context& io;
  api& handler;
  const config::http_config& cfg;
  tcp::acceptor acceptor;
  std::unique_ptr<asio::ssl::context> tls;
  std::shared_ptr<std::atomic<std::size_t>> open = std::make_shared<std::atomic<std::size_t>>(0);
  std::uint16_t bound_port = 0;

  void accept() {
    acceptor.async_accept(asio::make_strand(io), [this](beast::error_code ec, tcp::socket s) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) {
        return;
      }
      if (!ec) {
        if (open->load() >= max_connections) {
          spdlog::warn("management: {} HTTP connections open, refusing one", max_connections);
        } else if (tls) {
          std::make_shared<session<beast::ssl_stream<beast::tcp_stream>>>(handler, open,
                                                                          std::move(s), *tls)
              ->run();
        } else {
          std::make_shared<session<beast::tcp_stream>>(handler, open, std::move(s))->run();
        }
      }
      accept();
    });
  }
};

http_server::http_server(asio::io_context& io, api& handler, const config::http_config& cfg)
    : impl_(std::make_unique<impl>(io, handler, cfg)) {}

http_server::~http_server() = default;

std::optional<std::string> http_server::start() {
  auto& m = *impl_;
  if (!m.cfg.tls_cert.empty()) {
    m.tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    m.tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1);
    boost::system::error_code ec;
    m.tls->use_certificate_chain_file(m.cfg.tls_cert, ec);
    if (ec) {
      return "http: cannot load tls_cert " + m.cfg.tls_cert + ": " + ec.message();
    }
    m.tls->use_private_key_file(m.cfg.tls_key, asio::ssl::context::pem, ec);
    if (ec) {
      return "http: cannot load tls_key " + m.cfg.tls_key + ": " + ec.message();
    }
  }
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(m.cfg.bind, ec);
  if (ec) {
    return "http: bad bind address " + m.cfg.bind;
  }
  tcp::endpoint ep{addr, m.cfg.port};
  m.acceptor.open(ep.protocol(), ec);
  if (!ec) {
    m.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  }
  if (!ec) {
    m.acceptor.bind(ep, ec);
  }
  if (!ec) {
    m.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    boost::system::error_code ignored;
    m.acceptor.close(ignored);
    return "http: cannot listen on " + m.cfg.bind + ":" + std::to_string(m.cfg.port) + ": " +
           ec.message();
  }
  m.bound_port = m.acceptor.local_endpoint().port();
  m.accept();
  return std::nullopt;
}

std::uint16_t http_server::port() const { return impl_->bound_port; }

void http_server::stop() {
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
}

}  // namespace tern::actors::mgmt
