// Management service: io_context threads, HTTP server, $SYS timer.
#include "actors/mgmt/service.hpp"

#include <ctime>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "actors/mgmt/api.hpp"
#include "actors/mgmt/http_auth.hpp"
#include "actors/mgmt/http_server.hpp"
#include "actors/mgmt/metrics.hpp"
#include "actors/mgmt/presence.hpp"

namespace tern::actors::mgmt {

namespace asio = boost::asio;

namespace {

constexpr int http_threads = 2;

std::string local_datetime() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

}  // namespace

void publish_sys_round(broker::context& ctx, stats_tracker& stats) {
  auto prefix = sys_prefix(ctx);
  auto up = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() -
                                                             ctx.started_at);
  publish_sys(ctx, "$SYS/brokers", ctx.cfg.node_name, false);
  publish_sys(ctx, prefix + "version", version(), true);
  publish_sys(ctx, prefix + "sysdescr", "Tern MQTT broker", true);
  publish_sys(ctx, prefix + "uptime", format_uptime(up), false);
  publish_sys(ctx, prefix + "datetime", local_datetime(), false);
  for (auto& [name, value] : stats.read(ctx)) {
    publish_sys(ctx, prefix + "stats/" + name, std::to_string(value), false);
  }
  for (auto& [name, value] : emqttd_metrics(ctx)) {
    publish_sys(ctx, prefix + "metrics/" + name, std::to_string(value), false);
  }
}

struct service::impl {
  impl(caf::actor_system& s, broker::context_ptr c) : sys(s), ctx(std::move(c)) {}

  caf::actor_system& sys;
  broker::context_ptr ctx;
  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard;
  std::unique_ptr<api> handler;
  std::unique_ptr<http_server> server;
  std::unique_ptr<asio::steady_timer> sys_timer;
  std::vector<std::thread> threads;
  std::uint16_t port = 0;
  bool running = false;

  void arm_sys() {
    sys_timer->expires_after(ctx->cfg.sys.interval);
    sys_timer->async_wait([this](boost::system::error_code ec) {
      if (ec) {
        return;
      }
      tick();
      arm_sys();
    });
  }

  void tick() {
    try {
      publish_sys_round(*ctx, handler->stats());
    } catch (const std::exception& e) {
      spdlog::error("$SYS publish failed: {}", e.what());
    }
  }
};

service::service(caf::actor_system& sys, broker::context_ptr ctx)
    : impl_(std::make_unique<impl>(sys, std::move(ctx))) {}

service::~service() { stop(); }

std::optional<std::string> service::start() {
  auto& m = *impl_;
  const auto& hc = m.ctx->cfg.http;
  std::string endpoint = (hc.bind.find(':') != std::string::npos ? "[" + hc.bind + "]" : hc.bind);
  m.handler = std::make_unique<api>(
      m.sys, m.ctx, [] { return true; }, endpoint);
  if (hc.enabled) {
    m.server = std::make_unique<http_server>(m.io, *m.handler, hc);
    if (auto err = m.server->start()) {
      m.server.reset();
      return err;
    }
    m.port = m.server->port();
    spdlog::info("management API on {}://{}:{}", hc.tls_cert.empty() ? "http" : "https", endpoint,
                 m.port);
    if (uses_default_credential(hc)) {
      spdlog::warn(
          "management API accepts the default credential admin:public; change "
          "[http] users in the configuration");
    }
  }
  if (m.ctx->cfg.sys.interval.count() > 0) {
    m.sys_timer = std::make_unique<asio::steady_timer>(m.io);
    asio::post(m.io, [&m] { m.tick(); });
    m.arm_sys();
  }
  m.guard.emplace(m.io.get_executor());
  for (int i = 0; i < http_threads; ++i) {
    m.threads.emplace_back([&io = m.io] { io.run(); });
  }
  m.running = true;
  return std::nullopt;
}

void service::stop() {
  auto& m = *impl_;
  if (!m.running) {
    return;
  }
  m.running = false;
  // Open keep-alive connections would keep io.run() busy: stop the context outright (a
  // request being answered finishes first), then close the acceptor and the timer with no
  // thread running.
  m.guard.reset();
  m.io.stop();
  for (auto& t : m.threads) {
    t.join();
  }
  m.threads.clear();
  if (m.server) {
    m.server->stop();
  }
  if (m.sys_timer) {
    m.sys_timer->cancel();
  }
}

std::uint16_t service::http_port() const { return impl_->port; }

}  // namespace tern::actors::mgmt
