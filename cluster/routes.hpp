// The remote route table of one node: topic filter -> the other nodes that have at least one
// local subscriber to it (emqttd's mnesia route table), with a trie for matching.
//
// Written only by the cluster actor (deltas, snapshots, purges); read by the publish path on
// any thread (shared lock). Pure: no actors, no sockets.
//
// Shared-subscription groups are ordinary entries keyed by their full filter
// ("$share/group/a/b"); the trie stores the filter text as given, so a group matches only
// through `match_shared`, which strips the prefix.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "actors/router/trie.hpp"

namespace tern::cluster {

class route_view {
 public:
  /// Applies a delta of `node`. Adding a filter the node already has, or removing one it
  /// does not have, changes nothing (deltas are idempotent).
  void apply_delta(const std::string& node, const std::vector<std::string>& adds,
                   const std::vector<std::string>& dels);

  /// Replaces every route of `node` with `filters`. Returns the number of routes removed.
  std::size_t apply_snapshot(const std::string& node, const std::vector<std::string>& filters);

  /// Removes every route of `node` at once. Returns the number removed.
  std::size_t purge(const std::string& node);

  /// Nodes with a (non-shared) filter matching `topic`, each once, sorted.
  std::vector<std::string> match(std::string_view topic) const;

  /// Shared groups matching `topic`: group key ("$share/g/filter") -> nodes with members.
  std::map<std::string, std::vector<std::string>> match_shared(std::string_view topic) const;

  /// Filters `node` has, sorted (tests, status).
  std::vector<std::string> filters_of(const std::string& node) const;
  /// Every filter (shared groups as "$share/g/filter") with the nodes that have it.
  std::map<std::string, std::vector<std::string>> all() const;
  std::size_t route_count() const;  ///< (filter, node) pairs
  std::size_t filter_count() const;

 private:
  // Callers hold the exclusive lock.
  bool add_locked(const std::string& node, const std::string& filter);
  bool del_locked(const std::string& node, const std::string& filter);

  mutable std::shared_mutex mtx_;
  actors::router::trie trie_;  ///< matchable filters (shared groups by their inner filter)
  std::unordered_map<std::string, std::set<std::string>> nodes_by_filter_;
  std::map<std::string, std::set<std::string>> filters_by_node_;
  /// inner filter -> shared group keys using it
  std::unordered_map<std::string, std::set<std::string>> groups_by_inner_;
  std::size_t count_ = 0;
};

}  // namespace tern::cluster
