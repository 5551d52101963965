// restart_intensity.hpp: the "at most N restarts in T" budget of a supervisor (pure, no CAF).
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>

namespace tern::supervision {

/// Sliding-window restart budget, as in OTP's supervisor: a restart is allowed while the number
/// of restarts inside the last `period` (the new one included) is at most `max_restarts`.
/// A restart at time t stays in the window while t >= now - period. With `max_restarts == 0`
/// every restart exceeds the budget. Time is passed in, so tests need no real clock.
class restart_intensity {
 public:
  using clock = std::chrono::steady_clock;

  restart_intensity(std::size_t max_restarts, clock::duration period);

  /// Records a restart at `now` (monotonic: never earlier than a previous call).
  /// Returns false if the budget is exceeded, i.e. the supervisor must give up.
  [[nodiscard]] bool add_restart(clock::time_point now);

  /// Restarts currently inside the window (as of the last add_restart).
  std::size_t restarts_in_window() const { return history_.size(); }

 private:
  std::size_t max_restarts_;
  clock::duration period_;
  std::deque<clock::time_point> history_;  // oldest first
};

}  // namespace tern::supervision
