# Shared subscriptions: $share/{group}/{filter} and $queue/{filter}; strategies; no retained
# messages on subscribe; redispatch of unacknowledged messages when a member leaves or dies.

import collections
import subprocess

import pytest

import helpers
from helpers import unique
from mqtt5 import RawClient5, ack5, raw5

pytestmark = pytest.mark.skipif(helpers.is_mosquitto(), reason="Tern's strategies and config")


def members(port, filt, n, qos=1, level=5):
    out = []
    for _ in range(n):
        if level == 5:
            c = raw5(port)
            c.subscribe([(filt, qos)])
        else:
            c = helpers.raw_connect(port)
            c.subscribe([(filt, qos)])
        out.append(c)
    return out


def collect(clients, total, timeout=5.0):
    """Reads every client until `total` messages arrived in all; returns payloads per client."""
    got = [[] for _ in clients]
    for i, c in enumerate(clients):
        while True:
            try:
                p = c.read_packet(0.3)
            except TimeoutError:
                break
            if p.type == helpers.PUBLISH:
                got[i].append(p.payload)
                if p.qos == 1:
                    c.send(helpers.puback_packet(p.pid))
    assert sum(len(g) for g in got) == total, got
    return got


def publish_n(port, topic, n, client_id=None):
    pub = raw5(port, client_id)
    for i in range(n):
        pub.publish_acked(topic, f"m{i}".encode())
    pub.disconnect()


@pytest.mark.parametrize("strategy", ["random", "round_robin", "sticky", "hash_clientid"])
def test_each_message_goes_to_exactly_one_member(broker, strategy):
    b = broker(mqtt5={"shared_subscription_strategy": strategy})
    topic = unique("sh")
    group = members(b.port, f"$share/g/{topic}", 3)
    publish_n(b.port, topic, 30)
    got = collect(group, 30)
    assert sorted(p for g in got for p in g) == sorted(f"m{i}".encode() for i in range(30))
    counts = [len(g) for g in got]
    if strategy == "round_robin":
        assert counts == [10, 10, 10]
    elif strategy in ("sticky", "hash_clientid"):
        assert sorted(counts) == [0, 0, 30]  # one publisher: always the same member
    else:
        assert max(counts) < 30  # random: 3^-29 chance of a false failure


def test_groups_and_plain_subscribers_each_get_a_copy(broker):
    b = broker()
    topic = unique("shg")
    g1 = members(b.port, f"$share/one/{topic}", 2)
    g2 = members(b.port, f"$share/two/{topic}", 2)
    plain = members(b.port, topic, 1)
    publish_n(b.port, topic, 10)
    collect(g1, 10)
    collect(g2, 10)
    collect(plain, 10)


def test_queue_subscription_is_a_shared_group_for_any_version(broker):
    b = broker(mqtt5={"shared_subscription_strategy": "round_robin"})
    topic = unique("q")
    q = members(b.port, f"$queue/{topic}", 2, level=4)
    publish_n(b.port, topic, 10)
    assert [len(g) for g in collect(q, 10)] == [5, 5]


def test_wildcard_shared_filter(broker):
    b = broker()
    base = unique("shw")
    group = members(b.port, f"$share/g/{base}/#", 2)
    publish_n(b.port, base + "/a/b", 6)
    collect(group, 6)


def test_no_retained_messages_on_shared_subscribe(broker):
    b = broker()
    topic = unique("shr")
    pub = raw5(b.port)
    pub.publish_acked(topic, b"kept", retain=True)
    c = raw5(b.port)
    ack = c.subscribe([(f"$share/g/{topic}", 1)])
    assert ack.codes == [1]
    c.expect_no_packet(0.5)


def test_no_local_on_a_shared_subscription_is_a_protocol_error(broker):
    b = broker()
    c = raw5(b.port)
    from mqtt5 import subscribe5
    c.send(subscribe5(1, [("$share/g/t", 1, {"no_local": True})]))
    c.expect_disconnect(0x82)


def test_invalid_share_names_are_refused(broker):
    b = broker()
    c = raw5(b.port)
    ack = c.subscribe([("$share/g+/t", 0), ("$share/g", 0), ("$share//t", 0)])
    assert ack.codes == [0x8F, 0x8F, 0x8F]


def test_unacked_messages_go_to_another_member_when_one_dies(broker):
    b = broker()
    topic = unique("shd")
    dying = RawClient5(b.port)
    dying.connect_ok(props=[("receive_maximum", 2)])
    dying.subscribe([(f"$share/g/{topic}", 1)])
    publish_n(b.port, topic, 5)  # only member: 2 inflight, 3 queued, none acked
    assert [dying.expect_publish().payload for _ in range(2)] == [b"m0", b"m1"]
    survivor = raw5(b.port)
    survivor.subscribe([(f"$share/g/{topic}", 1)])
    dying.close()  # dies without acknowledging (session expiry 0: the session ends)
    got = survivor.receive_publishes(5, timeout=5)
    assert sorted(p.payload for p in got) == [f"m{i}".encode() for i in range(5)]
    survivor.expect_no_packet(0.3)


def test_queued_messages_go_to_another_member_on_unsubscribe(broker):
    """A member that unsubscribes keeps what it was sent and completes it [MQTT-3.10.4-3];
    what still waited for it goes to another member."""
    b = broker()
    topic = unique("shu")
    leaving = RawClient5(b.port)
    leaving.connect_ok(props=[("receive_maximum", 1)])
    leaving.subscribe([(f"$share/g/{topic}", 1)])
    publish_n(b.port, topic, 3)
    first = leaving.expect_publish()
    assert first.payload == b"m0"
    staying = raw5(b.port)
    staying.subscribe([(f"$share/g/{topic}", 1)])
    from mqtt5 import encode_props
    import struct
    body = struct.pack("!H", 50) + encode_props([]) + helpers.mqtt_string(f"$share/g/{topic}")
    leaving.send(helpers.packet(helpers.UNSUBSCRIBE, 0x02, body))
    assert leaving.expect(helpers.UNSUBACK, pid=50).codes == [0]
    got = staying.receive_publishes(2, timeout=5)
    assert sorted(p.payload for p in got) == [b"m1", b"m2"]
    leaving.send(ack5(helpers.PUBACK, first.pid))
    leaving.expect_no_packet(0.3)
    staying.expect_no_packet(0.1)  # m0 went to one member only


def test_mosquitto_sub_in_a_shared_group(broker):
    b = broker(mqtt5={"shared_subscription_strategy": "round_robin"})
    topic = unique("shm")
    subs = [helpers.MosquittoSub(b.port, f"$share/ms/{topic}", qos=1, extra=["-V", "5"])
            for _ in range(2)]
    try:
        for s in subs:
            s.wait_subscribed()
        publish_n(b.port, topic, 4)
        lines = [s.expect_lines(2) for s in subs]
        assert sorted(l for ls in lines for l in ls) == sorted(f"{topic} m{i}" for i in range(4))
    finally:
        for s in subs:
            s.stop()
