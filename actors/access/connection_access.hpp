// What a connection asks of the access layer, as one small object per connection: the
// CONNECT decision (including the SCRAM-SHA-256 AUTH exchange of MQTT 5), publish and
// subscribe checks with the per-client cache, and the client.* / message.dropped hooks.
//
// Pure (no sockets, no actors): the connection actor calls it and applies what it returns.
// One instance per connection, used from that connection's actor only.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actors/access/engine.hpp"
#include "proto/mqtt/packet.hpp"

namespace tern::actors::access {

/// What to do with a CONNECT (or a CONNECT-time AUTH).
struct connect_step {
  enum class kind : std::uint8_t {
    accept,     ///< go on: open the session; send `connack_props` on the CONNACK
    refuse,     ///< CONNACK with `code`, then close
    challenge,  ///< send `auth` (reason 0x18) and wait for the client's AUTH
  };
  kind k = kind::accept;
  std::uint8_t code = 0;  ///< CONNACK return code (3.x) or reason code (5.0) when refused
  proto::mqtt::properties connack_props;
  proto::mqtt::auth auth;
  std::string why;  ///< for the log line; never contains the password
};

class connection_access {
 public:
  static constexpr const char* scram_method = "SCRAM-SHA-256";

  /// `hooks` may be null (no hooks). `peer` is the "host:port" of the socket.
  connection_access(engine& e, const hooks::registry* hooks, std::string peer);

  /// CONNECT: runs client.connect, then authentication (or starts SCRAM when the v5
  /// CONNECT names that method). Keeps the CONNECT if a challenge is returned.
  connect_step on_connect(proto::mqtt::connect& c);
  /// AUTH during CONNECT (SCRAM continue). On accept, take_connect() returns the CONNECT.
  connect_step on_auth(const proto::mqtt::auth& a);
  bool is_authenticating() const { return pending_ != nullptr; }
  std::unique_ptr<proto::mqtt::connect> take_connect() { return std::move(pending_); }
  /// Whether the broker generated the client id (MQTT 5: Assigned Client Identifier), kept
  /// across the AUTH exchange for the CONNACK.
  void set_id_assigned(bool v) { id_assigned_ = v; }
  /// The connection's verified TLS client certificate (for the "cert" provider and hooks).
  void set_peer_cert(std::string cn, std::string san) {
    info_.cert_cn = std::move(cn);
    info_.cert_san = std::move(san);
  }
  bool id_assigned() const { return id_assigned_; }

  /// client.connected with the CONNACK code (0 accepted), also for refusals.
  void connected(std::uint8_t code) const;
  void disconnected(const std::string& reason) const;

  /// PUBLISH: ACL check (cached). A denied message fires message.dropped.
  bool allow_publish(std::string_view topic, std::uint8_t qos);
  /// Fires message.publish for an accepted PUBLISH.
  void published(std::string_view topic, std::uint8_t qos) const;
  /// SUBSCRIBE: fires client.subscribe per filter and checks the ACL. Returns one code per
  /// filter: 0 = allowed, else the SUBACK failure code (0x80 for 3.x, 0x87 for 5.0). Empty
  /// when everything is allowed.
  std::vector<std::uint8_t> check_subscribe(const proto::mqtt::subscribe& s);
  void unsubscribing(const proto::mqtt::unsubscribe& u) const;

  /// False when nothing after CONNECT needs this object (no ACL, no client or message hook
  /// it would run): the connection may then drop it and save its memory.
  bool is_needed_after_connect() const;

  const client_info& client() const { return info_; }
  void set_client_id(std::string id) { info_.client_id = std::move(id); }

 private:
  connect_step refuse(auth_status s, std::string why);
  connect_step accept_after_auth(const auth_outcome& out);
  hooks::args base_args() const;

  engine& engine_;
  const hooks::registry* hooks_;
  client_info info_;
  bool is_v5_ = false;
  bool id_assigned_ = false;
  std::unique_ptr<acl_cache> cache_;
  std::unique_ptr<scram_server> scram_;
  std::unique_ptr<proto::mqtt::connect> pending_;
};

}  // namespace tern::actors::access
