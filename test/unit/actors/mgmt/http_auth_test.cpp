// Unit tests for the management API's access checks and base64.
#include "actors/mgmt/http_auth.hpp"

#include <catch2/catch.hpp>

using namespace tern::actors::mgmt;
using tern::actors::config::http_config;

TEST_CASE("base64 round trip and RFC 4648 vectors", "[mgmt]") {
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg==");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_encode("foo") == "Zm9v");
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
  CHECK(base64_decode("Zm9vYmE=") == std::optional<std::string>("fooba"));
  CHECK(base64_decode("Zm9vYmE") == std::optional<std::string>("fooba"));
  CHECK_FALSE(base64_decode("Zm9v!mE=").has_value());
  CHECK_FALSE(base64_decode("Z").has_value());
  std::string all;
  for (int i = 0; i < 256; ++i) {
    all += static_cast<char>(i);
  }
  CHECK(base64_decode(base64_encode(all)) == std::optional<std::string>(all));
}

TEST_CASE("basic auth and bearer keys", "[mgmt]") {
  http_config cfg;
  cfg.users = {"ops:s3cret", "admin:public"};
  cfg.api_keys = {"0123456789abcdef"};
  CHECK(check_authorization("", cfg) == auth_result::missing);
  CHECK(check_authorization("Basic " + base64_encode("ops:s3cret"), cfg) == auth_result::ok);
  CHECK(check_authorization("basic " + base64_encode("admin:public"), cfg) == auth_result::ok);
  CHECK(check_authorization("Basic " + base64_encode("ops:s3cre"), cfg) == auth_result::invalid);
  CHECK(check_authorization("Basic " + base64_encode("ops:s3cret2"), cfg) == auth_result::invalid);
  CHECK(check_authorization("Basic " + base64_encode("ops"), cfg) == auth_result::invalid);
  CHECK(check_authorization("Basic ***", cfg) == auth_result::invalid);
  CHECK(check_authorization("Bearer 0123456789abcdef", cfg) == auth_result::ok);
  CHECK(check_authorization("Bearer 0123456789abcde", cfg) == auth_result::invalid);
  CHECK(check_authorization("Bearer ", cfg) == auth_result::invalid);
  CHECK(check_authorization("Token 0123456789abcdef", cfg) == auth_result::invalid);
  CHECK(uses_default_credential(cfg));
  cfg.users = {"ops:s3cret"};
  CHECK_FALSE(uses_default_credential(cfg));
  CHECK(check_authorization("Basic " + base64_encode("admin:public"), cfg) == auth_result::invalid);
}
