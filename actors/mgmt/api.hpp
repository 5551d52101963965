// The management HTTP API: maps a request (method, target, body, credentials) to a response.
//
// Transport-free: the HTTP server parses requests and writes responses; this class holds the
// routes. Handlers read the node's shared tables directly and ask the session manager and
// session actors with a timeout. handle() may be called from several threads at once; it
// blocks for at most the query timeout.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "actors/broker/context.hpp"
#include "actors/mgmt/metrics.hpp"

namespace caf {
class actor_system;
}

namespace tern::actors::mgmt {

struct http_request {
  std::string method;  ///< "GET", "POST", ...
  std::string target;  ///< path and query, e.g. "/api/v1/clients?page=2"
  std::string body;
  std::string authorization;  ///< the Authorization header, "" if absent
};

struct http_response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

/// Static files of the dashboard, embedded at build time (www_assets.cpp, generated).
struct asset {
  const char* path;  ///< "/index.html"
  const char* content_type;
  const char* data;
  std::size_t size;
};
const std::vector<asset>& www_assets();

class api {
 public:
  /// `is_ready` tells /readyz whether the node serves clients (listeners up, joined).
  api(caf::actor_system& sys, broker::context_ptr ctx, std::function<bool()> is_ready,
      std::string http_endpoint);
  ~api();

  http_response handle(const http_request& req);

  /// Gauges with their max, shared with the $SYS publisher.
  stats_tracker& stats() { return stats_; }

  static constexpr std::chrono::milliseconds query_timeout{3000};

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
  stats_tracker stats_;
};

}  // namespace tern::actors::mgmt
