// Ban list with a fake clock.
#include "actors/access/ban.hpp"

#include <catch2/catch.hpp>

using namespace tern::actors::access;
using namespace std::chrono_literals;

TEST_CASE("ban: N failures within the window ban for the duration", "[ban]") {
  ban_list b({3, 10s, 60s});
  ban_list::clock::time_point t0{};
  t0 += 1h;
  CHECK_FALSE(b.record_failure("c:x", t0));
  CHECK_FALSE(b.record_failure("c:x", t0 + 1s));
  CHECK_FALSE(b.is_banned("c:x", t0 + 2s));
  CHECK(b.record_failure("c:x", t0 + 2s));
  CHECK(b.is_banned("c:x", t0 + 3s));
  CHECK(b.is_banned("c:x", t0 + 61s));
  CHECK_FALSE(b.is_banned("c:x", t0 + 63s));
  CHECK_FALSE(b.is_banned("c:y", t0 + 3s));
}

TEST_CASE("ban: failures spread beyond the window do not ban", "[ban]") {
  ban_list b({3, 10s, 60s});
  ban_list::clock::time_point t0{};
  CHECK_FALSE(b.record_failure("k", t0));
  CHECK_FALSE(b.record_failure("k", t0 + 5s));
  CHECK_FALSE(b.record_failure("k", t0 + 20s));  // new window
  CHECK_FALSE(b.record_failure("k", t0 + 21s));
  CHECK_FALSE(b.is_banned("k", t0 + 22s));
  CHECK(b.record_failure("k", t0 + 22s));
}

TEST_CASE("ban: success resets the count; manual ban and unban", "[ban]") {
  ban_list b({2, 10s, 60s});
  ban_list::clock::time_point t0{};
  b.record_failure("k", t0);
  b.record_success("k", t0 + 1s);
  CHECK_FALSE(b.record_failure("k", t0 + 2s));
  b.ban("m", t0 + 100s);
  CHECK(b.is_banned("m", t0 + 50s));
  CHECK(b.unban("m"));
  CHECK_FALSE(b.is_banned("m", t0 + 50s));
}
