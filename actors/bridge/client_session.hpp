// The MQTT client side of a bridge: CONNECT, subscriptions, the outgoing queue and inflight
// window with QoS 1/2 acknowledgements and resends, inbound QoS 1/2, keepalive.
//
// Pure: no sockets, no actors. The shell feeds it socket events, packets and local messages
// with the current time, and carries out the returned `step`: first publish `deliver` on
// this broker, then write `send`, then close the socket when `close` is set.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "actors/bridge/rules.hpp"
#include "actors/message.hpp"
#include "proto/mqtt/packet.hpp"

namespace tern::actors::bridge {

using clock = std::chrono::steady_clock;

/// A local message on its way to the remote broker (topic already mapped).
struct outgoing {
  message_ptr msg;
  std::string topic;
  proto::mqtt::qos q = proto::mqtt::qos::at_most_once;
  bool retain = false;
  /// Its place in the bridge's order in the store (0: not kept on disk).
  std::uint64_t seq = 0;
};

/// The messages waiting to be sent, bounded: when full, the oldest QoS 0 message is dropped
/// first; without one a new QoS 0 message is dropped; else the oldest message goes.
class outbox {
 public:
  explicit outbox(std::size_t max_queued) : max_(max_queued == 0 ? 1 : max_queued) {}

  /// Queues `m`; returns the number of messages dropped to make room (0 or 1), and appends
  /// the seq of a dropped message kept on disk to `released` when given.
  std::size_t push(outgoing m, std::vector<std::uint64_t>* released = nullptr);
  std::optional<outgoing> pop();
  std::size_t size() const { return q_.size(); }
  bool empty() const { return q_.empty(); }
  const outgoing& front() const { return q_.front(); }
  const std::deque<outgoing>& items() const { return q_; }

 private:
  std::size_t max_;
  std::deque<outgoing> q_;
};

struct session_options {
  std::string client_id;
  std::string username;  ///< "" = not sent
  std::string password;  ///< "" = not sent
  bool clean_session = true;
  std::chrono::milliseconds keepalive{60000};
  proto::mqtt::protocol_version version = proto::mqtt::protocol_version::v3_1_1;
  std::size_t max_queued = 10000;
  std::size_t max_inflight = 32;
  /// How long the remote may take to answer CONNECT.
  std::chrono::milliseconds connack_timeout{10000};
};

session_options options_from(const config::bridge_config& c, const std::string& node_name);

/// A message from the remote broker to publish on this broker (topic already mapped).
struct inbound {
  std::string topic;
  std::string payload;
  proto::mqtt::qos q = proto::mqtt::qos::at_most_once;
  bool retain = false;
  proto::mqtt::properties props;
};

struct step {
  std::vector<inbound> deliver;           ///< publish locally first ...
  std::vector<proto::mqtt::packet> send;  ///< ... then write these
  std::optional<std::string> close;       ///< then close the connection, for this reason
  bool is_now_connected = false;          ///< the CONNACK accepted the connection
  std::optional<std::uint8_t> refused;    ///< the CONNACK's refusal code
  std::vector<std::string> warnings;      ///< for the log (refused subscriptions, ...)
};

/// Counters of one bridge's traffic.
struct session_counters {
  std::uint64_t forwarded_out = 0;  ///< acknowledged (QoS 1/2) or written (QoS 0) upstream
  std::uint64_t forwarded_in = 0;   ///< published locally
  std::uint64_t dropped = 0;        ///< queue overflow (and messages no rule maps)
};

class client_session {
 public:
  client_session(session_options opts, std::vector<rule> rules);

  /// The socket connected: returns the CONNECT.
  step on_open(clock::time_point now);
  /// A packet from the remote broker.
  step on_packet(const proto::mqtt::packet& p, clock::time_point now);
  /// The socket closed (or failed). Unacknowledged messages stay, to be sent again (DUP)
  /// after the next CONNACK; the queue is kept.
  void on_close();
  /// A local message for the remote broker (already mapped by the rules).
  step enqueue(outgoing m, clock::time_point now);
  /// Called periodically (about once a second): keepalive and CONNACK timeout.
  step on_tick(clock::time_point now);

  /// What would be lost if the bridge stopped now, in sending order: unacknowledged
  /// messages (except QoS 2 ones the remote already has: PUBREC received), then the queue.
  std::vector<outgoing> pending() const;
  /// Puts messages saved by pending() (at the last shutdown) in front of the queue; they are
  /// sent as new messages after the next CONNACK.
  void restore(std::vector<outgoing> saved);
  /// The seqs of messages kept on disk that are no longer needed since the last call: the
  /// remote has them (PUBACK; PUBREC for QoS 2), they went out as QoS 0 (the remote's
  /// Maximum QoS), or the full queue dropped them.
  std::vector<std::uint64_t> take_released() { return std::exchange(released_, {}); }

  bool is_connected() const { return connected_; }
  std::size_t queued() const { return queue_.size(); }
  std::size_t inflight() const { return inflight_.size(); }
  const session_counters& counters() const { return counters_; }
  const session_options& options() const { return opts_; }

 private:
  enum class wait { puback, pubrec, pubcomp };
  struct in_flight {
    std::uint16_t packet_id = 0;
    outgoing m;
    wait state = wait::puback;
  };

  step on_connack(const proto::mqtt::connack& c, clock::time_point now);
  void on_publish(const proto::mqtt::publish& p, step& s);
  void on_ack(std::uint16_t id, wait expected, step& s);
  /// A PUBREC with an error code: the remote will not take the message.
  void refused(std::uint16_t id, step& s);
  void fill_window(step& s);
  void send_publish(outgoing m, bool dup, std::uint16_t id, step& s);
  std::uint16_t next_packet_id();
  std::size_t window() const;

  session_options opts_;
  std::vector<rule> rules_;
  outbox queue_;
  std::deque<in_flight> inflight_;        ///< in the order sent
  std::set<std::uint16_t> awaiting_rel_;  ///< inbound QoS 2 ids delivered, PUBREL pending
  session_counters counters_;
  std::vector<std::uint64_t> released_;
  bool open_ = false;
  bool connected_ = false;
  std::uint16_t last_id_ = 0;
  std::uint16_t subscribe_id_ = 0;
  std::optional<std::uint16_t> remote_receive_max_;
  proto::mqtt::qos remote_max_qos_ = proto::mqtt::qos::exactly_once;
  clock::time_point opened_at_{};
  clock::time_point last_received_{};
  clock::time_point last_ping_{};
};

}  // namespace tern::actors::bridge
