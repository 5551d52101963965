// SCRAM-SHA-256 (RFC 5802, RFC 7677), server side, for MQTT 5 enhanced authentication.
//
// Pure state machine: the caller feeds the client's messages (CONNECT / AUTH
// "Authentication Data") and sends back what it returns. Channel binding is not supported
// (gs2 header "n,,"), as for every MQTT-over-TCP use.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace tern::actors::access {

/// What the server stores per user: never the password.
struct scram_credentials {
  std::uint32_t iterations = 4096;
  std::string salt;        ///< raw bytes
  std::string stored_key;  ///< H(ClientKey)
  std::string server_key;  ///< HMAC(SaltedPassword, "Server Key")
};

scram_credentials make_scram_credentials(std::string_view password, std::string_view salt,
                                         std::uint32_t iterations);

class scram_server {
 public:
  using lookup_fn = std::function<std::optional<scram_credentials>(const std::string& user)>;

  /// `nonce` is the server's part of the nonce; empty = 18 random bytes, base64.
  explicit scram_server(lookup_fn lookup, std::string nonce = {});

  /// Handles client-first-message; returns server-first-message, or nullopt (malformed or
  /// unknown user: the caller answers "not authorized").
  std::optional<std::string> client_first(std::string_view msg);
  /// Handles client-final-message; returns server-final-message ("v=...") when the proof is
  /// right, nullopt otherwise.
  std::optional<std::string> client_final(std::string_view msg);

  const std::string& username() const { return user_; }
  bool is_done() const { return done_; }

 private:
  lookup_fn lookup_;
  std::string server_nonce_;
  std::string user_;
  std::string client_first_bare_;
  std::string server_first_;
  std::string nonce_;
  std::optional<scram_credentials> creds_;
  bool done_ = false;
};

}  // namespace tern::actors::access
