// Socket side of a client connection: readiness-driven reads, batched thread-safe writes.
#include "actors/connection/conn_io.hpp"

#include <array>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include "actors/broker/context.hpp"
#include "actors/broker/types.hpp"

namespace tern::actors::connection {

namespace {

namespace asio = boost::asio;
using boost::system::error_code;

// Packets handed to the owner but not yet processed: above high, reading pauses until the
// owner has caught up to low. Bounds the owner's mailbox per connection.
constexpr std::int32_t unconsumed_high = 256;
constexpr std::int32_t unconsumed_low = 64;
// Reads per readiness event before yielding to other connections on this thread.
constexpr int max_reads_per_event = 16;

std::int64_t to_ns(conn_io::clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

}  // namespace

conn_io::conn_io(asio::ip::tcp::socket sock, std::uint32_t max_packet_size,
                 std::uint32_t max_send_buffer, std::uint64_t id)
    : sock_(std::move(sock)), dec_(max_packet_size), id_(id), max_send_(max_send_buffer) {
  error_code ec;
  auto ep = sock_.remote_endpoint(ec);
  if (!ec) {
    peer_ = ep.address().is_v6() ? "[" + ep.address().to_string() + "]:" + std::to_string(ep.port())
                                 : ep.address().to_string() + ":" + std::to_string(ep.port());
  }
  sock_.non_blocking(true, ec);
  sock_.set_option(asio::ip::tcp::no_delay(true), ec);
}

void conn_io::start(caf::actor owner, clock::duration connect_timeout) {
  owner_ = std::move(owner);
  deadline_ns_ = to_ns(clock::now() + connect_timeout);
  auto self = shared_from_this();
  asio::post(sock_.get_executor(), [self] { self->wait_readable(); });
}

void conn_io::set_version(proto::mqtt::protocol_version v) {
  auto self = shared_from_this();
  asio::post(sock_.get_executor(), [self, v] { self->dec_.set_version(v); });
}

void conn_io::set_keepalive(std::chrono::milliseconds allowed_silence) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(allowed_silence).count();
  silence_ns_ = ns;
  deadline_ns_ = ns == 0 ? 0 : to_ns(clock::now()) + ns;
}

void conn_io::check_deadline(clock::time_point now) {
  auto d = deadline_ns_.load(std::memory_order_relaxed);
  if (d != 0 && to_ns(now) > d && !closed_) {
    do_close(silence_ns_ == 0 ? "no CONNECT in time" : "keepalive timeout");
  }
}

void conn_io::wait_readable() {
  if (closed_) {
    return;
  }
  auto self = shared_from_this();
  sock_.async_wait(asio::ip::tcp::socket::wait_read, [self](error_code ec) {
    if (ec) {
      self->do_close(ec == asio::error::operation_aborted ? "closed" : ec.message());
      return;
    }
    self->on_readable();
  });
}

void conn_io::on_readable() {
  thread_local std::array<char, 65536> buf;
  for (int round = 0; round < max_reads_per_event && !closed_; ++round) {
    error_code ec;
    auto n = sock_.read_some(asio::buffer(buf), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      break;
    }
    if (ec) {
      do_close(ec == asio::error::eof ? "peer closed the connection" : ec.message());
      return;
    }
    if (auto s = silence_ns_.load(std::memory_order_relaxed); s != 0) {
      deadline_ns_.store(to_ns(clock::now()) + s, std::memory_order_relaxed);
    }
    if (counters_) {
      counters_->bytes_received.fetch_add(n, std::memory_order_relaxed);
    }
    dec_.feed(std::string_view(buf.data(), n));
    proto::mqtt::packet p;
    for (;;) {
      auto st = dec_.next(p);
      if (st == proto::mqtt::decode_status::need_more) {
        break;
      }
      if (st == proto::mqtt::decode_status::error) {
        auto& e = dec_.error();
        spdlog::info("conn {} {}: bad packet ({:#04x} {}), closing", id_, peer_,
                     static_cast<unsigned>(e.code), e.detail);
        if (e.code == proto::mqtt::reason_code::unsupported_protocol_version) {
          // [MQTT-3.1.2-2] answer an unknown protocol level with CONNACK 0x01, then close.
          static const char refuse[] = {0x20, 0x02, 0x00, 0x01};
          error_code ignored;
          asio::write(sock_, asio::buffer(refuse, sizeof(refuse)), ignored);
        } else if (dec_.version() == proto::mqtt::protocol_version::v5 && owner_) {
          // [MQTT-4.13.1-1] a v5 peer is told why before the connection closes.
          proto::mqtt::disconnect d;
          d.reason = static_cast<std::uint8_t>(e.code);
          std::string bytes;
          proto::mqtt::encode(d, proto::mqtt::protocol_version::v5, bytes);
          error_code ignored;
          asio::write(sock_, asio::buffer(bytes), ignored);
        }
        do_close("protocol error: " + e.detail);
        return;
      }
      unconsumed_.fetch_add(1, std::memory_order_relaxed);
      if (counters_) {
        auto* pub = std::get_if<proto::mqtt::publish>(&p);
        counters_->count_in(static_cast<unsigned>(proto::mqtt::type_of(p)),
                            pub ? static_cast<unsigned>(pub->q) : 0);
      }
      caf::anon_send(owner_, packet_atom::value, std::move(p));
      p = proto::mqtt::packet{};
    }
    if (n < buf.size()) {
      break;
    }
  }
  if (closed_) {
    return;
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

void conn_io::consumed(std::uint32_t n) {
  auto left = unconsumed_.fetch_sub(static_cast<std::int32_t>(n)) - static_cast<std::int32_t>(n);
  if (left < unconsumed_low && read_paused_.load() && read_paused_.exchange(false)) {
    auto self = shared_from_this();
    asio::post(sock_.get_executor(), [self] { self->wait_readable(); });
  }
}

bool conn_io::send(std::string bytes) {
  if (bytes.empty()) {
    return true;
  }
  bool start = false;
  {
    std::lock_guard lock{out_mtx_};
    if (closed_ || close_after_flush_) {
      return false;
    }
    auto backlog = backlog_.fetch_add(bytes.size()) + bytes.size();
    if (backlog > 2 * static_cast<std::size_t>(max_send_)) {
      // The client does not read: stop before it grows our memory without bound.
      close_after_flush_ = true;
      close_reason_ = "send buffer overflow (client not reading)";
      auto self = shared_from_this();
      asio::post(sock_.get_executor(), [self] { self->do_close(self->close_reason_); });
      return false;
    }
    if (counters_) {
      counters_->count_out(bytes);
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
    asio::post(sock_.get_executor(), [self] { self->flush(); });
  }
  return true;
}

void conn_io::flush() {
  {
    std::lock_guard lock{out_mtx_};
    if (closed_) {
      write_pending_ = false;
      return;
    }
    if (out_.empty()) {
      write_pending_ = false;
      if (close_after_flush_) {
        do_close(close_reason_);
      }
      return;
    }
    writing_.clear();
    writing_.swap(out_);
  }
  auto self = shared_from_this();
  asio::async_write(sock_, asio::buffer(writing_), [self](error_code ec, std::size_t n) {
    self->backlog_.fetch_sub(n);
    if (ec) {
      {
        std::lock_guard lock{self->out_mtx_};
        self->write_pending_ = false;
      }
      self->do_close(ec.message());
      return;
    }
    if (self->writing_.capacity() > 256 * 1024) {
      std::string().swap(self->writing_);
    }
    self->flush();
  });
}

void conn_io::close(std::string reason, bool flush_first) {
  auto self = shared_from_this();
  {
    std::lock_guard lock{out_mtx_};
    if (flush_first && write_pending_) {
      close_after_flush_ = true;
      close_reason_ = std::move(reason);
      return;
    }
  }
  asio::post(sock_.get_executor(), [self, reason = std::move(reason)] { self->do_close(reason); });
}

void conn_io::do_close(const std::string& reason) {
  // Runs on the io thread only.
  if (!closed_.exchange(true)) {
    error_code ec;
    sock_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    sock_.close(ec);
  }
  if (!notified_ && owner_) {
    notified_ = true;
    caf::anon_send(owner_, closed_atom::value, reason);
    owner_ = caf::actor{};
  }
}

}  // namespace tern::actors::connection
