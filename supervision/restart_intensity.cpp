// restart_intensity.cpp: sliding-window restart budget.
#include "supervision/restart_intensity.hpp"

namespace tern::supervision {

restart_intensity::restart_intensity(std::size_t max_restarts, clock::duration period)
    : max_restarts_(max_restarts), period_(period) {}

bool restart_intensity::add_restart(clock::time_point now) {
  // Same rule as OTP supervisor:add_restart/3: keep restarts with t >= now - period.
  const auto threshold = now - period_;
  while (!history_.empty() && history_.front() < threshold) {
    history_.pop_front();
  }
  history_.push_back(now);
  return history_.size() <= max_restarts_;
}

}  // namespace tern::supervision
