// Membership view: admission by incarnation, duplicate joins, removal, reconnect targets.
#include "cluster/members.hpp"

#include <catch2/catch.hpp>

using tern::cluster::admit_result;
using tern::cluster::member;
using tern::cluster::member_view;

TEST_CASE("members: join, duplicate join, restart with a newer incarnation", "[cluster]") {
  member_view v{"n1"};
  CHECK(v.admit(member{"n2", 10, "h:2"}) == admit_result::added);
  CHECK(v.admit(member{"n2", 10, "h:2"}) == admit_result::same);
  CHECK(v.size() == 1);
  CHECK(v.admit(member{"n2", 11, "h:2"}) == admit_result::replaced);
  CHECK(v.find("n2")->incarnation == 11);
  CHECK(v.is_current("n2", 11));
  CHECK_FALSE(v.is_current("n2", 10));
  // An old incarnation (a delayed handshake of the process that was replaced) is refused.
  CHECK(v.admit(member{"n2", 10, "h:2"}) == admit_result::stale);
  CHECK(v.find("n2")->incarnation == 11);
}

TEST_CASE("members: a node that goes down is retried, one that leaves is not", "[cluster]") {
  member_view v{"n1"};
  v.add_seed("h:2");
  v.admit(member{"n2", 1, "h:2"});
  v.admit(member{"n3", 1, "h:3"});
  v.admit(member{"n4", 1, "h:4"});
  // Connected members are not targets, nor is our own address.
  CHECK(v.reconnect_targets("h:1").empty());
  CHECK(v.remove("n3", 1, /*forget=*/false));
  CHECK(v.remove("n4", 1, /*forget=*/true));
  CHECK(v.reconnect_targets("h:1") == std::vector<std::string>{"h:3"});
  CHECK(v.names() == std::vector<std::string>{"n2"});
  // Removing with a wrong incarnation does nothing (a late down of an old process).
  CHECK_FALSE(v.remove("n2", 7, false));
  CHECK(v.contains("n2"));
  // The seed becomes a target when its member is gone.
  CHECK(v.remove("n2", 0, false));
  CHECK(v.reconnect_targets("h:1") == std::vector<std::string>{"h:2", "h:3"});
  // Coming back clears the lost entry.
  v.admit(member{"n3", 2, "h:3"});
  CHECK(v.reconnect_targets("h:1") == std::vector<std::string>{"h:2"});
  CHECK(v.reconnect_targets("h:2").empty());
}

TEST_CASE("members: seeds and lost members as the management API sees and edits them",
          "[cluster]") {
  member_view v{"n1"};
  v.add_seed("h:2");
  v.add_seed("h:9");
  v.admit(member{"n2", 1, "h:2"});
  v.admit(member{"n3", 1, "h:3"});
  CHECK(v.seeds() == std::set<std::string>{"h:2", "h:9"});
  CHECK(v.lost().empty());
  v.remove("n3", 1, /*forget=*/false);
  CHECK(v.lost() == std::map<std::string, std::string>{{"n3", "h:3"}});
  // cluster remove n3: forgotten although it is no member any more.
  CHECK_FALSE(v.remove("n3", 0, /*forget=*/true));
  CHECK(v.lost().empty());
  // A member that left on request: its seed address is dropped too, so it is not dialled.
  v.remove("n2", 1, true);
  v.remove_seed("h:2");
  CHECK(v.reconnect_targets("h:1") == std::vector<std::string>{"h:9"});
  v.clear_seeds();
  CHECK(v.reconnect_targets("h:1").empty());
}
