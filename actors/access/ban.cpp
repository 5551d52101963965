// Ban list with a bounded table.
#include "actors/access/ban.hpp"

namespace tern::actors::access {

namespace {
// Past this many tracked keys, expired entries are purged before adding (memory bound
// against a flood of distinct client ids).
constexpr std::size_t purge_threshold = 100000;
}  // namespace

bool ban_list::is_banned(const std::string& key, clock::time_point now) const {
  std::lock_guard lock{mtx_};
  auto it = entries_.find(key);
  return it != entries_.end() && it->second.banned_until > now;
}

bool ban_list::record_failure(const std::string& key, clock::time_point now) {
  std::lock_guard lock{mtx_};
  if (entries_.size() >= purge_threshold) {
    purge(now);
    if (entries_.size() >= purge_threshold && entries_.count(key) == 0) {
      return false;  // still full of live entries: do not grow without bound
    }
  }
  auto& e = entries_[key];
  if (e.banned_until > now) {
    return false;
  }
  if (e.failures == 0 || now - e.window_start > s_.window) {
    e.failures = 0;
    e.window_start = now;
  }
  if (++e.failures >= s_.max_failures) {
    e.failures = 0;
    e.banned_until = now + s_.duration;
    return true;
  }
  return false;
}

void ban_list::record_success(const std::string& key, clock::time_point now) {
  std::lock_guard lock{mtx_};
  auto it = entries_.find(key);
  if (it != entries_.end() && it->second.banned_until <= now) {
    entries_.erase(it);
  }
}

void ban_list::ban(const std::string& key, clock::time_point until) {
  std::lock_guard lock{mtx_};
  entries_[key].banned_until = until;
}

bool ban_list::unban(const std::string& key) {
  std::lock_guard lock{mtx_};
  return entries_.erase(key) != 0;
}

std::size_t ban_list::size() const {
  std::lock_guard lock{mtx_};
  return entries_.size();
}

void ban_list::purge(clock::time_point now) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    const auto& e = it->second;
    bool window_over = e.failures == 0 || now - e.window_start > s_.window;
    if (e.banned_until <= now && window_over) {
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace tern::actors::access
