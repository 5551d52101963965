// Unit tests for actors/router/route_table (filter -> subscribers over the trie) and
// actors/router/retain_store (retained messages by topic).
#include "actors/router/route_table.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "actors/router/retain_store.hpp"

namespace {

using tern::actors::message;
using tern::actors::message_ptr;
using tern::actors::router::retain_store;
using tern::actors::router::route_table;
using tern::actors::router::sub_options;
using tern::proto::mqtt::qos;

using hit = std::pair<std::string, std::string>;  // (filter, subscriber)
using hits = std::vector<hit>;

// Every (filter, subscriber) the table reports for `topic`, sorted (match order is unspecified).
hits match_all(const route_table<std::string>& t, std::string_view topic) {
  hits out;
  t.match(topic, [&](std::string_view filter, const route_table<std::string>::entry& e) {
    out.emplace_back(std::string(filter), e.sub);
  });
  std::sort(out.begin(), out.end());
  return out;
}

sub_options opts(qos q, std::uint32_t sub_id = 0) {
  sub_options o;
  o.max_qos = q;
  o.subscription_id = sub_id;
  return o;
}

message_ptr retained(const std::string& topic, const std::string& payload) {
  auto m = std::make_shared<message>();
  m->topic = topic;
  m->payload = payload;
  m->retain = true;
  return m;
}

std::vector<std::string> topics(const std::vector<message_ptr>& ms) {
  std::vector<std::string> out;
  for (const auto& m : ms) {
    out.push_back(m->topic);
  }
  return out;
}

using strings = std::vector<std::string>;

}  // namespace

TEST_CASE("route_table: empty table matches nothing", "[route_table]") {
  route_table<std::string> t;
  CHECK(t.route_count() == 0);
  CHECK(t.subscription_count() == 0);
  CHECK(match_all(t, "a/b").empty());
}

TEST_CASE("route_table: add, replace and counts", "[route_table]") {
  route_table<std::string> t;
  CHECK(t.add("a/b", "s1", opts(qos::at_least_once)));       // new route
  CHECK_FALSE(t.add("a/b", "s2", opts(qos::at_most_once)));  // same route, second subscriber
  CHECK(t.add("a/+", "s1", opts(qos::exactly_once)));
  CHECK(t.route_count() == 2);
  CHECK(t.subscription_count() == 3);

  // Adding the same (filter, subscriber) again replaces its options: no new subscription.
  CHECK_FALSE(t.add("a/b", "s1", opts(qos::exactly_once, 42)));
  CHECK(t.route_count() == 2);
  CHECK(t.subscription_count() == 3);

  std::vector<std::pair<std::string, sub_options>> seen;
  t.match("a/b", [&](std::string_view filter, const route_table<std::string>::entry& e) {
    if (filter == "a/b" && e.sub == "s1") {
      seen.emplace_back(e.sub, e.opts);
    }
  });
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].second.max_qos == qos::exactly_once);
  CHECK(seen[0].second.subscription_id == 42);
}

TEST_CASE("route_table: match reports each (filter, entry) for exact and wildcard filters",
          "[route_table]") {
  route_table<std::string> t;
  t.add("sport/tennis/player1", "exact", opts(qos::at_most_once));
  t.add("sport/+/player1", "plus", opts(qos::at_most_once));
  t.add("sport/#", "hash", opts(qos::at_most_once));
  t.add("sport/#", "hash2", opts(qos::at_most_once));
  t.add("#", "all", opts(qos::at_most_once));
  t.add("+/+", "two", opts(qos::at_most_once));
  t.add("other/#", "other", opts(qos::at_most_once));
  CHECK(t.route_count() == 6);
  CHECK(t.subscription_count() == 7);

  CHECK(match_all(t, "sport/tennis/player1") == hits{{"#", "all"},
                                                     {"sport/#", "hash"},
                                                     {"sport/#", "hash2"},
                                                     {"sport/+/player1", "plus"},
                                                     {"sport/tennis/player1", "exact"}});
  CHECK(match_all(t, "sport/tennis/player2") ==
        hits{{"#", "all"}, {"sport/#", "hash"}, {"sport/#", "hash2"}});
  // "sport/#" also matches the parent level itself.
  CHECK(match_all(t, "sport") == hits{{"#", "all"}, {"sport/#", "hash"}, {"sport/#", "hash2"}});
  CHECK(match_all(t, "a/b") == hits{{"#", "all"}, {"+/+", "two"}});
  CHECK(match_all(t, "a") == hits{{"#", "all"}});
}

TEST_CASE("route_table: $SYS topics are not matched by leading wildcards", "[route_table]") {
  route_table<std::string> t;
  t.add("#", "all", opts(qos::at_most_once));
  t.add("+/broker/uptime", "plus", opts(qos::at_most_once));
  t.add("$SYS/#", "sys", opts(qos::at_most_once));
  t.add("$SYS/broker/+", "sys-plus", opts(qos::at_most_once));
  CHECK(match_all(t, "$SYS/broker/uptime") ==
        hits{{"$SYS/#", "sys"}, {"$SYS/broker/+", "sys-plus"}});
  CHECK(match_all(t, "x/broker/uptime") == hits{{"#", "all"}, {"+/broker/uptime", "plus"}});
}

TEST_CASE("route_table: remove", "[route_table]") {
  route_table<std::string> t;
  t.add("a/#", "s1", opts(qos::at_most_once));
  t.add("a/#", "s2", opts(qos::at_most_once));
  t.add("a/b", "s1", opts(qos::at_most_once));

  CHECK_FALSE(t.remove("a/#", "s1"));  // s2 still subscribed: the route stays
  CHECK(t.route_count() == 2);
  CHECK(t.subscription_count() == 2);
  CHECK(match_all(t, "a/b") == hits{{"a/#", "s2"}, {"a/b", "s1"}});

  CHECK_FALSE(t.remove("a/#", "nobody"));  // not subscribed: nothing changes
  CHECK_FALSE(t.remove("no/such/filter", "s2"));
  CHECK(t.subscription_count() == 2);
  CHECK(t.route_count() == 2);

  CHECK(t.remove("a/#", "s2"));  // last subscriber: the route goes
  CHECK(t.route_count() == 1);
  CHECK(t.subscription_count() == 1);
  CHECK(match_all(t, "a/c").empty());
  CHECK(match_all(t, "a/b") == hits{{"a/b", "s1"}});
  CHECK_FALSE(t.remove("a/#", "s2"));  // already gone

  CHECK(t.remove("a/b", "s1"));
  CHECK(t.route_count() == 0);
  CHECK(t.subscription_count() == 0);
  CHECK(match_all(t, "a/b").empty());

  // A removed route can come back.
  CHECK(t.add("a/#", "s3", opts(qos::at_most_once)));
  CHECK(match_all(t, "a/b") == hits{{"a/#", "s3"}});
}

TEST_CASE("route_table: works with int subscriber handles", "[route_table]") {
  route_table<int> t;
  CHECK(t.add("x/+", 1, opts(qos::at_least_once)));
  CHECK_FALSE(t.add("x/+", 2, opts(qos::exactly_once)));
  CHECK(t.add("x/y", 2, opts(qos::at_most_once)));
  std::vector<std::pair<int, qos>> got;
  t.match("x/y", [&](std::string_view, const route_table<int>::entry& e) {
    got.emplace_back(e.sub, e.opts.max_qos);
  });
  std::sort(got.begin(), got.end());
  CHECK(got == std::vector<std::pair<int, qos>>{
                   {1, qos::at_least_once}, {2, qos::at_most_once}, {2, qos::exactly_once}});
  CHECK(t.subscription_count() == 3);
  CHECK_FALSE(t.remove("x/+", 1));
  CHECK(t.remove("x/+", 2));
  CHECK(t.route_count() == 1);
}

TEST_CASE("route_table: many subscribers and routes keep consistent counts", "[route_table]") {
  route_table<int> t;
  for (int f = 0; f < 50; ++f) {
    for (int s = 0; s < 20; ++s) {
      t.add("f/" + std::to_string(f) + "/#", s, opts(qos::at_most_once));
    }
  }
  CHECK(t.route_count() == 50);
  CHECK(t.subscription_count() == 1000);
  int n = 0;
  t.match("f/7/x", [&](std::string_view filter, const route_table<int>::entry&) {
    n += filter == "f/7/#";
  });
  CHECK(n == 20);
  for (int f = 0; f < 50; ++f) {
    for (int s = 0; s < 20; ++s) {
      bool last = t.remove("f/" + std::to_string(f) + "/#", s);
      if (last != (s == 19)) {
        FAIL("remove of f/" << f << "/# by " << s << " returned " << last);
      }
    }
  }
  CHECK(t.route_count() == 0);
  CHECK(t.subscription_count() == 0);
}

TEST_CASE("retain_store: put, replace, delete by empty payload", "[retain_store]") {
  retain_store rs;
  CHECK(rs.size() == 0);
  CHECK(rs.match("a/b").empty());

  auto m1 = retained("a/b", "one");
  rs.put(m1);
  CHECK(rs.size() == 1);
  auto got = rs.match("a/b");
  REQUIRE(got.size() == 1);
  CHECK(got[0] == m1);

  auto m2 = retained("a/b", "two");
  rs.put(m2);  // replaces
  CHECK(rs.size() == 1);
  got = rs.match("a/b");
  REQUIRE(got.size() == 1);
  CHECK(got[0]->payload == "two");

  rs.put(retained("a/c", "three"));
  CHECK(rs.size() == 2);

  rs.put(retained("a/b", ""));  // empty payload deletes [MQTT-3.3.1-10]
  CHECK(rs.size() == 1);
  CHECK(rs.match("a/b").empty());
  CHECK(topics(rs.match("a/c")) == strings{"a/c"});

  rs.put(retained("never/stored", ""));  // deleting what is not there is harmless
  CHECK(rs.size() == 1);
}

TEST_CASE("retain_store: match with exact and wildcard filters", "[retain_store]") {
  retain_store rs;
  for (const char* t : {"sport/tennis/player1", "sport/tennis/player2", "sport/golf",
                        "sport", "news/today", "$SYS/broker/uptime", "a//b"}) {
    rs.put(retained(t, std::string("p:") + t));
  }
  CHECK(rs.size() == 7);

  // Exact filters: only that topic.
  CHECK(topics(rs.match("sport/golf")) == strings{"sport/golf"});
  CHECK(topics(rs.match("sport/golf/x")).empty());
  CHECK(topics(rs.match("$SYS/broker/uptime")) == strings{"$SYS/broker/uptime"});
  CHECK(topics(rs.match("a//b")) == strings{"a//b"});

  // Wildcards, results in topic order.
  CHECK(topics(rs.match("sport/tennis/+")) ==
        strings{"sport/tennis/player1", "sport/tennis/player2"});
  CHECK(topics(rs.match("sport/#")) ==
        strings{"sport", "sport/golf", "sport/tennis/player1", "sport/tennis/player2"});
  CHECK(topics(rs.match("+/+")) == strings{"news/today", "sport/golf"});
  CHECK(topics(rs.match("a/+/b")) == strings{"a//b"});
  CHECK(topics(rs.match("+/tennis/#")) ==
        strings{"sport/tennis/player1", "sport/tennis/player2"});
  CHECK(topics(rs.match("nothing/+")).empty());

  // '#' and '+' at the start do not match $SYS topics; "$SYS/#" does.
  CHECK(topics(rs.match("#")) == strings{"a//b", "news/today", "sport", "sport/golf",
                                         "sport/tennis/player1", "sport/tennis/player2"});
  CHECK(topics(rs.match("+/broker/uptime")).empty());
  CHECK(topics(rs.match("$SYS/#")) == strings{"$SYS/broker/uptime"});

  // The stored message is returned, payload intact.
  auto got = rs.match("news/+");
  REQUIRE(got.size() == 1);
  CHECK(got[0]->payload == "p:news/today");
  CHECK(got[0]->retain);
}

// ---- shared subscriptions ----------------------------------------------------------------

namespace {

using tern::actors::router::share_key;
using tern::actors::router::share_pick;
using tern::actors::router::share_strategy;

// (plain hits, shared hits as (key, subscriber)) for one publish.
struct shared_hits {
  hits plain;
  hits shared;
};

shared_hits match_shared(const route_table<std::string>& t, std::string_view topic,
                         const share_pick& pick) {
  shared_hits out;
  t.match(
      topic,
      [&](std::string_view filter, const route_table<std::string>::entry& e) {
        out.plain.emplace_back(std::string(filter), e.sub);
      },
      pick,
      [&](std::string_view, const route_table<std::string>::entry& e, const share_key& key) {
        out.shared.emplace_back(*key, e.sub);
      });
  std::sort(out.plain.begin(), out.plain.end());
  std::sort(out.shared.begin(), out.shared.end());
  return out;
}

share_pick pick_of(share_strategy s, std::uint32_t random = 0, std::string_view pub = "") {
  share_pick p;
  p.strategy = s;
  p.random = random;
  p.publisher = pub;
  return p;
}

}  // namespace

TEST_CASE("route_table: shared groups get one member per message", "[route_table][shared]") {
  route_table<std::string> t;
  CHECK(t.add("$share/g/a/+", "s1", opts(qos::at_least_once)));  // new route a/+
  CHECK_FALSE(t.add("$share/g/a/+", "s2", opts(qos::at_least_once)));
  CHECK_FALSE(t.add("$queue/a/+", "s3", opts(qos::at_most_once)));
  CHECK_FALSE(t.add("a/+", "plain", opts(qos::at_most_once)));
  CHECK(t.subscription_count() == 4);
  CHECK(t.route_count() == 1);

  // The two-argument match sees plain subscribers only.
  CHECK(match_all(t, "a/b") == hits{{"a/+", "plain"}});

  auto r = match_shared(t, "a/b", pick_of(share_strategy::random, 1));
  CHECK(r.plain == hits{{"a/+", "plain"}});
  CHECK(r.shared == hits{{"$queue/a/+", "s3"}, {"$share/g/a/+", "s2"}});
  r = match_shared(t, "a/b", pick_of(share_strategy::random, 2));
  CHECK(r.shared == hits{{"$queue/a/+", "s3"}, {"$share/g/a/+", "s1"}});
  CHECK(match_shared(t, "x", pick_of(share_strategy::random)).shared.empty());
}

TEST_CASE("route_table: round robin, sticky and hash_clientid", "[route_table][shared]") {
  route_table<std::string> t;
  for (auto s : {"m1", "m2", "m3"}) {
    t.add("$share/g/t", s, opts(qos::at_least_once));
  }
  std::vector<std::string> seen;
  for (int i = 0; i < 6; ++i) {
    seen.push_back(match_shared(t, "t", pick_of(share_strategy::round_robin)).shared[0].second);
  }
  CHECK(seen == std::vector<std::string>{"m1", "m2", "m3", "m1", "m2", "m3"});

  // Sticky: the first pick stays, whatever the random numbers say, until that member leaves.
  route_table<std::string> st;
  for (auto s : {"m1", "m2", "m3"}) {
    st.add("$share/g/t", s, opts(qos::at_least_once));
  }
  auto first = match_shared(st, "t", pick_of(share_strategy::sticky, 1)).shared[0].second;
  CHECK(first == "m2");
  for (std::uint32_t r = 0; r < 5; ++r) {
    CHECK(match_shared(st, "t", pick_of(share_strategy::sticky, r)).shared[0].second == "m2");
  }
  st.remove("$share/g/t", "m2");
  auto next = match_shared(st, "t", pick_of(share_strategy::sticky, 0)).shared[0].second;
  CHECK(next == "m1");
  CHECK(match_shared(st, "t", pick_of(share_strategy::sticky, 1)).shared[0].second == "m1");

  // hash_clientid: one publisher always reaches the same member.
  auto a = match_shared(t, "t", pick_of(share_strategy::hash_clientid, 0, "pub-a")).shared;
  for (std::uint32_t r = 0; r < 5; ++r) {
    CHECK(match_shared(t, "t", pick_of(share_strategy::hash_clientid, r, "pub-a")).shared == a);
  }
}

TEST_CASE("route_table: pick_member skips the leaving member", "[route_table][shared]") {
  route_table<std::string> t;
  t.add("$share/g/t", "m1", opts(qos::at_least_once));
  std::string got;
  auto take = [&](const route_table<std::string>::entry& e) { got = e.sub; };
  CHECK_FALSE(t.pick_member("$share/g/t", "m1", pick_of(share_strategy::random), take));
  t.add("$share/g/t", "m2", opts(qos::exactly_once));
  for (std::uint32_t r = 0; r < 4; ++r) {
    REQUIRE(t.pick_member("$share/g/t", "m1", pick_of(share_strategy::random, r), take));
    CHECK(got == "m2");
  }
  // With a two-argument callback, the group's own key comes along.
  std::string key;
  REQUIRE(t.pick_member("$share/g/t", "", pick_of(share_strategy::random, 0),
                        [&](const route_table<std::string>::entry& e, const share_key& k) {
                          got = e.sub;
                          key = *k;
                        }));
  CHECK(got == "m1");
  CHECK(key == "$share/g/t");
  CHECK_FALSE(t.pick_member("$share/other/t", "m1", pick_of(share_strategy::random), take));
  CHECK_FALSE(t.pick_member("t", "m1", pick_of(share_strategy::random), take));
}

TEST_CASE("route_table: removing shared members and groups", "[route_table][shared]") {
  route_table<std::string> t;
  t.add("$share/g/t", "m1", opts(qos::at_least_once));
  t.add("$share/h/t", "m1", opts(qos::at_least_once));
  CHECK(t.subscription_count() == 2);
  CHECK_FALSE(t.remove("$share/g/t", "m1"));  // group h still routes t
  CHECK(t.remove("$share/h/t", "m1"));        // last one: the route goes
  CHECK(t.subscription_count() == 0);
  CHECK(t.route_count() == 0);
  CHECK(match_shared(t, "t", pick_of(share_strategy::random)).shared.empty());
  CHECK_FALSE(t.remove("$share/g/t", "m1"));
}

TEST_CASE("route_table: has_key tells plain filters and shared groups apart",
          "[route_table][shared]") {
  route_table<std::string> t;
  t.add("a/b", "p1", opts(qos::at_most_once));
  CHECK(t.has_key("a/b"));
  CHECK_FALSE(t.has_key("$share/g/a/b"));
  t.add("$share/g/a/b", "m1", opts(qos::at_least_once));
  CHECK(t.has_key("$share/g/a/b"));
  CHECK_FALSE(t.has_key("$share/h/a/b"));
  CHECK_FALSE(t.has_key("$queue/a/b"));
  t.remove("a/b", "p1");
  CHECK_FALSE(t.has_key("a/b"));  // the filter stays routed for the group only
  CHECK(t.has_key("$share/g/a/b"));
  t.remove("$share/g/a/b", "m1");
  CHECK_FALSE(t.has_key("$share/g/a/b"));
  CHECK_FALSE(t.has_key("x"));
}

TEST_CASE("route_table: for_each_key lists the keys the cluster replicates", "[route_table][shared]") {
  route_table<std::string> t;
  auto keys = [&] {
    std::vector<std::string> out;
    t.for_each_key([&](std::string_view k) { out.emplace_back(k); });
    std::sort(out.begin(), out.end());
    return out;
  };
  t.add("a/#", "s1", opts(qos::at_most_once));
  t.add("a/#", "s2", opts(qos::at_most_once));
  t.add("$share/g/a/#", "s3", opts(qos::at_least_once));
  t.add("$queue/q/x", "s4", opts(qos::at_least_once));
  CHECK(keys() == std::vector<std::string>{"$queue/q/x", "$share/g/a/#", "a/#"});
  t.remove("a/#", "s1");
  t.remove("a/#", "s2");  // the plain filter goes, its shared group stays
  CHECK(keys() == std::vector<std::string>{"$queue/q/x", "$share/g/a/#"});
  t.remove("$share/g/a/#", "s3");
  CHECK(keys() == std::vector<std::string>{"$queue/q/x"});
}
