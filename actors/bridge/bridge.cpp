// Bridge actors and their Asio client sockets.
#include "actors/bridge/bridge.hpp"

#include <array>
#include <atomic>
#include <deque>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>

#include "actors/bridge/client_session.hpp"
#include "actors/bridge/rules.hpp"
#include "actors/broker/dispatch.hpp"
#include "actors/broker/types.hpp"
#include "actors/store/store.hpp"
#include "cluster/admin.hpp"
#include "proto/mqtt/codec.hpp"

namespace tern::actors::bridge {

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
namespace mqtt = proto::mqtt;

using br_connect_atom = caf::atom_constant<caf::atom("brconnect")>;
using br_opened_atom = caf::atom_constant<caf::atom("bropened")>;
using br_tick_atom = caf::atom_constant<caf::atom("brtick")>;

/// Largest packet accepted from the remote broker.
constexpr std::uint32_t max_packet_from_remote = 16 * 1024 * 1024;

/// One connection attempt to the remote broker, over TCP or TLS. Lives on one I/O thread:
/// every member is used only there (except backlog()). Tells its owner (br_opened_atom, id)
/// once the connection (and TLS handshake) is up, (packet_atom, id, packet) for each packet,
/// and (closed_atom, id, reason) exactly once.
class link : public std::enable_shared_from_this<link> {
 public:
  link(asio::io_context& io, caf::actor owner, std::uint64_t id,
       std::shared_ptr<asio::ssl::context> tls)
      : io_(io),
        sock_(io),
        resolver_(io),
        owner_(std::move(owner)),
        id_(id),
        dec_(max_packet_from_remote),
        tls_ctx_(std::move(tls)) {}

  /// `server_name`: checked against the remote's certificate (when verifying) and sent as SNI.
  void start(std::string host, std::uint16_t port, mqtt::protocol_version v,
             std::string server_name, bool verify) {
    asio::post(io_, [self = shared_from_this(), host = std::move(host), port, v,
                     name = std::move(server_name), verify] {
      if (self->is_closed_) {
        return;  // closed before it started (node shutdown)
      }
      self->dec_.set_version(v);
      self->resolver_.async_resolve(
          host, std::to_string(port),
          [self, name, verify](const boost::system::error_code& ec,
                               const tcp::resolver::results_type& rs) {
            if (ec) {
              return self->fail("cannot resolve the address: " + ec.message());
            }
            if (self->is_closed_) {
              return;
            }
            asio::async_connect(
                self->sock_, rs,
                [self, name, verify](const boost::system::error_code& ec2, const tcp::endpoint&) {
                  if (ec2) {
                    return self->fail("cannot connect: " + ec2.message());
                  }
                  if (self->is_closed_) {
                    return;
                  }
                  boost::system::error_code ignored;
                  self->sock_.set_option(tcp::no_delay(true), ignored);
                  if (self->tls_ctx_) {
                    self->handshake(name, verify);
                  } else {
                    self->opened();
                  }
                });
          });
    });
  }

  /// Bytes handed to send() and not yet written (any thread may read it).
  std::size_t backlog() const { return backlog_.load(std::memory_order_relaxed); }

  void send(std::string bytes) {
    if (is_dead_.load(std::memory_order_acquire)) {
      return;  // closed: nothing may be queued on a context that may have stopped
    }
    backlog_.fetch_add(bytes.size(), std::memory_order_relaxed);
    asio::post(io_, [self = shared_from_this(), bytes = std::move(bytes)]() mutable {
      if (self->is_closed_) {
        return;
      }
      self->out_ += bytes;
      self->flush();
    });
  }

  void close(std::string why) {
    if (is_dead_.load(std::memory_order_acquire)) {
      return;
    }
    asio::post(io_, [self = shared_from_this(), why = std::move(why)] { self->fail(why); });
  }

 private:
  void handshake(const std::string& name, bool verify) {
    tls_ = std::make_unique<asio::ssl::stream<tcp::socket&>>(sock_, *tls_ctx_);
    // SNI: a host name, never an IP address (RFC 6066, 3).
    boost::system::error_code ec;
    asio::ip::make_address(name, ec);
    if (ec) {
      SSL_set_tlsext_host_name(tls_->native_handle(), name.c_str());
    }
    if (verify) {
      tls_->set_verify_mode(asio::ssl::verify_peer);
      tls_->set_verify_callback(asio::ssl::host_name_verification(name));
    } else {
      tls_->set_verify_mode(asio::ssl::verify_none);
    }
    tls_->async_handshake(asio::ssl::stream_base::client,
                          [self = shared_from_this()](const boost::system::error_code& ec2) {
                            if (ec2) {
                              return self->fail("TLS handshake failed: " + ec2.message());
                            }
                            self->opened();
                          });
  }

  void opened() {
    if (is_closed_) {
      return;
    }
    is_open_ = true;
    caf::anon_send(owner_, br_opened_atom::value, id_);
    read();
    flush();  // CONNECT may have been queued during the handshake
  }

  template <class F>
  void read_some(F&& f) {
    if (tls_) {
      tls_->async_read_some(asio::buffer(buf_), std::forward<F>(f));
    } else {
      sock_.async_read_some(asio::buffer(buf_), std::forward<F>(f));
    }
  }

  void read() {
    read_some([self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
      if (ec) {
        return self->fail(ec == asio::error::eof ? "the remote closed the connection"
                                                 : "read failed: " + ec.message());
      }
      self->dec_.feed(std::string_view(self->buf_.data(), n));
      for (;;) {
        mqtt::packet p;
        auto st = self->dec_.next(p);
        if (st == mqtt::decode_status::need_more) {
          break;
        }
        if (st == mqtt::decode_status::error) {
          return self->fail("malformed packet from the remote: " + self->dec_.error().detail);
        }
        caf::anon_send(self->owner_, packet_atom::value, self->id_, std::move(p));
      }
      if (self->paused_.load(std::memory_order_acquire)) {
        self->read_stopped_ = true;  // resume() reads on
        return;
      }
      self->read();
    });
  }

 public:
  /// Flow control: no more reads from the remote after the current one (any thread).
  void pause() { paused_.store(true, std::memory_order_release); }
  /// Reads again (any thread).
  void resume() {
    if (!paused_.exchange(false)) {
      return;
    }
    asio::post(io_, [self = shared_from_this()] {
      if (self->read_stopped_ && !self->is_closed_ && !self->paused_.load()) {
        self->read_stopped_ = false;
        self->read();
      }
    });
  }

 private:

  void flush() {
    if (is_writing_ || out_.empty() || is_closed_ || !is_open_) {
      return;
    }
    is_writing_ = true;
    writing_.swap(out_);
    out_.clear();
    auto done = [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
      self->is_writing_ = false;
      self->backlog_.fetch_sub(self->writing_.size(), std::memory_order_relaxed);
      self->writing_.clear();
      if (ec) {
        return self->fail("write failed: " + ec.message());
      }
      self->flush();
    };
    if (tls_) {
      asio::async_write(*tls_, asio::buffer(writing_), std::move(done));
    } else {
      asio::async_write(sock_, asio::buffer(writing_), std::move(done));
    }
  }

  void fail(const std::string& why) {
    if (is_closed_) {
      return;
    }
    is_closed_ = true;
    is_dead_.store(true, std::memory_order_release);
    boost::system::error_code ignored;
    resolver_.cancel();
    sock_.shutdown(tcp::socket::shutdown_both, ignored);
    sock_.close(ignored);
    caf::anon_send(owner_, closed_atom::value, id_, why);
  }

  asio::io_context& io_;
  tcp::socket sock_;
  tcp::resolver resolver_;
  caf::actor owner_;
  std::uint64_t id_;
  mqtt::decoder dec_;
  std::shared_ptr<asio::ssl::context> tls_ctx_;  ///< null: plain TCP
  std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls_;
  std::array<char, 16384> buf_{};
  std::string out_;
  std::string writing_;
  bool is_writing_ = false;
  bool is_open_ = false;  ///< connected (and, over TLS, handshaken)
  bool is_closed_ = false;
  std::atomic<std::size_t> backlog_{0};
  std::atomic<bool> is_dead_{false};  ///< is_closed_, readable from any thread
  std::atomic<bool> paused_{false};   ///< flow control: read no more
  bool read_stopped_ = false;         ///< a read was not re-armed because of paused_
};

/// The bridge as a publisher into this node: paused by flow control when a session it
/// delivers to (or the node's budget) is full; the bridge then holds back the PUBLISHes the
/// remote sends, unacknowledged, so the remote's window fills instead of a queue here.
class bridge_gate final : public flow::gate {
 public:
  explicit bridge_gate(caf::actor_addr owner) : owner_(std::move(owner)) {}

 protected:
  bool stop() override { return !stopped_.exchange(true); }
  void go() override {
    stopped_.store(false);
    if (auto a = caf::actor_cast<caf::actor>(owner_)) {
      caf::anon_send(a, replay_atom::value);
    }
  }

 private:
  caf::actor_addr owner_;
  std::atomic<bool> stopped_{false};
};

}  // namespace

class link_set {
 public:
  explicit link_set(asio::io_context& io) : io_(io) {}

  /// A new link, or null once the node is shutting down.
  std::shared_ptr<link> make(caf::actor owner, std::uint64_t id,
                             std::shared_ptr<asio::ssl::context> tls) {
    std::lock_guard lock{mtx_};
    if (is_stopped_) {
      return nullptr;
    }
    auto l = std::make_shared<link>(io_, std::move(owner), id, std::move(tls));
    links_.erase(std::remove_if(links_.begin(), links_.end(),
                                [](const std::weak_ptr<link>& w) { return w.expired(); }),
                 links_.end());
    links_.push_back(l);
    return l;
  }

  void close_all() {
    std::lock_guard lock{mtx_};
    is_stopped_ = true;
    for (auto& w : links_) {
      if (auto l = w.lock()) {
        l->close("node shutting down");
      }
    }
  }

  /// Waits (up to `timeout`) until no link object is left: their sockets must go before the
  /// I/O context they were made on.
  void wait_released(std::chrono::milliseconds timeout) {
    auto end = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      {
        std::lock_guard lock{mtx_};
        links_.erase(std::remove_if(links_.begin(), links_.end(),
                                    [](const std::weak_ptr<link>& w) { return w.expired(); }),
                     links_.end());
        if (links_.empty() || std::chrono::steady_clock::now() >= end) {
          return;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

 private:
  asio::io_context& io_;
  std::mutex mtx_;
  std::vector<std::weak_ptr<link>> links_;
  bool is_stopped_ = false;
};

std::shared_ptr<link_set> make_link_set(asio::io_context& io) {
  return std::make_shared<link_set>(io);
}

void close_all(link_set& links) { links.close_all(); }

void wait_released(link_set& links, std::chrono::milliseconds timeout) {
  links.wait_released(timeout);
}

namespace {

struct bridge_state {
  broker::context_ptr ctx;
  config::bridge_config cfg;
  std::uint32_t number = 0;  ///< 1-based; marks the messages this bridge publishes here
  std::vector<rule> rules;
  std::unique_ptr<client_session> session;
  std::shared_ptr<link_set> links;
  std::shared_ptr<bridge_stats> stats;
  std::shared_ptr<link> current;
  std::uint64_t link_id = 0;
  std::chrono::milliseconds backoff{0};
  bool is_connect_scheduled = false;
  std::string host;
  std::uint16_t port = 0;
  /// Whether the bridge works on this node now: always for a bridge placed by name; for
  /// `node = "*"` only while this node is the live cluster member with the lowest name.
  bool is_active = false;
  bool is_auto_placed = false;
  route_adds routes;   ///< local subscriptions of the `out` rules
  std::string runner;  ///< the member that runs an auto-placed bridge, as last seen
  std::uint64_t dropped_congested = 0;         ///< QoS 0 dropped while the socket was backed up
  std::shared_ptr<asio::ssl::context> tls;  ///< null: plain TCP
  /// Deliveries handed to this bridge (flow control, and the seqs of its records).
  flow::backlog_owner backlog;
  /// Flow control of what the remote sends us: the gate, and the packets of the current link
  /// held while it is paused.
  std::shared_ptr<bridge_gate> gate;
  std::deque<mqtt::packet> held;
  /// [store] durability batch/sync: QoS 1/2 messages for the remote are written ahead (the
  /// publish path writes them before acknowledging; the bridge deletes them once the remote
  /// has them) and survive a crash of this node.
  bool is_durable = false;
};

using self_ptr = caf::stateful_actor<bridge_state>*;

void update_stats(self_ptr self) {
  auto& st = self->state;
  const auto& c = st.session->counters();
  st.stats->connected = st.session->is_connected();
  st.stats->forwarded_out = c.forwarded_out;
  st.stats->dropped = c.dropped + st.dropped_congested;
  st.stats->queued = st.session->queued();
  st.stats->inflight = st.session->inflight();
}

void lost(self_ptr self, const std::string& why);

/// Inbound packets held while flow control pauses the bridge before it stops reading.
constexpr std::size_t max_held_inbound = 1024;

/// What the remote sends on its own (not an answer to us): held while flow control pauses.
bool is_inbound(const mqtt::packet& p) {
  return std::holds_alternative<mqtt::publish>(p) || std::holds_alternative<mqtt::pubrel>(p);
}

/// Deletes the records of messages the session no longer needs.
void release_records(self_ptr self) {
  auto& st = self->state;
  auto done = st.session->take_released();
  if (done.empty() || !st.is_durable) {
    return;
  }
  store::txn t;
  for (auto seq : done) {
    t.del_bridge(st.cfg.name, seq);
  }
  st.ctx->db->submit(std::move(t));
}

/// What the bridge's backlog counts besides its mailbox: its queue while the remote is
/// connected (publishers are paused for it then, as for a connected client's session); an
/// unreachable remote's queue is bounded by max_queued instead.
std::size_t queued_for_flow(self_ptr self) {
  auto& st = self->state;
  return st.session->is_connected() ? st.session->queued() : 0;
}

/// Carries out what the session decided: local publishes, then writes, then a close.
void apply(self_ptr self, step s) {
  auto& st = self->state;
  release_records(self);
  for (auto& w : s.warnings) {
    spdlog::warn("bridge {}: {}", st.cfg.name, w);
  }
  for (auto& in : s.deliver) {
    auto m = std::make_shared<message>();
    m->topic = std::move(in.topic);
    m->payload = std::move(in.payload);
    m->q = in.q;
    m->retain = in.retain;
    m->from = st.session->options().client_id;
    m->received_at = std::chrono::steady_clock::now();
    m->props = std::move(in.props);
    m->from_bridge = st.number;
    broker::dispatch(*st.ctx, m, false, st.gate);
    st.stats->forwarded_in.fetch_add(1, std::memory_order_relaxed);
  }
  if (s.is_now_connected) {
    st.backoff = st.cfg.reconnect_interval;
    st.stats->connects.fetch_add(1, std::memory_order_relaxed);
    spdlog::info("bridge {}: connected to {} as {} ({} queued, {} to resend)", st.cfg.name,
                 st.cfg.address, st.session->options().client_id, st.session->queued(),
                 st.session->inflight());
  }
  if (s.refused) {
    st.stats->refusals.fetch_add(1, std::memory_order_relaxed);
    st.stats->last_refusal = *s.refused;
  }
  if (!s.send.empty() && st.current) {
    std::string bytes;
    for (auto& p : s.send) {
      mqtt::encode(p, st.session->options().version, bytes);
    }
    st.current->send(std::move(bytes));
  }
  if (s.close) {
    if (st.current) {
      st.current->close(*s.close);  // its closed_atom will carry an old id: ignored
    }
    lost(self, *s.close);
  }
  update_stats(self);
  st.backlog.update(0, queued_for_flow(self));
}

void schedule_connect(self_ptr self, std::chrono::milliseconds after) {
  auto& st = self->state;
  if (st.is_connect_scheduled) {
    return;
  }
  st.is_connect_scheduled = true;
  self->delayed_send(self, after, br_connect_atom::value);
}

/// The connection is gone: keep what is unacknowledged and try again later.
void lost(self_ptr self, const std::string& why) {
  auto& st = self->state;
  bool was_connected = st.session->is_connected();
  st.session->on_close();
  st.current = nullptr;
  st.held.clear();  // the remote sends them again (unacknowledged)
  ++st.link_id;  // events of the old socket are ignored from now on
  if (was_connected) {
    spdlog::warn("bridge {}: disconnected from {}: {}; reconnecting in {} ms", st.cfg.name,
                 st.cfg.address, why, st.backoff.count());
  } else {
    spdlog::warn("bridge {}: connection to {} failed: {}; retrying in {} ms", st.cfg.name,
                 st.cfg.address, why, st.backoff.count());
  }
  if (st.is_active) {
    schedule_connect(self, st.backoff);
  }
  // Back off up to 8 times the interval while the remote stays away.
  st.backoff = std::min(st.backoff * 2, st.cfg.reconnect_interval * 8);
  update_stats(self);
  st.backlog.update(0, queued_for_flow(self));  // away: publishers no longer wait for it
}

void connect(self_ptr self) {
  auto& st = self->state;
  st.is_connect_scheduled = false;
  if (st.current || !st.is_active) {
    return;
  }
  auto l = st.links->make(caf::actor_cast<caf::actor>(self), ++st.link_id, st.tls);
  if (!l) {
    return;  // the node is shutting down
  }
  st.current = l;
  spdlog::debug("bridge {}: connecting to {}", st.cfg.name, st.cfg.address);
  l->start(st.host, st.port, st.session->options().version,
           st.cfg.server_name.empty() ? st.host : st.cfg.server_name, st.cfg.verify);
}

/// Saves the unacknowledged and queued messages to the node's store (at shutdown).
void save_queue(self_ptr self) {
  auto& st = self->state;
  if (!st.ctx->db) {
    return;
  }
  std::vector<message_ptr> msgs;
  for (auto& o : st.session->pending()) {
    if (o.seq != 0) {
      continue;  // written ahead: its record stays
    }
    auto m = std::make_shared<message>(o.msg ? *o.msg : message{});
    m->topic = o.topic;
    m->q = o.q;
    m->retain = o.retain;
    msgs.push_back(std::move(m));
  }
  st.ctx->db->save_bridge_queue(st.cfg.name, msgs);
  if (!msgs.empty()) {
    spdlog::info("bridge {}: {} message(s) for the remote saved", st.cfg.name, msgs.size());
  }
}

/// Takes back the messages written ahead (in their order) and what save_queue() saved at
/// the last shutdown.
void restore_queue(self_ptr self) {
  auto& st = self->state;
  if (!st.ctx->db) {
    return;
  }
  std::vector<outgoing> saved;
  store::txn unmapped;
  for (auto& d : st.ctx->db->load_bridge(st.cfg.name)) {
    st.backlog.get(0)->start_after(d.seq);
    auto m = map_out(st.rules, d.msg->topic, d.q);
    if (!m || m->q == mqtt::qos::at_most_once) {
      unmapped.del_bridge(st.cfg.name, d.seq);  // the rules changed: no longer for the remote
      continue;
    }
    saved.push_back(outgoing{d.msg, std::move(m->topic), m->q, d.retain, d.seq});
  }
  if (!unmapped.empty()) {
    st.ctx->db->submit(std::move(unmapped));
  }
  for (auto& m : st.ctx->db->take_bridge_queue(st.cfg.name)) {
    saved.push_back(outgoing{m, m->topic, m->q, m->retain});
  }
  if (saved.empty()) {
    return;
  }
  auto n = saved.size();
  st.session->restore(std::move(saved));
  release_records(self);  // those the queue limit dropped
  spdlog::info("bridge {}: {} message(s) for the remote restored", st.cfg.name, n);
  update_stats(self);
}

/// Local subscriptions for the `out` rules (like a session's; no back-pressure counter).
route_adds local_routes(const std::vector<rule>& rules) {
  route_adds adds;
  for (const auto& r : rules) {
    if (!r.is_out()) {
      continue;
    }
    router::sub_options o;
    o.max_qos = r.q;
    o.retain_as_published = true;  // the retain flag crosses the bridge
    adds.emplace_back(r.local_filter(), o);
  }
  return adds;
}

/// Starts working on this node: local subscriptions, then the connection.
void activate(self_ptr self) {
  auto& st = self->state;
  st.runner.clear();
  if (st.is_active) {
    return;
  }
  st.is_active = true;
  st.stats->runs_here = true;
  if (!st.routes.empty()) {
    self->request(st.ctx->router(), caf::infinite, add_route_atom::value, st.routes,
                  caf::actor_cast<caf::actor>(self), st.backlog.get(0))
        .then([stats = st.stats](bool) { stats->routed.store(true); });
  } else {
    st.stats->routed.store(true);
  }
  if (st.is_auto_placed) {
    spdlog::info("bridge {}: this node is the live member with the lowest name: running here",
                 st.cfg.name);
  }
  st.backoff = st.cfg.reconnect_interval;
  schedule_connect(self, std::chrono::milliseconds(0));
}

/// Stops working on this node (another member runs the bridge now). What is queued stays.
void deactivate(self_ptr self, const std::string& runner) {
  auto& st = self->state;
  if (st.runner != runner) {
    st.runner = runner;
    spdlog::info("bridge {}: {} runs it now; idle here", st.cfg.name, runner);
  }
  if (!st.is_active) {
    return;
  }
  st.is_active = false;
  st.stats->runs_here = false;
  if (!st.routes.empty()) {
    std::vector<std::string> filters;
    for (auto& a : st.routes) {
      filters.push_back(a.first);
    }
    self->request(st.ctx->router(), caf::infinite, del_route_atom::value, std::move(filters),
                  caf::actor_cast<caf::actor>(self))
        .then([](bool) {});
  }
  if (st.current) {
    st.current->close("the bridge moved to " + runner);
    st.session->on_close();
    st.current = nullptr;
    ++st.link_id;
  }
  update_stats(self);
}

/// `node = "*"`: runs on the cluster member with the lowest name among those up (this node
/// included), once this node has joined (or runs alone); moves when that member goes.
void place(self_ptr self) {
  self->request(self->state.ctx->cluster, std::chrono::seconds(2), cluster::cstatus_atom::value)
      .then(
          [self](const cluster::cluster_status& cs) {
            if (!cs.ready) {
              return;  // still joining: the view may lack the members
            }
            std::string lowest;
            for (const auto& m : cs.members) {
              if (m.up && (lowest.empty() || m.name < lowest)) {
                lowest = m.name;
              }
            }
            if (lowest.empty() || lowest == cs.self) {
              activate(self);
            } else {
              deactivate(self, lowest);
            }
          },
          [](const caf::error&) {});  // the cluster actor is busy: try at the next tick
}

caf::behavior bridge_impl(caf::stateful_actor<bridge_state>* self, broker::context_ptr ctx,
                          config::bridge_config cfg, std::uint32_t number,
                          std::shared_ptr<link_set> links, std::shared_ptr<bridge_stats> stats,
                          std::shared_ptr<asio::ssl::context> tls) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.cfg = std::move(cfg);
  st.number = number;
  st.rules = rules_from(st.cfg);
  st.session =
      std::make_unique<client_session>(options_from(st.cfg, st.ctx->cfg.node_name), st.rules);
  st.links = std::move(links);
  st.stats = std::move(stats);
  st.tls = std::move(tls);
  st.backoff = st.cfg.reconnect_interval;
  auto hp = config::split_host_port(st.cfg.address);
  if (hp) {
    st.host = hp->first;
    st.port = hp->second;
  }
  st.routes = local_routes(st.rules);
  st.is_auto_placed = st.cfg.node == "*" && st.ctx->cluster;
  st.is_durable = st.ctx->db && st.ctx->db->is_durable();
  st.gate = std::make_shared<bridge_gate>(self->address());
  // Publishers are paused for the bridge while its connected remote is behind (its queue
  // over the high-water mark); an unreachable remote's queue is bounded by max_queued.
  st.backlog
      .get(flow::marks_for(st.ctx->cfg.flow.high_watermark, st.ctx->cfg.session.max_queued_messages)
               .low)
      ->set_durable(st.cfg.name, st.is_durable, true);
  // Last words, whatever ends the actor: no route may lead to it, no socket outlive it.
  std::vector<std::string> filters;
  for (auto& a : st.routes) {
    filters.push_back(a.first);
  }
  self->attach_functor([ctx = st.ctx, filters, self_addr = self->address()](const caf::error&) {
    if (!filters.empty()) {
      caf::anon_send(ctx->router(), del_route_atom::value, filters,
                     caf::actor_cast<caf::actor>(self_addr));
    }
  });
  restore_queue(self);
  self->set_exit_handler([self](caf::exit_msg& em) {
    save_queue(self);  // node shutdown: what the remote has not taken survives a restart
    if (self->state.current) {
      self->state.current->close("bridge stopped");
      self->state.current = nullptr;
    }
    self->state.stats->connected = false;
    self->quit(em.reason);
  });
  spdlog::info("bridge {}: started, remote {}, client id {}{}", st.cfg.name, st.cfg.address,
               st.session->options().client_id,
               st.is_auto_placed ? "; runs on the live member with the lowest name" : "");
  if (!st.is_auto_placed) {
    activate(self);
  } else {
    place(self);
  }
  self->delayed_send(self, std::chrono::seconds(1), br_tick_atom::value);
  return {
      [=](deliver_atom, session::delivery& d) {
        auto& s = self->state;
        s.backlog.update(1, queued_for_flow(self));
        std::optional<mapped> m;
        if (d.msg && d.msg->from_bridge != s.number && s.is_active) {
          m = map_out(s.rules, d.msg->topic, d.q);  // never back out what this bridge brought
        }
        if (!m || m->q == mqtt::qos::at_most_once) {
          if (d.seq != 0) {
            store::txn t;  // written ahead by the publish path, but not for the remote
            t.del_bridge(s.cfg.name, d.seq);
            s.ctx->db->submit(std::move(t));
            d.seq = 0;
          }
          if (!m) {
            return;
          }
        } else if (d.seq == 0 && s.is_durable) {
          // Not written ahead (from another node, or a publish nobody waits for): kept on
          // disk from now on.
          d.seq = s.backlog.get(0)->next_seq();
          store::txn t;
          t.put_bridge(s.cfg.name, d.seq, d);
          s.ctx->db->submit(std::move(t));
        }
        // A remote that does not read: QoS 0 is dropped rather than piled up in memory
        // (QoS 1/2 wait in the bounded queue behind the inflight window).
        if (m->q == mqtt::qos::at_most_once && s.current &&
            s.current->backlog() > s.ctx->cfg.session.max_send_buffer) {
          s.stats->dropped.fetch_add(1, std::memory_order_relaxed);
          ++s.dropped_congested;
          return;
        }
        outgoing o{d.msg, std::move(m->topic), m->q, d.retain, d.seq};
        apply(self, s.session->enqueue(std::move(o), clock::now()));
      },
      [=](packet_atom, std::uint64_t id, mqtt::packet& p) {
        auto& s = self->state;
        if (id != s.link_id || !s.current) {
          return;
        }
        if (is_inbound(p) && (s.gate->is_paused() || !s.held.empty())) {
          // Unacknowledged, so the remote's in-flight window stops it; the remote's PUBACKs
          // for what we send it are still read (outbound keeps draining). Only a flood
          // (QoS 0) stops the reading.
          s.held.push_back(std::move(p));
          if (s.held.size() >= max_held_inbound) {
            s.current->pause();
          }
          return;
        }
        apply(self, s.session->on_packet(p, clock::now()));
      },
      [=](replay_atom) {
        // Let go by flow control: what was held, then read the remote again.
        auto& s = self->state;
        while (!s.held.empty() && !s.gate->is_paused() && s.current) {
          auto p = std::move(s.held.front());
          s.held.pop_front();
          apply(self, s.session->on_packet(p, clock::now()));
        }
        if (s.current && s.held.size() < max_held_inbound) {
          s.current->resume();
        }
      },
      [=](br_opened_atom, std::uint64_t id) {
        auto& s = self->state;
        if (id != s.link_id || !s.current) {
          return;
        }
        apply(self, s.session->on_open(clock::now()));
      },
      [=](closed_atom, std::uint64_t id, const std::string& why) {
        auto& s = self->state;
        if (id != s.link_id || !s.current) {
          return;
        }
        lost(self, why);
      },
      [=](br_connect_atom) { connect(self); },
      [=](br_tick_atom) {
        self->delayed_send(self, std::chrono::seconds(1), br_tick_atom::value);
        if (self->state.is_auto_placed) {
          place(self);
        }
        if (self->state.current) {
          apply(self, self->state.session->on_tick(clock::now()));
        }
      },
  };
}

std::variant<std::shared_ptr<asio::ssl::context>, std::string> make_client_tls(
    const config::bridge_config& c) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  auto* native = ctx->native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  auto fail = [&](const std::string& what, const std::string& file) {
    return "bridge " + c.name + ": cannot load " + what + " " + file;
  };
  if (!c.cacertfile.empty()) {
    if (SSL_CTX_load_verify_locations(native, c.cacertfile.c_str(), nullptr) != 1) {
      return fail("cacertfile", c.cacertfile);
    }
  } else if (SSL_CTX_set_default_verify_paths(native) != 1) {
    return "bridge " + c.name + ": cannot load the system's CA certificates";
  }
  if (!c.certfile.empty()) {
    if (SSL_CTX_use_certificate_chain_file(native, c.certfile.c_str()) != 1) {
      return fail("certfile", c.certfile);
    }
    if (SSL_CTX_use_PrivateKey_file(native, c.keyfile.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(native) != 1) {
      return fail("keyfile", c.keyfile);
    }
  }
  return ctx;
}

}  // namespace

std::variant<supervision::child_spec, std::string> bridges_supervisor(
    const broker::context_ptr& ctx, std::shared_ptr<link_set> links) {
  supervision::supervisor_spec spec;
  spec.strategy = supervision::restart_strategy::one_for_one;
  spec.intensity = 5;
  spec.period = std::chrono::seconds(60);
  std::uint32_t number = 0;
  for (auto& [name, cfg] : ctx->cfg.bridges) {
    ++number;
    auto stats = ctx->bridges.at(number - 1);
    if (!runs_on(cfg, ctx->cfg.node_name)) {
      continue;
    }
    std::shared_ptr<asio::ssl::context> tls;
    if (cfg.tls) {
      auto made = make_client_tls(cfg);
      if (auto* err = std::get_if<std::string>(&made)) {
        return *err;
      }
      tls = std::get<0>(std::move(made));
    }
    spec.children.push_back(supervision::child_spec{
        "bridge." + name,
        [ctx, cfg = cfg, number, links, stats, tls](
            caf::local_actor* sup, const caf::message&) -> caf::expected<caf::actor> {
          return sup->spawn(bridge_impl, ctx, cfg, number, links, stats, tls);
        }});
  }
  return supervision::supervisor_child("bridges", std::move(spec));
}

}  // namespace tern::actors::bridge
