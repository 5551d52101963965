// The node's disk store (RocksDB under node.data_dir): retained messages, persistent sessions
// (written ahead as they change, see docs/durability.md) and bridge queues.
//
// Thread-safe: any actor may call it. Writes of durable state go through one writer thread
// that commits everything submitted meanwhile as one batch (group commit) and then reports
// to whoever waits for it, so no scheduler thread ever waits for the disk. No CAF in here.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "actors/message.hpp"
#include "actors/router/route_table.hpp"
#include "actors/session/session.hpp"

namespace tern::actors::store {

/// `[store] durability`: what an acknowledged QoS 1/2 message survives.
enum class durability : std::uint8_t {
  none,   ///< sessions written at a graceful stop only; a crash loses them
  batch,  ///< written ahead, group commit; survives a crash of the process
  sync,   ///< as batch, and each commit is fsync'ed; survives a power loss
};

/// One change to the key-value store.
struct op {
  enum class kind : std::uint8_t { put, del, del_range };
  kind k = kind::put;
  std::string key;
  std::string value;  ///< put: the value; del_range: the end of the range (exclusive)
};

/// Where the bytes go: RocksDB in a node, a double that injects faults in tests.
class backend {
 public:
  virtual ~backend() = default;
  /// Applies `ops` atomically (all or none). Returns "" on success, else what failed.
  virtual std::string write(const std::vector<op>& ops, bool sync) = 0;
  /// After a failed write: tries to make the store writable again; true when it is.
  virtual bool recover() = 0;
  /// Calls `f` for every key that starts with `prefix`, in key order.
  virtual void scan(std::string_view prefix,
                    const std::function<void(std::string_view key, std::string_view value)>& f)
      const = 0;
  /// The value of `key`, or nothing.
  virtual std::optional<std::string> get(const std::string& key) const = 0;
  /// Bytes free on the file system that holds the store (nothing: unknown).
  virtual std::optional<std::uint64_t> free_bytes() const { return std::nullopt; }
};

/// Opens (creating if needed) RocksDB in `dir`/store. Returns an error message naming the
/// path and the problem when it cannot.
std::variant<std::unique_ptr<backend>, std::string> open_rocksdb(const std::string& dir);

/// A persistent session as kept on disk (and as handed to another node).
struct saved_session {
  std::string client_id;
  proto::mqtt::protocol_version version = proto::mqtt::protocol_version::v3_1_1;
  std::chrono::milliseconds expiry_left{0};  ///< time left, as of the moment it was read
  std::chrono::milliseconds expiry{0};       ///< the session's whole expiry interval
  std::vector<std::pair<std::string, router::sub_options>> subscriptions;
  session::session::snapshot state;
  /// The client's will while it is connected, or a delayed will pending after it left.
  message_ptr will;
  std::chrono::milliseconds will_delay{0};
  /// Handed over to another node: the move (see session_actor.cpp, Moving); 0 on disk.
  std::uint64_t move_id = 0;
};

/// A set of changes that commit together. Keys: see store.cpp.
class txn {
 public:
  /// The session's own record: version, expiry, subscriptions, will, and whether the client
  /// is connected (`connected`) or since when it is away (the expiry counts from then).
  void put_meta(const saved_session& s, bool connected);
  /// A QoS 1/2 message for the session, `seq` its place in the session's order.
  void put_pending(const std::string& client_id, std::uint64_t seq, const session::delivery& d);
  /// It was sent with `packet_id` and now waits for PUBACK (1), PUBREC (2) or PUBCOMP (3; the
  /// message itself is then deleted: the client has it).
  void put_inflight(const std::string& client_id, std::uint64_t seq, std::uint16_t packet_id,
                    std::uint8_t phase);
  /// The message is done (acknowledged, expired, dropped or moved).
  void del_pending(const std::string& client_id, std::uint64_t seq);
  /// Inbound QoS 2: the client's packet id awaits PUBREL / was released.
  void put_awaiting(const std::string& client_id, std::uint16_t id);
  void del_awaiting(const std::string& client_id, std::uint16_t id);
  /// Everything of the session.
  void del_session(const std::string& client_id);
  void put_retained(const message& m);
  /// A QoS 1/2 message for bridge `bridge` (the delivery as routed to it, before its rules
  /// map it), `seq` its place in the bridge's order; deleted once the remote has it (PUBACK,
  /// PUBREC) or the bridge drops it.
  void put_bridge(const std::string& bridge, std::uint64_t seq, const session::delivery& d);
  void del_bridge(const std::string& bridge, std::uint64_t seq);

  bool empty() const { return ops_.empty(); }
  std::size_t size() const { return ops_.size(); }
  std::vector<op>& ops() { return ops_; }

 private:
  std::vector<op> ops_;
};

/// Store counters (metrics, API).
struct store_stats {
  std::atomic<std::uint64_t> commits{0};      ///< batches written
  std::atomic<std::uint64_t> ops{0};          ///< changes written
  std::atomic<std::uint64_t> failures{0};     ///< batches that could not be written
  std::atomic<std::uint64_t> refused{0};      ///< publishes refused while the store failed
  std::atomic<std::uint64_t> commit_us_total{0};  ///< time spent in writes
};

class store {
 public:
  /// Opens the RocksDB store in `dir`.
  static std::variant<std::unique_ptr<store>, std::string> open(const std::string& dir,
                                                                durability mode,
                                                                std::uint64_t min_free = 0);
  /// Over any backend (tests). While writes fail, the writer tries again every `retry`.
  /// Writes are refused while the backend has less than `min_free` bytes free.
  store(std::unique_ptr<backend> b, durability mode,
        std::chrono::milliseconds retry = std::chrono::milliseconds(500),
        std::uint64_t min_free = 0);
  /// Commits what was submitted, then stops the writer.
  ~store();

  durability mode() const { return mode_; }
  /// Sessions are written ahead (batch or sync).
  bool is_durable() const { return mode_ != durability::none; }
  /// False while writes fail (full disk, I/O error): publishes that need the store are then
  /// refused. The writer keeps trying and turns it back on by itself.
  bool is_healthy() const { return healthy_.load(std::memory_order_acquire); }
  /// Counts the times the store came back after failing: a session whose changes may have
  /// been lost meanwhile writes itself anew when it sees this change.
  std::uint64_t recoveries() const { return recoveries_.load(std::memory_order_acquire); }
  /// The last write error ("" when none).
  std::string last_error() const;
  const store_stats& stats() const { return stats_; }
  /// A publish was refused because the store could not write (metrics).
  void count_refused() { stats_.refused.fetch_add(1, std::memory_order_relaxed); }

  /// Queues `t` for the next group commit; `done(ok)` is called on the writer thread once it
  /// is written (ok) or could not be (the changes are then dropped). Changes of one thread
  /// commit in the order submitted. `done` must not block.
  void submit(txn&& t, std::function<void(bool ok)> done = {});
  /// Waits until everything submitted before the call is committed (shutdown, tests).
  void flush();

  /// Stores the retained message of m.topic, or deletes it when the payload is empty.
  void put_retained(const message& m);
  std::vector<message_ptr> load_retained() const;

  /// Every persistent session on disk, with its expiry left; sessions whose expiry passed
  /// while the node was down are deleted instead. Messages in seq order.
  std::vector<saved_session> load_sessions();
  /// Writes a session whole, replacing what was on disk (durability none: at shutdown).
  void save_session(const saved_session& s);

  /// A bridge's messages written ahead (put_bridge), in seq order.
  std::vector<session::delivery> load_bridge(const std::string& bridge);
  /// A bridge's outgoing messages (each with its remote topic, QoS and retain flag), saved at
  /// shutdown (all of them with durability none, else those not written ahead); an empty
  /// list removes what was saved.
  void save_bridge_queue(const std::string& bridge, const std::vector<message_ptr>& msgs);
  /// Reads a bridge's saved messages and removes them from disk.
  std::vector<message_ptr> take_bridge_queue(const std::string& bridge);

  /// A session's every record in `t`: meta, pending messages (with their seq), in-flight
  /// state, ids awaiting PUBREL; after deleting what was there.
  static void write_whole(txn& t, const saved_session& s, bool connected);
  /// Pure conversions (hand-over between nodes), exposed for tests.
  static std::string encode(const saved_session& s);
  static bool decode(const std::string& bytes, saved_session& out);

 private:
  struct pending_batch {
    std::vector<op> ops;
    std::vector<std::function<void(bool)>> done;
  };
  void run();
  bool write_batch(pending_batch& b);
  std::string write_now(const std::vector<op>& ops);

  std::unique_ptr<backend> db_;
  const durability mode_;
  const std::chrono::milliseconds retry_;
  const std::uint64_t min_free_;
  store_stats stats_;
  std::atomic<bool> healthy_{true};
  std::atomic<std::uint64_t> recoveries_{0};

  mutable std::mutex mtx_;
  std::condition_variable wake_;     // the writer: work or stop
  std::condition_variable flushed_;  // flush(): a batch was written
  pending_batch next_;               // guarded by mtx_
  std::uint64_t submitted_ = 0;      // batches handed to the writer; guarded by mtx_
  std::uint64_t written_ = 0;        // batches the writer is done with; guarded by mtx_
  bool stop_ = false;                // guarded by mtx_
  std::string last_error_;           // guarded by mtx_
  std::thread writer_;
};

}  // namespace tern::actors::store
