// Cookie proofs: deterministic for the same inputs, different for any changed input.
#include "cluster/cookie.hpp"

#include <catch2/catch.hpp>

using namespace tern::cluster;

TEST_CASE("cookie: proofs bind cookie, label, nonce and name", "[cluster]") {
  auto n = make_nonce();
  CHECK(n.size() == 16);
  CHECK(make_nonce() != n);
  auto p = cookie_proof("secret", "auth", n, "n1");
  CHECK(p.size() == 32);
  CHECK(proof_equal(p, cookie_proof("secret", "auth", n, "n1")));
  CHECK_FALSE(proof_equal(p, cookie_proof("Secret", "auth", n, "n1")));
  CHECK_FALSE(proof_equal(p, cookie_proof("secret", "welcome", n, "n1")));
  CHECK_FALSE(proof_equal(p, cookie_proof("secret", "auth", make_nonce(), "n1")));
  CHECK_FALSE(proof_equal(p, cookie_proof("secret", "auth", n, "n2")));
  CHECK_FALSE(proof_equal(p, p.substr(1)));
  CHECK(p.find("secret") == std::string::npos);
  // An empty cookie gives a different proof too (a node without a cookie never starts).
  CHECK_FALSE(proof_equal(cookie_proof("", "auth", n, "n1"), p));
}
