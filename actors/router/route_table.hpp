// Subscription table of one node: topic filter -> local subscribers, plus the trie of filters.
//
// Read on the publish path by many threads at once (shared lock), written by the router
// actor alone (exclusive lock) -- the analogue of emqttd's ETS route tables. `Sub` is the
// subscriber handle (a session actor in the broker, anything comparable in tests).
//
// Shared subscriptions (`$share/{group}/{filter}`, `$queue/{filter}`) are kept per real filter
// as groups; a match yields one member per group, chosen by a `share_pick`.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "actors/router/trie.hpp"
#include "proto/mqtt/packet.hpp"
#include "proto/mqtt/topic.hpp"

namespace tern::actors::router {

/// Options of one subscription (MQTT 5 subscription options; 3.1.1 uses only max_qos).
struct sub_options {
  proto::mqtt::qos max_qos = proto::mqtt::qos::at_most_once;
  bool no_local = false;
  bool retain_as_published = false;
  std::uint8_t retain_handling = 0;
  std::uint32_t subscription_id = 0;  ///< 0: none
};

/// How a shared group picks the member that gets a message.
enum class share_strategy : std::uint8_t { random, round_robin, sticky, hash_clientid };

/// Parses "random", "round_robin", "sticky", "hash_clientid" (anything else: random).
inline share_strategy share_strategy_from(std::string_view s) {
  if (s == "round_robin") {
    return share_strategy::round_robin;
  }
  if (s == "sticky") {
    return share_strategy::sticky;
  }
  if (s == "hash_clientid") {
    return share_strategy::hash_clientid;
  }
  return share_strategy::random;
}

/// Inputs of one member choice: the strategy, a random number supplied by the caller (keeps
/// the table deterministic under test) and the publisher's client id (hash_clientid).
struct share_pick {
  share_strategy strategy = share_strategy::random;
  std::uint32_t random = 0;
  std::string_view publisher;
};

/// The key of a shared subscription as the client wrote it ("$share/g/f", "$queue/f"); shared
/// by every delivery through it, so a session can hand a message back to the group.
using share_key = std::shared_ptr<const std::string>;

template <class Sub>
class route_table {
 public:
  struct entry {
    Sub sub;
    sub_options opts;
  };

  /// Adds or replaces `sub`'s subscription to `filter` (which may be a shared subscription).
  /// Returns true when the real filter had no subscriber before (a new route).
  bool add(const std::string& filter, const Sub& sub, const sub_options& opts) {
    auto parsed = proto::mqtt::parse_filter(filter);
    const std::string& real = parsed && parsed->share_group ? parsed->filter : filter;
    std::unique_lock lock{mtx_};
    auto it = subs_.find(real);
    if (it == subs_.end()) {
      auto fe = std::make_unique<filter_entry>();
      fe->filter = real;
      std::string_view key = fe->filter;
      it = subs_.emplace(key, std::move(fe)).first;
    }
    auto& fe = *it->second;
    bool was_empty = fe.subs.empty() && fe.groups.empty();
    std::vector<entry>* v = &fe.subs;
    share_group* g = nullptr;
    if (parsed && parsed->share_group) {
      for (auto& x : fe.groups) {
        if (*x->key == filter) {
          g = x.get();
        }
      }
      if (g == nullptr) {
        fe.groups.push_back(std::make_unique<share_group>());
        g = fe.groups.back().get();
        g->key = std::make_shared<const std::string>(filter);
      }
      v = &g->members;
    }
    for (auto& e : *v) {
      if (e.sub == sub) {
        e.opts = opts;
        return false;
      }
    }
    v->push_back(entry{sub, opts});
    ++count_;
    if (was_empty) {
      trie_.insert(real);
      return true;
    }
    return false;
  }

  /// Removes `sub` from `filter`. Returns true when the real filter lost its last subscriber.
  bool remove(const std::string& filter, const Sub& sub) {
    auto parsed = proto::mqtt::parse_filter(filter);
    const std::string& real = parsed && parsed->share_group ? parsed->filter : filter;
    std::unique_lock lock{mtx_};
    auto it = subs_.find(real);
    if (it == subs_.end()) {
      return false;
    }
    auto& fe = *it->second;
    if (parsed && parsed->share_group) {
      for (auto gi = fe.groups.begin(); gi != fe.groups.end(); ++gi) {
        auto& g = **gi;
        if (*g.key != filter) {
          continue;
        }
        if (erase_sub(g.members, sub)) {
          --count_;
          g.cursor.store(0, std::memory_order_relaxed);  // sticky: choose anew
        }
        if (g.members.empty()) {
          fe.groups.erase(gi);
        }
        break;
      }
    } else {
      if (erase_sub(fe.subs, sub)) {
        --count_;
      }
    }
    if (fe.subs.empty() && fe.groups.empty()) {
      subs_.erase(it);
      trie_.erase(real);
      return true;
    }
    return false;
  }

  /// Calls f(filter, entry) for every non-shared subscription whose filter matches `topic`.
  template <class F>
  void match(std::string_view topic, F&& f) const {
    std::shared_lock lock{mtx_};
    trie_.match(topic, [&](std::string_view filter) {
      auto it = subs_.find(filter);
      if (it != subs_.end()) {
        for (auto& e : it->second->subs) {
          f(filter, e);
        }
      }
    });
  }

  /// As match(topic, f), and also calls g(filter, entry, key) for one member of every shared
  /// group whose filter matches, chosen as `pick` says.
  template <class F, class G>
  void match(std::string_view topic, F&& f, const share_pick& pick, G&& g) const {
    std::shared_lock lock{mtx_};
    trie_.match(topic, [&](std::string_view filter) {
      auto it = subs_.find(filter);
      if (it == subs_.end()) {
        return;
      }
      for (auto& e : it->second->subs) {
        f(filter, e);
      }
      for (auto& grp : it->second->groups) {
        if (auto* e = choose(*grp, pick, nullptr)) {
          g(filter, *e, grp->key);
        }
      }
    });
  }

  /// Calls g(entry) (or g(entry, share_key)) for one member of the shared subscription `key`
  /// other than `exclude`, chosen as `pick` says. Returns false when the group has no other
  /// member.
  template <class G>
  bool pick_member(const std::string& key, const Sub& exclude, const share_pick& pick,
                   G&& g) const {
    auto parsed = proto::mqtt::parse_filter(key);
    if (!parsed || !parsed->share_group) {
      return false;
    }
    std::shared_lock lock{mtx_};
    auto it = subs_.find(parsed->filter);
    if (it == subs_.end()) {
      return false;
    }
    for (auto& grp : it->second->groups) {
      if (*grp->key == key) {
        if (auto* e = choose(*grp, pick, &exclude)) {
          if constexpr (std::is_invocable_v<G&, const entry&, const share_key&>) {
            g(*e, grp->key);  // the group's own key: no copy of the string
          } else {
            g(*e);
          }
          return true;
        }
        return false;
      }
    }
    return false;
  }

  /// Calls f(filter, entry) for every subscription (management listings; holds the read
  /// lock for the whole walk, so keep f cheap).
  template <class F>
  void for_each(F&& f) const {
    std::shared_lock lock{mtx_};
    for (auto& kv : subs_) {
      for (auto& e : kv.second->subs) {
        f(std::string_view{kv.second->filter}, e);
      }
    }
  }

  /// Calls f(key) for every subscription key with a subscriber on this node: each plain
  /// filter once, and each shared subscription ("$share/g/f", "$queue/f") with a member.
  template <class F>
  void for_each_key(F&& f) const {
    std::shared_lock lock{mtx_};
    for (auto& kv : subs_) {
      if (!kv.second->subs.empty()) {
        f(std::string_view{kv.second->filter});
      }
      for (auto& g : kv.second->groups) {
        if (!g->members.empty()) {
          f(std::string_view{*g->key});
        }
      }
    }
  }

  /// Whether the subscription key `filter` has a subscriber on this node: a plain filter at
  /// least one plain subscriber, a shared subscription ("$share/g/f", "$queue/f") a member.
  /// These keys are what the cluster replicates.
  bool has_key(const std::string& filter) const {
    auto parsed = proto::mqtt::parse_filter(filter);
    bool is_share = parsed && parsed->share_group;
    const std::string& real = is_share ? parsed->filter : filter;
    std::shared_lock lock{mtx_};
    auto it = subs_.find(real);
    if (it == subs_.end()) {
      return false;
    }
    if (!is_share) {
      return !it->second->subs.empty();
    }
    for (auto& g : it->second->groups) {
      if (*g->key == filter) {
        return !g->members.empty();
      }
    }
    return false;
  }

  /// Number of (filter, subscriber) pairs.
  std::size_t subscription_count() const {
    std::shared_lock lock{mtx_};
    return count_;
  }
  /// Number of distinct filters (routes).
  std::size_t route_count() const {
    std::shared_lock lock{mtx_};
    return subs_.size();
  }

 private:
  struct share_group {
    share_key key;
    std::vector<entry> members;
    // Round robin: next index; sticky: the chosen member + 1 (0: none yet). Updated by
    // readers under the shared lock, hence atomic.
    mutable std::atomic<std::uint32_t> cursor{0};
  };
  struct filter_entry {
    std::string filter;
    std::vector<entry> subs;
    std::vector<std::unique_ptr<share_group>> groups;
  };

  static bool erase_sub(std::vector<entry>& v, const Sub& sub) {
    for (auto i = v.begin(); i != v.end(); ++i) {
      if (i->sub == sub) {
        v.erase(i);
        return true;
      }
    }
    return false;
  }

  /// One member of `g` (not `*exclude`), or null when there is none.
  static const entry* choose(const share_group& g, const share_pick& pick, const Sub* exclude) {
    auto n = static_cast<std::uint32_t>(g.members.size());
    if (n == 0) {
      return nullptr;
    }
    std::uint32_t i = 0;
    switch (pick.strategy) {
      case share_strategy::random:
        i = pick.random % n;
        break;
      case share_strategy::round_robin:
        i = g.cursor.fetch_add(1, std::memory_order_relaxed) % n;
        break;
      case share_strategy::sticky: {
        auto v = g.cursor.load(std::memory_order_relaxed);
        if (v == 0 || v > n) {
          i = pick.random % n;
          g.cursor.store(i + 1, std::memory_order_relaxed);
        } else {
          i = v - 1;
        }
        break;
      }
      case share_strategy::hash_clientid:
        i = static_cast<std::uint32_t>(std::hash<std::string_view>{}(pick.publisher) % n);
        break;
    }
    if (exclude != nullptr && g.members[i].sub == *exclude) {
      if (n == 1) {
        return nullptr;
      }
      i = (i + 1) % n;
    }
    return &g.members[i];
  }

  mutable std::shared_mutex mtx_;
  trie trie_;
  // Keys view into the owned filter_entry::filter, so lookups by string_view never allocate.
  std::unordered_map<std::string_view, std::unique_ptr<filter_entry>> subs_;
  std::size_t count_ = 0;
};

}  // namespace tern::actors::router
