// Per-connection access decisions and client hooks.
#include "actors/access/connection_access.hpp"

namespace tern::actors::access {

namespace mqtt = proto::mqtt;

connection_access::connection_access(engine& e, const hooks::registry* hooks, std::string peer)
    : engine_(e), hooks_(hooks) {
  info_.address = ip_address::from_peer(peer);
  info_.peer = std::move(peer);
}

hooks::args connection_access::base_args() const {
  hooks::args a;
  a.client_id = info_.client_id;
  a.has_username = info_.username.has_value();
  if (info_.username) {
    a.username = *info_.username;
  }
  a.peer = info_.peer;
  a.cert_cn = info_.cert_cn;
  a.cert_san = info_.cert_san;
  return a;
}

connect_step connection_access::refuse(auth_status s, std::string why) {
  connect_step step;
  step.k = connect_step::kind::refuse;
  step.why = std::move(why);
  switch (s) {
    case auth_status::bad_credentials:
      step.code = is_v5_ ? static_cast<std::uint8_t>(mqtt::reason_code::bad_user_name_or_password)
                         : static_cast<std::uint8_t>(mqtt::connack_v3::bad_user_name_or_password);
      break;
    case auth_status::banned:
      step.code = is_v5_ ? static_cast<std::uint8_t>(mqtt::reason_code::banned)
                         : static_cast<std::uint8_t>(mqtt::connack_v3::not_authorized);
      break;
    default:
      step.code = is_v5_ ? static_cast<std::uint8_t>(mqtt::reason_code::not_authorized)
                         : static_cast<std::uint8_t>(mqtt::connack_v3::not_authorized);
      break;
  }
  return step;
}

connect_step connection_access::on_connect(mqtt::connect& c) {
  is_v5_ = c.version == mqtt::protocol_version::v5;
  info_.client_id = c.client_id;
  info_.username = c.username;
  hooks::fire(hooks_, hooks::point::client_connect, [&](hooks::args& a) { a = base_args(); });
  if (engine_.checks_acl() && engine_.cache_size() > 0) {
    cache_ = std::make_unique<acl_cache>(engine_.cache_size());
  }
  const auto& method = c.props.authentication_method;
  if (is_v5_ && method) {
    if (*method != scram_method || !engine_.supports_scram()) {
      connect_step step;
      step.k = connect_step::kind::refuse;
      step.code = static_cast<std::uint8_t>(mqtt::reason_code::bad_authentication_method);
      step.why = "unsupported authentication method " + *method;
      return step;
    }
    if (auto* bans = engine_.bans()) {
      auto now = engine::clock::now();
      if (bans->is_banned("c:" + info_.client_id, now) ||
          (info_.address && bans->is_banned("a:" + info_.address->to_string(), now))) {
        return refuse(auth_status::banned, "banned after repeated authentication failures");
      }
    }
    auto* e = &engine_;
    scram_ = std::make_unique<scram_server>(
        [e](const std::string& user) { return e->scram_credentials_for(user); });
    auto first = scram_->client_first(c.props.authentication_data.value_or(""));
    if (!first) {
      engine_.record_failure(info_);
      return refuse(auth_status::not_authorized,
                    "SCRAM client-first refused (unknown user or malformed)");
    }
    if (!info_.username) {
      info_.username = scram_->username();  // for logs; authenticated only after the proof
    }
    connect_step step;
    step.k = connect_step::kind::challenge;
    step.auth.reason = static_cast<std::uint8_t>(mqtt::reason_code::continue_authentication);
    step.auth.props.authentication_method = std::string(scram_method);
    step.auth.props.authentication_data = std::move(*first);
    pending_ = std::make_unique<mqtt::connect>(std::move(c));
    return step;
  }
  auto out = engine_.authenticate(info_, c.password);
  if (!out.is_ok()) {
    return refuse(out.status, out.detail);
  }
  return {};
}

connect_step connection_access::on_auth(const mqtt::auth& a) {
  if (!scram_ || !pending_) {
    connect_step step;
    step.k = connect_step::kind::refuse;
    step.code = static_cast<std::uint8_t>(mqtt::reason_code::protocol_error);
    step.why = "AUTH without an authentication exchange in progress";
    return step;
  }
  if (a.reason != static_cast<std::uint8_t>(mqtt::reason_code::continue_authentication) ||
      a.props.authentication_method.value_or("") != scram_method) {
    pending_.reset();
    connect_step step;
    step.k = connect_step::kind::refuse;
    step.code = static_cast<std::uint8_t>(mqtt::reason_code::bad_authentication_method);
    step.why = "AUTH with another method or reason";
    return step;
  }
  auto final_msg = scram_->client_final(a.props.authentication_data.value_or(""));
  if (!final_msg) {
    pending_.reset();
    engine_.record_failure(info_);
    return refuse(auth_status::bad_credentials, "SCRAM proof refused");
  }
  // The SCRAM user is the authenticated identity (the CONNECT may carry no username).
  info_.username = scram_->username();
  pending_->username = scram_->username();
  connect_step step;
  step.connack_props.authentication_method = std::string(scram_method);
  step.connack_props.authentication_data = std::move(*final_msg);
  scram_.reset();
  return step;
}

bool connection_access::is_needed_after_connect() const {
  if (engine_.checks_acl()) {
    return true;
  }
  if (!hooks_) {
    return false;
  }
  for (auto p : {hooks::point::client_disconnected, hooks::point::client_subscribe,
                 hooks::point::client_unsubscribe, hooks::point::message_publish,
                 hooks::point::message_dropped, hooks::point::client_check_acl}) {
    if (hooks_->has(p)) {
      return true;
    }
  }
  return false;
}

void connection_access::connected(std::uint8_t code) const {
  hooks::fire(hooks_, hooks::point::client_connected, [&](hooks::args& a) {
    a = base_args();
    a.code = code;
  });
}

void connection_access::disconnected(const std::string& reason) const {
  hooks::fire(hooks_, hooks::point::client_disconnected, [&](hooks::args& a) {
    a = base_args();
    a.reason = reason;
  });
}

bool connection_access::allow_publish(std::string_view topic, std::uint8_t qos) {
  if (engine_.check_publish(info_, topic, cache_.get())) {
    return true;
  }
  hooks::fire(hooks_, hooks::point::message_dropped, [&](hooks::args& a) {
    a = base_args();
    a.topic = topic;
    a.qos = qos;
    a.reason = "acl";
  });
  return false;
}

void connection_access::published(std::string_view topic, std::uint8_t qos) const {
  hooks::fire(hooks_, hooks::point::message_publish, [&](hooks::args& a) {
    a = base_args();
    a.topic = topic;
    a.qos = qos;
  });
}

std::vector<std::uint8_t> connection_access::check_subscribe(const mqtt::subscribe& s) {
  std::vector<std::uint8_t> codes;
  bool any_denied = false;
  for (std::size_t i = 0; i < s.subscriptions.size(); ++i) {
    const auto& sub = s.subscriptions[i];
    hooks::fire(hooks_, hooks::point::client_subscribe, [&](hooks::args& a) {
      a = base_args();
      a.topic = sub.filter;
      a.qos = static_cast<std::uint8_t>(sub.max_qos);
    });
    if (engine_.check_subscribe(info_, sub.filter, cache_.get())) {
      continue;
    }
    if (!any_denied) {
      codes.assign(s.subscriptions.size(), 0);
      any_denied = true;
    }
    codes[i] = is_v5_ ? static_cast<std::uint8_t>(mqtt::reason_code::not_authorized) : 0x80;
  }
  return codes;
}

void connection_access::unsubscribing(const mqtt::unsubscribe& u) const {
  if (!hooks_ || !hooks_->has(hooks::point::client_unsubscribe)) {
    return;
  }
  for (const auto& f : u.filters) {
    hooks::fire(hooks_, hooks::point::client_unsubscribe, [&](hooks::args& a) {
      a = base_args();
      a.topic = f;
    });
  }
}

}  // namespace tern::actors::access
