// Connection actor: turns decoded packets into protocol actions and talks to the session.
#include "actors/connection/connection.hpp"

#include <spdlog/spdlog.h>

#include "actors/broker/dispatch.hpp"
#include "actors/broker/types.hpp"
#include "actors/connection/conn_io.hpp"
#include "actors/mgmt/presence.hpp"
#include "proto/mqtt/topic.hpp"

namespace tern::actors::connection {

namespace {

namespace mqtt = proto::mqtt;
using mqtt::protocol_version;
using mqtt::reason_code;

enum class phase : std::uint8_t { wait_connect, connecting, connected, closing };

struct connection_state {
  broker::context_ptr ctx;
  conn_io_ptr io;
  phase ph = phase::wait_connect;
  protocol_version version = protocol_version::v3_1_1;
  std::string client_id;
  std::unique_ptr<mqtt::will> will;  // heap: most clients have none
  caf::actor session;
  static inline const char* name = "connection";
};

using self_ptr = caf::stateful_actor<connection_state>*;

void write(self_ptr self, const mqtt::packet& p) {
  std::string bytes;
  mqtt::encode(p, self->state.version, bytes);
  self->state.io->send(std::move(bytes));
}

bool is_v5(self_ptr self) {
  return self->state.version == protocol_version::v5;
}

/// Closes the connection for a protocol violation; v5 clients get a DISCONNECT first.
void violation(self_ptr self, reason_code rc, const std::string& why) {
  auto& st = self->state;
  st.ctx->stats.protocol_errors.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("client {} ({}): {}, closing", st.client_id, st.io->peer(), why);
  if (st.ph == phase::connected && is_v5(self)) {
    mqtt::disconnect d;
    d.reason = static_cast<std::uint8_t>(rc);
    write(self, d);
  }
  st.ph = phase::closing;
  st.io->close(why);
}

void refuse_connect(self_ptr self, reason_code rc5, mqtt::connack_v3 rc3, const std::string& why) {
  mqtt::connack ack;
  ack.reason = is_v5(self) ? static_cast<std::uint8_t>(rc5) : static_cast<std::uint8_t>(rc3);
  write(self, ack);
  spdlog::info("conn {} ({}): CONNECT refused: {}", self->state.io->id(), self->state.io->peer(),
               why);
  self->state.ph = phase::closing;
  self->state.io->close(why);
}

message_ptr make_message(self_ptr self, mqtt::publish&& p) {
  auto m = std::make_shared<message>();
  m->topic = std::move(p.topic);
  m->payload = std::move(p.payload);
  m->q = p.q;
  m->retain = p.retain;
  m->from = self->state.client_id;
  m->received_at = std::chrono::steady_clock::now();
  m->props = std::move(p.props);
  return m;
}

void publish_will(self_ptr self) {
  auto& st = self->state;
  if (!st.will) {
    return;
  }
  auto w = std::move(st.will);
  mqtt::publish p;
  p.topic = std::move(w->topic);
  p.payload = std::move(w->payload);
  p.q = w->q;
  p.retain = w->retain;
  p.props = std::move(w->props);
  spdlog::debug("client {}: publishing will on {}", st.client_id, p.topic);
  broker::dispatch(*st.ctx, make_message(self, std::move(p)));
}

void on_connect(self_ptr self, mqtt::connect& c) {
  auto& st = self->state;
  if (st.ph != phase::wait_connect) {
    // [MQTT-3.1.0-2] a second CONNECT is a protocol violation.
    violation(self, reason_code::protocol_error, "second CONNECT");
    return;
  }
  st.version = c.version;
  st.io->set_version(c.version);
  const auto& cfg = st.ctx->cfg;
  if (c.client_id.empty()) {
    if (!c.clean_start && c.version != protocol_version::v5) {
      // [MQTT-3.1.3-8] empty id needs a clean session.
      refuse_connect(self, reason_code::client_identifier_not_valid,
                     mqtt::connack_v3::identifier_rejected, "empty client id without clean session");
      return;
    }
    c.client_id = "tern-" + std::to_string(st.io->id()) + "-" +
                  std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  } else if (c.client_id.size() > cfg.mqtt.max_clientid_len) {
    refuse_connect(self, reason_code::client_identifier_not_valid,
                   mqtt::connack_v3::identifier_rejected, "client id too long");
    return;
  }
  if (c.will_msg && !mqtt::is_valid_topic_name(c.will_msg->topic)) {
    refuse_connect(self, reason_code::topic_name_invalid, mqtt::connack_v3::not_authorized,
                   "invalid will topic");
    return;
  }
  st.client_id = c.client_id;
  if (c.will_msg) {
    st.will = std::make_unique<mqtt::will>(std::move(*c.will_msg));
  }
  if (c.keep_alive != 0) {
    auto ms = std::chrono::milliseconds(
        static_cast<std::int64_t>(c.keep_alive * 1000.0 * cfg.mqtt.keepalive_backoff));
    st.io->set_keepalive(ms);
  } else {
    st.io->set_keepalive(std::chrono::milliseconds(0));
  }
  st.ph = phase::connecting;
  open_request req;
  req.client_id = c.client_id;
  req.clean_start = c.clean_start;
  req.expiry = c.clean_start ? std::chrono::milliseconds(0) : cfg.session.expiry_interval;
  req.version = c.version;
  req.conn = caf::actor_cast<caf::actor>(self);
  req.io = st.io;
  auto info = mgmt::make_client_info(c, st.io->peer(), st.io->id(), req.conn);
  // await: packets the client pipelines after CONNECT wait until the session is attached.
  self->request(st.ctx->sessions(), caf::infinite, open_atom::value, std::move(req))
      .await(
          [=](open_reply& r) {
            auto& st = self->state;
            if (st.ph != phase::connecting) {
              return;  // closed meanwhile; the session saw the detach
            }
            st.session = std::move(r.session);
            st.ph = phase::connected;
            st.ctx->stats.connections.fetch_add(1, std::memory_order_relaxed);
            mgmt::client_connected(*st.ctx, info);
            spdlog::debug("client {} connected from {} (v{}, session present {})", st.client_id,
                          st.io->peer(), static_cast<int>(st.version), r.session_present);
          },
          [=](caf::error& e) {
            refuse_connect(self, reason_code::server_unavailable,
                           mqtt::connack_v3::server_unavailable,
                           "session unavailable: " + self->system().render(e));
          });
}

void on_publish(self_ptr self, mqtt::publish& p) {
  auto& st = self->state;
  if (!mqtt::is_valid_topic_name(p.topic)) {
    violation(self, reason_code::topic_name_invalid, "invalid topic name in PUBLISH");
    return;
  }
  st.ctx->stats.messages_received.fetch_add(1, std::memory_order_relaxed);
  // Clients may not publish into the broker's own $SYS tree.
  bool allowed = p.topic.compare(0, 5, "$SYS/") != 0 && p.topic != "$SYS";
  auto id = p.packet_id;
  switch (p.q) {
    case mqtt::qos::at_most_once:
      if (allowed) {
        broker::dispatch(*st.ctx, make_message(self, std::move(p)));
      }
      break;
    case mqtt::qos::at_least_once: {
      if (allowed) {
        broker::dispatch(*st.ctx, make_message(self, std::move(p)));
      }
      mqtt::puback ack;
      ack.packet_id = id;
      if (!allowed && is_v5(self)) {
        ack.reason = static_cast<std::uint8_t>(reason_code::not_authorized);
      }
      write(self, ack);
      break;
    }
    case mqtt::qos::exactly_once: {
      // The session remembers ids awaiting PUBREL across reconnects: a resent PUBLISH
      // (DUP) is acknowledged but not routed twice. await keeps packet order.
      auto msg = allowed ? make_message(self, std::move(p)) : message_ptr{};
      self->request(st.session, caf::infinite, await_rel_atom::value, id)
          .await(
              [=](std::uint8_t result) {
                auto r = static_cast<session::rel_result>(result);
                if (r == session::rel_result::full) {
                  violation(self, reason_code::receive_maximum_exceeded,
                            "too many QoS 2 messages awaiting PUBREL");
                  return;
                }
                if (r == session::rel_result::fresh && msg) {
                  broker::dispatch(*self->state.ctx, msg);
                }
                mqtt::pubrec rec;
                rec.packet_id = id;
                if (!msg && is_v5(self)) {
                  rec.reason = static_cast<std::uint8_t>(reason_code::not_authorized);
                }
                write(self, rec);
              },
              [=](caf::error&) { violation(self, reason_code::unspecified_error, "session lost"); });
      break;
    }
  }
}

void on_packet(self_ptr self, mqtt::packet& pkt) {
  auto& st = self->state;
  if (st.ph == phase::closing) {
    return;
  }
  if (st.ph == phase::wait_connect && !std::holds_alternative<mqtt::connect>(pkt)) {
    // [MQTT-3.1.0-1] the first packet must be CONNECT.
    st.ph = phase::closing;
    st.io->close("first packet is not CONNECT");
    return;
  }
  std::visit(
      [&](auto& p) {
        using T = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<T, mqtt::connect>) {
          on_connect(self, p);
        } else if constexpr (std::is_same_v<T, mqtt::publish>) {
          on_publish(self, p);
        } else if constexpr (std::is_same_v<T, mqtt::puback>) {
          self->send(st.session, puback_atom::value, p.packet_id);
        } else if constexpr (std::is_same_v<T, mqtt::pubrec>) {
          self->send(st.session, pubrec_atom::value, p.packet_id);
        } else if constexpr (std::is_same_v<T, mqtt::pubcomp>) {
          self->send(st.session, pubcomp_atom::value, p.packet_id);
        } else if constexpr (std::is_same_v<T, mqtt::pubrel>) {
          self->send(st.session, release_atom::value, p.packet_id);
          mqtt::pubcomp comp;
          comp.packet_id = p.packet_id;
          write(self, comp);
        } else if constexpr (std::is_same_v<T, mqtt::subscribe>) {
          self->send(st.session, subscribe_atom::value, std::move(p));
        } else if constexpr (std::is_same_v<T, mqtt::unsubscribe>) {
          self->send(st.session, unsub_atom::value, std::move(p));
        } else if constexpr (std::is_same_v<T, mqtt::pingreq>) {
          write(self, mqtt::pingresp{});
        } else if constexpr (std::is_same_v<T, mqtt::disconnect>) {
          // [MQTT-3.14.4-3] a clean DISCONNECT discards the will.
          st.will.reset();
          st.ph = phase::closing;
          st.io->close("client sent DISCONNECT", false);
        } else {
          violation(self, reason_code::protocol_error,
                    std::string("unexpected ") + mqtt::to_string(mqtt::type_of(pkt)));
        }
      },
      pkt);
}

void on_closed(self_ptr self, const std::string& reason) {
  auto& st = self->state;
  bool was_connected = st.ph == phase::connected || (st.ph == phase::closing && st.session);
  spdlog::debug("client {} ({}) closed: {}", st.client_id, st.io->peer(), reason);
  if (st.session) {
    publish_will(self);
    self->send(st.ctx->sessions(), detach_atom::value, st.client_id,
               caf::actor_cast<caf::actor>(self));
  }
  if (was_connected) {
    st.ctx->stats.connections.fetch_sub(1, std::memory_order_relaxed);
    mgmt::client_disconnected(*st.ctx, st.client_id, st.io->id(), reason);
  }
  self->quit();
}

caf::behavior connection_impl(self_ptr self, broker::context_ptr ctx, conn_io_ptr io) {
  self->state.ctx = std::move(ctx);
  self->state.io = io;
  self->set_exception_handler([io](caf::scheduled_actor*, std::exception_ptr& ep) -> caf::error {
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      spdlog::error("connection {} failed: {}", io->id(), e.what());
    } catch (...) {
      spdlog::error("connection {} failed", io->id());
    }
    io->close("internal error", false);
    return caf::exit_reason::unhandled_exception;
  });
  return {
      [=](packet_atom, mqtt::packet& p) {
        self->state.io->consumed(1);
        on_packet(self, p);
      },
      [=](closed_atom, const std::string& reason) { on_closed(self, reason); },
      [=](kick_atom) {
        // Another connection took the session over [MQTT-3.1.4-2].
        auto& st = self->state;
        if (st.ph == phase::closing) {
          return;
        }
        if (is_v5(self) && st.ph == phase::connected) {
          mqtt::disconnect d;
          d.reason = static_cast<std::uint8_t>(reason_code::session_taken_over);
          write(self, d);
        }
        st.ph = phase::closing;
        st.io->close("session taken over");
      },
  };
}

}  // namespace

void start_connection(caf::actor_system& sys, const broker::context_ptr& ctx,
                      const std::shared_ptr<conn_io>& io) {
  auto a = sys.spawn<caf::lazy_init>(connection_impl, ctx, io);
  io->start(a, ctx->cfg.mqtt.connect_timeout);
}

}  // namespace tern::actors::connection
