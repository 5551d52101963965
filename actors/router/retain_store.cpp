// Retained message store: replace, delete on empty payload, match by filter.
#include "actors/router/retain_store.hpp"

#include "proto/mqtt/topic.hpp"

namespace tern::actors::router {

void retain_store::put(const message_ptr& m) {
  std::lock_guard lock{mtx_};
  if (m->payload.empty()) {
    by_topic_.erase(m->topic);
  } else {
    by_topic_[m->topic] = m;
  }
}

std::vector<message_ptr> retain_store::match(std::string_view filter) const {
  std::vector<message_ptr> out;
  auto now = std::chrono::steady_clock::now();
  std::lock_guard lock{mtx_};
  if (!proto::mqtt::has_wildcards(filter)) {
    auto it = by_topic_.find(filter);
    if (it != by_topic_.end() && !it->second->is_expired(now)) {
      out.push_back(it->second);
    }
    return out;
  }
  for (auto& [topic, m] : by_topic_) {
    if (proto::mqtt::topic_matches(filter, topic) && !m->is_expired(now)) {
      out.push_back(m);
    }
  }
  return out;
}

std::size_t retain_store::size() const {
  std::lock_guard lock{mtx_};
  return by_topic_.size();
}

}  // namespace tern::actors::router
