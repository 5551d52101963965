// SCRAM-SHA-256 server: the RFC 7677 example exchange, and failures.
#include "actors/access/scram.hpp"

#include <catch2/catch.hpp>

#include "actors/access/crypto.hpp"

using namespace tern::actors::access;

namespace {

// RFC 7677, section 3.
const std::string client_nonce = "rOprNGfwEbeRWgbNEkqO";
const std::string server_nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const std::string salt_b64 = "W22ZaJ0SNY7soEsUEjb6gQ==";

scram_server make_server() {
  auto salt = *crypto::base64_decode(salt_b64);
  auto creds = make_scram_credentials("pencil", salt, 4096);
  return scram_server(
      [creds](const std::string& user) -> std::optional<scram_credentials> {
        if (user == "user") {
          return creds;
        }
        return std::nullopt;
      },
      server_nonce);
}

}  // namespace

TEST_CASE("scram: RFC 7677 example exchange", "[scram]") {
  auto s = make_server();
  auto first = s.client_first("n,,n=user,r=" + client_nonce);
  REQUIRE(first);
  CHECK(*first ==
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
  CHECK(s.username() == "user");
  auto final_msg = s.client_final(
      "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
      "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
  REQUIRE(final_msg);
  CHECK(*final_msg == "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
  CHECK(s.is_done());
}

TEST_CASE("scram: a wrong proof, nonce or user is refused", "[scram]") {
  {
    auto s = make_server();
    REQUIRE(s.client_first("n,,n=user,r=" + client_nonce));
    // Proof of the password "pencil2" would differ; flip one character of the right one.
    CHECK_FALSE(
        s.client_final("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                       "p=eHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="));
    CHECK_FALSE(s.is_done());
  }
  {
    auto s = make_server();
    REQUIRE(s.client_first("n,,n=user,r=" + client_nonce));
    CHECK_FALSE(s.client_final(
        "c=biws,r=rOprNGfwEbeRWgbNEkqOXXX,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="));
  }
  {
    auto s = make_server();
    CHECK_FALSE(s.client_first("n,,n=nobody,r=abc"));
    CHECK_FALSE(s.client_first("garbage"));
    CHECK_FALSE(s.client_first("p=tls-unique,,n=user,r=abc"));
    CHECK_FALSE(s.client_final("c=biws,r=x,p=AAAA"));  // before client-first
  }
}

TEST_CASE("scram: a full exchange with a computed client proof", "[scram]") {
  auto salt = crypto::random_bytes(16);
  auto creds = make_scram_credentials("s3cret", salt, 1000);
  scram_server s([creds](const std::string&) { return std::optional<scram_credentials>(creds); });
  std::string cfirst_bare = "n=alice,r=clientnonce";
  auto sfirst = s.client_first("n,," + cfirst_bare);
  REQUIRE(sfirst);
  auto nonce = sfirst->substr(2, sfirst->find(',') - 2);
  std::string without_proof = "c=biws,r=" + nonce;
  auto salted = crypto::pbkdf2("s3cret", salt, 1000, false, 32);
  auto client_key = crypto::hmac_sha256(salted, "Client Key");
  auto auth_msg = cfirst_bare + "," + *sfirst + "," + without_proof;
  auto sig = crypto::hmac_sha256(crypto::sha256(client_key), auth_msg);
  for (std::size_t i = 0; i < client_key.size(); ++i) {
    client_key[i] = static_cast<char>(client_key[i] ^ sig[i]);
  }
  auto sfinal = s.client_final(without_proof + ",p=" + crypto::base64_encode(client_key));
  REQUIRE(sfinal);
  auto server_sig = crypto::hmac_sha256(crypto::hmac_sha256(salted, "Server Key"), auth_msg);
  CHECK(*sfinal == "v=" + crypto::base64_encode(server_sig));
}
