// The socket side of one client connection, run by an Asio io_context thread.
//
// The bytes travel over a listener::transport (TCP, TLS, WebSocket, WebSocket over TLS).
// Over plain TCP it reads only when the socket is readable, into a per-thread buffer (no
// read buffer is held while a client is idle). It decodes packets and hands each to the
// owning connection actor. Writes are thread-safe: any actor may call send(); bytes are
// batched into one write. Reading pauses while the owner has too many unprocessed packets
// (back-pressure) and while a byte or PUBLISH rate limit of the listener is exceeded.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <caf/actor.hpp>

#include "actors/listener/peer_address.hpp"
#include "actors/listener/transport.hpp"
#include "proto/mqtt/codec.hpp"

namespace tern::actors::listener {
struct listener_state;
}
namespace tern::actors::broker {
struct counters;
}

namespace tern::actors::connection {

/// A lock of one byte for conn_io's outgoing buffer, whose critical sections are a swap or
/// an append: a std::mutex is 40 B in every connection. A waiter yields its core.
class spin_lock {
 public:
  void lock() noexcept {
    while (flag_.test_and_set(std::memory_order_acquire)) {
      std::this_thread::yield();
    }
  }
  void unlock() noexcept { flag_.clear(std::memory_order_release); }

 private:
  std::atomic_flag flag_ = ATOMIC_FLAG_INIT;
};

class conn_io : public std::enable_shared_from_this<conn_io> {
 public:
  using clock = std::chrono::steady_clock;

  /// `listener` may be null (no limits, no counters).
  conn_io(std::unique_ptr<listener::transport> t, std::uint32_t max_packet_size,
          std::uint32_t max_send_buffer, std::uint64_t id,
          std::shared_ptr<listener::listener_state> listener = nullptr);
  ~conn_io();

  /// Starts the connection (PROXY header, transport handshake, then reading); packets and
  /// the final close go to `owner`. The whole start must finish within connect_timeout, and
  /// CONNECT must arrive within it.
  void start(caf::actor owner, clock::duration connect_timeout);

  /// Queues bytes for writing. Returns false, and closes the connection, when the client has
  /// let more than twice max_send_buffer pile up unread.
  bool send(std::string bytes);
  /// Sends the CONNACK. For an MQTT 5 client (`allow_disconnect`) DISCONNECT is allowed from
  /// the same moment, under the write lock: a bad packet the client sends as soon as it reads
  /// the CONNACK is answered with a reason code [MQTT-4.13.1-1], and nothing precedes the
  /// CONNACK [MQTT-3.2.0-1].
  bool send_connack(std::string bytes, bool allow_disconnect);
  /// Sends `bytes` (a DISCONNECT, a refusing CONNACK; may be empty) as the last packet and
  /// closes as close(reason) does, in one step under the write lock: nothing sent by another
  /// thread meanwhile follows them on the wire [MQTT-3.14.4-1].
  void send_last(std::string bytes, std::string reason);
  /// Whether the unsent backlog is over max_send_buffer (QoS 0 may then be dropped).
  bool is_congested() const { return backlog_.load(std::memory_order_relaxed) > max_send_; }

  /// Closes the socket after pending writes are flushed (or at once when `flush` is false).
  /// The owner then receives closed_atom exactly once. A flushed close lingers (see
  /// linger_close): the client reads what was written last even while it is still sending.
  void close(std::string reason, bool flush = true);

  /// Node shutdown: writes `v5_disconnect` to an MQTT 5 client that may be sent one, then
  /// closes once it is written (the node closes what is still open after a grace period).
  /// Larger than the client's Maximum Packet Size, it goes as its bare reason code.
  void close_for_shutdown(const std::string& v5_disconnect);
  /// The client's Maximum Packet Size (v5; 0: none), for what conn_io writes by itself.
  void set_max_packet_out(std::uint32_t n) { max_packet_out_.store(n, std::memory_order_relaxed); }

  /// The owner processed `n` packets (credit for back-pressure).
  void consumed(std::uint32_t n);

  /// Back-pressure from slow subscribers (flow::backlog): holds back what the client
  /// publishes until resume_reading() or until `max` has passed (found by check_deadline).
  /// Acknowledgements of its deliveries (PUBACK, PUBREC, PUBREL, PUBCOMP) and PINGREQ still
  /// reach the owner: they may be what drains the backlog this client waits for. Every
  /// other packet waits, in order, behind the first one held; once a few are held (see
  /// held_max_*) the socket is no longer read. Thread-safe; pausing a paused reader does
  /// nothing and returns false. Packets handed to the owner before the pause stay handed.
  bool pause_reading(std::chrono::milliseconds max);
  void resume_reading();

  /// Keepalive from CONNECT: 0 disables; otherwise the client must send something every
  /// interval * backoff.
  void set_keepalive(std::chrono::milliseconds allowed_silence);
  /// Called by the io thread's sweeper; closes the connection when its deadline passed.
  void check_deadline(clock::time_point now);

  void set_version(proto::mqtt::protocol_version v);
  /// Node counters for bytes and packets in/out; set before start(), may stay null.
  void set_counters(broker::counters* c) { counters_ = c; }

  std::uint64_t id() const { return id_; }
  /// "ip:port" of the client (from the PROXY header when the listener expects one).
  std::string peer() const { return peer_.to_string(); }
  bool is_closed() const { return closed_.load(); }
  /// "tcp", "ssl", "ws" or "wss".
  const char* transport_kind() const { return transport_->kind(); }

  /// The verified TLS client certificate (empty fields without one). Set before the first
  /// packet reaches the owner.
  const listener::peer_cert& client_cert() const;
  /// The certificate's CN or SAN when the listener maps it to the username / client id
  /// (peer_cert_as_username, peer_cert_as_clientid); empty otherwise.
  std::string cert_username() const;
  std::string cert_clientid() const;

  // Called by the transport, on the io thread.
  void on_handshake(const std::string& error);
  /// Returns whether the transport may keep reading in this round.
  bool on_input(std::string_view bytes);
  void after_input();
  void on_read_error(const std::string& reason);
  void on_written(const boost::system::error_code& ec, std::size_t n);

 private:
  struct limits;

  /// `last`: the close reason when these are the last bytes (send_last).
  bool send_impl(std::string bytes, bool allow_disconnect, std::string* last);
  void read_proxy_header();
  void start_transport();
  void wait_readable();
  /// Hands the decoder's complete packets to the owner; false when it stopped early
  /// (closed, or the PUBLISH rate was reached).
  bool decode_buffered(clock::time_point now);
  /// Hands `p` to the owner.
  void deliver(proto::mqtt::packet&& p);
  /// While paused by flow: whether `p` waits in held_ rather than going to the owner.
  bool holds(const proto::mqtt::packet& p) const;
  bool is_held_full() const;
  /// After a flow pause: hands the held packets to the owner, and reads again if it stopped
  /// because held_ was full.
  void release_held();
  void pause_for(clock::duration d);
  void flush();
  /// send() on a quiet plain TCP connection: writes on the calling thread (no hop to the io
  /// thread). Returns the bytes written; called with out_mtx_ held and no write pending.
  std::size_t write_directly(const std::string& bytes);
  /// Ends the connection (once) and tells the owner. With `linger` the socket is not closed
  /// at once: see linger_close().
  void do_close(const std::string& reason, bool linger = false);
  /// A server-initiated close after the last packet (DISCONNECT, refusing CONNACK) is
  /// written: shuts the write side, then reads and discards input until the client closes,
  /// for at most linger_max, and closes. Closing with unread input would make the kernel
  /// send RST, and a client still sending would see a reset instead of that last packet.
  void linger_close();
  /// A close that waits for a flush happens within flush_max even if the client never reads.
  void arm_flush_deadline();
  void drain_lingering(std::shared_ptr<boost::asio::steady_timer> timer);
  std::string cert_field(const std::string& which) const;

  std::unique_ptr<listener::transport> transport_;
  std::shared_ptr<listener::listener_state> listener_;
  caf::actor owner_;
  proto::mqtt::decoder dec_;
  const std::uint64_t id_;
  const std::uint32_t max_send_;
  listener::peer_address peer_;  // as bytes: the text often outgrows std::string's SSO
  std::unique_ptr<listener::peer_cert> cert_;  // only after a TLS client certificate
  std::unique_ptr<limits> limits_;             // only when the listener has rate limits
  std::unique_ptr<std::string> proxy_buf_;     // only while a PROXY header is being read
  struct held_packets;
  std::unique_ptr<held_packets> held_;  // io thread; only while a flow pause holds packets

  std::string out_;             // guarded by out_mtx_
  std::string writing_;         // owned by the io thread while a write is in progress
  spin_lock out_mtx_;
  bool write_pending_ = false;  // guarded by out_mtx_
  bool close_after_flush_ = false;
  bool can_write_directly_ = false;  // plain TCP: send() may write on the caller's thread
  bool linger_ = false;  // guarded by out_mtx_: the close was asked with flush (see close())
  std::uint32_t last_direct_us_ = 0;  // guarded by out_mtx_: clock of the last direct write
  std::unique_ptr<std::string> close_reason_;  // only once a close waits for a flush
  // A close waiting for a flush: when it gives up (arm_flush_deadline). Io thread only.
  std::unique_ptr<boost::asio::steady_timer> flush_timer_;
  std::atomic<std::size_t> backlog_{0};

  std::atomic<std::int32_t> unconsumed_{0};
  std::atomic<bool> read_paused_{false};
  std::atomic<bool> closed_{false};
  std::atomic<bool> may_disconnect_{false};
  std::atomic<std::uint32_t> max_packet_out_{0};
  bool stop_reading_ = false;  // io thread: input was refused, the close is under way
  bool stopped_for_held_ = false;  // io thread: not reading until the held packets are released
  bool notified_ = false;

  std::atomic<std::int64_t> deadline_ns_{0};  // 0: none
  std::atomic<std::int64_t> silence_ns_{0};   // keepalive allowance, 0: none
  std::atomic<std::int64_t> flow_until_ns_{0};  // paused by pause_reading until; 0: not
  broker::counters* counters_ = nullptr;
};

}  // namespace tern::actors::connection
