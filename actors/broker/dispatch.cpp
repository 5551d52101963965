// The publish path: match the route table, merge overlapping subscriptions, send to sessions.
#include "actors/broker/dispatch.hpp"

#include <algorithm>
#include <vector>

#include "actors/broker/types.hpp"

namespace tern::actors::broker {

namespace {

struct target {
  caf::actor session;  // a copy: the table may change once the lock is released
  session::delivery d;
};

}  // namespace

std::size_t dispatch(context& ctx, const message_ptr& m, bool from_cluster) {
  if (m->retain) {
    ctx.retained.put(m);
    if (ctx.db) {
      ctx.db->put_retained(*m);
    }
  }
  // Reused per thread: no allocation per publish once warmed up.
  thread_local std::vector<target> targets;
  targets.clear();
  ctx.routes.match(m->topic, [&](std::string_view, const auto& e) {
    auto q = std::min(m->q, e.opts.max_qos);
    session::delivery d{m, q, e.opts.retain_as_published && m->retain, {}};
    if (e.opts.subscription_id != 0) {
      d.subscription_ids.push_back(e.opts.subscription_id);
    }
    targets.push_back(target{e.sub, std::move(d)});
  });
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
  for (auto& t : targets) {
    caf::anon_send(t.session, deliver_atom::value, std::move(t.d));
  }
  auto n = targets.size();
  targets.clear();  // drop the session handles now, not at the next publish
  if (!from_cluster && ctx.forward_remote) {
    ctx.forward_remote(m);
  }
  return n;
}

}  // namespace tern::actors::broker
