# Back-pressure: a publisher whose messages pile up in front of a slow subscriber's session
# stops being read (so its PUBACKs stop and its socket fills) until the subscriber catches
# up; nothing is lost, duplicated or reordered, and broker memory stays bounded. A client
# never waits for its own session, and a subscriber that goes away releases its publishers.

import select
import socket
import struct
import time

import pytest

from helpers import (PUBACK, PUBLISH, RawClient, assert_pubsub_works, is_mosquitto,
                     publish_packet, puback_packet, unique)

pytestmark = pytest.mark.skipif(is_mosquitto(), reason="Tern flow control settings")

PAYLOAD = 1000  # bytes per message: sequence number + padding


class Pump:
    """A raw MQTT connection driven without blocking: queued bytes go out as the socket takes
    them, incoming packets are parsed; QoS 1 deliveries are acknowledged when `ack` is set."""

    def __init__(self, client, ack=True):
        self.c = client
        self.c.sock.setblocking(False)
        self.out = bytearray()
        self.ack = ack
        self.reading = True
        self.pubacks = []  # packet ids of PUBACKs received
        self.seqs = []  # sequence numbers of PUBLISHes received, in order

    def queue(self, data):
        self.out += data

    def step(self):
        """One non-blocking round; returns whether anything moved."""
        moved = False
        if self.out:
            try:
                n = self.c.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                n = 0
            if n:
                del self.out[:n]
                moved = True
        if self.reading:
            try:
                data = self.c.sock.recv(262144)
            except (BlockingIOError, InterruptedError):
                data = None
            if data == b"":
                raise AssertionError("broker closed the connection")
            if data:
                self.c.buf += data
                moved = True
            while (p := self.c._try_parse()) is not None:
                if p.type == PUBACK:
                    self.pubacks.append(p.pid)
                elif p.type == PUBLISH:
                    self.seqs.append(struct.unpack(">Q", p.payload[:8])[0])
                    if p.qos == 1 and self.ack:
                        self.out += puback_packet(p.pid)
                else:
                    raise AssertionError(f"unexpected {p!r}")
        return moved


def run(pumps, until, timeout, stall=None):
    """Steps the pumps until `until()` holds (True), nothing moved for `stall` seconds
    (False, only when `stall` is given) or `timeout` passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    last_move = time.monotonic()
    while not until():
        now = time.monotonic()
        assert now < deadline, "timed out"
        if stall is not None and now - last_move > stall:
            return False
        if any([p.step() for p in pumps]):
            last_move = now
        else:
            select.select([p.c.sock for p in pumps if p.reading],
                          [p.c.sock for p in pumps if p.out], [], 0.05)
    return True


def publishes(topic, first, n):
    data = bytearray()
    for seq in range(first, first + n):
        pid = seq % 65535 + 1
        payload = struct.pack(">Q", seq) + bytes(PAYLOAD - 8)
        data += publish_packet(topic, payload, qos=1, pid=pid)
    return bytes(data)


def assert_exactly_once_in_order(seqs, n):
    assert len(seqs) == n, f"got {len(seqs)} of {n} messages"
    assert seqs == list(range(n)), "lost, duplicated or reordered messages"


def small_send_buffer(c):
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)


def test_slow_subscriber_pauses_publisher_then_gets_everything(broker, clients):
    n = 4000
    b = broker(flow={"high_watermark": 50, "max_pause": "120s"},
               session={"max_inflight": 10, "max_queued_messages": 1_000_000})
    topic = unique("bp")
    sub = clients.raw(b.port, rcvbuf=4096)
    sub.connect_ok()
    sub.subscribe([(topic, 1)])
    pub = clients.raw_connected(b.port)
    small_send_buffer(pub)
    rss_before = b.proc_status("VmRSS")
    sp, pp = Pump(sub), Pump(pub)
    sp.reading = False  # the subscriber does not read (nor acknowledge) for now
    pp.queue(publishes(topic, 0, n))
    # Without back-pressure the broker would take and acknowledge all 4 MB at once (its queue
    # has room for a million); with it, the publisher is no longer read once ~50 messages
    # wait for the subscriber: its PUBACKs stop and its socket fills up.
    done = run([pp], lambda: len(pp.pubacks) == n, timeout=60, stall=3)
    assert not done, "the publisher was never paused: every message was acknowledged"
    stalled_at = len(pp.pubacks)
    assert stalled_at < n / 2, f"{stalled_at} of {n} acknowledged before the pause"
    assert pp.out, "the publisher's socket never filled"
    time.sleep(1)
    pp.step()
    assert len(pp.pubacks) == stalled_at, "acknowledgements went on during the pause"
    growth_kb = b.proc_status("VmRSS") - rss_before
    assert growth_kb < 64 * 1024, f"RSS grew by {growth_kb} kB"
    # The subscriber starts reading: the publisher is resumed and everything arrives once,
    # in order.
    sp.reading = True
    run([sp, pp], lambda: len(sp.seqs) >= n and len(pp.pubacks) == n, timeout=120)
    run([sp, pp], lambda: False, timeout=5, stall=0.5)  # nothing more comes
    assert_exactly_once_in_order(sp.seqs, n)
    assert len(pp.pubacks) == n
    assert_pubsub_works(b.port)


def test_client_publishing_to_its_own_subscription_is_never_paused(broker, clients):
    # A pause would stop the broker from reading the client's PUBACKs for its own deliveries,
    # so its own backlog could never drain: the client must not wait for its own session.
    n = 3000
    b = broker(flow={"high_watermark": 5, "max_pause": "120s"},
               session={"max_inflight": 4, "max_queued_messages": 1_000_000})
    topic = unique("self")
    c = clients.raw_connected(b.port)
    c.subscribe([(topic, 1)])
    small_send_buffer(c)
    p = Pump(c)
    p.queue(publishes(topic, 0, n))
    run([p], lambda: len(p.seqs) >= n and len(p.pubacks) == n, timeout=60)
    assert_exactly_once_in_order(p.seqs, n)


def test_subscriber_leaving_releases_paused_publisher(broker, clients):
    # The counter must follow the session's end: a publisher paused for a subscriber that
    # disconnects (and whose clean session ends) is resumed at once, not after max_pause.
    n = 3000
    b = broker(flow={"high_watermark": 20, "max_pause": "120s"},
               session={"max_inflight": 5, "max_queued_messages": 1_000_000})
    topic = unique("leave")
    sub = clients.raw(b.port, rcvbuf=4096)
    sub.connect_ok()
    sub.subscribe([(topic, 1)])
    pub = clients.raw_connected(b.port)
    small_send_buffer(pub)
    pp = Pump(pub)
    pp.queue(publishes(topic, 0, n))
    assert not run([pp], lambda: len(pp.pubacks) == n, timeout=60, stall=3), \
        "the publisher was never paused"
    sub.close()
    run([pp], lambda: len(pp.pubacks) == n, timeout=30)
    assert_pubsub_works(b.port)


def test_offline_persistent_subscriber_does_not_pause(broker, clients):
    # An offline session's queue is bounded by max_queued_messages (oldest dropped) and never
    # holds publishers back.
    n = 2000
    b = broker(flow={"high_watermark": 10, "max_pause": "120s"},
               session={"max_queued_messages": 100})
    topic = unique("away")
    sub = RawClient(b.port)
    sub.connect_ok(unique("away"), clean=False)
    sub.subscribe([(topic, 1)])
    sub.disconnect()
    pub = clients.raw_connected(b.port)
    pp = Pump(pub)
    pp.queue(publishes(topic, 0, n))
    run([pp], lambda: len(pp.pubacks) == n, timeout=60)


def test_max_pause_resumes_a_publisher(broker, clients):
    # The safety valve: a subscriber that never reads pauses its publisher for max_pause at
    # a time only; its queue (max_queued_messages) bounds what is kept for it.
    n = 600
    b = broker(flow={"high_watermark": 20, "max_pause": "1s"},
               session={"max_inflight": 5, "max_queued_messages": 1_000_000})
    topic = unique("valve")
    sub = clients.raw(b.port, rcvbuf=4096)
    sub.connect_ok()
    sub.subscribe([(topic, 1)])
    pub = clients.raw_connected(b.port)
    pp = Pump(pub)
    pp.queue(publishes(topic, 0, n))
    run([pp], lambda: len(pp.pubacks) == n, timeout=90)
    assert sub.is_open()


def test_a_paused_publisher_is_not_taken_for_a_dead_one(broker, clients):
    # Once a paused publisher's held packets are at their limit its socket is not read, its
    # PINGREQs included: the keepalive must not close it meanwhile (allowed silence
    # 1.5 × 2 s = 3 s, paused for longer than that).
    n = 3000
    b = broker(flow={"high_watermark": 20, "max_pause": "120s"},
               session={"max_inflight": 5, "max_queued_messages": 1_000_000})
    topic = unique("ka")
    sub = clients.raw(b.port, rcvbuf=4096)
    sub.connect_ok()
    sub.subscribe([(topic, 1)])
    pub = clients.raw_connected(b.port, keepalive=2)
    small_send_buffer(pub)
    sp, pp = Pump(sub), Pump(pub)
    sp.reading = False
    pp.queue(publishes(topic, 0, n))
    assert not run([pp], lambda: len(pp.pubacks) == n, timeout=60, stall=1), \
        "the publisher was never paused"
    time.sleep(4.5)
    pp.step()  # raises if the broker closed the connection
    sp.reading = True
    run([sp, pp], lambda: len(sp.seqs) >= n and len(pp.pubacks) == n, timeout=120)
    assert_exactly_once_in_order(sp.seqs, n)


class WindowedPump(Pump):
    """A Pump that publishes as MQTT clients do: at most `window` QoS 1 messages unacknowledged,
    so that its PUBACKs for deliveries queue behind a few PUBLISHes only."""

    def __init__(self, client, topic, n, window=10):
        super().__init__(client)
        self.topic, self.n, self.window, self.sent = topic, n, window, 0

    def step(self):
        while self.sent < self.n and self.sent - len(self.pubacks) < self.window:
            self.queue(publishes(self.topic, self.sent, 1))
            self.sent += 1
        return super().step()


def test_two_clients_flooding_each_other_do_not_pause_each_other(broker, clients):
    # A and B each publish to the other's subscription faster than the other's session can
    # deliver. When both are paused, each one's PUBACKs for its deliveries must still be read:
    # they are what drains the other's backlog. A paused connection holds back only what it
    # publishes (and what follows it), never the acknowledgements of its deliveries.
    n = 3000
    b = broker(flow={"high_watermark": 5, "max_pause": "120s"},
               session={"max_inflight": 4, "max_queued_messages": 1_000_000})
    ta, tb = unique("to-a"), unique("to-b")
    a, bc = clients.raw_connected(b.port), clients.raw_connected(b.port)
    a.subscribe([(ta, 1)])
    bc.subscribe([(tb, 1)])
    pa, pb = WindowedPump(a, tb, n), WindowedPump(bc, ta, n)
    done = lambda: (len(pa.seqs) >= n and len(pb.seqs) >= n and len(pa.pubacks) == n
                    and len(pb.pubacks) == n)
    assert run([pa, pb], done, timeout=100, stall=20), \
        "both clients stalled: each waits for the other to be read"
    assert_exactly_once_in_order(pa.seqs, n)
    assert_exactly_once_in_order(pb.seqs, n)
