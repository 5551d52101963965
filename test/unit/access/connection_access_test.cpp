// The connection's view of access control: CONNACK codes per protocol version, the SCRAM
// exchange through CONNECT/AUTH, subscribe codes, hooks fired.
#include "actors/access/connection_access.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>
#include <cstdio>
#include <fstream>

#include "actors/access/crypto.hpp"

using namespace tern::actors;
using namespace tern::actors::access;
namespace mqtt = tern::proto::mqtt;

namespace {

struct fixture {
  std::string pw_path;
  std::string acl_path;
  std::shared_ptr<hooks::registry> h = std::make_shared<hooks::registry>();
  std::shared_ptr<engine> e;
  std::vector<std::string> fired;

  fixture() {
    char t1[] = "/tmp/tern-ca-pw-XXXXXX";
    close(mkstemp(t1));
    pw_path = t1;
    password_file f;
    f.set("alice", "wonder", 100);
    REQUIRE(f.save(pw_path).empty());
    char t2[] = "/tmp/tern-ca-acl-XXXXXX";
    close(mkstemp(t2));
    acl_path = t2;
    std::ofstream(acl_path) << "{deny, all, subscribe, [\"private/#\"]}.\n"
                               "{deny, all, publish, [\"ro/#\"]}.\n{allow, all}.\n";
    config::config cfg;
    cfg.auth.allow_anonymous = false;
    cfg.auth.chain = {"password_file"};
    cfg.auth.password_file = pw_path;
    cfg.acl.file = acl_path;
    for (auto p : {hooks::point::client_connect, hooks::point::client_subscribe,
                   hooks::point::message_dropped, hooks::point::message_publish}) {
      h->add(p, "record", 0, [this, p](const hooks::args& a, hooks::acc&) {
        fired.push_back(std::string(hooks::name(p)) + ":" + std::string(a.topic));
        return hooks::result::ok;
      });
    }
    auto r = engine::create(cfg, h);
    REQUIRE(std::holds_alternative<std::shared_ptr<engine>>(r));
    e = std::get<0>(r);
  }
  ~fixture() {
    std::remove(pw_path.c_str());
    std::remove(acl_path.c_str());
  }
};

mqtt::connect make_connect(mqtt::protocol_version v, std::optional<std::string> user,
                           std::optional<std::string> pass) {
  mqtt::connect c;
  c.version = v;
  c.client_id = "dev1";
  c.username = std::move(user);
  c.password = std::move(pass);
  return c;
}

}  // namespace

TEST_CASE("connection access: CONNACK codes for 3.1.1 and 5.0", "[connection_access]") {
  fixture f;
  struct row {
    mqtt::protocol_version v;
    std::optional<std::string> user, pass;
    connect_step::kind k;
    std::uint8_t code;
  };
  const row rows[] = {
      {mqtt::protocol_version::v3_1_1, "alice", "wonder", connect_step::kind::accept, 0},
      {mqtt::protocol_version::v3_1_1, "alice", "nope", connect_step::kind::refuse, 4},
      {mqtt::protocol_version::v3_1_1, std::nullopt, std::nullopt, connect_step::kind::refuse, 5},
      {mqtt::protocol_version::v5, "alice", "wonder", connect_step::kind::accept, 0},
      {mqtt::protocol_version::v5, "alice", "nope", connect_step::kind::refuse, 0x86},
      {mqtt::protocol_version::v5, std::nullopt, std::nullopt, connect_step::kind::refuse, 0x87},
  };
  for (const auto& r : rows) {
    connection_access ca(*f.e, f.h.get(), "127.0.0.1:5000");
    auto c = make_connect(r.v, r.user, r.pass);
    auto step = ca.on_connect(c);
    CHECK(step.k == r.k);
    CHECK(step.code == r.code);
    CHECK(step.why.find("nope") == std::string::npos);
  }
  CHECK(f.fired.front() == "client.connect:");
}

TEST_CASE("connection access: SCRAM-SHA-256 through CONNECT and AUTH", "[connection_access]") {
  fixture f;
  connection_access ca(*f.e, f.h.get(), "127.0.0.1:5000");
  auto c = make_connect(mqtt::protocol_version::v5, std::nullopt, std::nullopt);
  c.props.authentication_method = "SCRAM-SHA-256";
  std::string first_bare = "n=alice,r=abc123";
  c.props.authentication_data = "n,," + first_bare;
  auto step = ca.on_connect(c);
  REQUIRE(step.k == connect_step::kind::challenge);
  CHECK(step.auth.reason == 0x18);
  CHECK(ca.is_authenticating());
  const auto& server_first = *step.auth.props.authentication_data;
  // Client side of the exchange.
  auto attr = [&](char k) {
    auto pos = server_first.find(std::string(1, k) + "=");
    auto end = server_first.find(',', pos);
    return server_first.substr(pos + 2,
                               end == std::string::npos ? std::string::npos : end - pos - 2);
  };
  auto salt = *crypto::base64_decode(attr('s'));
  auto salted =
      crypto::pbkdf2("wonder", salt, static_cast<std::uint32_t>(std::stoul(attr('i'))), false, 32);
  auto client_key = crypto::hmac_sha256(salted, "Client Key");
  std::string without_proof = "c=biws,r=" + attr('r');
  auto auth_msg = first_bare + "," + server_first + "," + without_proof;
  auto sig = crypto::hmac_sha256(crypto::sha256(client_key), auth_msg);
  std::string proof = client_key;
  for (std::size_t i = 0; i < proof.size(); ++i) {
    proof[i] = static_cast<char>(proof[i] ^ sig[i]);
  }
  mqtt::auth a;
  a.reason = 0x18;
  a.props.authentication_method = "SCRAM-SHA-256";
  a.props.authentication_data = without_proof + ",p=" + crypto::base64_encode(proof);
  auto done = ca.on_auth(a);
  REQUIRE(done.k == connect_step::kind::accept);
  CHECK(done.connack_props.authentication_data->rfind("v=", 0) == 0);
  auto pending = ca.take_connect();
  REQUIRE(pending);
  CHECK(pending->username == std::optional<std::string>("alice"));
  // A second AUTH after the exchange is a protocol error.
  CHECK(ca.on_auth(a).k == connect_step::kind::refuse);
}

TEST_CASE("connection access: SCRAM failures and other methods", "[connection_access]") {
  fixture f;
  {
    connection_access ca(*f.e, f.h.get(), "127.0.0.1:5000");
    auto c = make_connect(mqtt::protocol_version::v5, std::nullopt, std::nullopt);
    c.props.authentication_method = "PLAIN";
    auto step = ca.on_connect(c);
    CHECK(step.k == connect_step::kind::refuse);
    CHECK(step.code == 0x8C);
  }
  {
    connection_access ca(*f.e, f.h.get(), "127.0.0.1:5000");
    auto c = make_connect(mqtt::protocol_version::v5, std::nullopt, std::nullopt);
    c.props.authentication_method = "SCRAM-SHA-256";
    c.props.authentication_data = "n,,n=alice,r=x";
    REQUIRE(ca.on_connect(c).k == connect_step::kind::challenge);
    mqtt::auth a;
    a.reason = 0x18;
    a.props.authentication_method = "SCRAM-SHA-256";
    a.props.authentication_data = "c=biws,r=wrong,p=AAAA";
    auto step = ca.on_auth(a);
    CHECK(step.k == connect_step::kind::refuse);
    CHECK(step.code == 0x86);
  }
}

TEST_CASE("connection access: publish and subscribe checks", "[connection_access]") {
  fixture f;
  for (auto v : {mqtt::protocol_version::v3_1_1, mqtt::protocol_version::v5}) {
    connection_access ca(*f.e, f.h.get(), "127.0.0.1:5000");
    auto c = make_connect(v, "alice", "wonder");
    REQUIRE(ca.on_connect(c).k == connect_step::kind::accept);
    CHECK(ca.is_needed_after_connect());
    mqtt::subscribe s;
    s.subscriptions.push_back({"private/x", mqtt::qos::at_least_once});
    s.subscriptions.push_back({"open/x", mqtt::qos::at_least_once});
    auto codes = ca.check_subscribe(s);
    std::uint8_t deny = v == mqtt::protocol_version::v5 ? 0x87 : 0x80;
    CHECK(codes == std::vector<std::uint8_t>{deny, 0});
    s.subscriptions.erase(s.subscriptions.begin());
    CHECK(ca.check_subscribe(s).empty());
    CHECK_FALSE(ca.allow_publish("ro/1", 1));
    CHECK(ca.allow_publish("rw/1", 1));
  }
  CHECK(std::find(f.fired.begin(), f.fired.end(), "message.dropped:ro/1") != f.fired.end());
  CHECK(std::find(f.fired.begin(), f.fired.end(), "client.subscribe:private/x") != f.fired.end());
}
