// MQTT session state machine: inflight window, queue with drop policy, packet ids, retry.
#include "actors/session/session.hpp"

#include <algorithm>

namespace tern::actors::session {

session::session(const settings& s) : cfg_(s), window_(s.max_inflight) {}

void session::set_receive_maximum(std::uint32_t n) {
  window_ = n == 0 ? cfg_.max_inflight : std::min(cfg_.max_inflight, n);
}

void session::resume(clock::time_point now, out_list& out) {
  online_ = true;
  // [MQTT-4.4.0-1] resend unacknowledged PUBLISH (with DUP) and PUBREL, in original order;
  // each counts against the client's Receive Maximum until PUBACK / PUBCOMP [MQTT-3.3.4-9].
  for (auto& e : inflight_) {
    e.unsent = true;
  }
  unsent_ = static_cast<std::uint32_t>(inflight_.size());
  drain(now, out);
}

void session::resend(inflight_entry& e, clock::time_point now, out_list& out) {
  e.sent_at = now;
  if (e.ph == phase::wait_pubcomp) {
    out.emplace_back(out_pubrel{e.id});
  } else {
    out.emplace_back(out_publish{e.id, true, e.d});
  }
}

void session::resend_unsent(clock::time_point now, out_list& out) {
  for (auto& e : inflight_) {
    if (unsent_ == 0 || inflight_.size() - unsent_ >= window_) {
      return;
    }
    if (e.unsent) {
      e.unsent = false;
      --unsent_;
      resend(e, now, out);
    }
  }
}

void session::note_sent(const inflight_entry& e) {
  if (journal_ != nullptr && e.d.seq != 0) {
    auto ph = e.ph == phase::wait_puback ? 1 : e.ph == phase::wait_pubrec ? 2 : 3;
    journal_->push_back(change{change::kind::sent, e.d.seq, e.id, static_cast<std::uint8_t>(ph)});
  }
}

void session::note_removed(const delivery& d) {
  if (journal_ != nullptr && d.seq != 0) {
    journal_->push_back(change{change::kind::removed, d.seq, 0, 0});
  }
}

void session::pause() {
  online_ = false;
  // What waits for an offline client is bounded by max_queued, not by the node's budget.
  for (auto& e : inflight_) {
    e.d.charge.release();
  }
  if (queue_) {
    for (auto& d : *queue_) {
      d.charge.release();
    }
  }
}

deliver_result session::deliver(delivery d, clock::time_point now, out_list& out) {
  if (d.msg && d.msg->is_expired(now)) {
    ++expired_;
    note_removed(d);
    return deliver_result::expired;
  }
  if (online_) {
    if (d.q == qos::at_most_once) {
      out.emplace_back(out_publish{0, false, std::move(d)});
      return deliver_result::sent;
    }
    // Keep order: while older messages wait in the queue, new ones queue behind them.
    if (inflight_.size() < window_ && queue_size() == 0) {
      send_new(std::move(d), now, out);
      return deliver_result::sent;
    }
  } else if (d.q == qos::at_most_once && !cfg_.queue_qos0) {
    ++dropped_;
    return deliver_result::dropped;
  } else {
    d.charge.release();  // offline: bounded by max_queued, not by the node's budget
  }
  return enqueue(std::move(d));
}

deliver_result session::enqueue(delivery d) {
  if (cfg_.max_queued == 0 && !(online_ && d.q != qos::at_most_once)) {
    ++dropped_;
    note_removed(d);
    return deliver_result::dropped;
  }
  if (!queue_) {
    queue_ = std::make_unique<std::deque<delivery>>();
  }
  auto& q = *queue_;
  bool evicted = false;
  if (q.size() >= cfg_.max_queued) {
    // Full: QoS 0 messages go first, then the oldest message.
    if (d.q == qos::at_most_once && queued_qos0_ == 0) {
      ++dropped_;
      return deliver_result::dropped;
    }
    if (online_ && queued_qos0_ == 0) {
      // A connected client's QoS 1/2 messages were acknowledged to their publishers, which
      // flow control pauses before this queue gets much longer (broker::dispatch): keep
      // them. Only an offline queue drops the oldest.
      q.push_back(std::move(d));
      return deliver_result::queued;
    }
    auto victim = q.begin();
    if (queued_qos0_ > 0) {
      victim = std::find_if(q.begin(), q.end(),
                            [](const delivery& x) { return x.q == qos::at_most_once; });
    }
    if (victim->q == qos::at_most_once) {
      --queued_qos0_;
    }
    note_removed(*victim);
    q.erase(victim);
    ++dropped_;
    evicted = true;
  }
  if (d.q == qos::at_most_once) {
    ++queued_qos0_;
  }
  q.push_back(std::move(d));
  return evicted ? deliver_result::queued_evicted : deliver_result::queued;
}

void session::drain(clock::time_point now, out_list& out) {
  if (!online_) {
    return;
  }
  resend_unsent(now, out);
  if (!queue_) {
    return;
  }
  auto& q = *queue_;
  while (!q.empty()) {
    auto& front = q.front();
    if (front.msg && front.msg->is_expired(now)) {
      // [MQTT-3.3.2-5] expired while queued: never sent.
      ++expired_;
      note_removed(front);
      if (front.q == qos::at_most_once) {
        --queued_qos0_;
      }
    } else if (front.q == qos::at_most_once) {
      --queued_qos0_;
      out.emplace_back(out_publish{0, false, std::move(front)});
    } else if (inflight_.size() < window_) {
      send_new(std::move(front), now, out);
    } else {
      break;
    }
    q.pop_front();
  }
  if (q.empty()) {
    queue_.reset();
  }
}

std::uint16_t session::next_packet_id() {
  // Ids in use are never reused; the window is far smaller than the id space.
  for (;;) {
    last_id_ = static_cast<std::uint16_t>(last_id_ == 65535 ? 1 : last_id_ + 1);
    if (find(last_id_) == nullptr) {
      return last_id_;
    }
  }
}

void session::send_new(delivery d, clock::time_point now, out_list& out) {
  auto id = next_packet_id();
  auto ph = d.q == qos::exactly_once ? phase::wait_pubrec : phase::wait_puback;
  inflight_.push_back(inflight_entry{id, ph, false, now, d});
  inflight_.back().d.charge = std::move(d.charge);  // the budget follows the kept entry
  note_sent(inflight_.back());
  out.emplace_back(out_publish{id, false, std::move(d)});
}

session::inflight_entry* session::find(std::uint16_t id) {
  for (auto& e : inflight_) {
    if (e.id == id) {
      return &e;
    }
  }
  return nullptr;
}

void session::erase(std::uint16_t id) {
  if (auto* e = find(id); e != nullptr && e->unsent) {
    --unsent_;
  }
  inflight_.erase(std::remove_if(inflight_.begin(), inflight_.end(),
                                 [id](const inflight_entry& e) { return e.id == id; }),
                  inflight_.end());
}

bool session::on_puback(std::uint16_t id, clock::time_point now, out_list& out) {
  auto* e = find(id);
  if (e == nullptr || e->ph != phase::wait_puback) {
    return false;
  }
  note_removed(e->d);
  erase(id);
  drain(now, out);
  return true;
}

bool session::on_pubrec(std::uint16_t id, clock::time_point now, out_list& out) {
  auto* e = find(id);
  if (e == nullptr) {
    return false;
  }
  if (e->ph == phase::wait_puback) {
    return false;
  }
  if (e->unsent) {
    // Its PUBREC from the client, before the resend: the PUBREL goes now.
    e->unsent = false;
    --unsent_;
  }
  // A repeated PUBREC (after our PUBREL was lost) is answered with PUBREL again.
  if (e->ph != phase::wait_pubcomp) {
    e->ph = phase::wait_pubcomp;
    note_sent(*e);
  }
  e->sent_at = now;
  e->d.msg.reset();  // the payload is no longer needed: release it early
  out.emplace_back(out_pubrel{id});
  return true;
}

bool session::on_pubcomp(std::uint16_t id, clock::time_point now, out_list& out) {
  auto* e = find(id);
  if (e == nullptr || e->ph != phase::wait_pubcomp) {
    return false;
  }
  note_removed(e->d);
  erase(id);
  drain(now, out);
  return true;
}

bool session::on_pubrec_failed(std::uint16_t id, clock::time_point now, out_list& out) {
  auto* e = find(id);
  if (e == nullptr || e->ph != phase::wait_pubrec) {
    return false;
  }
  note_removed(e->d);
  erase(id);
  drain(now, out);
  return true;
}

bool session::discard(std::uint16_t id, clock::time_point now, out_list& out) {
  auto* e = find(id);
  if (e == nullptr) {
    return false;
  }
  note_removed(e->d);
  erase(id);
  drain(now, out);
  return true;
}

std::vector<delivery> session::take_shared(const std::string* key, bool with_sent_qos1) {
  std::vector<delivery> out;
  auto wanted = [key](const delivery& d) {
    return d.share && d.msg && (key == nullptr || *d.share == *key);
  };
  for (auto i = inflight_.begin(); with_sent_qos1 && i != inflight_.end();) {
    if (i->ph == phase::wait_puback && wanted(i->d)) {
      if (i->unsent) {
        --unsent_;
      }
      note_removed(i->d);
      out.push_back(std::move(i->d));
      i = inflight_.erase(i);
    } else {
      ++i;
    }
  }
  if (queue_) {
    auto& q = *queue_;
    for (auto i = q.begin(); i != q.end();) {
      if (wanted(*i)) {
        if (i->q == qos::at_most_once) {
          --queued_qos0_;
        }
        note_removed(*i);
        out.push_back(std::move(*i));
        i = q.erase(i);
      } else {
        ++i;
      }
    }
    if (q.empty()) {
      queue_.reset();
    }
  }
  return out;
}

void session::retry(clock::time_point now, out_list& out) {
  if (!online_ || cfg_.retry_interval.count() == 0) {
    return;
  }
  for (auto& e : inflight_) {
    if (e.unsent || now - e.sent_at < cfg_.retry_interval) {
      continue;
    }
    resend(e, now, out);
  }
}

std::optional<clock::time_point> session::next_retry() const {
  if (!online_ || inflight_.empty() || cfg_.retry_interval.count() == 0) {
    return std::nullopt;
  }
  std::optional<clock::time_point> oldest;
  for (auto& e : inflight_) {
    if (!e.unsent && (!oldest || e.sent_at < *oldest)) {
      oldest = e.sent_at;
    }
  }
  if (!oldest) {
    return std::nullopt;
  }
  return *oldest + cfg_.retry_interval;
}

rel_result session::await_rel(std::uint16_t id, clock::time_point now) {
  if (!awaiting_rel_) {
    awaiting_rel_ = std::make_unique<std::unordered_map<std::uint16_t, clock::time_point>>();
  }
  auto& awaiting = *awaiting_rel_;
  if (awaiting.count(id) != 0) {
    return rel_result::duplicate;
  }
  if (awaiting.size() >= cfg_.max_awaiting_rel) {
    expire_awaiting(now);
    if (awaiting.size() >= cfg_.max_awaiting_rel) {
      return rel_result::full;
    }
  }
  awaiting.emplace(id, now);
  return rel_result::fresh;
}

bool session::release(std::uint16_t id) {
  return awaiting_rel_ && awaiting_rel_->erase(id) != 0;
}

std::size_t session::expire_awaiting(clock::time_point now) {
  std::size_t n = 0;
  if (!awaiting_rel_) {
    return n;
  }
  auto& awaiting = *awaiting_rel_;
  for (auto it = awaiting.begin(); it != awaiting.end();) {
    if (now - it->second >= cfg_.await_rel_timeout) {
      it = awaiting.erase(it);
      ++n;
    } else {
      ++it;
    }
  }
  return n;
}

std::size_t session::number(const std::function<std::uint64_t()>& next) {
  std::size_t n = 0;
  auto give = [&](delivery& d) {
    if (d.seq == 0 && d.q != qos::at_most_once) {
      d.seq = next();
      ++n;
    }
  };
  for (auto& e : inflight_) {
    give(e.d);
  }
  if (queue_) {
    for (auto& d : *queue_) {
      give(d);
    }
  }
  return n;
}

std::uint64_t session::max_seq() const {
  std::uint64_t m = 0;
  for (auto& e : inflight_) {
    m = std::max(m, e.d.seq);
  }
  if (queue_) {
    for (auto& d : *queue_) {
      m = std::max(m, d.seq);
    }
  }
  return m;
}

session::snapshot session::save() const {
  snapshot s;
  s.last_packet_id = last_id_;
  for (auto& e : inflight_) {
    auto ph = e.ph == phase::wait_puback   ? 1
              : e.ph == phase::wait_pubrec ? 2
                                           : 3;
    s.messages.push_back(pending{e.d, e.id, static_cast<std::uint8_t>(ph)});
  }
  if (queue_) {
    for (auto& d : *queue_) {
      s.messages.push_back(pending{d, 0, 0});
    }
  }
  if (awaiting_rel_) {
    for (auto& kv : *awaiting_rel_) {
      s.awaiting_rel.push_back(kv.first);
    }
  }
  return s;
}

void session::restore(snapshot s, clock::time_point now) {
  online_ = false;
  inflight_.clear();
  unsent_ = 0;
  queue_.reset();
  queued_qos0_ = 0;
  awaiting_rel_.reset();
  last_id_ = s.last_packet_id;
  for (auto& p : s.messages) {
    if (p.packet_id == 0 || p.phase == 0) {
      if (!queue_) {
        queue_ = std::make_unique<std::deque<delivery>>();
      }
      if (p.d.q == qos::at_most_once) {
        ++queued_qos0_;
      }
      queue_->push_back(std::move(p.d));
      continue;
    }
    auto ph = p.phase == 1 ? phase::wait_puback : p.phase == 2 ? phase::wait_pubrec : phase::wait_pubcomp;
    inflight_.push_back(inflight_entry{p.packet_id, ph, false, now, std::move(p.d)});
  }
  if (!s.awaiting_rel.empty()) {
    awaiting_rel_ = std::make_unique<std::unordered_map<std::uint16_t, clock::time_point>>();
    for (auto id : s.awaiting_rel) {
      awaiting_rel_->emplace(id, now);
    }
  }
}

}  // namespace tern::actors::session
