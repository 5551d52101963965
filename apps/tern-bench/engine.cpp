// tern-bench engine: MQTT clients on Boost.Asio io threads and the phases of a scenario.
//
// Threading: each io thread ("worker") runs its own io_context and owns its clients outright,
// so client state needs no locks. The main thread only posts commands to workers and polls
// their counters, which are atomics with a single writer (the worker).
//
// Hot path: a subscriber waits for readability, drains the socket into its worker's scratch
// buffer, parses every whole frame in place and answers with one batched write. PUBLISH and
// the four acknowledgements are parsed as views (no copy, no allocation); all other packets,
// and every packet under --strict, go through tern_proto's decode_one. Publishers encode with
// tern_proto's encoder into a reused packet and a reused output buffer, and write all that is
// due in one write, so the steady state does not allocate.
//
// TLS: a client then also owns an ssl::stream layered on its socket (by reference), and every
// read and write goes through it; the plain path only tests one null pointer per operation.
#include "apps/tern-bench/engine.hpp"

#include <netinet/in.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <thread>
#include <utility>

#include "actors/listener/handler_slot.hpp"
#include "proto/mqtt/codec.hpp"
#include "proto/mqtt/packet.hpp"

namespace tern::bench {

namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace mqtt = tern::proto::mqtt;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;
using boost::system::error_code;
using seconds_f = std::chrono::duration<double>;

constexpr std::uint32_t max_frame = mqtt::default_max_packet_size;
// Room for one partial frame carried over plus a large read.
constexpr std::size_t scratch_size = 2 * std::size_t{max_frame} + 256 * 1024;
// A QoS 0 publisher without --rate keeps at most this much queued behind the running write.
constexpr std::size_t qos0_batch_bytes = 64 * 1024;
// Upper bound of messages one publisher queues per call (a catch-up after a stall).
constexpr std::uint64_t max_batch = 4096;
constexpr int max_reads_per_wakeup = 4;
constexpr std::size_t max_errors_kept = 10;
// Session Expiry Interval (seconds) of --persistent clients under MQTT 5.
constexpr std::uint32_t persistent_session_expiry_s = 3600;
constexpr auto poll_interval = std::chrono::milliseconds(10);
constexpr auto stall_timeout = std::chrono::seconds(10);

std::uint64_t to_ns(steady::time_point t) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

std::uint16_t be16(const char* p) {
  return static_cast<std::uint16_t>((static_cast<unsigned char>(p[0]) << 8) |
                                    static_cast<unsigned char>(p[1]));
}

/// Reads an MQTT variable byte integer at `in[pos]`; returns its length in bytes, 0 when `in`
/// ends first, or -1 when it is longer than four bytes.
int read_varint(std::string_view in, std::size_t pos, std::uint32_t& value) {
  value = 0;
  for (int i = 0; i < 4; ++i) {
    if (pos + static_cast<std::size_t>(i) >= in.size()) {
      return 0;
    }
    const auto b = static_cast<unsigned char>(in[pos + static_cast<std::size_t>(i)]);
    value |= static_cast<std::uint32_t>(b & 0x7FU) << (7 * i);
    if ((b & 0x80U) == 0) {
      return i + 1;
    }
  }
  return -1;
}

/// Replaces every "%i" in `pattern` by `index`.
std::string expand(const std::string& pattern, std::uint32_t index) {
  std::string out;
  const std::string id = std::to_string(index);
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '%' && i + 1 < pattern.size() && pattern[i + 1] == 'i') {
      out += id;
      ++i;
    } else {
      out += pattern[i];
    }
  }
  return out;
}

/// Room for one outstanding asynchronous operation at a time, so that a client's steady-state
/// reads, writes and timer waits do not touch the heap (Asio's own per-thread cache holds a
/// single block, too few for thousands of clients).
using handler_memory = actors::listener::handler_slot<320>;
using actors::listener::in;

/// A single-writer counter: the owning worker adds, anyone may read.
class counter {
 public:
  void add(std::uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::uint64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

struct counters {
  counter connected;       // CONNACK accepted
  counter setup_done;      // ready (subscribed if a subscriber) or failed during setup
  counter connect_failed;  // failed before ready
  counter dropped;         // failed after ready
  counter closed;          // closed at the end, or failed
  counter sent;
  counter acked;
  counter received;
  counter foreign;
  counter pubs_done;
};

/// What the main thread and all workers share. Read-only once the threads run, except the
/// atomics.
struct shared_state {
  explicit shared_state(const options& o) : opt(o) {}
  const options& opt;
  tcp::endpoint broker;
  std::vector<asio::ip::address> sources;
  mqtt::protocol_version version = mqtt::protocol_version::v3_1_1;
  double pub_rate = 0;                // per publisher
  std::unique_ptr<ssl::context> tls;  // set when --tls; shared by all clients (read-only)
  std::atomic<bool> stop_publishing{false};
  std::atomic<bool> interrupted{false};
};

enum class role : std::uint8_t { idle, publisher, subscriber };
enum class conn_state : std::uint8_t {
  waiting,
  connecting,
  connack_wait,
  suback_wait,
  ready,
  closing,
  closed,
  failed,
};

class worker;

/// Publisher-only state of a client.
struct pub_state {
  explicit pub_state(asio::io_context& ctx) : timer(ctx) {}
  mqtt::packet pkt{mqtt::publish{}};  // reused for every message
  asio::steady_timer timer;
  handler_memory timer_memory;
  std::uint64_t seq = 0;  // next sequence number
  std::uint64_t limit = 0;
  steady::time_point start;
  steady::time_point end;
  seconds_f interval{0};
  std::vector<std::uint8_t> slots;  // by packet id: 0 free, 1 wait PUBACK/PUBREC, 2 wait PUBCOMP
  std::vector<std::uint16_t> free_ids;
  bool is_publishing = false;
  bool is_done = false;
  bool wants_publish = false;
};

class client {
 public:
  client(worker& w, role r, std::uint32_t index, std::string topic_or_filter);

  role kind() const { return role_; }
  /// PREFIX-{pub,sub,conn}-INDEX
  std::string client_id() const {
    const char* tag =
        role_ == role::publisher ? "pub" : role_ == role::subscriber ? "sub" : "conn";
    return sh_.opt.client_prefix + "-" + tag + "-" + std::to_string(index_);
  }
  std::uint32_t index() const { return index_; }
  conn_state state() const { return state_; }
  const delivery_checker& checker() const { return checker_; }
  std::uint64_t sent() const { return pub_ ? pub_->seq : 0; }
  void reserve_stream(std::uint32_t publisher, std::uint64_t n) { checker_.reserve(publisher, n); }

  void start_connect();
  void start_publishing(steady::time_point start, steady::time_point end);
  void stop_publishing();
  void disconnect();
  void on_tick(steady::time_point now);

 private:
  void on_connected(const error_code& ec);
  void on_handshake(const error_code& ec);
  void send_connect();
  std::size_t read_now(char* data, std::size_t size, error_code& ec);
  void start_read();
  void on_read(const error_code& ec, std::size_t n);
  std::size_t parse(const char* data, std::size_t size, std::uint64_t now_ns);
  void on_frame(std::uint8_t first, std::string_view body, std::string_view frame,
                std::uint64_t now_ns);
  void on_packet(const mqtt::packet& p, std::uint64_t now_ns);
  void on_connack(const mqtt::connack& c);
  void on_suback(const mqtt::suback& s);
  void on_publish(mqtt::qos q, std::uint16_t id, std::string_view payload, std::uint64_t now_ns);
  void on_ack(mqtt::packet_type t, std::uint16_t id, std::uint8_t reason);
  void release(std::uint16_t id);
  void setup_complete();
  void try_publish();
  void finish_publishing();
  void arm_timer();
  void send(const mqtt::packet& p);
  void flush();
  void on_written(const error_code& ec);
  void close_now();
  void fail(const std::string& why);

  worker& w_;
  shared_state& sh_;
  role role_;
  std::uint32_t index_;
  std::string topic_or_filter_;
  conn_state state_ = conn_state::waiting;
  tcp::socket sock_;
  std::unique_ptr<ssl::stream<tcp::socket&>> tls_;  // over sock_, with --tls only
  std::string out_;                                 // packets waiting for the next write
  std::string writing_;                             // the buffer of the write in progress
  bool is_writing_ = false;
  bool is_send_shut_ = false;
  std::string partial_;        // bytes of a frame not yet complete
  std::array<char, 2048> rd_;  // target of the async read; more is read into the scratch
  handler_memory read_memory_;
  handler_memory write_memory_;
  steady::time_point connect_started_;
  steady::time_point last_write_;
  std::uint16_t inflight_cap_ = 0;
  std::unique_ptr<pub_state> pub_;
  delivery_checker checker_;
};

class worker {
 public:
  worker(shared_state& sh, int id);
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  asio::io_context& ctx() { return ctx_; }
  shared_state& shared() { return sh_; }
  counters& count() { return counters_; }
  const counters& count() const { return counters_; }
  std::vector<std::unique_ptr<client>>& clients() { return clients_; }
  const std::vector<std::unique_ptr<client>>& clients() const { return clients_; }
  std::vector<char>& scratch() { return scratch_; }
  mqtt::packet& decoded() { return decoded_; }
  mqtt::packet& response(mqtt::packet_type t);
  latency_histogram& latency() { return latency_; }

  client& add(role r, std::uint32_t index, std::string topic_or_filter);
  void run();  // io thread body
  void stop();

  /// Connects `group` (clients of this worker) at this worker's share of --conn-rate.
  void connect(std::vector<client*> group);
  void on_connect_done();
  void start_publishing(steady::time_point start, steady::time_point end);
  void stop_publishing();
  void disconnect_all();

  void note_error(const std::string& e);
  void note_connect_attempt(steady::time_point t);
  void note_connack(steady::time_point t);
  void note_sent(steady::time_point t);
  void note_received(std::uint64_t now_ns);

  // Read after the thread has stopped.
  const std::vector<std::string>& errors() const { return errors_; }
  std::optional<steady::time_point> first_attempt, last_connack, first_send, last_send;
  std::uint64_t first_recv_ns = 0, last_recv_ns = 0;

 private:
  void pump_connects();
  void arm_tick();

  shared_state& sh_;
  asio::io_context ctx_{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  asio::steady_timer tick_;
  asio::steady_timer connect_timer_;
  counters counters_;
  std::vector<char> scratch_;
  mqtt::packet decoded_;
  mqtt::packet puback_{mqtt::puback{}};
  mqtt::packet pubrec_{mqtt::pubrec{}};
  mqtt::packet pubrel_{mqtt::pubrel{}};
  mqtt::packet pubcomp_{mqtt::pubcomp{}};
  latency_histogram latency_;
  std::vector<std::string> errors_;
  double conn_rate_ = 0;
  std::uint32_t conn_parallel_ = 1;
  std::vector<client*> queue_;
  std::size_t cursor_ = 0;
  std::uint32_t in_progress_ = 0;
  steady::time_point queue_started_;
  bool is_connect_timer_armed_ = false;
  // Declared last so that clients (and their sockets) go before the io_context.
  std::vector<std::unique_ptr<client>> clients_;
};

// ---------------------------------------------------------------------------------------------
// client

client::client(worker& w, role r, std::uint32_t index, std::string topic_or_filter)
    : w_(w),
      sh_(w.shared()),
      role_(r),
      index_(index),
      topic_or_filter_(std::move(topic_or_filter)),
      sock_(w.ctx()) {
  if (role_ != role::publisher) {
    return;
  }
  pub_ = std::make_unique<pub_state>(w.ctx());
  auto& p = std::get<mqtt::publish>(pub_->pkt);
  p.topic = topic_or_filter_;
  p.q = static_cast<mqtt::qos>(sh_.opt.qos);
  p.payload.assign(std::max(sh_.opt.size, stamp_size), 'x');
  pub_->limit = sh_.opt.count > 0 ? sh_.opt.count : UINT64_MAX;
}

void client::start_connect() {
  state_ = conn_state::connecting;
  connect_started_ = steady::now();
  w_.note_connect_attempt(connect_started_);
  error_code ec;
  sock_.open(sh_.broker.protocol(), ec);
  if (!ec && !sh_.sources.empty()) {
#ifdef IP_BIND_ADDRESS_NO_PORT
    // Choose the port at connect(), per destination, so that one source address is not
    // limited to one ephemeral port range for all destinations together.
    const int one = 1;
    ::setsockopt(sock_.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
    sock_.bind(tcp::endpoint(sh_.sources[index_ % sh_.sources.size()], 0), ec);
  }
  if (ec) {
    fail("socket: " + ec.message());
    return;
  }
  if (sh_.tls) {
    tls_ = std::make_unique<ssl::stream<tcp::socket&>>(sock_, *sh_.tls);
    const std::string& name = sh_.opt.tls_server_name;
    if (!name.empty()) {
      // SNI, and the name the broker's certificate must be issued for.
      ::SSL_set_tlsext_host_name(tls_->native_handle(), name.c_str());
      tls_->set_verify_callback(ssl::host_name_verification(name));
    }
  }
  sock_.async_connect(sh_.broker, [this](const error_code& e) { on_connected(e); });
}

void client::on_connected(const error_code& ec) {
  if (state_ != conn_state::connecting) {
    return;  // failed meanwhile (timeout)
  }
  if (ec) {
    fail("connect: " + ec.message());
    return;
  }
  error_code ignored;
  sock_.set_option(tcp::no_delay(true), ignored);
  sock_.non_blocking(true, ignored);
  if (tls_) {
    tls_->async_handshake(ssl::stream_base::client,
                          [this](const error_code& e) { on_handshake(e); });
    return;
  }
  send_connect();
}

void client::on_handshake(const error_code& ec) {
  if (state_ != conn_state::connecting) {
    return;  // failed meanwhile (timeout)
  }
  if (ec) {
    fail("TLS handshake: " + ec.message());
    return;
  }
  send_connect();
}

void client::send_connect() {
  mqtt::connect c;
  c.version = sh_.version;
  c.clean_start = !sh_.opt.is_persistent;
  if (sh_.opt.is_persistent && sh_.version == mqtt::protocol_version::v5) {
    c.props.session_expiry_interval = persistent_session_expiry_s;
  }
  c.keep_alive = sh_.opt.keepalive;
  c.client_id = client_id();
  if (!sh_.opt.username.empty()) {
    c.username = sh_.opt.username;
  }
  if (!sh_.opt.password.empty()) {
    c.password = sh_.opt.password;
  }
  state_ = conn_state::connack_wait;
  send(mqtt::packet{std::move(c)});
  flush();
  start_read();
}

void client::start_read() {
  // async_read_some, not async_wait: Asio re-arms epoll for every wait but not for a read
  // that found the socket drained last time.
  auto done = in(read_memory_, [this](const error_code& ec, std::size_t n) { on_read(ec, n); });
  if (tls_) {
    tls_->async_read_some(asio::buffer(rd_), std::move(done));
    return;
  }
  sock_.async_read_some(asio::buffer(rd_), std::move(done));
}

std::size_t client::read_now(char* data, std::size_t size, error_code& ec) {
  // The socket is non-blocking: this returns would_block when nothing more has arrived. Over
  // TLS, bytes of an incomplete record stay buffered in the TLS engine for the next read.
  if (tls_) {
    return tls_->read_some(asio::buffer(data, size), ec);
  }
  return sock_.read_some(asio::buffer(data, size), ec);
}

void client::on_read(const error_code& ec, std::size_t n) {
  if (state_ == conn_state::closed || state_ == conn_state::failed) {
    return;
  }
  // Gather: the carried-over partial frame, what the async read got and, if that filled
  // rd_, whatever more the socket holds, into the worker's scratch buffer.
  std::vector<char>& buf = w_.scratch();
  std::size_t have = partial_.size();
  std::memcpy(buf.data(), partial_.data(), have);
  std::memcpy(buf.data() + have, rd_.data(), n);
  have += n;
  error_code end = ec;
  bool is_more = !ec && n == rd_.size();
  for (int round = 0;; ++round) {
    while (is_more && have < buf.size()) {
      error_code rec;
      const std::size_t space = buf.size() - have;
      const std::size_t m = read_now(buf.data() + have, space, rec);
      if (rec) {
        if (rec != asio::error::would_block && rec != asio::error::try_again) {
          end = rec;
        }
        is_more = false;
        break;
      }
      have += m;
      is_more = m == space;
    }
    // Taken after the reads, so that no delivery looks older than its stamp.
    const std::size_t used = parse(buf.data(), have, to_ns(steady::now()));
    if (state_ == conn_state::closed || state_ == conn_state::failed) {
      return;
    }
    if (!is_more || round + 1 >= max_reads_per_wakeup) {
      // Data left in the socket is safe: rd_ was filled, so Asio reads speculatively next.
      partial_.assign(buf.data() + used, have - used);
      break;
    }
    std::memmove(buf.data(), buf.data() + used, have - used);
    have -= used;
  }
  if (end) {
    if (state_ == conn_state::closing) {
      close_now();  // the broker closed after our DISCONNECT, as it should
    } else {
      fail(end == asio::error::eof ? "closed by the broker" : "read: " + end.message());
    }
    return;
  }
  if (pub_ && pub_->wants_publish) {
    pub_->wants_publish = false;
    try_publish();
  }
  flush();
  start_read();
}

std::size_t client::parse(const char* data, std::size_t size, std::uint64_t now_ns) {
  const std::string_view in(data, size);
  std::size_t pos = 0;
  while (size - pos >= 2) {
    std::uint32_t remaining = 0;
    const int len = read_varint(in, pos + 1, remaining);
    if (len == 0) {
      break;
    }
    if (len < 0) {
      fail("malformed remaining length");
      return pos;
    }
    const std::size_t header = 1 + static_cast<std::size_t>(len);
    if (header + remaining > max_frame) {
      fail("packet too large: " + std::to_string(header + remaining) + " bytes");
      return pos;
    }
    if (size - pos < header + remaining) {
      break;
    }
    on_frame(static_cast<std::uint8_t>(in[pos]), in.substr(pos + header, remaining),
             in.substr(pos, header + remaining), now_ns);
    if (state_ == conn_state::failed || state_ == conn_state::closed) {
      return pos;
    }
    pos += header + remaining;
  }
  return pos;
}

void client::on_frame(std::uint8_t first, std::string_view body, std::string_view frame,
                      std::uint64_t now_ns) {
  const auto type = static_cast<mqtt::packet_type>(first >> 4);
  const bool is_v5 = sh_.version == mqtt::protocol_version::v5;
  if (state_ == conn_state::closing && type != mqtt::packet_type::publish) {
    return;  // late answers to a client that has said DISCONNECT
  }
  if (!sh_.opt.is_strict) {
    if (type == mqtt::packet_type::publish) {
      const auto q = static_cast<mqtt::qos>((first >> 1) & 3U);
      std::size_t p = 2;
      std::uint16_t id = 0;
      if (body.size() >= 2) {
        p += be16(body.data());
      }
      if (q != mqtt::qos::at_most_once) {
        id = p + 2 <= body.size() ? be16(body.data() + p) : 0;
        p += 2;
      }
      if (is_v5 && p < body.size()) {
        std::uint32_t props = 0;
        const int n = read_varint(body, p, props);
        p = n > 0 ? p + static_cast<std::size_t>(n) + props : body.size() + 1;
      }
      if (body.size() < 2 || p > body.size() || static_cast<unsigned>(q) > 2 ||
          (q != mqtt::qos::at_most_once && id == 0)) {
        fail("malformed PUBLISH");
        return;
      }
      on_publish(q, id, body.substr(p), now_ns);
      return;
    }
    if (type >= mqtt::packet_type::puback && type <= mqtt::packet_type::pubcomp) {
      if (body.size() < 2) {
        fail(std::string("malformed ") + mqtt::to_string(type));
        return;
      }
      const std::uint8_t reason =
          is_v5 && body.size() >= 3 ? static_cast<std::uint8_t>(body[2]) : 0;
      on_ack(type, be16(body.data()), reason);
      return;
    }
    if (type == mqtt::packet_type::pingresp) {
      return;
    }
  }
  mqtt::packet& p = w_.decoded();
  std::size_t consumed = 0;
  mqtt::decode_error err;
  if (mqtt::decode_one(frame, sh_.version, max_frame, p, consumed, err) !=
      mqtt::decode_status::ok) {
    fail("undecodable " + std::string(mqtt::to_string(type)) + ": " + err.detail);
    return;
  }
  on_packet(p, now_ns);
}

void client::on_packet(const mqtt::packet& p, std::uint64_t now_ns) {
  if (const auto* c = std::get_if<mqtt::connack>(&p)) {
    on_connack(*c);
  } else if (const auto* s = std::get_if<mqtt::suback>(&p)) {
    on_suback(*s);
  } else if (const auto* m = std::get_if<mqtt::publish>(&p)) {
    on_publish(m->q, m->packet_id, m->payload, now_ns);
  } else if (const auto* a = std::get_if<mqtt::puback>(&p)) {
    on_ack(mqtt::packet_type::puback, a->packet_id, a->reason);
  } else if (const auto* rec = std::get_if<mqtt::pubrec>(&p)) {
    on_ack(mqtt::packet_type::pubrec, rec->packet_id, rec->reason);
  } else if (const auto* rel = std::get_if<mqtt::pubrel>(&p)) {
    on_ack(mqtt::packet_type::pubrel, rel->packet_id, rel->reason);
  } else if (const auto* comp = std::get_if<mqtt::pubcomp>(&p)) {
    on_ack(mqtt::packet_type::pubcomp, comp->packet_id, comp->reason);
  } else if (std::holds_alternative<mqtt::pingresp>(p)) {
    return;
  } else if (const auto* d = std::get_if<mqtt::disconnect>(&p)) {
    fail("DISCONNECT from the broker, reason 0x" + [&] {
      char b[8];
      std::snprintf(b, sizeof b, "%02x", d->reason);
      return std::string(b);
    }());
  } else {
    fail(std::string("unexpected ") + mqtt::to_string(mqtt::type_of(p)));
  }
}

void client::on_connack(const mqtt::connack& c) {
  if (state_ != conn_state::connack_wait) {
    fail("unexpected CONNACK");
    return;
  }
  if (c.reason != 0) {
    fail("CONNACK refused, code " + std::to_string(c.reason));
    return;
  }
  if (c.session_present) {
    // Messages queued for a session of an earlier run would count as duplicates (the
    // sequence numbers start at 0 again) and skew the latency.
    w_.note_error(client_id() + ": the broker resumed an earlier session (another "
                                "--client-prefix, or a fresh broker, avoids that)");
  }
  const auto now = steady::now();
  w_.count().connected.add();
  w_.note_connack(now);
  inflight_cap_ = static_cast<std::uint16_t>(std::min<std::uint32_t>(sh_.opt.inflight, 65535));
  if (c.props.receive_maximum) {
    // [MQTT-3.3.4-7] never exceed the server's Receive Maximum
    inflight_cap_ = std::min(inflight_cap_, *c.props.receive_maximum);
  }
  if (role_ == role::subscriber) {
    mqtt::subscribe s;
    s.packet_id = 1;
    mqtt::subscription sub;
    sub.filter = topic_or_filter_;
    sub.max_qos = static_cast<mqtt::qos>(effective_sub_qos(sh_.opt));
    s.subscriptions.push_back(std::move(sub));
    state_ = conn_state::suback_wait;
    send(mqtt::packet{std::move(s)});
    return;
  }
  if (pub_) {
    pub_->slots.assign(std::size_t{inflight_cap_} + 1, 0);
    pub_->free_ids.clear();
    for (std::uint16_t id = inflight_cap_; id >= 1; --id) {
      pub_->free_ids.push_back(id);  // hand out 1, 2, 3... first
    }
  }
  state_ = conn_state::ready;
  setup_complete();
}

void client::on_suback(const mqtt::suback& s) {
  if (state_ != conn_state::suback_wait || s.packet_id != 1) {
    fail("unexpected SUBACK");
    return;
  }
  if (s.reasons.size() != 1 || s.reasons[0] >= 0x80) {
    fail("SUBACK refused, code " + std::to_string(s.reasons.empty() ? 0 : s.reasons[0]));
    return;
  }
  state_ = conn_state::ready;
  setup_complete();
}

void client::setup_complete() {
  last_write_ = steady::now();
  w_.count().setup_done.add();
  w_.on_connect_done();
}

void client::on_publish(mqtt::qos q, std::uint16_t id, std::string_view payload,
                        std::uint64_t now_ns) {
  w_.count().received.add();
  w_.note_received(now_ns);
  if (const auto s = read_stamp(payload)) {
    checker_.on_delivery(*s);
    w_.latency().record(now_ns > s->sent_ns ? now_ns - s->sent_ns : 0);
  } else {
    w_.count().foreign.add();
  }
  if (state_ != conn_state::ready) {
    return;  // after our DISCONNECT nothing more may be sent
  }
  if (q == mqtt::qos::at_least_once) {
    mqtt::packet& a = w_.response(mqtt::packet_type::puback);
    std::get<mqtt::puback>(a).packet_id = id;
    send(a);
  } else if (q == mqtt::qos::exactly_once) {
    mqtt::packet& a = w_.response(mqtt::packet_type::pubrec);
    std::get<mqtt::pubrec>(a).packet_id = id;
    send(a);
  }
}

void client::on_ack(mqtt::packet_type t, std::uint16_t id, std::uint8_t reason) {
  if (t == mqtt::packet_type::pubrel) {  // inbound QoS 2, subscriber side
    if (state_ == conn_state::ready) {
      mqtt::packet& a = w_.response(mqtt::packet_type::pubcomp);
      std::get<mqtt::pubcomp>(a).packet_id = id;
      send(a);
    }
    return;
  }
  if (!pub_ || id == 0 || id >= pub_->slots.size() || pub_->slots[id] == 0) {
    fail(std::string("unexpected ") + mqtt::to_string(t) + " for packet id " + std::to_string(id));
    return;
  }
  std::uint8_t& slot = pub_->slots[id];
  const bool is_qos2 = sh_.opt.qos == 2;
  if (t == mqtt::packet_type::puback && slot == 1 && !is_qos2) {
    release(id);
  } else if (t == mqtt::packet_type::pubrec && slot == 1 && is_qos2) {
    if (reason >= 0x80) {
      release(id);  // v5: the broker refused the message; the flow ends here
      return;
    }
    slot = 2;
    if (state_ == conn_state::ready) {
      mqtt::packet& a = w_.response(mqtt::packet_type::pubrel);
      std::get<mqtt::pubrel>(a).packet_id = id;
      send(a);
    }
  } else if (t == mqtt::packet_type::pubcomp && slot == 2) {
    release(id);
  } else {
    fail(std::string("out-of-sequence ") + mqtt::to_string(t) + " for packet id " +
         std::to_string(id));
  }
}

void client::release(std::uint16_t id) {
  pub_->slots[id] = 0;
  pub_->free_ids.push_back(id);
  w_.count().acked.add();
  pub_->wants_publish = pub_->is_publishing;
}

void client::start_publishing(steady::time_point start, steady::time_point end) {
  if (!pub_ || state_ != conn_state::ready || pub_->is_done) {
    return;
  }
  pub_->end = end;
  pub_->is_publishing = true;
  if (sh_.pub_rate > 0) {
    // Tick at the message interval, but not more often than every millisecond. Publishers
    // start at spread phases of the interval (golden-ratio sequence over the index), so that
    // thousands of slow publishers do not fire in one burst.
    pub_->interval = seconds_f(std::max(1.0 / sh_.pub_rate, 0.001));
    const double phase = std::fmod(static_cast<double>(index_) * 0.6180339887498949, 1.0);
    pub_->start = start + std::chrono::duration_cast<steady::duration>(
                              seconds_f(std::min(1.0 / sh_.pub_rate, 1.0) * phase));
    pub_->timer.expires_at(pub_->start);
  } else {
    pub_->start = start;
    pub_->timer.expires_at(std::min(start, end));
  }
  arm_timer();
}

void client::arm_timer() {
  pub_->timer.async_wait(in(pub_->timer_memory, [this](const error_code& ec) {
    if (ec || !pub_->is_publishing) {
      return;
    }
    try_publish();
    if (pub_->is_publishing && sh_.pub_rate > 0) {
      const auto next = pub_->timer.expiry() +
                        std::chrono::duration_cast<steady::duration>(pub_->interval);
      pub_->timer.expires_at(std::max(next, steady::now()));
      arm_timer();
    } else if (pub_->is_publishing && pub_->end != steady::time_point::max()) {
      // Flow-controlled publishers wake once more at the end of --duration.
      pub_->timer.expires_at(pub_->end);
      arm_timer();
    }
  }));
}

void client::try_publish() {
  if (!pub_->is_publishing || state_ != conn_state::ready) {
    return;
  }
  const auto now = steady::now();
  if (now >= pub_->end || sh_.stop_publishing.load(std::memory_order_relaxed)) {
    finish_publishing();
    return;
  }
  if (now < pub_->start) {
    return;
  }
  std::uint64_t n = std::min(pub_->limit - pub_->seq, max_batch);
  if (sh_.pub_rate > 0) {
    const auto due = static_cast<std::uint64_t>(seconds_f(now - pub_->start).count() *
                                                sh_.pub_rate) + 1;
    n = std::min(n, due > pub_->seq ? due - pub_->seq : 0);
  }
  auto& m = std::get<mqtt::publish>(pub_->pkt);
  if (m.q != mqtt::qos::at_most_once) {
    n = std::min<std::uint64_t>(n, pub_->free_ids.size());
  } else if (sh_.pub_rate <= 0) {
    // Without acks, the socket is the flow control: queue one batch behind the running write.
    const std::size_t frame = m.payload.size() + m.topic.size() + 8;
    n = out_.size() >= qos0_batch_bytes
            ? 0
            : std::min<std::uint64_t>(n, (qos0_batch_bytes - out_.size()) / frame + 1);
  }
  if (n == 0) {
    return;
  }
  stamp s;
  s.publisher = index_;
  s.sent_ns = to_ns(now);
  for (std::uint64_t i = 0; i < n; ++i) {
    s.seq = pub_->seq++;
    write_stamp(s, m.payload.data());
    if (m.q != mqtt::qos::at_most_once) {
      m.packet_id = pub_->free_ids.back();
      pub_->free_ids.pop_back();
      pub_->slots[m.packet_id] = 1;
    }
    mqtt::encode(pub_->pkt, sh_.version, out_);
  }
  w_.count().sent.add(n);
  w_.note_sent(now);
  if (pub_->seq >= pub_->limit) {
    finish_publishing();
  }
  flush();
}

void client::stop_publishing() {
  if (pub_ && pub_->is_publishing) {
    finish_publishing();
  }
}

void client::finish_publishing() {
  if (pub_->is_done) {
    return;
  }
  pub_->is_publishing = false;
  pub_->is_done = true;
  pub_->timer.cancel();
  w_.count().pubs_done.add();
}

void client::send(const mqtt::packet& p) { mqtt::encode(p, sh_.version, out_); }

void client::flush() {
  if (is_writing_ || out_.empty() || state_ == conn_state::closed ||
      state_ == conn_state::failed || is_send_shut_) {
    return;
  }
  std::swap(out_, writing_);
  is_writing_ = true;
  auto done = in(write_memory_, [this](const error_code& ec, std::size_t) { on_written(ec); });
  if (tls_) {
    asio::async_write(*tls_, asio::buffer(writing_), std::move(done));
    return;
  }
  asio::async_write(sock_, asio::buffer(writing_), std::move(done));
}

void client::on_written(const error_code& ec) {
  is_writing_ = false;
  writing_.clear();
  if (state_ == conn_state::closed || state_ == conn_state::failed) {
    return;
  }
  if (ec) {
    fail("write: " + ec.message());
    return;
  }
  last_write_ = steady::now();
  if (state_ == conn_state::closing && out_.empty()) {
    // DISCONNECT is out: half-close and wait for the broker to close its side. Over TLS this
    // ends the TCP stream without a close_notify: the session is over at DISCONNECT anyway.
    error_code ignored;
    sock_.shutdown(tcp::socket::shutdown_send, ignored);
    is_send_shut_ = true;
    return;
  }
  if (pub_ && pub_->is_publishing && sh_.pub_rate <= 0 &&
      std::get<mqtt::publish>(pub_->pkt).q == mqtt::qos::at_most_once) {
    try_publish();
  }
  flush();
}

void client::disconnect() {
  if (pub_) {
    stop_publishing();
  }
  switch (state_) {
    case conn_state::waiting:
    case conn_state::connecting:
      state_ = conn_state::closed;
      close_now();
      return;
    case conn_state::connack_wait:
    case conn_state::suback_wait:
    case conn_state::ready:
      break;
    default:
      return;
  }
  state_ = conn_state::closing;
  send(mqtt::packet{mqtt::disconnect{}});
  flush();
}

void client::close_now() {
  error_code ignored;
  sock_.close(ignored);
  if (pub_) {
    pub_->timer.cancel();
  }
  state_ = conn_state::closed;
  w_.count().closed.add();
}

void client::fail(const std::string& why) {
  if (state_ == conn_state::closed || state_ == conn_state::failed) {
    return;
  }
  const bool was_ready = state_ == conn_state::ready || state_ == conn_state::closing;
  const bool was_closing = state_ == conn_state::closing;
  if (!was_closing) {
    w_.note_error(client_id() + ": " + why);
  }
  error_code ignored;
  sock_.close(ignored);
  state_ = conn_state::failed;
  w_.count().closed.add();
  if (pub_) {
    finish_publishing();  // a publisher that fails is done, whether it had started or not
  }
  if (was_ready) {
    if (!was_closing) {
      w_.count().dropped.add();
    }
    return;
  }
  w_.count().connect_failed.add();
  w_.count().setup_done.add();
  w_.on_connect_done();
}

void client::on_tick(steady::time_point now) {
  switch (state_) {
    case conn_state::connecting:
    case conn_state::connack_wait:
    case conn_state::suback_wait:
      if (now - connect_started_ > sh_.opt.connect_timeout) {
        fail("no answer within the connect timeout");
      }
      return;
    case conn_state::ready:
      // [MQTT-3.1.2-23] send something within the keep alive; PINGREQ at half of it
      if (sh_.opt.keepalive > 0 && now - last_write_ > std::chrono::seconds(sh_.opt.keepalive) / 2) {
        last_write_ = now;
        send(mqtt::packet{mqtt::pingreq{}});
        flush();
      }
      return;
    default:
      return;
  }
}

// ---------------------------------------------------------------------------------------------
// worker

worker::worker(shared_state& sh, int id)
    : sh_(sh),
      guard_(asio::make_work_guard(ctx_)),
      tick_(ctx_),
      connect_timer_(ctx_),
      scratch_(scratch_size),
      decoded_(mqtt::pingreq{}) {
  const auto threads = static_cast<double>(sh.opt.threads);
  conn_rate_ = sh.opt.conn_rate / threads;
  conn_parallel_ = std::max<std::uint32_t>(
      1, sh.opt.conn_parallel / static_cast<std::uint32_t>(sh.opt.threads) +
             (static_cast<std::uint32_t>(id) <
                      sh.opt.conn_parallel % static_cast<std::uint32_t>(sh.opt.threads)
                  ? 1
                  : 0));
}

mqtt::packet& worker::response(mqtt::packet_type t) {
  switch (t) {
    case mqtt::packet_type::puback:
      return puback_;
    case mqtt::packet_type::pubrec:
      return pubrec_;
    case mqtt::packet_type::pubrel:
      return pubrel_;
    default:
      return pubcomp_;
  }
}

client& worker::add(role r, std::uint32_t index, std::string topic_or_filter) {
  clients_.push_back(std::make_unique<client>(*this, r, index, std::move(topic_or_filter)));
  return *clients_.back();
}

void worker::run() {
  arm_tick();
  ctx_.run();
}

void worker::stop() {
  guard_.reset();
  ctx_.stop();
}

void worker::arm_tick() {
  tick_.expires_after(std::chrono::seconds(1));
  tick_.async_wait([this](const error_code& ec) {
    if (ec) {
      return;
    }
    const auto now = steady::now();
    for (auto& c : clients_) {
      c->on_tick(now);
    }
    arm_tick();
  });
}

void worker::connect(std::vector<client*> group) {
  queue_ = std::move(group);
  cursor_ = 0;
  queue_started_ = steady::now();
  pump_connects();
}

void worker::on_connect_done() {
  if (in_progress_ > 0) {
    --in_progress_;
  }
  pump_connects();
}

void worker::pump_connects() {
  while (cursor_ < queue_.size() && in_progress_ < conn_parallel_) {
    if (conn_rate_ > 0) {
      const seconds_f elapsed = steady::now() - queue_started_;
      const auto allowed = static_cast<std::size_t>(elapsed.count() * conn_rate_) + 1;
      if (cursor_ >= allowed) {
        if (!is_connect_timer_armed_) {
          is_connect_timer_armed_ = true;
          connect_timer_.expires_at(queue_started_ + std::chrono::duration_cast<steady::duration>(
                                                         seconds_f(cursor_ / conn_rate_)));
          connect_timer_.async_wait([this](const error_code& ec) {
            is_connect_timer_armed_ = false;
            if (!ec) {
              pump_connects();
            }
          });
        }
        return;
      }
    }
    ++in_progress_;
    queue_[cursor_++]->start_connect();
  }
}

void worker::start_publishing(steady::time_point start, steady::time_point end) {
  for (auto& c : clients_) {
    c->start_publishing(start, end);
  }
}

void worker::stop_publishing() {
  for (auto& c : clients_) {
    c->stop_publishing();
  }
}

void worker::disconnect_all() {
  queue_.clear();
  cursor_ = 0;
  for (auto& c : clients_) {
    c->disconnect();
  }
}

void worker::note_error(const std::string& e) {
  if (errors_.size() < max_errors_kept) {
    errors_.push_back(e);
  }
}

void worker::note_connect_attempt(steady::time_point t) {
  if (!first_attempt) {
    first_attempt = t;
  }
}

void worker::note_connack(steady::time_point t) { last_connack = t; }

void worker::note_sent(steady::time_point t) {
  if (!first_send) {
    first_send = t;
  }
  last_send = t;
}

void worker::note_received(std::uint64_t now_ns) {
  if (first_recv_ns == 0) {
    first_recv_ns = now_ns;
  }
  last_recv_ns = now_ns;
}

// ---------------------------------------------------------------------------------------------
// the run

struct totals {
  std::uint64_t connected = 0, setup_done = 0, connect_failed = 0, dropped = 0, closed = 0;
  std::uint64_t sent = 0, acked = 0, received = 0, foreign = 0, pubs_done = 0;
};

totals sum(const std::vector<std::unique_ptr<worker>>& workers) {
  totals t;
  for (const auto& w : workers) {
    const counters& c = w->count();
    t.connected += c.connected.get();
    t.setup_done += c.setup_done.get();
    t.connect_failed += c.connect_failed.get();
    t.dropped += c.dropped.get();
    t.closed += c.closed.get();
    t.sent += c.sent.get();
    t.acked += c.acked.get();
    t.received += c.received.get();
    t.foreign += c.foreign.get();
    t.pubs_done += c.pubs_done.get();
  }
  return t;
}

/// Who plays which role, and the default topics of each scenario.
struct plan {
  std::uint32_t idle = 0, pubs = 0, subs = 0;
  std::string topic, filter;
};

plan make_plan(const options& o) {
  plan p;
  switch (o.kind) {
    case scenario::conn:
      p.idle = o.conns;
      break;
    case scenario::pub:
      p.pubs = o.pubs;
      p.topic = "bench/%i";
      break;
    case scenario::sub:
      p.subs = o.subs;
      p.filter = "bench/#";
      break;
    case scenario::fanin:
      p.pubs = o.pubs;
      p.subs = 1;
      p.topic = "bench/fanin/%i";
      p.filter = "bench/fanin/+";
      break;
    case scenario::fanout:
      p.pubs = 1;
      p.subs = o.subs;
      p.topic = p.filter = "bench/fanout";
      break;
    case scenario::pairs:
      p.pubs = p.subs = o.pairs;
      p.topic = p.filter = "bench/pairs/%i";
      break;
  }
  if (!o.topic.empty()) {
    p.topic = o.topic;
  }
  if (!o.filter.empty()) {
    p.filter = o.filter;
  }
  return p;
}

/// Publisher ids (payload stamps) that subscriber `j` of this process should hear from.
std::vector<std::uint32_t> expected_publishers(const options& o, const plan& p, std::uint32_t j) {
  std::vector<std::uint32_t> ids;
  if (o.kind == scenario::fanin) {
    for (std::uint32_t i = 0; i < p.pubs; ++i) {
      ids.push_back(o.id_offset + i);
    }
  } else if (o.kind == scenario::fanout) {
    ids.push_back(o.id_offset);
  } else if (o.kind == scenario::pairs) {
    ids.push_back(o.id_offset + j);
  }
  return ids;
}

class runner {
 public:
  explicit runner(const options& o) : o_(o), sh_(o), plan_(make_plan(o)) {}
  summary run();

 private:
  void setup();
  void connect_group(role r);
  /// Polls until `done` holds, `deadline` passes or a signal arrives; prints progress.
  void wait(const std::function<bool(const totals&)>& done, steady::time_point deadline);
  void progress(const totals& t);
  void publish_phase();
  void drain_phase();
  void hold(seconds_f d);
  void sub_phase();
  void disconnect_phase();
  summary collect();
  template <class F>
  void post_all(F f) {
    for (auto& w : workers_) {
      asio::post(w->ctx(), [f, wp = w.get()] { f(*wp); });
    }
  }

  const options& o_;
  shared_state sh_;
  plan plan_;
  std::vector<std::unique_ptr<worker>> workers_;
  std::vector<std::thread> threads_;
  std::unique_ptr<asio::signal_set> signals_;
  steady::time_point t0_;
  steady::time_point last_progress_;
  totals last_totals_;
  bool is_stalled_ = false;
};

void raise_file_limit(std::uint64_t needed) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      needed + 32 > rl.rlim_cur) {
    throw std::runtime_error(
        std::to_string(needed) + " connections need more than the open-file limit of " +
        std::to_string(rl.rlim_cur) +
        "; run several tern-bench processes with distinct --id-offset instead");
  }
}

std::unique_ptr<ssl::context> make_tls_context(const options& o) {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  error_code ec;
  const auto check = [&ec](const char* what, const std::string& file) {
    if (ec) {
      throw std::runtime_error(std::string(what) + " " + file + ": " + ec.message());
    }
  };
  if (!o.ca_file.empty()) {
    ctx->load_verify_file(o.ca_file, ec);
    check("--cafile", o.ca_file);
    ctx->set_verify_mode(ssl::verify_peer, ec);
  } else {
    ctx->set_verify_mode(ssl::verify_none, ec);
  }
  if (!o.cert_file.empty()) {
    ctx->use_certificate_chain_file(o.cert_file, ec);
    check("--cert", o.cert_file);
    const std::string& key = o.key_file.empty() ? o.cert_file : o.key_file;
    ctx->use_private_key_file(key, ssl::context::pem, ec);
    check("--key", key);
  }
  return ctx;
}

void runner::setup() {
  raise_file_limit(std::uint64_t{plan_.idle} + plan_.pubs + plan_.subs);
  sh_.version = o_.protocol == 5 ? mqtt::protocol_version::v5 : mqtt::protocol_version::v3_1_1;
  sh_.pub_rate = o_.kind == scenario::pairs && o_.pairs > 0 ? o_.rate / o_.pairs : o_.rate;
  {
    asio::io_context io;
    tcp::resolver resolver(io);
    error_code ec;
    const auto found = resolver.resolve(o_.host, std::to_string(o_.port), ec);
    if (ec || found.empty()) {
      throw std::runtime_error("cannot resolve " + o_.host + ": " + ec.message());
    }
    sh_.broker = found.begin()->endpoint();
  }
  if (o_.is_tls) {
    sh_.tls = make_tls_context(o_);
  }
  for (const auto& ip : o_.source_ips) {
    error_code ec;
    const auto a = asio::ip::make_address(ip, ec);
    if (ec) {
      throw std::runtime_error("--source-ip: not an address: " + ip);
    }
    sh_.sources.push_back(a);
  }
  for (int i = 0; i < o_.threads; ++i) {
    workers_.push_back(std::make_unique<worker>(sh_, i));
  }
  // Size the checkers' bitmaps up front when the message count is known.
  const std::uint64_t per_pub =
      o_.count > 0 ? o_.count
                   : static_cast<std::uint64_t>(sh_.pub_rate * o_.duration.count() * 1.1);
  // Clients go to the io threads round robin, subscribers first (fanin: see below).
  std::size_t k = 0;
  const auto next = [&]() -> worker& { return *workers_[k++ % workers_.size()]; };
  for (std::uint32_t j = 0; j < plan_.subs; ++j) {
    client& c =
        next().add(role::subscriber, o_.id_offset + j, expand(plan_.filter, o_.id_offset + j));
    if (per_pub > 0) {
      for (const std::uint32_t pub : expected_publishers(o_, plan_, j)) {
        c.reserve_stream(pub, per_pub);
      }
    }
  }
  if (o_.kind == scenario::fanin && workers_.size() > 1) {
    // The one subscriber gets io thread 0 to itself: sharing it with publishers that write
    // as fast as they can would make the subscriber, not the broker, the bottleneck.
    k = 1;
    for (std::uint32_t i = 0; i < plan_.pubs; ++i) {
      workers_[1 + i % (workers_.size() - 1)]->add(role::publisher, o_.id_offset + i,
                                                   expand(plan_.topic, o_.id_offset + i));
    }
  } else {
    for (std::uint32_t i = 0; i < plan_.pubs; ++i) {
      next().add(role::publisher, o_.id_offset + i, expand(plan_.topic, o_.id_offset + i));
    }
  }
  for (std::uint32_t i = 0; i < plan_.idle; ++i) {
    next().add(role::idle, o_.id_offset + i, {});
  }
  signals_ = std::make_unique<asio::signal_set>(workers_.front()->ctx(), SIGINT, SIGTERM);
  signals_->async_wait([this](const error_code& ec, int) {
    if (!ec) {
      sh_.interrupted = true;
    }
  });
}

void runner::progress(const totals& t) {
  const auto now = steady::now();
  if (o_.is_quiet || now - last_progress_ < std::chrono::seconds(1)) {
    return;
  }
  const double dt = seconds_f(now - last_progress_).count();
  const std::uint64_t total = std::uint64_t{plan_.idle} + plan_.pubs + plan_.subs;
  // Closed after a CONNACK: dropped by the broker or closed by us at the end.
  const std::uint64_t gone = t.closed - std::min(t.closed, t.connect_failed);
  const std::uint64_t live = t.connected - std::min(t.connected, gone);
  std::string line = "[" + std::to_string(static_cast<int>(seconds_f(now - t0_).count())) +
                     "s] conns " + std::to_string(live) + "/" + std::to_string(total);
  if (t.connect_failed + t.dropped > 0) {
    line += " (failed " + std::to_string(t.connect_failed) + ", dropped " +
            std::to_string(t.dropped) + ")";
  }
  if (plan_.pubs + plan_.subs > 0) {
    char buf[160];
    std::snprintf(buf, sizeof buf, " | sent %.0f/s (%llu) | recv %.0f/s (%llu)",
                  static_cast<double>(t.sent - last_totals_.sent) / dt,
                  static_cast<unsigned long long>(t.sent),
                  static_cast<double>(t.received - last_totals_.received) / dt,
                  static_cast<unsigned long long>(t.received));
    line += buf;
    if (o_.qos > 0 && plan_.pubs > 0) {
      line += " | inflight " + std::to_string(t.sent - t.acked);
    }
  }
  std::fprintf(stderr, "%s\n", line.c_str());
  last_progress_ = now;
  last_totals_ = t;
}

void runner::wait(const std::function<bool(const totals&)>& done, steady::time_point deadline) {
  for (;;) {
    const totals t = sum(workers_);
    progress(t);
    if (done(t) || steady::now() >= deadline || sh_.interrupted.load()) {
      return;
    }
    std::this_thread::sleep_for(poll_interval);
  }
}

void runner::connect_group(role r) {
  // Read before posting: connections may complete before this thread looks again.
  const std::uint64_t before = sum(workers_).setup_done;
  std::uint64_t n = 0;
  for (auto& w : workers_) {
    std::vector<client*> group;
    for (auto& c : w->clients()) {
      if (c->kind() == r) {
        group.push_back(c.get());
      }
    }
    n += group.size();
    asio::post(w->ctx(), [wp = w.get(), g = std::move(group)]() mutable { wp->connect(std::move(g)); });
  }
  wait([&](const totals& t) { return t.setup_done >= before + n; }, steady::time_point::max());
}

void runner::publish_phase() {
  const auto start = steady::now() + std::chrono::milliseconds(20);
  const auto end = o_.duration.count() > 0
                       ? start + std::chrono::duration_cast<steady::duration>(o_.duration)
                       : steady::time_point::max();
  post_all([start, end](worker& w) { w.start_publishing(start, end); });
  const std::uint64_t pubs = plan_.pubs;
  // A broker that stops acknowledging would hold QoS 1/2 publishers forever: give up once
  // nothing has been sent or acknowledged for stall_timeout.
  std::uint64_t last_progress = 0;
  auto last_change = steady::now();
  wait(
      [&](const totals& t) {
        const auto now = steady::now();
        if (t.sent + t.acked != last_progress) {
          last_progress = t.sent + t.acked;
          last_change = now;
        }
        const bool can_stall = sh_.pub_rate <= 0 || sh_.pub_rate >= 0.5;
        if (can_stall && now - last_change > stall_timeout && now > start + stall_timeout) {
          std::fprintf(stderr, "publishing stalled for %lld s; stopping\n",
                       static_cast<long long>(stall_timeout.count()));
          is_stalled_ = true;
          return true;
        }
        return t.pubs_done >= pubs;
      },
      end);
  sh_.stop_publishing = true;
  post_all([](worker& w) { w.stop_publishing(); });
  wait([&](const totals& t) { return t.pubs_done >= pubs; },
       steady::now() + std::chrono::seconds(1));
}

void runner::drain_phase() {
  if (sh_.interrupted.load()) {
    return;
  }
  const std::uint64_t sent = sum(workers_).sent;
  std::uint64_t expected = 0;
  if (o_.kind == scenario::fanin || o_.kind == scenario::pairs) {
    expected = sent;
  } else if (o_.kind == scenario::fanout) {
    expected = sent * plan_.subs;
  }
  const bool has_acks = o_.qos > 0;
  wait([&](const totals& t) {
         return (!has_acks || t.acked >= t.sent) && t.received >= expected;
       },
       steady::now() + std::chrono::duration_cast<steady::duration>(o_.drain));
}

void runner::hold(seconds_f d) {
  wait([](const totals&) { return false; },
       steady::now() + std::chrono::duration_cast<steady::duration>(d));
}

void runner::sub_phase() {
  // Ends at --duration, when --pubs x --count deliveries per subscriber have arrived, or when
  // nothing has arrived for --drain after traffic started.
  const auto end = o_.duration.count() > 0
                       ? steady::now() + std::chrono::duration_cast<steady::duration>(o_.duration)
                       : steady::time_point::max();
  const std::uint64_t expected = std::uint64_t{o_.pubs} * o_.count * plan_.subs;
  std::uint64_t last_received = 0;
  auto last_change = steady::now();
  wait([&](const totals& t) {
         const auto now = steady::now();
         if (t.received != last_received) {
           last_received = t.received;
           last_change = now;
         }
         return (expected > 0 && t.received >= expected) ||
                (t.received > 0 && now - last_change > o_.drain);
       },
       end);
}

void runner::disconnect_phase() {
  post_all([](worker& w) { w.disconnect_all(); });
  const std::uint64_t total = std::uint64_t{plan_.idle} + plan_.pubs + plan_.subs;
  const bool was_interrupted = sh_.interrupted.exchange(false);
  wait([&](const totals& t) { return t.closed >= total; },
       steady::now() + std::chrono::seconds(3));
  sh_.interrupted = was_interrupted;
}

summary runner::collect() {
  const totals t = sum(workers_);
  summary s;
  s.scenario = to_string(o_.kind);
  s.protocol = o_.protocol;
  s.qos = o_.qos;
  s.connections = std::uint64_t{plan_.idle} + plan_.pubs + plan_.subs;
  s.connected = t.connected;
  s.connect_failed = t.connect_failed;
  s.disconnected_early = t.dropped;
  s.publishers = plan_.pubs;
  s.subscribers = plan_.subs;
  s.sent = t.sent;
  s.acked = t.acked;
  s.received = t.received;
  s.foreign = t.foreign;
  s.is_stalled = is_stalled_;

  std::optional<steady::time_point> first_attempt, last_connack, first_send, last_send;
  std::uint64_t first_recv = 0, last_recv = 0;
  latency_histogram lat;
  std::vector<std::uint64_t> sent_by(plan_.pubs, 0);
  std::vector<const client*> subs(plan_.subs, nullptr);
  for (const auto& w : workers_) {
    const auto lo = [](auto& a, const auto& b) {
      if (b && (!a || *b < *a)) {
        a = b;
      }
    };
    const auto hi = [](auto& a, const auto& b) {
      if (b && (!a || *b > *a)) {
        a = b;
      }
    };
    lo(first_attempt, w->first_attempt);
    hi(last_connack, w->last_connack);
    lo(first_send, w->first_send);
    hi(last_send, w->last_send);
    if (w->first_recv_ns != 0 && (first_recv == 0 || w->first_recv_ns < first_recv)) {
      first_recv = w->first_recv_ns;
    }
    last_recv = std::max(last_recv, w->last_recv_ns);
    lat.merge(w->latency());
    for (const auto& e : w->errors()) {
      if (s.errors.size() < max_errors_kept) {
        s.errors.push_back(e);
      }
    }
    for (const auto& c : w->clients()) {
      if (c->kind() == role::publisher) {
        sent_by[c->index() - o_.id_offset] = c->sent();
      } else if (c->kind() == role::subscriber) {
        subs[c->index() - o_.id_offset] = c.get();
      }
    }
  }
  if (first_attempt && last_connack) {
    s.connect_seconds = seconds_f(*last_connack - *first_attempt).count();
    s.connect_rate = s.connect_seconds > 0 ? static_cast<double>(s.connected) / s.connect_seconds : 0;
  }
  if (first_send && last_send) {
    s.publish_seconds = seconds_f(*last_send - *first_send).count();
    s.sent_rate = s.publish_seconds > 0 ? static_cast<double>(s.sent) / s.publish_seconds : 0;
  }
  if (first_recv != 0) {
    s.receive_seconds = static_cast<double>(last_recv - first_recv) / 1e9;
    s.received_rate =
        s.receive_seconds > 0 ? static_cast<double>(s.received) / s.receive_seconds : 0;
  }
  set_latency(s, lat);

  std::uint64_t distinct = 0;
  for (std::uint32_t j = 0; j < plan_.subs; ++j) {
    const delivery_checker& ch = subs[j]->checker();
    for (const auto& [pub, st] : ch.streams()) {
      s.duplicated += st.duplicated;
      s.reordered += st.reordered;
      distinct += st.distinct;
      if (o_.kind == scenario::sub && !(o_.pubs > 0 && o_.count > 0)) {
        const std::uint64_t want = o_.count > 0 ? o_.count : st.max_seq + 1;
        s.expected += want;
        s.lost += want - std::min(want, st.distinct);
      }
    }
    for (const std::uint32_t pub : expected_publishers(o_, plan_, j)) {
      const std::uint64_t want = sent_by[pub - o_.id_offset];
      s.expected += want;
      s.lost += want - std::min(want, ch.distinct_from(pub));
    }
  }
  if (o_.kind == scenario::sub && o_.pubs > 0 && o_.count > 0) {
    s.expected = std::uint64_t{o_.pubs} * o_.count * plan_.subs;
    s.lost = s.expected - std::min(s.expected, distinct);
  }
  s.has_expected = plan_.subs > 0;
  return s;
}

summary runner::run() {
  setup();
  t0_ = last_progress_ = steady::now();
  for (auto& w : workers_) {
    threads_.emplace_back([wp = w.get()] { wp->run(); });
  }
  if (plan_.subs > 0) {
    connect_group(role::subscriber);
  }
  if (plan_.pubs > 0 && !sh_.interrupted.load()) {
    connect_group(role::publisher);
  }
  if (plan_.idle > 0 && !sh_.interrupted.load()) {
    connect_group(role::idle);
  }
  if (!sh_.interrupted.load()) {
    if (o_.kind == scenario::conn) {
      hold(o_.duration);
    } else if (o_.kind == scenario::sub) {
      sub_phase();
    } else {
      publish_phase();
      drain_phase();
    }
  }
  disconnect_phase();
  progress(sum(workers_));
  signals_->cancel();
  for (auto& w : workers_) {
    w->stop();
  }
  for (auto& th : threads_) {
    th.join();
  }
  return collect();
}

}  // namespace

bool parse_scenario(const std::string& name, scenario& out) {
  for (const scenario s : {scenario::conn, scenario::pub, scenario::sub, scenario::fanin,
                           scenario::fanout, scenario::pairs}) {
    if (name == to_string(s)) {
      out = s;
      return true;
    }
  }
  return false;
}

const char* to_string(scenario s) {
  switch (s) {
    case scenario::conn:
      return "conn";
    case scenario::pub:
      return "pub";
    case scenario::sub:
      return "sub";
    case scenario::fanin:
      return "fanin";
    case scenario::fanout:
      return "fanout";
    case scenario::pairs:
      return "pairs";
  }
  return "?";
}

summary run(const options& o) {
  runner r(o);
  return r.run();
}

}  // namespace tern::bench
