// Audit-log hook: a mutex-protected append-only file.
#include "actors/hooks/audit_log.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace tern::actors::hooks {

class audit_log {
 public:
  explicit audit_log(std::FILE* f) : f_(f) {}
  ~audit_log() { std::fclose(f_); }
  audit_log(const audit_log&) = delete;
  audit_log& operator=(const audit_log&) = delete;

  void write(const std::string& line) {
    std::lock_guard lock{mtx_};
    std::fwrite(line.data(), 1, line.size(), f_);
    std::fputc('\n', f_);
    std::fflush(f_);
  }

 private:
  std::mutex mtx_;
  std::FILE* f_;
};

namespace {

void field(std::string& out, const char* key, std::string_view v) {
  if (v.empty()) {
    return;
  }
  out += ' ';
  out += key;
  out += '=';
  for (char c : v) {
    // One event per line: control characters from clients are escaped.
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
}

}  // namespace

std::string format_audit_line(point p, const args& a, const acc* x) {
  auto now = std::chrono::system_clock::now();
  auto t = std::chrono::system_clock::to_time_t(now);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char ts[96];
  std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  std::string out = ts;
  out += ' ';
  out += name(p);
  field(out, "client", a.client_id);
  field(out, "user", a.username);
  field(out, "peer", a.peer);
  field(out, "topic", a.topic);
  if (p == point::client_subscribe || p == point::session_subscribed ||
      p == point::message_publish || p == point::message_delivered || p == point::message_acked ||
      p == point::message_dropped) {
    out += " qos=" + std::to_string(a.qos);
  }
  if (p == point::client_connected) {
    out += " code=" + std::to_string(a.code);
  }
  if (p == point::client_check_acl) {
    out += a.is_subscribe ? " access=subscribe" : " access=publish";
  }
  field(out, "reason", a.reason);
  if (x && (p == point::client_authenticate || p == point::client_check_acl)) {
    out += x->v == verdict::allow  ? " verdict=allow"
           : x->v == verdict::deny ? " verdict=deny"
                                   : " verdict=ignore";
  }
  return out;
}

std::string install_audit_log(registry& r, const std::string& path,
                              const std::vector<point>& points) {
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (!f) {
    return path + ": cannot open the audit log for appending";
  }
  auto log = std::make_shared<audit_log>(f);
  for (auto p : points) {
    r.add(p, "audit_log", -1000, [log, p](const args& a, acc& x) {
      log->write(format_audit_line(p, a, &x));
      return result::ok;
    });
  }
  return {};
}

}  // namespace tern::actors::hooks
