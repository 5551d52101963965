// Listener: bind, accept pool, admission limits, and the transport for each accepted socket.
#include "actors/listener/listener.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "actors/connection/conn_io.hpp"
#include "actors/listener/listener_state.hpp"
#include "actors/listener/rate_limit.hpp"
#include "actors/listener/tls.hpp"
#include "actors/listener/transport.hpp"

namespace tern::actors::listener {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

struct listener::impl {
  impl(asio::io_context& io, const config::listener_config& lc, broker::context_ptr ctx, io_pool& p)
      : acceptor(io),
        retry_timer(io),
        state(std::make_shared<listener_state>(lc, std::move(ctx))),
        pool(p),
        conn_rate(lc.max_conn_rate, lc.max_conn_rate, token_bucket::clock::now()) {}

  tcp::acceptor acceptor;
  asio::steady_timer retry_timer;
  std::shared_ptr<listener_state> state;
  io_pool& pool;
  std::shared_ptr<asio::ssl::context> tls;
  ws_options ws;
  // Accept completions all run on the acceptor's thread: no lock needed.
  token_bucket conn_rate;
  bool is_stopped = false;

  const config::listener_config& cfg() const { return state->cfg; }

  void accept_one() {
    if (is_stopped) {
      return;
    }
    auto worker = pool.pick();
    acceptor.async_accept(pool.io_of(worker), [this, worker](error_code ec, tcp::socket s) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open() || is_stopped) {
        return;
      }
      if (ec) {
        // Out of descriptors and the like: retry a little later instead of spinning.
        spdlog::warn("listener {}: accept failed: {}", state->id, ec.message());
        retry_timer.expires_after(std::chrono::milliseconds(100));
        retry_timer.async_wait([this](error_code e) {
          if (!e) {
            accept_one();
          }
        });
        return;
      }
      on_accept(worker, std::move(s));
      accept_one();
    });
  }

  void refuse(tcp::socket& s, std::atomic<std::uint64_t>& counter, const char* why) {
    counter.fetch_add(1, std::memory_order_relaxed);
    std::uint64_t suppressed = 0;
    if (state->may_log(suppressed)) {
      error_code ec;
      auto ep = s.remote_endpoint(ec);
      spdlog::warn("listener {}: {}, refusing a connection from {}{}", state->id, why,
                   ec ? std::string("?") : ep.address().to_string(),
                   suppressed ? " (" + std::to_string(suppressed) + " more refused before)" : "");
    }
    error_code ec;
    s.close(ec);
  }

  void on_accept(std::size_t worker, tcp::socket s) {
    auto& ctx = *state->ctx;
    if (state->active.load(std::memory_order_relaxed) >= cfg().max_connections) {
      auto why = "max_connections (" + std::to_string(cfg().max_connections) + ") reached";
      refuse(s, ctx.stats.refused_max_connections, why.c_str());
      return;
    }
    if (!conn_rate.try_take(token_bucket::clock::now())) {
      auto why = "max_conn_rate (" + std::to_string(cfg().max_conn_rate) + "/s) exceeded";
      refuse(s, ctx.stats.refused_conn_rate, why.c_str());
      return;
    }
    std::unique_ptr<transport> t;
    const auto& kind = cfg().kind;
    if (kind == "ssl") {
      t = make_tls_transport(std::move(s), *tls);
    } else if (kind == "ws") {
      t = make_ws_transport(std::move(s), ws);
    } else if (kind == "wss") {
      t = make_wss_transport(std::move(s), *tls, ws);
    } else {
      t = make_tcp_transport(std::move(s));
    }
    state->active.fetch_add(1, std::memory_order_relaxed);
    ctx.stats.connections_total.fetch_add(1, std::memory_order_relaxed);
    auto io = std::make_shared<connection::conn_io>(std::move(t), ctx.cfg.mqtt.max_packet_size,
                                                    ctx.cfg.session.max_send_buffer,
                                                    ctx.next_conn_id.fetch_add(1), state);
    io->set_counters(&ctx.stats);
    pool.adopt(worker, io);
  }
};

listener::listener(std::unique_ptr<impl> m) : impl_(std::move(m)) {}

listener::~listener() = default;

std::variant<std::unique_ptr<listener>, std::string> listener::open(
    asio::io_context& accept_io, const config::listener_config& lc, broker::context_ptr ctx,
    io_pool& pool) {
  auto id = lc.kind + "." + lc.name;
  auto m = std::make_unique<impl>(accept_io, lc, std::move(ctx), pool);
  if (lc.is_tls()) {
    auto made = make_tls_context(lc);
    if (auto* err = std::get_if<std::string>(&made)) {
      return *err;
    }
    m->tls = std::get<0>(std::move(made));
  }
  m->ws.path = lc.path;
  // One WebSocket message may carry a whole MQTT packet of the largest allowed size.
  m->ws.max_message =
      std::max<std::size_t>(m->ws.max_message, m->state->ctx->cfg.mqtt.max_packet_size + 16);
  auto hp = config::split_host_port(lc.bind);
  if (!hp) {
    return "listener " + id + ": bad bind address " + lc.bind;
  }
  error_code ec;
  auto addr = asio::ip::make_address(hp->first, ec);
  if (ec) {
    return "listener " + id + ": bad address " + hp->first;
  }
  tcp::endpoint ep{addr, hp->second};
  auto& acc = m->acceptor;
  acc.open(ep.protocol(), ec);
  if (!ec) {
    acc.set_option(asio::socket_base::reuse_address(true), ec);
  }
  if (!ec && addr.is_v6()) {
    // An IPv6 listener serves IPv6 only; list an IPv4 listener beside it for both.
    acc.set_option(asio::ip::v6_only(true), ec);
  }
  if (!ec) {
    acc.bind(ep, ec);
  }
  if (ec) {
    return "listener " + id + ": cannot bind " + lc.bind + ": " + ec.message();
  }
  return std::unique_ptr<listener>(new listener(std::move(m)));
}

std::optional<std::string> listener::start() {
  auto* m = impl_.get();
  const auto& lc = m->cfg();
  error_code ec;
  m->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return "listener " + m->state->id + ": cannot listen on " + lc.bind + ": " + ec.message();
  }
  spdlog::info("listener {} (mqtt/{}{}) on {}{}", m->state->id, lc.kind,
               lc.is_ws() ? " path " + lc.path : std::string(), lc.bind,
               lc.proxy_protocol ? ", PROXY protocol" : "");
  asio::post(m->acceptor.get_executor(), [m] {
    for (std::uint32_t i = 0; i < m->cfg().acceptors; ++i) {
      m->accept_one();
    }
  });
  return std::nullopt;
}

void listener::stop() {
  auto* m = impl_.get();
  asio::post(m->acceptor.get_executor(), [m] {
    m->is_stopped = true;
    error_code ec;
    m->acceptor.close(ec);
    m->retry_timer.cancel();
  });
}

std::uint32_t listener::active() const { return impl_->state->active.load(); }

}  // namespace tern::actors::listener
