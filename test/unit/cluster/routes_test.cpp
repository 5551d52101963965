// Remote route table: deltas, snapshot merge, purge, matching, shared groups.
#include "cluster/routes.hpp"

#include <catch2/catch.hpp>

using tern::cluster::route_view;
using v = std::vector<std::string>;

TEST_CASE("routes: deltas are idempotent and matching lists each node once", "[cluster]") {
  route_view r;
  r.apply_delta("n2", {"a/+", "a/#"}, {});
  r.apply_delta("n3", {"a/b"}, {});
  r.apply_delta("n2", {"a/+"}, {});  // duplicate add
  CHECK(r.route_count() == 3);
  CHECK(r.match("a/b") == v{"n2", "n3"});
  CHECK(r.match("a/c") == v{"n2"});
  CHECK(r.match("b").empty());
  CHECK(r.match("$SYS/a").empty());
  r.apply_delta("n3", {}, {"a/b", "never/added"});
  CHECK(r.match("a/b") == v{"n2"});
  r.apply_delta("n2", {}, {"a/+"});
  CHECK(r.match("a/b") == v{"n2"});  // a/# remains
  r.apply_delta("n2", {}, {"a/#"});
  CHECK(r.match("a/b").empty());
  CHECK(r.route_count() == 0);
  CHECK(r.filter_count() == 0);
}

TEST_CASE("routes: a snapshot replaces the node's routes, leaving other nodes alone",
          "[cluster]") {
  route_view r;
  r.apply_delta("n2", {"x/1", "x/2", "shared"}, {});
  r.apply_delta("n3", {"shared", "y"}, {});
  auto removed = r.apply_snapshot("n2", {"x/2", "x/3"});
  CHECK(removed == 2);
  CHECK(r.filters_of("n2") == v{"x/2", "x/3"});
  CHECK(r.match("x/1").empty());
  CHECK(r.match("shared") == v{"n3"});
  CHECK(r.filters_of("n3") == v{"shared", "y"});
  // Converged after a partition: the same snapshot twice changes nothing.
  CHECK(r.apply_snapshot("n2", {"x/2", "x/3"}) == 0);
  CHECK(r.route_count() == 4);
}

TEST_CASE("routes: purge drops all routes of a node at once", "[cluster]") {
  route_view r;
  for (int i = 0; i < 1000; ++i) {
    r.apply_delta("n2", {"t/" + std::to_string(i) + "/#"}, {});
  }
  r.apply_delta("n3", {"t/5/#"}, {});
  CHECK(r.purge("n2") == 1000);
  CHECK(r.purge("n2") == 0);
  CHECK(r.match("t/5/x") == v{"n3"});
  CHECK(r.match("t/6/x").empty());
  CHECK(r.route_count() == 1);
}

TEST_CASE("routes: invalid filters from a peer are ignored", "[cluster]") {
  route_view r;
  r.apply_delta("n2", {"a/#/b", "", "$share//x", "ok/+"}, {});
  CHECK(r.filters_of("n2") == v{"ok/+"});
}

TEST_CASE("routes: shared groups are one entry each and match by their inner filter",
          "[cluster]") {
  route_view r;
  r.apply_delta("n2", {"$share/g/s/+", "$queue/s/x"}, {});
  r.apply_delta("n3", {"$share/g/s/+", "s/x"}, {});
  // Plain matching sees only the plain subscription.
  CHECK(r.match("s/x") == v{"n3"});
  auto groups = r.match_shared("s/x");
  REQUIRE(groups.size() == 2);
  CHECK(groups["$share/g/s/+"] == v{"n2", "n3"});
  CHECK(groups["$queue/s/x"] == v{"n2"});
  r.purge("n2");
  groups = r.match_shared("s/x");
  CHECK(groups.size() == 1);
  CHECK(groups["$share/g/s/+"] == v{"n3"});
  r.apply_delta("n3", {}, {"$share/g/s/+"});
  CHECK(r.match_shared("s/x").empty());
  CHECK(r.match("s/x") == v{"n3"});
}
