// MQTT session state of one client: outbound inflight window, offline/overflow queue, packet
// ids, retry, and the inbound QoS 2 awaiting-PUBREL table. Pure: no I/O, no actors, no clock
// of its own (callers pass `now`).
//
// The session actor owns one `session`, feeds it events and writes the returned packets.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>
#include <variant>
#include <vector>

#include "actors/message.hpp"
#include "actors/session/backlog.hpp"

namespace tern::actors::session {

using clock = std::chrono::steady_clock;
using proto::mqtt::qos;

struct settings {
  std::uint32_t max_inflight = 32;
  std::uint32_t max_queued = 1000;
  bool queue_qos0 = true;
  std::chrono::milliseconds retry_interval{20000};  ///< 0: never resend while connected
  std::uint32_t max_awaiting_rel = 100;
  std::chrono::milliseconds await_rel_timeout{20000};
};

/// One message on its way to this session's client.
struct delivery {
  delivery() = default;
  delivery(message_ptr m, qos q_, bool retain_ = false, std::vector<std::uint32_t> ids = {},
           std::shared_ptr<const std::string> share_ = {})
      : msg(std::move(m)),
        q(q_),
        retain(retain_),
        subscription_ids(std::move(ids)),
        share(std::move(share_)) {}

  message_ptr msg;
  qos q = qos::at_most_once;  ///< min(publish QoS, granted QoS)
  bool retain = false;        ///< retain flag as sent to this subscriber
  std::vector<std::uint32_t> subscription_ids;
  /// Set when the message came through a shared subscription ("$share/g/f" / "$queue/f"):
  /// such a message goes back to the group when this session leaves it before acknowledging.
  std::shared_ptr<const std::string> share;
  /// Its place in a persistent session's order, under which the store keeps it (0: not
  /// kept on disk: QoS 0, or a session without write-ahead).
  std::uint64_t seq = 0;
  /// Its part of the node's buffer budget while it waits for a connected client (released
  /// when it is done with, or when the client goes away: offline queues have their own bound).
  flow::charge charge;
};

/// What a call changed about messages kept on disk (those with a seq), for the store.
struct change {
  enum class kind : std::uint8_t {
    sent,     ///< sent or resent with `packet_id`, now waiting in `phase` (1..3)
    removed,  ///< done: acknowledged, expired, dropped or taken away
  };
  kind k = kind::sent;
  std::uint64_t seq = 0;
  std::uint16_t packet_id = 0;
  std::uint8_t phase = 0;  ///< 1 wait PUBACK, 2 wait PUBREC, 3 wait PUBCOMP
};
using change_list = std::vector<change>;

/// A PUBLISH to write. QoS 0 deliveries have packet_id 0.
struct out_publish {
  std::uint16_t packet_id = 0;
  bool dup = false;
  delivery d;
};
/// A PUBREL to write (QoS 2, after the client's PUBREC).
struct out_pubrel {
  std::uint16_t packet_id = 0;
};
using outgoing = std::variant<out_publish, out_pubrel>;
using out_list = std::vector<outgoing>;

/// What happened to a delivered message (for metrics).
enum class deliver_result : std::uint8_t {
  sent,           ///< written now (QoS 0, or QoS 1/2 with room in the window)
  queued,         ///< kept for later (offline, or window full)
  dropped,        ///< not kept: QoS 0 while offline without queue_qos0, or queue full of others
  queued_evicted, ///< queued, and an older message was dropped to make room
  expired,        ///< not kept: its Message Expiry Interval had passed
};

/// Result of a PUBLISH QoS 2 from the client (inbound), keyed by its packet id.
enum class rel_result : std::uint8_t {
  fresh,      ///< first time: route the message, answer PUBREC
  duplicate,  ///< already routed: answer PUBREC again, do not route
  full,       ///< awaiting-PUBREL table is full: refuse
};

class session {
 public:
  explicit session(const settings& s);

  /// The client (re)connected: resends the inflight window in order (PUBLISH with DUP, or
  /// PUBREL), then fills the window from the queue. [MQTT-4.4.0-1] A window narrower than
  /// what is inflight (a smaller Receive Maximum this time) resends the oldest that fit and
  /// the rest, in order, as acknowledgements free room [MQTT-3.3.4-9].
  void resume(clock::time_point now, out_list& out);

  /// The client's Receive Maximum: at most this many QoS 1/2 messages unacknowledged at once
  /// (never more than settings::max_inflight). 0 or 65535: no limit from the client.
  void set_receive_maximum(std::uint32_t n);

  /// The client's connection ended. Inflight messages stay inflight; new ones queue.
  void pause();
  bool is_online() const { return online_; }

  /// A message for the client. Appends what to write now to `out`.
  deliver_result deliver(delivery d, clock::time_point now, out_list& out);

  /// Client acknowledgements. Each returns false when `id` is not inflight in the right state
  /// (a protocol error the caller may log); a freed slot is refilled from the queue.
  bool on_puback(std::uint16_t id, clock::time_point now, out_list& out);
  bool on_pubrec(std::uint16_t id, clock::time_point now, out_list& out);
  bool on_pubcomp(std::uint16_t id, clock::time_point now, out_list& out);
  /// PUBREC with a Reason Code of 0x80 or more: the client refused the message. It is done:
  /// no PUBREL [MQTT-4.3.3-4], the identifier and the window slot are free (4.3.3, 4.9).
  bool on_pubrec_failed(std::uint16_t id, clock::time_point now, out_list& out);

  /// Forgets inflight message `id` as if the client had completed it (a message the client
  /// cannot take, e.g. larger than its Maximum Packet Size). Refills the window.
  bool discard(std::uint16_t id, clock::time_point now, out_list& out);

  /// Removes and returns the messages that came through shared subscription `key` (every
  /// shared subscription when `key` is null), so they can go to another member of the group:
  /// the queued ones, and with `with_sent_qos1` (the session ends) also QoS 1 messages sent
  /// but not acknowledged (4.8.2: another member SHOULD get them). A QoS 2 message that was
  /// sent stays: no other member may get it [MQTT-4.8.2-5]; nor does anything sent leave on
  /// an UNSUBSCRIBE: its delivery is completed [MQTT-3.10.4-3].
  std::vector<delivery> take_shared(const std::string* key, bool with_sent_qos1);

  /// Resends (with DUP) whatever has waited retry_interval since it was last sent.
  void retry(clock::time_point now, out_list& out);
  /// When retry() next has work, if anything is inflight and retry is enabled.
  std::optional<clock::time_point> next_retry() const;

  /// Inbound QoS 2: the client sent PUBLISH with this id.
  rel_result await_rel(std::uint16_t id, clock::time_point now);
  /// Inbound QoS 2: the client sent PUBREL. Returns false when the id was unknown.
  bool release(std::uint16_t id);
  /// Drops awaiting-PUBREL entries older than await_rel_timeout; returns how many.
  std::size_t expire_awaiting(clock::time_point now);

  /// Everything needed to rebuild this session elsewhere (disk, another node).
  struct pending {
    delivery d;              ///< d.msg is null for entries past PUBREC
    std::uint16_t packet_id = 0;  ///< 0: queued, not yet sent
    std::uint8_t phase = 0;  ///< 0 queued, 1 wait PUBACK, 2 wait PUBREC, 3 wait PUBCOMP
  };
  struct snapshot {
    std::vector<pending> messages;  ///< inflight in send order, then the queue
    std::vector<std::uint16_t> awaiting_rel;
    std::uint16_t last_packet_id = 0;
  };
  snapshot save() const;
  /// Replaces the state with `s`; the session is offline until resume().
  void restore(snapshot s, clock::time_point now);

  /// From now on, every change to a message with a seq is appended to `*j` (null: none).
  /// The caller empties it as it writes the changes to the store.
  void set_journal(change_list* j) { journal_ = j; }
  /// Gives every QoS 1/2 message without a seq the next one of `next` (a session that
  /// becomes persistent); returns how many.
  std::size_t number(const std::function<std::uint64_t()>& next);
  /// The largest seq of a message held (0: none).
  std::uint64_t max_seq() const;

  std::size_t inflight_size() const { return inflight_.size(); }
  std::size_t queue_size() const { return queue_ ? queue_->size() : 0; }
  std::size_t awaiting_rel_size() const { return awaiting_rel_ ? awaiting_rel_->size() : 0; }
  std::uint64_t dropped() const { return dropped_; }
  /// Messages that expired before they could be sent.
  std::uint64_t expired() const { return expired_; }

 private:
  enum class phase : std::uint8_t { wait_puback, wait_pubrec, wait_pubcomp };
  struct inflight_entry {
    std::uint16_t id;
    phase ph;
    bool unsent;  // from an earlier connection, not yet resent on this one
    clock::time_point sent_at;
    delivery d;
  };

  std::uint16_t next_packet_id();
  void send_new(delivery d, clock::time_point now, out_list& out);
  void drain(clock::time_point now, out_list& out);
  /// Resends unsent inflight entries, oldest first, while the window has room.
  void resend_unsent(clock::time_point now, out_list& out);
  void resend(inflight_entry& e, clock::time_point now, out_list& out);
  deliver_result enqueue(delivery d);
  inflight_entry* find(std::uint16_t id);
  void erase(std::uint16_t id);
  void note_sent(const inflight_entry& e);
  void note_removed(const delivery& d);

  settings cfg_;
  bool online_ = false;
  std::uint16_t last_id_ = 0;
  std::uint64_t dropped_ = 0;
  std::uint64_t expired_ = 0;
  std::uint32_t window_ = 0;  // min(max_inflight, client's receive maximum)
  std::uint32_t unsent_ = 0;  // inflight entries with `unsent` set
  std::size_t queued_qos0_ = 0;
  std::vector<inflight_entry> inflight_;  // in send order; small (<= max_inflight)
  // Allocated on first use: an empty std::deque costs ~600 bytes, too much per idle client.
  std::unique_ptr<std::deque<delivery>> queue_;
  // Allocated on first use as well (only QoS 2 publishers need it); kept once allocated.
  std::unique_ptr<std::unordered_map<std::uint16_t, clock::time_point>> awaiting_rel_;
  change_list* journal_ = nullptr;
};

}  // namespace tern::actors::session
