// Node assembly: actor system, router and session manager, I/O pool, listeners, shutdown.
#include "actors/broker/node.hpp"

#include <list>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include "actors/access/engine.hpp"
#include "actors/bridge/bridge.hpp"
#include "actors/bridge/rules.hpp"
#include "actors/broker/context.hpp"
#include "actors/session/backlog.hpp"
#include "actors/broker/types.hpp"
#include "actors/connection/conn_io.hpp"
#include "actors/connection/connection.hpp"
#include "actors/listener/listener.hpp"
#include "actors/session/session_manager.hpp"
#include "cluster/cluster.hpp"
#include "supervision/supervisor.hpp"

namespace tern::actors::broker {

namespace {

namespace asio = boost::asio;

/// The route table's single writer.
caf::behavior router_impl(caf::event_based_actor*, context_ptr ctx) {
  return {
      // The cluster replicates subscription keys: a plain filter, or a shared group
      // ("$share/g/f") as its own key, so a node whose only subscribers to a filter are
      // group members is still found, and a group is known next to a plain filter.
      [=](add_route_atom, route_adds& adds, const caf::actor& s, const flow::backlog_ptr& b) {
        for (auto& [filter, opts] : adds) {
          bool had = ctx->route_changed && ctx->routes.has_key(filter);
          ctx->routes.add(filter, session_ref{s, b}, opts);
          if (ctx->route_changed && !had && ctx->routes.has_key(filter)) {
            ctx->route_changed(filter, true);
          }
        }
        return true;
      },
      [=](del_route_atom, std::vector<std::string>& filters, const caf::actor& s) {
        for (auto& f : filters) {
          bool had = ctx->route_changed && ctx->routes.has_key(f);
          ctx->routes.remove(f, s);
          if (had && !ctx->routes.has_key(f)) {
            ctx->route_changed(f, false);
          }
        }
        return true;
      },
  };
}

/// How long a shutdown waits for connections to flush their DISCONNECT.
constexpr auto shutdown_grace = std::chrono::milliseconds(1000);

/// What MQTT 5 clients are sent when the node shuts down: 0x9C (use another server) with the
/// Server Reference when one is configured, 0x8B (server shutting down) otherwise.
std::string shutdown_disconnect(const config::mqtt5_config& c) {
  proto::mqtt::disconnect d;
  if (c.server_reference.empty()) {
    d.reason = static_cast<std::uint8_t>(proto::mqtt::reason_code::server_shutting_down);
  } else {
    d.reason = static_cast<std::uint8_t>(proto::mqtt::reason_code::use_another_server);
    d.props.server_reference = c.server_reference;
  }
  std::string bytes;
  proto::mqtt::encode(d, proto::mqtt::protocol_version::v5, bytes);
  return bytes;
}

/// One I/O thread with its io_context and the connections it serves. A one-second sweep
/// enforces CONNECT timeouts and keepalive for all of them: one timer per thread instead of
/// one per connection.
struct io_worker {
  asio::io_context io{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
  asio::steady_timer sweep_timer{io};
  std::mutex mtx;
  std::vector<std::weak_ptr<connection::conn_io>> conns;
  std::thread thread;

  void add(const std::shared_ptr<connection::conn_io>& c) {
    std::lock_guard lock{mtx};
    conns.push_back(c);
  }

  void sweep() {
    auto now = connection::conn_io::clock::now();
    std::lock_guard lock{mtx};
    for (std::size_t i = 0; i < conns.size();) {
      if (auto c = conns[i].lock(); c && !c->is_closed()) {
        c->check_deadline(now);
        ++i;
      } else {
        conns[i] = std::move(conns.back());
        conns.pop_back();
      }
    }
  }

  void arm() {
    sweep_timer.expires_after(std::chrono::seconds(1));
    sweep_timer.async_wait([this](boost::system::error_code ec) {
      if (!ec) {
        sweep();
        arm();
      }
    });
  }

  void close_all(const std::string& why) {
    std::lock_guard lock{mtx};
    for (auto& w : conns) {
      if (auto c = w.lock()) {
        c->close(why, false);
      }
    }
  }

  /// Shutdown: MQTT 5 clients get `v5_disconnect`; every connection closes once flushed.
  void say_goodbye(const std::string& v5_disconnect) {
    std::lock_guard lock{mtx};
    for (auto& w : conns) {
      if (auto c = w.lock()) {
        c->close_for_shutdown(v5_disconnect);
      }
    }
  }

  std::size_t open_count() {
    std::lock_guard lock{mtx};
    std::size_t n = 0;
    for (auto& w : conns) {
      auto c = w.lock();
      n += c && !c->is_closed() ? 1 : 0;
    }
    return n;
  }
};

}  // namespace

struct node::impl : listener::io_pool {
  explicit impl(config::config c) : ctx(std::make_shared<context>(std::move(c))) {
    flow::set_budget(static_cast<std::int64_t>(ctx->cfg.flow.max_buffered_mb) << 20);
  }

  context_ptr ctx;
  std::unique_ptr<caf::actor_system_config> sys_cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::actor root;  // the node's root supervisor
  cluster::node_cluster cluster;  // membership, route replication, forwarding
  std::vector<std::unique_ptr<io_worker>> workers;
  std::vector<std::unique_ptr<listener::listener>> listeners;
  std::shared_ptr<bridge::link_set> bridge_links;  // sockets of this node's bridges
  std::atomic<std::size_t> next_worker{0};
  bool running = false;

  // io_pool: connections are spread over the I/O threads round-robin.
  std::size_t pick() override { return next_worker.fetch_add(1) % workers.size(); }
  asio::io_context& io_of(std::size_t w) override { return workers[w]->io; }
  void adopt(std::size_t w, const std::shared_ptr<connection::conn_io>& io) override {
    workers[w]->add(io);
    connection::start_connection(*sys, ctx, io);
  }

  std::optional<std::string> open_listener(const config::listener_config& lc) {
    auto opened = listener::listener::open(workers.front()->io, lc, ctx, *this);
    if (auto* err = std::get_if<std::string>(&opened)) {
      return *err;
    }
    listeners.push_back(std::get<0>(std::move(opened)));
    return std::nullopt;
  }
};

namespace {

/// Passes [scheduler] to CAF (work-stealing.* is read by each worker when it starts).
void configure_scheduler(caf::actor_system_config& sc, const config::scheduler_config& c) {
  sc.set("scheduler.policy", c.policy == "sharing" ? caf::atom("sharing") : caf::atom("stealing"));
  if (c.max_throughput > 0) {
    sc.set("scheduler.max-throughput", static_cast<std::size_t>(c.max_throughput));
  }
  sc.set("work-stealing.aggressive-poll-attempts",
         static_cast<std::size_t>(c.aggressive_poll_attempts));
  sc.set("work-stealing.aggressive-steal-interval",
         static_cast<std::size_t>(c.aggressive_steal_interval));
  sc.set("work-stealing.moderate-poll-attempts",
         static_cast<std::size_t>(c.moderate_poll_attempts));
  sc.set("work-stealing.moderate-steal-interval",
         static_cast<std::size_t>(c.moderate_steal_interval));
  sc.set("work-stealing.moderate-sleep-duration",
         caf::timespan{std::chrono::microseconds(c.moderate_sleep_us)});
  sc.set("work-stealing.relaxed-steal-interval",
         static_cast<std::size_t>(c.relaxed_steal_interval));
  sc.set("work-stealing.relaxed-sleep-duration",
         caf::timespan{std::chrono::microseconds(c.relaxed_sleep_us)});
}

}  // namespace

node::node(config::config cfg) : impl_(std::make_unique<impl>(std::move(cfg))) {}

node::~node() {
  stop();
}

std::optional<std::string> node::start() {
  auto& m = *impl_;
  const auto& cfg = m.ctx->cfg;
  auto node_access = access::setup(cfg);  // authentication, ACL, hooks
  if (auto* err = std::get_if<std::string>(&node_access)) {
    return *err;
  }
  m.ctx->hooks = std::get<0>(node_access).hooks;
  m.ctx->access = std::get<0>(node_access).engine;
  auto mode = cfg.store.durability == "sync"   ? store::durability::sync
              : cfg.store.durability == "none" ? store::durability::none
                                               : store::durability::batch;
  std::variant<std::unique_ptr<store::store>, std::string> opened;
  try {
    opened = store::store::open(cfg.data_dir, mode,
                                std::uint64_t{cfg.store.min_free_mb} * 1024 * 1024);
  } catch (const std::exception& e) {
    return std::string("cannot open the store in ") + cfg.data_dir + ": " + e.what();
  }
  if (auto* err = std::get_if<std::string>(&opened)) {
    return *err;
  }
  m.ctx->db = std::move(std::get<0>(opened));
  for (auto& msg : m.ctx->db->load_retained()) {
    m.ctx->retained.put(msg);
  }
  auto cores = std::max(1u, std::thread::hardware_concurrency());
  const std::uint32_t io_threads = cfg.io_threads ? cfg.io_threads : cores;
  for (std::uint32_t i = 0; i < io_threads; ++i) {
    m.workers.push_back(std::make_unique<io_worker>());
  }
  // Bridges: their counters exist for every configured bridge; actors only where they run.
  for (auto& [name, bc] : cfg.bridges) {
    auto st = std::make_shared<bridge::bridge_stats>();
    st->name = name;
    st->address = bc.address;
    // "*": the bridge actor decides at run time (it sets runs_here while it works here).
    st->runs_here = bridge::runs_on(bc, cfg.node_name) && bc.node != "*";
    if (!bridge::runs_on(bc, cfg.node_name)) {
      spdlog::info("bridge {}: runs on node {}, not here", name, bc.node);
    }
    m.ctx->bridges.push_back(std::move(st));
  }
  m.bridge_links = bridge::make_link_set(m.workers.back()->io);

  // Checked before anything runs: a bridge's TLS files that cannot be loaded stop the start.
  std::optional<supervision::child_spec> bridges_child;
  if (std::any_of(cfg.bridges.begin(), cfg.bridges.end(),
                  [&](const auto& b) { return bridge::runs_on(b.second, cfg.node_name); })) {
    auto bridges = bridge::bridges_supervisor(m.ctx, m.bridge_links);
    if (auto* err = std::get_if<std::string>(&bridges)) {
      return *err;
    }
    bridges_child = std::get<0>(std::move(bridges));
  }
  m.sys_cfg = std::make_unique<caf::actor_system_config>();
  // CAF defaults to max(4, cores) workers: size it to the machine (or the config).
  m.sys_cfg->set("scheduler.max-threads",
                 static_cast<std::size_t>(cfg.worker_threads ? cfg.worker_threads : cores));
  m.sys_cfg->set("logger.verbosity", caf::atom("quiet"));
  configure_scheduler(*m.sys_cfg, cfg.scheduler);
  supervision::add_error_category(*m.sys_cfg);
  cluster::configure(*m.sys_cfg, cfg);
  m.sys = std::make_unique<caf::actor_system>(*m.sys_cfg);
  // The cluster comes first: its hooks must be in place before any route or publish.
  if (auto err = m.cluster.start(*m.sys, m.ctx)) {
    return *err;
  }

  // tern (one_for_one): router, the session manager, then the bridges; stopped in reverse
  // order.
  supervision::supervisor_spec root;
  root.strategy = supervision::restart_strategy::one_for_one;
  root.intensity = 10;
  root.period = std::chrono::seconds(60);
  auto ctx = m.ctx;
  root.children.push_back(supervision::child_spec{
      "router",
      [ctx](caf::local_actor* sup, const caf::message&) -> caf::expected<caf::actor> {
        auto a = sup->spawn(router_impl, ctx);
        ctx->set_router(a);
        return a;
      }});
  root.children.push_back(supervision::child_spec{
      "sessions",
      [ctx](caf::local_actor* sup, const caf::message&) -> caf::expected<caf::actor> {
        auto a = session::spawn_session_manager(sup->system(), ctx);
        ctx->set_sessions(a);
        return a;
      }});
  if (bridges_child) {
    root.children.push_back(std::move(*bridges_child));
  }
  auto started = supervision::start_supervisor(*m.sys, std::move(root));
  if (!started) {
    return "cannot start the node's actors: " + m.sys->render(started.error());
  }
  m.root = *started;
  {
    // Restored sessions route before any client can publish: a message published right
    // after a restart must not miss a subscriber that is still being read from disk.
    caf::scoped_actor self{*m.sys};
    bool ok = false;
    self->request(ctx->sessions(), std::chrono::seconds(120), ready_atom::value)
        .receive([&](bool) { ok = true; }, [&](caf::error&) {});
    if (!ok) {
      spdlog::warn("restored sessions were not routed within 120 s; opening the listeners");
    }
  }
  // Likewise the bridges placed on this node (one placed on "*" waits for the cluster).
  {
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    std::size_t i = 0;
    for (auto& [name, bc] : cfg.bridges) {
      auto& stats = m.ctx->bridges.at(i++);
      if (bc.node == "*" || !bridge::runs_on(bc, cfg.node_name)) {
        continue;
      }
      while (!stats->routed.load() && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      if (!stats->routed.load()) {
        spdlog::warn("bridge {}: not subscribed here within 60 s; opening the listeners", name);
      }
    }
  }

  for (auto& [name, lc] : cfg.listeners) {
    if (auto err = m.open_listener(lc)) {
      m.running = true;
      stop();
      return err;
    }
  }
  for (auto& l : m.listeners) {
    if (auto err = l->start()) {
      m.running = true;
      stop();
      return err;
    }
  }
  for (auto& w : m.workers) {
    w->arm();
    w->thread = std::thread([&io = w->io] { io.run(); });
  }
  m.running = true;
  spdlog::info("node {} started ({} CAF workers, {} I/O threads, {} retained messages, data in {})",
               cfg.node_name, m.sys->scheduler().num_workers(), io_threads,
               m.ctx->retained.size(), cfg.data_dir);
  return std::nullopt;
}

std::string node::reload_access() {
  auto& e = impl_->ctx->access;
  return e ? e->reload() : std::string();
}

std::shared_ptr<context> node::shared_context() const {
  return impl_->ctx;
}

caf::actor_system& node::system() const {
  return *impl_->sys;
}

void node::stop() {
  auto& m = *impl_;
  if (!m.running) {
    return;
  }
  m.running = false;
  spdlog::info("node {} stopping", m.ctx->cfg.node_name);
  // 1. Stop accepting. 2. Close every connection (their actors exit), telling MQTT 5 clients
  // why (and where to go). 3. Stop I/O.
  for (auto& l : m.listeners) {
    l->stop();
  }
  std::string goodbye = shutdown_disconnect(m.ctx->cfg.mqtt5);
  for (auto& w : m.workers) {
    w->say_goodbye(goodbye);
  }
  // A client that does not read does not hold the shutdown up: what is not closed after the
  // grace period is closed without flushing.
  auto grace_end = std::chrono::steady_clock::now() + shutdown_grace;
  auto open = [&] {
    std::size_t n = 0;
    for (auto& w : m.workers) {
      n += w->open_count();
    }
    return n;
  };
  while (open() != 0 && std::chrono::steady_clock::now() < grace_end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (auto& w : m.workers) {
    w->close_all("server shutting down");
  }
  if (m.bridge_links) {
    bridge::close_all(*m.bridge_links);  // their I/O thread must be free to end
  }
  for (auto& w : m.workers) {
    // Each thread returns once its sockets have closed and reported to their actors.
    asio::post(w->io, [&w] { w->sweep_timer.cancel(); });
    w->guard.reset();
    if (!w->thread.joinable()) {
      w->io.stop();  // never started
    } else {
      w->thread.join();
    }
  }
  // 4. Leave the cluster: peers drop our routes before our sessions go.
  m.cluster.stop();
  // 5. Actors: the root supervisor stops the session manager (which ends every session),
  //    then the router.
  if (m.root) {
    caf::anon_send_exit(m.root, caf::exit_reason::user_shutdown);
    m.root = caf::actor{};
  }
  m.ctx->set_sessions(caf::actor{});
  m.ctx->set_router(caf::actor{});
  if (m.bridge_links) {
    bridge::wait_released(*m.bridge_links, std::chrono::seconds(1));
  }
  m.listeners.clear();
  m.workers.clear();
  spdlog::info("node stopped");
}

}  // namespace tern::actors::broker
