// Socket side of a client connection: transport handshake, paced reads, batched writes.
#include "actors/connection/conn_io.hpp"

#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <deque>

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "actors/broker/context.hpp"
#include "actors/broker/types.hpp"
#include "actors/listener/listener_state.hpp"
#include "actors/listener/proxy_protocol.hpp"
#include "actors/listener/rate_limit.hpp"

namespace tern::actors::connection {

namespace {

namespace asio = boost::asio;

/// How long a server-initiated close waits for the client to close its side (linger_close).
constexpr std::chrono::seconds linger_max{2};
/// How long a close waits for what it flushes to be written (a client that does not read).
constexpr std::chrono::seconds flush_max{5};
using boost::system::error_code;

// Packets handed to the owner but not yet processed: above high, reading pauses until the
// owner has caught up to low. Bounds the owner's mailbox per connection.
constexpr std::int32_t unconsumed_high = 256;
constexpr std::int32_t unconsumed_low = 64;

// What a flow-paused connection may read and hold before it stops reading its socket: enough
// to get to the acknowledgements behind a client's in-flight window of PUBLISHes, little
// enough that many paused publishers do not add up (the decoder's buffer comes on top).
constexpr std::size_t held_max_packets = 64;
constexpr std::size_t held_max_bytes = 64 * 1024;

// send() writes on the caller's thread only when the previous direct write of this
// connection is at least this old: a connection written to faster than that goes through
// its io thread, which batches what piled up into one write.
constexpr std::uint32_t direct_write_spacing_us = 100;

std::uint32_t now_us() {
  return static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

std::int64_t to_ns(conn_io::clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

}  // namespace

/// Per-connection rate limiting state; allocated only on listeners that limit rates.
struct conn_io::limits {
  limits(const config::listener_config& c, asio::any_io_executor ex, clock::time_point now)
      : bytes(c.max_bytes_in_rate, c.max_bytes_in_burst, now),
        publishes(c.max_publish_rate, c.max_publish_burst, now),
        timer(std::move(ex)) {}

  listener::token_bucket bytes;
  listener::token_bucket publishes;
  asio::steady_timer timer;
  bool has_logged = false;
  bool has_buffered_packets = false;  // decoded input held back by the PUBLISH rate
};

/// Packets read during a flow pause and not yet handed to the owner (see pause_reading).
struct conn_io::held_packets {
  std::deque<proto::mqtt::packet> packets;
  std::size_t bytes = 0;
};

conn_io::conn_io(std::unique_ptr<listener::transport> t, std::uint32_t max_packet_size,
                 std::uint32_t max_send_buffer, std::uint64_t id,
                 std::shared_ptr<listener::listener_state> listener)
    : transport_(std::move(t)),
      listener_(std::move(listener)),
      dec_(max_packet_size),
      id_(id),
      max_send_(max_send_buffer) {
  auto& sock = transport_->socket();
  error_code ec;
  auto ep = sock.remote_endpoint(ec);
  if (!ec) {
    peer_ = listener::peer_address::from_ip(ep.address().to_string(), ep.port());
  }
  sock.non_blocking(true, ec);
  sock.set_option(asio::ip::tcp::no_delay(true), ec);
  // Half-open connections of clients without an MQTT keepalive are found by TCP's.
  sock.set_option(asio::socket_base::keep_alive(true), ec);
  if (listener_) {
    const auto& c = listener_->cfg;
    if (c.max_bytes_in_rate > 0 || c.max_publish_rate > 0) {
      limits_ = std::make_unique<limits>(c, sock.get_executor(), clock::now());
    }
  }
  can_write_directly_ = std::strcmp(transport_->kind(), "tcp") == 0;
}

conn_io::~conn_io() {
  if (!closed_.load() && listener_) {
    listener_->active.fetch_sub(1, std::memory_order_relaxed);
  }
}

void conn_io::start(caf::actor owner, clock::duration connect_timeout) {
  owner_ = std::move(owner);
  deadline_ns_ = to_ns(clock::now() + connect_timeout);
  auto self = shared_from_this();
  asio::post(transport_->socket().get_executor(), [self] {
    if (self->listener_ && self->listener_->cfg.proxy_protocol) {
      self->proxy_buf_ = std::make_unique<std::string>();
      self->read_proxy_header();
    } else {
      self->start_transport();
    }
  });
}

void conn_io::read_proxy_header() {
  auto self = shared_from_this();
  transport_->socket().async_wait(asio::ip::tcp::socket::wait_read, [self](error_code ec) {
    if (ec) {
      self->on_read_error(ec == asio::error::operation_aborted ? "closed" : ec.message());
      return;
    }
    if (self->closed_) {
      return;
    }
    auto& sock = self->transport_->socket();
    auto& got = *self->proxy_buf_;
    // Peek, then consume only the bytes that belong to the header: what follows it is the
    // client's TLS, WebSocket or MQTT stream and must stay in the socket for the transport.
    std::array<char, listener::proxy_v2_max> tmp;
    error_code rec;
    auto n = sock.receive(asio::buffer(tmp), asio::socket_base::message_peek, rec);
    if (rec == asio::error::would_block || rec == asio::error::try_again) {
      self->read_proxy_header();
      return;
    }
    if (rec) {
      self->on_read_error(rec == asio::error::eof ? "peer closed the connection" : rec.message());
      return;
    }
    std::string view = got + std::string(tmp.data(), n);
    auto r = listener::parse_proxy_header(view);
    if (r.st == listener::proxy_result::status::error) {
      self->listener_->ctx->stats.handshake_failures.fetch_add(1, std::memory_order_relaxed);
      spdlog::info("conn {} {}: bad PROXY protocol header ({}), closing", self->id_, self->peer(),
                   r.error);
      self->do_close("bad PROXY protocol header: " + r.error);
      return;
    }
    auto take = r.length - got.size();
    if (take > 0) {
      auto m = sock.receive(asio::buffer(tmp.data(), take), 0, rec);
      if (rec || m != take) {
        self->do_close("PROXY protocol header: read failed");
        return;
      }
      got.append(tmp.data(), m);
    }
    if (r.st == listener::proxy_result::status::need_more) {
      self->read_proxy_header();
      return;
    }
    const auto& h = r.header;
    if (!h.is_local) {
      auto via = self->peer();
      self->peer_ = listener::peer_address::from_ip(h.source_ip, h.source_port);
      spdlog::info("conn {}: PROXY v{} header: client {} (via {})", self->id_, h.version,
                   self->peer(), via);
    } else {
      spdlog::debug("conn {} {}: PROXY v{} header without a client address", self->id_,
                    self->peer(), h.version);
    }
    self->proxy_buf_.reset();
    self->start_transport();
  });
}

void conn_io::start_transport() {
  if (closed_) {
    return;
  }
  transport_->handshake(shared_from_this());
}

void conn_io::on_handshake(const std::string& error) {
  if (closed_) {
    return;
  }
  if (!error.empty()) {
    if (listener_) {
      listener_->ctx->stats.handshake_failures.fetch_add(1, std::memory_order_relaxed);
    }
    spdlog::info("conn {} {}: {} handshake failed: {}", id_, peer(), transport_->kind(), error);
    do_close(std::string(transport_->kind()) + " handshake failed: " + error);
    return;
  }
  if (auto cert = transport_->client_cert(); cert.is_present) {
    spdlog::debug("conn {} {}: client certificate CN={} SAN={}", id_, peer(), cert.cn, cert.san);
    cert_ = std::make_unique<listener::peer_cert>(std::move(cert));
  }
  wait_readable();
}

const listener::peer_cert& conn_io::client_cert() const {
  static const listener::peer_cert none;
  return cert_ ? *cert_ : none;
}

std::string conn_io::cert_field(const std::string& which) const {
  if (!cert_) {
    return {};
  }
  if (which == "cn") {
    return cert_->cn;
  }
  if (which == "san") {
    return cert_->san;
  }
  return {};
}

std::string conn_io::cert_username() const {
  return listener_ ? cert_field(listener_->cfg.peer_cert_as_username) : std::string();
}

std::string conn_io::cert_clientid() const {
  return listener_ ? cert_field(listener_->cfg.peer_cert_as_clientid) : std::string();
}

void conn_io::set_version(proto::mqtt::protocol_version v) {
  auto self = shared_from_this();
  asio::post(transport_->socket().get_executor(), [self, v] { self->dec_.set_version(v); });
}

void conn_io::set_keepalive(std::chrono::milliseconds allowed_silence) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(allowed_silence).count();
  silence_ns_ = ns;
  deadline_ns_ = ns == 0 ? 0 : to_ns(clock::now()) + ns;
}

void conn_io::check_deadline(clock::time_point now) {
  if (auto f = flow_until_ns_.load(std::memory_order_relaxed); f != 0 && to_ns(now) > f) {
    spdlog::debug("conn {} {}: reading again after flow.max_pause", id_, peer());
    resume_reading();
  }
  auto d = deadline_ns_.load(std::memory_order_relaxed);
  bool paused_by_flow = flow_until_ns_.load(std::memory_order_relaxed) != 0;
  if (d != 0 && to_ns(now) > d && !closed_ && !paused_by_flow) {
    if (silence_ns_ == 0) {
      if (listener_) {
        listener_->ctx->stats.connect_timeouts.fetch_add(1, std::memory_order_relaxed);
      }
      spdlog::info("conn {} {}: no CONNECT in time, closing", id_, peer());
      do_close("no CONNECT in time");
    } else {
      do_close("keepalive timeout");
    }
  }
}

void conn_io::wait_readable() {
  if (closed_ || stop_reading_) {
    return;
  }
  transport_->read(shared_from_this());
}

bool conn_io::on_input(std::string_view bytes) {
  if (closed_ || stop_reading_) {
    return false;
  }
  auto now = clock::now();
  if (auto s = silence_ns_.load(std::memory_order_relaxed); s != 0) {
    deadline_ns_.store(to_ns(now) + s, std::memory_order_relaxed);
  }
  if (counters_) {
    counters_->bytes_received.fetch_add(bytes.size(), std::memory_order_relaxed);
  }
  bool keep_reading = true;
  if (limits_ && !limits_->bytes.take(static_cast<double>(bytes.size()), now)) {
    keep_reading = false;
  }
  dec_.feed(bytes);
  return decode_buffered(now) && keep_reading &&
         unconsumed_.load(std::memory_order_relaxed) < unconsumed_high;
}

namespace {

/// The CONNACK that answers a CONNECT the decoder refused, or "" to close without one.
/// MQTT 5 (level 5) gets the reason [MQTT-3.1.4-1] [MQTT-4.13.1-1]: 0x84 for a wrong
/// protocol name, 0x85 for a client identifier that is not UTF-8, 0x82 or 0x81 otherwise. An
/// unsupported level gets 0x01 in the 3.1.1 format [MQTT-3.1.2-2] (a client of another level
/// reads it as a refusal too); any other 3.1/3.1.1 CONNECT is closed without [MQTT-3.1.4-1].
std::string refusal_of(const proto::mqtt::decode_error& e) {
  using rc = proto::mqtt::reason_code;
  std::string out;
  if (e.connect_level == 5) {
    proto::mqtt::connack ack;
    auto code = e.code;
    if (code != rc::unsupported_protocol_version && code != rc::client_identifier_not_valid &&
        code != rc::protocol_error && code != rc::packet_too_large) {
      code = rc::malformed_packet;
    }
    ack.reason = static_cast<std::uint8_t>(code);
    proto::mqtt::encode(ack, proto::mqtt::protocol_version::v5, out);
  } else if (e.code == rc::unsupported_protocol_version && !e.bad_protocol_name) {
    out.assign("\x20\x02\x00\x01", 4);
  }
  return out;
}

}  // namespace

bool conn_io::decode_buffered(clock::time_point now) {
  proto::mqtt::packet p;
  for (;;) {
    auto st = dec_.next(p);
    if (st == proto::mqtt::decode_status::need_more) {
      break;
    }
    if (st == proto::mqtt::decode_status::error) {
      auto& e = dec_.error();
      spdlog::info("conn {} {}: bad packet ({:#04x} {}), closing", id_, peer(),
                   static_cast<unsigned>(e.code), e.detail);
      std::string answer;
      if (e.in_connect) {
        answer = refusal_of(e);
      } else if (dec_.version() == proto::mqtt::protocol_version::v5 && owner_ &&
                 may_disconnect_.load(std::memory_order_acquire)) {
        // [MQTT-4.13.1-1] a v5 peer is told why before the connection closes, once it has
        // its CONNACK: nothing else may come first [MQTT-3.2.0-1].
        proto::mqtt::disconnect d;
        d.reason = static_cast<std::uint8_t>(e.code);
        proto::mqtt::encode(d, proto::mqtt::protocol_version::v5, answer);
      }
      stop_reading_ = true;
      send_last(std::move(answer), "protocol error: " + e.detail);
      return false;
    }
    bool is_over_rate = limits_ && std::holds_alternative<proto::mqtt::publish>(p) &&
                        !limits_->publishes.take(1, now);
    auto* pub = std::get_if<proto::mqtt::publish>(&p);
    if (counters_) {
      counters_->count_in(static_cast<unsigned>(proto::mqtt::type_of(p)),
                          pub ? static_cast<unsigned>(pub->q) : 0);
    }
    if (holds(p)) {
      if (!held_) {
        held_ = std::make_unique<held_packets>();
        spdlog::trace("conn {} {}: holding what it publishes (flow pause)", id_, peer());
      }
      held_->bytes += pub ? pub->topic.size() + pub->payload.size() + 64 : 64;
      held_->packets.push_back(std::move(p));
      p = proto::mqtt::packet{};
      if (is_held_full()) {
        return false;  // the rest waits in the decoder; release_held() reads on
      }
      continue;  // a publish held back is paid for in the rate bucket, not paused for here
    }
    deliver(std::move(p));
    p = proto::mqtt::packet{};
    if (is_over_rate) {
      // Packets already read but over the PUBLISH rate stay in the decoder until the
      // bucket refills: pausing the socket alone would not hold them back.
      limits_->has_buffered_packets = true;
      return false;
    }
  }
  if (limits_) {
    limits_->has_buffered_packets = false;
  }
  return true;
}

void conn_io::deliver(proto::mqtt::packet&& p) {
  unconsumed_.fetch_add(1, std::memory_order_relaxed);
  caf::anon_send(owner_, packet_atom::value, std::move(p));
}

bool conn_io::holds(const proto::mqtt::packet& p) const {
  if (flow_until_ns_.load(std::memory_order_relaxed) == 0) {
    // Not paused, or resumed with packets still held: nothing overtakes them.
    return held_ && !held_->packets.empty();
  }
  switch (proto::mqtt::type_of(p)) {
    case proto::mqtt::packet_type::puback:
    case proto::mqtt::packet_type::pubrec:
    case proto::mqtt::packet_type::pubrel:
    case proto::mqtt::packet_type::pubcomp:
    case proto::mqtt::packet_type::pingreq:
      return false;  // answers the broker or asks nothing of anybody else: may overtake
    default:
      return true;
  }
}

bool conn_io::is_held_full() const {
  return held_ &&
         (held_->packets.size() >= held_max_packets || held_->bytes >= held_max_bytes);
}

void conn_io::release_held() {
  // Runs on the io thread.
  if (held_ && owner_) {
    for (auto& p : held_->packets) {
      deliver(std::move(p));
    }
  }
  held_.reset();
  if (stopped_for_held_ && !closed_ && !stop_reading_) {
    stopped_for_held_ = false;
    decode_buffered(clock::now());
    after_input();  // reads on, unless paused again, rate limited or behind
  }
}

void conn_io::after_input() {
  if (closed_ || stop_reading_) {
    return;
  }
  if (is_held_full()) {
    stopped_for_held_ = true;
    return;
  }
  if (limits_) {
    auto now = clock::now();
    auto bytes_wait = limits_->bytes.delay(now);
    auto pub_wait = limits_->publishes.delay(now);
    auto wait = std::max(bytes_wait, pub_wait);
    if (wait.count() > 0) {
      auto& stats = listener_->ctx->stats;
      if (bytes_wait.count() > 0) {
        stats.bytes_in_limited.fetch_add(1, std::memory_order_relaxed);
      }
      if (pub_wait.count() > 0) {
        stats.publish_in_limited.fetch_add(1, std::memory_order_relaxed);
      }
      const char* which = bytes_wait >= pub_wait ? "max_bytes_in_rate" : "max_publish_rate";
      if (!limits_->has_logged) {
        limits_->has_logged = true;
        spdlog::info("conn {} {}: listener {} {} reached, pausing reads for {} ms", id_, peer(),
                     listener_->id, which, wait.count());
      } else {
        spdlog::trace("conn {} {}: {} reached, pausing reads for {} ms", id_, peer(), which,
                      wait.count());
      }
      pause_for(wait);
      return;
    }
    if (limits_->has_buffered_packets && !decode_buffered(now)) {
      after_input();  // paused again by the PUBLISH rate (or closed)
      return;
    }
  }
  if (unconsumed_.load() >= unconsumed_high) {
    read_paused_ = true;
    // The owner may have caught up between the check and the flag: re-check.
    if (unconsumed_.load() >= unconsumed_low || !read_paused_.exchange(false)) {
      return;
    }
  }
  wait_readable();
}

void conn_io::pause_for(clock::duration d) {
  auto self = shared_from_this();
  limits_->timer.expires_after(d);
  limits_->timer.async_wait([self](error_code ec) {
    if (!ec) {
      self->after_input();
    }
  });
}

void conn_io::on_read_error(const std::string& reason) { do_close(reason); }

void conn_io::consumed(std::uint32_t n) {
  auto left = unconsumed_.fetch_sub(static_cast<std::int32_t>(n)) - static_cast<std::int32_t>(n);
  if (left < unconsumed_low && read_paused_.load() && read_paused_.exchange(false)) {
    auto self = shared_from_this();
    asio::post(transport_->socket().get_executor(), [self] { self->wait_readable(); });
  }
}

bool conn_io::pause_reading(std::chrono::milliseconds max) {
  std::int64_t none = 0;
  auto until = std::max<std::int64_t>(1, to_ns(clock::now() + max));
  // From the next packet read, what the client publishes is held (holds()).
  return flow_until_ns_.compare_exchange_strong(none, until);
}

void conn_io::resume_reading() {
  if (flow_until_ns_.exchange(0) != 0 && !closed_.load()) {
    // The socket may not have been read for a while (held_ full): the keepalive starts afresh.
    if (auto silence = silence_ns_.load(); silence != 0) {
      deadline_ns_ = to_ns(clock::now()) + silence;
    }
    auto self = shared_from_this();
    asio::post(transport_->socket().get_executor(), [self] { self->release_held(); });
  }
}

bool conn_io::send_connack(std::string bytes, bool allow_disconnect) {
  return send_impl(std::move(bytes), allow_disconnect, nullptr);
}

bool conn_io::send(std::string bytes) { return send_impl(std::move(bytes), false, nullptr); }

void conn_io::send_last(std::string bytes, std::string reason) {
  if (bytes.empty() || !send_impl(std::move(bytes), false, &reason)) {
    close(std::move(reason), true);
    return;
  }
  arm_flush_deadline();
}

void conn_io::arm_flush_deadline() {
  auto self = shared_from_this();
  asio::post(transport_->socket().get_executor(), [self] {
    if (self->closed_.load() || self->flush_timer_) {
      return;
    }
    self->flush_timer_ = std::make_unique<asio::steady_timer>(
        self->transport_->socket().get_executor(), flush_max);
    // Weak: the timer is this object's; do_close cancels it.
    self->flush_timer_->async_wait([weak = std::weak_ptr<conn_io>(self)](error_code ec) {
      auto io = weak.lock();
      if (!ec && io) {
        // Still not written: the client does not read. Close without waiting any longer.
        io->do_close("closed: the last packets were not read in time", false);
      }
    });
  });
}

bool conn_io::send_impl(std::string bytes, bool allow_disconnect, std::string* last) {
  if (bytes.empty()) {
    return true;
  }
  bool start = false;
  {
    std::lock_guard lock{out_mtx_};
    if (closed_ || close_after_flush_) {
      return false;
    }
    if (allow_disconnect) {
      // Set under the lock that orders writes: a DISCONNECT the io thread sends once it sees
      // this (send() takes the lock) goes out after these bytes.
      may_disconnect_.store(true, std::memory_order_release);
    }
    auto backlog = backlog_.fetch_add(bytes.size()) + bytes.size();
    if (backlog > 2 * static_cast<std::size_t>(max_send_)) {
      // The client does not read: stop before it grows our memory without bound.
      backlog_.fetch_sub(bytes.size());
      close_after_flush_ = true;
      close_reason_ = std::make_unique<std::string>("send buffer overflow (client not reading)");
      if (listener_) {
        listener_->ctx->stats.send_buffer_overflows.fetch_add(1, std::memory_order_relaxed);
      }
      spdlog::info("conn {} {}: outgoing buffer over {} bytes (client not reading), closing", id_,
                   peer(), 2 * static_cast<std::size_t>(max_send_));
      auto self = shared_from_this();
      asio::post(transport_->socket().get_executor(),
                 [self] { self->do_close("send buffer overflow (client not reading)"); });
      return false;
    }
    if (counters_) {
      counters_->count_out(bytes);
    }
    if (last != nullptr) {
      // The close is set in the same step as the bytes are queued: nothing another thread
      // sends can come between them [MQTT-3.14.4-1]. It lingers (see close()).
      close_after_flush_ = true;
      linger_ = true;
      close_reason_ = std::make_unique<std::string>(std::move(*last));
    } else if (can_write_directly_ && !write_pending_) {
      // Nothing is queued or being written: a quiet connection gets the bytes written here,
      // saving the hand-off to (and the wake-up of) the io thread; a busy one is batched.
      auto t = now_us();
      if (t - last_direct_us_ >= direct_write_spacing_us) {
        last_direct_us_ = t;
        auto n = write_directly(bytes);
        backlog_.fetch_sub(n);
        if (n == bytes.size()) {
          return true;
        }
        bytes.erase(0, n);  // the rest goes through the io thread
      }
    }
    if (out_.empty()) {
      out_ = std::move(bytes);
    } else {
      out_ += bytes;
    }
    if (!write_pending_) {
      write_pending_ = true;
      start = true;
    }
  }
  if (start) {
    auto self = shared_from_this();
    asio::post(transport_->socket().get_executor(), [self] { self->flush(); });
  }
  return true;
}

std::size_t conn_io::write_directly(const std::string& bytes) {
  // A plain send on the descriptor: the io thread closes it only under out_mtx_ (do_close),
  // and never writes while no write is pending, so this cannot race with either.
  if (closed_) {
    return 0;
  }
  auto fd = transport_->socket().native_handle();
  std::size_t done = 0;
  while (done < bytes.size()) {
    auto n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      break;  // would block, or an error the io thread's write will report
    }
    done += static_cast<std::size_t>(n);
  }
  return done;
}

void conn_io::flush() {
  bool close_now = false;
  std::string reason;
  {
    std::lock_guard lock{out_mtx_};
    if (closed_) {
      write_pending_ = false;
      return;
    }
    if (out_.empty()) {
      write_pending_ = false;
      close_now = close_after_flush_;
      if (close_now) {
        reason = close_reason_ ? *close_reason_ : std::string("closed");
      }
    } else {
      writing_.clear();
      writing_.swap(out_);
    }
  }
  if (close_now) {
    do_close(reason, linger_);
    return;
  }
  if (!writing_.empty()) {
    transport_->write(shared_from_this(), writing_);
  }
}

void conn_io::on_written(const error_code& ec, std::size_t) {
  backlog_.fetch_sub(writing_.size());
  if (ec) {
    {
      std::lock_guard lock{out_mtx_};
      write_pending_ = false;
    }
    do_close(ec == asio::error::operation_aborted ? "closed" : ec.message());
    return;
  }
  if (writing_.capacity() > 256 * 1024) {
    std::string().swap(writing_);
  } else {
    writing_.clear();
  }
  flush();
}

void conn_io::close(std::string reason, bool flush_first) {
  if (closed_.load()) {
    // Already closed on the io thread; at shutdown its io_context may be gone already, so
    // nothing may be posted to it.
    return;
  }
  auto self = shared_from_this();
  bool deferred = false;
  {
    std::lock_guard lock{out_mtx_};
    // From here send() refuses: nothing may follow a close on the wire (say a PUBLISH written
    // directly after the DISCONNECT that closes the connection [MQTT-3.14.4-1]).
    if (!close_after_flush_) {
      linger_ = flush_first;
    }
    close_after_flush_ = true;
    if (flush_first && write_pending_) {
      close_reason_ = std::make_unique<std::string>(std::move(reason));
      deferred = true;
    }
  }
  if (deferred) {
    arm_flush_deadline();
    return;
  }
  asio::post(transport_->socket().get_executor(),
             [self, reason = std::move(reason), flush_first] {
               self->do_close(reason, flush_first);
             });
}

void conn_io::close_for_shutdown(const std::string& v5_disconnect) {
  std::string bytes;
  if (may_disconnect_.load(std::memory_order_acquire)) {
    bytes = v5_disconnect;
    auto max = max_packet_out_.load(std::memory_order_relaxed);
    if (max != 0 && bytes.size() > max) {
      // [MQTT-3.1.2-24] without its properties: fixed header, length 1, the reason code
      // (the byte behind the remaining length).
      std::size_t i = 1;
      while (i < bytes.size() && (static_cast<unsigned char>(bytes[i]) & 0x80U) != 0) {
        ++i;
      }
      bytes = max >= 3 && i + 1 < bytes.size() ? std::string{bytes[0], '\x01', bytes[i + 1]}
                                               : std::string();
    }
  }
  send_last(std::move(bytes), "server shutting down");
}

void conn_io::do_close(const std::string& reason, bool linger) {
  // Runs on the io thread only.
  bool was_closed;
  {
    // Under out_mtx_: send() may be writing to the descriptor directly (write_directly).
    std::lock_guard lock{out_mtx_};
    was_closed = closed_.exchange(true);
    if (!was_closed && !linger) {
      transport_->close();
    }
  }
  if (!was_closed && linger) {
    linger_close();
  }
  if (!was_closed) {
    if (limits_) {
      limits_->timer.cancel();
    }
    if (flush_timer_) {
      flush_timer_->cancel();
    }
    if (listener_) {
      listener_->active.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  if (!notified_ && owner_) {
    // What was read in a flow pause goes first: a held DISCONNECT must precede the close.
    release_held();
    notified_ = true;
    caf::anon_send(owner_, closed_atom::value, reason);
    owner_ = caf::actor{};
  }
}

void conn_io::linger_close() {
  auto& sock = transport_->socket();
  error_code ec;
  // The transport's own read completes as aborted (and finds the connection closed).
  sock.cancel(ec);
  sock.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  if (!ec) {
    sock.non_blocking(true, ec);
  }
  if (ec) {
    transport_->close();
    return;
  }
  auto timer = std::make_shared<asio::steady_timer>(sock.get_executor(), linger_max);
  auto self = shared_from_this();
  timer->async_wait([self, timer](error_code e) {
    if (e != asio::error::operation_aborted) {
      self->transport_->close();  // the drain's wait completes aborted and stops
    }
  });
  drain_lingering(std::move(timer));
}

void conn_io::drain_lingering(std::shared_ptr<asio::steady_timer> timer) {
  auto self = shared_from_this();
  transport_->socket().async_wait(
      asio::ip::tcp::socket::wait_read, [self, timer = std::move(timer)](error_code ec) mutable {
        auto& sock = self->transport_->socket();
        if (ec || !sock.is_open()) {
          return;  // closed by the timer
        }
        thread_local std::array<char, 16 * 1024> scratch;  // discarded input
        for (;;) {
          error_code rec;
          auto n = sock.read_some(asio::buffer(scratch), rec);
          if (rec == asio::error::would_block || rec == asio::error::try_again) {
            break;
          }
          if (rec || n == 0) {
            // The client closed (or reset): nothing unread is left to cause a reset.
            timer->cancel();
            self->transport_->close();
            return;
          }
        }
        self->drain_lingering(std::move(timer));
      });
}

}  // namespace tern::actors::connection
