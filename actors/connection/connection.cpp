// Connection actor: turns decoded packets into protocol actions and talks to the session.
#include "actors/connection/connection.hpp"

#include <algorithm>
#include <deque>

#include <spdlog/spdlog.h>

#include "actors/access/connection_access.hpp"
#include "actors/broker/dispatch.hpp"
#include "actors/broker/handle_message.hpp"
#include "actors/broker/types.hpp"
#include "actors/connection/conn_io.hpp"
#include "actors/connection/enhanced_auth.hpp"
#include "actors/connection/read_gate.hpp"
#include "actors/mgmt/presence.hpp"
#include "proto/mqtt/topic.hpp"

namespace tern::actors::connection {

namespace {

namespace mqtt = proto::mqtt;
using mqtt::protocol_version;
using mqtt::reason_code;

enum class phase : std::uint8_t { wait_connect, authenticating, connecting, connected, closing };

/// MQTT 5 state that most connections never need (heap-allocated on first use).
struct auth_state {
  std::string method;
  std::unique_ptr<auth_exchange> exchange;
  mqtt::connect connect;  // the CONNECT being authenticated, then kept for re-authentication
  bool id_assigned = false;
};

/// Write-ahead (store durability batch or sync), allocated with the first publish that waits
/// for the store: acknowledgements go out in the order of their packets [MQTT-4.6.0-2], each
/// once what it acknowledges is written; packets behind a QoS 2 publish whose sends wait for
/// the store wait too, so nothing this client publishes overtakes it.
struct durable_acks {
  struct entry {
    std::string bytes;  // the acknowledgement to write ("": none fits the client)
    bool ready = false;
    bool close = false;  // the store failed and the client cannot be told: close here
    std::uint16_t packet_id = 0;
    mqtt::qos q = mqtt::qos::at_least_once;  // of the PUBLISH (PUBCOMP: at_most_once)
    bool deferred = false;  // its sends wait for the store: later packets are held
  };
  std::deque<entry> acks;
  std::uint64_t first_token = 0;  // token of acks.front()
  std::size_t deferred = 0;       // entries with deferred sends not yet written
};

struct connection_state {
  broker::context_ptr ctx;
  conn_io_ptr io;
  phase ph = phase::wait_connect;
  protocol_version version = protocol_version::v3_1_1;
  bool expiry_was_zero = true;  // v5: Session Expiry Interval of CONNECT was 0
  std::string client_id;
  std::unique_ptr<mqtt::will> will;  // heap: most clients have none
  caf::actor session;
  std::unique_ptr<std::vector<std::string>> aliases;  // v5 inbound topic aliases, index alias-1
  std::unique_ptr<auth_state> auth;
  std::unique_ptr<access::connection_access> access;  // authentication, ACL, client hooks
  std::shared_ptr<flow::gate> gate;  // back-pressure: pauses reading; on the first PUBLISH
  std::unique_ptr<durable_acks> durable;
  // Packets received but held back, in order: behind a publish whose sends wait for the store
  // (everything), or while flow control pauses the client (all but acknowledgements).
  std::unique_ptr<std::deque<mqtt::packet>> held;
  bool is_persistent = false;  // the session outlives the connection, and the store is durable
  std::uint32_t max_packet_out = 0;  // v5: the client's Maximum Packet Size, 0: none
  static inline const char* name = "connection";
};

using self_ptr = caf::stateful_actor<connection_state>*;

/// `p` as it may go to this client: within its Maximum Packet Size (without Reason String and
/// User Properties if need be), or "" when it still does not fit and is not sent.
std::string encode_for_client(self_ptr self, const mqtt::packet& p) {
  std::string bytes;
  if (!mqtt::encode_within(p, self->state.version, self->state.max_packet_out, bytes)) {
    spdlog::debug("client {}: {} larger than its Maximum Packet Size {}, not sent",
                  self->state.client_id, mqtt::to_string(mqtt::type_of(p)),
                  self->state.max_packet_out);
  }
  return bytes;
}

void write(self_ptr self, const mqtt::packet& p) {
  self->state.io->send(encode_for_client(self, p));
}

/// Writes `p` as the last packet and closes (conn_io::send_last).
void write_last(self_ptr self, const mqtt::packet& p, std::string why) {
  self->state.io->send_last(encode_for_client(self, p), std::move(why));
}

bool is_v5(self_ptr self) {
  return self->state.version == protocol_version::v5;
}

void refuse_connect(self_ptr self, reason_code rc5, mqtt::connack_v3 rc3, const std::string& why);

/// Closes the connection for a protocol violation; v5 clients get a DISCONNECT first.
void violation(self_ptr self, reason_code rc, const std::string& why) {
  auto& st = self->state;
  st.ctx->stats.protocol_errors.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("client {} ({}): {}, closing", st.client_id, st.io->peer(), why);
  if (st.ph == phase::authenticating) {
    // No CONNACK yet: the refusal is the CONNACK [MQTT-3.2.2-6].
    refuse_connect(self, rc, mqtt::connack_v3::not_authorized, why);
    return;
  }
  bool tell = st.ph == phase::connected && is_v5(self);
  st.ph = phase::closing;
  if (tell) {
    mqtt::disconnect d;
    d.reason = static_cast<std::uint8_t>(rc);
    d.props.reason_string = why;
    write_last(self, d, why);
  } else {
    st.io->close(why);
  }
}

void refuse_connect(self_ptr self, reason_code rc5, mqtt::connack_v3 rc3, const std::string& why) {
  mqtt::connack ack;
  ack.reason = is_v5(self) ? static_cast<std::uint8_t>(rc5) : static_cast<std::uint8_t>(rc3);
  if (is_v5(self)) {
    ack.props.reason_string = why;
  }
  spdlog::info("conn {} ({}): CONNECT refused: {}", self->state.io->id(), self->state.io->peer(),
               why);
  self->state.ph = phase::closing;
  write_last(self, ack, why);
}

message_ptr make_message(self_ptr self, mqtt::publish&& p, bool is_local = false) {
  auto m = std::make_shared<message>();
  m->is_local = is_local;
  m->topic = std::move(p.topic);
  m->payload = std::move(p.payload);
  m->q = p.q;
  m->retain = p.retain;
  m->from = self->state.client_id;
  m->received_at = std::chrono::steady_clock::now();
  m->props = std::move(p.props);
  m->props.topic_alias.reset();
  if (self->state.session) {
    m->from_session = self->state.session.id();
  }
  return m;
}

void publish_will(self_ptr self) {
  auto& st = self->state;
  if (!st.will) {
    return;
  }
  auto w = std::move(st.will);
  // The ACL in force when the will fires decides, as for any PUBLISH of the client.
  if (st.access && !st.access->allow_publish(w->topic, static_cast<std::uint8_t>(w->q))) {
    st.ctx->stats.acl_denied.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("client {}: will on {} denied by the ACL, not published", st.client_id,
                 w->topic);
    return;
  }
  mqtt::publish p;
  p.topic = std::move(w->topic);
  p.payload = std::move(w->payload);
  p.q = w->q;
  p.retain = w->retain;
  p.props = std::move(w->props);
  auto delay = p.props.will_delay_interval.value_or(0);
  p.props.will_delay_interval.reset();  // not a PUBLISH property
  auto m = make_message(self, std::move(p));
  if (delay != 0 && st.session) {
    // [MQTT-3.1.3-9] the session holds it: published after the delay or when the session
    // ends, whichever comes first; dropped if the client reconnects before.
    self->send(st.session, will_atom::value, message_ptr{std::move(m)},
               std::chrono::milliseconds(std::chrono::seconds(delay)),
               caf::actor_cast<caf::actor>(self));
    return;
  }
  spdlog::debug("client {}: publishing will on {}", st.client_id, m->topic);
  broker::dispatch(*st.ctx, m);
}

/// Session expiry granted to a client: MQTT 5 asks with a property (0 or absent: the session
/// ends with the connection); 3.1.1 with Clean Session. Capped by the configured maximum.
std::chrono::milliseconds session_expiry(const mqtt::connect& c, const config::config& cfg) {
  if (c.version != protocol_version::v5) {
    return c.clean_start ? std::chrono::milliseconds(0) : cfg.session.expiry_interval;
  }
  auto asked = c.props.session_expiry_interval.value_or(0);
  auto ms = std::chrono::milliseconds(std::chrono::seconds(asked));
  return std::min(ms, cfg.session.expiry_interval);
}

/// CONNACK properties of an accepted MQTT 5 client (spec 3.2.2.3).
mqtt::properties connack_properties(self_ptr self, const mqtt::connect& c, bool id_assigned,
                                    std::chrono::milliseconds expiry, std::uint16_t keep_alive) {
  const auto& cfg = self->state.ctx->cfg;
  mqtt::properties p;
  auto asked = c.props.session_expiry_interval.value_or(0);
  auto granted =
      static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::seconds>(expiry).count());
  if (granted != asked) {
    p.session_expiry_interval = granted;  // the server uses another value than asked
  }
  p.receive_maximum =
      static_cast<std::uint16_t>(std::min<std::uint32_t>(cfg.session.max_awaiting_rel, 65535));
  p.maximum_packet_size = cfg.mqtt.max_packet_size;
  if (cfg.mqtt5.topic_alias_maximum != 0) {
    p.topic_alias_maximum = static_cast<std::uint16_t>(cfg.mqtt5.topic_alias_maximum);
  }
  if (id_assigned) {
    p.assigned_client_identifier = c.client_id;
  }
  if (keep_alive != c.keep_alive) {
    p.server_keep_alive = keep_alive;
  }
  p.retain_available = 1;
  p.wildcard_subscription_available = 1;
  p.subscription_identifier_available = 1;
  p.shared_subscription_available = 1;
  if (c.props.request_response_information.value_or(0) == 1 &&
      !cfg.mqtt5.response_information.empty()) {
    p.response_information = cfg.mqtt5.response_information + c.client_id;
  }
  return p;
}

/// Sends AUTH (continue / success) with the exchange's method and data.
void write_auth(self_ptr self, reason_code rc, const std::optional<std::string>& data) {
  mqtt::auth a;
  a.reason = static_cast<std::uint8_t>(rc);
  a.props.authentication_method = self->state.auth->method;
  a.props.authentication_data = data;
  write(self, a);
}

/// The client is who it says: open (or resume) its session; the session sends the CONNACK.
void accept_connect(self_ptr self, mqtt::connect& c, bool id_assigned,
                    const std::optional<std::string>& auth_data,
                    mqtt::properties access_props = {}) {
  auto& st = self->state;
  const auto& cfg = st.ctx->cfg;
  st.client_id = c.client_id;
  if (c.will_msg) {
    st.will = std::make_unique<mqtt::will>(std::move(*c.will_msg));
    c.will_msg.reset();
  }
  std::uint16_t keep_alive = c.keep_alive;
  if (c.version == protocol_version::v5 && cfg.mqtt5.max_keepalive != 0 &&
      (keep_alive == 0 || keep_alive > cfg.mqtt5.max_keepalive)) {
    keep_alive = static_cast<std::uint16_t>(cfg.mqtt5.max_keepalive);  // Server Keep Alive
  }
  if (keep_alive != 0) {
    auto ms = std::chrono::milliseconds(
        static_cast<std::int64_t>(keep_alive * 1000.0 * cfg.mqtt.keepalive_backoff));
    st.io->set_keepalive(ms);
  } else {
    st.io->set_keepalive(std::chrono::milliseconds(0));
  }
  st.ph = phase::connecting;
  open_request req;
  req.client_id = c.client_id;
  req.clean_start = c.clean_start;
  req.expiry = session_expiry(c, cfg);
  st.is_persistent = req.expiry.count() != 0;
  req.version = c.version;
  req.conn = caf::actor_cast<caf::actor>(self);
  req.io = st.io;
  auto info = mgmt::make_client_info(c, st.io->peer(), st.io->id(), req.conn);
  req.peer_cert_cn = st.io->client_cert().cn;
  req.peer_cert_san = st.io->client_cert().san;
  if (c.version == protocol_version::v5) {
    st.expiry_was_zero = c.props.session_expiry_interval.value_or(0) == 0;
    req.connack_props = connack_properties(self, c, id_assigned, req.expiry, keep_alive);
    if (st.auth) {
      req.connack_props.authentication_method = st.auth->method;
      req.connack_props.authentication_data = auth_data;
    } else if (access_props.authentication_method) {
      req.connack_props.authentication_method = std::move(access_props.authentication_method);
      req.connack_props.authentication_data = std::move(access_props.authentication_data);
    }
    req.receive_maximum = c.props.receive_maximum.value_or(0);
    req.max_packet_size = c.props.maximum_packet_size.value_or(0);
    req.topic_alias_maximum = c.props.topic_alias_maximum.value_or(0);
  }
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
            if (st.access) {
              st.access->connected(0);
              if (!st.access->is_needed_after_connect()) {
                st.access.reset();  // no ACL, no hooks: keep idle clients small
              }
            }
            spdlog::debug("client {} connected from {} (v{}, session present {})", st.client_id,
                          st.io->peer(), static_cast<int>(st.version), r.session_present);
          },
          [=](caf::error& e) {
            refuse_connect(self, reason_code::server_unavailable,
                           mqtt::connack_v3::server_unavailable,
                           "session unavailable: " + self->system().render(e));
          });
}

/// Applies one step of an enhanced authentication exchange (CONNECT or AUTH).
void apply_auth_step(self_ptr self, auth_step step) {
  auto& st = self->state;
  switch (step.result) {
    case auth_step::outcome::continue_auth:
      write_auth(self, reason_code::continue_authentication, step.data);
      return;
    case auth_step::outcome::failure:
      if (st.ph == phase::authenticating) {
        refuse_connect(self, step.failure_reason, mqtt::connack_v3::not_authorized,
                       "authentication failed");
      } else {
        violation(self, step.failure_reason, "re-authentication failed");
      }
      return;
    case auth_step::outcome::success:
      st.auth->exchange.reset();  // done: a later AUTH 0x18 without 0x19 is an error
      if (st.ph == phase::authenticating) {
        auto c = st.auth->connect;
        st.auth->connect.password.reset();  // kept for re-authentication, without secrets
        st.auth->connect.will_msg.reset();
        accept_connect(self, c, st.auth->id_assigned, step.data);
      } else {
        write_auth(self, reason_code::success, step.data);
      }
      return;
  }
}

/// Applies a step of the access layer (authentication chain, SCRAM-SHA-256 through AUTH);
/// true when it refused or challenged (the CONNECT is not done yet).
bool apply_access_step(self_ptr self, access::connect_step& step) {
  auto& st = self->state;
  if (step.k == access::connect_step::kind::challenge) {
    st.ph = phase::authenticating;
    write(self, step.auth);
    return true;
  }
  if (step.k != access::connect_step::kind::refuse) {
    return false;
  }
  st.ctx->stats.auth_failures.fetch_add(1, std::memory_order_relaxed);
  st.access->connected(step.code);
  const auto& who = st.access->client();
  // The password is never logged.
  spdlog::warn(
      "conn {} ({}): authentication failed for client \"{}\" user \"{}\": {} (code 0x{:02x})",
      st.io->id(), st.io->peer(), who.client_id, who.username.value_or(""), step.why, step.code);
  mqtt::connack ack;
  ack.reason = step.code;
  st.ph = phase::closing;
  write_last(self, ack, "authentication failed");
  return true;
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
  if (c.version == protocol_version::v5) {
    st.max_packet_out = c.props.maximum_packet_size.value_or(0);
    st.io->set_max_packet_out(st.max_packet_out);
  }
  const auto& cfg = st.ctx->cfg;
  // TLS listeners may take the username / client id from the client certificate.
  if (auto u = st.io->cert_username(); !u.empty()) {
    c.username = std::move(u);
  }
  if (auto id = st.io->cert_clientid(); !id.empty()) {
    c.client_id = std::move(id);
  }
  bool id_assigned = false;
  if (c.client_id.empty()) {
    if (!c.clean_start && c.version != protocol_version::v5) {
      // [MQTT-3.1.3-8] empty id needs a clean session.
      refuse_connect(self, reason_code::client_identifier_not_valid,
                     mqtt::connack_v3::identifier_rejected,
                     "empty client id without clean session");
      return;
    }
    c.client_id = "tern-" + std::to_string(st.io->id()) + "-" +
                  std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
    id_assigned = true;  // [MQTT-3.2.2-16] v5: told in Assigned Client Identifier
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
  if (c.will_msg && c.will_msg->props.response_topic &&
      !mqtt::is_valid_topic_name(*c.will_msg->props.response_topic)) {
    // The will is published with it: a topic name, as in a PUBLISH [MQTT-3.3.2-14].
    refuse_connect(self, reason_code::protocol_error, mqtt::connack_v3::not_authorized,
                   "will Response Topic is not a valid topic name");
    return;
  }
  if (c.will_msg && c.will_msg->props.payload_format_indicator.value_or(0) == 1 &&
      !mqtt::is_valid_utf8(c.will_msg->payload)) {
    refuse_connect(self, reason_code::payload_format_invalid, mqtt::connack_v3::not_authorized,
                   "will payload is not UTF-8");
    return;
  }
  st.client_id = c.client_id;
  if (c.version == protocol_version::v5 && c.props.authentication_method &&
      st.ctx->auth_methods.count(*c.props.authentication_method) != 0) {
    // A method registered with the connection's exchange seam (supports re-authentication).
    const auto& method = *c.props.authentication_method;
    auto it = st.ctx->auth_methods.find(method);
    st.auth = std::make_unique<auth_state>();
    st.auth->method = method;
    st.auth->exchange = it->second();
    st.ph = phase::authenticating;
    if (!st.auth->exchange) {
      refuse_connect(self, reason_code::bad_authentication_method, mqtt::connack_v3::not_authorized,
                     "authentication method " + method + " unavailable");
      return;
    }
    st.auth->id_assigned = id_assigned;
    st.auth->connect = std::move(c);
    const auto& conn = st.auth->connect;
    apply_auth_step(self, st.auth->exchange->start(conn, conn.props.authentication_data));
    return;
  }
  // The access layer: client.connect hook, the authentication chain, SCRAM-SHA-256 (AUTH),
  // and refusal of any other authentication method (0x8C).
  st.access = std::make_unique<access::connection_access>(*st.ctx->access, st.ctx->hooks.get(),
                                                          st.io->peer());
  st.access->set_id_assigned(id_assigned);
  st.access->set_peer_cert(st.io->client_cert().cn, st.io->client_cert().san);
  auto step = st.access->on_connect(c);
  if (!apply_access_step(self, step)) {
    accept_connect(self, c, id_assigned, std::nullopt, std::move(step.connack_props));
  }
}

/// AUTH from the client: continues an exchange, or starts re-authentication (0x19).
void on_auth(self_ptr self, const mqtt::auth& a) {
  auto& st = self->state;
  if (st.ph == phase::authenticating && st.access && st.access->is_authenticating()) {
    auto step = st.access->on_auth(a);
    if (apply_access_step(self, step)) {
      return;
    }
    auto c = st.access->take_connect();
    accept_connect(self, *c, st.access->id_assigned(), std::nullopt,
                   std::move(step.connack_props));
    return;
  }
  if (!st.auth || a.props.authentication_method != st.auth->method) {
    // [MQTT-4.12.0-1] [MQTT-4.12.1-1] AUTH without (or with another) method is an error.
    violation(self, reason_code::protocol_error,
              "AUTH without the CONNECT's authentication method");
    return;
  }
  auto rc = static_cast<reason_code>(a.reason);
  if (rc == reason_code::continue_authentication && st.auth->exchange) {
    apply_auth_step(self, st.auth->exchange->next(a.props.authentication_data));
  } else if (rc == reason_code::re_authenticate && st.ph == phase::connected) {
    st.auth->exchange = st.ctx->auth_methods.at(st.auth->method)();
    if (!st.auth->exchange) {
      // After the CONNACK: 0x87, since 0x8C is not a DISCONNECT reason code [MQTT-3.14.2-1].
      violation(self, reason_code::not_authorized, "authentication method unavailable");
      return;
    }
    apply_auth_step(self, st.auth->exchange->start(st.auth->connect, a.props.authentication_data));
  } else {
    violation(self, reason_code::protocol_error, "unexpected AUTH reason code");
  }
}

/// v5 Topic Alias of an inbound PUBLISH [MQTT-3.3.2-12]: a topic with an alias defines it,
/// an empty topic uses it. Returns false after closing the connection.
bool resolve_alias(self_ptr self, mqtt::publish& p) {
  auto& st = self->state;
  auto alias = *p.props.topic_alias;
  p.props.topic_alias.reset();
  auto max = st.ctx->cfg.mqtt5.topic_alias_maximum;
  if (alias == 0 || alias > max) {
    violation(self, reason_code::topic_alias_invalid, "topic alias out of range");
    return false;
  }
  if (!st.aliases) {
    st.aliases = std::make_unique<std::vector<std::string>>(max);
  }
  auto& slot = (*st.aliases)[alias - 1];
  if (!p.topic.empty()) {
    slot = p.topic;
    return true;
  }
  if (slot.empty()) {
    violation(self, reason_code::protocol_error, "unknown topic alias");
    return false;
  }
  p.topic = slot;
  return true;
}

/// Why an inbound PUBLISH is not routed (success: it is).
reason_code check_publish(self_ptr self, const mqtt::publish& p) {
  // Clients may not publish into the broker's own $SYS tree.
  if (p.topic.compare(0, 5, "$SYS/") == 0 || p.topic == "$SYS") {
    return reason_code::not_authorized;
  }
  // [MQTT-3.3.2-4] the indicator promises UTF-8: the broker checks before passing it on.
  if (is_v5(self) && p.props.payload_format_indicator.value_or(0) == 1 &&
      !mqtt::is_valid_utf8(p.payload)) {
    return reason_code::payload_format_invalid;
  }
  return reason_code::success;
}

/// The token of the next acknowledgement that waits for the store.
std::uint64_t next_token(self_ptr self) {
  auto& st = self->state;
  if (!st.durable) {
    st.durable = std::make_unique<durable_acks>();
  }
  return st.durable->first_token + st.durable->acks.size();
}

/// The store's callback for changes submitted under `token` (runs on the writer thread).
std::function<void(bool)> stored_callback(self_ptr self, std::uint64_t token) {
  auto me = caf::actor_cast<caf::actor>(self);
  return [me, token](bool ok) { caf::anon_send(me, stored_atom::value, token, ok); };
}

/// `ack` goes out once the store reports `token` (next_token()) written.
void ack_when_stored(self_ptr self, std::uint64_t token, const mqtt::packet& ack,
                     std::uint16_t id, mqtt::qos q, bool deferred) {
  auto& d = *self->state.durable;
  durable_acks::entry e;
  e.bytes = encode_for_client(self, ack);
  e.packet_id = id;
  e.q = q;
  e.deferred = deferred;
  if (deferred) {
    ++d.deferred;
  }
  d.acks.push_back(std::move(e));
  (void)token;  // == first_token + index: entries are pushed in token order
}

/// Writes an encoded acknowledgement now, or behind those that still wait for the store.
void send_ack_bytes(self_ptr self, std::string bytes) {
  auto& st = self->state;
  if (st.durable && !st.durable->acks.empty()) {
    durable_acks::entry e;
    e.bytes = std::move(bytes);
    e.ready = true;
    st.durable->acks.push_back(std::move(e));
    return;
  }
  st.io->send(std::move(bytes));
}

void send_ack(self_ptr self, const mqtt::packet& p) {
  send_ack_bytes(self, encode_for_client(self, p));
}

/// A publish the store could not take: MQTT 5 says so in its acknowledgement (0x80), an
/// MQTT 3.1.1 client, which has no way to hear it, is disconnected and sends it again.
/// Returns false when the connection must close instead.
bool refuse_for_store(self_ptr self, durable_acks::entry* e, std::uint16_t id, mqtt::qos q) {
  auto& st = self->state;
  st.ctx->db->count_refused();
  spdlog::warn("client {}: QoS {} publish {} refused: the store cannot write ({})", st.client_id,
               static_cast<int>(q), id, st.ctx->db->last_error());
  if (q == mqtt::qos::exactly_once && st.session) {
    self->send(st.session, release_atom::value, id);  // no PUBREL follows a failed PUBREC
  }
  if (!is_v5(self) || q == mqtt::qos::at_most_once) {
    return false;
  }
  std::string bytes;
  if (q == mqtt::qos::at_least_once) {
    mqtt::puback ack;
    ack.packet_id = id;
    ack.reason = static_cast<std::uint8_t>(reason_code::unspecified_error);
    bytes = encode_for_client(self, ack);
  } else {
    mqtt::pubrec rec;
    rec.packet_id = id;
    rec.reason = static_cast<std::uint8_t>(reason_code::unspecified_error);
    bytes = encode_for_client(self, rec);
  }
  if (e != nullptr) {
    e->bytes = std::move(bytes);
  } else {
    send_ack_bytes(self, std::move(bytes));
  }
  return true;
}

void replay_held(self_ptr self);

/// The store wrote (or failed to write) what the acknowledgement under `token` waits for.
void on_stored(self_ptr self, std::uint64_t token, bool ok) {
  auto& st = self->state;
  auto* d = st.durable.get();
  if (d == nullptr || token < d->first_token || token - d->first_token >= d->acks.size()) {
    return;
  }
  auto& e = d->acks[token - d->first_token];
  e.ready = true;
  if (e.deferred) {
    e.deferred = false;
    --d->deferred;
  }
  if (!ok && !refuse_for_store(self, &e, e.packet_id, e.q)) {
    e.close = true;  // the connection closes when this entry's turn comes
  }
  while (!d->acks.empty() && d->acks.front().ready) {
    auto& front = d->acks.front();
    if (front.close) {
      st.ph = phase::closing;
      st.io->close("the store cannot write");
      return;
    }
    st.io->send(std::move(front.bytes));
    d->acks.pop_front();
    ++d->first_token;
  }
  if (d->deferred == 0 && st.held && !st.held->empty()) {
    replay_held(self);
  }
}

/// Routes an accepted PUBLISH. `$local/t` goes to this node's subscribers of `t` only.
std::size_t route(self_ptr self, mqtt::publish&& p, broker::durable_publish* durable = nullptr,
                  std::function<void(bool)> done = {}) {
  bool is_local = false;
  if (auto t = mqtt::strip_local(p.topic)) {
    p.topic = std::string(*t);
    is_local = true;
  }
  auto& st = self->state;
  if (!st.gate && st.ctx->cfg.flow.high_watermark != 0) {
    st.gate = std::make_shared<read_gate>(st.io, self->address(), st.ctx->cfg.flow.max_pause);
  }
  return broker::dispatch(*st.ctx, make_message(self, std::move(p), is_local), false, st.gate,
                          durable, std::move(done));
}

bool is_durable(self_ptr self) {
  const auto& db = self->state.ctx->db;
  return db && db->is_durable();
}

/// Reason code of PUBACK / PUBREC for a message that was accepted: v5 says when nobody got it.
std::uint8_t ack_reason(self_ptr self, reason_code check, std::size_t receivers) {
  if (!is_v5(self)) {
    return 0;
  }
  if (check != reason_code::success) {
    return static_cast<std::uint8_t>(check);
  }
  return static_cast<std::uint8_t>(receivers == 0 ? reason_code::no_matching_subscribers
                                                  : reason_code::success);
}

void on_publish(self_ptr self, mqtt::publish& p) {
  auto& st = self->state;
  if (is_v5(self)) {
    if (p.props.topic_alias && !resolve_alias(self, p)) {
      return;
    }
    if (!p.props.subscription_identifiers.empty()) {
      // [MQTT-3.3.4-6] only the server sends Subscription Identifiers.
      violation(self, reason_code::protocol_error, "PUBLISH with a subscription identifier");
      return;
    }
    if (p.props.response_topic && !mqtt::is_valid_topic_name(*p.props.response_topic)) {
      // [MQTT-3.3.2-14] a Response Topic is a topic name: no wildcards (it is passed on).
      violation(self, reason_code::protocol_error, "Response Topic is not a valid topic name");
      return;
    }
  }
  if (!mqtt::is_valid_topic_name(p.topic)) {
    violation(self, reason_code::topic_name_invalid, "invalid topic name in PUBLISH");
    return;
  }
  st.ctx->stats.messages_received.fetch_add(1, std::memory_order_relaxed);
  auto check = check_publish(self, p);
  // ACL: a denied message is not routed (3.x: still acknowledged; 5.0: reason 0x87).
  if (check == reason_code::success && st.access) {
    if (!st.access->allow_publish(p.topic, static_cast<std::uint8_t>(p.q))) {
      check = reason_code::not_authorized;
      st.ctx->stats.acl_denied.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("client {}: publish to {} denied by ACL", st.client_id, p.topic);
    } else {
      st.access->published(p.topic, static_cast<std::uint8_t>(p.q));
    }
  }
  auto id = p.packet_id;
  switch (p.q) {
    case mqtt::qos::at_most_once:
      if (check == reason_code::payload_format_invalid) {
        violation(self, check, "PUBLISH payload is not UTF-8");
      } else if (check == reason_code::success) {
        route(self, std::move(p));
      }
      break;
    case mqtt::qos::at_least_once: {
      std::size_t n = 0;
      mqtt::puback ack;
      ack.packet_id = id;
      if (check == reason_code::success && is_durable(self)) {
        // Write-ahead: PUBACK once every persistent session it reaches has it on disk.
        broker::durable_publish dp;
        auto token = next_token(self);
        n = route(self, std::move(p), &dp, stored_callback(self, token));
        if (dp.refused) {
          if (!refuse_for_store(self, nullptr, id, mqtt::qos::at_least_once)) {
            violation(self, reason_code::unspecified_error, "the store cannot write");
          }
          break;
        }
        ack.reason = ack_reason(self, check, n);
        if (dp.waits) {
          ack_when_stored(self, token, ack, id, mqtt::qos::at_least_once, false);
          break;
        }
      } else if (check == reason_code::success) {
        n = route(self, std::move(p));
      }
      ack.reason = ack_reason(self, check, n);
      send_ack(self, ack);
      break;
    }
    case mqtt::qos::exactly_once: {
      // The session remembers ids awaiting PUBREL across reconnects: a resent PUBLISH
      // (DUP) is acknowledged but not routed twice. await keeps packet order.
      auto msg = std::make_shared<mqtt::publish>(std::move(p));
      self->request(st.session, caf::infinite, await_rel_atom::value, id)
          .await(
              [=](std::uint8_t result) {
                auto r = static_cast<session::rel_result>(result);
                if (r == session::rel_result::full) {
                  // [MQTT-3.3.4-9] more unacknowledged QoS 2 than our Receive Maximum.
                  violation(self, reason_code::receive_maximum_exceeded,
                            "too many QoS 2 messages awaiting PUBREL");
                  return;
                }
                std::size_t n = 1;  // a duplicate was routed before
                mqtt::pubrec rec;
                rec.packet_id = id;
                bool fresh = r == session::rel_result::fresh && check == reason_code::success;
                if (fresh && is_durable(self)) {
                  // Write-ahead: the id awaiting PUBREL (a persistent session's) and every
                  // persistent subscriber's record commit together, before any subscriber
                  // sees the message, then PUBREC: exactly once across a crash.
                  broker::durable_publish dp;
                  auto& st = self->state;
                  if (st.is_persistent) {
                    dp.txn.put_awaiting(st.client_id, id);
                    dp.defer = true;
                  }
                  auto token = next_token(self);
                  n = route(self, std::move(*msg), &dp, stored_callback(self, token));
                  if (dp.refused) {
                    if (!refuse_for_store(self, nullptr, id, mqtt::qos::exactly_once)) {
                      violation(self, reason_code::unspecified_error, "the store cannot write");
                    }
                    return;
                  }
                  if (dp.waits) {
                    rec.reason = ack_reason(self, check, n);
                    ack_when_stored(self, token, rec, id, mqtt::qos::exactly_once,
                                    dp.deferred != nullptr);
                    return;
                  }
                } else if (fresh) {
                  n = route(self, std::move(*msg));
                }
                rec.reason = ack_reason(self, check, n);
                if (check != reason_code::success) {
                  // A failed PUBREC ends the exchange [MQTT-4.3.3-4]: no PUBREL will come.
                  self->send(self->state.session, release_atom::value, id);
                }
                send_ack(self, rec);
              },
              [=](caf::error&) { violation(self, reason_code::unspecified_error, "session lost"); });
      break;
    }
  }
}

/// MQTT 5 DISCONNECT from the client: its reason decides the will, its Session Expiry
/// Interval may change the session's lifetime [MQTT-3.14.2-2].
void on_disconnect(self_ptr self, const mqtt::disconnect& d) {
  auto& st = self->state;
  if (is_v5(self) && d.props.session_expiry_interval) {
    auto asked = *d.props.session_expiry_interval;
    if (st.expiry_was_zero && asked != 0) {
      // [MQTT-3.14.2-2] from 0 to non-zero is a protocol error (and the will is published).
      violation(self, reason_code::protocol_error, "session expiry set on DISCONNECT after 0");
      return;
    }
    auto ms = std::min(std::chrono::milliseconds(std::chrono::seconds(asked)),
                       st.ctx->cfg.session.expiry_interval);
    // Sent before the detach (on close), so the manager sees it first.
    self->send(st.ctx->sessions(), set_expiry_atom::value, st.client_id,
               caf::actor_cast<caf::actor>(self), ms);
  }
  // [MQTT-3.14.4-3] DISCONNECT 0x00 discards the will; any other reason (0x04 asks for it,
  // an error the client reports) keeps it to be published [MQTT-3.1.2-8].
  if (!is_v5(self) || d.reason == static_cast<std::uint8_t>(reason_code::success)) {
    st.will.reset();
  }
  st.ph = phase::closing;
  st.io->close("client sent DISCONNECT", false);
}

/// PUBCOMP for inbound QoS 2 `id`: a persistent session's id awaiting PUBREL is deleted
/// from the store first (a kept one would make a later PUBLISH with this id a duplicate).
void send_pubcomp(self_ptr self, const mqtt::pubcomp& comp) {
  auto& st = self->state;
  if (!st.is_persistent || !is_durable(self)) {
    send_ack(self, comp);
    return;
  }
  store::txn t;
  t.del_awaiting(st.client_id, comp.packet_id);
  auto token = next_token(self);
  st.ctx->db->submit(std::move(t), stored_callback(self, token));
  // A failure closes the connection (q at_most_once): the client sends PUBREL again.
  ack_when_stored(self, token, comp, comp.packet_id, mqtt::qos::at_most_once, false);
}

void on_pubrel(self_ptr self, const mqtt::pubrel& p) {
  auto& st = self->state;
  auto id = p.packet_id;
  if (!is_v5(self)) {
    self->send(st.session, release_atom::value, id);
    mqtt::pubcomp comp;
    comp.packet_id = id;
    send_pubcomp(self, comp);
    return;
  }
  // v5: PUBCOMP says whether the id was known (0x92 otherwise).
  self->request(st.session, caf::infinite, release_atom::value, id, true)
      .await(
          [=](bool known) {
            mqtt::pubcomp comp;
            comp.packet_id = id;
            if (!known) {
              comp.reason = static_cast<std::uint8_t>(reason_code::packet_identifier_not_found);
            }
            send_pubcomp(self, comp);
          },
          [=](caf::error&) { violation(self, reason_code::unspecified_error, "session lost"); });
}

/// v5 SUBSCRIBE checks that the codec cannot make.
bool check_subscribe(self_ptr self, const mqtt::subscribe& p) {
  if (!is_v5(self)) {
    return true;
  }
  for (auto& s : p.subscriptions) {
    if (s.no_local && s.filter.compare(0, 7, "$queue/") == 0) {
      // [MQTT-3.8.3-4] No Local on a shared subscription is a protocol error.
      violation(self, reason_code::protocol_error, "No Local on a shared subscription");
      return false;
    }
  }
  return true;
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
  if (st.ph == phase::authenticating && !std::holds_alternative<mqtt::auth>(pkt) &&
      !std::holds_alternative<mqtt::disconnect>(pkt)) {
    // [MQTT-3.1.2-30] only AUTH or DISCONNECT until the CONNACK.
    violation(self, reason_code::protocol_error, "packet before authentication completed");
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
          if (is_v5(self) && p.reason >= 0x80) {
            self->send(st.session, pubrec_atom::value, p.packet_id, true);  // refused
          } else {
            self->send(st.session, pubrec_atom::value, p.packet_id);
          }
        } else if constexpr (std::is_same_v<T, mqtt::pubcomp>) {
          self->send(st.session, pubcomp_atom::value, p.packet_id);
        } else if constexpr (std::is_same_v<T, mqtt::pubrel>) {
          on_pubrel(self, p);
        } else if constexpr (std::is_same_v<T, mqtt::subscribe>) {
          if (!check_subscribe(self, p)) {
            return;
          }
          // ACL: denied filters get 0x80 (3.x) / 0x87 (5.0) in the SUBACK the session sends.
          auto denied = st.access ? st.access->check_subscribe(p) : std::vector<std::uint8_t>{};
          if (denied.empty()) {
            self->send(st.session, subscribe_atom::value, std::move(p));
          } else {
            st.ctx->stats.acl_denied.fetch_add(1, std::memory_order_relaxed);
            self->send(st.session, subscribe_atom::value, std::move(p), std::move(denied));
          }
        } else if constexpr (std::is_same_v<T, mqtt::unsubscribe>) {
          if (st.access) {
            st.access->unsubscribing(p);
          }
          self->send(st.session, unsub_atom::value, std::move(p));
        } else if constexpr (std::is_same_v<T, mqtt::pingreq>) {
          write(self, mqtt::pingresp{});
        } else if constexpr (std::is_same_v<T, mqtt::disconnect>) {
          on_disconnect(self, p);
        } else if constexpr (std::is_same_v<T, mqtt::auth>) {
          on_auth(self, p);
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
    if (st.access) {
      st.access->disconnected(reason);
    }
    mgmt::client_disconnected(*st.ctx, st.client_id, st.io->id(), reason);
  }
  self->quit();
}

void on_kick(self_ptr self) {
  // Another connection took the session over [MQTT-3.1.4-2].
  auto& st = self->state;
  if (st.ph == phase::closing) {
    return;
  }
  bool tell = is_v5(self) && st.ph == phase::connected;
  st.ph = phase::closing;
  if (tell) {
    mqtt::disconnect d;
    d.reason = static_cast<std::uint8_t>(reason_code::session_taken_over);
    write_last(self, d, "session taken over");
  } else {
    st.io->close("session taken over");
  }
}

/// The connection's rare messages (close, kick), as the actor's default handler: CAF 0.17
/// allocates each handler of a behavior per actor, a plain function here costs nothing.
caf::result<caf::message> on_control(caf::scheduled_actor* ptr, caf::message_view& x) {
  auto self = static_cast<self_ptr>(ptr);
  auto& xs = x.content();
  caf::message reply;
  if (broker::handle(xs, reply,
                     [self](stored_atom, std::uint64_t token, bool ok) {
                       on_stored(self, token, ok);
                     }) ||
      broker::handle(xs, reply, [self](replay_atom) { replay_held(self); }) ||
      broker::handle(xs, reply,
                     [self](closed_atom, const std::string& reason) { on_closed(self, reason); }) ||
      broker::handle(xs, reply, [self](kick_atom) { on_kick(self); })) {
    return reply;
  }
  return caf::print_and_drop(ptr, x);
}

/// Whether a packet may overtake held ones: it answers the broker or asks nothing of anybody
/// else (as conn_io lets it through a flow pause).
bool may_overtake(const mqtt::packet& p) {
  switch (mqtt::type_of(p)) {
    case mqtt::packet_type::puback:
    case mqtt::packet_type::pubrec:
    case mqtt::packet_type::pubrel:
    case mqtt::packet_type::pubcomp:
    case mqtt::packet_type::pingreq:
      return true;
    default:
      return false;
  }
}

/// Whether `p` must wait in `held`: behind a publish whose sends wait for the store, behind
/// packets already held, or while flow control pauses this publisher. A paused publisher's
/// PUBLISH is not handled (nor acknowledged) until every session it was paused for has room:
/// that is the credit that bounds a connected subscriber's queue, however many publish to it.
bool must_hold(self_ptr self, const mqtt::packet& p) {
  auto& st = self->state;
  if (st.durable && st.durable->deferred != 0) {
    return true;
  }
  if (may_overtake(p)) {
    return false;
  }
  return (st.held && !st.held->empty()) || (st.gate && st.gate->is_paused());
}

void hold(self_ptr self, mqtt::packet&& p) {
  auto& st = self->state;
  if (!st.held) {
    st.held = std::make_unique<std::deque<mqtt::packet>>();
  }
  // Not consumed: conn_io stops reading the socket once enough are held.
  st.held->push_back(std::move(p));
}

/// Whether handling `p` waits for the session's answer (request().await): the packets behind
/// it must then wait for the next message, as they would have without being held.
bool awaits_answer(self_ptr self, const mqtt::packet& p) {
  if (auto* pub = std::get_if<mqtt::publish>(&p)) {
    return pub->q == mqtt::qos::exactly_once;
  }
  return std::holds_alternative<mqtt::pubrel>(p) && is_v5(self);
}

/// While paused: handles the held acknowledgements and PINGREQs (held behind a publish that
/// waited for the store), which may overtake the held PUBLISHes; the rest stays in order.
void replay_overtaking(self_ptr self) {
  auto& st = self->state;
  while (st.held) {
    auto it = std::find_if(st.held->begin(), st.held->end(), may_overtake);
    if (it == st.held->end()) {
      return;
    }
    auto p = std::move(*it);
    st.held->erase(it);
    st.io->consumed(1);
    bool awaits = awaits_answer(self, p);
    on_packet(self, p);
    if (awaits) {
      self->send(self, replay_atom::value);  // the next one after the answer
      return;
    }
  }
}

/// Handles held packets once nothing holds them any more: a batch per message (up to one that
/// awaits an answer, which holds the rest back as it would have), so that a publisher let go
/// with hundreds held catches up quickly without starving the other actors of its worker.
void replay_held(self_ptr self) {
  constexpr int max_batch = 64;
  auto& st = self->state;
  for (int i = 0; i < max_batch; ++i) {
    if (!st.held || st.held->empty() || (st.durable && st.durable->deferred != 0) ||
        st.ph == phase::closing) {
      return;
    }
    if (st.gate && st.gate->is_paused() && !may_overtake(st.held->front())) {
      replay_overtaking(self);
      return;  // the gate's go() sends replay_atom again
    }
    auto p = std::move(st.held->front());
    st.held->pop_front();
    if (st.held->empty()) {
      st.held.reset();
    }
    st.io->consumed(1);
    bool awaits = awaits_answer(self, p);
    on_packet(self, p);
    if (awaits) {
      break;
    }
  }
  if (st.held && !st.held->empty()) {
    self->send(self, replay_atom::value);
  }
}

caf::error on_exception(caf::scheduled_actor* ptr, std::exception_ptr& ep) {
  auto& io = static_cast<self_ptr>(ptr)->state.io;
  try {
    std::rethrow_exception(ep);
  } catch (const std::exception& e) {
    spdlog::error("connection {} failed: {}", io->id(), e.what());
  } catch (...) {
    spdlog::error("connection {} failed", io->id());
  }
  io->close("internal error", false);
  // The closed_atom will find this actor gone: detach the session now, or it would wait for
  // a connection that never reports back.
  auto self = static_cast<self_ptr>(ptr);
  if (auto& st = self->state; st.session) {
    self->send(st.ctx->sessions(), detach_atom::value, st.client_id,
               caf::actor_cast<caf::actor>(self));
  }
  return caf::exit_reason::unhandled_exception;
}

caf::behavior connection_impl(self_ptr self, broker::context_ptr ctx, conn_io_ptr io) {
  self->state.ctx = std::move(ctx);
  self->state.io = std::move(io);
  // Plain functions: std::function keeps them inline, no allocation per connection.
  self->set_exception_handler(on_exception);
  self->set_default_handler(on_control);
  return {
      [=](packet_atom, mqtt::packet& p) {
        if (must_hold(self, p)) {
          hold(self, std::move(p));
          return;
        }
        self->state.io->consumed(1);
        on_packet(self, p);
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
