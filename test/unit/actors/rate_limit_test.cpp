// Token bucket: refill, burst cap, debt and delay, disabled buckets; a fake clock drives time.
#include "actors/listener/rate_limit.hpp"

#include <catch2/catch.hpp>

namespace {

using tern::actors::listener::token_bucket;
using namespace std::chrono_literals;

const token_bucket::clock::time_point t0{std::chrono::seconds(1000)};

}  // namespace

TEST_CASE("token bucket: starts full and allows the burst", "[rate]") {
  token_bucket b(100, 300, t0);
  CHECK(b.take(300, t0));
  CHECK(b.delay(t0) == 0ms);
  CHECK_FALSE(b.take(1, t0));
  CHECK(b.delay(t0) == 10ms);  // 1 token at 100/s
}

TEST_CASE("token bucket: debt is paid back at the rate", "[rate]") {
  token_bucket b(1000, 1000, t0);
  CHECK_FALSE(b.take(3000, t0));  // a read of 3000 bytes already happened
  CHECK(b.delay(t0) == 2000ms);
  CHECK(b.delay(t0 + 1s) == 1000ms);
  CHECK(b.delay(t0 + 2s) == 0ms);
  CHECK(b.level(t0 + 2s) == Approx(0));
}

TEST_CASE("token bucket: refill is capped at the burst", "[rate]") {
  token_bucket b(10, 0, t0);  // burst 0 means burst = rate
  CHECK(b.take(10, t0));
  CHECK(b.level(t0 + 1h) == Approx(10));
  CHECK(b.take(10, t0 + 1h));
  CHECK_FALSE(b.take(1, t0 + 1h));
}

TEST_CASE("token bucket: try_take admits only whole available tokens", "[rate]") {
  token_bucket b(2, 2, t0);
  CHECK(b.try_take(t0));
  CHECK(b.try_take(t0));
  CHECK_FALSE(b.try_take(t0));
  CHECK_FALSE(b.try_take(t0 + 400ms));
  CHECK(b.try_take(t0 + 500ms));
  CHECK(b.level(t0 + 500ms) == Approx(0));  // refusals cost nothing
}

TEST_CASE("token bucket: a disabled bucket never limits", "[rate]") {
  token_bucket b(0, 0, t0);
  CHECK_FALSE(b.is_enabled());
  CHECK(b.take(1e12, t0));
  CHECK(b.try_take(t0));
  CHECK(b.delay(t0) == 0ms);
}

TEST_CASE("token bucket: a clock going backwards adds no tokens", "[rate]") {
  token_bucket b(100, 100, t0);
  CHECK(b.take(100, t0));
  CHECK(b.level(t0 - 10s) == Approx(0));
  CHECK(b.level(t0 + 500ms) == Approx(50));
}
