// Token buckets for the listener's limits: connection rate, bytes in and PUBLISH in.
//
// Pure: time is passed in, so tests drive the bucket with a fake clock. Not thread-safe; each
// bucket belongs to one connection (its I/O thread) or is guarded by its listener.
#pragma once

#include <chrono>
#include <cstdint>

namespace tern::actors::listener {

/// A token bucket: `rate` tokens per second, at most `burst` stored. take() may drive the
/// level below zero (a read that already happened is paid for); the owner then waits
/// delay() before doing more, which keeps the long-run rate at `rate`.
class token_bucket {
 public:
  using clock = std::chrono::steady_clock;

  /// rate 0 disables the bucket (take() always succeeds, delay() is zero). burst 0 means
  /// burst = rate. The bucket starts full.
  token_bucket(double rate, double burst, clock::time_point now);

  bool is_enabled() const { return rate_ > 0; }

  /// Takes `n` tokens; returns whether the level is still >= 0 afterwards.
  bool take(double n, clock::time_point now);

  /// Takes one token only if one is available (for admission decisions: nothing is owed).
  bool try_take(clock::time_point now);

  /// Time until the level is back at >= 0 (zero when it is).
  std::chrono::milliseconds delay(clock::time_point now);

  double level(clock::time_point now);

 private:
  void refill(clock::time_point now);

  double rate_;
  double burst_;
  double level_;
  clock::time_point last_;
};

}  // namespace tern::actors::listener
