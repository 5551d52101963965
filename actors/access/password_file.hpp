// The username/password file: salted PBKDF2-SHA512 hashes, never plain text.
//
// Line format (compatible with mosquitto_passwd's "$7$" lines, so Mosquitto password files
// can be used as they are):
//   user:$7$<iterations>$<base64 salt>$<base64 PBKDF2-SHA512(password, salt)>
// optionally followed by SCRAM-SHA-256 credentials for MQTT 5 enhanced authentication:
//   ...:scram-sha-256$<iterations>$<base64 salt>$<base64 StoredKey>$<base64 ServerKey>
// Mosquitto's older "$6$<salt>$<SHA512(password ‖ salt)>" lines are accepted for checking.
// Empty lines and lines starting with '#' are ignored.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "actors/access/scram.hpp"

namespace tern::actors::access {

struct password_entry {
  std::string hash;  ///< "$7$..." or "$6$..."
  std::optional<scram_credentials> scram;
};

class password_file {
 public:
  static constexpr std::uint32_t default_iterations = 20000;

  /// Parses file text; an error names "origin:line: what".
  static std::variant<password_file, std::string> parse(std::string_view text,
                                                        const std::string& origin);
  static std::variant<password_file, std::string> load(const std::string& path);
  /// Writes atomically (temporary file + rename), mode 0600. Returns an error message or "".
  std::string save(const std::string& path) const;

  /// True when the user exists and the password matches its hash.
  bool verify(const std::string& user, std::string_view password) const;
  bool contains(const std::string& user) const { return users_.count(user) != 0; }
  const password_entry* find(const std::string& user) const;

  /// Adds or replaces a user (hash and SCRAM credentials from a fresh random salt).
  void set(const std::string& user, std::string_view password,
           std::uint32_t iterations = default_iterations);
  bool remove(const std::string& user) { return users_.erase(user) != 0; }
  std::vector<std::string> users() const;

 private:
  std::map<std::string, password_entry> users_;
};

/// "$7$<iterations>$<salt>$<hash>" for `password` with a fresh 12-byte salt.
std::string hash_password(std::string_view password,
                          std::uint32_t iterations = password_file::default_iterations);
/// Checks a password against a "$7$" or "$6$" hash; false for any malformed hash.
bool verify_password(std::string_view hash, std::string_view password);

/// A user name may not be empty, contain ':' or control characters.
bool is_valid_username(std::string_view user);

}  // namespace tern::actors::access
