// Session manager: the client id registry; decides when sessions start, resume and end.
#include "actors/session/session_manager.hpp"

#include <algorithm>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include <spdlog/spdlog.h>

#include "actors/broker/types.hpp"
#include "actors/hooks/hooks.hpp"
#include "actors/mgmt/queries.hpp"
#include "actors/session/session_actor.hpp"

namespace tern::actors::session {

namespace {

struct entry {
  caf::actor session;
  caf::actor conn;  // null while the client is away
  std::uint64_t generation = 0;
  std::chrono::milliseconds expiry{0};
};

struct manager_state {
  broker::context_ptr ctx;
  std::unordered_map<std::string, entry> by_client;
  // Sessions this manager ended, until their down message arrives. A session that dies
  // on its own (a crash) is rare: its entry is found by a scan of by_client, which spares
  // every session a second index entry (actor id -> client id, 48 B).
  std::unordered_set<caf::actor_id> ending;
  // Cluster: client ids claimed cluster-wide whose open is under way, and sessions other
  // nodes handed over for them.
  std::unordered_set<std::string> claimed;
  std::unordered_map<std::string, store::saved_session> moved;
  // Client ids whose claim is on its way, and the takeovers by other nodes that came in
  // meanwhile (the other node's connect is newer: it gets the session, ours is refused).
  std::unordered_set<std::string> claiming;
  std::unordered_map<std::string, std::pair<caf::response_promise, bool>> lost;
  // Claimed here, then taken over before the open ran: the open is refused.
  std::unordered_set<std::string> superseded;
  // Messages the node a session moved from forwarded before the session was opened here,
  // and whether that node said it is done; handed to the session as it opens.
  struct early_moves {
    std::vector<delivery> msgs;
    std::unordered_set<std::uint64_t> done;  // move ids
  };
  std::unordered_map<std::string, early_moves> early;
  // Sessions handed over to another node that still forward there what reaches them here,
  // oldest first (a message forwarded to this node for a client that has moved on goes on
  // with the newest).
  std::unordered_map<std::string, std::vector<caf::actor>> forwarding;
  // Restored sessions whose routes are not in place yet, and who waits for them (the node,
  // before it opens its listeners).
  std::size_t restoring = 0;
  std::vector<caf::response_promise> ready_waiters;
  static inline const char* name = "session_manager";
};

using self_ptr = caf::stateful_actor<manager_state>*;

void end_session(self_ptr self, std::unordered_map<std::string, entry>::iterator it) {
  auto& st = self->state;
  st.ending.insert(it->second.session.id());
  self->send(it->second.session, terminate_atom::value);
  st.by_client.erase(it);
}

/// The session of `client_id` ended here: drop this node's claim in the cluster registry.
void release_claim(self_ptr self, const std::string& client_id) {
  if (self->state.ctx->cluster) {
    self->send(self->state.ctx->cluster, unclaim_atom::value, client_id);
  }
}

/// Cluster: claims the client id in the whole cluster (getting its session back if another
/// node holds it), then opens it here as usual.
caf::response_promise claim_then_open(self_ptr self, open_request req) {
  auto rp = self->make_response_promise();
  auto id = req.client_id;
  auto clean = req.clean_start;
  self->state.claiming.insert(id);
  self->request(self->state.ctx->cluster, std::chrono::seconds(5), claim_atom::value, id, clean)
      .then(
          [=](std::string& bytes) mutable {
            auto& st = self->state;
            st.claiming.erase(req.client_id);
            if (auto l = st.lost.find(req.client_id); l != st.lost.end()) {
              // A newer connect on another node took the client over while we claimed it:
              // what we got goes on to that node, and this connect is refused.
              auto [handover, discard] = std::move(l->second);
              st.lost.erase(l);
              handover.deliver(discard ? std::string{} : std::move(bytes));
              spdlog::info("client {} connected on another node meanwhile; refusing this connect",
                           req.client_id);
              rp.deliver(caf::make_error(caf::sec::runtime_error,
                                         "session taken over by another node"));
              return;
            }
            store::saved_session s;
            if (!bytes.empty() && !req.clean_start && store::store::decode(bytes, s)) {
              st.moved[req.client_id] = std::move(s);
            }
            st.claimed.insert(req.client_id);
            rp.delegate(caf::actor_cast<caf::actor>(self), open_atom::value, std::move(req));
          },
          [=](caf::error& e) mutable {
            spdlog::warn("cluster claim of client {} failed: {}", req.client_id,
                         self->system().render(e));
            auto& st = self->state;
            st.claiming.erase(req.client_id);
            if (auto l = st.lost.find(req.client_id); l != st.lost.end()) {
              l->second.first.deliver(std::string{});
              st.lost.erase(l);
            }
            self->state.claimed.insert(req.client_id);
            rp.delegate(caf::actor_cast<caf::actor>(self), open_atom::value, std::move(req));
          });
  return rp;
}

/// The session another node handed over for `client_id`, if any.
std::optional<store::saved_session> take_moved(manager_state& st, const std::string& client_id) {
  auto it = st.moved.find(client_id);
  if (it == st.moved.end()) {
    return std::nullopt;
  }
  std::optional<store::saved_session> out{std::move(it->second)};
  st.moved.erase(it);
  return out;
}

/// Brings back the sessions saved at the last shutdown, offline, each with the expiry it had
/// left.
void restore_sessions(self_ptr self) {
  auto& st = self->state;
  if (!st.ctx->db) {
    return;
  }
  auto saved = st.ctx->db->load_sessions();
  for (auto& s : saved) {
    auto left = s.expiry_left;
    auto id = s.client_id;
    entry e;
    e.expiry = s.expiry.count() != 0 ? s.expiry : st.ctx->cfg.session.expiry_interval;
    e.session = spawn_session(self, st.ctx, id, std::move(s), true);
    e.generation = 1;
    st.ctx->stats.sessions.fetch_add(1, std::memory_order_relaxed);
    st.by_client.emplace(id, std::move(e));
    self->delayed_send(self, left, expire_atom::value, id, std::uint64_t{1});
    ++st.restoring;
    auto done = [self] {
      auto& st = self->state;
      if (--st.restoring == 0) {
        for (auto& rp : st.ready_waiters) {
          rp.deliver(true);
        }
        st.ready_waiters.clear();
      }
    };
    self->request(st.by_client[id].session, caf::infinite, ready_atom::value)
        .then([done](bool) { done(); }, [done](caf::error&) { done(); });
  }
  if (!saved.empty()) {
    spdlog::info("restored {} persistent sessions", saved.size());
  }
}

/// Another node took `client_id` over: ends its session here, handing over its state unless
/// the client starts clean. With `node` (a takeover by that node) the session forwards there
/// what still reaches it here for a moment (see session_actor.cpp, Moving).
caf::response_promise handover(self_ptr self, const std::string& client_id, bool discard,
                               const std::string& node) {
  auto rp = self->make_response_promise();
  auto& st = self->state;
  auto it = st.by_client.find(client_id);
  if (it == st.by_client.end() && st.claiming.count(client_id) != 0) {
    // Our own connect of this client is claiming it: answered once that claim returns.
    if (auto l = st.lost.find(client_id); l != st.lost.end()) {
      l->second.first.deliver(std::string{});  // an older takeover: nothing for it
    }
    st.lost[client_id] = {rp, discard};
    return rp;
  }
  if (it == st.by_client.end() && st.claimed.count(client_id) != 0) {
    // Claimed, and its open is on the way: that open is refused; what another node
    // handed over to it goes on.
    std::string bytes;
    if (auto m = st.moved.find(client_id); m != st.moved.end()) {
      if (!discard) {
        bytes = store::store::encode(m->second);
      }
      st.moved.erase(m);
    }
    st.superseded.insert(client_id);
    rp.deliver(std::move(bytes));
    return rp;
  }
  if (it == st.by_client.end() || discard) {
    if (it != st.by_client.end()) {
      end_session(self, it);
    }
    rp.deliver(std::string{});
    return rp;
  }
  auto session = it->second.session;
  st.ending.insert(session.id());
  st.by_client.erase(it);
  if (!node.empty()) {
    st.forwarding[client_id].push_back(session);
  }
  rp.delegate(session, handover_atom::value, node);
  return rp;
}

caf::behavior manager_impl(self_ptr self, broker::context_ptr ctx) {
  self->state.ctx = std::move(ctx);
  restore_sessions(self);
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    st.ctx->stats.sessions.fetch_sub(1, std::memory_order_relaxed);
    if (st.ending.erase(dm.source.id()) != 0) {
      for (auto f = st.forwarding.begin(); f != st.forwarding.end(); ++f) {
        auto& v = f->second;
        auto it = std::find_if(v.begin(), v.end(),
                               [&](const caf::actor& a) { return a.address() == dm.source; });
        if (it != v.end()) {
          v.erase(it);
          if (v.empty()) {
            st.forwarding.erase(f);
          }
          break;
        }
      }
      return;  // ended by us
    }
    auto it = std::find_if(st.by_client.begin(), st.by_client.end(), [&](const auto& kv) {
      return kv.second.session.address() == dm.source;
    });
    if (it == st.by_client.end()) {
      return;
    }
    spdlog::warn("session of {} ended unexpectedly: {}", it->first,
                 self->system().render(dm.reason));
    release_claim(self, it->first);
    st.by_client.erase(it);
  });
  self->set_exception_handler([self](caf::scheduled_actor*, std::exception_ptr&) -> caf::error {
    // Sessions without their registry would never expire: end them with us. Their clients
    // reconnect to the restarted manager.
    for (auto& kv : self->state.by_client) {
      self->send_exit(kv.second.session, caf::exit_reason::unhandled_exception);
    }
    return caf::exit_reason::unhandled_exception;
  });
  self->set_exit_handler([self](caf::exit_msg& em) {
    // Node shutdown: end every session, then ourselves.
    for (auto& kv : self->state.by_client) {
      self->send_exit(kv.second.session, em.reason);
    }
    self->state.by_client.clear();
    self->state.ending.clear();
    self->quit(em.reason);
  });
  return {
      [=](open_atom, open_request& req) -> caf::result<caf::message> {
        auto& st = self->state;
        if (st.superseded.erase(req.client_id) != 0) {
          st.claimed.erase(req.client_id);
          st.early.erase(req.client_id);
          spdlog::info("client {} connected on another node meanwhile; refusing this connect",
                       req.client_id);
          return caf::make_error(caf::sec::runtime_error, "session taken over by another node");
        }
        if (st.ctx->cluster && st.by_client.count(req.client_id) == 0 &&
            st.claimed.erase(req.client_id) == 0) {
          return claim_then_open(self, std::move(req));  // comes back here once claimed
        }
        auto it = st.by_client.find(req.client_id);
        bool present = false;
        if (it != st.by_client.end()) {
          // A session with expiry 0 lives only as long as its connection, which is being
          // replaced (or has closed and its detach is still on the way): it ends here too.
          if (req.clean_start || it->second.expiry.count() == 0) {
            end_session(self, it);  // its connection, if any, is kicked by the session
            it = st.by_client.end();
          } else {
            present = true;
          }
        }
        if (it == st.by_client.end()) {
          entry e;
          auto moved = take_moved(st, req.client_id);  // handed over by another node
          present = moved.has_value();
          auto move_id = moved ? moved->move_id : 0;
          e.session = spawn_session(self, st.ctx, req.client_id, std::move(moved));
          if (present && move_id != 0) {
            // The node it came from forwards what still reaches it there: the session holds
            // its own deliveries back until that node is done.
            self->send(e.session, hold_atom::value, move_id);
            if (auto x = st.early.find(req.client_id); x != st.early.end()) {
              for (auto& d : x->second.msgs) {
                self->send(e.session, moved_msg_atom::value, std::move(d));
              }
              if (x->second.done.count(move_id) != 0) {
                self->send(e.session, move_done_atom::value, move_id);
              }
              st.early.erase(x);
            }
          }
          st.ctx->stats.sessions.fetch_add(1, std::memory_order_relaxed);
          hooks::fire(st.ctx->hooks.get(), hooks::point::session_created,
                      [&](hooks::args& a) { a.client_id = req.client_id; });
          it = st.by_client.emplace(req.client_id, std::move(e)).first;
        }
        auto& e = it->second;
        e.conn = req.conn;
        e.expiry = req.expiry;
        ++e.generation;
        return self->delegate(e.session, attach_atom::value, std::move(req), present);
      },
      [=](detach_atom, const std::string& client_id, const caf::actor& conn) {
        auto& st = self->state;
        auto it = st.by_client.find(client_id);
        if (it == st.by_client.end() || it->second.conn != conn) {
          return;  // a connection that was taken over
        }
        auto& e = it->second;
        e.conn = caf::actor{};
        ++e.generation;
        if (e.expiry.count() == 0) {
          release_claim(self, client_id);
          end_session(self, it);
          return;
        }
        self->send(e.session, detach_atom::value, conn);
        self->delayed_send(self, e.expiry, expire_atom::value, client_id, e.generation);
      },
      [=](set_expiry_atom, const std::string& client_id, const caf::actor& conn,
          std::chrono::milliseconds expiry) {
        // MQTT 5 DISCONNECT with a new Session Expiry Interval; arrives before the detach.
        auto& st = self->state;
        auto it = st.by_client.find(client_id);
        if (it == st.by_client.end() || it->second.conn != conn) {
          return;
        }
        it->second.expiry = expiry;
        self->send(it->second.session, set_expiry_atom::value, expiry);
      },
      [=](expire_atom, const std::string& client_id, std::uint64_t generation) {
        auto& st = self->state;
        auto it = st.by_client.find(client_id);
        if (it == st.by_client.end() || it->second.generation != generation || it->second.conn) {
          return;  // reconnected (or replaced) since
        }
        spdlog::debug("session of {} expired", client_id);
        release_claim(self, client_id);
        end_session(self, it);
      },
      [=](handover_atom, const std::string& client_id, bool discard) {
        return handover(self, client_id, discard, std::string{});
      },
      [=](handover_atom, const std::string& client_id, bool discard, const std::string& node) {
        return handover(self, client_id, discard, node);
      },
      [=](moved_msg_atom, const std::string& client_id, delivery& d) {
        auto& st = self->state;
        if (auto it = st.by_client.find(client_id); it != st.by_client.end()) {
          self->send(it->second.session, moved_msg_atom::value, std::move(d));
          return;
        }
        bool coming = st.moved.count(client_id) != 0 || st.claimed.count(client_id) != 0 ||
                      st.claiming.count(client_id) != 0;
        if (auto f = st.forwarding.find(client_id); f != st.forwarding.end() && !coming) {
          self->send(f->second.back(), moved_msg_atom::value, std::move(d));  // moved on again
          return;
        }
        if (!coming) {
          // Nothing here waits for it any more (a forward later than the whole move).
          spdlog::warn("client {}: a message forwarded by the node its session left came too "
                       "late; dropped",
                       client_id);
          st.ctx->stats.messages_dropped.fetch_add(1, std::memory_order_relaxed);
          return;
        }
        auto& x = st.early[client_id];  // its open is on the way
        if (x.msgs.size() < st.ctx->cfg.session.max_queued_messages) {
          x.msgs.push_back(std::move(d));
        }
      },
      [=](move_done_atom, const std::string& client_id, std::uint64_t move_id) {
        // For whichever session here waits for that move: the one of this node, one that
        // has moved on and still holds back, or one whose open is on its way.
        auto& st = self->state;
        if (auto it = st.by_client.find(client_id); it != st.by_client.end()) {
          self->send(it->second.session, move_done_atom::value, move_id);
        }
        if (auto f = st.forwarding.find(client_id); f != st.forwarding.end()) {
          for (auto& a : f->second) {
            self->send(a, move_done_atom::value, move_id);
          }
        }
        if (st.moved.count(client_id) != 0 || st.claimed.count(client_id) != 0 ||
            st.claiming.count(client_id) != 0 || st.early.count(client_id) != 0) {
          st.early[client_id].done.insert(move_id);  // its open is on the way
        }
      },
      [=](count_atom) { return self->state.by_client.size(); },
      [=](ready_atom) -> caf::result<bool> {
        auto& st = self->state;
        if (st.restoring == 0) {
          return true;
        }
        st.ready_waiters.push_back(self->make_response_promise());
        return st.ready_waiters.back();
      },
      [=](mgmt::sessions_atom) {
        std::vector<mgmt::session_summary> out;
        for (auto& [id, e] : self->state.by_client) {
          out.push_back({id, e.session, static_cast<bool>(e.conn), e.expiry.count()});
        }
        return out;
      },
  };
}

}  // namespace

caf::actor spawn_session_manager(caf::actor_system& sys, const broker::context_ptr& ctx) {
  return sys.spawn(manager_impl, ctx);
}

}  // namespace tern::actors::session
