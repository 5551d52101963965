// Hook registry: copy-on-write callback lists per hook point.
#include "actors/hooks/hooks.hpp"

#include <algorithm>

namespace tern::actors::hooks {

namespace {

constexpr const char* names_[point_count] = {
    "client.connect",     "client.connected",   "client.disconnected", "client.authenticate",
    "client.check_acl",   "client.subscribe",   "client.unsubscribe",  "session.created",
    "session.subscribed", "session.terminated", "message.publish",     "message.delivered",
    "message.acked",      "message.dropped"};

}  // namespace

const char* name(point p) { return names_[static_cast<std::size_t>(p)]; }

std::optional<point> point_from_name(std::string_view n) {
  for (std::size_t i = 0; i < point_count; ++i) {
    if (n == names_[i]) {
      return static_cast<point>(i);
    }
  }
  return std::nullopt;
}

bool registry::add(point p, std::string name, int priority, callback cb) {
  std::lock_guard lock{mtx_};
  auto idx = static_cast<std::size_t>(p);
  auto next = lists_[idx] ? std::make_shared<list>(*lists_[idx]) : std::make_shared<list>();
  for (const auto& e : *next) {
    if (e.name == name) {
      return false;
    }
  }
  // Highest priority first; stable, so equal priorities keep registration order.
  auto pos = std::find_if(next->begin(), next->end(),
                          [&](const entry& e) { return e.priority < priority; });
  next->insert(pos, entry{std::move(name), priority, std::move(cb)});
  lists_[idx] = std::move(next);
  mask_.fetch_or(1u << idx, std::memory_order_release);
  return true;
}

bool registry::remove(point p, const std::string& name) {
  std::lock_guard lock{mtx_};
  auto idx = static_cast<std::size_t>(p);
  if (!lists_[idx]) {
    return false;
  }
  auto next = std::make_shared<list>(*lists_[idx]);
  auto it =
      std::find_if(next->begin(), next->end(), [&](const entry& e) { return e.name == name; });
  if (it == next->end()) {
    return false;
  }
  next->erase(it);
  if (next->empty()) {
    lists_[idx].reset();
    mask_.fetch_and(~(1u << idx), std::memory_order_release);
  } else {
    lists_[idx] = std::move(next);
  }
  return true;
}

std::shared_ptr<const registry::list> registry::snapshot(point p) const {
  std::lock_guard lock{mtx_};
  return lists_[static_cast<std::size_t>(p)];
}

void registry::run(point p, const args& a) const {
  if (!has(p)) {
    return;
  }
  auto l = snapshot(p);
  if (!l) {
    return;
  }
  acc scratch;
  for (const auto& e : *l) {
    if (e.cb(a, scratch) == result::stop) {
      return;
    }
  }
}

acc registry::run_fold(point p, const args& a, acc initial) const {
  if (!has(p)) {
    return initial;
  }
  auto l = snapshot(p);
  if (!l) {
    return initial;
  }
  for (const auto& e : *l) {
    if (e.cb(a, initial) == result::stop) {
      break;
    }
  }
  return initial;
}

std::vector<std::string> registry::names(point p) const {
  std::vector<std::string> out;
  if (auto l = snapshot(p)) {
    for (const auto& e : *l) {
      out.push_back(e.name);
    }
  }
  return out;
}

}  // namespace tern::actors::hooks
