// restart_intensity_test.cpp: the supervisor's sliding-window restart budget (pure).
#include "supervision/restart_intensity.hpp"

#include <catch2/catch.hpp>

using tern::supervision::restart_intensity;
using namespace std::chrono_literals;

namespace {
const restart_intensity::clock::time_point t0{};
}  // namespace

TEST_CASE("restart_intensity allows max_restarts within the period") {
  restart_intensity budget{3, 10s};
  CHECK(budget.add_restart(t0));
  CHECK(budget.add_restart(t0 + 1s));
  CHECK(budget.add_restart(t0 + 2s));
  CHECK_FALSE(budget.add_restart(t0 + 3s));
  CHECK(budget.restarts_in_window() == 4);
}

TEST_CASE("restart_intensity forgets restarts older than the period") {
  restart_intensity budget{2, 10s};
  CHECK(budget.add_restart(t0));
  CHECK(budget.add_restart(t0 + 5s));
  // t0 + 10s: t0 is still inside (t >= now - period), so this is the third in the window.
  CHECK_FALSE(restart_intensity{budget}.add_restart(t0 + 10s));
  // t0 + 11s: t0 has left the window; t0 + 5s and this one remain.
  CHECK(budget.add_restart(t0 + 11s));
  CHECK(budget.restarts_in_window() == 2);
  CHECK_FALSE(budget.add_restart(t0 + 12s));
}

TEST_CASE("restart_intensity of zero allows no restart") {
  restart_intensity budget{0, 1s};
  CHECK_FALSE(budget.add_restart(t0));
}
