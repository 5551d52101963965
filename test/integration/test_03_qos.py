# QoS 0, 1 and 2 flows in both directions (exact packets over raw sockets), DUP on
# redelivery, packet ids, and per publisher->subscriber ordering.

import pytest

from helpers import (PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, puback_packet, pubcomp_packet,
                     publish_packet, pubrec_packet, pubrel_packet, unique)


def test_qos0_flow(broker, clients):
    b = broker()
    topic = unique("q0")
    sub = clients.raw_connected(b.port)
    sub.subscribe([(topic, 2)])
    pub = clients.raw_connected(b.port)
    pub.publish(topic, b"zero", qos=0)
    pub.ping()  # QoS 0 gets no acknowledgement: the next packet is PINGRESP
    p = sub.expect(PUBLISH)
    assert (p.topic, p.payload, p.qos, p.pid, p.dup, p.retain) == \
        (topic, b"zero", 0, None, False, False)
    assert p.flags == 0x00
    sub.ping()


def test_qos1_flow(broker, clients):
    b = broker()
    topic = unique("q1")
    sub = clients.raw_connected(b.port)
    sub.subscribe([(topic, 1)])
    pub = clients.raw_connected(b.port)
    pub.publish(topic, b"one", qos=1, pid=7)
    ack = pub.expect(PUBACK, pid=7)
    assert ack.flags == 0 and len(ack.body) == 2
    p = sub.expect(PUBLISH)
    assert (p.topic, p.payload, p.qos, p.dup) == (topic, b"one", 1, False)
    assert p.flags == 0x02 and p.pid != 0
    sub.send(puback_packet(p.pid))
    sub.ping()  # acked: no redelivery pending
    pub.ping()


def test_qos2_flow(broker, clients):
    b = broker()
    topic = unique("q2")
    sub = clients.raw_connected(b.port)
    sub.subscribe([(topic, 2)])
    pub = clients.raw_connected(b.port)
    # Publisher side: PUBLISH -> PUBREC -> PUBREL -> PUBCOMP.
    pub.publish(topic, b"two", qos=2, pid=9)
    rec = pub.expect(PUBREC, pid=9)
    assert rec.flags == 0 and len(rec.body) == 2
    pub.send(pubrel_packet(9))
    comp = pub.expect(PUBCOMP, pid=9)
    assert comp.flags == 0 and len(comp.body) == 2
    # Subscriber side: PUBLISH <- ; PUBREC -> ; PUBREL <- ; PUBCOMP ->.
    p = sub.expect(PUBLISH)
    assert (p.topic, p.payload, p.qos, p.dup) == (topic, b"two", 2, False)
    assert p.flags == 0x04 and p.pid != 0
    sub.send(pubrec_packet(p.pid))
    rel = sub.expect(PUBREL, pid=p.pid)
    assert rel.flags == 0x02, "[MQTT-3.6.1-1] PUBREL flags are 0010"
    sub.send(pubcomp_packet(p.pid))
    sub.ping()
    pub.ping()


def test_qos2_duplicate_publish_before_pubrel_is_delivered_once(broker, clients):
    # [MQTT-4.3.3-2]: a resent PUBLISH with the same packet id before PUBREL is not a new message.
    b = broker()
    topic = unique("q2dup")
    sub = clients.raw_connected(b.port)
    sub.subscribe([(topic, 2)])
    pub = clients.raw_connected(b.port)
    pub.publish(topic, b"once", qos=2, pid=5)
    pub.expect(PUBREC, pid=5)
    pub.publish(topic, b"once", qos=2, pid=5, dup=True)
    pub.expect(PUBREC, pid=5)
    pub.send(pubrel_packet(5))
    pub.expect(PUBCOMP, pid=5)
    # Same publisher, so a sentinel after the flow orders any second copy before it.
    pub.publish_acked(topic, b"sentinel", qos=1)
    got = sub.receive_publishes(2)
    assert [p.payload for p in got] == [b"once", b"sentinel"]
    sub.ping()


def test_pubrel_for_unknown_packet_id_gets_pubcomp(broker, clients):
    # A client resending PUBREL after a reconnect may hit an id the server already completed.
    b = broker()
    raw = clients.raw_connected(b.port)
    raw.send(pubrel_packet(321))
    raw.expect(PUBCOMP, pid=321)
    raw.ping()


@pytest.mark.parametrize("ack", [puback_packet, pubcomp_packet], ids=["puback", "pubcomp"])
def test_ack_for_unknown_packet_id_is_ignored(broker, clients, ack):
    b = broker()
    raw = clients.raw_connected(b.port)
    raw.send(ack(999))
    raw.ping()
    assert raw.is_open()


@pytest.mark.parametrize("qos", [1, 2])
def test_unacked_message_redelivered_with_dup_on_reconnect(broker, clients, qos):
    # [MQTT-4.4.0-1]: on reconnect with clean session 0 the server resends unacknowledged
    # PUBLISH packets with DUP=1 [MQTT-3.3.1-1] and the original packet id.
    b = broker()
    topic, cid = unique("dup"), unique("dupsub")
    sub = clients.raw_connected(b.port, cid, clean=False)
    sub.subscribe([(topic, qos)])
    pub = clients.raw_connected(b.port)
    pub.publish_acked(topic, b"again", qos=qos)
    first = sub.expect(PUBLISH)
    assert (first.qos, first.dup) == (qos, False)
    sub.close()  # no PUBACK / PUBREC

    sub = clients.raw(b.port)
    assert sub.connect(cid, clean=False).session_present == 1
    again = sub.expect(PUBLISH)
    assert (again.topic, again.payload, again.qos, again.pid, again.dup) == \
        (topic, b"again", qos, first.pid, True)
    if qos == 1:
        sub.send(puback_packet(again.pid))
    else:
        sub.send(pubrec_packet(again.pid))
        sub.expect(PUBREL, pid=again.pid)
        sub.send(pubcomp_packet(again.pid))
    sub.ping()


def test_inflight_packet_ids_are_distinct_and_nonzero(broker, clients):
    # [MQTT-2.3.1-1], [MQTT-2.3.1-2]: unacknowledged messages carry distinct, non-zero ids.
    b = broker()
    topic = unique("ids")
    sub = clients.raw_connected(b.port)
    sub.subscribe([(topic, 1)])
    pub = clients.raw_connected(b.port)
    for i in range(10):
        pub.publish_acked(topic, str(i).encode(), qos=1)
    got = [sub.expect(PUBLISH) for _ in range(10)]
    assert [p.payload for p in got] == [str(i).encode() for i in range(10)]
    ids = [p.pid for p in got]
    assert 0 not in ids and len(set(ids)) == 10, ids
    for pid in ids:
        sub.send(puback_packet(pid))
    sub.ping()


def test_subscriber_packet_ids_independent_of_publisher_ids(broker, clients):
    # Two publishers using the same packet id: both messages reach the subscriber.
    b = broker()
    topic = unique("pid")
    sub = clients.raw_connected(b.port)
    sub.subscribe([(topic, 2)])
    a = clients.raw_connected(b.port)
    c = clients.raw_connected(b.port)
    for who, pub in (("a", a), ("c", c)):
        pub.send(publish_packet(topic, who.encode(), qos=2, pid=1))
        pub.expect(PUBREC, pid=1)
        pub.send(pubrel_packet(1))
        pub.expect(PUBCOMP, pid=1)
    got = sub.receive_publishes(2)
    assert sorted(p.payload for p in got) == [b"a", b"c"]


@pytest.mark.parametrize("qos,count", [(0, 200), (1, 500), (2, 100)])
def test_order_kept_per_publisher_and_subscriber(broker, clients, qos, count):
    b = broker()
    topic = unique("order")
    sub = clients.paho(b.port)
    sub.subscribe(topic, qos)
    pub = clients.paho(b.port)
    last = None
    for i in range(count):
        last = pub.publish(topic, f"seq:{i}".encode(), qos=qos, wait=False)
    if qos:
        last.wait_for_publish(20)
    got = sub.expect(count, timeout=20)
    assert [m.payload for m in got] == [f"seq:{i}".encode() for i in range(count)]
    assert {m.qos for m in got} == {qos}
