// Back-pressure from a slow subscriber's session to the connections that publish to it.
//
// Every session that has subscribed owns one `backlog`: the number of deliveries handed to it
// and not yet on their way to its client (in its mailbox, or in its queue while its client is
// connected). The publish path adds one per delivery; the session takes them off as it
// processes them and as its queue drains. A publisher whose message takes a target's backlog
// over the high-water mark stops reading its socket and registers a `waiter`, which the
// backlog wakes once it is below the low-water mark (or the session ends).
//
// Pure: no actors, no sockets, no clock. Thread-safe where marked.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace tern::actors::flow {

/// Something waiting for a backlog to drain.
class waiter {
 public:
  virtual ~waiter() = default;
  /// The backlog it waited for is down to its low-water mark (or its session ended). Called
  /// from any thread, possibly when it no longer waits (it must then do nothing harmful).
  virtual void wake() = 0;
};

/// High- and low-water marks, in deliveries. `high` 0 disables back-pressure.
struct watermarks {
  std::int64_t high = 0;
  std::int64_t low = 0;
};

/// The marks for a configured high-water mark and queue limit: high is at most a non-zero
/// max_queued_messages, low is half of high. A publisher that takes a session over high is
/// paused before its next PUBLISH is handled, so a connected session's queue exceeds high by
/// at most one message per publisher (the session keeps those: they were acknowledged).
watermarks marks_for(std::uint32_t high_watermark, std::uint32_t max_queued);

class backlog {
 public:
  explicit backlog(std::int64_t low) : low_(low) {}
  /// Changes the low-water mark (the node's budget, configured at start).
  void set_low(std::int64_t low) { low_.store(low); }
  backlog(const backlog&) = delete;
  backlog& operator=(const backlog&) = delete;

  /// A delivery is handed to the session (thread-safe). Returns the new backlog.
  std::int64_t add() { return n_.fetch_add(1, std::memory_order_relaxed) + 1; }
  /// Adds `n` (the node's budget counts bytes). Returns the new backlog. Thread-safe.
  std::int64_t add(std::int64_t n) { return n_.fetch_add(n, std::memory_order_relaxed) + n; }
  /// Takes `n` off, waking the waiters once at the low-water mark. Thread-safe.
  void release(std::int64_t n) { change(-n); }

  /// Whether a publisher should pause for this session at backlog `n` (thread-safe).
  bool is_over(std::int64_t n, const watermarks& m) const {
    return m.high > 0 && n > m.high && !closed_.load(std::memory_order_relaxed);
  }

  /// Registers `w` to be woken once the backlog is down to the low-water mark; wakes it at
  /// once when it already is, or when the session has ended (thread-safe).
  void wait(const std::shared_ptr<waiter>& w);

  /// Session side (the owning session's thread only): `delivered` deliveries left the mailbox,
  /// and `queued` deliveries are held in the session's queue now (0 while its client is
  /// away: an offline queue is bounded by max_queued_messages and never pauses publishers).
  void update(std::uint32_t delivered, std::size_t queued);

  /// Session side: how often the backlog went down (the client took something); a session
  /// over its high-water mark whose count stands still for flow.max_pause is stalled.
  std::uint32_t drains() const { return drains_; }
  /// Session side: the client acknowledged something (progress, even with nothing queued).
  void progress() { ++drains_; }
  /// Session side: whether a stall check is scheduled (set and cleared by the session).
  bool stall_check = false;

  /// The session ended: wakes every waiter, and never asks a publisher to pause again (its
  /// mailbox is gone with it). Idempotent, thread-safe.
  void close();

  /// Write-ahead: while the session is persistent and the store durable, the publish path
  /// writes each QoS 1/2 delivery to the store under the next seq before sending it (and
  /// acknowledges the publish once that is written). Set by the session only; a bridge sets
  /// it with `bridge` (its name as `client_id`): its records are a bridge's queue.
  void set_durable(const std::string& client_id, bool on, bool bridge = false) {
    if (on && client_id_.empty()) {
      client_id_ = client_id;  // before the flag: readers see it once they see the flag
      bridge_ = bridge;
    }
    durable_.store(on, std::memory_order_release);
  }
  bool is_durable() const { return durable_.load(std::memory_order_acquire); }
  /// Valid once is_durable() was true.
  const std::string& client_id() const { return client_id_; }
  bool is_bridge() const { return bridge_; }
  /// The next seq of the session's order (thread-safe; never 0).
  std::uint64_t next_seq() { return seq_.fetch_add(1, std::memory_order_relaxed) + 1; }
  /// Seqs continue after `last` (a restored session).
  void start_after(std::uint64_t last) {
    auto cur = seq_.load();
    while (cur < last && !seq_.compare_exchange_weak(cur, last)) {
    }
  }

  std::int64_t size() const { return n_.load(std::memory_order_relaxed); }
  /// Down to the low-water mark, or the session ended: nobody needs to wait for it.
  bool is_drained() const { return n_.load() <= low_.load() || closed_.load(); }
  bool is_closed() const { return closed_.load(); }
  /// Whether a publisher waits for this backlog to drain (thread-safe).
  bool has_waiters() const { return has_waiters_.load(); }
  /// Registered waiters (tests, diagnostics).
  std::size_t waiter_count() const;

 private:
  void change(std::int64_t delta);
  void wake_all();

  std::atomic<std::int64_t> n_{0};
  std::atomic<bool> has_waiters_{false};
  std::atomic<bool> closed_{false};
  std::atomic<bool> durable_{false};
  std::atomic<std::uint64_t> seq_{0};
  std::string client_id_;  // set once, before durable_ is first true
  bool bridge_ = false;    // likewise
  std::atomic<std::int64_t> low_;
  std::int64_t reported_queued_ = 0;  // the session's thread only
  std::uint32_t drains_ = 0;          // likewise
  mutable std::mutex mtx_;
  std::vector<std::weak_ptr<waiter>> waiters_;  // guarded by mtx_
};

using backlog_ptr = std::shared_ptr<backlog>;

/// The node's buffer budget (flow.max_buffered_mb): bytes of deliveries held for connected
/// sessions, as a backlog that publishers pause on like a session's. One per process.
const backlog_ptr& budget();
/// Its marks (high 0: no budget).
watermarks budget_marks();
/// Sets the budget to `max_bytes` (0: off); publishers resume at 7/8 of it.
void set_budget(std::int64_t max_bytes);

/// What one delivery counts against the budget while it exists: moved with the delivery,
/// released when it is destroyed or release() is called. A copy counts nothing.
class charge {
 public:
  charge() = default;
  /// Counts `bytes` (nothing while there is no budget).
  explicit charge(std::uint32_t bytes);
  charge(charge&& o) noexcept : n_(o.n_) { o.n_ = 0; }
  charge& operator=(charge&& o) noexcept {
    if (this != &o) {
      release();
      n_ = o.n_;
      o.n_ = 0;
    }
    return *this;
  }
  charge(const charge&) noexcept {}
  charge& operator=(const charge&) noexcept {
    release();
    return *this;
  }
  ~charge() { release(); }
  void release() {
    if (n_ != 0) {
      budget()->release(n_);
      n_ = 0;
    }
  }
  std::uint32_t bytes() const { return n_; }

 private:
  std::uint32_t n_ = 0;
};

/// A paused publisher. It resumes only once every backlog it was paused for has drained: with
/// many targets (fan-out) some session is always draining, and resuming on the first would let
/// the slowest ones grow without bound. Create it with std::make_shared.
class gate : public waiter, public std::enable_shared_from_this<gate> {
 public:
  /// Pauses the publisher (if it is not paused already) until every backlog in `over` (and
  /// every one it was paused for before, while the pause lasts) has drained. Thread-safe.
  void pause_for(const std::vector<backlog_ptr>& over);
  void wake() override;
  /// Backlogs the current pause still waits for (tests, diagnostics).
  std::size_t waiting_count() const;
  /// Paused: the publisher handles no PUBLISH until it is let go (thread-safe).
  bool is_paused() const { return paused_.load(std::memory_order_acquire); }

 protected:
  /// Stops the publisher; returns false when it was stopped already.
  virtual bool stop() = 0;
  /// Lets the publisher go on.
  virtual void go() = 0;

 private:
  /// Waits for the first backlog not yet drained, or lets the publisher go when none is left.
  void check();

  mutable std::mutex mtx_;
  std::vector<std::weak_ptr<backlog>> waiting_;  // guarded by mtx_
  std::atomic<bool> paused_{false};              // changed under mtx_
};

/// The session's end of its backlog: created on first use (a session that never subscribes
/// has none), closed when the session's state is destroyed, whichever way the session ends.
class backlog_owner {
 public:
  backlog_owner() = default;
  backlog_owner(const backlog_owner&) = delete;
  backlog_owner& operator=(const backlog_owner&) = delete;
  ~backlog_owner() {
    if (b_) {
      b_->close();
    }
  }

  /// The backlog, created with low-water mark `low` if there is none yet.
  const backlog_ptr& get(std::int64_t low) {
    if (!b_) {
      b_ = std::make_shared<backlog>(low);
    }
    return b_;
  }
  /// The backlog, or null when the session never subscribed.
  backlog* peek() const { return b_.get(); }
  /// Session side: see backlog::update. No-op without a backlog.
  void update(std::uint32_t delivered, std::size_t queued) {
    if (b_) {
      b_->update(delivered, queued);
    }
  }

 private:
  backlog_ptr b_;
};

}  // namespace tern::actors::flow
