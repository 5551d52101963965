// Outbound topic aliases: first come, first bound, up to the client's maximum.
#include "actors/session/topic_alias.hpp"

namespace tern::actors::session {

topic_aliases::use topic_aliases::for_topic(std::string_view topic) {
  if (max_ == 0) {
    return {};
  }
  auto it = bound_.find(std::string(topic));
  if (it != bound_.end()) {
    return {it->second, false};
  }
  std::uint16_t alias = 0;
  if (!free_.empty()) {
    alias = free_.back();
    free_.pop_back();
  } else if (next_ <= max_) {
    alias = next_++;
  } else {
    return {};
  }
  bound_.emplace(std::string(topic), alias);
  return {alias, true};
}

void topic_aliases::forget(std::string_view topic) {
  auto it = bound_.find(std::string(topic));
  if (it != bound_.end()) {
    free_.push_back(it->second);
    bound_.erase(it);
  }
}

}  // namespace tern::actors::session
