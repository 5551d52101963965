// The publish path: match the route table, merge overlapping subscriptions, send to sessions.
#include "actors/broker/dispatch.hpp"

#include <algorithm>
#include <random>
#include <vector>

#include "actors/broker/types.hpp"
#include "proto/mqtt/topic.hpp"

namespace tern::actors::broker {

namespace {

/// Memory of one delivery besides its message's topic and payload, as the node's budget
/// counts it: the delivery, its mailbox element, its in-flight entry and its share of the
/// message object, its encoded copy on the way to the socket and the allocator's slack
/// (measured: docs/benchmark.md, "Flow control, measured").
constexpr std::size_t delivery_overhead = 1024;

struct target {
  session_ref session;  // a copy: the table may change once the lock is released
  session::delivery d;
};

std::uint32_t random_u32() {
  thread_local std::minstd_rand rng{std::random_device{}()};
  return static_cast<std::uint32_t>(rng());
}

router::share_pick make_pick(const context& ctx, const message& m) {
  router::share_pick pick;
  pick.strategy = router::share_strategy_from(ctx.cfg.mqtt5.shared_subscription_strategy);
  pick.random = random_u32();
  pick.publisher = m.from;
  return pick;
}

session::delivery delivery_for(const message& m, const message_ptr& mp,
                               const router::sub_options& opts, const router::share_key* key) {
  session::delivery d{mp, std::min(m.q, opts.max_qos), opts.retain_as_published && m.retain, {},
                      {}};
  if (opts.subscription_id != 0) {
    d.subscription_ids.push_back(opts.subscription_id);
  }
  if (key != nullptr) {
    d.share = *key;
  }
  return d;
}

}  // namespace

struct deferred_sends {
  message_ptr m;
  std::vector<target> targets;  // normal subscribers, then shared-group members
  bool forward = false;
  std::vector<router::share_key> served;
};

namespace {

/// Sends the planned deliveries; returns how many.
void send_all(context& ctx, const message_ptr& m, std::vector<target>& targets,
              const std::shared_ptr<flow::gate>& publisher) {
  // Count each delivery into its session's backlog before it is sent; note the sessions the
  // publisher has to wait for (never its own: it could not read its own acknowledgements).
  thread_local std::vector<flow::backlog_ptr> over;
  const auto marks =
      flow::marks_for(ctx.cfg.flow.high_watermark, ctx.cfg.session.max_queued_messages);
  // The node's budget: each delivery counts its message and its bookkeeping (a fan-out
  // counts the shared payload once per subscriber: an upper bound of what it holds).
  const auto bytes = static_cast<std::uint32_t>(
      std::min<std::size_t>(m->topic.size() + m->payload.size() + delivery_overhead, UINT32_MAX));
  for (auto& t : targets) {
    if (auto& b = t.session.backlog) {
      auto n = b->add();
      if (publisher && b->is_over(n, marks) && t.session.id() != m->from_session) {
        over.push_back(b);
      }
    }
    t.d.charge = flow::charge(bytes);
    caf::anon_send(t.session.actor, deliver_atom::value, std::move(t.d));
  }
  if (publisher && !targets.empty()) {
    const auto& budget = flow::budget();
    if (budget->is_over(budget->size(), flow::budget_marks())) {
      over.push_back(budget);
    }
  }
  if (!over.empty()) {
    ctx.stats.flow_pauses.fetch_add(1, std::memory_order_relaxed);
    publisher->pause_for(over);
    over.clear();
  }
}

/// Write-ahead: a record for every persistent session (and bridge) among the targets.
void add_records(std::vector<target>& targets, store::txn& t) {
  for (auto& x : targets) {
    auto& b = x.session.backlog;
    if (x.d.q != proto::mqtt::qos::at_most_once && b && b->is_durable()) {
      x.d.seq = b->next_seq();
      if (b->is_bridge()) {
        t.put_bridge(b->client_id(), x.d.seq, x.d);
      } else {
        t.put_pending(b->client_id(), x.d.seq, x.d);
      }
    }
  }
}

/// Delivers `m` to the local sessions: the normal subscribers when `subscribers`, and one
/// member of every matching shared group (`only_groups` null) or of the named groups only.
/// Appends the groups served to `served` when given.
std::size_t deliver(context& ctx, const message_ptr& m, bool subscribers,
                    const std::vector<std::string>* only_groups,
                    std::vector<router::share_key>* served,
                    const std::shared_ptr<flow::gate>& publisher, durable_publish* durable,
                    std::function<void(bool)>* done) {
  if (m->retain) {
    if (durable != nullptr) {
      durable->txn.put_retained(*m);
    } else if (ctx.db) {
      ctx.db->put_retained(*m);
    }
  }
  // Reused per thread: no allocation per publish once warmed up.
  thread_local std::vector<target> targets;
  thread_local std::vector<target> shared;
  targets.clear();
  shared.clear();
  auto plain = [&](std::string_view, const auto& e) {
    // [MQTT-3.8.3-3] No Local: never back to the publisher's own session.
    if (e.opts.no_local && m->from_session != 0 && e.sub.id() == m->from_session) {
      return;
    }
    targets.push_back(target{e.sub, delivery_for(*m, m, e.opts, nullptr)});
  };
  // [MQTT-4.8.2-4] each shared group gets the message once, at its member's QoS; shared
  // copies are never merged with the session's other subscriptions.
  auto one_of_group = [&](std::string_view, const auto& e, const router::share_key& key) {
    shared.push_back(target{e.sub, delivery_for(*m, m, e.opts, &key)});
    if (served != nullptr) {
      served->push_back(key);
    }
  };
  auto pick = make_pick(ctx, *m);
  if (only_groups == nullptr) {
    ctx.routes.match(m->topic, plain, pick, one_of_group);
  } else {
    if (subscribers) {
      ctx.routes.match(m->topic, plain);
    }
    for (auto& key : *only_groups) {
      auto parsed = proto::mqtt::parse_filter(key);
      if (!parsed || !parsed->share_group ||
          !proto::mqtt::is_valid_topic_filter(parsed->filter) ||
          !proto::mqtt::topic_matches(parsed->filter, m->topic)) {
        continue;
      }
      ctx.routes.pick_member(key, caf::actor{}, pick,
                             [&](const auto& e, const router::share_key& k) {
                               shared.push_back(target{e.sub, delivery_for(*m, m, e.opts, &k)});
                             });
    }
  }
  if (targets.size() > 1) {
    // Merge overlapping subscriptions of one session into one delivery.
    std::sort(targets.begin(), targets.end(), [](const target& a, const target& b) {
      return a.session.id() < b.session.id();
    });
    std::size_t w = 0;
    for (std::size_t r = 1; r < targets.size(); ++r) {
      auto& cur = targets[w];
      auto& t = targets[r];
      if (cur.session.id() == t.session.id()) {
        cur.d.q = std::max(cur.d.q, t.d.q);
        cur.d.retain = cur.d.retain || t.d.retain;
        // [MQTT-3.3.4-4] the identifiers of all matching subscriptions. Two with the same
        // identifier (say two filters of one SUBSCRIBE) give it twice: "the PUBLISH packet will
        // carry multiple identical Subscription Identifiers" (3.3.4).
        cur.d.subscription_ids.insert(cur.d.subscription_ids.end(),
                                      t.d.subscription_ids.begin(), t.d.subscription_ids.end());
      } else {
        targets[++w] = std::move(t);
      }
    }
    targets.resize(w + 1);
  }
  targets.insert(targets.end(), std::make_move_iterator(shared.begin()),
                 std::make_move_iterator(shared.end()));
  shared.clear();
  auto n = targets.size();
  if (durable != nullptr) {
    add_records(targets, durable->txn);
    durable->waits = !durable->txn.empty();
    if (durable->waits && !ctx.db->is_healthy()) {
      // Refused before anyone sees it: "acknowledged" must keep meaning "on disk".
      durable->waits = false;
      durable->refused = true;
      durable->txn.ops().clear();
      targets.clear();
      return 0;
    }
    if (durable->waits) {
      if (durable->defer) {
        // Sent by the writer once written, before the caller hears of it: they happen even
        // when the publisher's connection is gone by then (its PUBLISH is on disk as routed).
        auto d = std::make_shared<deferred_sends>();
        d->m = m;
        d->targets = std::move(targets);
        targets.clear();
        durable->deferred = d;
        auto* c = &ctx;  // outlives the store's writer, which it owns
        ctx.db->submit(std::move(durable->txn),
                       [c, d, publisher, done = std::move(*done)](bool ok) {
                         run_deferred(*c, *d, ok, publisher);
                         done(ok);
                       });
        return n;
      }
      // Submitted before any session sees the message: whatever a session later writes
      // about it (acknowledged, dropped) is ordered after the record.
      ctx.db->submit(std::move(durable->txn), std::move(*done));
    }
  }
  if (m->retain) {
    ctx.retained.put(m);
  }
  send_all(ctx, m, targets, publisher);
  targets.clear();  // drop the session handles now, not at the next publish
  return n;
}

}  // namespace

std::size_t dispatch(context& ctx, const message_ptr& m, bool from_cluster,
                     const std::shared_ptr<flow::gate>& publisher, durable_publish* durable,
                     std::function<void(bool)> done) {
  bool forward = !from_cluster && !m->is_local && ctx.forward_remote;
  if (forward && m->origin == 0) {
    // Nobody has the message yet: the stamp is written before it is shared.
    m->origin = ctx.origin;
    m->origin_seq = ctx.origin_seq.fetch_add(1, std::memory_order_relaxed) + 1;
  }
  thread_local std::vector<router::share_key> served;
  served.clear();
  if (durable != nullptr && (!ctx.db || !ctx.db->is_durable())) {
    durable = nullptr;
  }
  auto n = deliver(ctx, m, true, nullptr, forward ? &served : nullptr, publisher, durable, &done);
  if (durable != nullptr && durable->refused) {
    served.clear();
    return n;
  }
  if (durable != nullptr && durable->deferred) {
    durable->deferred->forward = forward;
    durable->deferred->served = std::move(served);
    served.clear();
    return n;
  }
  if (forward) {
    // Groups served here go to no other node; the others to one node each.
    ctx.forward_remote(m, served, publisher);
    served.clear();
  }
  return n;
}

std::size_t dispatch_forwarded(context& ctx, const message_ptr& m, const forwarded_for& f,
                               const std::shared_ptr<flow::gate>& link) {
  // A session over its mark pauses the link: the cluster actor then holds back its
  // acknowledgements to the sending node, whose window of forwards closes.
  return deliver(ctx, m, f.subscribers, f.every_group ? nullptr : &f.groups, nullptr, link,
                 nullptr, nullptr);
}

void run_deferred(context& ctx, deferred_sends& d, bool ok,
                  const std::shared_ptr<flow::gate>& publisher) {
  if (!ok) {
    return;  // refused to its publisher: nobody gets it
  }
  if (d.m->retain) {
    ctx.retained.put(d.m);
  }
  send_all(ctx, d.m, d.targets, publisher);
  d.targets.clear();
  if (d.forward) {
    ctx.forward_remote(d.m, d.served, publisher);
  }
}

}  // namespace tern::actors::broker

namespace tern::actors::broker {

bool redispatch_shared(context& ctx, const caf::actor& from, session::delivery d) {
  if (!d.share || !d.msg) {
    return false;
  }
  auto pick = make_pick(ctx, *d.msg);
  auto key = d.share;
  return ctx.routes.pick_member(*key, from, pick, [&](const auto& e) {
    auto m = d.msg;
    auto nd = delivery_for(*m, m, e.opts, &key);
    if (e.sub.backlog) {
      e.sub.backlog->add();  // the member's backlog, like any delivery (nobody to pause)
    }
    caf::anon_send(e.sub.actor, deliver_atom::value, std::move(nd));
  });
}

}  // namespace tern::actors::broker
