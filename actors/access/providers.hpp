// Authentication providers: each answers allow, deny or ignore (pass on) for a client.
//
// Providers are called from connection actors on CONNECT, concurrently: every provider is
// thread-safe. Network providers (HTTP, PostgreSQL) block the calling thread for at most
// their configured timeout.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "actors/access/password_file.hpp"
#include "actors/access/types.hpp"

namespace tern::actors::access {

struct auth_answer {
  decision d = decision::ignore;
  bool bad_credentials = false;  ///< a deny because the password was wrong (CONNACK 4 / 0x86)
  std::string why;               ///< for the log line; never contains the password
};

class auth_provider {
 public:
  virtual ~auth_provider() = default;
  virtual const char* name() const = 0;
  virtual auth_answer authenticate(const client_info& c,
                                   const std::optional<std::string>& password) = 0;
  /// Re-reads files the provider depends on; returns an error message or "" (on error the
  /// previous state is kept).
  virtual std::string reload() { return {}; }
};

/// Users from a password file: no username or unknown user: ignore; wrong password: deny.
class password_file_provider : public auth_provider {
 public:
  /// Loads the file; the variant holds an error message on failure.
  static std::variant<std::unique_ptr<password_file_provider>, std::string> open(
      const std::string& path);
  const char* name() const override { return "password_file"; }
  auth_answer authenticate(const client_info& c,
                           const std::optional<std::string>& password) override;
  std::string reload() override;
  std::optional<scram_credentials> scram(const std::string& user) const;

 private:
  explicit password_file_provider(std::string path) : path_(std::move(path)) {}
  std::shared_ptr<const password_file> current() const;

  std::string path_;
  mutable std::mutex mtx_;
  std::shared_ptr<const password_file> file_;
};

/// Client id allow-list ("id [address-or-CIDR]" lines): a listed id from an allowed
/// address is allowed, a listed id from another address is denied, others pass on.
class clientid_provider : public auth_provider {
 public:
  struct entry {
    std::string client_id;
    std::optional<cidr> net;
  };
  static std::variant<std::vector<entry>, std::string> parse(std::string_view text,
                                                             const std::string& origin);
  static std::variant<std::unique_ptr<clientid_provider>, std::string> open(
      const std::string& path);
  const char* name() const override { return "clientid"; }
  auth_answer authenticate(const client_info& c,
                           const std::optional<std::string>& password) override;
  std::string reload() override;

 private:
  explicit clientid_provider(std::string path) : path_(std::move(path)) {}
  std::string path_;
  mutable std::mutex mtx_;
  std::shared_ptr<const std::vector<entry>> entries_;
};

/// TLS client certificates (listeners with verify = "request" or "require"): a client whose
/// connection presented a certificate the listener verified is allowed, unless it sends a
/// username that is neither the certificate's CN nor its SAN (it claims another identity:
/// deny). Without a certificate: ignore.
class cert_provider : public auth_provider {
 public:
  const char* name() const override { return "cert"; }
  auth_answer authenticate(const client_info& c,
                           const std::optional<std::string>& password) override;
};

/// POSTs the credentials to a URL. 200/204 with an empty body, "allow" or {"result":"allow"}
/// allows; "deny", {"result":"deny"}, 401 or 403 denies; everything else (other codes,
/// "ignore", connection errors, timeouts) passes on.
class http_provider : public auth_provider {
 public:
  http_provider(std::string url, bool json_body, std::chrono::milliseconds timeout)
      : url_(std::move(url)), json_(json_body), timeout_(timeout) {}
  const char* name() const override { return "http"; }
  auth_answer authenticate(const client_info& c,
                           const std::optional<std::string>& password) override;
  /// The request body for a client (exposed for tests).
  std::string body(const client_info& c, const std::optional<std::string>& password) const;
  /// Maps an HTTP status and body to an answer (exposed for tests).
  static auth_answer interpret(int status, std::string_view body);

 private:
  std::string url_;
  bool json_;
  std::chrono::milliseconds timeout_;
};

/// Looks the user's password hash up in PostgreSQL ($1 = username, $2 = client id; first
/// column of the first row). No username or no row: ignore; wrong password: deny; database
/// errors: ignore (logged by the caller through `why`).
class pgsql_provider : public auth_provider {
 public:
  pgsql_provider(std::string conninfo, std::string query, std::chrono::milliseconds timeout);
  ~pgsql_provider() override;
  const char* name() const override { return "pgsql"; }
  auth_answer authenticate(const client_info& c,
                           const std::optional<std::string>& password) override;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// A minimal HTTP/1.1 client: one POST over a fresh TCP connection, whole exchange bounded
/// by `timeout`. Returns the status and body, or an error message.
struct http_response {
  int status = 0;
  std::string body;
};
std::variant<http_response, std::string> http_post(const std::string& url,
                                                   const std::string& content_type,
                                                   const std::string& body,
                                                   std::chrono::milliseconds timeout);

}  // namespace tern::actors::access
