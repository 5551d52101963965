// Ban list: counts authentication failures per key (client id, address) and bans a key that
// fails too often within a window, for a configured time (brute-force/flapping protection).
//
// Thread-safe (one mutex; touched only on CONNECT, never on the publish path). Time is passed
// in, so tests use a fake clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace tern::actors::access {

class ban_list {
 public:
  using clock = std::chrono::steady_clock;

  struct settings {
    std::uint32_t max_failures = 5;
    std::chrono::milliseconds window{60000};
    std::chrono::milliseconds duration{300000};
  };

  explicit ban_list(settings s) : s_(s) {}

  bool is_banned(const std::string& key, clock::time_point now) const;
  /// Records a failure; returns true when this failure started a ban.
  bool record_failure(const std::string& key, clock::time_point now);
  /// A successful login clears the key's failure count (not an active ban).
  void record_success(const std::string& key, clock::time_point now);
  void ban(const std::string& key, clock::time_point until);
  bool unban(const std::string& key);
  std::size_t size() const;

 private:
  struct entry {
    std::uint32_t failures = 0;
    clock::time_point window_start;
    clock::time_point banned_until;
  };
  void purge(clock::time_point now);

  settings s_;
  mutable std::mutex mtx_;
  std::unordered_map<std::string, entry> entries_;
};

}  // namespace tern::actors::access
