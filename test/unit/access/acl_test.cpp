// ACL parser and evaluator: every Who form, CIDR (v4/v6), placeholders, eq, order, errors,
// the shipped etc/acl.conf, and Mosquitto's acl_file.
#include "actors/access/acl.hpp"

#include <catch2/catch.hpp>

using namespace tern::actors::access;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

acl parse_ok(const std::string& text) {
  auto r = acl::parse_emqttd(text, "acl.conf");
  if (auto* e = std::get_if<acl_error>(&r)) {
    FAIL("unexpected parse error: " << e->message);
  }
  return std::get<acl>(std::move(r));
}

std::string parse_err(const std::string& text) {
  auto r = acl::parse_emqttd(text, "acl.conf");
  REQUIRE(std::holds_alternative<acl_error>(r));
  return std::get<acl_error>(r).message;
}

client_info client(std::string id, std::optional<std::string> user = std::nullopt,
                   std::string addr = "10.1.2.3") {
  client_info c;
  c.client_id = std::move(id);
  c.username = std::move(user);
  c.address = ip_address::parse(addr);
  c.peer = addr + ":1234";
  return c;
}

std::optional<decision> pub(const acl& a, const client_info& c, std::string_view t) {
  return a.check(c, access_kind::publish, t);
}
std::optional<decision> sub(const acl& a, const client_info& c, std::string_view t) {
  return a.check(c, access_kind::subscribe, t);
}

}  // namespace

TEST_CASE("acl: topic matching follows MQTT rules, $ topics need an explicit filter", "[acl]") {
  CHECK(acl_topic_matches("a/+/c", "a/b/c"));
  CHECK_FALSE(acl_topic_matches("a/+/c", "a/b/d"));
  CHECK(acl_topic_matches("a/#", "a/b/c"));
  CHECK(acl_topic_matches("a/#", "a"));
  CHECK(acl_topic_matches("#", "x"));
  CHECK_FALSE(acl_topic_matches("#", "$SYS/x"));
  CHECK_FALSE(acl_topic_matches("+/x", "$SYS/x"));
  CHECK(acl_topic_matches("$SYS/#", "$SYS/brokers"));
  CHECK(acl_topic_matches("#", "#"));  // a subscribe request for "#"
  CHECK(acl_topic_matches("a/+", "a/+"));
  CHECK_FALSE(acl_topic_matches("a/b", "a/+"));  // a literal rule does not cover a wildcard
  CHECK_FALSE(acl_topic_matches("a/b", "a/b/c"));
  CHECK_FALSE(acl_topic_matches("a/b/c", "a/b"));
  CHECK(acl_topic_matches("a//b", "a//b"));
}

TEST_CASE("acl: every Who form", "[acl]") {
  auto a = parse_ok(R"(
{allow, {user, "alice"}, publish, ["u/alice"]}.
{allow, {user, all}, publish, ["u/any"]}.
{allow, {client, "c1"}, publish, ["c/one"]}.
{allow, {client, all}, publish, ["c/any"]}.
{allow, {ipaddr, "192.168.1.7"}, publish, ["ip/host"]}.
{allow, {ipaddr, "10.0.0.0/8"}, publish, ["ip/net"]}.
{allow, {'and', [{user, "bob"}, {client, "c2"}]}, publish, ["and"]}.
{allow, {'or', [{user, "carol"}, {client, "c3"}]}, publish, ["or"]}.
{allow, all, publish, ["everyone"]}.
)");
  REQUIRE(a.rules().size() == 9);
  auto alice = client("x", "alice");
  auto anon = client("c1");
  CHECK(pub(a, alice, "u/alice") == decision::allow);
  CHECK(pub(a, client("x", "eve"), "u/alice") == std::nullopt);
  CHECK(pub(a, alice, "u/any") == decision::allow);
  CHECK(pub(a, anon, "u/any") == std::nullopt);  // {user, all} needs a username
  CHECK(pub(a, anon, "c/one") == decision::allow);
  CHECK(pub(a, client("c9"), "c/one") == std::nullopt);
  CHECK(pub(a, client("c9"), "c/any") == decision::allow);
  CHECK(pub(a, client("x", {}, "192.168.1.7"), "ip/host") == decision::allow);
  CHECK(pub(a, client("x", {}, "192.168.1.8"), "ip/host") == std::nullopt);
  CHECK(pub(a, client("x", {}, "10.200.3.4"), "ip/net") == decision::allow);
  CHECK(pub(a, client("x", {}, "11.0.0.1"), "ip/net") == std::nullopt);
  CHECK(pub(a, client("c2", "bob"), "and") == decision::allow);
  CHECK(pub(a, client("c1", "bob"), "and") == std::nullopt);
  CHECK(pub(a, client("zz", "carol"), "or") == decision::allow);
  CHECK(pub(a, client("c3"), "or") == decision::allow);
  CHECK(pub(a, client("c4"), "or") == std::nullopt);
  CHECK(pub(a, anon, "everyone") == decision::allow);
  // A client without an address never matches an ipaddr rule.
  client_info noaddr = client("x");
  noaddr.address.reset();
  CHECK(pub(a, noaddr, "ip/net") == std::nullopt);
}

TEST_CASE("acl: IPv6 addresses and CIDR ranges", "[acl]") {
  auto a = parse_ok(R"(
{deny, {ipaddr, "::1"}, publish, ["t"]}.
{allow, {ipaddr, "fd00:1234::/32"}, publish, ["t"]}.
{allow, {ipaddr, "127.0.0.0/8"}, publish, ["t"]}.
)");
  CHECK(pub(a, client("x", {}, "::1"), "t") == decision::deny);
  CHECK(pub(a, client("x", {}, "fd00:1234:5::9"), "t") == decision::allow);
  CHECK(pub(a, client("x", {}, "fd00:1235::9"), "t") == std::nullopt);
  CHECK(pub(a, client("x", {}, "127.9.9.9"), "t") == decision::allow);
  // An IPv4-mapped IPv6 peer matches an IPv4 rule.
  CHECK(pub(a, client("x", {}, "::ffff:127.0.0.1"), "t") == decision::allow);
  CHECK(ip_address::from_peer("[::1]:1883")->to_string() == "::1");
  CHECK(ip_address::from_peer("127.0.0.1:1883")->to_string() == "127.0.0.1");
  CHECK_FALSE(cidr::parse("10.0.0.0/33"));
  CHECK_FALSE(cidr::parse("::/129"));
  CHECK_FALSE(cidr::parse("10.0.0/8"));
  CHECK(cidr::parse("0.0.0.0/0")->contains(*ip_address::parse("8.8.8.8")));
  CHECK(cidr::parse("10.0.0.0/9")->contains(*ip_address::parse("10.127.0.1")));
  CHECK_FALSE(cidr::parse("10.0.0.0/9")->contains(*ip_address::parse("10.128.0.1")));
}

TEST_CASE("acl: placeholders for username and client id", "[acl]") {
  auto a = parse_ok(R"(
{allow, all, pubsub, ["users/%u/#", "clients/$c/#", "mix/%c-in"]}.
{deny, all}.
)");
  auto bob = client("dev1", "bob");
  CHECK(pub(a, bob, "users/bob/x") == decision::allow);
  CHECK(pub(a, bob, "users/alice/x") == decision::deny);
  CHECK(sub(a, bob, "clients/dev1/#") == decision::allow);
  CHECK(sub(a, bob, "clients/dev2/#") == decision::deny);
  CHECK(pub(a, bob, "mix/dev1-in") == decision::allow);
  // Without a username the %u rule never matches.
  CHECK(pub(a, client("dev1"), "users//x") == decision::deny);
  CHECK(*expand_placeholders("a/$u/$c/%u%c", bob) == "a/bob/dev1/bobdev1");
  CHECK(*expand_placeholders("a/x$u", bob) == "a/x$u");  // $u only as a whole level
}

TEST_CASE("acl: eq matches the literal filter only", "[acl]") {
  auto a = parse_ok(R"(
{deny, all, subscribe, [{eq, "#"}, {eq, "t/+"}]}.
{allow, all}.
)");
  auto c = client("x");
  CHECK(sub(a, c, "#") == decision::deny);
  CHECK(sub(a, c, "a/#") == decision::allow);
  CHECK(sub(a, c, "t/+") == decision::deny);
  CHECK(sub(a, c, "t/x") == decision::allow);
  CHECK(pub(a, c, "t/x") == decision::allow);
}

TEST_CASE("acl: first match wins, access kinds, no match", "[acl]") {
  auto a = parse_ok(R"(
{deny, {user, "u"}, publish, ["a/#"]}.
{allow, all, publish, ["a/b"]}.
{allow, all, subscribe, ["s/#"]}.
)");
  unsigned line = 0;
  CHECK(a.check(client("x", "u"), access_kind::publish, "a/b", line) == decision::deny);
  CHECK(line == 2);
  CHECK(a.check(client("x", "v"), access_kind::publish, "a/b", line) == decision::allow);
  CHECK(line == 3);
  CHECK(pub(a, client("x"), "s/1") == std::nullopt);  // subscribe-only rule
  CHECK(sub(a, client("x"), "s/1") == decision::allow);
  CHECK(sub(a, client("x"), "a/b") == std::nullopt);  // publish-only rule
  CHECK(a.check(client("x"), access_kind::publish, "zzz", line) == std::nullopt);
  CHECK(line == 0);
}

TEST_CASE("acl: the shipped etc/acl.conf is emqttd's default", "[acl]") {
  auto r = acl::load_file(std::string(TERN_SOURCE_DIR) + "/etc/acl.conf", "emqttd");
  REQUIRE(std::holds_alternative<acl>(r));
  const auto& a = std::get<acl>(r);
  REQUIRE(a.rules().size() == 4);
  auto remote = client("x", std::nullopt, "10.0.0.5");
  auto dashboard = client("d", "dashboard", "10.0.0.5");
  auto local = client("l", std::nullopt, "127.0.0.1");
  CHECK(sub(a, dashboard, "$SYS/#") == decision::allow);
  CHECK(sub(a, remote, "$SYS/#") == decision::deny);
  CHECK(sub(a, remote, "$SYS/brokers/x") == decision::deny);
  CHECK(sub(a, remote, "#") == decision::deny);
  CHECK(sub(a, remote, "a/#") == decision::allow);
  CHECK(sub(a, remote, "+/#") == decision::allow);
  CHECK(pub(a, remote, "anything") == decision::allow);
  CHECK(sub(a, local, "#") == decision::allow);
  CHECK(sub(a, local, "$SYS/#") == decision::allow);
}

TEST_CASE("acl: comments, binaries, single topic, quoted atoms", "[acl]") {
  auto a = parse_ok(
      "% comment\n{allow, {user, <<\"x\">>}, publish, <<\"t\">>}. % trailing\n"
      "{'deny', all}.\n");
  REQUIRE(a.rules().size() == 2);
  CHECK(pub(a, client("c", "x"), "t") == decision::allow);
  CHECK(pub(a, client("c", "y"), "t") == decision::deny);
  CHECK(parse_ok("").rules().empty());
  CHECK(parse_ok("%% only comments\n").rules().empty());
}

TEST_CASE("acl: parse errors name the line", "[acl]") {
  CHECK_THAT(parse_err("{allow, all}.\n\n{allow, all}"),
             StartsWith("acl.conf:3:") && Contains("'.'"));
  CHECK_THAT(parse_err("{allow, all}.\n{permit, all}.\n"),
             StartsWith("acl.conf:2:") && Contains("allow or deny"));
  CHECK_THAT(parse_err("{allow, {user, \"a\"}, publish}.\n"), StartsWith("acl.conf:1:"));
  CHECK_THAT(parse_err("\n{allow, {ipaddr, \"300.1.1.1\"}, publish, [\"t\"]}.\n"),
             StartsWith("acl.conf:2:") && Contains("ipaddr"));
  CHECK_THAT(parse_err("{allow, {host, \"a\"}, publish, [\"t\"]}.\n"), Contains("unknown who"));
  CHECK_THAT(parse_err("{allow, all, read, [\"t\"]}.\n"), Contains("publish, subscribe or pubsub"));
  CHECK_THAT(parse_err("{allow, all, publish, [\"t\"}.\n"), StartsWith("acl.conf:1:"));
  CHECK_THAT(parse_err("{allow, all, publish, [\"t\n\"]}.\n"), Contains("line break"));
  CHECK_THAT(parse_err("{allow, all, publish, [\"\"]}.\n"), Contains("empty topic"));
  CHECK_THAT(parse_err("{allow, all, publish, [\"t\"]}.\n\n\n{allow, all, publish, [\"t\"]"),
             StartsWith("acl.conf:4:"));
  CHECK_THAT(parse_err("{allow, {'and', []}, publish, [\"t\"]}.\n"), Contains("non-empty"));
  CHECK_THAT(parse_err("{allow, all, publish, [{eq, 1}]}.\n"), Contains("unexpected character"));
  CHECK_THAT(parse_err(std::string(100000, '[')), Contains("nested too deeply"));
  CHECK_THAT(parse_err("{allow, all}.\n{allow"), StartsWith("acl.conf:2:"));
  CHECK_THAT(parse_err("\"unterminated"), Contains("unterminated"));
}

TEST_CASE("acl: Mosquitto acl_file", "[acl][mosquitto]") {
  auto r = acl::parse_mosquitto(R"(# anonymous clients
topic read public/#

user alice
topic readwrite alice/#
topic deny alice/secret
topic write logs/alice

user bob smith
topic bob/#

pattern readwrite clients/%c/#
pattern read users/%u/inbox
)",
                                "acl_file");
  REQUIRE(std::holds_alternative<acl>(r));
  const auto& a = std::get<acl>(r);
  auto anon = client("dev1");
  auto alice = client("dev2", "alice");
  auto bob = client("dev3", "bob smith");
  CHECK(sub(a, anon, "public/x") == decision::allow);
  CHECK(pub(a, anon, "public/x") == std::nullopt);   // read only
  CHECK(sub(a, alice, "public/x") == std::nullopt);  // anonymous block is not alice's
  CHECK(pub(a, alice, "alice/x") == decision::allow);
  CHECK(pub(a, alice, "alice/secret") == decision::allow);  // first match: alice/# before deny
  CHECK(pub(a, alice, "logs/alice") == decision::allow);
  CHECK(sub(a, alice, "logs/alice") == std::nullopt);
  CHECK(pub(a, bob, "bob/1") == decision::allow);
  CHECK(pub(a, alice, "bob/1") == std::nullopt);
  CHECK(pub(a, anon, "clients/dev1/a") == decision::allow);
  CHECK(pub(a, anon, "clients/dev2/a") == std::nullopt);
  CHECK(sub(a, alice, "users/alice/inbox") == decision::allow);
  CHECK(sub(a, anon, "users//inbox") == std::nullopt);  // %u without a username
  auto bad = acl::parse_mosquitto("user a\ntopic sometimes t\nfoo\n", "acl_file");
  REQUIRE(std::holds_alternative<acl_error>(bad));
  CHECK_THAT(std::get<acl_error>(bad).message, StartsWith("acl_file:3:"));
  auto bad2 = acl::parse_mosquitto("topic read\n", "acl_file");
  REQUIRE(std::holds_alternative<acl_error>(bad2));
  CHECK_THAT(std::get<acl_error>(bad2).message, StartsWith("acl_file:1:"));
}

TEST_CASE("acl: Mosquitto deny entries deny before a later allow", "[acl][mosquitto]") {
  auto r = acl::parse_mosquitto("user u\ntopic deny a/secret\ntopic a/#\n", "f");
  REQUIRE(std::holds_alternative<acl>(r));
  const auto& a = std::get<acl>(r);
  CHECK(pub(a, client("c", "u"), "a/secret") == decision::deny);
  CHECK(sub(a, client("c", "u"), "a/secret") == decision::deny);
  CHECK(pub(a, client("c", "u"), "a/open") == decision::allow);
}

TEST_CASE("acl: arbitrary input never crashes the parsers", "[acl]") {
  // Deterministic pseudo-random texts over the grammar's characters.
  const std::string alphabet = "{}[],.'\"%<>/+#$ \n\tabcdeqluiprsnotwy0123456789";
  std::uint32_t seed = 12345;
  auto next = [&seed] {
    seed = seed * 1664525u + 1013904223u;
    return seed >> 8;
  };
  for (int i = 0; i < 3000; ++i) {
    std::string text;
    auto len = next() % 80;
    for (std::uint32_t j = 0; j < len; ++j) {
      text += alphabet[next() % alphabet.size()];
    }
    auto r1 = acl::parse_emqttd(text, "f");
    auto r2 = acl::parse_mosquitto(text, "f");
    if (auto* a = std::get_if<acl>(&r1)) {
      a->check(client("c", "u"), access_kind::publish, "a/b");
    }
    if (auto* a = std::get_if<acl>(&r2)) {
      a->check(client("c"), access_kind::subscribe, "#");
    }
  }
  SUCCEED();
}
