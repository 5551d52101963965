// Topic trie: the set of subscribed topic filters, answering "which filters match this topic".
//
// A pure value type (no locks, no actors): the analogue of emqttd_trie. Filters are stored
// reference-counted, one trie node per level, so a lookup costs about (levels of the topic) x
// (wildcard branches taken) and does not depend on how many filters are stored.
//
// Thread safety: none of its own. Concurrent const calls (match, contains, size, for_each) are
// safe; any mutation needs exclusive access (route_table wraps it in a shared_mutex).
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>
#include <type_traits>
#include <utility>

namespace tern::actors::router {

namespace detail {
struct trie_node;
}  // namespace detail

class trie {
 public:
  /// An empty trie; allocates nothing until the first insert.
  trie() noexcept;
  ~trie();
  trie(trie&& other) noexcept;
  trie& operator=(trie&& other) noexcept;
  trie(const trie&) = delete;
  trie& operator=(const trie&) = delete;

  /// Adds one reference to `filter`, which must be a valid topic filter
  /// (proto::mqtt::is_valid_topic_filter). Returns true when the filter is new.
  bool insert(std::string_view filter);

  /// Drops one reference to `filter` and removes the nodes it no longer needs. Returns true
  /// when the last reference is gone; false when references remain or it was never inserted.
  bool erase(std::string_view filter);

  /// Whether `filter` has at least one reference.
  bool contains(std::string_view filter) const;

  /// Calls `f(std::string_view filter)` once for every stored filter matching `name`, a valid
  /// topic name, by the rules of proto::mqtt::topic_matches (including [MQTT-4.7.2-1]: a
  /// '$' topic is not matched by a filter starting with a wildcard). The order is unspecified.
  /// The views are valid until the next mutation. `f` must not modify the trie. Does not
  /// allocate unless the match fans out into more than a few dozen branches.
  template <class F>
  void match(std::string_view name, F&& f) const {
    match_impl(name, context_of(f), &invoke<std::remove_reference_t<F>>);
  }

  /// Calls `f(std::string_view filter)` once for every stored filter, in unspecified order
  /// (for snapshots and route synchronisation). `f` must not modify the trie.
  template <class F>
  void for_each(F&& f) const {
    for_each_impl(context_of(f), &invoke<std::remove_reference_t<F>>);
  }

  /// Number of distinct filters.
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  /// Number of nodes below the root: memory accounting, and tests that erase frees nodes.
  std::size_t node_count() const { return node_count_; }

  /// Removes every filter.
  void clear();

 private:
  using node = detail::trie_node;
  // A borrowed callable, type-erased so the traversal code can live in trie.cpp.
  using callback = void (*)(void* ctx, std::string_view filter);

  template <class F>
  static void* context_of(F& f) {
    return const_cast<void*>(static_cast<const void*>(std::addressof(f)));
  }
  template <class Fn>
  static void invoke(void* ctx, std::string_view filter) {
    (*static_cast<Fn*>(ctx))(filter);
  }

  void match_impl(std::string_view name, void* ctx, callback cb) const;
  void for_each_impl(void* ctx, callback cb) const;

  std::unique_ptr<node> root_;
  std::size_t size_ = 0;
  std::size_t node_count_ = 0;
};

}  // namespace tern::actors::router
