// Forward plans: one node per shared group, local members first, strategies across nodes.
#include "cluster/shared_plan.hpp"

#include <set>

#include <catch2/catch.hpp>

using tern::actors::router::share_strategy;
using tern::cluster::forward_plan;
using tern::cluster::node_part;
using tern::cluster::node_picker;
using tern::cluster::plan_forward;
using v = std::vector<std::string>;
using groups_t = std::map<std::string, std::vector<std::string>>;

TEST_CASE("shared plan: normal subscribers per node, one node per group", "[cluster][shared]") {
  node_picker p{share_strategy::random};
  groups_t g{{"$share/g/a/+", {"n2", "n3"}}, {"$queue/a/b", {"n3"}}};
  auto plan = plan_forward({"n2", "n4"}, g, {}, p, 0, "pub");
  CHECK(plan == forward_plan{{"n2", node_part{true, {"$share/g/a/+"}}},
                             {"n3", node_part{false, {"$queue/a/b"}}},
                             {"n4", node_part{true, {}}}});
  plan = plan_forward({"n2", "n4"}, g, {}, p, 1, "pub");
  CHECK(plan == forward_plan{{"n2", node_part{true, {}}},
                             {"n3", node_part{false, {"$queue/a/b", "$share/g/a/+"}}},
                             {"n4", node_part{true, {}}}});
}

TEST_CASE("shared plan: a group with a member here goes to no other node", "[cluster][shared]") {
  node_picker p{share_strategy::round_robin};
  groups_t g{{"$share/g/t", {"n2", "n3"}}, {"$share/h/t", {"n2"}}};
  auto plan = plan_forward({}, g, {"$share/g/t"}, p, 0, "pub");
  CHECK(plan == forward_plan{{"n2", node_part{false, {"$share/h/t"}}}});
  CHECK(plan_forward({}, g, {"$share/g/t", "$share/h/t"}, p, 0, "pub").empty());
  CHECK(plan_forward({}, {}, {}, p, 0, "pub").empty());
}

TEST_CASE("shared plan: strategies across nodes", "[cluster][shared]") {
  v nodes{"n2", "n3", "n4"};
  SECTION("round robin cycles per group") {
    node_picker p{share_strategy::round_robin};
    v seen, other;
    for (int i = 0; i < 6; ++i) {
      seen.push_back(p.pick("$share/g/t", nodes, 7, "pub"));
    }
    other.push_back(p.pick("$share/h/t", nodes, 7, "pub"));
    CHECK(seen == v{"n2", "n3", "n4", "n2", "n3", "n4"});
    CHECK(other == v{"n2"});
  }
  SECTION("sticky keeps its node while it has members") {
    node_picker p{share_strategy::sticky};
    CHECK(p.pick("$share/g/t", nodes, 1, "") == "n3");
    for (std::uint32_t r = 0; r < 5; ++r) {
      CHECK(p.pick("$share/g/t", nodes, r, "") == "n3");
    }
    CHECK(p.pick("$share/g/t", v{"n2", "n4"}, 1, "") == "n4");
    CHECK(p.pick("$share/g/t", nodes, 0, "") == "n4");
  }
  SECTION("hash_clientid: one publisher, one node") {
    node_picker p{share_strategy::hash_clientid};
    auto first = p.pick("$share/g/t", nodes, 0, "pub-a");
    for (std::uint32_t r = 1; r < 5; ++r) {
      CHECK(p.pick("$share/g/t", nodes, r, "pub-a") == first);
    }
    std::set<std::string> reached;
    for (int i = 0; i < 64; ++i) {
      reached.insert(p.pick("$share/g/t", nodes, 0, "pub-" + std::to_string(i)));
    }
    CHECK(reached.size() == 3);  // different publishers spread over the nodes
  }
  SECTION("random follows the caller's number") {
    node_picker p{share_strategy::random};
    CHECK(p.pick("$share/g/t", nodes, 0, "") == "n2");
    CHECK(p.pick("$share/g/t", nodes, 4, "") == "n3");
    CHECK(p.pick("$share/g/t", nodes, 5, "") == "n4");
  }
}
