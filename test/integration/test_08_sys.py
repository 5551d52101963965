# Topics starting with '$': not matched by filters starting with a wildcard [MQTT-4.7.2-1];
# clients cannot publish into $SYS.

import queue
import time

import pytest

from helpers import PUBACK, ConnectionClosed, unique


def test_wildcards_do_not_match_dollar_topics(broker, clients):
    b = broker()
    end = unique("end")
    expected = {
        "#": ["plain/bar"],
        "+/bar": ["plain/bar"],
        "+/#": ["plain/bar"],
        "+/+": ["plain/bar"],
        "$foo/#": ["$foo/bar"],
        "$foo/+": ["$foo/bar"],
        "$foo/bar": ["$foo/bar"],
    }
    subs = {}
    for f in expected:
        s = clients.paho(b.port)
        s.subscribe([(f, 1), (end, 1)])
        subs[f] = s
    pub = clients.raw_connected(b.port)
    for t in ("$foo/bar", "plain/bar", end):
        pub.publish_acked(t, t.encode(), qos=1)
    for f, s in subs.items():
        got = [m.topic for m in s.expect_until(end) if m.topic != end]
        assert got == expected[f], f"filter {f!r}"


def test_client_cannot_publish_to_sys(broker, clients):
    b = broker()
    end = unique("end")
    topic = "$SYS/" + unique("fake")
    observer = clients.paho(b.port)
    observer.subscribe([(topic, 1), (end, 1)])
    pub = clients.raw_connected(b.port)
    pub.publish(topic, b"forged", qos=1, retain=True)
    try:
        # The broker may acknowledge and drop it, or close the connection.
        acked = pub.read_packet(5).type == PUBACK
    except ConnectionClosed:
        acked = False
    if acked:
        pub.publish_acked(end, b"sentinel", qos=1)
        assert [m.topic for m in observer.expect_until(end)] == [end], "client wrote to $SYS"
    else:
        observer.expect_none(0.5)
    late = clients.paho(b.port)
    late.subscribe(topic, 1)
    late.expect_none(0.5)  # and nothing was retained there


def test_broker_sys_messages_not_seen_by_wildcard_subscribers(broker, clients):
    b = broker()
    wild = {f: clients.paho(b.port) for f in ("#", "+/#", "+/broker/#", "+/brokers/#")}
    for f, s in wild.items():
        s.subscribe(f, 0)
    observer = clients.paho(b.port)
    observer.subscribe("$SYS/#", 0)
    try:
        first = observer.expect_one(timeout=3)
    except AssertionError:
        pytest.skip("the broker published no $SYS messages within 3 s")
    assert first.topic.startswith("$SYS/")
    # Wait for a live (non-retained) $SYS publication, which went out after the wildcard
    # subscribers had subscribed.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            if not observer.messages.get(timeout=0.2).retain:
                break
        except queue.Empty:
            pass
    for f, s in wild.items():
        s.expect_none(0.3 if f != "#" else 0.5)
