// Session actor: subscriptions, delivery through the session state machine, takeover.
#include "actors/session/session_actor.hpp"

#include <deque>
#include <map>
#include <set>

#include <spdlog/spdlog.h>

#include "actors/broker/dispatch.hpp"
#include "actors/broker/handle_message.hpp"
#include "actors/broker/types.hpp"
#include "actors/connection/conn_io.hpp"
#include "actors/hooks/hooks.hpp"
#include "actors/session/backlog.hpp"
#include "actors/session/topic_alias.hpp"
#include "actors/mgmt/queries.hpp"
#include "proto/mqtt/codec.hpp"
#include "proto/mqtt/topic.hpp"

namespace tern::actors::session {

namespace {

namespace mqtt = proto::mqtt;

/// The session's subscriptions (filter -> options), allocated with the first one: an empty
/// std::map is 48 B in every session, and many idle clients subscribe to nothing. Offers the
/// part of std::map's interface the session uses; iterators are const.
class subscriptions {
 public:
  using map = std::map<std::string, router::sub_options, std::less<>>;
  using const_iterator = map::const_iterator;

  bool empty() const { return !m_ || m_->empty(); }
  std::size_t size() const { return m_ ? m_->size() : 0; }
  const_iterator begin() const { return all().begin(); }
  const_iterator end() const { return all().end(); }
  std::size_t count(const std::string& filter) const { return m_ ? m_->count(filter) : 0; }
  const_iterator find(const std::string& filter) const { return all().find(filter); }
  /// `it` must come from find() (so the map exists).
  void erase(const_iterator it) { m_->erase(it); }
  router::sub_options& operator[](const std::string& filter) {
    if (!m_) {
      m_ = std::make_unique<map>();
    }
    return (*m_)[filter];
  }
  void clear() { m_.reset(); }

 private:
  const map& all() const {
    static const map none;
    return m_ ? *m_ : none;
  }

  std::unique_ptr<map> m_;
};

/// Write-ahead of a persistent session (store durability batch or sync); allocated while the
/// session is persistent. Changes are collected while a message is handled and submitted as
/// one transaction at its end (commit). A QoS 2 PUBLISH or PUBREL, and a SUBACK, leave only
/// once what they depend on is written: their bytes, and whatever follows them, wait here.
struct durable_state {
  store::txn txn;        // changes not yet submitted
  change_list journal;   // the session core's changes of messages kept on disk
  std::uint64_t epoch = 0;  // store recoveries when last written whole
  std::uint64_t next_barrier = 1;
  std::deque<std::pair<std::uint64_t, std::string>> held;  // bytes, released once written
  std::chrono::milliseconds will_delay{0};  // of the pending delayed will
  bool is_active = false;  // persistent now (kept once allocated, so tokens stay unique)
};

/// Moving between cluster nodes; allocated only then (see "Moving" below).
struct move_state {
  // New node: the session holds its own deliveries back until move `hold_id` is done.
  bool holding = false;
  std::uint64_t hold_id = 0;
  std::vector<delivery> held;  // in arrival order
  std::set<std::pair<std::uint64_t, std::uint64_t>> forwarded;  // origin, origin_seq
  // Old node: the session was handed over to `to` in move `id`; `drained` once it has
  // dropped its routes and waited for what was on its way.
  std::string to;
  std::uint64_t id = 0;
  bool drained = false;
};

struct session_actor_state {
  explicit session_actor_state() : s(settings{}) {}
  broker::context_ptr ctx;
  std::string client_id;
  session s;
  subscriptions subs;
  caf::actor conn;
  conn_io_ptr io;
  mqtt::protocol_version version = mqtt::protocol_version::v3_1_1;
  bool retry_scheduled = false;
  std::uint32_t max_packet_size = 0;  // the client's Maximum Packet Size, 0: none
  std::chrono::milliseconds expiry{0};  // session lifetime after disconnect
  clock::time_point detached_at{};
  std::unique_ptr<topic_aliases> aliases;  // outbound, per connection; only if the client wants
  message_ptr will;                   // a delayed will, published unless the client returns
  std::uint64_t will_generation = 0;
  flow::backlog_owner backlog;  // back-pressure counter; closed when this state is destroyed
  std::unique_ptr<durable_state> durable;  // while persistent with a durable store
  std::unique_ptr<move_state> move;        // while moving between cluster nodes
  static inline const char* name = "session";
};

using self_ptr = caf::stateful_actor<session_actor_state>*;

/// Runs a session-side hook point (only when something is registered on it).
template <class Fill>
void fire(self_ptr self, hooks::point p, Fill&& fill) {
  hooks::fire(self->state.ctx->hooks.get(), p, [&](hooks::args& a) {
    a.client_id = self->state.client_id;
    fill(a);
  });
}

settings settings_from(const config::session_config& c) {
  settings s;
  s.max_inflight = c.max_inflight;
  s.max_queued = c.max_queued_messages;
  s.queue_qos0 = c.queue_qos0;
  s.retry_interval = c.retry_interval;
  s.max_awaiting_rel = c.max_awaiting_rel;
  s.await_rel_timeout = c.await_rel_timeout;
  return s;
}

void schedule_retry(self_ptr self) {
  auto& st = self->state;
  if (st.retry_scheduled || st.version == mqtt::protocol_version::v5) {
    // [MQTT-4.4.0-1] MQTT 5: resend only on reconnect, never on a live connection.
    return;
  }
  if (auto next = st.s.next_retry()) {
    st.retry_scheduled = true;
    auto delay = std::max(*next - clock::now(), clock::duration(std::chrono::milliseconds(10)));
    self->delayed_send(self, delay, retry_atom::value);
  }
}

/// Fills the v5-only fields of an outgoing PUBLISH: the publisher's properties, this
/// subscriber's subscription identifiers and the expiry time left.
void set_v5_props(const out_publish& p, clock::time_point now, mqtt::publish& pub) {
  const auto& m = *p.d.msg;
  if (m.props.empty() && p.d.subscription_ids.empty()) {
    return;
  }
  pub.props = m.props;
  pub.props.subscription_identifiers = p.d.subscription_ids;
  pub.props.topic_alias.reset();
  if (m.props.message_expiry_interval) {
    // [MQTT-3.3.2-6] the subscriber gets the time that is left.
    auto left = std::chrono::duration_cast<std::chrono::seconds>(m.expires_at() - now).count();
    pub.props.message_expiry_interval = static_cast<std::uint32_t>(std::max<long long>(left, 1));
  }
}

/// The session's backlog, created when it first subscribes (the route entries carry it).
const flow::backlog_ptr& backlog_of(self_ptr self) {
  const auto& cfg = self->state.ctx->cfg;
  return self->state.backlog.get(
      flow::marks_for(cfg.flow.high_watermark, cfg.session.max_queued_messages).low);
}

/// Whether publishers wait for the node's buffer budget while this session holds some of it.
bool holds_budget(self_ptr self) {
  const auto& s = self->state.s;
  return flow::budget()->has_waiters() && s.inflight_size() + s.queue_size() != 0;
}

/// Tells the backlog that `delivered` deliveries left the mailbox and how many wait in the
/// queue now (an offline client's queue does not hold publishers back).
void report_backlog(self_ptr self, std::uint32_t delivered) {
  auto& st = self->state;
  // A closed socket whose detach never comes (its connection actor died) counts as offline.
  bool online = st.io && !st.io->is_closed();
  st.backlog.update(delivered, online ? st.s.queue_size() : 0);
  auto* b = st.backlog.peek();
  if (b != nullptr && online && !b->stall_check && (!b->is_drained() || holds_budget(self))) {
    // Publishers may wait for this client: see that it takes something meanwhile.
    b->stall_check = true;
    self->delayed_send(self, st.ctx->cfg.flow.max_pause, stall_atom::value, b->drains());
  }
}

/// `p` as it may go to the client: within its Maximum Packet Size (without Reason String and
/// User Properties if need be), or "" when it still does not fit and is not sent
/// [MQTT-3.1.2-24].
std::string encode_for_client(self_ptr self, const mqtt::packet& p) {
  auto& st = self->state;
  std::string bytes;
  if (!mqtt::encode_within(p, st.version, st.max_packet_size, bytes)) {
    spdlog::debug("client {}: {} larger than its Maximum Packet Size {}, not sent", st.client_id,
                  mqtt::to_string(mqtt::type_of(p)), st.max_packet_size);
  }
  return bytes;
}

/// flow.max_pause after publishers started to wait for this session: a client that took
/// nothing since (no PUBACK, nothing written) while they still wait holds all of them up; it is
/// closed (MQTT 5: DISCONNECT 0x97), and its session keeps what it has as for any client that
/// went away (bounded by max_queued_messages), so the publishers go on.
void on_stall_check(self_ptr self, std::uint32_t drains) {
  auto& st = self->state;
  auto* b = st.backlog.peek();
  if (b == nullptr) {
    return;
  }
  b->stall_check = false;
  bool online = st.io && !st.io->is_closed();
  const auto& cfg = st.ctx->cfg;
  if (online && b->drains() == drains &&
      ((b->has_waiters() && !b->is_drained()) || holds_budget(self))) {
    st.ctx->stats.stalled_subscribers.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("client {}: took nothing for {} ms while publishers waited for it ({} "
                 "messages in flight, {} queued), closing it (flow.max_pause)",
                 st.client_id, cfg.flow.max_pause.count(), st.s.inflight_size(),
                 st.s.queue_size());
    if (st.version == mqtt::protocol_version::v5) {
      mqtt::disconnect d;
      d.reason = static_cast<std::uint8_t>(mqtt::reason_code::quota_exceeded);
      d.props.reason_string = "not reading while publishers wait";
      st.io->send_last(encode_for_client(self, d), "stalled subscriber (flow.max_pause)");
    } else {
      st.io->close("stalled subscriber (flow.max_pause)");
    }
    return;
  }
  report_backlog(self, 0);  // check again later while publishers still wait
}

store::saved_session make_saved(self_ptr self, bool with_state = true);

/// The write-ahead state while the session is persistent, else null.
durable_state* durable_of(self_ptr self) {
  auto* d = self->state.durable.get();
  return d != nullptr && d->is_active ? d : nullptr;
}

/// Adds the session's own record (subscriptions, expiry, will) to the next commit.
void write_meta(self_ptr self) {
  if (auto* d = durable_of(self)) {
    d->txn.put_meta(make_saved(self, false), static_cast<bool>(self->state.conn));
  }
}

/// Submits what changed since the last commit. Returns the token that bytes written now must
/// wait for: with `barrier`, or when a QoS 2 PUBLISH or a PUBREL was sent (the client acts on
/// them in ways a crash must not undo: exactly once needs their state on disk first).
std::optional<std::uint64_t> commit(self_ptr self, bool barrier = false) {
  auto* d = durable_of(self);
  if (d == nullptr) {
    return std::nullopt;
  }
  auto& st = self->state;
  auto& db = *st.ctx->db;
  if (db.recoveries() != d->epoch) {
    // The store failed meanwhile and may have dropped some changes: write it all anew.
    d->epoch = db.recoveries();
    d->journal.clear();
    d->txn = store::txn{};
    store::store::write_whole(d->txn, make_saved(self), static_cast<bool>(st.conn));
  }
  for (auto& c : d->journal) {
    if (c.k == change::kind::sent) {
      d->txn.put_inflight(st.client_id, c.seq, c.packet_id, c.phase);
      barrier = barrier || c.phase >= 2;
    } else {
      d->txn.del_pending(st.client_id, c.seq);
    }
  }
  d->journal.clear();
  if (!barrier) {
    if (!d->txn.empty()) {
      db.submit(std::move(d->txn));
      d->txn = store::txn{};
    }
    return std::nullopt;
  }
  auto token = d->next_barrier++;
  auto me = caf::actor_cast<caf::actor>(self);
  db.submit(std::move(d->txn),
            [me, token](bool ok) { caf::anon_send(me, stored_atom::value, token, ok); });
  d->txn = store::txn{};
  return token;
}

/// Writes `bytes` to the client, behind whatever waits for the store; with `token`, they
/// wait until it is written.
void send_bytes(self_ptr self, std::string bytes, std::optional<std::uint64_t> token) {
  auto& st = self->state;
  auto* d = st.durable.get();
  if (token) {
    d->held.emplace_back(*token, std::move(bytes));
  } else if (d != nullptr && !d->held.empty()) {
    d->held.back().second += bytes;
  } else if (st.io) {
    st.io->send(std::move(bytes));
  }
}

/// The store wrote what the bytes under `token` (and before) waited for.
void on_stored(self_ptr self, std::uint64_t token, bool ok) {
  auto& st = self->state;
  auto* d = st.durable.get();
  if (d == nullptr) {
    return;
  }
  if (!ok) {
    // Sent all the same: holding them would stall the client. The session is written whole
    // once the store works again (commit).
    spdlog::warn("session {}: the store could not write its QoS 2 state", st.client_id);
  }
  while (!d->held.empty() && d->held.front().first <= token) {
    if (st.io) {
      st.io->send(std::move(d->held.front().second));
    }
    d->held.pop_front();
  }
}

/// Drops bytes written for a connection that is gone (the session state resends them).
void drop_held(self_ptr self) {
  if (auto* d = self->state.durable.get()) {
    d->held.clear();
  }
}

/// Turns write-ahead on or off as the session's expiry and the store say. Turning it on
/// writes the whole session unless it was just read from disk as it is (`on_disk`).
void set_persistent(self_ptr self, bool on, bool on_disk = false) {
  auto& st = self->state;
  on = on && st.ctx->db && st.ctx->db->is_durable();
  if (on == (durable_of(self) != nullptr)) {
    return;
  }
  const auto& b = backlog_of(self);
  if (on) {
    if (!st.durable) {
      st.durable = std::make_unique<durable_state>();
    }
    auto* d = st.durable.get();
    d->is_active = true;
    d->epoch = st.ctx->db->recoveries();
    b->start_after(st.s.max_seq());
    auto numbered = st.s.number([&b] { return b->next_seq(); });
    st.s.set_journal(&d->journal);
    b->set_durable(st.client_id, true);
    if (!on_disk || numbered != 0) {
      store::store::write_whole(d->txn, make_saved(self), static_cast<bool>(st.conn));
    }
    return;
  }
  b->set_durable(st.client_id, false);
  st.s.set_journal(nullptr);
  auto* d = st.durable.get();
  d->is_active = false;
  d->journal.clear();
  d->txn = store::txn{};
  for (auto& h : d->held) {
    if (st.io) {
      st.io->send(std::move(h.second));
    }
  }
  d->held.clear();
  store::txn t;
  t.del_session(st.client_id);
  st.ctx->db->submit(std::move(t));
}

void write_out(self_ptr self, out_list& out) {
  auto& st = self->state;
  report_backlog(self, 0);
  if (out.empty()) {
    commit(self);
    return;
  }
  if (!st.io) {
    out.clear();
    commit(self);
    return;
  }
  std::string bytes;
  std::size_t sent = 0;
  std::vector<std::uint16_t> too_large;
  auto now = clock::now();
  for (auto& o : out) {
    if (auto* p = std::get_if<out_publish>(&o)) {
      if (p->d.q == qos::at_most_once && st.io->is_congested()) {
        // The client is not keeping up: QoS 0 is dropped, never buffered without bound.
        st.ctx->stats.messages_dropped.fetch_add(1, std::memory_order_relaxed);
        fire(self, hooks::point::message_dropped, [&](hooks::args& a) {
          a.topic = p->d.msg->topic;
          a.reason = "slow consumer";
        });
        continue;
      }
      fire(self, hooks::point::message_delivered, [&](hooks::args& a) {
        a.topic = p->d.msg->topic;
        a.qos = static_cast<std::uint8_t>(p->d.q);
      });
      mqtt::publish pub;
      pub.dup = p->dup;
      pub.q = p->d.q;
      pub.retain = p->d.retain;
      pub.packet_id = p->packet_id;
      pub.topic = p->d.msg->topic;
      pub.payload = p->d.msg->payload;
      bool new_alias = false;
      if (st.version == mqtt::protocol_version::v5) {
        set_v5_props(*p, now, pub);
        if (st.aliases) {
          auto use = st.aliases->for_topic(pub.topic);
          new_alias = use.alias != 0 && use.send_topic;
          if (use.alias != 0) {
            pub.props.topic_alias = use.alias;
            if (!use.send_topic) {
              pub.topic.clear();
            }
          }
        }
      }
      auto before = bytes.size();
      mqtt::encode(pub, st.version, bytes);
      if (st.max_packet_size != 0 && bytes.size() - before > st.max_packet_size) {
        // [MQTT-3.1.2-25] larger than the client accepts: discarded as if delivered.
        bytes.resize(before);
        if (new_alias) {
          st.aliases->forget(pub.topic);
        }
        st.ctx->stats.messages_dropped.fetch_add(1, std::memory_order_relaxed);
        fire(self, hooks::point::message_dropped, [&](hooks::args& a) {
          a.topic = p->d.msg->topic;
          a.reason = "larger than the client's Maximum Packet Size";
        });
        if (p->packet_id != 0) {
          too_large.push_back(p->packet_id);
        }
        continue;
      }
      ++sent;
    } else {
      mqtt::pubrel rel;
      rel.packet_id = std::get<out_pubrel>(o).packet_id;
      mqtt::encode(rel, st.version, bytes);
    }
  }
  out.clear();
  st.ctx->stats.messages_sent.fetch_add(sent, std::memory_order_relaxed);
  auto token = commit(self);
  if (!bytes.empty()) {
    send_bytes(self, std::move(bytes), token);
  }
  for (auto id : too_large) {
    st.s.discard(id, now, out);
  }
  if (!out.empty()) {
    write_out(self, out);
    return;
  }
  if (!too_large.empty()) {
    commit(self);
  }
  schedule_retry(self);
}

void deliver_here(self_ptr self, delivery d) {
  auto& st = self->state;
  if (st.io && st.io->is_closed()) {
    // The socket is gone and the detach is on its way: what arrives meanwhile waits for the
    // client's return like any offline message, instead of being written into the void.
    st.s.pause();
  }
  if (auto* dur = durable_of(self)) {
    if (d.seq == 0 && d.q != qos::at_most_once && d.msg) {
      // Not written by a publisher (retained, from another node or a bridge, a shared
      // message handed on): the session writes it itself.
      d.seq = backlog_of(self)->next_seq();
      dur->txn.put_pending(st.client_id, d.seq, d);
    }
  } else if (d.seq != 0) {
    // Written by a publisher that saw this session persistent just before it stopped being.
    store::txn t;
    t.del_pending(st.client_id, d.seq);
    st.ctx->db->submit(std::move(t));
    d.seq = 0;
  }
  out_list out;
  auto topic = self->state.ctx->hooks && self->state.ctx->hooks->has(hooks::point::message_dropped)
                   ? d.msg->topic
                   : std::string();
  bool online = st.s.is_online();
  auto q = d.q;
  auto r = st.s.deliver(std::move(d), clock::now(), out);
  if (r == deliver_result::dropped || r == deliver_result::queued_evicted ||
      r == deliver_result::expired) {
    st.ctx->stats.messages_dropped.fetch_add(1, std::memory_order_relaxed);
    fire(self, hooks::point::message_dropped, [&](hooks::args& a) {
      a.topic = topic;
      // Only an offline queue drops QoS 1/2 (a connected client's publishers are paused).
      a.reason = r == deliver_result::expired                   ? "expired"
                 : r == deliver_result::queued_evicted && !online ? "offline queue full"
                 : q == qos::at_most_once && !online             ? "QoS 0 while offline"
                                                                 : "queue full";
    });
  }
  write_out(self, out);
}

// ---------------------------------------------------------------------------------------------
// Moving: a client takes its session over on another node (cluster). This node hands the
// state over and keeps the session's routes for `move_linger`, forwarding to the new node
// whatever still reaches it (the other nodes learn of the new node's routes meanwhile); then
// it drops its routes, forwards what was already on its way for `move_drain`, says it is
// done and ends. The new node's session holds its own deliveries back until then (at most
// `move_hold`): it delivers the forwarded ones as they come, then the held ones, skipping
// those it got both ways (same origin and number), so that each publisher's messages arrive
// once and in order. A session that moves on while still holding keeps holding: it forwards
// what it is forwarded at once and what it held once its own predecessor is done, and says
// it is done only after that.

constexpr auto move_linger = std::chrono::milliseconds(2000);
constexpr auto move_drain = std::chrono::milliseconds(1000);
constexpr auto move_hold = std::chrono::milliseconds(10000);
std::uint64_t next_move_id = 0;  // only this file's actors touch it, one at a time each

void unroute_all(self_ptr self);

/// Drops the record a publisher wrote for a delivery this session no longer keeps on disk.
void drop_stray_record(self_ptr self, delivery& d) {
  if (d.seq != 0 && durable_of(self) == nullptr) {
    store::txn t;
    t.del_pending(self->state.client_id, d.seq);
    self->state.ctx->db->submit(std::move(t));
    d.seq = 0;
  }
}

/// A delivery that is due: to the client here, or on to the node the session went to.
void pass_on(self_ptr self, delivery d) {
  auto& st = self->state;
  if (st.move && !st.move->to.empty()) {
    drop_stray_record(self, d);
    self->send(st.ctx->cluster, moved_msg_atom::value, st.move->to, st.client_id,
               std::move(d));
    return;
  }
  deliver_here(self, std::move(d));
}

/// Old node, once its timers ran out and it holds nothing back: tells the new node it is
/// done, and ends.
void finish_move(self_ptr self) {
  auto& st = self->state;
  self->send(st.ctx->cluster, move_done_atom::value, st.move->to, st.client_id, st.move->id);
  self->quit();
}

/// What the session held back, after what its predecessor forwarded (which is done now, or
/// did not finish in time).
void end_hold(self_ptr self) {
  auto& st = self->state;
  if (!st.move || !st.move->holding) {
    return;
  }
  auto& m = *st.move;
  m.holding = false;
  auto held = std::move(m.held);
  std::size_t twice = 0;
  for (auto& d : held) {
    if (d.msg && d.msg->origin != 0 &&
        m.forwarded.count({d.msg->origin, d.msg->origin_seq}) != 0) {
      ++twice;  // came from the old node too, and was passed on then
      if (auto* dur = durable_of(self); dur != nullptr && d.seq != 0) {
        dur->txn.del_pending(st.client_id, d.seq);
      }
      continue;
    }
    pass_on(self, std::move(d));
  }
  commit(self);
  spdlog::debug("session of {}: moved; {} held back, {} forwarded, {} came both ways",
                st.client_id, held.size(), m.forwarded.size(), twice);
  m.forwarded.clear();
  if (m.to.empty()) {
    st.move.reset();
  } else if (m.drained) {
    finish_move(self);
  }
}

void deliver(self_ptr self, delivery d) {
  auto& st = self->state;
  if (st.move && st.move->holding) {
    st.move->held.push_back(std::move(d));
    return;
  }
  pass_on(self, std::move(d));
}

/// A message the node the session came from forwarded.
void on_moved_msg(self_ptr self, delivery& d) {
  auto& st = self->state;
  if (st.move && st.move->holding) {
    if (d.msg && d.msg->origin != 0) {
      st.move->forwarded.emplace(d.msg->origin, d.msg->origin_seq);
    }
    pass_on(self, std::move(d));
    return;
  }
  deliver(self, std::move(d));  // holding no more
}

/// New node: hold back own deliveries until move `id` is done.
void on_hold(self_ptr self, std::uint64_t id) {
  auto& st = self->state;
  st.move = std::make_unique<move_state>();
  st.move->holding = true;
  st.move->hold_id = id;
  self->delayed_send(self, move_hold, move_step_atom::value, id, std::uint8_t{0});
}

void on_move_done(self_ptr self, std::uint64_t id) {
  if (self->state.move && self->state.move->hold_id == id) {
    end_hold(self);
  }
}

/// Step 0: the hold of move `id` timed out; 1 and 2: the old node's steps of move `id`.
void on_move_step(self_ptr self, std::uint64_t id, std::uint8_t step) {
  auto& st = self->state;
  if (!st.move) {
    return;
  }
  auto& m = *st.move;
  if (step == 0) {
    if (m.holding && m.hold_id == id) {
      spdlog::warn("session of {}: the node it moved from did not finish within {} s",
                   st.client_id, move_hold.count() / 1000);
      end_hold(self);
    }
    return;
  }
  if (m.to.empty() || m.id != id) {
    return;
  }
  if (step == 1) {
    unroute_all(self);
    self->delayed_send(self, move_drain, move_step_atom::value, id, std::uint8_t{2});
    return;
  }
  m.drained = true;
  if (!m.holding) {
    finish_move(self);
  }
}

void unroute_all(self_ptr self) {
  auto& st = self->state;
  if (st.subs.empty()) {
    return;
  }
  std::vector<std::string> filters;
  filters.reserve(st.subs.size());
  for (auto& kv : st.subs) {
    filters.push_back(kv.first);
  }
  st.subs.clear();
  self->send(st.ctx->router(), del_route_atom::value, std::move(filters),
             caf::actor_cast<caf::actor>(self));
}

/// Gives this session's undelivered messages of shared subscription `key` (all shared
/// subscriptions when null: the session ends) to other members of their groups
/// (session::take_shared says which).
void hand_back_shared(self_ptr self, const std::string* key) {
  auto& st = self->state;
  auto taken = st.s.take_shared(key, key == nullptr);
  report_backlog(self, 0);
  auto me = caf::actor_cast<caf::actor>(self);
  std::size_t lost = 0;
  for (auto& d : taken) {
    if (!broker::redispatch_shared(*st.ctx, me, std::move(d))) {
      ++lost;
    }
  }
  if (!taken.empty()) {
    spdlog::debug("session {}: {} shared messages handed to other members, {} without one",
                  st.client_id, taken.size() - lost, lost);
  }
  if (lost != 0) {
    st.ctx->stats.messages_dropped.fetch_add(lost, std::memory_order_relaxed);
  }
}

void publish_will(self_ptr self) {
  auto& st = self->state;
  if (st.will) {
    auto w = std::move(st.will);
    spdlog::debug("session {}: publishing delayed will on {}", st.client_id, w->topic);
    broker::dispatch(*st.ctx, w);
    write_meta(self);
    commit(self);
  }
}

std::uint8_t failure_code(self_ptr self, mqtt::reason_code rc) {
  return self->state.version == mqtt::protocol_version::v5 ? static_cast<std::uint8_t>(rc) : 0x80;
}

/// `denied`: per filter, 0 or the failure code the connection's ACL check decided.
void on_subscribe(self_ptr self, mqtt::subscribe& p, const std::vector<std::uint8_t>& denied = {}) {
  auto& st = self->state;
  std::size_t index = 0;
  mqtt::suback ack;
  ack.packet_id = p.packet_id;
  route_adds adds;
  std::vector<std::pair<std::string, std::uint8_t>> retained_for;  // filter, retain handling
  const auto& cfg = st.ctx->cfg;
  for (auto& sub : p.subscriptions) {
    if (auto i = index++; i < denied.size() && denied[i] != 0) {
      ack.reasons.push_back(denied[i]);
      continue;
    }
    auto parsed = mqtt::parse_filter(sub.filter);
    if (!parsed || !mqtt::is_valid_topic_filter(parsed->filter, cfg.mqtt.max_topic_levels)) {
      ack.reasons.push_back(failure_code(self, mqtt::reason_code::topic_filter_invalid));
      continue;
    }
    bool exists = st.subs.count(sub.filter) != 0;
    if (!exists && cfg.session.max_subscriptions != 0 &&
        st.subs.size() >= cfg.session.max_subscriptions) {
      ack.reasons.push_back(failure_code(self, mqtt::reason_code::quota_exceeded));
      continue;
    }
    router::sub_options opts;
    opts.max_qos = std::min(sub.max_qos, qos::exactly_once);
    opts.no_local = sub.no_local;
    opts.retain_as_published = sub.retain_as_published;
    opts.retain_handling = sub.retain_handling;
    if (!p.props.subscription_identifiers.empty()) {
      opts.subscription_id = p.props.subscription_identifiers.front();
    }
    st.subs[sub.filter] = opts;
    adds.emplace_back(sub.filter, opts);
    fire(self, hooks::point::session_subscribed, [&](hooks::args& a) {
      a.topic = sub.filter;
      a.qos = static_cast<std::uint8_t>(opts.max_qos);
    });
    ack.reasons.push_back(static_cast<std::uint8_t>(opts.max_qos));
    // [MQTT-3.8.4-4] no retained messages for a shared subscription.
    if (!parsed->share_group &&
        (sub.retain_handling == 0 || (sub.retain_handling == 1 && !exists))) {
      retained_for.emplace_back(sub.filter, sub.retain_handling);
    }
  }
  auto finish = [self, ack = std::move(ack), retained_for = std::move(retained_for)]() {
    auto& st = self->state;
    // The retained messages are looked up before the SUBACK is written: a message the client
    // publishes once it has the SUBACK reaches it live, never a second time as retained.
    std::vector<delivery> retained;
    for (auto& [filter, rh] : retained_for) {
      auto opts = st.subs.find(filter);
      if (opts == st.subs.end()) {
        continue;
      }
      for (auto& m : st.ctx->retained.match(filter)) {
        delivery d{m, std::min(m->q, opts->second.max_qos), true, {}, {}};
        if (opts->second.subscription_id != 0) {
          d.subscription_ids.push_back(opts->second.subscription_id);
        }
        retained.push_back(std::move(d));
      }
    }
    // A persistent session's SUBACK waits until its subscriptions are on disk.
    write_meta(self);
    auto token = commit(self, durable_of(self) != nullptr);
    if (st.io) {
      send_bytes(self, encode_for_client(self, ack), token);
    }
    // [MQTT-3.3.1-8] retained messages go out with RETAIN set, after the SUBACK.
    for (auto& d : retained) {
      deliver(self, std::move(d));
    }
  };
  if (adds.empty()) {
    finish();
    return;
  }
  // await: no message is delivered, and no later packet handled, before the routes exist.
  self->request(st.ctx->router(), caf::infinite, add_route_atom::value, std::move(adds),
                caf::actor_cast<caf::actor>(self), backlog_of(self))
      .await([finish](bool) { finish(); });
}

void on_unsubscribe(self_ptr self, mqtt::unsubscribe& p) {
  auto& st = self->state;
  mqtt::unsuback ack;
  ack.packet_id = p.packet_id;
  std::vector<std::string> dels;
  for (auto& f : p.filters) {
    auto it = st.subs.find(f);
    if (it == st.subs.end()) {
      ack.reasons.push_back(static_cast<std::uint8_t>(mqtt::reason_code::no_subscription_existed));
      continue;
    }
    st.subs.erase(it);
    dels.push_back(f);
    if (f.compare(0, 7, "$share/") == 0 || f.compare(0, 7, "$queue/") == 0) {
      hand_back_shared(self, &f);
    }
    ack.reasons.push_back(static_cast<std::uint8_t>(mqtt::reason_code::success));
  }
  auto finish = [self, ack = std::move(ack)] {
    auto& st = self->state;
    write_meta(self);
    auto token = commit(self, durable_of(self) != nullptr);
    if (st.io) {
      send_bytes(self, encode_for_client(self, ack), token);
    }
  };
  if (dels.empty()) {
    finish();
    return;
  }
  self->request(st.ctx->router(), caf::infinite, del_route_atom::value, std::move(dels),
                caf::actor_cast<caf::actor>(self))
      .await([finish](bool) { finish(); });
}

open_reply on_attach(self_ptr self, open_request& req, bool present) {
  auto& st = self->state;
  if (st.conn && st.conn != req.conn) {
    // [MQTT-3.1.4-2] the existing connection of this client id is closed.
    self->send(st.conn, kick_atom::value);
  }
  st.conn = req.conn;
  st.io = req.io;
  st.version = req.version;
  st.expiry = req.expiry;
  st.max_packet_size = req.max_packet_size;
  st.aliases.reset();
  if (req.topic_alias_maximum != 0) {
    st.aliases = std::make_unique<topic_aliases>(req.topic_alias_maximum);
  }
  st.s.set_receive_maximum(req.receive_maximum);
  if (st.will) {
    // [MQTT-3.1.3-9] the client is back before its will delay passed: no will.
    st.will.reset();
    ++st.will_generation;
  }
  drop_held(self);  // written for the connection before
  set_persistent(self, st.expiry.count() != 0);
  write_meta(self);  // connected; the next commit takes it
  mqtt::connack ack;
  ack.session_present = present && st.version != mqtt::protocol_version::v3_1;  // 3.1: reserved
  if (st.version == mqtt::protocol_version::v5) {
    ack.props = std::move(req.connack_props);
  }
  std::string bytes;
  mqtt::encode(ack, st.version, bytes);
  st.io->send_connack(std::move(bytes), st.version == mqtt::protocol_version::v5);
  out_list out;
  st.s.resume(clock::now(), out);
  write_out(self, out);
  return open_reply{caf::actor_cast<caf::actor>(self), present};
}

store::saved_session make_saved(self_ptr self, bool with_state) {
  auto& st = self->state;
  store::saved_session saved;
  saved.client_id = st.client_id;
  saved.version = st.version;
  saved.expiry = st.expiry;
  saved.expiry_left = st.expiry;
  if (!st.conn) {
    auto away = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() -
                                                                      st.detached_at);
    saved.expiry_left = away < st.expiry ? st.expiry - away : std::chrono::milliseconds(1);
  }
  saved.subscriptions.assign(st.subs.begin(), st.subs.end());
  if (st.will) {
    saved.will = st.will;
    if (st.durable) {
      saved.will_delay = st.durable->will_delay;
    }
  }
  if (with_state) {
    saved.state = st.s.save();
  }
  return saved;
}

void save(self_ptr self) {
  auto& st = self->state;
  if (st.expiry.count() == 0 || !st.ctx->db) {
    return;
  }
  st.ctx->db->save_session(make_saved(self));
}

void restore(self_ptr self, store::saved_session& saved, bool from_disk) {
  auto& st = self->state;
  st.version = saved.version;
  st.expiry = saved.expiry.count() != 0 ? saved.expiry : st.ctx->cfg.session.expiry_interval;
  st.detached_at = clock::now();
  st.s.restore(std::move(saved.state), clock::now());
  route_adds adds;
  for (auto& [filter, opts] : saved.subscriptions) {
    st.subs[filter] = opts;
    adds.emplace_back(filter, opts);
  }
  set_persistent(self, st.expiry.count() != 0, from_disk);
  if (saved.will) {
    // The client was away when the node stopped (or is now, after a crash): its will is
    // published after the delay unless it comes back first.
    st.will = saved.will;
    if (st.durable) {
      st.durable->will_delay = saved.will_delay;
    }
    self->delayed_send(self, saved.will_delay, will_atom::value, ++st.will_generation);
  }
  commit(self);
  if (!adds.empty()) {
    // await: the manager's ready_atom (the node opens its listeners after it) and every
    // delivery wait until the routes exist, so nothing published after a restart misses
    // this session.
    self->request(st.ctx->router(), caf::infinite, add_route_atom::value, std::move(adds),
                  caf::actor_cast<caf::actor>(self), backlog_of(self))
        .await([](bool) {});
  }
}

void on_detach(self_ptr self, const caf::actor& conn) {
  auto& st = self->state;
  if (st.conn == conn) {
    st.conn = caf::actor{};
    st.io.reset();
    st.s.pause();
    st.detached_at = clock::now();
    report_backlog(self, 0);
    drop_held(self);
    write_meta(self);  // away from now on: the expiry counts from here
    commit(self);
  }
}

/// The client acknowledged something: it is not stalled (see on_stall_check).
void note_progress(self_ptr self) {
  if (auto* b = self->state.backlog.peek()) {
    b->progress();
  }
}

void on_puback(self_ptr self, std::uint16_t id) {
  fire(self, hooks::point::message_acked, [&](hooks::args& a) { a.qos = 1; });
  note_progress(self);
  out_list out;
  self->state.s.on_puback(id, clock::now(), out);
  write_out(self, out);
}

void on_pubrec(self_ptr self, std::uint16_t id) {
  auto& st = self->state;
  note_progress(self);
  out_list out;
  if (!st.s.on_pubrec(id, clock::now(), out) && st.version == mqtt::protocol_version::v5 &&
      st.io) {
    // Unknown id: answer PUBREL 0x92 so the client can finish its side.
    mqtt::pubrel rel;
    rel.packet_id = id;
    rel.reason = static_cast<std::uint8_t>(mqtt::reason_code::packet_identifier_not_found);
    st.io->send(mqtt::encode(rel, st.version));
  }
  write_out(self, out);
}

/// PUBREC with a reason code of 0x80 or more (MQTT 5): the client will not take the message.
void on_pubrec_failed(self_ptr self, std::uint16_t id) {
  note_progress(self);
  out_list out;
  self->state.s.on_pubrec_failed(id, clock::now(), out);
  write_out(self, out);
}

void on_pubcomp(self_ptr self, std::uint16_t id) {
  fire(self, hooks::point::message_acked, [&](hooks::args& a) { a.qos = 2; });
  note_progress(self);
  out_list out;
  self->state.s.on_pubcomp(id, clock::now(), out);
  write_out(self, out);
}

void on_retry(self_ptr self) {
  auto& st = self->state;
  st.retry_scheduled = false;
  if (st.version == mqtt::protocol_version::v5) {
    return;  // scheduled for an MQTT 3.x connection the client has since replaced
  }
  out_list out;
  st.s.retry(clock::now(), out);
  write_out(self, out);
  schedule_retry(self);
}

/// Taken over by another node: it gets our state, our client and routes go.
/// Hands the state over to another node. In a cluster (`node` set) the session then
/// forwards there what still reaches it here (see "Moving"); else it ends at once.
std::string on_handover(self_ptr self, const std::string& node) {
  auto& st = self->state;
  bool cluster = !node.empty() && st.ctx->cluster;
  if (!cluster) {
    end_hold(self);  // what it held is its state now
  }
  // Unique in the cluster: this node's origin stamp and a number of its own.
  auto move_id = (st.ctx->origin & ~std::uint64_t{0xFFFFFFFF}) | (++next_move_id & 0xFFFFFFFF);
  auto saved = make_saved(self);  // without what it holds back: that follows, forwarded
  saved.move_id = cluster ? move_id : 0;
  auto bytes = store::store::encode(saved);
  if (st.conn) {
    self->send(st.conn, kick_atom::value);
  }
  set_persistent(self, false);  // the other node keeps it now
  if (!cluster) {
    unroute_all(self);
    self->quit();
    return bytes;
  }
  st.will = nullptr;  // the other node has it too
  ++st.will_generation;
  if (!st.move) {
    st.move = std::make_unique<move_state>();
  }
  st.move->to = node;
  st.move->id = move_id;
  self->delayed_send(self, move_linger, move_step_atom::value, move_id, std::uint8_t{1});
  return bytes;
}

mgmt::session_details on_sinfo(self_ptr self) {
  auto& st = self->state;
  mgmt::session_details d;
  d.client_id = st.client_id;
  d.is_connected = static_cast<bool>(st.conn);
  d.inflight = st.s.inflight_size();
  d.max_inflight = st.ctx->cfg.session.max_inflight;
  d.queued = st.s.queue_size();
  d.awaiting_rel = st.s.awaiting_rel_size();
  d.expiry_ms = st.expiry.count();
  for (auto& [filter, opts] : st.subs) {
    d.subscriptions.emplace_back(filter, static_cast<std::uint8_t>(opts.max_qos));
  }
  return d;
}

void on_terminate(self_ptr self) {
  auto& st = self->state;
  if (st.conn) {
    self->send(st.conn, kick_atom::value);
  }
  unroute_all(self);
  // [MQTT-3.1.2-8] a delayed will is published when the session ends first.
  publish_will(self);
  hand_back_shared(self, nullptr);
  set_persistent(self, false);
  fire(self, hooks::point::session_terminated, [](hooks::args& a) { a.reason = "ended"; });
  self->quit();
}

void on_will(self_ptr self, message_ptr& w, std::chrono::milliseconds delay,
             const caf::actor& from) {
  auto& st = self->state;
  if (st.conn && st.conn != from) {
    // A new connection took the session over before this one closed: the client is
    // back, so the delayed will is already cancelled [MQTT-3.1.3-9].
    return;
  }
  st.will = std::move(w);
  if (st.durable) {
    st.durable->will_delay = delay;
  }
  write_meta(self);
  commit(self);
  self->delayed_send(self, delay, will_atom::value, ++st.will_generation);
}

/// The session's control messages, as the actor's default handler (every message the
/// behavior does not match comes here). A plain function: it costs no memory per actor.
caf::result<caf::message> on_control(caf::scheduled_actor* ptr, caf::message_view& x) {
  auto self = static_cast<self_ptr>(ptr);
  using broker::handle;
  auto& xs = x.content();
  caf::message reply;
  // Most frequent first: the acks of QoS 1 deliveries.
  if (handle(xs, reply, [self](puback_atom, std::uint16_t id) { on_puback(self, id); }) ||
      handle(xs, reply, [self](attach_atom, open_request& req, bool present) {
        return on_attach(self, req, present);
      }) ||
      handle(xs, reply,
             [self](detach_atom, const caf::actor& conn) { on_detach(self, conn); }) ||
      handle(xs, reply, [self](pubrec_atom, std::uint16_t id) { on_pubrec(self, id); }) ||
      handle(xs, reply,
             [self](pubrec_atom, std::uint16_t id, bool) { on_pubrec_failed(self, id); }) ||
      handle(xs, reply, [self](pubcomp_atom, std::uint16_t id) { on_pubcomp(self, id); }) ||
      handle(xs, reply,
             [self](await_rel_atom, std::uint16_t id) -> std::uint8_t {
               return static_cast<std::uint8_t>(self->state.s.await_rel(id, clock::now()));
             }) ||
      handle(xs, reply, [self](release_atom, std::uint16_t id) { self->state.s.release(id); }) ||
      handle(xs, reply,
             [self](release_atom, std::uint16_t id, bool) -> bool {
               return self->state.s.release(id);
             }) ||
      handle(xs, reply, [self](subscribe_atom, mqtt::subscribe& p) { on_subscribe(self, p); }) ||
      handle(xs, reply,
             [self](subscribe_atom, mqtt::subscribe& p, const std::vector<std::uint8_t>& denied) {
               on_subscribe(self, p, denied);
             }) ||
      handle(xs, reply, [self](unsub_atom, mqtt::unsubscribe& p) { on_unsubscribe(self, p); }) ||
      handle(xs, reply, [self](retry_atom) { on_retry(self); }) ||
      handle(xs, reply, [self](stall_atom, std::uint32_t n) { on_stall_check(self, n); }) ||
      handle(xs, reply,
             [self](handover_atom, const std::string& node) { return on_handover(self, node); }) ||
      handle(xs, reply, [self](hold_atom, std::uint64_t id) { on_hold(self, id); }) ||
      handle(xs, reply, [self](moved_msg_atom, delivery& d) { on_moved_msg(self, d); }) ||
      handle(xs, reply,
             [self](move_done_atom, std::uint64_t id) { on_move_done(self, id); }) ||
      handle(xs, reply,
             [self](move_step_atom, std::uint64_t id, std::uint8_t step) {
               on_move_step(self, id, step);
             }) ||
      handle(xs, reply, [self](mgmt::sinfo_atom) { return on_sinfo(self); }) ||
      handle(xs, reply, [](ready_atom) { return true; }) ||
      handle(xs, reply, [self](terminate_atom) { on_terminate(self); }) ||
      handle(xs, reply,
             [self](will_atom, message_ptr& w, std::chrono::milliseconds delay,
                    const caf::actor& from) { on_will(self, w, delay, from); }) ||
      handle(xs, reply,
             [self](will_atom, std::uint64_t generation) {
               if (generation == self->state.will_generation) {
                 publish_will(self);
               }
             }) ||
      handle(xs, reply,
             [self](stored_atom, std::uint64_t token, bool ok) { on_stored(self, token, ok); }) ||
      handle(xs, reply, [self](set_expiry_atom, std::chrono::milliseconds expiry) {
        self->state.expiry = expiry;
        set_persistent(self, expiry.count() != 0);
        write_meta(self);
        commit(self);
      })) {
    return reply;
  }
  return caf::print_and_drop(ptr, x);
}

caf::behavior session_impl(caf::stateful_actor<session_actor_state>* self,
                           broker::context_ptr ctx, std::string client_id,
                           std::optional<store::saved_session> restored, bool from_disk) {
  self->state.s = session(settings_from(ctx->cfg.session));
  self->state.ctx = std::move(ctx);
  self->state.client_id = std::move(client_id);
  if (restored) {
    restore(self, *restored, from_disk);
  }
  self->set_exit_handler([self](caf::exit_msg& em) {
    // Node shutdown: a persistent session outlives the process. Written ahead, only its
    // own record changes (away from now on); else it is written whole now.
    auto& st = self->state;
    if (st.move && !st.move->to.empty()) {
      self->quit(em.reason);  // handed over: another node has it
      return;
    }
    if (durable_of(self) != nullptr) {
      st.conn = caf::actor{};
      st.detached_at = clock::now();
      write_meta(self);
      commit(self);
    } else {
      save(self);
    }
    self->quit(em.reason);
  });
  self->set_exception_handler([self](caf::scheduled_actor*, std::exception_ptr& ep) -> caf::error {
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      spdlog::error("session {} failed: {}", self->state.client_id, e.what());
    } catch (...) {
      spdlog::error("session {} failed", self->state.client_id);
    }
    // Last words: nobody may route to a dead session; its client must reconnect.
    unroute_all(self);
    hand_back_shared(self, nullptr);
    if (self->state.conn) {
      self->send(self->state.conn, kick_atom::value);
    }
    return caf::exit_reason::unhandled_exception;
  });
  // Only deliveries are in the behavior: CAF 0.17 allocates every handler of a behavior per
  // actor (about 40 B each), so acks and control messages go to the default handler, a
  // plain function that std::function stores inline (see on_control).
  self->set_default_handler(on_control);
  return {
      [=](deliver_atom, delivery& d) {
        deliver(self, std::move(d));
        report_backlog(self, 1);  // counted by the sender (broker::dispatch)
      },
  };
}

}  // namespace

caf::actor spawn_session(caf::local_actor* parent, const broker::context_ptr& ctx,
                         const std::string& client_id,
                         std::optional<store::saved_session> restored, bool from_disk) {
  return parent->spawn<caf::monitored>(session_impl, ctx, client_id, std::move(restored),
                                       from_disk);
}

}  // namespace tern::actors::session
