// Subscription table of one node: topic filter -> local subscribers, plus the trie of filters.
//
// Read on the publish path by many threads at once (shared lock), written by the router
// actor alone (exclusive lock) -- the analogue of emqttd's ETS route tables. `Sub` is the
// subscriber handle (a session actor in the broker, anything comparable in tests).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "actors/router/trie.hpp"
#include "proto/mqtt/packet.hpp"

namespace tern::actors::router {

/// Options of one subscription (MQTT 5 subscription options; 3.1.1 uses only max_qos).
struct sub_options {
  proto::mqtt::qos max_qos = proto::mqtt::qos::at_most_once;
  bool no_local = false;
  bool retain_as_published = false;
  std::uint8_t retain_handling = 0;
  std::uint32_t subscription_id = 0;  ///< 0: none
};

template <class Sub>
class route_table {
 public:
  struct entry {
    Sub sub;
    sub_options opts;
  };

  /// Adds or replaces `sub`'s subscription to `filter`. Returns true when the filter had no
  /// subscriber before (a new route).
  bool add(const std::string& filter, const Sub& sub, const sub_options& opts) {
    std::unique_lock lock{mtx_};
    auto it = subs_.find(filter);
    if (it == subs_.end()) {
      auto fe = std::make_unique<filter_entry>();
      fe->filter = filter;
      std::string_view key = fe->filter;
      it = subs_.emplace(key, std::move(fe)).first;
    }
    auto& v = it->second->subs;
    for (auto& e : v) {
      if (e.sub == sub) {
        e.opts = opts;
        return false;
      }
    }
    v.push_back(entry{sub, opts});
    ++count_;
    if (v.size() == 1) {
      trie_.insert(filter);
      return true;
    }
    return false;
  }

  /// Removes `sub` from `filter`. Returns true when the filter lost its last subscriber.
  bool remove(const std::string& filter, const Sub& sub) {
    std::unique_lock lock{mtx_};
    auto it = subs_.find(filter);
    if (it == subs_.end()) {
      return false;
    }
    auto& v = it->second->subs;
    for (auto i = v.begin(); i != v.end(); ++i) {
      if (i->sub == sub) {
        v.erase(i);
        --count_;
        break;
      }
    }
    if (v.empty()) {
      subs_.erase(it);
      trie_.erase(filter);
      return true;
    }
    return false;
  }

  /// Calls f(filter, entry) for every subscription whose filter matches `topic`.
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
  mutable std::shared_mutex mtx_;
  trie trie_;
  struct filter_entry {
    std::string filter;
    std::vector<entry> subs;
  };
  // Keys view into the owned filter_entry::filter, so lookups by string_view never allocate.
  std::unordered_map<std::string_view, std::unique_ptr<filter_entry>> subs_;
  std::size_t count_ = 0;
};

}  // namespace tern::actors::router
