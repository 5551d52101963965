# Per-connection rate limits on a listener: bytes in and PUBLISH packets in. They pause
# reading (TCP back-pressure) and never drop data: every message arrives, only later. The
# time checks are loose lower bounds (half the configured rate's minimum), never upper ones.

import time

import pytest

from helpers import is_mosquitto, unique

pytestmark = pytest.mark.skipif(is_mosquitto(), reason="Tern listener configuration")


def wait_log(b, text, timeout=5.0):
    deadline = time.monotonic() + timeout
    while text not in b.log_text():
        assert time.monotonic() < deadline, f"no log line with {text!r}"
        time.sleep(0.02)


def run_burst(b, clients, count, size):
    """A raw publisher sends `count` QoS 0 messages of `size` bytes as fast as it can, then a
    sentinel; returns (seconds until the subscriber has the sentinel, payloads received)."""
    topic, done = unique("rate"), unique("done")
    sub = clients.paho(b.port)
    sub.subscribe([(topic, 0), (done, 0)])
    pub = clients.raw_connected(b.port)
    start = time.monotonic()
    for i in range(count):
        pub.publish(topic, i.to_bytes(4, "big") + bytes(size - 4))
    pub.publish(done, b"end")
    got = sub.expect_until(done, timeout=60)
    return time.monotonic() - start, [m.payload for m in got[:-1]]


def test_bytes_in_rate(broker, clients):
    rate = 50_000
    b = broker(**{"listeners.tcp.default": {"max_bytes_in_rate": rate}})
    count, size = 50, 5000  # 250 KB: the 50 KB burst, then 4 s at the rate
    elapsed, payloads = run_burst(b, clients, count, size)
    assert [int.from_bytes(p[:4], "big") for p in payloads] == list(range(count))
    minimum = (count * size - rate) / rate
    assert elapsed >= minimum / 2, f"{count * size} bytes in {elapsed:.2f}s at {rate} B/s"
    wait_log(b, "max_bytes_in_rate reached, pausing reads")


def test_publish_in_rate(broker, clients):
    rate = 10
    b = broker(**{"listeners.tcp.default": {"max_publish_rate": rate}})
    count = 40  # a burst of 10, then 3 s at 10/s
    elapsed, payloads = run_burst(b, clients, count, 16)
    assert len(payloads) == count
    minimum = (count - rate) / rate
    assert elapsed >= minimum / 2, f"{count} PUBLISH in {elapsed:.2f}s at {rate}/s"
    wait_log(b, "max_publish_rate reached, pausing reads")


def test_unlimited_listener_is_not_paused(broker, clients):
    b = broker()
    run_burst(b, clients, 50, 5000)
    assert "pausing reads" not in b.log_text()
