// Access engine: the provider chain, anonymous, client id list, bans, ACL defaults, the
// per-client cache and its flush on reload, hooks deciding before the ACL, HTTP answers.
#include "actors/access/engine.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>
#include <cstdio>
#include <fstream>

using namespace tern::actors;
using namespace tern::actors::access;
using namespace std::chrono_literals;

namespace {

struct temp_file {
  std::string path;
  explicit temp_file(const std::string& text) {
    char tmpl[] = "/tmp/tern-access-XXXXXX";
    int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0);
    close(fd);
    path = tmpl;
    write(text);
  }
  void write(const std::string& text) const {
    std::ofstream out(path, std::ios::trunc);
    out << text;
  }
  ~temp_file() { std::remove(path.c_str()); }
};

client_info client(std::string id, std::optional<std::string> user = std::nullopt,
                   std::string addr = "127.0.0.1") {
  client_info c;
  c.client_id = std::move(id);
  c.username = std::move(user);
  c.address = ip_address::parse(addr);
  c.peer = addr + ":40000";
  return c;
}

std::shared_ptr<engine> make(const config::config& cfg,
                             std::shared_ptr<hooks::registry> h = nullptr) {
  if (!h) {
    h = std::make_shared<hooks::registry>();
  }
  auto r = engine::create(cfg, h);
  if (auto* err = std::get_if<std::string>(&r)) {
    FAIL("engine::create: " << *err);
  }
  return std::get<0>(r);
}

std::string passwd_text() {
  password_file f;
  f.set("alice", "wonder", 100);
  char tmpl[] = "/tmp/tern-pw-XXXXXX";
  int fd = mkstemp(tmpl);
  close(fd);
  REQUIRE(f.save(tmpl).empty());
  std::ifstream in(tmpl);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::remove(tmpl);
  return text;
}

}  // namespace

TEST_CASE("engine: default config lets everybody in and allows every topic", "[engine]") {
  config::config cfg;
  auto e = make(cfg);
  CHECK(e->authenticate(client("c"), std::nullopt).is_ok());
  CHECK(e->authenticate(client("c", "who"), std::string("x")).is_ok());
  CHECK_FALSE(e->checks_acl());
  CHECK(e->check_publish(client("c"), "any", nullptr));
  CHECK(e->check_subscribe(client("c"), "#", nullptr));
}

TEST_CASE("engine: password file chain, anonymous off", "[engine]") {
  temp_file pw(passwd_text());
  config::config cfg;
  cfg.auth.allow_anonymous = false;
  cfg.auth.chain = {"password_file"};
  cfg.auth.password_file = pw.path;
  auto e = make(cfg);
  CHECK(e->authenticate(client("c", "alice"), std::string("wonder")).is_ok());
  CHECK(e->authenticate(client("c", "alice"), std::string("wrong")).status ==
        auth_status::bad_credentials);
  CHECK(e->authenticate(client("c", "alice"), std::nullopt).status == auth_status::bad_credentials);
  CHECK(e->authenticate(client("c", "mallory"), std::string("x")).status ==
        auth_status::bad_credentials);
  CHECK(e->authenticate(client("c"), std::nullopt).status == auth_status::not_authorized);
  REQUIRE(e->scram_credentials_for("alice"));
  CHECK_FALSE(e->scram_credentials_for("mallory"));
}

TEST_CASE("engine: anonymous on still denies a wrong password", "[engine]") {
  temp_file pw(passwd_text());
  config::config cfg;
  cfg.auth.chain = {"password_file"};
  cfg.auth.password_file = pw.path;
  auto e = make(cfg);
  CHECK(e->authenticate(client("c"), std::nullopt).is_ok());
  CHECK(e->authenticate(client("c", "alice"), std::string("wonder")).is_ok());
  CHECK_FALSE(e->authenticate(client("c", "alice"), std::string("nope")).is_ok());
}

TEST_CASE("engine: client id allow-list with address ranges", "[engine]") {
  temp_file ids("# allowed devices\nsensor-1\nsensor-2 10.0.0.0/8\n");
  config::config cfg;
  cfg.auth.allow_anonymous = false;
  cfg.auth.chain = {"clientid"};
  cfg.auth.clientid_file = ids.path;
  auto e = make(cfg);
  CHECK(e->authenticate(client("sensor-1"), std::nullopt).is_ok());
  CHECK(e->authenticate(client("sensor-2", std::nullopt, "10.9.8.7"), std::nullopt).is_ok());
  CHECK(e->authenticate(client("sensor-2", std::nullopt, "192.168.0.1"), std::nullopt).status ==
        auth_status::not_authorized);
  CHECK(e->authenticate(client("other"), std::nullopt).status == auth_status::not_authorized);
  auto bad = clientid_provider::parse("a 1.2.3.4/99\n", "ids");
  REQUIRE(std::holds_alternative<std::string>(bad));
  CHECK(std::get<std::string>(bad).rfind("ids:1:", 0) == 0);
}

TEST_CASE("engine: TLS client certificate provider", "[engine]") {
  temp_file pw(passwd_text());
  config::config cfg;
  cfg.auth.allow_anonymous = false;
  cfg.auth.chain = {"cert", "password_file"};
  cfg.auth.password_file = pw.path;
  auto e = make(cfg);
  auto with_cert = [](client_info c, std::string cn, std::string san = {}) {
    c.cert_cn = std::move(cn);
    c.cert_san = std::move(san);
    return c;
  };
  // A verified certificate lets the client in, without a username or with its own identity.
  CHECK(e->authenticate(with_cert(client("d1"), "device-1"), std::nullopt).is_ok());
  CHECK(e->authenticate(with_cert(client("d1", "device-1"), "device-1"), std::nullopt).is_ok());
  CHECK(e->authenticate(with_cert(client("d1", "d1.example"), "device-1", "d1.example"),
                        std::nullopt)
            .is_ok());
  // Claiming another identity than the certificate's is refused, even with a password.
  CHECK(e->authenticate(with_cert(client("d1", "alice"), "device-1"), std::string("wonder"))
            .status == auth_status::bad_credentials);
  // Without a certificate the provider passes on: the password file decides.
  CHECK(e->authenticate(client("c", "alice"), std::string("wonder")).is_ok());
  CHECK(e->authenticate(client("c"), std::nullopt).status == auth_status::not_authorized);
}

TEST_CASE("engine: repeated failures ban the client id and the address", "[engine]") {
  temp_file pw(passwd_text());
  config::config cfg;
  cfg.auth.allow_anonymous = false;
  cfg.auth.chain = {"password_file"};
  cfg.auth.password_file = pw.path;
  cfg.ban.enabled = true;
  cfg.ban.max_failures = 3;
  cfg.ban.window = 60s;
  cfg.ban.duration = 30s;
  auto e = make(cfg);
  engine::clock::time_point t{};
  t += 10h;
  for (int i = 0; i < 3; ++i) {
    CHECK(e->authenticate(client("c1", "alice", "10.0.0.1"), std::string("bad"), t).status ==
          auth_status::bad_credentials);
  }
  // Banned now, even with the right password, by client id and by address.
  CHECK(e->authenticate(client("c1", "alice", "10.0.0.2"), std::string("wonder"), t).status ==
        auth_status::banned);
  CHECK(e->authenticate(client("c2", "alice", "10.0.0.1"), std::string("wonder"), t).status ==
        auth_status::banned);
  CHECK(e->authenticate(client("c2", "alice", "10.0.0.2"), std::string("wonder"), t).is_ok());
  CHECK(e->authenticate(client("c1", "alice", "10.0.0.1"), std::string("wonder"), t + 31s).is_ok());
}

TEST_CASE("engine: ACL default, cache, reload flushes the cache", "[engine]") {
  temp_file rules("{deny, all, publish, [\"secret/#\"]}.\n");
  config::config cfg;
  cfg.acl.file = rules.path;
  cfg.acl.no_match_allow = false;
  auto e = make(cfg);
  REQUIRE(e->checks_acl());
  acl_cache cache(4);
  auto c = client("c");
  CHECK_FALSE(e->check_publish(c, "secret/x", &cache));
  CHECK_FALSE(e->check_publish(c, "open", &cache));  // no match: default deny
  CHECK(cache.size() == 2);
  rules.write("{allow, all, publish, [\"open\"]}.\n{deny, all}.\n");
  // Without a reload the cached decision stands.
  CHECK_FALSE(e->check_publish(c, "open", &cache));
  auto gen = e->generation();
  CHECK(e->reload().empty());
  CHECK(e->generation() == gen + 1);
  CHECK(e->check_publish(c, "open", &cache));
  CHECK(cache.size() == 1);
  // A broken file keeps the old rules and reports the line.
  rules.write("{allow, all}.\n{oops}.\n");
  auto err = e->reload();
  CHECK(err.find(":2:") != std::string::npos);
  CHECK(e->check_publish(c, "open", nullptr));
  CHECK_FALSE(e->check_subscribe(c, "x", nullptr));
}

TEST_CASE("engine: the cache is bounded", "[engine]") {
  acl_cache cache(3);
  for (int i = 0; i < 10; ++i) {
    cache.put(1, access_kind::publish, "t" + std::to_string(i), true);
  }
  CHECK(cache.size() == 3);
  CHECK(cache.get(1, access_kind::publish, "t9"));
  CHECK_FALSE(cache.get(1, access_kind::publish, "t0"));
  CHECK_FALSE(cache.get(1, access_kind::subscribe, "t9"));
  CHECK_FALSE(cache.get(2, access_kind::publish, "t9"));  // new generation: flushed
  CHECK(cache.size() == 0);
}

TEST_CASE("engine: a higher-priority hook decides before the ACL", "[engine]") {
  temp_file rules("{allow, all}.\n");
  config::config cfg;
  cfg.acl.file = rules.path;
  auto h = std::make_shared<hooks::registry>();
  auto e = make(cfg, h);
  h->add(hooks::point::client_check_acl, "block-x", 100, [](const hooks::args& a, hooks::acc& x) {
    if (a.topic == "x" && a.is_subscribe) {
      x.v = hooks::verdict::deny;
      return hooks::result::stop;
    }
    return hooks::result::ok;
  });
  CHECK_FALSE(e->check_subscribe(client("c"), "x", nullptr));
  CHECK(e->check_publish(client("c"), "x", nullptr));
  // Authentication also goes through its hook point.
  h->add(hooks::point::client_authenticate, "no-root", 100,
         [](const hooks::args& a, hooks::acc& x) {
           if (a.has_username && a.username == "root") {
             x.v = hooks::verdict::deny;
             x.reason_code = 2;
             return hooks::result::stop;
           }
           return hooks::result::ok;
         });
  CHECK(e->authenticate(client("c", "root"), std::string("x")).status ==
        auth_status::not_authorized);
  CHECK(e->authenticate(client("c", "user"), std::string("x")).is_ok());
}

TEST_CASE("engine: configuration errors name the file and line", "[engine]") {
  temp_file rules("{allow, all}.\n{allow, {user, 1}, publish, [\"t\"]}.\n");
  config::config cfg;
  cfg.acl.file = rules.path;
  auto r = engine::create(cfg, std::make_shared<hooks::registry>());
  REQUIRE(std::holds_alternative<std::string>(r));
  CHECK(std::get<std::string>(r).find(rules.path + ":2:") == 0);
  config::config cfg2;
  cfg2.auth.chain = {"password_file"};
  auto r2 = engine::create(cfg2, std::make_shared<hooks::registry>());
  REQUIRE(std::holds_alternative<std::string>(r2));
}

TEST_CASE("http provider: answers from status and body", "[http]") {
  CHECK(http_provider::interpret(200, "").d == decision::allow);
  CHECK(http_provider::interpret(204, "").d == decision::allow);
  CHECK(http_provider::interpret(200, "allow\n").d == decision::allow);
  CHECK(http_provider::interpret(200, "deny").d == decision::deny);
  CHECK(http_provider::interpret(200, "ignore").d == decision::ignore);
  CHECK(http_provider::interpret(200, R"({"result": "deny"})").d == decision::deny);
  CHECK(http_provider::interpret(200, R"({"result": "allow"})").d == decision::allow);
  CHECK(http_provider::interpret(200, R"({"other": 1})").d == decision::ignore);
  CHECK(http_provider::interpret(401, "").d == decision::deny);
  CHECK(http_provider::interpret(403, "").d == decision::deny);
  CHECK(http_provider::interpret(500, "allow").d == decision::ignore);
  CHECK(http_provider::interpret(404, "").d == decision::ignore);
  http_provider json("http://127.0.0.1:1/auth", true, 100ms);
  auto body = json.body(client("c&1", "a b"), std::string("p\"w"));
  CHECK(body.find(R"("clientid":"c&1")") != std::string::npos);
  CHECK(body.find(R"("password":"p\"w")") != std::string::npos);
  CHECK(body.find(R"("ipaddress":"127.0.0.1")") != std::string::npos);
  http_provider form("http://127.0.0.1:1/auth", false, 100ms);
  CHECK(form.body(client("c&1", "a b"), std::string("p=w")) ==
        "clientid=c%261&username=a%20b&password=p%3Dw&ipaddress=127.0.0.1");
  // Nothing listens on port 1: the provider passes on instead of failing the client.
  CHECK(json.authenticate(client("c"), std::nullopt).d == decision::ignore);
}

TEST_CASE("config: the shipped etc/tern.toml has the access defaults", "[config]") {
  auto r = config::load_file(std::string(TERN_SOURCE_DIR) + "/etc/tern.toml");
  REQUIRE(std::holds_alternative<config::config>(r));
  const auto& c = std::get<config::config>(r);
  const config::config d;
  CHECK(c.auth.allow_anonymous == d.auth.allow_anonymous);
  CHECK(c.auth.chain == d.auth.chain);
  CHECK(c.auth.password_file == d.auth.password_file);
  CHECK(c.auth.clientid_file == d.auth.clientid_file);
  CHECK(c.auth.http_url == d.auth.http_url);
  CHECK(c.auth.http_body == d.auth.http_body);
  CHECK(c.auth.http_timeout == d.auth.http_timeout);
  CHECK(c.auth.pgsql_conninfo == d.auth.pgsql_conninfo);
  CHECK(c.auth.pgsql_query == d.auth.pgsql_query);
  CHECK(c.auth.pgsql_timeout == d.auth.pgsql_timeout);
  CHECK(c.acl.file == d.acl.file);
  CHECK(c.acl.format == d.acl.format);
  CHECK(c.acl.no_match_allow == d.acl.no_match_allow);
  CHECK(c.acl.cache_size == d.acl.cache_size);
  CHECK(c.ban.enabled == d.ban.enabled);
  CHECK(c.ban.max_failures == d.ban.max_failures);
  CHECK(c.ban.window == d.ban.window);
  CHECK(c.ban.duration == d.ban.duration);
  CHECK(c.hooks.audit_log == d.hooks.audit_log);
  CHECK(c.hooks.audit_events == d.hooks.audit_events);
  auto bad = config::parse("[auth]\nchain = [\"ldap\"]\n", "t.toml");
  REQUIRE(std::holds_alternative<config::config_error>(bad));
  CHECK(std::get<config::config_error>(bad).message.rfind("t.toml:2: auth.chain:", 0) == 0);
  auto bad2 = config::parse("\n[hooks]\naudit_events = [\"client.nope\"]\n", "t.toml");
  REQUIRE(std::holds_alternative<config::config_error>(bad2));
  CHECK(std::get<config::config_error>(bad2).message.rfind("t.toml:3:", 0) == 0);
}
