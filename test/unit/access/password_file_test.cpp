// Password hashing (PBKDF2-SHA512, Mosquitto $7$/$6$ compatible) and the password file.
#include "actors/access/password_file.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "actors/access/crypto.hpp"

using namespace tern::actors::access;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

TEST_CASE("password: PBKDF2-SHA512 known answer", "[password]") {
  // RFC 6070-style vector for PBKDF2-HMAC-SHA512 ("password", "salt", 1 iteration).
  auto h = crypto::pbkdf2("password", "salt", 1, true, 64);
  CHECK(crypto::base64_encode(h.substr(0, 6)) == "hn9wzxre");  // 867f70cf1ade...
}

TEST_CASE("password: hash and verify", "[password]") {
  auto h = hash_password("s3cret", 1000);
  CHECK_THAT(h, StartsWith("$7$1000$"));
  CHECK(h.find("s3cret") == std::string::npos);
  CHECK(verify_password(h, "s3cret"));
  CHECK_FALSE(verify_password(h, "s3cret "));
  CHECK_FALSE(verify_password(h, ""));
  // Fresh salt each time.
  CHECK(hash_password("s3cret", 1000) != h);
  CHECK_FALSE(verify_password("s3cret", "s3cret"));  // plain text is never a hash
  CHECK_FALSE(verify_password("$7$x$AAAA$AAAA", "a"));
  CHECK_FALSE(verify_password("$7$0$AAAA$AAAA", "a"));
}

TEST_CASE("password: Mosquitto $6$ and $7$ lines are accepted", "[password]") {
  // $6$: base64 salt, base64 SHA512(password + salt).
  std::string salt = "0123456789ab";
  auto six = "$6$" + crypto::base64_encode(salt) + "$" +
             crypto::base64_encode(crypto::sha512(std::string("pw") + salt));
  CHECK(verify_password(six, "pw"));
  CHECK_FALSE(verify_password(six, "px"));
  auto seven = "$7$101$" + crypto::base64_encode(salt) + "$" +
               crypto::base64_encode(crypto::pbkdf2("pw", salt, 101, true, 64));
  CHECK(verify_password(seven, "pw"));
  auto r = password_file::parse("u1:" + six + "\nu2:" + seven + "\n", "passwd");
  REQUIRE(std::holds_alternative<password_file>(r));
  CHECK(std::get<password_file>(r).verify("u1", "pw"));
  CHECK(std::get<password_file>(r).verify("u2", "pw"));
  CHECK_FALSE(std::get<password_file>(r).verify("u3", "pw"));
}

TEST_CASE("password: file errors name the line, plain text is refused", "[password]") {
  auto err = [](const std::string& text) {
    auto r = password_file::parse(text, "passwd");
    REQUIRE(std::holds_alternative<std::string>(r));
    return std::get<std::string>(r);
  };
  CHECK_THAT(err("# c\n\nalice:secret\n"), StartsWith("passwd:3:") && Contains("plain-text"));
  CHECK_THAT(err("nocolon\n"), StartsWith("passwd:1:"));
  auto h = hash_password("x", 10);
  CHECK_THAT(err("a:" + h + "\na:" + h + "\n"), StartsWith("passwd:2:") && Contains("twice"));
  CHECK_THAT(err("a:" + h + ":scram-sha-256$1$AA$AA$AA\n"), Contains("scram"));
}

TEST_CASE("password: set, save, load, remove round trip", "[password]") {
  password_file f;
  f.set("alice", "wonder", 500);
  f.set("bob", "builder", 500);
  CHECK(f.verify("alice", "wonder"));
  REQUIRE(f.find("alice")->scram);
  char tmpl[] = "/tmp/tern-passwd-XXXXXX";
  int fd = mkstemp(tmpl);
  REQUIRE(fd >= 0);
  close(fd);
  std::string path = tmpl;
  REQUIRE(f.save(path).empty());
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  CHECK(ss.str().find("wonder") == std::string::npos);
  auto r = password_file::load(path);
  REQUIRE(std::holds_alternative<password_file>(r));
  auto& g = std::get<password_file>(r);
  CHECK(g.verify("alice", "wonder"));
  CHECK(g.verify("bob", "builder"));
  CHECK(g.users() == std::vector<std::string>{"alice", "bob"});
  REQUIRE(g.find("bob")->scram);
  CHECK(g.find("bob")->scram->stored_key == f.find("bob")->scram->stored_key);
  CHECK(g.remove("bob"));
  CHECK_FALSE(g.remove("bob"));
  CHECK_FALSE(g.verify("bob", "builder"));
  std::remove(path.c_str());
  CHECK_FALSE(is_valid_username("a:b"));
  CHECK_FALSE(is_valid_username(""));
  CHECK(is_valid_username("bob smith"));
}
