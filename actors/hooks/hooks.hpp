// Hook registry: named hook points where callbacks observe or change what the broker does.
//
// Writing a hook
// --------------
//   hooks::registry& r = ...;                        // the node's registry (broker context)
//   r.add(hooks::point::client_connected, "my-audit", /*priority=*/10,
//         [](const hooks::args& a, hooks::acc&) {
//           log(a.client_id, a.code);                // observe
//           return hooks::result::ok;                // let the next callback run
//         });
//
// - Callbacks of one point run in priority order, highest first; equal priorities keep
//   registration order. A name is unique per point (`add` returns false for a duplicate).
// - `run` (emqttd's foreach) calls every callback; the accumulator is discarded.
// - `run_fold` (emqttd's foldl) threads one `acc` through the callbacks, which may change it
//   (e.g. set `acc.verdict` on client.authenticate / client.check_acl) and return the folded
//   value. Either form stops early when a callback returns `result::stop`.
// - Callbacks run synchronously on the calling thread (an actor or an I/O thread): they must
//   be thread-safe, must not block, and must not throw (an exception is caught, logged by the
//   caller's handler and ends that client's connection only).
// - `has(p)` is one relaxed atomic load: call sites on the publish path check it first, so a
//   point without callbacks costs nothing more.
// - `args` holds views into the caller's data, valid only during the call.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tern::actors::hooks {

enum class point : std::uint8_t {
  client_connect,       ///< CONNECT received, before authentication
  client_connected,     ///< CONNACK decided (code 0 = accepted; also run for refusals)
  client_disconnected,  ///< connection ended (reason)
  client_authenticate,  ///< fold: verdict for the credentials
  client_check_acl,     ///< fold: verdict for publish/subscribe to `topic`
  client_subscribe,     ///< SUBSCRIBE filter (one call per filter), before ACL results apply
  client_unsubscribe,   ///< UNSUBSCRIBE filter
  session_created,      ///< a new session was created for client_id
  session_subscribed,   ///< a filter was added to a session (qos = granted)
  session_terminated,   ///< a session ended (reason)
  message_publish,      ///< a client published (topic, qos), after ACL
  message_delivered,    ///< a message was written to a subscriber
  message_acked,        ///< a subscriber acknowledged a QoS 1/2 message
  message_dropped,      ///< a message was dropped (ACL, queue full, no room)
};
inline constexpr std::size_t point_count = 14;

const char* name(point p);
std::optional<point> point_from_name(std::string_view name);

enum class result : std::uint8_t { ok, stop };

/// Verdict of a fold over client.authenticate or client.check_acl.
enum class verdict : std::uint8_t { ignore, allow, deny };

/// What the hook point reports; fields not meaningful for a point are empty / zero.
struct args {
  std::string_view client_id;
  std::string_view username;
  std::string_view peer;
  std::string_view topic;   ///< publish topic or subscription filter
  std::string_view reason;  ///< disconnect / termination / drop reason
  std::uint8_t qos = 0;
  std::uint8_t code = 0;      ///< CONNACK code (client.connected)
  bool is_subscribe = false;  ///< client.check_acl: subscribe (true) or publish
  std::string_view password;  ///< client.authenticate only; never log it
  bool has_username = false;  ///< distinguishes "no username" from an empty one
  bool has_password = false;
  std::string_view cert_cn;   ///< verified TLS client certificate: subject CN (or empty)
  std::string_view cert_san;  ///< and its first subject alternative name (or empty)
};

/// The value folded through run_fold.
struct acc {
  verdict v = verdict::ignore;
  std::uint8_t reason_code = 0;  ///< optional detail set by the deciding callback
  std::string detail;            ///< why, for the log (never a password)
};

using callback = std::function<result(const args&, acc&)>;

class registry {
 public:
  registry() = default;
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  /// Registers `cb` on `p`. False when `name` is already registered on `p`.
  bool add(point p, std::string name, int priority, callback cb);
  /// Unregisters; false when there was no such callback.
  bool remove(point p, const std::string& name);

  /// True when at least one callback is registered on `p` (cheap; for hot paths).
  bool has(point p) const noexcept {
    return (mask_.load(std::memory_order_acquire) >> static_cast<unsigned>(p)) & 1u;
  }
  /// foreach: runs every callback (until one returns stop).
  void run(point p, const args& a) const;
  /// foldl: threads `initial` through the callbacks and returns the result.
  acc run_fold(point p, const args& a, acc initial = {}) const;

  std::vector<std::string> names(point p) const;

 private:
  struct entry {
    std::string name;
    int priority;
    callback cb;
  };
  using list = std::vector<entry>;

  std::shared_ptr<const list> snapshot(point p) const;

  mutable std::mutex mtx_;  // writers, and readers taking a snapshot
  std::array<std::shared_ptr<const list>, point_count> lists_;
  std::atomic<std::uint32_t> mask_{0};
};

/// Call-site helper: runs `p` only when a callback is registered; `fill(args&)` is called
/// only then, so building the arguments costs nothing otherwise.
template <class Fill>
void fire(const registry* r, point p, Fill&& fill) {
  if (r != nullptr && r->has(p)) {
    args a;
    fill(a);
    r->run(p, a);
  }
}

}  // namespace tern::actors::hooks
