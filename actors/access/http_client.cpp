// A minimal blocking HTTP/1.1 POST with a deadline over the whole exchange.
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "actors/access/providers.hpp"

namespace tern::actors::access {

namespace {

using clock = std::chrono::steady_clock;

struct fd_guard {
  int fd = -1;
  ~fd_guard() {
    if (fd >= 0) {
      ::close(fd);
    }
  }
};

int remaining_ms(clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

bool wait_for(int fd, short events, clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r > 0) {
      return true;
    }
    if (r == 0 || errno != EINTR) {
      return false;
    }
  }
}

struct url_parts {
  std::string host;
  std::string port = "80";
  std::string path = "/";
};

std::optional<url_parts> parse_url(const std::string& url) {
  const std::string scheme = "http://";
  if (url.rfind(scheme, 0) != 0) {
    return std::nullopt;
  }
  url_parts u;
  auto rest = url.substr(scheme.size());
  auto slash = rest.find('/');
  auto hostport = rest.substr(0, slash);
  if (slash != std::string::npos) {
    u.path = rest.substr(slash);
  }
  if (!hostport.empty() && hostport.front() == '[') {
    auto close = hostport.find(']');
    if (close == std::string::npos) {
      return std::nullopt;
    }
    u.host = hostport.substr(1, close - 1);
    if (close + 1 < hostport.size()) {
      if (hostport[close + 1] != ':') {
        return std::nullopt;
      }
      u.port = hostport.substr(close + 2);
    }
  } else {
    auto colon = hostport.rfind(':');
    u.host = hostport.substr(0, colon);
    if (colon != std::string::npos) {
      u.port = hostport.substr(colon + 1);
    }
  }
  if (u.host.empty() || u.port.empty()) {
    return std::nullopt;
  }
  return u;
}

}  // namespace

std::variant<http_response, std::string> http_post(const std::string& url,
                                                   const std::string& content_type,
                                                   const std::string& body,
                                                   std::chrono::milliseconds timeout) {
  auto deadline = clock::now() + timeout;
  auto u = parse_url(url);
  if (!u) {
    return std::string("bad URL");
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(u->host.c_str(), u->port.c_str(), &hints, &res); rc != 0) {
    return std::string("cannot resolve ") + u->host + ": " + gai_strerror(rc);
  }
  fd_guard sock;
  std::string last_error = "no address";
  for (auto* ai = res; ai; ai = ai->ai_next) {
    fd_guard s{
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol)};
    if (s.fd < 0) {
      continue;
    }
    if (::connect(s.fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last_error = std::strerror(errno);
      continue;
    }
    if (!wait_for(s.fd, POLLOUT, deadline)) {
      last_error = "connect timed out";
      continue;
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      last_error = std::strerror(err);
      continue;
    }
    sock.fd = s.fd;
    s.fd = -1;
    break;
  }
  ::freeaddrinfo(res);
  if (sock.fd < 0) {
    return "connect failed: " + last_error;
  }
  std::string req = "POST " + u->path + " HTTP/1.1\r\nHost: " + u->host + ":" + u->port +
                    "\r\nContent-Type: " + content_type +
                    "\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\nConnection: close\r\nUser-Agent: tern\r\n\r\n" + body;
  std::size_t sent = 0;
  while (sent < req.size()) {
    if (!wait_for(sock.fd, POLLOUT, deadline)) {
      return std::string("timed out sending the request");
    }
    auto n = ::send(sock.fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return std::string("send failed: ") + std::strerror(errno);
    }
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
    }
  }
  // Read until the server closes (Connection: close), bounded in size and time.
  std::string resp;
  char buf[4096];
  constexpr std::size_t max_response = 64 * 1024;
  for (;;) {
    if (!wait_for(sock.fd, POLLIN, deadline)) {
      return std::string("timed out waiting for the response");
    }
    auto n = ::recv(sock.fd, buf, sizeof buf, 0);
    if (n == 0) {
      break;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) {
        continue;
      }
      return std::string("recv failed: ") + std::strerror(errno);
    }
    resp.append(buf, static_cast<std::size_t>(n));
    if (resp.size() > max_response) {
      return std::string("response too large");
    }
  }
  // "HTTP/1.x NNN ..."
  if (resp.size() < 12 || resp.compare(0, 5, "HTTP/") != 0) {
    return std::string("malformed response");
  }
  auto sp = resp.find(' ');
  http_response out;
  for (std::size_t i = sp + 1; i < resp.size() && i < sp + 4; ++i) {
    if (resp[i] < '0' || resp[i] > '9') {
      return std::string("malformed status line");
    }
    out.status = out.status * 10 + (resp[i] - '0');
  }
  auto hdr_end = resp.find("\r\n\r\n");
  if (hdr_end == std::string::npos) {
    return std::string("malformed response headers");
  }
  // Chunked bodies are not expected from a simple auth endpoint; Content-Length or close.
  out.body = resp.substr(hdr_end + 4);
  return out;
}

}  // namespace tern::actors::access
