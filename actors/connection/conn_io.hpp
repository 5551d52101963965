// The socket side of one client connection, run by an Asio io_context thread.
//
// Reads only when the socket is readable, into a per-thread buffer (no read buffer is held
// while a client is idle), decodes packets and hands each to the owning connection actor.
// Writes are thread-safe: any actor may call send(); bytes are batched into one write.
// Stops reading while the owner has too many unprocessed packets (back-pressure).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <caf/actor.hpp>

#include "proto/mqtt/codec.hpp"

namespace tern::actors::broker {
struct counters;
}

namespace tern::actors::connection {

class conn_io : public std::enable_shared_from_this<conn_io> {
 public:
  using clock = std::chrono::steady_clock;

  conn_io(boost::asio::ip::tcp::socket sock, std::uint32_t max_packet_size,
          std::uint32_t max_send_buffer, std::uint64_t id);

  /// Starts reading; packets and the final close go to `owner`.
  void start(caf::actor owner, clock::duration connect_timeout);

  /// Queues bytes for writing. Returns false, and closes the connection, when the client has
  /// let more than twice max_send_buffer pile up unread.
  bool send(std::string bytes);
  /// Whether the unsent backlog is over max_send_buffer (QoS 0 may then be dropped).
  bool is_congested() const { return backlog_.load(std::memory_order_relaxed) > max_send_; }

  /// Closes the socket after pending writes are flushed (or at once when `flush` is false).
  /// The owner then receives closed_atom exactly once.
  void close(std::string reason, bool flush = true);

  /// The owner processed `n` packets (credit for back-pressure).
  void consumed(std::uint32_t n);

  /// Keepalive from CONNECT: 0 disables; otherwise the client must send something every
  /// interval * backoff.
  void set_keepalive(std::chrono::milliseconds allowed_silence);
  /// Called by the io thread's sweeper; closes the connection when its deadline passed.
  void check_deadline(clock::time_point now);

  void set_version(proto::mqtt::protocol_version v);
  /// Node counters for bytes and packets in/out; set before start(), may stay null.
  void set_counters(broker::counters* c) { counters_ = c; }

  std::uint64_t id() const { return id_; }
  const std::string& peer() const { return peer_; }
  bool is_closed() const { return closed_.load(); }

 private:
  void wait_readable();
  void on_readable();
  void flush();
  void do_close(const std::string& reason);

  boost::asio::ip::tcp::socket sock_;
  caf::actor owner_;
  proto::mqtt::decoder dec_;
  const std::uint64_t id_;
  const std::uint32_t max_send_;
  std::string peer_;

  std::mutex out_mtx_;
  std::string out_;      // guarded by out_mtx_
  std::string writing_;  // owned by the io thread while a write is in progress
  bool write_pending_ = false;  // guarded by out_mtx_
  bool close_after_flush_ = false;
  std::string close_reason_;
  std::atomic<std::size_t> backlog_{0};

  std::atomic<std::int32_t> unconsumed_{0};
  std::atomic<bool> read_paused_{false};
  std::atomic<bool> closed_{false};
  bool notified_ = false;

  std::atomic<std::int64_t> deadline_ns_{0};  // 0: none
  std::atomic<std::int64_t> silence_ns_{0};   // keepalive allowance, 0: none
  broker::counters* counters_ = nullptr;
};

}  // namespace tern::actors::connection
