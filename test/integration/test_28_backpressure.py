# Back-pressure: a publisher whose messages pile up in front of a slow subscriber's session
# stops being read (so its PUBACKs stop and its socket fills) until the subscriber catches
# up; nothing is lost, duplicated or reordered, and broker memory stays bounded. A client
# never waits for its own session, and a subscriber that goes away releases its publishers.

import select
import time

import pytest

import mgmt_helpers as mh
from flow_pumps import (Pump, assert_every_publisher_in_order, assert_exactly_once_in_order,
                        fan_in, metric, publishes, run, small_send_buffer)
from helpers import RawClient, assert_pubsub_works, is_mosquitto, unique

pytestmark = pytest.mark.skipif(is_mosquitto(), reason="Tern flow control settings")


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


def test_stalled_subscriber_is_closed_after_max_pause_and_keeps_its_messages(broker, clients):
    # A connected subscriber that takes nothing while its publisher waits holds the publisher
    # up for flow.max_pause at most: then the broker closes it. Its persistent session keeps
    # what it was sent (max_queued_messages bounds it, here a million), so when it comes back
    # it gets every acknowledged message once, in order; the publisher went on meanwhile.
    n = 600
    b = broker(flow={"high_watermark": 20, "max_pause": "1s"},
               session={"max_inflight": 5, "max_queued_messages": 1_000_000})
    topic = unique("valve")
    cid = unique("stalled")
    sub = clients.raw(b.port, rcvbuf=4096)
    sub.connect_ok(cid, clean=False)
    sub.subscribe([(topic, 1)])
    pub = clients.raw_connected(b.port)
    pp = Pump(pub)
    pp.queue(publishes(topic, 0, n))
    started = time.monotonic()
    run([pp], lambda: len(pp.pubacks) == n, timeout=90)
    assert time.monotonic() - started > 0.9, "the publisher did not wait for the subscriber"
    assert wait_closed(sub.sock, 10), "the stalled subscriber was not closed"
    assert "took nothing for" in b.log_tail(200)
    back = clients.raw(b.port)
    back.connect_ok(cid, clean=False)
    sp = Pump(back)
    run([sp], lambda: len(sp.seqs) >= n, timeout=60)
    run([sp], lambda: False, timeout=5, stall=0.5)
    # What it was sent before and never read comes again (DUP), then the rest.
    assert_exactly_once_in_order(sp.seqs, n)


def wait_closed(sock, timeout):
    """Reads and discards until the peer closes (True) or `timeout` passes (False)."""
    sock.setblocking(False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        select.select([sock], [], [], 0.1)
        try:
            if sock.recv(65536) == b"":
                return True
        except (BlockingIOError, InterruptedError):
            pass
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def check_fan_in(broker, clients, publishers, per_publisher):
    """Fan-in on the shipped defaults: everything arrives in order, nothing is dropped, and the
    subscriber really was behind (its publishers were paused)."""
    b = mh.start(broker)
    sp, _ = fan_in(clients, b.port, b.port, publishers, per_publisher, read_size=8192)
    assert_every_publisher_in_order(sp, publishers, per_publisher)
    assert metric(b, "tern_messages_dropped_total") == 0
    assert metric(b, "tern_flow_pauses_total") > 0, "the subscriber was never behind"
    return b


def test_fan_in_with_shipped_defaults_loses_nothing(broker, clients):
    # The shipped defaults (max_queued_messages 1000, high_watermark 1000, max_inflight 32):
    # 100 publishers with unbounded windows into one slower subscriber. Each PUBLISH the broker
    # acknowledges must reach the subscriber: publishers are paused before they can overflow
    # its queue, however many there are and however much each has in flight.
    check_fan_in(broker, clients, 100, 300)


def test_fan_in_stress_500_publishers(broker, clients):
    b = check_fan_in(broker, clients, 500, 60)
    assert_pubsub_works(b.port)


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


def test_node_budget_pauses_fan_out_and_bounds_memory(broker, clients):
    # Windows and queues far larger than the budget (max_inflight 1000, a million queued, a
    # high-water mark that never bites): only flow.max_buffered_mb stands between 20
    # subscribers that do not read and ~50 MB of deliveries. The publisher is paused at the
    # budget; once the subscribers read, everything arrives once and in order.
    n, subs = 2000, 20
    node = mh.start(broker, flow={"high_watermark": 1_000_000, "max_pause": "120s",
                                  "max_buffered_mb": 4},
                    session={"max_inflight": 1000, "max_queued_messages": 1_000_000})
    topic = unique("budget")
    pumps = []
    for _ in range(subs):
        s = clients.raw(node.port, rcvbuf=4096)
        s.connect_ok()
        s.subscribe([(topic, 1)])
        p = Pump(s)
        p.reading = False
        pumps.append(p)
    pub = clients.raw_connected(node.port)
    small_send_buffer(pub)
    pp = Pump(pub)
    pp.queue(publishes(topic, 0, n))
    rss_before = node.proc_status("VmRSS")
    assert not run([pp], lambda: len(pp.pubacks) == n, timeout=60, stall=3), \
        "the publisher was never paused"
    stalled_at = len(pp.pubacks)
    assert stalled_at < n / 4, f"{stalled_at} of {n} acknowledged before the pause"
    limit = metric(node, "tern_flow_buffer_limit_bytes")
    assert limit == 4 << 20
    held = metric(node, "tern_flow_buffered_bytes")
    assert limit / 2 < held < limit * 1.1, f"{held} bytes held at the pause"
    growth_kb = node.proc_status("VmRSS") - rss_before
    assert growth_kb < 48 * 1024, f"RSS grew by {growth_kb} kB"
    for p in pumps:
        p.reading = True
    run(pumps + [pp], lambda: all(len(p.seqs) >= n for p in pumps) and len(pp.pubacks) == n,
        timeout=180)
    for p in pumps:
        assert_exactly_once_in_order(p.seqs, n)
    assert metric(node, "tern_messages_dropped_total") == 0
