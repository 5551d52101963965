// Unit tests for actors/session/topic_alias: outbound topic alias binding.
#include "actors/session/topic_alias.hpp"

#include <catch2/catch.hpp>

namespace {

using tern::actors::session::topic_aliases;

TEST_CASE("topic_aliases: none when the client accepts none", "[topic_alias]") {
  topic_aliases a{0};
  auto u = a.for_topic("a/b");
  CHECK(u.alias == 0);
  CHECK(u.send_topic);
}

TEST_CASE("topic_aliases: bind first, then send the alias alone", "[topic_alias]") {
  topic_aliases a{2};
  auto first = a.for_topic("a/b");
  CHECK(first.alias == 1);
  CHECK(first.send_topic);
  auto again = a.for_topic("a/b");
  CHECK(again.alias == 1);
  CHECK_FALSE(again.send_topic);
  auto second = a.for_topic("c");
  CHECK(second.alias == 2);
  CHECK(second.send_topic);
  // Full: a third topic goes out in full, without an alias; bound ones keep theirs.
  auto third = a.for_topic("d");
  CHECK(third.alias == 0);
  CHECK(third.send_topic);
  CHECK(a.for_topic("c").alias == 2);
  CHECK_FALSE(a.for_topic("c").send_topic);
}

TEST_CASE("topic_aliases: a forgotten binding frees its alias", "[topic_alias]") {
  topic_aliases a{1};
  CHECK(a.for_topic("big").alias == 1);
  a.forget("big");
  auto u = a.for_topic("small");
  CHECK(u.alias == 1);
  CHECK(u.send_topic);
  auto big = a.for_topic("big");  // full again: no alias, topic in full
  CHECK(big.alias == 0);
  CHECK(big.send_topic);
}

}  // namespace
