// Which node gets a publish, and for what: the normal subscribers of every remote node with a
// matching filter, and one node per shared-subscription group (cluster-wide groups).
//
// Rule: a group with a member on the publishing node is served there (lowest latency); a
// group with members on other nodes only goes to one of them, chosen by the configured
// strategy. Pure: no actors, no sockets; used on the publish path from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "actors/router/route_table.hpp"

namespace tern::cluster {

/// What one remote node gets of a publish.
struct node_part {
  bool subscribers = false;         ///< its normal (non-shared) subscribers
  std::vector<std::string> groups;  ///< shared groups ("$share/g/f", "$queue/f"), sorted
  bool operator==(const node_part& o) const {
    return subscribers == o.subscribers && groups == o.groups;
  }
};

/// node -> what it gets; a node that gets nothing is absent.
using forward_plan = std::map<std::string, node_part>;

/// Chooses, per group, one of the remote nodes with members. Thread-safe.
class node_picker {
 public:
  explicit node_picker(actors::router::share_strategy s) : strategy_(s) {}

  /// One of `nodes` (not empty) for group `key`: random (from `random`), round robin per
  /// group, sticky per group (kept while that node has members), or by a hash of the
  /// publisher's client id.
  const std::string& pick(const std::string& key, const std::vector<std::string>& nodes,
                          std::uint32_t random, std::string_view publisher);

 private:
  actors::router::share_strategy strategy_;
  std::mutex mtx_;
  std::unordered_map<std::string, std::uint32_t> cursor_;  ///< round robin
  std::unordered_map<std::string, std::string> sticky_;    ///< sticky: the chosen node
};

/// The plan for one publish. `plain`: remote nodes with a matching normal filter; `shared`:
/// matching groups -> remote nodes with members; `served_here`: groups the publishing node
/// delivered to a local member (sorted), which no other node gets.
forward_plan plan_forward(const std::vector<std::string>& plain,
                          const std::map<std::string, std::vector<std::string>>& shared,
                          const std::vector<std::string>& served_here, node_picker& picker,
                          std::uint32_t random, std::string_view publisher);

}  // namespace tern::cluster
