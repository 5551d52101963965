// Token bucket arithmetic.
#include "actors/listener/rate_limit.hpp"

#include <algorithm>
#include <cmath>

namespace tern::actors::listener {

token_bucket::token_bucket(double rate, double burst, clock::time_point now)
    : rate_(std::max(rate, 0.0)),
      burst_(burst > 0 ? burst : std::max(rate, 0.0)),
      level_(burst_),
      last_(now) {}

void token_bucket::refill(clock::time_point now) {
  if (now <= last_) {
    return;  // a clock that went backwards (or the same instant) adds nothing
  }
  double secs = std::chrono::duration<double>(now - last_).count();
  level_ = std::min(burst_, level_ + secs * rate_);
  last_ = now;
}

bool token_bucket::take(double n, clock::time_point now) {
  if (!is_enabled()) {
    return true;
  }
  refill(now);
  level_ -= n;
  return level_ >= 0;
}

bool token_bucket::try_take(clock::time_point now) {
  if (!is_enabled()) {
    return true;
  }
  refill(now);
  if (level_ < 1) {
    return false;
  }
  level_ -= 1;
  return true;
}

std::chrono::milliseconds token_bucket::delay(clock::time_point now) {
  if (!is_enabled()) {
    return std::chrono::milliseconds(0);
  }
  refill(now);
  if (level_ >= 0) {
    return std::chrono::milliseconds(0);
  }
  // Round up: waking early would find the bucket still in debt.
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(-level_ / rate_ * 1000.0)));
}

double token_bucket::level(clock::time_point now) {
  refill(now);
  return level_;
}

}  // namespace tern::actors::listener
