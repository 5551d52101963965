// The publish path: match the route table, merge overlapping subscriptions, send to sessions.
#include "actors/broker/dispatch.hpp"

#include <algorithm>
#include <random>
#include <vector>

#include "actors/broker/types.hpp"
#include "proto/mqtt/topic.hpp"

namespace tern::actors::broker {

namespace {

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

namespace {

/// Delivers `m` to the local sessions: the normal subscribers when `subscribers`, and one
/// member of every matching shared group (`only_groups` null) or of the named groups only.
/// Appends the groups served to `served` when given.
std::size_t deliver(context& ctx, const message_ptr& m, bool subscribers,
                    const std::vector<std::string>* only_groups,
                    std::vector<router::share_key>* served,
                    const std::shared_ptr<flow::gate>& publisher) {
  if (m->retain) {
    ctx.retained.put(m);
    if (ctx.db) {
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
        cur.d.subscription_ids.insert(cur.d.subscription_ids.end(),
                                      t.d.subscription_ids.begin(), t.d.subscription_ids.end());
      } else {
        targets[++w] = std::move(t);
      }
    }
    targets.resize(w + 1);
  }
  // Count each delivery into its session's backlog before it is sent; note the sessions the
  // publisher has to wait for (never its own: it could not read its own acknowledgements).
  thread_local std::vector<flow::backlog_ptr> over;
  const auto marks =
      flow::marks_for(ctx.cfg.flow.high_watermark, ctx.cfg.session.max_queued_messages);
  auto send = [&](target& t) {
    if (auto& b = t.session.backlog) {
      auto n = b->add();
      if (publisher && b->is_over(n, marks) && t.session.id() != m->from_session) {
        over.push_back(b);
      }
    }
    caf::anon_send(t.session.actor, deliver_atom::value, std::move(t.d));
  };
  for (auto& t : targets) {
    send(t);
  }
  for (auto& t : shared) {
    send(t);
  }
  auto n = targets.size() + shared.size();
  targets.clear();  // drop the session handles now, not at the next publish
  shared.clear();
  if (!over.empty()) {
    publisher->pause_for(over);
    over.clear();
  }
  return n;
}

}  // namespace

std::size_t dispatch(context& ctx, const message_ptr& m, bool from_cluster,
                     const std::shared_ptr<flow::gate>& publisher) {
  bool forward = !from_cluster && !m->is_local && ctx.forward_remote;
  thread_local std::vector<router::share_key> served;
  served.clear();
  auto n = deliver(ctx, m, true, nullptr, forward ? &served : nullptr, publisher);
  if (forward) {
    // Groups served here go to no other node; the others to one node each.
    ctx.forward_remote(m, served);
    served.clear();
  }
  return n;
}

std::size_t dispatch_forwarded(context& ctx, const message_ptr& m, const forwarded_for& f) {
  // Messages from other nodes are never held back: there is no flow control between nodes.
  return deliver(ctx, m, f.subscribers, f.every_group ? nullptr : &f.groups, nullptr, nullptr);
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
