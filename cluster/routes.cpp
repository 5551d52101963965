// Remote route table: deltas, snapshots, purge and matching.
#include "cluster/routes.hpp"

#include <algorithm>
#include <mutex>
#include <optional>

#include "proto/mqtt/topic.hpp"

namespace tern::cluster {

namespace {

namespace mqtt = tern::proto::mqtt;

/// The filter the trie matches for a route key, or nullopt for an invalid key.
std::optional<mqtt::parsed_filter> parse_key(const std::string& key) {
  auto p = mqtt::parse_filter(key);
  if (!p || !mqtt::is_valid_topic_filter(p->filter)) {
    return std::nullopt;
  }
  return p;
}

}  // namespace

bool route_view::add_locked(const std::string& node, const std::string& filter) {
  auto parsed = parse_key(filter);
  if (!parsed) {
    return false;  // never from a well-behaved peer; ignored rather than trusted
  }
  auto& nodes = nodes_by_filter_[filter];
  if (!nodes.insert(node).second) {
    return false;
  }
  if (nodes.size() == 1) {
    trie_.insert(parsed->filter);
    if (parsed->share_group) {
      groups_by_inner_[parsed->filter].insert(filter);
    }
  }
  filters_by_node_[node].insert(filter);
  ++count_;
  return true;
}

bool route_view::del_locked(const std::string& node, const std::string& filter) {
  auto it = nodes_by_filter_.find(filter);
  if (it == nodes_by_filter_.end() || it->second.erase(node) == 0) {
    return false;
  }
  --count_;
  if (auto n = filters_by_node_.find(node); n != filters_by_node_.end()) {
    n->second.erase(filter);
    if (n->second.empty()) {
      filters_by_node_.erase(n);
    }
  }
  if (it->second.empty()) {
    nodes_by_filter_.erase(it);
    auto parsed = parse_key(filter);  // valid: it was added
    trie_.erase(parsed->filter);
    if (parsed->share_group) {
      auto g = groups_by_inner_.find(parsed->filter);
      if (g != groups_by_inner_.end()) {
        g->second.erase(filter);
        if (g->second.empty()) {
          groups_by_inner_.erase(g);
        }
      }
    }
  }
  return true;
}

void route_view::apply_delta(const std::string& node, const std::vector<std::string>& adds,
                             const std::vector<std::string>& dels) {
  std::unique_lock lock{mtx_};
  for (auto& f : adds) {
    add_locked(node, f);
  }
  for (auto& f : dels) {
    del_locked(node, f);
  }
}

std::size_t route_view::apply_snapshot(const std::string& node,
                                       const std::vector<std::string>& filters) {
  std::unique_lock lock{mtx_};
  std::set<std::string> want(filters.begin(), filters.end());
  std::vector<std::string> drop;
  if (auto n = filters_by_node_.find(node); n != filters_by_node_.end()) {
    for (auto& f : n->second) {
      if (want.count(f) == 0) {
        drop.push_back(f);
      }
    }
  }
  for (auto& f : drop) {
    del_locked(node, f);
  }
  for (auto& f : want) {
    add_locked(node, f);
  }
  return drop.size();
}

std::size_t route_view::purge(const std::string& node) {
  std::unique_lock lock{mtx_};
  auto n = filters_by_node_.find(node);
  if (n == filters_by_node_.end()) {
    return 0;
  }
  std::vector<std::string> drop(n->second.begin(), n->second.end());
  for (auto& f : drop) {
    del_locked(node, f);
  }
  return drop.size();
}

std::vector<std::string> route_view::match(std::string_view topic) const {
  std::vector<std::string> out;
  std::shared_lock lock{mtx_};
  trie_.match(topic, [&](std::string_view filter) {
    auto it = nodes_by_filter_.find(std::string(filter));
    if (it != nodes_by_filter_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
    }
  });
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::map<std::string, std::vector<std::string>> route_view::match_shared(
    std::string_view topic) const {
  std::map<std::string, std::vector<std::string>> out;
  std::shared_lock lock{mtx_};
  if (groups_by_inner_.empty()) {
    return out;
  }
  trie_.match(topic, [&](std::string_view filter) {
    auto g = groups_by_inner_.find(std::string(filter));
    if (g == groups_by_inner_.end()) {
      return;
    }
    for (auto& key : g->second) {
      auto it = nodes_by_filter_.find(key);
      if (it != nodes_by_filter_.end()) {
        out[key].assign(it->second.begin(), it->second.end());
      }
    }
  });
  return out;
}

std::vector<std::string> route_view::filters_of(const std::string& node) const {
  std::shared_lock lock{mtx_};
  auto n = filters_by_node_.find(node);
  if (n == filters_by_node_.end()) {
    return {};
  }
  return {n->second.begin(), n->second.end()};
}

std::map<std::string, std::vector<std::string>> route_view::all() const {
  std::shared_lock lock{mtx_};
  std::map<std::string, std::vector<std::string>> out;
  for (auto& [filter, nodes] : nodes_by_filter_) {
    out.emplace(filter, std::vector<std::string>(nodes.begin(), nodes.end()));
  }
  return out;
}

std::size_t route_view::route_count() const {
  std::shared_lock lock{mtx_};
  return count_;
}

std::size_t route_view::filter_count() const {
  std::shared_lock lock{mtx_};
  return nodes_by_filter_.size();
}

}  // namespace tern::cluster
