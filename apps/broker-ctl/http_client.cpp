// broker-ctl's HTTP client: Beast over TCP or TLS, synchronous, with a deadline.
#include "apps/broker-ctl/http_client.hpp"

#include <openssl/ssl.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

namespace tern::ctl {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

template <class Stream>
std::variant<reply, std::string> exchange(Stream& stream, asio::io_context& io,
                                          http::request<http::string_body>& req,
                                          std::chrono::seconds timeout) {
  // Run the asynchronous operations with a deadline, so a stuck node cannot hang the CLI.
  beast::error_code result;
  http::response<http::string_body> res;
  beast::flat_buffer buffer;
  beast::get_lowest_layer(stream).expires_after(timeout);
  http::async_write(stream, req, [&](beast::error_code ec, std::size_t) {
    if (ec) {
      result = ec;
      return;
    }
    http::async_read(stream, buffer, res,
                     [&](beast::error_code ec2, std::size_t) { result = ec2; });
  });
  io.run();
  if (result) {
    return "request failed: " + result.message();
  }
  return reply{res.result_int(), std::move(res.body())};
}

}  // namespace

std::variant<reply, std::string> request(const endpoint& ep, const std::string& method,
                                         const std::string& target, const std::string& body,
                                         const std::string& authorization) {
  asio::io_context io;
  beast::error_code ec;
  tcp::resolver resolver{io};
  auto results = resolver.resolve(ep.host, ep.port, ec);
  if (ec) {
    return "cannot resolve " + ep.host + ":" + ep.port + ": " + ec.message();
  }
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, ep.host + ":" + ep.port);
  req.set(http::field::user_agent, "broker-ctl");
  req.set(http::field::accept, "application/json");
  if (!authorization.empty()) {
    req.set(http::field::authorization, authorization);
  }
  if (!body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = body;
  }
  req.keep_alive(false);
  req.prepare_payload();

  if (!ep.tls) {
    beast::tcp_stream stream{io};
    stream.expires_after(ep.timeout);
    stream.connect(results, ec);
    if (ec) {
      return "cannot connect to " + ep.host + ":" + ep.port + ": " + ec.message();
    }
    return exchange(stream, io, req, ep.timeout);
  }
  asio::ssl::context tls{asio::ssl::context::tls_client};
  if (ep.verify) {
    tls.set_verify_mode(asio::ssl::verify_peer);
    if (!ep.ca_file.empty()) {
      tls.load_verify_file(ep.ca_file, ec);
      if (ec) {
        return "cannot load CA file " + ep.ca_file + ": " + ec.message();
      }
    } else {
      tls.set_default_verify_paths(ec);
    }
  } else {
    tls.set_verify_mode(asio::ssl::verify_none);
  }
  beast::ssl_stream<beast::tcp_stream> stream{io, tls};
  SSL_set_tlsext_host_name(stream.native_handle(), ep.host.c_str());
  beast::get_lowest_layer(stream).expires_after(ep.timeout);
  beast::get_lowest_layer(stream).connect(results, ec);
  if (ec) {
    return "cannot connect to " + ep.host + ":" + ep.port + ": " + ec.message();
  }
  stream.handshake(asio::ssl::stream_base::client, ec);
  if (ec) {
    return "TLS handshake with " + ep.host + ":" + ep.port + " failed: " + ec.message();
  }
  return exchange(stream, io, req, ep.timeout);
}

}  // namespace tern::ctl
