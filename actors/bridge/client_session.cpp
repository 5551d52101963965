// The MQTT client side of a bridge: session state machine without I/O.
#include "actors/bridge/client_session.hpp"

#include <algorithm>
#include <type_traits>

namespace tern::actors::bridge {

namespace mqtt = proto::mqtt;

std::size_t outbox::push(outgoing m, std::vector<std::uint64_t>* released) {
  std::size_t dropped = 0;
  if (q_.size() >= max_) {
    auto qos0 = std::find_if(q_.begin(), q_.end(),
                             [](const outgoing& o) { return o.q == mqtt::qos::at_most_once; });
    if (qos0 != q_.end()) {
      q_.erase(qos0);
    } else if (m.q == mqtt::qos::at_most_once) {
      return 1;  // the new QoS 0 message is the one to go
    } else {
      if (released != nullptr && q_.front().seq != 0) {
        released->push_back(q_.front().seq);
      }
      q_.pop_front();
    }
    dropped = 1;
  }
  q_.push_back(std::move(m));
  return dropped;
}

std::optional<outgoing> outbox::pop() {
  if (q_.empty()) {
    return std::nullopt;
  }
  auto m = std::move(q_.front());
  q_.pop_front();
  return m;
}

session_options options_from(const config::bridge_config& c, const std::string& node_name) {
  session_options o;
  o.client_id = c.client_id.empty() ? node_name + "-bridge-" + c.name : c.client_id;
  o.username = c.username;
  o.password = c.password;
  o.clean_session = c.clean_session;
  o.keepalive = c.keepalive;
  o.version = c.protocol == "v5" ? mqtt::protocol_version::v5 : mqtt::protocol_version::v3_1_1;
  o.max_queued = c.max_queued;
  o.max_inflight = c.max_inflight;
  return o;
}

client_session::client_session(session_options opts, std::vector<rule> rules)
    : opts_(std::move(opts)), rules_(std::move(rules)), queue_(opts_.max_queued) {}

step client_session::on_open(clock::time_point now) {
  open_ = true;
  connected_ = false;
  opened_at_ = now;
  last_received_ = now;
  last_ping_ = now;
  mqtt::connect c;
  c.version = opts_.version;
  c.clean_start = opts_.clean_session;
  c.keep_alive = static_cast<std::uint16_t>(
      std::chrono::duration_cast<std::chrono::seconds>(opts_.keepalive).count());
  c.client_id = opts_.client_id;
  if (!opts_.username.empty()) {
    c.username = opts_.username;
  }
  if (!opts_.password.empty()) {
    c.password = opts_.password;
  }
  if (opts_.version == mqtt::protocol_version::v5 && !opts_.clean_session) {
    // Keep the remote session across reconnects (MQTT 5 ends it at disconnect by default).
    c.props.session_expiry_interval = 0xFFFFFFFFU;
  }
  step s;
  s.send.emplace_back(std::move(c));
  return s;
}

void client_session::on_close() {
  open_ = false;
  connected_ = false;
  subscribe_id_ = 0;
}

step client_session::on_packet(const mqtt::packet& p, clock::time_point now) {
  last_received_ = now;
  step s;
  if (!connected_) {
    if (auto* c = std::get_if<mqtt::connack>(&p)) {
      return on_connack(*c, now);
    }
    s.close = std::string("expected CONNACK, got ") + mqtt::to_string(mqtt::type_of(p));
    return s;
  }
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, mqtt::publish>) {
          on_publish(x, s);
        } else if constexpr (std::is_same_v<T, mqtt::puback>) {
          on_ack(x.packet_id, wait::puback, s);
        } else if constexpr (std::is_same_v<T, mqtt::pubrec>) {
          if (x.reason < 0x80) {
            on_ack(x.packet_id, wait::pubrec, s);
            s.send.emplace_back(mqtt::pubrel{{x.packet_id, 0, {}}});
          } else {
            refused(x.packet_id, s);  // [MQTT-4.3.3] the exchange ends here: no PUBREL
          }
        } else if constexpr (std::is_same_v<T, mqtt::pubcomp>) {
          on_ack(x.packet_id, wait::pubcomp, s);
        } else if constexpr (std::is_same_v<T, mqtt::pubrel>) {
          // [MQTT-4.3.3-11] PUBCOMP whether or not the id is known.
          awaiting_rel_.erase(x.packet_id);
          s.send.emplace_back(mqtt::pubcomp{{x.packet_id, 0, {}}});
        } else if constexpr (std::is_same_v<T, mqtt::suback>) {
          for (std::size_t i = 0; i < x.reasons.size(); ++i) {
            if (x.reasons[i] >= 0x80) {
              s.warnings.push_back("the remote refused subscription " + std::to_string(i + 1) +
                                   " with code " + std::to_string(x.reasons[i]));
            }
          }
        } else if constexpr (std::is_same_v<T, mqtt::pingresp> ||
                             std::is_same_v<T, mqtt::unsuback>) {
          // Nothing to do: any packet proves the remote alive.
        } else if constexpr (std::is_same_v<T, mqtt::disconnect>) {
          s.close = "the remote sent DISCONNECT (reason " + std::to_string(x.reason) + ")";
        } else {
          s.close =
              std::string("unexpected ") + mqtt::to_string(mqtt::type_of(p)) + " from the remote";
        }
      },
      p);
  return s;
}

step client_session::on_connack(const mqtt::connack& c, clock::time_point now) {
  step s;
  if (c.reason != 0) {
    s.refused = c.reason;
    s.close = "CONNECT refused with code " + std::to_string(c.reason);
    return s;
  }
  connected_ = true;
  s.is_now_connected = true;
  last_ping_ = now;
  remote_receive_max_ = c.props.receive_maximum;
  remote_max_qos_ = c.props.maximum_qos
                        ? static_cast<mqtt::qos>(std::min<std::uint8_t>(*c.props.maximum_qos, 2))
                        : mqtt::qos::exactly_once;
  if (opts_.clean_session || !c.session_present) {
    awaiting_rel_.clear();  // a new session on the remote: no PUBREL will come
  }
  // Subscribe to everything the `in` rules bring here.
  mqtt::subscribe sub;
  for (const auto& r : rules_) {
    if (!r.is_in()) {
      continue;
    }
    mqtt::subscription one;
    one.filter = r.remote_filter();
    one.max_qos = r.q;
    // MQTT 5: what this bridge publishes there does not come back [MQTT-3.8.3-3].
    one.no_local = opts_.version == mqtt::protocol_version::v5;
    sub.subscriptions.push_back(std::move(one));
  }
  if (!sub.subscriptions.empty()) {
    sub.packet_id = next_packet_id();
    subscribe_id_ = sub.packet_id;
    s.send.emplace_back(std::move(sub));
  }
  // [MQTT-4.4.0-1] resend what was not acknowledged, in the original order, with DUP.
  for (auto& f : inflight_) {
    if (f.state == wait::pubcomp) {
      s.send.emplace_back(mqtt::pubrel{{f.packet_id, 0, {}}});
    } else {
      send_publish(f.m, true, f.packet_id, s);
    }
  }
  fill_window(s);
  return s;
}

void client_session::on_publish(const mqtt::publish& p, step& s) {
  auto m = map_in(rules_, p.topic, p.q);
  bool is_new = true;
  if (p.q == mqtt::qos::exactly_once) {
    // A resent QoS 2 message already published here is not published again.
    is_new = awaiting_rel_.insert(p.packet_id).second;
  }
  if (is_new) {
    if (m) {
      inbound in{std::move(m->topic), p.payload, p.q, p.retain, p.props};
      in.props.topic_alias.reset();
      in.props.subscription_identifiers.clear();
      s.deliver.push_back(std::move(in));
    } else {
      ++counters_.dropped;  // the remote sent a topic no rule brings in
    }
  }
  if (p.q == mqtt::qos::at_least_once) {
    s.send.emplace_back(mqtt::puback{{p.packet_id, 0, {}}});
  } else if (p.q == mqtt::qos::exactly_once) {
    s.send.emplace_back(mqtt::pubrec{{p.packet_id, 0, {}}});
  }
}

void client_session::on_ack(std::uint16_t id, wait expected, step& s) {
  auto it = std::find_if(inflight_.begin(), inflight_.end(),
                         [&](const in_flight& f) { return f.packet_id == id; });
  if (it == inflight_.end()) {
    return;  // a late or duplicate acknowledgement
  }
  if (expected == wait::pubrec) {
    if (it->state != wait::pubrec) {
      return;
    }
    it->state = wait::pubcomp;
    if (it->m.seq != 0) {
      released_.push_back(it->m.seq);  // the remote has it: only the PUBREL is owed
      it->m.seq = 0;
    }
    return;
  }
  if (expected == wait::puback && it->state != wait::puback) {
    return;
  }
  if (expected == wait::pubcomp && it->state != wait::pubcomp) {
    return;
  }
  if (it->m.seq != 0) {
    released_.push_back(it->m.seq);
  }
  inflight_.erase(it);
  ++counters_.forwarded_out;
  fill_window(s);
}

void client_session::refused(std::uint16_t id, step& s) {
  auto it = std::find_if(inflight_.begin(), inflight_.end(),
                         [&](const in_flight& f) { return f.packet_id == id; });
  if (it == inflight_.end() || it->state != wait::pubrec) {
    return;
  }
  s.warnings.push_back("the remote refused the message on " + it->m.topic);
  if (it->m.seq != 0) {
    released_.push_back(it->m.seq);
  }
  inflight_.erase(it);
  ++counters_.dropped;
  fill_window(s);
}

step client_session::enqueue(outgoing m, clock::time_point) {
  step s;
  counters_.dropped += queue_.push(std::move(m), &released_);
  if (connected_) {
    fill_window(s);
  }
  return s;
}

std::size_t client_session::window() const {
  std::size_t w = opts_.max_inflight;
  if (remote_receive_max_ && *remote_receive_max_ > 0) {
    w = std::min<std::size_t>(w, *remote_receive_max_);
  }
  return std::max<std::size_t>(w, 1);
}

void client_session::fill_window(step& s) {
  while (connected_ && !queue_.empty()) {
    auto q = std::min(queue_.front().q, remote_max_qos_);
    if (q != mqtt::qos::at_most_once && inflight_.size() >= window()) {
      return;  // order is kept: nothing overtakes a message waiting for the window
    }
    auto m = *queue_.pop();
    m.q = q;
    if (q == mqtt::qos::at_most_once) {
      if (m.seq != 0) {
        released_.push_back(m.seq);
      }
      send_publish(std::move(m), false, 0, s);
      ++counters_.forwarded_out;
    } else {
      auto id = next_packet_id();
      send_publish(m, false, id, s);
      inflight_.push_back(
          in_flight{id, std::move(m), q == mqtt::qos::exactly_once ? wait::pubrec : wait::puback});
    }
  }
}

void client_session::send_publish(outgoing m, bool dup, std::uint16_t id, step& s) {
  mqtt::publish p;
  p.dup = dup && m.q != mqtt::qos::at_most_once;  // [MQTT-3.3.1-2]
  p.q = m.q;
  p.retain = m.retain;
  p.topic = std::move(m.topic);
  p.packet_id = id;
  if (m.msg) {
    p.payload = m.msg->payload;
    if (opts_.version == mqtt::protocol_version::v5) {
      const auto& src = m.msg->props;
      p.props.payload_format_indicator = src.payload_format_indicator;
      p.props.content_type = src.content_type;
      p.props.response_topic = src.response_topic;
      p.props.correlation_data = src.correlation_data;
      p.props.user_properties = src.user_properties;
      if (src.message_expiry_interval) {
        auto left =
            std::chrono::duration_cast<std::chrono::seconds>(m.msg->expires_at() - clock::now());
        p.props.message_expiry_interval =
            static_cast<std::uint32_t>(std::max<std::int64_t>(1, left.count()));
      }
    }
  }
  s.send.emplace_back(std::move(p));
}

std::uint16_t client_session::next_packet_id() {
  // Skip ids still in flight (at most max_inflight + 1 of 65535 are in use).
  for (;;) {
    last_id_ = static_cast<std::uint16_t>(last_id_ == 65535 ? 1 : last_id_ + 1);
    bool used = last_id_ == subscribe_id_ ||
                std::any_of(inflight_.begin(), inflight_.end(),
                            [&](const in_flight& f) { return f.packet_id == last_id_; });
    if (!used) {
      return last_id_;
    }
  }
}

std::vector<outgoing> client_session::pending() const {
  std::vector<outgoing> out;
  for (const auto& f : inflight_) {
    if (f.state != wait::pubcomp) {
      out.push_back(f.m);
    }
  }
  for (const auto& m : queue_.items()) {
    out.push_back(m);
  }
  return out;
}

void client_session::restore(std::vector<outgoing> saved) {
  outbox merged(opts_.max_queued);
  for (auto& m : saved) {
    counters_.dropped += merged.push(std::move(m), &released_);
  }
  while (auto m = queue_.pop()) {
    counters_.dropped += merged.push(std::move(*m), &released_);
  }
  queue_ = std::move(merged);
}

step client_session::on_tick(clock::time_point now) {
  step s;
  if (!open_) {
    return s;
  }
  if (!connected_) {
    if (now - opened_at_ >= opts_.connack_timeout) {
      s.close =
          "no CONNACK within " +
          std::to_string(
              std::chrono::duration_cast<std::chrono::seconds>(opts_.connack_timeout).count()) +
          "s";
    }
    return s;
  }
  if (opts_.keepalive.count() == 0) {
    return s;
  }
  // [MQTT-3.1.2-24] the server allows 1.5 keepalives; we give the remote as long to answer.
  if (now - last_received_ >= opts_.keepalive + opts_.keepalive / 2) {
    s.close = "the remote did not answer within 1.5 keepalive intervals";
    return s;
  }
  if (now - last_ping_ >= opts_.keepalive / 2) {
    last_ping_ = now;
    s.send.emplace_back(mqtt::pingreq{});
  }
  return s;
}

}  // namespace tern::actors::bridge
