// Forward plan for a publish: normal subscribers per node, one node per shared group.
#include "cluster/shared_plan.hpp"

#include <algorithm>
#include <functional>

namespace tern::cluster {

namespace {
// Bounds the per-group state of groups that come and go (a clear only restarts the cycle).
constexpr std::size_t max_tracked_groups = 65536;
}  // namespace

const std::string& node_picker::pick(const std::string& key, const std::vector<std::string>& nodes,
                                     std::uint32_t random, std::string_view publisher) {
  using actors::router::share_strategy;
  auto n = static_cast<std::uint32_t>(nodes.size());
  switch (strategy_) {
    case share_strategy::random:
      return nodes[random % n];
    case share_strategy::hash_clientid:
      return nodes[std::hash<std::string_view>{}(publisher) % n];
    case share_strategy::round_robin: {
      std::lock_guard lock{mtx_};
      if (cursor_.size() >= max_tracked_groups && cursor_.count(key) == 0) {
        cursor_.clear();
      }
      return nodes[cursor_[key]++ % n];
    }
    case share_strategy::sticky: {
      std::lock_guard lock{mtx_};
      auto it = sticky_.find(key);
      if (it != sticky_.end()) {
        auto at = std::find(nodes.begin(), nodes.end(), it->second);
        if (at != nodes.end()) {
          return *at;
        }
      } else if (sticky_.size() >= max_tracked_groups) {
        sticky_.clear();
      }
      auto& chosen = nodes[random % n];
      sticky_[key] = chosen;
      return chosen;
    }
  }
  return nodes[random % n];
}

forward_plan plan_forward(const std::vector<std::string>& plain,
                          const std::map<std::string, std::vector<std::string>>& shared,
                          const std::vector<std::string>& served_here, node_picker& picker,
                          std::uint32_t random, std::string_view publisher) {
  forward_plan plan;
  for (auto& n : plain) {
    plan[n].subscribers = true;
  }
  // `shared` is ordered by key, so each node's group list comes out sorted.
  for (auto& [key, nodes] : shared) {
    if (nodes.empty() || std::binary_search(served_here.begin(), served_here.end(), key)) {
      continue;
    }
    plan[picker.pick(key, nodes, random, publisher)].groups.push_back(key);
  }
  return plan;
}

}  // namespace tern::cluster
