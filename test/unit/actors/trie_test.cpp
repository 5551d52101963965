// Unit tests for actors/router/trie: matching, reference counting, node cleanup, brute-force
// property.
#include "actors/router/trie.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "proto/mqtt/topic.hpp"

namespace {

using tern::actors::router::trie;
using tern::proto::mqtt::topic_matches;

// The filters matching `name`, sorted; duplicates are kept so tests can see them.
std::vector<std::string> matches(const trie& t, std::string_view name) {
  std::vector<std::string> out;
  t.match(name, [&](std::string_view filter) { out.emplace_back(filter); });
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

std::vector<std::string> all_filters(const trie& t) {
  std::vector<std::string> out;
  t.for_each([&](std::string_view filter) { out.emplace_back(filter); });
  std::sort(out.begin(), out.end());
  return out;
}

trie make_trie(const std::vector<std::string>& filters) {
  trie t;
  for (const auto& f : filters) {
    t.insert(f);
  }
  return t;
}

// Every prefix of every filter, counted in levels: exactly the nodes a pruned trie must hold.
std::size_t expected_nodes(const std::set<std::string>& filters) {
  std::set<std::string> prefixes;
  for (const auto& f : filters) {
    std::size_t slash = 0;
    while ((slash = f.find('/', slash)) != std::string::npos) {
      prefixes.insert(f.substr(0, slash));
      ++slash;
    }
    prefixes.insert(f);
  }
  return prefixes.size();
}

}  // namespace

TEST_CASE("trie: an empty trie matches nothing", "[trie]") {
  trie t;
  CHECK(t.size() == 0);
  CHECK(t.empty());
  CHECK(t.node_count() == 0);
  CHECK_FALSE(t.contains("a"));
  CHECK_FALSE(t.erase("a"));
  CHECK(matches(t, "a/b").empty());
  CHECK(all_filters(t).empty());
}

TEST_CASE("trie: insert and erase are reference counted", "[trie][refcount]") {
  trie t;
  CHECK(t.insert("a/b"));
  CHECK_FALSE(t.insert("a/b"));
  CHECK(t.size() == 1);
  CHECK_FALSE(t.erase("a/b"));  // one reference left
  CHECK(t.contains("a/b"));
  CHECK(matches(t, "a/b") == std::vector<std::string>{"a/b"});
  CHECK(t.erase("a/b"));
  CHECK_FALSE(t.contains("a/b"));
  CHECK(t.size() == 0);
  CHECK(t.node_count() == 0);
  CHECK_FALSE(t.erase("a/b"));  // no underflow
  CHECK(t.insert("a/b"));       // and it is new again
  CHECK(t.size() == 1);
}

TEST_CASE("trie: wildcard filters are reference counted too", "[trie][refcount]") {
  trie t;
  for (const char* f : {"#", "+", "a/#", "a/+/b", "+/#"}) {
    INFO(f);
    CHECK(t.insert(f));
    CHECK_FALSE(t.insert(f));
    CHECK_FALSE(t.erase(f));
    CHECK(t.contains(f));
  }
  CHECK(t.size() == 5);
  for (const char* f : {"#", "+", "a/#", "a/+/b", "+/#"}) {
    CHECK(t.erase(f));
    CHECK_FALSE(t.contains(f));
  }
  CHECK(t.node_count() == 0);
}

TEST_CASE("trie: erase removes nodes that are no longer needed", "[trie][cleanup]") {
  trie t;
  t.insert("a/b/c");
  CHECK(t.node_count() == 3);
  t.insert("a/b");
  CHECK(t.node_count() == 3);
  t.insert("a/+/c");
  CHECK(t.node_count() == 5);
  t.insert("a/#");
  CHECK(t.node_count() == 6);

  CHECK_FALSE(t.erase("a"));  // a prefix node, never inserted as a filter
  CHECK_FALSE(t.erase("a/+"));
  CHECK_FALSE(t.erase("x/y"));
  CHECK(t.node_count() == 6);
  CHECK(t.size() == 4);

  CHECK(t.erase("a/b/c"));  // "a/b" keeps its node
  CHECK(t.node_count() == 5);
  CHECK(t.contains("a/b"));
  CHECK(t.erase("a/+/c"));
  CHECK(t.node_count() == 3);
  CHECK(t.erase("a/b"));
  CHECK(t.node_count() == 2);  // "a" and its '#'
  CHECK(t.erase("a/#"));
  CHECK(t.node_count() == 0);
  CHECK(t.size() == 0);
}

TEST_CASE("trie: a node with many children", "[trie][wide]") {
  trie t;
  for (int i = 0; i < 100; ++i) {
    CHECK(t.insert("a/" + std::to_string(i)));
  }
  t.insert("a/+");
  t.insert("a/7/#");
  CHECK(t.node_count() == 1 + 100 + 1 + 1);
  CHECK(matches(t, "a/57") == sorted({"a/57", "a/+"}));
  CHECK(matches(t, "a/7") == sorted({"a/7", "a/+", "a/7/#"}));
  CHECK(matches(t, "a/100") == sorted({"a/+"}));
  for (int i = 99; i >= 3; --i) {  // shrink far below the size where it grew
    CHECK(t.erase("a/" + std::to_string(i)));
  }
  CHECK(t.node_count() == 1 + 3 + 1 + 2);  // "a/7" stays as the parent of "a/7/#"
  CHECK(matches(t, "a/2") == sorted({"a/2", "a/+"}));
  CHECK(matches(t, "a/57") == sorted({"a/+"}));
  CHECK(matches(t, "a/7/x") == sorted({"a/7/#"}));
  CHECK(all_filters(t) == sorted({"a/0", "a/1", "a/2", "a/+", "a/7/#"}));
  for (const char* f : {"a/0", "a/1", "a/2", "a/+", "a/7/#"}) {
    CHECK(t.erase(f));
  }
  CHECK(t.node_count() == 0);
}

TEST_CASE("trie: contains only whole filters", "[trie]") {
  const trie t = make_trie({"a/b/c", "a/+", "/"});
  CHECK(t.contains("a/b/c"));
  CHECK(t.contains("a/+"));
  CHECK(t.contains("/"));
  CHECK_FALSE(t.contains("a"));
  CHECK_FALSE(t.contains("a/b"));
  CHECK_FALSE(t.contains("a/b/c/d"));
  CHECK_FALSE(t.contains("a/#"));
  CHECK_FALSE(t.contains(""));  // the first level of "/"
}

TEST_CASE("trie: multi-level wildcard examples [MQTT-4.7.1.2]", "[trie][match]") {
  const trie t = make_trie({"sport/tennis/player1/#", "sport/#", "#", "sport/tennis/#"});
  CHECK(matches(t, "sport/tennis/player1") ==
        sorted({"sport/tennis/player1/#", "sport/#", "#", "sport/tennis/#"}));
  CHECK(matches(t, "sport/tennis/player1/ranking") ==
        sorted({"sport/tennis/player1/#", "sport/#", "#", "sport/tennis/#"}));
  CHECK(matches(t, "sport/tennis/player1/score/wimbledon") ==
        sorted({"sport/tennis/player1/#", "sport/#", "#", "sport/tennis/#"}));
  CHECK(matches(t, "sport") == sorted({"sport/#", "#"}));  // '#' includes the parent level
  CHECK(matches(t, "sport/") == sorted({"sport/#", "#"}));
  CHECK(matches(t, "sport/tennis") == sorted({"sport/#", "#", "sport/tennis/#"}));
  CHECK(matches(t, "sports") == sorted({"#"}));
  CHECK(matches(t, "/") == sorted({"#"}));
}

TEST_CASE("trie: single-level wildcard examples [MQTT-4.7.1.3]", "[trie][match]") {
  const trie t = make_trie({"sport/tennis/+", "sport/+", "+/+", "/+", "+", "sport/+/player1"});
  CHECK(matches(t, "sport/tennis/player1") == sorted({"sport/tennis/+", "sport/+/player1"}));
  CHECK(matches(t, "sport/tennis/player2") == sorted({"sport/tennis/+"}));
  CHECK(matches(t, "sport/tennis/player1/ranking").empty());
  CHECK(matches(t, "sport") == sorted({"+"}));                // "sport/+" does not match "sport"
  CHECK(matches(t, "sport/") == sorted({"sport/+", "+/+"}));  // '+' matches an empty level
  CHECK(matches(t, "/finance") == sorted({"+/+", "/+"}));     // but not "+"
  CHECK(matches(t, "/") == sorted({"+/+", "/+"}));
}

TEST_CASE("trie: topics beginning with $ [MQTT-4.7.2-1]", "[trie][match][sys]") {
  const trie t = make_trie(
      {"#", "+/monitor/Clients", "$SYS/#", "$SYS/monitor/+", "+/#", "+", "$SYS/+/Clients", "$SYS"});
  CHECK(matches(t, "$SYS/monitor/Clients") ==
        sorted({"$SYS/#", "$SYS/monitor/+", "$SYS/+/Clients"}));
  CHECK(matches(t, "$SYS") == sorted({"$SYS/#", "$SYS"}));
  CHECK(matches(t, "$other/x").empty());
  CHECK(matches(t, "app/monitor/Clients") == sorted({"#", "+/monitor/Clients", "+/#"}));
  // Only the first level is special.
  const trie u = make_trie({"a/+", "a/#", "#"});
  CHECK(matches(u, "a/$b") == sorted({"a/+", "a/#", "#"}));
  CHECK(matches(u, "x$") == sorted({"#"}));
}

TEST_CASE("trie: exact levels, empty levels and case", "[trie][match]") {
  const trie t = make_trie({"/finance", "finance", "ACCOUNTS", "Accounts payable", "a//b", "//",
                            "a/+/b", "+//+", "a/b"});
  CHECK(matches(t, "finance") == sorted({"finance"}));
  CHECK(matches(t, "/finance") == sorted({"/finance"}));
  CHECK(matches(t, "Accounts").empty());
  CHECK(matches(t, "Accounts payable") == sorted({"Accounts payable"}));
  CHECK(matches(t, "a//b") == sorted({"a//b", "a/+/b", "+//+"}));
  CHECK(matches(t, "//") == sorted({"//", "+//+"}));
  CHECK(matches(t, "a/b").size() == 1);
  CHECK(matches(t, "a/b/c").empty());
  CHECK(matches(t, "a").empty());
}

TEST_CASE("trie: each matching filter is reported once", "[trie][match]") {
  const std::vector<std::string> filters = {"#",   "+/#",   "a/#",   "a/+",   "+/+",  "a/b",
                                            "+/b", "a/b/#", "+/+/#", "a/+/#", "+/b/#"};
  const trie t = make_trie(filters);
  for (const char* name : {"a", "a/b", "a/b/c", "x/b", "x/y/z"}) {
    std::vector<std::string> expected;
    for (const auto& f : filters) {
      if (topic_matches(f, name)) {
        expected.push_back(f);
      }
    }
    INFO(name);
    CHECK(matches(t, name) == sorted(expected));
  }
}

TEST_CASE("trie: for_each lists every filter once; clear empties", "[trie]") {
  trie t = make_trie({"a/b", "a/b", "#", "a/+/c", "/", "$SYS/#"});
  CHECK(t.size() == 5);
  CHECK(all_filters(t) == sorted({"a/b", "#", "a/+/c", "/", "$SYS/#"}));
  t.clear();
  CHECK(t.size() == 0);
  CHECK(t.node_count() == 0);
  CHECK(all_filters(t).empty());
  CHECK(matches(t, "a/b").empty());
  CHECK(t.insert("a/b"));  // usable after clear
  CHECK(matches(t, "a/b") == sorted({"a/b"}));
}

TEST_CASE("trie: moves transfer the filters", "[trie]") {
  trie a = make_trie({"a/#", "b"});
  trie b(std::move(a));
  CHECK(b.size() == 2);
  CHECK(matches(b, "a/x") == sorted({"a/#"}));
  trie c = make_trie({"zzz"});
  c = std::move(b);
  CHECK(c.size() == 2);
  CHECK_FALSE(c.contains("zzz"));
  CHECK(matches(c, "b") == sorted({"b"}));
  a = make_trie({"q"});  // a moved-from trie can be reused
  CHECK(matches(a, "q") == sorted({"q"}));
}

TEST_CASE("trie: very deep filters need no recursion", "[trie][deep]") {
  // 32767 '+' levels and a '#': the longest filter MQTT allows. A recursive walk or
  // destructor would need tens of thousands of stack frames.
  std::string deep;
  for (int i = 0; i < 32767; ++i) {
    deep += "+/";
  }
  deep += "#";
  std::string long_name(65535, '/');  // 65536 empty levels
  trie t;
  t.insert(deep);
  t.insert(long_name);
  CHECK(t.node_count() == 32768 + 65536);
  CHECK(matches(t, long_name) == sorted({deep, long_name}));
  CHECK(matches(t, std::string(65533, '/')) == sorted({deep}));
  CHECK(t.erase(long_name));
  CHECK(t.node_count() == 32768);
  trie u = make_trie({deep, long_name});
  CHECK(u.size() == 2);
  // u and t are destroyed here: that must not overflow the stack either.
}

TEST_CASE("trie: random operations agree with brute-force topic_matches", "[trie][property]") {
  const unsigned seed = GENERATE(1u, 2u, 3u, 42u);
  // With "w<k>" levels nodes get up to ~30 exact children, so the trie's switch from a small
  // child list to a hash map (and back) is exercised too.
  const bool is_wide = GENERATE(false, true);
  std::mt19937 rng(seed);
  const char* const filter_levels[] = {"a", "b", "c", "", "$s", "+", "+", "#", "w"};
  const char* const name_levels[] = {"a", "b", "c", "", "$s", "x", "w"};
  auto random_level = [&](const auto& levels, std::size_t count) {
    std::string level = levels[rng() % (is_wide ? count : count - 1)];
    return level == "w" ? level + std::to_string(rng() % 24) : level;
  };
  auto random_filter = [&] {
    std::string f;
    const std::size_t len = 1 + rng() % 5;
    for (std::size_t i = 0; i < len; ++i) {
      const std::string level = random_level(filter_levels, 9);
      f += (i > 0 ? "/" : "") + level;
      if (level == "#") {
        break;
      }
    }
    return f.empty() ? std::string("a") : f;
  };
  auto random_name = [&] {
    std::string n;
    const std::size_t len = 1 + rng() % 6;
    for (std::size_t i = 0; i < len; ++i) {
      n += (i > 0 ? "/" : "") + random_level(name_levels, 7);
    }
    return n.empty() ? std::string("x") : n;
  };

  trie t;
  std::map<std::string, int> model;  // filter -> references
  std::size_t matched = 0;
  for (int step = 0; step < 3000; ++step) {
    const std::string f = random_filter();
    REQUIRE(tern::proto::mqtt::is_valid_topic_filter(f));
    if (rng() % 3 != 0) {
      const bool is_new = model[f]++ == 0;
      REQUIRE(t.insert(f) == is_new);
    } else {
      const auto it = model.find(f);
      const bool is_gone = it != model.end() && --it->second == 0;
      if (is_gone) {
        model.erase(it);
      }
      REQUIRE(t.erase(f) == is_gone);
    }
    REQUIRE(t.size() == model.size());
    REQUIRE(t.contains(f) == (model.count(f) == 1));
    if (step % 50 == 0) {
      std::set<std::string> distinct;
      for (const auto& [filter, refs] : model) {
        distinct.insert(filter);
      }
      REQUIRE(t.node_count() == expected_nodes(distinct));
    }

    for (int probe = 0; probe < 5; ++probe) {
      const std::string name = random_name();
      REQUIRE(tern::proto::mqtt::is_valid_topic_name(name));
      std::vector<std::string> expected;  // sorted, as the model is a std::map
      for (const auto& [filter, refs] : model) {
        if (topic_matches(filter, name)) {
          expected.push_back(filter);
        }
      }
      INFO("step " << step << " name " << name);
      REQUIRE(matches(t, name) == expected);  // also proves no filter is reported twice
      matched += expected.size();
    }
  }
  CHECK(matched > 5000);  // the generator produced plenty of matches

  // Drop every remaining reference: the trie must end up with no nodes at all.
  for (auto& [filter, refs] : model) {
    for (; refs > 1; --refs) {
      REQUIRE_FALSE(t.erase(filter));
    }
    REQUIRE(t.erase(filter));
  }
  CHECK(t.size() == 0);
  CHECK(t.node_count() == 0);
  CHECK(all_filters(t).empty());
}
