// The cluster actor: handshake with cookie proofs, member list and full mesh, node down and
// leave, route deltas and snapshots, forwarding, retained replication, reconnects.
#include "cluster/cluster.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <unistd.h>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/broker/dispatch.hpp"
#include "actors/broker/types.hpp"
#include "cluster/admin.hpp"
#include "cluster.pb.h"
#include "cluster/cookie.hpp"
#include "cluster/members.hpp"
#include "cluster/routes.hpp"
#include "cluster/shared_plan.hpp"
#include "proto/mqtt/topic.hpp"

namespace tern::cluster {

/// The only CAF type that crosses nodes: one serialized wire::Envelope.
struct wire_bytes {
  std::string pb;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, wire_bytes& x) {
  return f(caf::meta::type_name("tern.cluster.wire"), x.pb);
}

/// A publish to hand to other nodes (local message, never crosses the wire as is).
struct forward_job {
  forward_plan plan;  ///< what each node gets; with `all`, a node not in it stores only
  actors::message_ptr m;
  bool all = false;
};

/// What is on its way to other nodes, as flow control sees it: forward jobs sent to the
/// cluster actor and not yet handled (its mailbox), and per peer the forwards not yet sent
/// because the peer's window is closed. A publisher is paused while either is over its mark.
struct forward_backlog {
  explicit forward_backlog(std::size_t max_queue)
      : jobs(std::make_shared<actors::flow::backlog>(static_cast<std::int64_t>(max_queue / 4))),
        job_marks{static_cast<std::int64_t>(max_queue / 2),
                  static_cast<std::int64_t>(max_queue / 4)} {}
  actors::flow::backlog_ptr jobs;
  actors::flow::watermarks job_marks;
  std::atomic<std::uint64_t> dropped{0};
  std::mutex mtx;
  std::map<std::string, actors::flow::backlog_ptr> peers;  ///< guarded by mtx
};

/// Forwards a node may have sent a peer and not yet had acknowledged; beyond it they wait in
/// the sender (counted in the peer's backlog, whose marks are one window).
constexpr std::uint64_t forward_window = 4096;
constexpr actors::flow::watermarks peer_marks{static_cast<std::int64_t>(forward_window),
                                              static_cast<std::int64_t>(forward_window / 2)};

}  // namespace tern::cluster

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tern::cluster::forward_job)

namespace tern::cluster {

namespace {

namespace pb = tern::cluster::wire;
using clock = std::chrono::steady_clock;

constexpr std::uint32_t protocol_version = 1;
constexpr std::size_t max_pending_handshakes = 8;  ///< per peer actor

using route_atom = caf::atom_constant<caf::atom("croute")>;
using tick_atom = caf::atom_constant<caf::atom("ctick")>;
using leave_atom = caf::atom_constant<caf::atom("cleave")>;
using adv_atom = caf::atom_constant<caf::atom("cadv")>;
using flush_atom = caf::atom_constant<caf::atom("cflush")>;
using takeover_timeout_atom = caf::atom_constant<caf::atom("ctkotmo")>;
using clients_timeout_atom = caf::atom_constant<caf::atom("ccltmo")>;


/// How long a cluster-wide client listing (or lookup) waits for the other members.
constexpr auto clients_query_timeout = std::chrono::seconds(2);

void to_pb(const actors::mgmt::client_info& c, pb::ClientInfo& e) {
  e.set_client_id(c.client_id);
  e.set_username(c.username);
  e.set_peer(c.peer);
  e.set_proto_level(c.proto_level);
  e.set_keepalive(c.keepalive);
  e.set_clean_start(c.clean_start);
  e.set_connected_at_ms(c.connected_at_ms);
}

client_entry from_pb(const pb::ClientInfo& e) {
  return client_entry{e.client_id(),
                      e.username(),
                      e.peer(),
                      static_cast<std::uint8_t>(e.proto_level()),
                      static_cast<std::uint16_t>(e.keepalive()),
                      e.clean_start(),
                      e.connected_at_ms()};
}

struct settings {
  std::string name;
  std::uint64_t incarnation = 0;
  std::string advertise;
  std::string cookie;
  std::vector<std::string> seeds;
  std::chrono::milliseconds reconnect_interval{1000};
  bool tls = false;
};

/// A peer's forwards not yet sent, registered for the publishers while the peer is a member.
struct peer_out {
  peer_out(std::shared_ptr<forward_backlog> fb, std::string n)
      : flows(std::move(fb)),
        name(std::move(n)),
        b(std::make_shared<actors::flow::backlog>(peer_marks.low)) {
    std::lock_guard lock{flows->mtx};
    flows->peers[name] = b;
  }
  peer_out(const peer_out&) = delete;
  peer_out& operator=(const peer_out&) = delete;
  ~peer_out() {
    b->close();  // its publishers go on: what waited for it is gone with it
    std::lock_guard lock{flows->mtx};
    if (auto it = flows->peers.find(name); it != flows->peers.end() && it->second == b) {
      flows->peers.erase(it);
    }
  }
  std::shared_ptr<forward_backlog> flows;
  std::string name;
  actors::flow::backlog_ptr b;
};

using link_go_atom = caf::atom_constant<caf::atom("clinkgo")>;

/// The receiving side of a peer's forwarding, as a publisher flow control can pause: paused,
/// the cluster actor holds back its acknowledgements; let go, it sends what it owes.
class link_gate final : public actors::flow::gate {
 public:
  link_gate(caf::actor_addr cluster, std::string node)
      : cluster_(std::move(cluster)), node_(std::move(node)) {}

 protected:
  bool stop() override { return !stopped_.exchange(true); }
  void go() override {
    stopped_.store(false);
    if (auto a = caf::actor_cast<caf::actor>(cluster_)) {
      caf::anon_send(a, link_go_atom::value, node_);
    }
  }

 private:
  caf::actor_addr cluster_;
  std::string node_;
  std::atomic<bool> stopped_{false};
};

struct peer {
  caf::actor handle;
  member m;
  pb::Envelope batch;  ///< forwards not yet sent (flushed when the mailbox has been read)
  std::size_t batch_bytes = 0;
  // Flow control (when the peer announced flow_credit; otherwise nothing is windowed).
  bool credit = false;
  std::uint64_t unacked = 0;              ///< forwards sent to it, not yet acknowledged
  std::deque<pb::Envelope> waiting;       ///< batches beyond the window, in order
  std::shared_ptr<peer_out> out;          ///< forwards for it not yet sent
  std::shared_ptr<link_gate> in;          ///< its forwarding to us
  std::uint64_t owed = 0;                 ///< its forwards handled, acknowledgement held back
};

// A batch is sent when it is this large, or when the forwards that arrived together are in.
constexpr int max_batch_messages = 512;
constexpr std::size_t max_batch_bytes = 256 * 1024;

struct pending_out {  // Hello sent, waiting for Welcome
  std::string nonce;
  std::string address;
};

struct pending_in {  // Welcome sent, waiting for Auth
  std::string nonce;
  member m;
  bool credit = false;  // its Hello announced flow_credit
};

struct cluster_state {
  actors::broker::context_ptr ctx;
  settings cfg;
  member_view view{""};
  std::shared_ptr<route_view> routes;
  std::shared_ptr<forward_backlog> backlog;
  std::uint64_t dropped_reported = 0;
  std::map<std::string, peer> peers;  ///< authenticated members by name
  std::map<caf::actor_addr, std::string> name_by_addr;
  // Handshakes under way, per peer actor; several at once when both sides or two paths
  // (seed, member list) dial at the same time. Each Welcome/Auth answers one of them.
  std::map<caf::actor_addr, std::vector<pending_out>> outgoing;
  std::map<caf::actor_addr, std::vector<pending_in>> incoming;
  std::set<std::string> connecting;                ///< addresses with a connect in flight
  std::map<std::string, std::string> alias;        ///< address we dialled -> member name
  std::set<std::string> local_filters;
  struct owner {
    std::string node;
    std::uint64_t stamp = 0;
  };
  std::map<std::string, owner> registry;  ///< client id -> node with its session
  std::uint64_t next_request = 1;
  std::map<std::uint64_t, caf::response_promise> takeovers;  ///< waiting for a transfer
  struct clients_query {
    caf::response_promise rp;
    remote_clients out;
    std::set<std::string> waiting;  ///< members that have not answered yet
  };
  std::map<std::uint64_t, clients_query> clients_queries;
  std::map<std::uint64_t, std::pair<std::string, caf::response_promise>> client_lookups;
  bool leaving = false;
  bool flush_scheduled = false;
  // Management: joins asked for by address, and what readiness needs.
  std::map<std::string, std::vector<caf::response_promise>> joins;
  clock::time_point started = clock::now();
  bool seed_answered = false;  ///< a configured seed accepted a connection
  bool joined_once = false;
  bool left = false;  ///< left by request: refuses handshakes until asked to join again
  static inline const char* name = "cluster";
};

using self_ptr = caf::stateful_actor<cluster_state>*;

std::string join_names(const std::vector<std::string>& v) {
  std::string out;
  for (auto& n : v) {
    out += out.empty() ? n : "," + n;
  }
  return out;
}

void send_env(self_ptr self, const caf::actor& to, const pb::Envelope& env) {
  self->send(to, wire_bytes{env.SerializeAsString()});
}

/// Sends a batch of `n` forwards to the peer, counting it against its window.
void send_batch(self_ptr self, peer& p, const pb::Envelope& batch, int n) {
  send_env(self, p.handle, batch);
  if (p.credit) {
    p.unacked += static_cast<std::uint64_t>(n);
  }
  if (p.out) {
    p.out->b->release(n);
  }
}

/// Sends the peer's pending forwards, if any; behind the batches that wait for its window.
void flush(self_ptr self, peer& p) {
  auto n = p.batch.forwards().messages_size();
  if (n == 0) {
    return;
  }
  if (p.credit && (!p.waiting.empty() || p.unacked >= forward_window)) {
    p.waiting.push_back(std::move(p.batch));
  } else {
    send_batch(self, p, p.batch, n);
  }
  p.batch.Clear();
  p.batch_bytes = 0;
}

/// The peer acknowledged `count` forwards: sends what waited for its window.
void on_forward_ack(self_ptr self, peer& p, std::uint64_t count) {
  p.unacked -= std::min(count, p.unacked);
  while (!p.waiting.empty() && p.unacked < forward_window) {
    auto& b = p.waiting.front();
    send_batch(self, p, b, b.forwards().messages_size());
    p.waiting.pop_front();
  }
}

/// Acknowledges the forwards of `p` handled so far, unless a session they went to is behind.
void ack_forwards(self_ptr self, peer& p) {
  if (!p.credit || p.owed == 0 || (p.in && p.in->is_paused())) {
    return;
  }
  pb::Envelope env;
  env.mutable_forward_ack()->set_count(p.owed);
  p.owed = 0;
  send_env(self, p.handle, env);
}

void broadcast(self_ptr self, const pb::Envelope& env) {
  wire_bytes w{env.SerializeAsString()};
  for (auto& [n, p] : self->state.peers) {
    self->send(p.handle, w);
  }
}

std::string members_line(self_ptr self) {
  auto names = self->state.view.names();
  names.push_back(self->state.cfg.name);
  std::sort(names.begin(), names.end());
  return join_names(names);
}

void fill_forward(pb::Forward& f, const actors::message& m) {
  f.set_topic(m.topic);
  f.set_payload(m.payload);
  f.set_qos(static_cast<std::uint32_t>(m.q));
  f.set_retain(m.retain);
  f.set_from(m.from);
  f.set_origin(m.origin);
  f.set_origin_seq(m.origin_seq);
  auto& p = m.props;
  if (p.payload_format_indicator) {
    f.set_payload_format_indicator(*p.payload_format_indicator);
  }
  if (p.message_expiry_interval) {
    f.set_message_expiry_interval(*p.message_expiry_interval);
  }
  if (p.content_type) {
    f.set_content_type(*p.content_type);
  }
  if (p.response_topic) {
    f.set_response_topic(*p.response_topic);
  }
  if (p.correlation_data) {
    f.set_correlation_data(*p.correlation_data);
  }
  for (auto& [k, v] : p.user_properties) {
    auto* u = f.add_user_properties();
    u->set_key(k);
    u->set_value(v);
  }
}

/// What the receiving node does with a forward (see proto/cluster.proto, Forward).
actors::broker::forwarded_for forwarded_of(const pb::Forward& f) {
  actors::broker::forwarded_for out;
  if (!f.has_subscribers()) {
    out.every_group = true;
    return out;
  }
  out.subscribers = f.subscribers();
  out.groups.assign(f.groups().begin(), f.groups().end());
  return out;
}

/// Nullptr for a malformed message (bad QoS or topic): dropped with a log line.
actors::message_ptr from_forward(const pb::Forward& f) {
  if (f.qos() > 2 || !proto::mqtt::is_valid_topic_name(f.topic())) {
    return nullptr;
  }
  auto m = std::make_shared<actors::message>();
  m->topic = f.topic();
  m->payload = f.payload();
  m->q = static_cast<proto::mqtt::qos>(f.qos());
  m->retain = f.retain();
  m->from = f.from();
  m->origin = f.origin();
  m->origin_seq = f.origin_seq();
  m->received_at = clock::now();
  auto& p = m->props;
  if (f.has_payload_format_indicator()) {
    p.payload_format_indicator = static_cast<std::uint8_t>(f.payload_format_indicator());
  }
  if (f.has_message_expiry_interval()) {
    p.message_expiry_interval = f.message_expiry_interval();
  }
  if (f.has_content_type()) {
    p.content_type = f.content_type();
  }
  if (f.has_response_topic()) {
    p.response_topic = f.response_topic();
  }
  if (f.has_correlation_data()) {
    p.correlation_data = f.correlation_data();
  }
  for (auto& u : f.user_properties()) {
    p.user_properties.emplace_back(u.key(), u.value());
  }
  return m;
}

void connect(self_ptr self, const std::string& address);

/// Answers the management requests waiting for a join to `address`.
void answer_join(self_ptr self, const std::string& address, unsigned status,
                 const std::string& message) {
  auto it = self->state.joins.find(address);
  if (it == self->state.joins.end()) {
    return;
  }
  for (auto& rp : it->second) {
    rp.deliver(admin_reply{status, message});
  }
  self->state.joins.erase(it);
}

/// Stops dialling `name` as a seed: its advertised address and the addresses that led to it.
void forget_seeds_of(self_ptr self, const std::string& name, const std::string& advertise) {
  auto& st = self->state;
  if (!advertise.empty()) {
    st.view.remove_seed(advertise);
  }
  for (auto it = st.alias.begin(); it != st.alias.end();) {
    if (it->second == name) {
      st.view.remove_seed(it->first);
      it = st.alias.erase(it);
    } else {
      ++it;
    }
  }
}

void apply_claim(self_ptr self, const pb::Claim& c) {
  auto& st = self->state;
  auto& o = st.registry[c.client_id()];
  // Older claims lose; equal stamps (two nodes in the same microsecond) go to the larger node
  // name, so that every node picks the same winner.
  if (c.stamp() < o.stamp || (c.stamp() == o.stamp && c.node() < o.node)) {
    return;
  }
  bool held_here = o.node == st.cfg.name && c.node() != st.cfg.name;
  o.node = c.node();
  o.stamp = c.stamp();
  spdlog::debug("cluster: client {} is on node {}", c.client_id(), c.node());
  if (held_here && c.replaces() != st.cfg.name) {
    // Claimed by a connect that did not know the client was here: exactly one session per
    // client id, and the newest claim wins; the one here ends (its connection is closed).
    spdlog::info("cluster: client {} connected on node {} as well; ending its session here",
                 c.client_id(), c.node());
    if (auto sm = st.ctx->sessions()) {
      caf::anon_send(sm, actors::handover_atom::value, c.client_id(), true);
    }
  }
}

std::uint64_t now_us() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

/// A handshake completed with `h`, which proved the cookie and is `m` (`credit`: it announced
/// flow_credit).
void admit(self_ptr self, const caf::actor& h, const member& m, bool credit) {
  auto& st = self->state;
  auto r = st.view.admit(m);
  if (r == admit_result::stale) {
    spdlog::warn("cluster: refusing node {}: incarnation {} is older than the member's", m.name,
                 m.incarnation);
    pb::Envelope env;
    env.mutable_refused()->set_node(st.cfg.name);
    env.mutable_refused()->set_reason("stale incarnation");
    send_env(self, h, env);
    return;
  }
  if (r == admit_result::same) {
    auto it = st.peers.find(m.name);
    if (it != st.peers.end() && it->second.handle == h) {
      return;  // joined twice (both sides dialled, or a repeated --join): nothing to do
    }
  }
  if (auto it = st.peers.find(m.name); it != st.peers.end()) {
    // A new incarnation (restart) or a new channel to the same node: drop the old one.
    auto purged = st.routes->purge(m.name);
    st.name_by_addr.erase(it->second.handle.address());
    self->demonitor(it->second.handle);
    if (r == admit_result::replaced) {
      spdlog::info("cluster: node {} restarted (incarnation {} -> {}), purged {} routes", m.name,
                   it->second.m.incarnation, m.incarnation, purged);
    }
    st.peers.erase(it);
  }
  auto& np = st.peers[m.name] = peer{h, m, {}, 0, false, 0, {}, nullptr, nullptr, 0};
  np.credit = credit;
  np.out = std::make_shared<peer_out>(st.backlog, m.name);
  np.in = std::make_shared<link_gate>(self->address(), m.name);
  st.name_by_addr[h.address()] = m.name;
  self->monitor(h);
  // Tell it everything it needs: who else is here, our routes, our retained messages.
  pb::Envelope ml;
  auto* list = ml.mutable_members();
  auto* me = list->add_members();
  me->set_node(st.cfg.name);
  me->set_incarnation(st.cfg.incarnation);
  me->set_advertise(st.cfg.advertise);
  for (auto& [n, p] : st.peers) {
    auto* x = list->add_members();
    x->set_node(n);
    x->set_incarnation(p.m.incarnation);
    x->set_advertise(p.m.advertise);
  }
  send_env(self, h, ml);
  pb::Envelope snap;
  auto* s = snap.mutable_route_snapshot();
  s->set_node(st.cfg.name);
  s->set_incarnation(st.cfg.incarnation);
  for (auto& f : st.local_filters) {
    s->add_filters(f);
  }
  send_env(self, h, snap);
  pb::Envelope claims;
  for (auto& [client, o] : st.registry) {
    if (o.node == st.cfg.name) {
      auto* c = claims.mutable_claims()->add_claims();
      c->set_client_id(client);
      c->set_node(o.node);
      c->set_stamp(o.stamp);
    }
  }
  if (claims.claims().claims_size() > 0) {
    send_env(self, h, claims);
  }
  auto retained = st.ctx->retained.match("#");
  if (!retained.empty()) {
    pb::Envelope rs;
    for (auto& msg : retained) {
      fill_forward(*rs.mutable_retained()->add_messages(), *msg);
    }
    send_env(self, h, rs);
  }
  st.ctx->stats.cluster_members.store(st.peers.size() + 1, std::memory_order_relaxed);
  st.joined_once = true;
  spdlog::info("cluster: node {} joined (incarnation {}, {}); members: {}", m.name,
               m.incarnation, m.advertise, members_line(self));
}

/// `name` is gone: purge its routes at once so nothing is forwarded into the void.
void drop_peer(self_ptr self, std::string name, bool left, const std::string& why) {
  auto& st = self->state;
  auto it = st.peers.find(name);
  if (it == st.peers.end()) {
    return;
  }
  auto t0 = clock::now();
  auto purged = st.routes->purge(name);
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - t0).count();
  st.name_by_addr.erase(it->second.handle.address());
  self->demonitor(it->second.handle);
  st.view.remove(name, it->second.m.incarnation, left);
  st.peers.erase(it);
  st.ctx->stats.cluster_members.store(st.peers.size() + 1, std::memory_order_relaxed);
  for (auto r = st.registry.begin(); r != st.registry.end();) {
    r = r->second.node == name ? st.registry.erase(r) : std::next(r);
  }
  for (auto l = st.client_lookups.begin(); l != st.client_lookups.end();) {
    if (l->second.first == name) {
      l->second.second.deliver(caf::make_error(caf::sec::request_receiver_down));
      l = st.client_lookups.erase(l);
    } else {
      ++l;
    }
  }
  // Client listings waiting for it get its name as missing instead of waiting out the timeout.
  for (auto q = st.clients_queries.begin(); q != st.clients_queries.end();) {
    if (q->second.waiting.erase(name) != 0) {
      q->second.out.missing.push_back(name);
    }
    if (q->second.waiting.empty()) {
      q->second.rp.deliver(std::move(q->second.out));
      q = st.clients_queries.erase(q);
    } else {
      ++q;
    }
  }
  if (left) {
    spdlog::info("cluster: node {} left; purged {} routes in {} us; members: {}", name, purged,
                 us, members_line(self));
  } else {
    spdlog::warn("cluster: node {} down ({}); purged {} routes in {} us; members: {}", name, why,
                 purged, us, members_line(self));
  }
}

/// Name of the authenticated member behind the current sender, or nullptr.
const std::string* sender_member(self_ptr self) {
  auto h = caf::actor_cast<caf::actor_addr>(self->current_sender());
  auto it = self->state.name_by_addr.find(h);
  return it == self->state.name_by_addr.end() ? nullptr : &it->second;
}

void on_wire(self_ptr self, const wire_bytes& w) {
  auto& st = self->state;
  auto sender = caf::actor_cast<caf::actor>(self->current_sender());
  if (!sender) {
    return;
  }
  pb::Envelope env;
  if (!env.ParseFromString(w.pb)) {
    spdlog::warn("cluster: dropped an unparsable message ({} bytes)", w.pb.size());
    return;
  }
  switch (env.body_case()) {
    case pb::Envelope::kHello: {
      auto& h = env.hello();
      if (h.node() == st.cfg.name || h.node().empty()) {
        spdlog::error("cluster: refused a node calling itself '{}' ({}): same name as this node",
                      h.node(), h.advertise());
        pb::Envelope r;
        r.mutable_refused()->set_node(st.cfg.name);
        r.mutable_refused()->set_reason("duplicate node name " + h.node());
        send_env(self, sender, r);
        return;
      }
      if (st.left) {
        spdlog::info("cluster: refused node {} ({}): this node left the cluster", h.node(),
                     h.advertise());
        pb::Envelope r;
        r.mutable_refused()->set_node(st.cfg.name);
        r.mutable_refused()->set_reason("node " + st.cfg.name +
                                        " left the cluster (cluster join brings it back)");
        send_env(self, sender, r);
        return;
      }
      pending_in in;
      in.nonce = make_nonce();
      in.m = member{h.node(), h.incarnation(), h.advertise()};
      in.credit = h.flow_credit();
      pb::Envelope r;
      auto* wl = r.mutable_welcome();
      wl->set_flow_credit(true);
      wl->set_node(st.cfg.name);
      wl->set_incarnation(st.cfg.incarnation);
      wl->set_advertise(st.cfg.advertise);
      wl->set_nonce(in.nonce);
      wl->set_proof(cookie_proof(st.cfg.cookie, "welcome", h.nonce(), st.cfg.name));
      auto& ins = st.incoming[sender.address()];
      if (ins.size() >= max_pending_handshakes) {
        ins.erase(ins.begin());
      }
      ins.push_back(std::move(in));
      send_env(self, sender, r);
      return;
    }
    case pb::Envelope::kWelcome: {
      auto it = st.outgoing.find(sender.address());
      if (it == st.outgoing.end() || it->second.empty()) {
        return;
      }
      auto& wl = env.welcome();
      auto& outs = it->second;
      auto match = std::find_if(outs.begin(), outs.end(), [&](const pending_out& o) {
        return proof_equal(wl.proof(), cookie_proof(st.cfg.cookie, "welcome", o.nonce, wl.node()));
      });
      bool ok = match != outs.end();
      auto out = ok ? std::move(*match) : std::move(outs.front());
      outs.erase(ok ? match : outs.begin());
      if (outs.empty()) {
        st.outgoing.erase(it);
      }
      if (wl.node() == st.cfg.name) {
        answer_join(self, out.address, 400, out.address + " is this node's own address");
        return;  // dialled ourselves (a seed that is our own address)
      }
      if (!ok) {
        spdlog::error("cluster: cookie mismatch with node {} at {}: not joining it (check "
                      "cluster.cookie)",
                      wl.node(), out.address);
        pb::Envelope r;
        r.mutable_refused()->set_node(st.cfg.name);
        r.mutable_refused()->set_reason("cookie mismatch");
        send_env(self, sender, r);
        answer_join(self, out.address, 409,
                    "cookie mismatch with node " + wl.node() + " at " + out.address);
        return;
      }
      st.alias[out.address] = wl.node();
      pb::Envelope a;
      a.mutable_auth()->set_node(st.cfg.name);
      a.mutable_auth()->set_incarnation(st.cfg.incarnation);
      a.mutable_auth()->set_proof(cookie_proof(st.cfg.cookie, "auth", wl.nonce(), st.cfg.name));
      send_env(self, sender, a);
      admit(self, sender, member{wl.node(), wl.incarnation(), wl.advertise()}, wl.flow_credit());
      if (st.peers.count(wl.node()) != 0) {
        answer_join(self, out.address, 200, "joined node " + wl.node() + " at " + out.address);
      } else {
        answer_join(self, out.address, 409, "node " + wl.node() + " was refused");
      }
      return;
    }
    case pb::Envelope::kAuth: {
      auto it = st.incoming.find(sender.address());
      if (it == st.incoming.end() || it->second.empty()) {
        return;
      }
      auto& a = env.auth();
      auto& ins = it->second;
      auto match = std::find_if(ins.begin(), ins.end(), [&](const pending_in& i) {
        return a.node() == i.m.name && a.incarnation() == i.m.incarnation &&
               proof_equal(a.proof(), cookie_proof(st.cfg.cookie, "auth", i.nonce, i.m.name));
      });
      bool ok = match != ins.end();
      auto in = ok ? std::move(*match) : std::move(ins.front());
      ins.erase(ok ? match : ins.begin());
      if (ins.empty()) {
        st.incoming.erase(it);
      }
      if (!ok) {
        spdlog::error("cluster: refused node {} ({}): cookie mismatch", in.m.name,
                      in.m.advertise);
        pb::Envelope r;
        r.mutable_refused()->set_node(st.cfg.name);
        r.mutable_refused()->set_reason("cookie mismatch");
        send_env(self, sender, r);
        return;
      }
      admit(self, sender, in.m, in.credit);
      return;
    }
    case pb::Envelope::kRefused: {
      auto it = st.incoming.find(sender.address());
      if (it != st.incoming.end() && !it->second.empty()) {
        // It could not verify our proof: from here, it is the node that is refused.
        auto& in = it->second.front();
        spdlog::error("cluster: refused node {} ({}): {}", in.m.name, in.m.advertise,
                      env.refused().reason());
        it->second.erase(it->second.begin());
        if (it->second.empty()) {
          st.incoming.erase(it);
        }
      } else {
        if (auto o = st.outgoing.find(sender.address()); o != st.outgoing.end()) {
          answer_join(self, o->second.front().address, 409,
                      "node " + env.refused().node() + " refused: " + env.refused().reason());
          o->second.erase(o->second.begin());
          if (o->second.empty()) {
            st.outgoing.erase(o);
          }
        }
        spdlog::error("cluster: node {} refused this node: {}", env.refused().node(),
                      env.refused().reason());
      }
      return;
    }
    default:
      break;
  }
  // Everything else only from authenticated members.
  const std::string* from = sender_member(self);
  if (!from) {
    return;
  }
  switch (env.body_case()) {
    case pb::Envelope::kMembers:
      for (auto& m : env.members().members()) {
        if (m.node() == st.cfg.name || m.advertise().empty()) {
          continue;
        }
        auto known = st.view.find(m.node());
        if (known && known->incarnation >= m.incarnation()) {
          continue;
        }
        connect(self, m.advertise());
      }
      return;
    case pb::Envelope::kRouteDelta: {
      auto& d = env.route_delta();
      if (d.node() != *from || !st.view.is_current(d.node(), d.incarnation())) {
        return;
      }
      st.routes->apply_delta(d.node(), {d.add().begin(), d.add().end()},
                             {d.del().begin(), d.del().end()});
      return;
    }
    case pb::Envelope::kRouteSnapshot: {
      auto& s = env.route_snapshot();
      if (s.node() != *from || !st.view.is_current(s.node(), s.incarnation())) {
        return;
      }
      st.routes->apply_snapshot(s.node(), {s.filters().begin(), s.filters().end()});
      spdlog::debug("cluster: {} routes from {}", s.filters_size(), s.node());
      return;
    }
    case pb::Envelope::kForward:
    case pb::Envelope::kForwards: {
      auto pit = st.peers.find(*from);
      const std::shared_ptr<actors::flow::gate> link =
          pit != st.peers.end() ? pit->second.in : nullptr;
      auto one = [&](const pb::Forward& f) {
        if (auto m = from_forward(f)) {
          actors::broker::dispatch_forwarded(*st.ctx, m, forwarded_of(f), link);
        } else {
          spdlog::warn("cluster: dropped a malformed publish from {}", *from);
        }
      };
      std::uint64_t n = 0;
      if (env.body_case() == pb::Envelope::kForward) {
        one(env.forward());
        n = 1;
      } else {
        for (auto& f : env.forwards().messages()) {
          one(f);
        }
        n = static_cast<std::uint64_t>(env.forwards().messages_size());
      }
      if (pit != st.peers.end()) {
        pit->second.owed += n;
        ack_forwards(self, pit->second);
      }
      return;
    }
    case pb::Envelope::kForwardAck:
      if (auto pit = st.peers.find(*from); pit != st.peers.end()) {
        on_forward_ack(self, pit->second, env.forward_ack().count());
      }
      return;
    case pb::Envelope::kRetained:
      // Messages retained on the peer while we were apart; ours win where both have a topic.
      for (auto& f : env.retained().messages()) {
        auto m = from_forward(f);
        if (!m || !m->retain || !st.ctx->retained.match(m->topic).empty()) {
          continue;
        }
        st.ctx->retained.put(m);
        if (st.ctx->db) {
          st.ctx->db->put_retained(*m);
        }
      }
      return;
    case pb::Envelope::kMoved: {
      // A message for a session that moved here, forwarded by the node it left.
      auto& mv = env.moved();
      auto m = from_forward(mv.msg());
      auto sm = st.ctx->sessions();
      if (!m || !sm || mv.qos() > 2) {
        spdlog::warn("cluster: dropped a malformed moved message from {}", *from);
        return;
      }
      actors::session::delivery d{m, static_cast<proto::mqtt::qos>(mv.qos()), mv.retain(),
                                  {mv.subscription_ids().begin(), mv.subscription_ids().end()}};
      caf::anon_send(sm, actors::moved_msg_atom::value, mv.client_id(), std::move(d));
      return;
    }
    case pb::Envelope::kMoveDone:
      if (auto sm = st.ctx->sessions()) {
        caf::anon_send(sm, actors::move_done_atom::value, env.move_done().client_id(),
                       env.move_done().move_id());
      }
      return;
    case pb::Envelope::kClaim:
      apply_claim(self, env.claim());
      return;
    case pb::Envelope::kClientsQuery: {
      pb::Envelope r;
      auto* reply = r.mutable_clients_reply();
      reply->set_id(env.clients_query().id());
      reply->set_node(st.cfg.name);
      for (auto& c : st.ctx->clients.snapshot()) {
        to_pb(c, *reply->add_clients());
      }
      send_env(self, sender, r);
      return;
    }
    case pb::Envelope::kClientLookup: {
      auto& l = env.client_lookup();
      pb::Envelope r;
      auto* found = r.mutable_client_found();
      found->set_id(l.id());
      if (auto c = st.ctx->clients.find(l.client_id())) {
        found->set_found(true);
        to_pb(*c, *found->mutable_info());
        if (l.kick()) {
          spdlog::info("management: kicking client {} (asked by node {})", l.client_id(), *from);
          caf::anon_send(c->conn, actors::kick_atom::value);
        }
      }
      send_env(self, sender, r);
      return;
    }
    case pb::Envelope::kClientFound: {
      auto& f = env.client_found();
      auto it = st.client_lookups.find(f.id());
      if (it == st.client_lookups.end()) {
        return;
      }
      remote_client out;
      if (f.found()) {
        out.node = *from;
        out.info = from_pb(f.info());
      }
      it->second.second.deliver(std::move(out));
      st.client_lookups.erase(it);
      return;
    }
    case pb::Envelope::kClientsReply: {
      auto& r = env.clients_reply();
      auto q = st.clients_queries.find(r.id());
      if (q == st.clients_queries.end() || q->second.waiting.erase(*from) == 0) {
        return;  // answered after the timeout, or not asked
      }
      node_clients n;
      n.node = *from;
      for (auto& e : r.clients()) {
        n.clients.push_back(from_pb(e));
      }
      q->second.out.nodes.push_back(std::move(n));
      if (q->second.waiting.empty()) {
        q->second.rp.deliver(std::move(q->second.out));
        st.clients_queries.erase(q);
      }
      return;
    }
    case pb::Envelope::kUnclaim: {
      auto& u = env.unclaim();
      auto it = st.registry.find(u.client_id());
      if (u.node() == *from && it != st.registry.end() && it->second.node == u.node()) {
        st.registry.erase(it);
      }
      return;
    }
    case pb::Envelope::kClaims:
      for (auto& c : env.claims().claims()) {
        apply_claim(self, c);
      }
      return;
    case pb::Envelope::kTakeover: {
      auto t = env.takeover();
      auto sm = st.ctx->sessions();
      if (!sm) {
        return;
      }
      spdlog::info("cluster: client {} taken over by node {}", t.client_id(), *from);
      self->request(sm, std::chrono::seconds(5), actors::handover_atom::value, t.client_id(),
                    t.discard(), *from)
          .then(
              [self, sender, t](std::string& bytes) {
                pb::Envelope r;
                auto* x = r.mutable_transfer();
                x->set_id(t.id());
                x->set_client_id(t.client_id());
                x->set_session(std::move(bytes));
                send_env(self, sender, r);
              },
              [self, sender, t](caf::error&) {
                pb::Envelope r;
                r.mutable_transfer()->set_id(t.id());
                r.mutable_transfer()->set_client_id(t.client_id());
                send_env(self, sender, r);
              });
      return;
    }
    case pb::Envelope::kTransfer: {
      auto it = st.takeovers.find(env.transfer().id());
      if (it != st.takeovers.end()) {
        spdlog::info("cluster: session of {} moved here from {} ({} bytes)",
                     env.transfer().client_id(), *from, env.transfer().session().size());
        it->second.deliver(env.transfer().session());
        st.takeovers.erase(it);
      }
      return;
    }
    case pb::Envelope::kLeave: {
      const auto& node = env.leave().node();
      if (node == *from) {
        auto p = st.peers.find(node);
        if (env.leave().forget() && p != st.peers.end()) {
          forget_seeds_of(self, node, p->second.m.advertise);
        }
        drop_peer(self, *from, true, "left");
      } else if (node != st.cfg.name && st.peers.count(node) == 0) {
        // A member removed a stopped node: stop dialling it here too.
        auto lost = st.view.lost().find(node);
        if (lost != st.view.lost().end()) {
          forget_seeds_of(self, node, lost->second);
          st.view.remove(node, 0, true);
          spdlog::info("cluster: node {} removed from the cluster by {}", node, *from);
        }
      }
      return;
    }
    default:
      return;  // a kind from a newer version
  }
}

void connect(self_ptr self, const std::string& address) {
  auto& st = self->state;
  if (st.leaving || st.connecting.count(address) != 0) {
    return;
  }
  auto hp = actors::config::split_host_port(address);
  if (!hp) {
    return;
  }
  st.connecting.insert(address);
  auto mm = st.cfg.tls ? self->system().openssl_manager().actor_handle()
                       : self->system().middleman().actor_handle();
  self->request(mm, std::chrono::seconds(5), caf::connect_atom::value, hp->first, hp->second)
      .then(
          [self, address](const caf::node_id&, caf::strong_actor_ptr& ptr,
                          const std::set<std::string>&) {
            auto& st = self->state;
            st.connecting.erase(address);
            auto h = caf::actor_cast<caf::actor>(ptr);
            if (!h || h == caf::actor_cast<caf::actor>(self) || st.leaving) {
              answer_join(self, address, 400, address + " is this node or the node is stopping");
              return;
            }
            if (std::find(st.cfg.seeds.begin(), st.cfg.seeds.end(), address) !=
                st.cfg.seeds.end()) {
              st.seed_answered = true;
            }
            pending_out out{make_nonce(), address};
            pb::Envelope env;
            auto* hello = env.mutable_hello();
            hello->set_version(protocol_version);
            hello->set_node(st.cfg.name);
            hello->set_incarnation(st.cfg.incarnation);
            hello->set_advertise(st.cfg.advertise);
            hello->set_nonce(out.nonce);
            hello->set_flow_credit(true);
            auto& outs = st.outgoing[h.address()];
            if (outs.size() >= max_pending_handshakes) {
              outs.erase(outs.begin());
            }
            outs.push_back(std::move(out));
            send_env(self, h, env);
          },
          [self, address](caf::error& e) {
            self->state.connecting.erase(address);
            answer_join(self, address, 502,
                        "cannot reach " + address + ": " + self->system().render(e));
            spdlog::debug("cluster: cannot reach {}: {}", address, self->system().render(e));
          });
}

void tick(self_ptr self) {
  auto& st = self->state;
  auto dropped = st.backlog->dropped.load(std::memory_order_relaxed);
  if (dropped != st.dropped_reported) {
    spdlog::warn("cluster: forward queue full (cluster.max_forward_queue): {} publishes not "
                 "forwarded to other nodes",
                 dropped - st.dropped_reported);
    st.dropped_reported = dropped;
  }
  for (auto& a : st.view.reconnect_targets(st.cfg.advertise)) {
    auto al = st.alias.find(a);
    if (al != st.alias.end() && st.peers.count(al->second) != 0) {
      continue;  // a seed spelled differently from the member's advertised address
    }
    connect(self, a);
  }
  self->delayed_send(self, st.cfg.reconnect_interval, tick_atom::value);
}

caf::behavior cluster_impl(self_ptr self, actors::broker::context_ptr ctx, settings cfg,
                           std::shared_ptr<route_view> routes,
                           std::shared_ptr<forward_backlog> backlog) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.view = member_view{cfg.name};
  for (auto& s : cfg.seeds) {
    st.view.add_seed(s);
  }
  st.cfg = std::move(cfg);
  st.routes = std::move(routes);
  st.backlog = std::move(backlog);
  self->set_exception_handler([](caf::scheduled_actor*, std::exception_ptr& ep) -> caf::error {
    // Not expected (no handler throws by design); make it loud: the node is alone from here.
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      spdlog::error("cluster: the cluster actor failed ({}); this node no longer takes part in "
                    "the cluster until restarted",
                    e.what());
    } catch (...) {
      spdlog::error("cluster: the cluster actor failed; this node no longer takes part in the "
                    "cluster until restarted");
    }
    return caf::exit_reason::unhandled_exception;
  });
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    st.outgoing.erase(dm.source);
    st.incoming.erase(dm.source);
    auto it = st.name_by_addr.find(dm.source);
    if (it != st.name_by_addr.end()) {
      auto name = it->second;
      drop_peer(self, name, false, self->system().render(dm.reason));
    }
  });
  return {
      [self](const wire_bytes& w) { on_wire(self, w); },
      [self](route_atom, const std::string& filter, bool added) {
        auto& st = self->state;
        if (added ? !st.local_filters.insert(filter).second : st.local_filters.erase(filter) == 0) {
          return;
        }
        if (st.peers.empty()) {
          return;
        }
        pb::Envelope env;
        auto* d = env.mutable_route_delta();
        d->set_node(st.cfg.name);
        d->set_incarnation(st.cfg.incarnation);
        (added ? d->add_add() : d->add_del())->assign(filter);
        broadcast(self, env);
      },
      [self](link_go_atom, const std::string& node) {
        if (auto it = self->state.peers.find(node); it != self->state.peers.end()) {
          ack_forwards(self, it->second);
        }
      },
      [self](forward_job& job) {
        auto& st = self->state;
        st.backlog->jobs->release(1);
        auto add = [&](peer& p, const node_part* part) {
          // One forward per node, whatever it is for (subscribers and/or groups).
          auto* f = p.batch.mutable_forwards()->add_messages();
          fill_forward(*f, *job.m);
          f->set_subscribers(part != nullptr && part->subscribers);
          if (part != nullptr) {
            for (auto& g : part->groups) {
              f->add_groups(g);
              p.batch_bytes += g.size();
            }
          }
          p.batch_bytes += job.m->topic.size() + job.m->payload.size() + 16;
          if (p.out) {
            p.out->b->add();
          }
          if (p.batch.forwards().messages_size() >= max_batch_messages ||
              p.batch_bytes >= max_batch_bytes) {
            flush(self, p);
          }
        };
        if (job.all) {
          for (auto& [n, p] : st.peers) {
            auto it = job.plan.find(n);
            add(p, it == job.plan.end() ? nullptr : &it->second);
          }
        } else {
          for (auto& [n, part] : job.plan) {
            if (auto it = st.peers.find(n); it != st.peers.end()) {
              add(it->second, &part);
            }
          }
        }
        if (!st.flush_scheduled) {
          // Behind every message already in the mailbox: what arrived together goes together.
          st.flush_scheduled = true;
          self->send(self, flush_atom::value);
        }
      },
      [self](flush_atom) {
        auto& st = self->state;
        st.flush_scheduled = false;
        for (auto& [n, p] : st.peers) {
          flush(self, p);
        }
      },
      [self](tick_atom) { tick(self); },
      [self](actors::claim_atom, const std::string& client_id, bool clean_start) {
        // A client connects here: record and announce the claim, and if another member
        // holds its session, ask for it (or, for a clean start, for its end).
        auto rp = self->make_response_promise();
        auto& st = self->state;
        auto prev = st.registry.find(client_id);
        std::string holder;
        if (prev != st.registry.end() && prev->second.node != st.cfg.name) {
          holder = prev->second.node;
        }
        auto stamp = std::max(now_us(), prev == st.registry.end() ? 0 : prev->second.stamp + 1);
        st.registry[client_id] = cluster_state::owner{st.cfg.name, stamp};
        pb::Envelope c;
        c.mutable_claim()->set_client_id(client_id);
        c.mutable_claim()->set_node(st.cfg.name);
        c.mutable_claim()->set_stamp(stamp);
        c.mutable_claim()->set_replaces(holder);
        broadcast(self, c);
        auto p = st.peers.find(holder);
        if (p == st.peers.end()) {
          rp.deliver(std::string{});
          return rp;
        }
        auto id = st.next_request++;
        st.takeovers.emplace(id, rp);
        pb::Envelope t;
        t.mutable_takeover()->set_id(id);
        t.mutable_takeover()->set_client_id(client_id);
        t.mutable_takeover()->set_discard(clean_start);
        send_env(self, p->second.handle, t);
        self->delayed_send(self, std::chrono::seconds(3), takeover_timeout_atom::value, id);
        return rp;
      },
      [self](actors::moved_msg_atom, const std::string& node, const std::string& client_id,
             actors::session::delivery& d) {
        // From a session that moved to `node`: what still reached it here goes there, in
        // order, behind the SessionTransfer (same link, same order).
        auto& st = self->state;
        auto p = st.peers.find(node);
        if (p == st.peers.end() || !d.msg) {
          return;  // the node is gone: the client reconnects and its session is there
        }
        pb::Envelope env;
        auto* mv = env.mutable_moved();
        mv->set_client_id(client_id);
        fill_forward(*mv->mutable_msg(), *d.msg);
        mv->set_qos(static_cast<std::uint32_t>(d.q));
        mv->set_retain(d.retain);
        for (auto id : d.subscription_ids) {
          mv->add_subscription_ids(id);
        }
        send_env(self, p->second.handle, env);
      },
      [self](actors::move_done_atom, const std::string& node, const std::string& client_id,
             std::uint64_t move_id) {
        auto& st = self->state;
        if (auto p = st.peers.find(node); p != st.peers.end()) {
          pb::Envelope env;
          env.mutable_move_done()->set_client_id(client_id);
          env.mutable_move_done()->set_move_id(move_id);
          send_env(self, p->second.handle, env);
        }
      },
      [self](actors::unclaim_atom, const std::string& client_id) {
        // The client's session ended here: nobody needs to ask us for it any more.
        auto& st = self->state;
        auto it = st.registry.find(client_id);
        if (it == st.registry.end() || it->second.node != st.cfg.name) {
          return;
        }
        st.registry.erase(it);
        pb::Envelope u;
        u.mutable_unclaim()->set_client_id(client_id);
        u.mutable_unclaim()->set_node(st.cfg.name);
        broadcast(self, u);
      },
      [self](cclients_atom) {
        auto& st = self->state;
        auto rp = self->make_response_promise();
        if (st.peers.empty()) {
          rp.deliver(remote_clients{});
          return rp;
        }
        auto id = st.next_request++;
        auto& q = st.clients_queries[id];
        q.rp = rp;
        pb::Envelope e;
        e.mutable_clients_query()->set_id(id);
        for (auto& [n, p] : st.peers) {
          q.waiting.insert(n);
          send_env(self, p.handle, e);
        }
        self->delayed_send(self, clients_query_timeout, clients_timeout_atom::value, id);
        return rp;
      },
      [self](cclient_atom, const std::string& client_id, bool kick) {
        // The registry says which member holds the client's session; that member answers
        // whether the client is connected there.
        auto& st = self->state;
        auto rp = self->make_response_promise();
        auto owner = st.registry.find(client_id);
        auto p = owner == st.registry.end() ? st.peers.end() : st.peers.find(owner->second.node);
        if (p == st.peers.end()) {
          rp.deliver(remote_client{});
          return rp;
        }
        auto id = st.next_request++;
        st.client_lookups.emplace(id, std::make_pair(p->first, rp));
        pb::Envelope e;
        e.mutable_client_lookup()->set_id(id);
        e.mutable_client_lookup()->set_client_id(client_id);
        e.mutable_client_lookup()->set_kick(kick);
        send_env(self, p->second.handle, e);
        self->delayed_send(self, clients_query_timeout, clients_timeout_atom::value, id);
        return rp;
      },
      [self](clients_timeout_atom, std::uint64_t id) {
        auto& st = self->state;
        if (auto l = st.client_lookups.find(id); l != st.client_lookups.end()) {
          spdlog::warn("cluster: no answer from {} about client details within {} s",
                       l->second.first, clients_query_timeout.count());
          l->second.second.deliver(caf::make_error(caf::sec::request_timeout));
          st.client_lookups.erase(l);
          return;
        }
        auto q = st.clients_queries.find(id);
        if (q == st.clients_queries.end()) {
          return;
        }
        std::string names;
        for (auto& n : q->second.waiting) {
          names += (names.empty() ? "" : ", ") + n;
          q->second.out.missing.push_back(n);
        }
        spdlog::warn("cluster: no client list from {} within {} s", names,
                     clients_query_timeout.count());
        q->second.rp.deliver(std::move(q->second.out));
        st.clients_queries.erase(q);
      },
      [self](takeover_timeout_atom, std::uint64_t id) {
        auto it = self->state.takeovers.find(id);
        if (it != self->state.takeovers.end()) {
          spdlog::warn("cluster: no session transfer within 3 s; starting a new session");
          it->second.deliver(std::string{});
          self->state.takeovers.erase(it);
        }
      },
      [self](adv_atom, const std::string& advertise) {
        // Known once the listener is bound; only then start dialling the seeds.
        self->state.cfg.advertise = advertise;
        tick(self);
      },
      [self](cstatus_atom) {
        auto& st = self->state;
        cluster_status out;
        out.self = st.cfg.name;
        out.members.push_back(
            member_status{st.cfg.name, st.cfg.advertise, st.cfg.incarnation, true, true});
        for (auto& [n, p] : st.peers) {
          out.members.push_back(member_status{n, p.m.advertise, p.m.incarnation, true, false});
        }
        for (auto& [n, a] : st.view.lost()) {
          if (st.peers.count(n) == 0) {
            out.members.push_back(member_status{n, a, 0, false, false});
          }
        }
        out.seeds.assign(st.view.seeds().begin(), st.view.seeds().end());
        // Ready once joined (it stays so: a node that loses its peers keeps serving its
        // clients), without seeds, after a leave, or as the first node: no seed accepted
        // a connection for five reconnect intervals.
        auto grace = 5 * st.cfg.reconnect_interval;
        if (st.joined_once || !st.peers.empty()) {
          out.ready_reason = "joined";
        } else if (st.cfg.seeds.empty()) {
          out.ready_reason = "no seeds configured";
        } else if (st.left) {
          out.ready_reason = "left the cluster";
        } else if (!st.seed_answered && clock::now() - st.started >= grace) {
          out.ready_reason = "no seed reachable: running as the first node";
        } else {
          out.ready = false;
          out.ready_reason = st.seed_answered ? "a seed answered but no handshake completed (check "
                                          "cluster.cookie and node names)"
                                        : "joining: waiting for a seed";
        }
        return out;
      },
      [self](cjoin_atom, const std::string& address) {
        auto& st = self->state;
        auto rp = self->make_response_promise();
        if (!actors::config::split_host_port(address)) {
          rp.deliver(admin_reply{400, "expected host:port, got \"" + address + "\""});
        } else if (address == st.cfg.advertise) {
          rp.deliver(admin_reply{400, address + " is this node's own cluster address"});
        } else if (st.leaving) {
          rp.deliver(admin_reply{409, "the node is stopping"});
        } else {
          st.left = false;
          st.joins[address].push_back(rp);
          spdlog::info("cluster: joining {} (management request)", address);
          connect(self, address);
        }
        return rp;
      },
      [self](cdepart_atom) {
        auto& st = self->state;
        for (auto& [n, p] : st.peers) {
          flush(self, p);
        }
        pb::Envelope env;
        env.mutable_leave()->set_node(st.cfg.name);
        env.mutable_leave()->set_incarnation(st.cfg.incarnation);
        env.mutable_leave()->set_forget(true);
        broadcast(self, env);
        auto told = st.peers.size();
        std::vector<std::string> names;
        for (auto& [n, p] : st.peers) {
          names.push_back(n);
        }
        for (auto& n : names) {
          drop_peer(self, n, true, "this node left");
        }
        std::vector<std::string> lost;
        for (auto& [n, a] : st.view.lost()) {
          lost.push_back(n);
        }
        for (auto& n : lost) {
          st.view.remove(n, 0, true);
        }
        st.view.clear_seeds();
        st.alias.clear();
        st.left = true;
        spdlog::info("cluster: left the cluster ({} members told); running alone", told);
        return admin_reply{200, "left the cluster (" + std::to_string(told) + " members told)"};
      },
      [self](cremove_atom, const std::string& node) {
        auto& st = self->state;
        if (node == st.cfg.name) {
          return admin_reply{400, "cannot remove this node itself: use cluster leave"};
        }
        if (st.peers.count(node) != 0) {
          return admin_reply{409, "node " + node + " is running: run cluster leave on it, or "
                                  "stop it, first"};
        }
        auto lost = st.view.lost().find(node);
        if (lost == st.view.lost().end()) {
          return admin_reply{404, "no stopped node " + node + " in this node's view"};
        }
        forget_seeds_of(self, node, lost->second);
        st.view.remove(node, 0, true);
        pb::Envelope env;
        env.mutable_leave()->set_node(node);
        env.mutable_leave()->set_forget(true);
        broadcast(self, env);
        spdlog::info("cluster: node {} removed from the cluster (management request)", node);
        return admin_reply{200, "removed node " + node};
      },
      [self](leave_atom) {
        auto& st = self->state;
        st.leaving = true;
        for (auto& [n, p] : st.peers) {
          flush(self, p);  // publishes accepted before the leave still go out
        }
        pb::Envelope env;
        env.mutable_leave()->set_node(st.cfg.name);
        env.mutable_leave()->set_incarnation(st.cfg.incarnation);
        broadcast(self, env);
        auto n = st.peers.size();
        spdlog::info("cluster: leaving ({} peers told)", n);
        return n;
      },
  };
}

}  // namespace

void configure(caf::actor_system_config& cfg, const actors::config::config& c) {
  if (!c.cluster.enabled()) {
    return;
  }
  cfg.load<caf::io::middleman>();
  cfg.add_message_type<wire_bytes>("tern.cluster.wire");
  cfg.set("middleman.heartbeat-interval", caf::timespan{c.cluster.heartbeat_interval});
  cfg.set("middleman.connection-timeout", caf::timespan{c.cluster.connection_timeout});
  if (c.cluster.tls) {
    cfg.load<caf::openssl::manager>();
    cfg.openssl_certificate = c.cluster.tls_cert;
    cfg.openssl_key = c.cluster.tls_key;
    cfg.openssl_cafile = c.cluster.tls_cafile;
  }
}

struct node_cluster::impl {
  caf::actor_system* sys = nullptr;
  caf::actor actor;
  std::shared_ptr<route_view> routes = std::make_shared<route_view>();
  std::shared_ptr<forward_backlog> backlog;  ///< made at start (sized by the config)
};

node_cluster::node_cluster() : impl_(std::make_unique<impl>()) {}

node_cluster::~node_cluster() {
  stop();
}

std::shared_ptr<route_view> node_cluster::routes() const {
  return impl_->routes;
}

std::optional<std::string> node_cluster::start(caf::actor_system& sys,
                                               const actors::broker::context_ptr& ctx) {
  const auto& cc = ctx->cfg.cluster;
  if (!cc.enabled()) {
    return std::nullopt;
  }
  if (cc.cookie.empty()) {
    return "cluster.cookie: a cookie is required when cluster.listen is set (or --cookie)";
  }
  auto hp = actors::config::split_host_port(cc.listen);
  if (!hp) {
    return "cluster.listen: expected host:port, got \"" + cc.listen + "\"";
  }
  settings s;
  s.name = ctx->cfg.node_name;
  if (s.name == actors::config::config{}.node_name) {
    // Not configured: take the host name (in Kubernetes, the pod name), stable per host.
    char host[256] = {};
    if (gethostname(host, sizeof(host) - 1) == 0 && host[0] != '\0') {
      s.name = std::string("tern@") + host;
    }
  }
  s.incarnation = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count());
  s.cookie = cc.cookie;
  s.seeds = cc.seeds;
  s.reconnect_interval = cc.reconnect_interval;
  s.tls = cc.tls;
  if (cc.tls && (cc.tls_cert.empty() != cc.tls_key.empty() ||
                 (!cc.tls_cert.empty() && cc.tls_cafile.empty()))) {
    return "cluster.tls: set tls_cert, tls_key and tls_cafile together (or none of them)";
  }
  impl_->backlog = std::make_shared<forward_backlog>(cc.max_forward_queue);
  auto a = sys.spawn(cluster_impl, ctx, s, impl_->routes, impl_->backlog);
  auto port = cc.tls ? caf::openssl::publish(a, hp->second, hp->first.c_str(), true)
                     : sys.middleman().publish(a, hp->second, hp->first.c_str(), true);
  if (!port) {
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    return "cluster.listen: cannot listen on " + cc.listen + ": " + sys.render(port.error());
  }
  auto advertise = cc.advertise.empty() ? hp->first + ":" + std::to_string(*port) : cc.advertise;
  // The advertised address is only known once bound (port 0 picks one): hand it over.
  caf::anon_send(a, adv_atom::value, advertise);
  impl_->sys = &sys;
  impl_->actor = a;
  ctx->cluster = a;
  ctx->origin = std::hash<std::string>{}(s.name) | 1;  // never 0 ("no origin")
  auto routes = impl_->routes;
  caf::actor handle = a;
  ctx->route_changed = [handle](const std::string& filter, bool added) {
    caf::anon_send(handle, route_atom::value, filter, added);
  };
  ctx->remote_routes = [routes] { return routes->all(); };
  auto backlog = impl_->backlog;
  std::size_t max_queue = cc.max_forward_queue;
  auto* stats = &ctx->stats;
  auto picker = std::make_shared<node_picker>(
      actors::router::share_strategy_from(ctx->cfg.mqtt5.shared_subscription_strategy));
  ctx->forward_remote = [handle, routes, backlog, max_queue, stats, picker](
                            const actors::message_ptr& m,
                            const std::vector<actors::router::share_key>& served_here,
                            const std::shared_ptr<actors::flow::gate>& publisher) {
    const auto& t = m->topic;
    if (t.rfind("$local/", 0) == 0 || t.rfind("$SYS/", 0) == 0) {
      return;  // node-local by definition
    }
    // Normal subscribers: every node with a matching filter. Shared groups: one node each,
    // none for a group served here.
    auto shared = routes->match_shared(t);
    std::vector<std::string> here;
    if (!shared.empty()) {
      for (auto& k : served_here) {
        here.push_back(*k);
      }
      std::sort(here.begin(), here.end());
    }
    thread_local std::minstd_rand rng{std::random_device{}()};
    auto plan = plan_forward(routes->match(t), shared, here, *picker,
                             static_cast<std::uint32_t>(rng()), m->from);
    if (plan.empty() && !m->retain) {
      return;
    }
    auto& jobs = backlog->jobs;
    auto queued = jobs->add();
    if (queued > static_cast<std::int64_t>(max_queue) && m->q == proto::mqtt::qos::at_most_once) {
      // QoS 0 may be dropped; QoS 1/2 was (or will be) acknowledged: its publisher is paused
      // instead, far below this bound.
      jobs->release(1);
      backlog->dropped.fetch_add(1, std::memory_order_relaxed);
      stats->messages_dropped.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (!plan.empty()) {
      stats->forwarded.fetch_add(1, std::memory_order_relaxed);
    }
    if (publisher) {
      // Flow control: a node whose window is closed, or a cluster actor behind, pauses the
      // publisher as a full session does.
      thread_local std::vector<actors::flow::backlog_ptr> over;
      if (jobs->is_over(queued, backlog->job_marks)) {
        over.push_back(jobs);
      }
      {
        std::lock_guard lock{backlog->mtx};
        for (auto& [node, part] : plan) {
          auto it = backlog->peers.find(node);
          if (it != backlog->peers.end() && it->second->is_over(it->second->size(), peer_marks)) {
            over.push_back(it->second);
          }
        }
      }
      if (!over.empty()) {
        stats->flow_pauses.fetch_add(1, std::memory_order_relaxed);
        publisher->pause_for(over);
        over.clear();
      }
    }
    // Retained messages are replicated to every node (write-through), matching or not.
    caf::anon_send(handle, forward_job{std::move(plan), m, m->retain});
  };
  spdlog::info("cluster: node {} listening on {} (advertised as {}{}), seeds: {}", s.name,
               cc.listen, advertise,
               !cc.tls ? "" : cc.tls_cert.empty() ? ", TLS" : ", TLS with certificates",
               s.seeds.empty() ? "none" : join_names(s.seeds));
  return std::nullopt;
}

void node_cluster::stop() {
  auto& m = *impl_;
  if (!m.actor) {
    return;
  }
  {
    caf::scoped_actor self{*m.sys};
    std::size_t told = 0;
    self->request(m.actor, std::chrono::seconds(1), leave_atom::value)
        .receive([&](std::size_t n) { told = n; }, [&](caf::error&) {});
    if (told > 0) {
      // Let the middleman write the Leave messages before the connections close.
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  caf::anon_send_exit(m.actor, caf::exit_reason::user_shutdown);
  m.actor = caf::actor{};
}

}  // namespace tern::cluster
