// Session manager: the client id registry; decides when sessions start, resume and end.
#include "actors/session/session_manager.hpp"

#include <unordered_map>

#include <spdlog/spdlog.h>

#include "actors/broker/types.hpp"
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
  std::unordered_map<caf::actor_id, std::string> by_session;
  static inline const char* name = "session_manager";
};

using self_ptr = caf::stateful_actor<manager_state>*;

void end_session(self_ptr self, std::unordered_map<std::string, entry>::iterator it) {
  auto& st = self->state;
  st.by_session.erase(it->second.session.id());
  self->send(it->second.session, terminate_atom::value);
  st.by_client.erase(it);
}

/// Brings back the sessions saved at the last shutdown, offline, each with the expiry it had
/// left.
void restore_sessions(self_ptr self) {
  auto& st = self->state;
  if (!st.ctx->db) {
    return;
  }
  auto saved = st.ctx->db->take_sessions();
  for (auto& s : saved) {
    auto left = s.expiry_left;
    auto id = s.client_id;
    entry e;
    e.session = spawn_session(self, st.ctx, id, std::move(s));
    e.expiry = st.ctx->cfg.session.expiry_interval;
    e.generation = 1;
    st.ctx->stats.sessions.fetch_add(1, std::memory_order_relaxed);
    st.by_session.emplace(e.session.id(), id);
    st.by_client.emplace(id, std::move(e));
    self->delayed_send(self, left, expire_atom::value, id, std::uint64_t{1});
  }
  if (!saved.empty()) {
    spdlog::info("restored {} persistent sessions", saved.size());
  }
}

caf::behavior manager_impl(self_ptr self, broker::context_ptr ctx) {
  self->state.ctx = std::move(ctx);
  restore_sessions(self);
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    st.ctx->stats.sessions.fetch_sub(1, std::memory_order_relaxed);
    auto it = st.by_session.find(dm.source.id());
    if (it == st.by_session.end()) {
      return;  // ended by us
    }
    spdlog::warn("session of {} ended unexpectedly: {}", it->second,
                 self->system().render(dm.reason));
    st.by_client.erase(it->second);
    st.by_session.erase(it);
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
    self->state.by_session.clear();
    self->quit(em.reason);
  });
  return {
      [=](open_atom, open_request& req) {
        auto& st = self->state;
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
          e.session = spawn_session(self, st.ctx, req.client_id);
          st.ctx->stats.sessions.fetch_add(1, std::memory_order_relaxed);
          st.by_session.emplace(e.session.id(), req.client_id);
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
          end_session(self, it);
          return;
        }
        self->send(e.session, detach_atom::value, conn);
        self->delayed_send(self, e.expiry, expire_atom::value, client_id, e.generation);
      },
      [=](expire_atom, const std::string& client_id, std::uint64_t generation) {
        auto& st = self->state;
        auto it = st.by_client.find(client_id);
        if (it == st.by_client.end() || it->second.generation != generation || it->second.conn) {
          return;  // reconnected (or replaced) since
        }
        spdlog::debug("session of {} expired", client_id);
        end_session(self, it);
      },
      [=](count_atom) { return self->state.by_client.size(); },
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
