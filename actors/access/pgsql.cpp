// PostgreSQL authentication provider over libpq, with one reused connection per provider.
#include <libpq-fe.h>

#include "actors/access/providers.hpp"

namespace tern::actors::access {

struct pgsql_provider::impl {
  std::string conninfo;
  std::string query;
  std::chrono::milliseconds timeout;
  std::mutex mtx;  // libpq connections are not shared between threads
  PGconn* conn = nullptr;

  ~impl() {
    if (conn) {
      PQfinish(conn);
    }
  }

  /// Connected, or an error message.
  std::string ensure_connected() {
    if (conn && PQstatus(conn) == CONNECTION_OK) {
      return {};
    }
    if (conn) {
      PQfinish(conn);
      conn = nullptr;
    }
    // libpq's connect_timeout is in whole seconds, at least 2.
    auto secs = std::max<long long>(2, (timeout.count() + 999) / 1000);
    const char* keys[] = {"dbname", "connect_timeout", "options", nullptr};
    auto stmt = "-c statement_timeout=" + std::to_string(timeout.count());
    auto secs_s = std::to_string(secs);
    const char* vals[] = {conninfo.c_str(), secs_s.c_str(), stmt.c_str(), nullptr};
    conn = PQconnectdbParams(keys, vals, 1);  // expand_dbname: conninfo goes in "dbname"
    if (PQstatus(conn) != CONNECTION_OK) {
      std::string err = PQerrorMessage(conn);
      PQfinish(conn);
      conn = nullptr;
      while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) {
        err.pop_back();
      }
      return "PostgreSQL connection failed: " + err;
    }
    return {};
  }
};

pgsql_provider::pgsql_provider(std::string conninfo, std::string query,
                               std::chrono::milliseconds timeout)
    : impl_(std::make_unique<impl>()) {
  impl_->conninfo = std::move(conninfo);
  impl_->query = std::move(query);
  impl_->timeout = timeout;
}

pgsql_provider::~pgsql_provider() = default;

auth_answer pgsql_provider::authenticate(const client_info& c,
                                         const std::optional<std::string>& password) {
  if (!c.username) {
    return {decision::ignore, false, "no username"};
  }
  std::lock_guard lock{impl_->mtx};
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (auto err = impl_->ensure_connected(); !err.empty()) {
      return {decision::ignore, false, err};
    }
    const char* params[] = {c.username->c_str(), c.client_id.c_str()};
    // The query may use $1 only; PostgreSQL rejects unused parameters of unknown type, so
    // pass as many as the query references.
    int nparams = impl_->query.find("$2") != std::string::npos ? 2 : 1;
    PGresult* res = PQexecParams(impl_->conn, impl_->query.c_str(), nparams, nullptr, params,
                                 nullptr, nullptr, 0);
    auto status = PQresultStatus(res);
    if (status != PGRES_TUPLES_OK) {
      std::string err = PQresultErrorMessage(res);
      PQclear(res);
      if (PQstatus(impl_->conn) != CONNECTION_OK && attempt == 0) {
        continue;  // the server dropped the connection: reconnect once
      }
      while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) {
        err.pop_back();
      }
      return {decision::ignore, false, "PostgreSQL query failed: " + err};
    }
    if (PQntuples(res) == 0 || PQnfields(res) == 0 || PQgetisnull(res, 0, 0)) {
      PQclear(res);
      return {decision::ignore, false, "unknown user"};
    }
    std::string hash = PQgetvalue(res, 0, 0);
    PQclear(res);
    if (!password || !verify_password(hash, *password)) {
      return {decision::deny, true, "wrong password"};
    }
    return {decision::allow, false, "password ok"};
  }
  return {decision::ignore, false, "PostgreSQL unavailable"};
}

}  // namespace tern::actors::access
