// Unit tests for actors/session/session: inflight window, queue and drop policy, packet ids,
// QoS 2 outbound flow, resume, retry and the inbound awaiting-PUBREL table. Fake time only.
#include "actors/session/session.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <variant>
#include <vector>

namespace {

using namespace std::chrono_literals;
using tern::actors::message;
using tern::actors::message_ptr;
using tern::actors::session::clock;
using tern::actors::session::deliver_result;
using tern::actors::session::delivery;
using tern::actors::session::out_list;
using tern::actors::session::out_publish;
using tern::actors::session::out_pubrel;
using tern::actors::session::outgoing;
using tern::actors::session::qos;
using tern::actors::session::rel_result;
using tern::actors::session::session;
using tern::actors::session::settings;

// Fake time: a fixed base point plus offsets; the session never reads a clock of its own.
const clock::time_point t0 = clock::time_point{} + 1000h;

message_ptr make_msg(const std::string& payload, const std::string& topic = "t/1") {
  auto m = std::make_shared<message>();
  m->topic = topic;
  m->payload = payload;
  return m;
}

delivery make_delivery(qos q, const std::string& payload) {
  delivery d;
  d.msg = make_msg(payload);
  d.q = q;
  return d;
}

const out_publish& as_pub(const outgoing& o) {
  const auto* p = std::get_if<out_publish>(&o);
  REQUIRE(p != nullptr);
  return *p;
}

std::uint16_t as_rel(const outgoing& o) {
  const auto* r = std::get_if<out_pubrel>(&o);
  REQUIRE(r != nullptr);
  return r->packet_id;
}

// One readable token per outgoing packet: "<payload>" for a fresh PUBLISH, "<payload>+dup"
// for a resent one, "rel:<id>" for a PUBREL.
std::vector<std::string> summary(const out_list& out) {
  std::vector<std::string> s;
  for (const auto& o : out) {
    if (const auto* p = std::get_if<out_publish>(&o)) {
      std::string tok = p->d.msg ? p->d.msg->payload : std::string("<null>");
      if (p->dup) {
        tok += "+dup";
      }
      s.push_back(tok);
    } else {
      s.push_back("rel:" + std::to_string(std::get<out_pubrel>(o).packet_id));
    }
  }
  return s;
}

using strings = std::vector<std::string>;

settings with_window(std::uint32_t max_inflight, std::uint32_t max_queued = 1000) {
  settings s;
  s.max_inflight = max_inflight;
  s.max_queued = max_queued;
  return s;
}

}  // namespace

TEST_CASE("session: starts offline; resume and pause switch the state", "[session]") {
  session s{settings{}};
  CHECK_FALSE(s.is_online());
  out_list out;
  s.resume(t0, out);
  CHECK(s.is_online());
  CHECK(out.empty());
  s.pause();
  CHECK_FALSE(s.is_online());
}

TEST_CASE("session: QoS 0 online is sent at once without a packet id", "[session]") {
  session s{settings{}};
  out_list out;
  s.resume(t0, out);
  auto d = make_delivery(qos::at_most_once, "hello");
  auto msg = d.msg;
  CHECK(s.deliver(d, t0, out) == deliver_result::sent);
  REQUIRE(out.size() == 1);
  const auto& p = as_pub(out[0]);
  CHECK(p.packet_id == 0);
  CHECK_FALSE(p.dup);
  CHECK(p.d.q == qos::at_most_once);
  CHECK(p.d.msg == msg);  // shared, never copied
  CHECK(s.inflight_size() == 0);
  CHECK(s.queue_size() == 0);
  CHECK(s.dropped() == 0);
}

TEST_CASE("session: QoS 1 and 2 fill the window, then queue", "[session]") {
  session s{with_window(3)};
  out_list out;
  s.resume(t0, out);
  CHECK(s.deliver(make_delivery(qos::at_least_once, "m1"), t0, out) == deliver_result::sent);
  CHECK(s.deliver(make_delivery(qos::exactly_once, "m2"), t0, out) == deliver_result::sent);
  CHECK(s.deliver(make_delivery(qos::at_least_once, "m3"), t0, out) == deliver_result::sent);
  CHECK(s.deliver(make_delivery(qos::exactly_once, "m4"), t0, out) == deliver_result::queued);
  CHECK(s.deliver(make_delivery(qos::at_least_once, "m5"), t0, out) == deliver_result::queued);
  CHECK(summary(out) == strings{"m1", "m2", "m3"});
  CHECK(s.inflight_size() == 3);
  CHECK(s.queue_size() == 2);

  std::set<std::uint16_t> ids;
  for (const auto& o : out) {
    const auto& p = as_pub(o);
    CHECK(p.packet_id != 0);
    CHECK_FALSE(p.dup);
    ids.insert(p.packet_id);
  }
  CHECK(ids.size() == 3);
  CHECK(as_pub(out[1]).d.q == qos::exactly_once);

  SECTION("QoS 0 is not held back by a full window") {
    out.clear();
    CHECK(s.deliver(make_delivery(qos::at_most_once, "q0"), t0, out) == deliver_result::sent);
    CHECK(summary(out) == strings{"q0"});
    CHECK(s.queue_size() == 2);
  }

  SECTION("each ack frees a slot and the next queued message is sent, in order") {
    auto id1 = as_pub(out[0]).packet_id;
    auto id2 = as_pub(out[1]).packet_id;
    auto id3 = as_pub(out[2]).packet_id;
    out.clear();
    CHECK(s.on_puback(id3, t0, out));
    REQUIRE(summary(out) == strings{"m4"});
    auto id4 = as_pub(out[0]).packet_id;
    CHECK(as_pub(out[0]).d.q == qos::exactly_once);
    CHECK(id4 != id1);
    CHECK(id4 != id2);
    CHECK(s.inflight_size() == 3);
    CHECK(s.queue_size() == 1);

    out.clear();
    CHECK(s.on_puback(id1, t0, out));
    REQUIRE(summary(out) == strings{"m5"});
    CHECK(s.queue_size() == 0);

    // The queue is empty again: a new message goes straight out while there is room.
    out.clear();
    CHECK(s.on_pubrec(id2, t0, out));
    CHECK(s.on_pubcomp(id2, t0, out));
    CHECK(s.inflight_size() == 2);
    out.clear();
    CHECK(s.deliver(make_delivery(qos::at_least_once, "m6"), t0, out) == deliver_result::sent);
    CHECK(summary(out) == strings{"m6"});
    CHECK(s.inflight_size() == 3);
  }
}

TEST_CASE("session: packet ids are unique among inflight messages", "[session]") {
  session s{with_window(500)};
  out_list out;
  s.resume(t0, out);
  for (int i = 0; i < 500; ++i) {
    s.deliver(make_delivery(i % 2 ? qos::at_least_once : qos::exactly_once, "m"), t0, out);
  }
  REQUIRE(out.size() == 500);
  std::set<std::uint16_t> ids;
  for (const auto& o : out) {
    ids.insert(as_pub(o).packet_id);
  }
  CHECK(ids.size() == 500);
  CHECK(ids.count(0) == 0);
}

TEST_CASE("session: packet ids wrap 65535 -> 1 and skip ids still in use", "[session]") {
  session s{with_window(3)};
  out_list out;
  s.resume(t0, out);
  // Three messages; the first and third stay unacknowledged for the whole test.
  s.deliver(make_delivery(qos::at_least_once, "held-a"), t0, out);
  s.deliver(make_delivery(qos::at_least_once, "free"), t0, out);
  s.deliver(make_delivery(qos::exactly_once, "held-b"), t0, out);
  REQUIRE(out.size() == 3);
  const auto held_a = as_pub(out[0]).packet_id;
  const auto freed = as_pub(out[1]).packet_id;
  const auto held_b = as_pub(out[2]).packet_id;
  REQUIRE(s.on_puback(freed, t0, out));

  // Cycle 70,000 messages through the free slot: more than the whole id space.
  std::vector<std::uint16_t> seen;
  seen.reserve(70000);
  int bad_ack = 0;
  for (int i = 0; i < 70000; ++i) {
    out.clear();
    s.deliver(make_delivery(qos::at_least_once, "x"), t0, out);
    if (out.size() != 1) {
      FAIL("message " << i << " was not sent");
    }
    auto id = as_pub(out[0]).packet_id;
    seen.push_back(id);
    out.clear();
    if (!s.on_puback(id, t0, out)) {
      ++bad_ack;
    }
  }
  CHECK(bad_ack == 0);

  int zero = 0;
  int reused = 0;
  int not_next = 0;
  bool wrapped = false;
  std::uint16_t prev = freed;
  for (auto id : seen) {
    zero += id == 0;
    reused += id == held_a || id == held_b;
    // The expected successor: prev + 1, 65535 -> 1, skipping the two held ids.
    std::uint16_t expect = prev;
    do {
      expect = static_cast<std::uint16_t>(expect == 65535 ? 1 : expect + 1);
    } while (expect == held_a || expect == held_b);
    not_next += id != expect;
    wrapped = wrapped || (prev == 65535 && id != 0);
    prev = id;
  }
  CHECK(zero == 0);
  CHECK(reused == 0);
  CHECK(not_next == 0);
  CHECK(wrapped);
  CHECK(s.inflight_size() == 2);

  // The held messages are still inflight under their original ids.
  out.clear();
  CHECK(s.on_puback(held_a, t0, out));
  CHECK(s.on_pubrec(held_b, t0, out));
  CHECK(s.on_pubcomp(held_b, t0, out));
  CHECK(s.inflight_size() == 0);
}

TEST_CASE("session: outbound QoS 2 flow PUBLISH -> PUBREC/PUBREL -> PUBCOMP", "[session]") {
  session s{settings{}};
  out_list out;
  s.resume(t0, out);
  CHECK(s.deliver(make_delivery(qos::exactly_once, "q2"), t0, out) == deliver_result::sent);
  REQUIRE(out.size() == 1);
  const auto id = as_pub(out[0]).packet_id;
  CHECK(id != 0);
  out.clear();

  // Wrong-state acks are refused and write nothing.
  CHECK_FALSE(s.on_puback(id, t0, out));
  CHECK_FALSE(s.on_pubcomp(id, t0, out));
  CHECK(out.empty());
  CHECK(s.inflight_size() == 1);

  CHECK(s.on_pubrec(id, t0, out));
  REQUIRE(out.size() == 1);
  CHECK(as_rel(out[0]) == id);
  CHECK(s.inflight_size() == 1);  // still inflight until PUBCOMP
  out.clear();

  // A repeated PUBREC (our PUBREL was lost) is answered with PUBREL again.
  CHECK(s.on_pubrec(id, t0, out));
  REQUIRE(out.size() == 1);
  CHECK(as_rel(out[0]) == id);
  out.clear();

  CHECK_FALSE(s.on_puback(id, t0, out));
  CHECK(s.on_pubcomp(id, t0, out));
  CHECK(s.inflight_size() == 0);
  CHECK_FALSE(s.on_pubcomp(id, t0, out));
  CHECK(out.empty());
}

TEST_CASE("session: acks for unknown ids or QoS 1 entries in the wrong state fail",
          "[session]") {
  session s{settings{}};
  out_list out;
  s.resume(t0, out);
  s.deliver(make_delivery(qos::at_least_once, "q1"), t0, out);
  REQUIRE(out.size() == 1);
  const auto id = as_pub(out[0]).packet_id;
  out.clear();
  const std::uint16_t unknown = static_cast<std::uint16_t>(id + 100);

  CHECK_FALSE(s.on_puback(unknown, t0, out));
  CHECK_FALSE(s.on_pubrec(unknown, t0, out));
  CHECK_FALSE(s.on_pubcomp(unknown, t0, out));
  CHECK_FALSE(s.on_pubrec(id, t0, out));   // QoS 1 is never PUBREC'd
  CHECK_FALSE(s.on_pubcomp(id, t0, out));
  CHECK(out.empty());
  CHECK(s.inflight_size() == 1);
  CHECK(s.on_puback(id, t0, out));
  CHECK_FALSE(s.on_puback(id, t0, out));  // already freed
  CHECK(s.inflight_size() == 0);
}

TEST_CASE("session: offline delivery queues QoS 1/2; QoS 0 only with queue_qos0", "[session]") {
  SECTION("queue_qos0 = true") {
    session s{settings{}};
    out_list out;
    CHECK(s.deliver(make_delivery(qos::at_least_once, "a"), t0, out) == deliver_result::queued);
    CHECK(s.deliver(make_delivery(qos::at_most_once, "b"), t0, out) == deliver_result::queued);
    CHECK(s.deliver(make_delivery(qos::exactly_once, "c"), t0, out) == deliver_result::queued);
    CHECK(out.empty());
    CHECK(s.queue_size() == 3);
    CHECK(s.inflight_size() == 0);
    CHECK(s.dropped() == 0);

    // Reconnect: the queue is written in order; QoS 0 without an id.
    s.resume(t0 + 1s, out);
    REQUIRE(summary(out) == strings{"a", "b", "c"});
    CHECK(as_pub(out[0]).packet_id != 0);
    CHECK(as_pub(out[1]).packet_id == 0);
    CHECK(as_pub(out[2]).packet_id != 0);
    CHECK_FALSE(as_pub(out[0]).dup);
    CHECK(s.queue_size() == 0);
    CHECK(s.inflight_size() == 2);
  }
  SECTION("queue_qos0 = false") {
    settings cfg;
    cfg.queue_qos0 = false;
    session s{cfg};
    out_list out;
    CHECK(s.deliver(make_delivery(qos::at_most_once, "b"), t0, out) == deliver_result::dropped);
    CHECK(s.deliver(make_delivery(qos::at_least_once, "a"), t0, out) == deliver_result::queued);
    CHECK(s.queue_size() == 1);
    CHECK(s.dropped() == 1);
    s.resume(t0, out);
    CHECK(summary(out) == strings{"a"});
    // Online, QoS 0 is sent regardless of queue_qos0.
    out.clear();
    CHECK(s.deliver(make_delivery(qos::at_most_once, "c"), t0, out) == deliver_result::sent);
    CHECK(summary(out) == strings{"c"});
  }
}

TEST_CASE("session: full queue drops QoS 0 first, then the oldest", "[session]") {
  settings cfg = with_window(100, 3);
  session s{cfg};
  out_list out;

  auto drain_all = [&] {
    out_list o;
    s.resume(t0, o);
    return summary(o);
  };

  SECTION("an incoming QoS 1 evicts the oldest QoS 0") {
    s.deliver(make_delivery(qos::at_least_once, "a"), t0, out);
    s.deliver(make_delivery(qos::at_most_once, "b0"), t0, out);
    s.deliver(make_delivery(qos::at_most_once, "c0"), t0, out);
    CHECK(s.deliver(make_delivery(qos::at_least_once, "d"), t0, out) ==
          deliver_result::queued_evicted);
    CHECK(s.dropped() == 1);
    CHECK(s.queue_size() == 3);
    CHECK(drain_all() == strings{"a", "c0", "d"});
  }
  SECTION("an incoming QoS 0 evicts the oldest QoS 0") {
    s.deliver(make_delivery(qos::at_least_once, "a"), t0, out);
    s.deliver(make_delivery(qos::at_most_once, "b0"), t0, out);
    s.deliver(make_delivery(qos::exactly_once, "c"), t0, out);
    CHECK(s.deliver(make_delivery(qos::at_most_once, "d0"), t0, out) ==
          deliver_result::queued_evicted);
    CHECK(s.dropped() == 1);
    CHECK(drain_all() == strings{"a", "c", "d0"});
  }
  SECTION("without QoS 0 queued, the oldest message goes") {
    s.deliver(make_delivery(qos::at_least_once, "a"), t0, out);
    s.deliver(make_delivery(qos::exactly_once, "b"), t0, out);
    s.deliver(make_delivery(qos::at_least_once, "c"), t0, out);
    CHECK(s.deliver(make_delivery(qos::exactly_once, "d"), t0, out) ==
          deliver_result::queued_evicted);
    CHECK(s.deliver(make_delivery(qos::at_least_once, "e"), t0, out) ==
          deliver_result::queued_evicted);
    CHECK(s.dropped() == 2);
    CHECK(s.queue_size() == 3);
    CHECK(drain_all() == strings{"c", "d", "e"});
  }
  SECTION("an incoming QoS 0 is dropped when the queue is full of QoS 1/2") {
    s.deliver(make_delivery(qos::at_least_once, "a"), t0, out);
    s.deliver(make_delivery(qos::exactly_once, "b"), t0, out);
    s.deliver(make_delivery(qos::at_least_once, "c"), t0, out);
    CHECK(s.deliver(make_delivery(qos::at_most_once, "x0"), t0, out) ==
          deliver_result::dropped);
    CHECK(s.dropped() == 1);
    CHECK(s.queue_size() == 3);
    CHECK(drain_all() == strings{"a", "b", "c"});
  }
  SECTION("the QoS 0 count follows evictions") {
    // The only QoS 0 is evicted; afterwards the queue holds no QoS 0, so a new QoS 0 is dropped
    // rather than evicting a QoS 1.
    s.deliver(make_delivery(qos::at_most_once, "a0"), t0, out);
    s.deliver(make_delivery(qos::at_least_once, "b"), t0, out);
    s.deliver(make_delivery(qos::at_least_once, "c"), t0, out);
    CHECK(s.deliver(make_delivery(qos::at_least_once, "d"), t0, out) ==
          deliver_result::queued_evicted);
    CHECK(s.deliver(make_delivery(qos::at_most_once, "e0"), t0, out) ==
          deliver_result::dropped);
    CHECK(s.dropped() == 2);
    CHECK(drain_all() == strings{"b", "c", "d"});
  }
  SECTION("online, QoS 1/2 is kept past the bound (flow control bounds it), QoS 0 is not") {
    settings c2 = with_window(1, 2);
    session o{c2};
    out_list w;
    o.resume(t0, w);
    CHECK(o.deliver(make_delivery(qos::at_least_once, "a"), t0, w) == deliver_result::sent);
    CHECK(o.deliver(make_delivery(qos::at_least_once, "b"), t0, w) == deliver_result::queued);
    CHECK(o.deliver(make_delivery(qos::at_least_once, "c"), t0, w) == deliver_result::queued);
    CHECK(o.deliver(make_delivery(qos::exactly_once, "d"), t0, w) == deliver_result::queued);
    CHECK(o.dropped() == 0);
    CHECK(o.queue_size() == 3);
    REQUIRE(summary(w) == strings{"a"});
    auto id = as_pub(w[0]).packet_id;
    w.clear();
    CHECK(o.on_puback(id, t0, w));
    CHECK(summary(w) == strings{"b"});
    // Offline again, the bound holds: the oldest goes.
    o.pause();
    CHECK(o.deliver(make_delivery(qos::at_least_once, "e"), t0, w) ==
          deliver_result::queued_evicted);
    CHECK(o.dropped() == 1);
    CHECK(o.queue_size() == 2);
  }
  CHECK(out.empty());
}

TEST_CASE("session: max_queued = 0 drops what cannot be sent now, but a connected client's QoS 1/2", "[session]") {
  session s{with_window(1, 0)};
  out_list out;
  CHECK(s.deliver(make_delivery(qos::at_least_once, "a"), t0, out) == deliver_result::dropped);
  CHECK(s.deliver(make_delivery(qos::at_most_once, "b"), t0, out) == deliver_result::dropped);
  CHECK(s.dropped() == 2);
  CHECK(s.queue_size() == 0);
  s.resume(t0, out);
  CHECK(out.empty());
  CHECK(s.deliver(make_delivery(qos::at_least_once, "c"), t0, out) == deliver_result::sent);
  // Connected: an acknowledged QoS 1 behind a full window is kept (flow control bounds it).
  CHECK(s.deliver(make_delivery(qos::at_least_once, "d"), t0, out) == deliver_result::queued);
  CHECK(s.dropped() == 2);
  CHECK(summary(out) == strings{"c"});
}

TEST_CASE("session: resume resends inflight with DUP and PUBREL in order, then drains",
          "[session]") {
  session s{with_window(4)};
  out_list out;
  s.resume(t0, out);
  s.deliver(make_delivery(qos::at_least_once, "a"), t0, out);
  s.deliver(make_delivery(qos::exactly_once, "b"), t0, out);
  s.deliver(make_delivery(qos::exactly_once, "c"), t0, out);
  s.deliver(make_delivery(qos::at_least_once, "d"), t0, out);
  REQUIRE(out.size() == 4);
  const auto ida = as_pub(out[0]).packet_id;
  const auto idb = as_pub(out[1]).packet_id;
  const auto idc = as_pub(out[2]).packet_id;
  const auto idd = as_pub(out[3]).packet_id;
  const auto msg_b = as_pub(out[1]).d.msg;
  out.clear();
  REQUIRE(s.on_pubrec(idc, t0, out));  // c is past PUBREC: PUBREL is what gets resent
  REQUIRE(s.on_puback(ida, t0, out));  // a is done
  out.clear();

  s.pause();
  // Offline: even with a free slot, new messages queue.
  CHECK(s.deliver(make_delivery(qos::at_least_once, "e"), t0, out) == deliver_result::queued);
  CHECK(s.deliver(make_delivery(qos::at_most_once, "f0"), t0, out) == deliver_result::queued);
  CHECK(s.deliver(make_delivery(qos::at_least_once, "g"), t0, out) == deliver_result::queued);
  CHECK(out.empty());
  CHECK(s.inflight_size() == 3);

  s.resume(t0 + 5s, out);
  // b, c(PUBREL), d resent in original order; then the queue fills the one free slot (e), the
  // QoS 0 behind it is written, and g waits for room.
  REQUIRE(summary(out) == strings{"b+dup", "rel:" + std::to_string(idc), "d+dup", "e", "f0"});
  CHECK(as_pub(out[0]).packet_id == idb);
  CHECK(as_pub(out[0]).d.msg == msg_b);
  CHECK(as_pub(out[0]).d.q == qos::exactly_once);
  CHECK(as_rel(out[1]) == idc);
  CHECK(as_pub(out[2]).packet_id == idd);
  CHECK(as_pub(out[2]).dup);
  const auto ide = as_pub(out[3]).packet_id;
  CHECK_FALSE(as_pub(out[3]).dup);
  CHECK(ide != idb);
  CHECK(ide != idc);
  CHECK(ide != idd);
  CHECK(as_pub(out[4]).packet_id == 0);
  CHECK(s.inflight_size() == 4);
  CHECK(s.queue_size() == 1);

  // The resumed entries keep their state: b still wants PUBREC, c PUBCOMP.
  out.clear();
  CHECK_FALSE(s.on_pubcomp(idb, t0 + 5s, out));
  CHECK(s.on_pubcomp(idc, t0 + 5s, out));
  CHECK(summary(out) == strings{"g"});

  SECTION("a second reconnect resends again") {
    s.pause();
    out.clear();
    s.resume(t0 + 10s, out);
    CHECK(summary(out) == strings{"b+dup", "d+dup", "e+dup", "g+dup"});
  }
}

TEST_CASE("session: retry resends only what waited retry_interval, with DUP", "[session]") {
  settings cfg;
  cfg.retry_interval = 10s;
  session s{cfg};
  out_list out;
  s.resume(t0, out);
  CHECK_FALSE(s.next_retry().has_value());  // nothing inflight

  s.deliver(make_delivery(qos::at_least_once, "a"), t0, out);
  s.deliver(make_delivery(qos::exactly_once, "b"), t0 + 5s, out);
  s.deliver(make_delivery(qos::at_most_once, "z0"), t0 + 5s, out);  // QoS 0: never retried
  REQUIRE(out.size() == 3);
  const auto ida = as_pub(out[0]).packet_id;
  const auto idb = as_pub(out[1]).packet_id;
  out.clear();
  REQUIRE(s.next_retry().has_value());
  CHECK(*s.next_retry() == t0 + 10s);

  s.retry(t0 + 9999ms, out);
  CHECK(out.empty());

  s.retry(t0 + 10s, out);
  REQUIRE(summary(out) == strings{"a+dup"});
  CHECK(as_pub(out[0]).packet_id == ida);
  out.clear();
  CHECK(*s.next_retry() == t0 + 15s);  // b, sent at 5s, is now the oldest

  s.retry(t0 + 14s, out);
  CHECK(out.empty());
  s.retry(t0 + 15s, out);
  REQUIRE(summary(out) == strings{"b+dup"});
  CHECK(as_pub(out[0]).packet_id == idb);
  out.clear();
  CHECK(*s.next_retry() == t0 + 20s);

  // After PUBREC the retried packet is PUBREL, timed from the PUBREC.
  REQUIRE(s.on_pubrec(idb, t0 + 16s, out));
  out.clear();
  s.retry(t0 + 20s, out);
  CHECK(summary(out) == strings{"a+dup"});
  out.clear();
  CHECK(*s.next_retry() == t0 + 26s);
  s.retry(t0 + 26s, out);
  REQUIRE(out.size() == 1);
  CHECK(as_rel(out[0]) == idb);
  out.clear();

  SECTION("not while offline") {
    s.pause();
    s.retry(t0 + 1h, out);
    CHECK(out.empty());
    CHECK_FALSE(s.next_retry().has_value());
  }
  SECTION("resume restarts the timers") {
    s.pause();
    s.resume(t0 + 100s, out);
    CHECK(out.size() == 2);
    out.clear();
    CHECK(*s.next_retry() == t0 + 110s);
    s.retry(t0 + 109s, out);
    CHECK(out.empty());
  }
  SECTION("acked messages are not retried") {
    CHECK(s.on_puback(ida, t0 + 27s, out));
    CHECK(s.on_pubcomp(idb, t0 + 27s, out));
    CHECK_FALSE(s.next_retry().has_value());
    s.retry(t0 + 1h, out);
    CHECK(out.empty());
  }
}

TEST_CASE("session: retry_interval 0 never resends while connected", "[session]") {
  settings cfg;
  cfg.retry_interval = 0ms;
  session s{cfg};
  out_list out;
  s.resume(t0, out);
  s.deliver(make_delivery(qos::at_least_once, "a"), t0, out);
  REQUIRE(out.size() == 1);
  out.clear();
  CHECK_FALSE(s.next_retry().has_value());
  s.retry(t0 + 24h, out);
  CHECK(out.empty());
  // Only a reconnect resends.
  s.pause();
  s.resume(t0 + 24h, out);
  CHECK(summary(out) == strings{"a+dup"});
}

TEST_CASE("session: inbound QoS 2 awaiting-PUBREL table", "[session]") {
  settings cfg;
  cfg.max_awaiting_rel = 2;
  cfg.await_rel_timeout = 10s;
  session s{cfg};

  SECTION("fresh, duplicate, full, release") {
    CHECK(s.await_rel(1, t0) == rel_result::fresh);
    CHECK(s.await_rel(1, t0 + 1s) == rel_result::duplicate);
    CHECK(s.await_rel(2, t0 + 2s) == rel_result::fresh);
    CHECK(s.awaiting_rel_size() == 2);
    CHECK(s.await_rel(3, t0 + 3s) == rel_result::full);
    CHECK(s.await_rel(2, t0 + 3s) == rel_result::duplicate);  // known ids are not "full"
    CHECK(s.awaiting_rel_size() == 2);

    CHECK(s.release(1));
    CHECK_FALSE(s.release(1));
    CHECK_FALSE(s.release(7));
    CHECK(s.awaiting_rel_size() == 1);
    CHECK(s.await_rel(3, t0 + 3s) == rel_result::fresh);
    // A released id is fresh again.
    CHECK(s.release(3));
    CHECK(s.await_rel(1, t0 + 4s) == rel_result::fresh);
  }
  SECTION("expire_awaiting drops entries older than await_rel_timeout") {
    CHECK(s.await_rel(1, t0) == rel_result::fresh);
    CHECK(s.await_rel(2, t0 + 2s) == rel_result::fresh);
    CHECK(s.expire_awaiting(t0 + 9s) == 0);
    CHECK(s.awaiting_rel_size() == 2);
    CHECK(s.expire_awaiting(t0 + 10s) == 1);  // 1 has waited exactly the timeout
    CHECK(s.awaiting_rel_size() == 1);
    CHECK_FALSE(s.release(1));
    CHECK(s.expire_awaiting(t0 + 11s) == 0);
    CHECK(s.expire_awaiting(t0 + 12s) == 1);
    CHECK(s.awaiting_rel_size() == 0);
  }
  SECTION("a full table expires old entries to admit a new one") {
    CHECK(s.await_rel(1, t0) == rel_result::fresh);
    CHECK(s.await_rel(2, t0 + 5s) == rel_result::fresh);
    CHECK(s.await_rel(3, t0 + 10s) == rel_result::fresh);  // 1 expired to make room
    CHECK(s.awaiting_rel_size() == 2);
    CHECK_FALSE(s.release(1));
    CHECK(s.await_rel(4, t0 + 11s) == rel_result::full);  // 2 and 3 are still young
    CHECK(s.release(2));
    CHECK(s.release(3));
  }
}

// ---- MQTT 5: receive maximum, message expiry, discard, shared hand-back ----------------------

namespace {

delivery expiring(qos q, const std::string& payload, std::uint32_t seconds) {
  auto m = std::make_shared<message>();
  m->topic = "t/1";
  m->payload = payload;
  m->received_at = t0;
  m->props.message_expiry_interval = seconds;
  return delivery{m, q};
}

delivery shared_delivery(qos q, const std::string& payload, const std::string& key) {
  return delivery{make_msg(payload), q, false, {}, std::make_shared<const std::string>(key)};
}

}  // namespace

TEST_CASE("session: the client's receive maximum narrows the inflight window", "[session]") {
  settings cfg;
  cfg.max_inflight = 10;
  session s{cfg};
  s.set_receive_maximum(2);
  out_list out;
  s.resume(t0, out);
  for (int i = 0; i < 4; ++i) {
    s.deliver(make_delivery(qos::at_least_once, std::to_string(i)), t0, out);
  }
  REQUIRE(out.size() == 2);
  CHECK(s.inflight_size() == 2);
  CHECK(s.queue_size() == 2);
  auto first = as_pub(out[0]).packet_id;
  out.clear();
  REQUIRE(s.on_puback(first, t0, out));
  REQUIRE(out.size() == 1);
  CHECK(as_pub(out[0]).d.msg->payload == "2");
  // Never wider than the broker's own window.
  session wide{cfg};
  wide.set_receive_maximum(65535);
  out_list o2;
  wide.resume(t0, o2);
  for (int i = 0; i < 12; ++i) {
    wide.deliver(make_delivery(qos::at_least_once, "x"), t0, o2);
  }
  CHECK(wide.inflight_size() == 10);
  // 0: no limit from the client.
  session zero{cfg};
  zero.set_receive_maximum(0);
  out_list o3;
  zero.resume(t0, o3);
  for (int i = 0; i < 12; ++i) {
    zero.deliver(make_delivery(qos::at_least_once, "x"), t0, o3);
  }
  CHECK(zero.inflight_size() == 10);
}

TEST_CASE("session: resume with a smaller receive maximum resends only what fits, the rest as room frees",
          "[session]") {
  // [MQTT-3.3.4-9] resent PUBLISH and PUBREL count against the new Receive Maximum.
  auto cfg = with_window(10);
  cfg.retry_interval = 10s;
  session s{cfg};
  out_list out;
  s.resume(t0, out);
  for (const char* p : {"a", "b", "c", "d", "e"}) {
    s.deliver(make_delivery(qos::exactly_once, p), t0, out);
  }
  REQUIRE(out.size() == 5);
  std::vector<std::uint16_t> ids;
  for (auto& o : out) {
    ids.push_back(as_pub(o).packet_id);
  }
  out.clear();
  REQUIRE(s.on_pubrec(ids[0], t0, out));  // a is past PUBREC: its PUBREL is what gets resent
  out.clear();
  s.pause();
  s.deliver(make_delivery(qos::at_least_once, "f"), t0, out);  // queued behind them

  s.set_receive_maximum(2);
  s.resume(t0 + 1s, out);
  CHECK(summary(out) == strings{"rel:" + std::to_string(ids[0]), "b+dup"});
  out.clear();
  // Retry never resends what was not resent yet.
  CHECK(s.next_retry() == t0 + 11s);
  s.retry(t0 + 11s, out);
  CHECK(summary(out) == strings{"rel:" + std::to_string(ids[0]), "b+dup"});
  out.clear();

  REQUIRE(s.on_pubcomp(ids[0], t0 + 1s, out));  // one slot: c
  CHECK(summary(out) == strings{"c+dup"});
  out.clear();
  // A PUBREC for a message not resent yet (its PUBLISH reached the client before): PUBREL now,
  // and d stays in the window's count.
  REQUIRE(s.on_pubrec(ids[3], t0 + 1s, out));
  CHECK(summary(out) == strings{"rel:" + std::to_string(ids[3])});
  out.clear();
  REQUIRE(s.on_pubrec(ids[1], t0 + 1s, out));
  out.clear();
  REQUIRE(s.on_pubcomp(ids[1], t0 + 1s, out));  // b done: c and d hold the window
  CHECK(out.empty());
  REQUIRE(s.on_pubcomp(ids[3], t0 + 1s, out));  // d done: e
  CHECK(summary(out) == strings{"e+dup"});
  out.clear();
  REQUIRE(s.on_pubrec(ids[2], t0 + 1s, out));
  out.clear();
  REQUIRE(s.on_pubcomp(ids[2], t0 + 1s, out));  // c done: the queue moves (f)
  CHECK(summary(out) == strings{"f"});
  CHECK(s.inflight_size() == 2);
}

TEST_CASE("session: expired messages are not delivered, neither live nor from the queue",
          "[session]") {
  session s{settings{}};
  out_list out;
  // Offline: both queue.
  CHECK(s.deliver(expiring(qos::at_least_once, "short", 1), t0, out) == deliver_result::queued);
  CHECK(s.deliver(expiring(qos::at_least_once, "long", 60), t0, out) == deliver_result::queued);
  s.resume(t0 + 2s, out);
  REQUIRE(out.size() == 1);
  CHECK(as_pub(out[0]).d.msg->payload == "long");
  CHECK(s.expired() == 1);
  CHECK(s.queue_size() == 0);
  // Online: an already expired message is refused at once.
  out.clear();
  CHECK(s.deliver(expiring(qos::at_most_once, "late", 1), t0 + 5s, out) ==
        deliver_result::expired);
  CHECK(out.empty());
  CHECK(s.expired() == 2);
  // QoS 0 in the queue expires too and keeps the QoS 0 count right.
  session q0{settings{}};
  out_list o;
  q0.deliver(expiring(qos::at_most_once, "a", 1), t0, o);
  q0.deliver(make_delivery(qos::at_most_once, "b"), t0, o);
  q0.resume(t0 + 3s, o);
  REQUIRE(o.size() == 1);
  CHECK(as_pub(o[0]).d.msg->payload == "b");
}

TEST_CASE("session: discard frees an inflight slot as if acknowledged", "[session]") {
  settings cfg;
  cfg.max_inflight = 1;
  session s{cfg};
  out_list out;
  s.resume(t0, out);
  s.deliver(make_delivery(qos::exactly_once, "big"), t0, out);
  s.deliver(make_delivery(qos::at_least_once, "next"), t0, out);
  REQUIRE(out.size() == 1);
  auto id = as_pub(out[0]).packet_id;
  out.clear();
  CHECK(s.discard(id, t0, out));
  REQUIRE(out.size() == 1);
  CHECK(as_pub(out[0]).d.msg->payload == "next");
  CHECK_FALSE(s.discard(id, t0, out));
}

TEST_CASE("session: take_shared hands back what another member may get", "[session]") {
  settings cfg;
  cfg.max_inflight = 2;
  session s{cfg};
  out_list out;
  s.resume(t0, out);
  s.deliver(shared_delivery(qos::exactly_once, "g1-a", "$share/g/t"), t0, out);  // inflight
  s.deliver(make_delivery(qos::at_least_once, "plain"), t0, out);               // inflight
  s.deliver(shared_delivery(qos::at_least_once, "g1-b", "$share/g/t"), t0, out);  // queued
  s.deliver(shared_delivery(qos::at_most_once, "g2-a", "$queue/t"), t0, out);     // sent
  s.deliver(shared_delivery(qos::at_least_once, "g2-b", "$queue/t"), t0, out);    // queued
  REQUIRE(out.size() == 3);
  out.clear();

  // UNSUBSCRIBE: only what was not sent yet [MQTT-3.10.4-3].
  const std::string key = "$queue/t";
  auto q = s.take_shared(&key, false);
  REQUIRE(q.size() == 1);
  CHECK(q[0].msg->payload == "g2-b");
  CHECK(*q[0].share == "$queue/t");

  // The session ends: a QoS 2 message that was sent stays (no other member may get it,
  // [MQTT-4.8.2-5]), PUBREC or not.
  auto rest = s.take_shared(nullptr, true);
  REQUIRE(rest.size() == 1);
  CHECK(rest[0].msg->payload == "g1-b");
  CHECK(s.inflight_size() == 2);  // "plain" and the QoS 2 message
  CHECK(s.queue_size() == 0);

  // A shared QoS 1 message sent and not acknowledged: kept on UNSUBSCRIBE, handed back when
  // the session ends.
  session t{settings{}};
  out_list o;
  t.resume(t0, o);
  t.deliver(shared_delivery(qos::at_least_once, "x", "$share/g/t"), t0, o);
  const std::string g = "$share/g/t";
  CHECK(t.take_shared(&g, false).empty());
  CHECK(t.inflight_size() == 1);
  CHECK(t.take_shared(nullptr, true).size() == 1);
  CHECK(t.inflight_size() == 0);
}

TEST_CASE("session: the node budget follows deliveries until they are done", "[session]") {
  tern::actors::flow::set_budget(1 << 20);
  const auto& b = tern::actors::flow::budget();
  auto before = b->size();
  auto charged = [](qos q, const char* p) {
    auto d = make_delivery(q, p);
    d.charge = tern::actors::flow::charge(100);
    return d;
  };
  session s{with_window(1)};
  out_list out;
  s.resume(t0, out);
  s.deliver(charged(qos::at_least_once, "a"), t0, out);  // in flight
  s.deliver(charged(qos::at_least_once, "b"), t0, out);  // queued
  s.deliver(charged(qos::at_most_once, "c"), t0, out);   // written at once
  CHECK(b->size() - before == 300);
  REQUIRE(summary(out) == strings{"a", "c"});
  auto id = as_pub(out[0]).packet_id;
  out.clear();  // written: QoS 0 "c" is done with, "a" waits for its PUBACK
  CHECK(b->size() - before == 200);
  CHECK(s.on_puback(id, t0, out));  // "a" done, "b" in flight now
  CHECK(b->size() - before == 100);
  out.clear();
  s.pause();  // offline: what it holds no longer counts
  CHECK(b->size() - before == 0);
  s.deliver(charged(qos::at_least_once, "d"), t0, out);
  CHECK(b->size() - before == 0);
  tern::actors::flow::set_budget(0);
}

TEST_CASE("session: a failed PUBREC ends the QoS 2 delivery without PUBREL and frees the slot",
          "[session]") {
  session s{with_window(1)};
  out_list out;
  s.resume(t0, out);
  s.deliver(make_delivery(qos::exactly_once, "a"), t0, out);
  s.deliver(make_delivery(qos::exactly_once, "b"), t0, out);
  REQUIRE(summary(out) == strings{"a"});
  auto id = as_pub(out[0]).packet_id;
  out.clear();
  CHECK_FALSE(s.on_pubrec_failed(id + 1, t0, out));
  REQUIRE(s.on_pubrec_failed(id, t0, out));
  CHECK(summary(out) == strings{"b"});  // no PUBREL; b takes the slot
  CHECK(s.inflight_size() == 1);
  // Past PUBREC the client has the message: a late failure is not one of this state.
  auto idb = as_pub(out[0]).packet_id;
  out.clear();
  REQUIRE(s.on_pubrec(idb, t0, out));
  out.clear();
  CHECK_FALSE(s.on_pubrec_failed(idb, t0, out));
  CHECK(s.inflight_size() == 1);
}
