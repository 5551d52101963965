# Sessions: clean vs persistent, offline queue (order, QoS 0, bound and drop policy), inflight
# window, redelivery and retry, QoS 2 exactly-once across reconnects, expiry, broker restart.

import time

import pytest

from helpers import (LEVEL_V31, LEVEL_V311, PUBCOMP, PUBLISH, PUBREC, PUBREL, is_mosquitto,
                     puback_packet, pubcomp_packet, pubrec_packet, pubrel_packet, unique)

MOSQUITTO_QUEUE_POLICY = ("mosquitto drops the newest message when a client's queue is full; "
                          "Tern drops QoS 0 first, then the oldest")


def reconnect(clients, port, cid, clean=False, level=LEVEL_V311):
    c = clients.raw(port)
    ack = c.connect(cid, clean=clean, level=level)
    assert ack.rc == 0, ack
    return c, ack.session_present


def publish_all(pub, topic, payloads, qos):
    for p in payloads:
        if qos == 0:
            pub.publish(topic, p, qos=0)
        else:
            pub.publish_acked(topic, p, qos=qos)
    pub.ping()  # everything before PINGRESP was read by the broker


@pytest.mark.parametrize("level", [LEVEL_V31, LEVEL_V311], ids=["v31", "v311"])
def test_clean_session_dropped_on_disconnect(broker, clients, level):
    b = broker()
    cid, topic, end = unique("clean"), unique("old"), unique("end")
    c = clients.raw_connected(b.port, cid, clean=True, level=level)
    c.subscribe([(topic, 1)])
    c.disconnect()
    c, sp = reconnect(clients, b.port, cid, clean=True, level=level)
    assert sp == 0
    c.subscribe([(end, 1)])
    pub = clients.raw_connected(b.port)
    publish_all(pub, topic, [b"to the old session"], 1)
    publish_all(pub, end, [b"sentinel"], 1)
    assert [p.topic for p in c.receive_publishes(1)] == [end], "old subscription survived"


def test_clean_connect_discards_persistent_session(broker, clients):
    b = broker()
    cid, topic, end = unique("p2c"), unique("old"), unique("end")
    c = clients.raw_connected(b.port, cid, clean=False)
    c.subscribe([(topic, 1)])
    c.disconnect()
    pub = clients.raw_connected(b.port)
    publish_all(pub, topic, [b"queued"], 1)
    c, sp = reconnect(clients, b.port, cid, clean=True)
    assert sp == 0
    c.subscribe([(end, 1)])
    publish_all(pub, topic, [b"live"], 1)
    publish_all(pub, end, [b"sentinel"], 1)
    assert [p.topic for p in c.receive_publishes(1)] == [end]
    c.disconnect()
    c, sp = reconnect(clients, b.port, cid, clean=False)
    assert sp == 0, "the clean connection must have discarded the stored session"


@pytest.mark.parametrize("level", [LEVEL_V31, LEVEL_V311], ids=["v31", "v311"])
def test_persistent_session_keeps_subscriptions(broker, clients, level):
    b = broker()
    cid, topic = unique("keep"), unique("sub")
    c = clients.raw_connected(b.port, cid, clean=False, level=level)
    c.subscribe([(topic, 1)])
    c.disconnect()
    c, sp = reconnect(clients, b.port, cid, clean=False, level=level)
    assert sp == (1 if level == LEVEL_V311 else 0)  # 3.1 has no session present flag
    pub = clients.raw_connected(b.port)
    publish_all(pub, topic, [b"still subscribed"], 1)
    assert [p.payload for p in c.receive_publishes(1)] == [b"still subscribed"]


@pytest.mark.parametrize("qos", [1, 2])
def test_offline_messages_queued_and_delivered_in_order(broker, clients, qos):
    b = broker()
    cid, topic = unique("off"), unique("q")
    c = clients.raw_connected(b.port, cid, clean=False)
    c.subscribe([(topic, 2)])
    c.disconnect()
    pub = clients.raw_connected(b.port)
    payloads = [f"m{i}".encode() for i in range(20)]
    publish_all(pub, topic, payloads, qos)
    c, sp = reconnect(clients, b.port, cid)
    assert sp == 1
    got = c.receive_publishes(20)
    assert [p.payload for p in got] == payloads
    assert {p.qos for p in got} == {qos}
    c.ping()


@pytest.mark.parametrize("queue_qos0", [True, False])
def test_offline_qos0_queued_only_with_queue_qos0(broker, clients, queue_qos0):
    b = broker(session={"queue_qos0": queue_qos0})
    cid, topic = unique("q0"), unique("q")
    c = clients.raw_connected(b.port, cid, clean=False)
    c.subscribe([(topic, 1)])
    c.disconnect()
    pub = clients.raw_connected(b.port)
    publish_all(pub, topic, [b"z1", b"z2"], 0)
    publish_all(pub, topic, [b"marker"], 1)
    c, sp = reconnect(clients, b.port, cid)
    assert sp == 1
    got = c.receive_publishes(3 if queue_qos0 else 1)
    expected = [(b"z1", 0), (b"z2", 0), (b"marker", 1)] if queue_qos0 else [(b"marker", 1)]
    assert [(p.payload, p.qos) for p in got] == expected
    c.ping()


def test_inflight_messages_resent_with_dup_on_reconnect(broker, clients):
    b = broker()
    cid, topic = unique("inf"), unique("q")
    c = clients.raw_connected(b.port, cid, clean=False)
    c.subscribe([(topic, 1)])
    pub = clients.raw_connected(b.port)
    publish_all(pub, topic, [f"m{i}".encode() for i in range(5)], 1)
    first = [c.expect(PUBLISH) for _ in range(5)]
    assert not any(p.dup for p in first)
    for p in first[:2]:
        c.send(puback_packet(p.pid))
    c.ping()
    c.close()
    publish_all(pub, topic, [b"m5"], 1)  # queued while offline
    c, sp = reconnect(clients, b.port, cid)
    assert sp == 1
    again = [c.expect(PUBLISH) for _ in range(4)]
    assert [(p.payload, p.pid, p.dup) for p in again[:3]] == \
        [(p.payload, p.pid, True) for p in first[2:]]
    # m5 may have gone to the old socket before the broker saw it close (then DUP=1 too).
    assert again[3].payload == b"m5"
    for p in again:
        c.send(puback_packet(p.pid))
    c.ping()


def test_session_expires_after_expiry_interval(broker, clients):
    b = broker(session={"expiry_interval": "2s"})
    cid, topic = unique("exp"), unique("q")
    c = clients.raw_connected(b.port, cid, clean=False)
    c.subscribe([(topic, 1)])
    c.disconnect()
    c, sp = reconnect(clients, b.port, cid)
    assert sp == 1, "the session must live while the interval has not passed"
    c.disconnect()
    pub = clients.raw_connected(b.port)
    publish_all(pub, topic, [b"lost with the session"], 1)
    time.sleep(3.0)  # the behaviour under test is the passing of time
    c, sp = reconnect(clients, b.port, cid)
    assert sp == 0, "session should have expired 2 s after the disconnect"
    c.subscribe([(topic + "/end", 1)])
    publish_all(pub, topic + "/end", [b"sentinel"], 1)
    assert [p.payload for p in c.receive_publishes(1)] == [b"sentinel"]


def fill_inflight_window(broker, clients):
    """max_inflight 2, five QoS 1 messages for a subscriber that has not acked: returns the
    subscriber and the two PUBLISH packets it got."""
    b = broker(session={"max_inflight": 2})
    topic = unique("win")
    c = clients.raw_connected(b.port)
    c.subscribe([(topic, 1)])
    pub = clients.raw_connected(b.port)
    publish_all(pub, topic, [f"m{i}".encode() for i in range(5)], 1)
    got = [c.expect(PUBLISH), c.expect(PUBLISH)]
    c.expect_no_packet(0.5)  # window full: nothing more until an ack
    return c, got


def test_inflight_window_holds_back_messages_until_acked(broker, clients):
    c, got = fill_inflight_window(broker, clients)
    c.send(puback_packet(got[0].pid))
    got += c.receive_publishes(1)  # the ack opened the window
    c.send(puback_packet(got[1].pid))
    got += c.receive_publishes(2)
    assert [p.payload for p in got] == [f"m{i}".encode() for i in range(5)]
    c.ping()


@pytest.mark.skipif(is_mosquitto(), reason="mosquitto 2.0.11 sends two messages on the first "
                    "PUBACK of a full window, leaving 3 in flight with max_inflight_messages 2")
def test_inflight_window_refills_one_per_ack(broker, clients):
    c, got = fill_inflight_window(broker, clients)
    for i in range(3):
        c.send(puback_packet(got[i].pid))
        got.append(c.expect(PUBLISH))
        c.expect_no_packet(0.3)
    for p in got[3:]:
        c.send(puback_packet(p.pid))
    assert [p.payload for p in got] == [f"m{i}".encode() for i in range(5)]
    c.ping()


@pytest.mark.skipif(is_mosquitto(), reason=MOSQUITTO_QUEUE_POLICY)
def test_full_queue_drops_oldest(broker, clients):
    b = broker(session={"max_queued_messages": 5})
    cid, topic = unique("bound"), unique("q")
    c = clients.raw_connected(b.port, cid, clean=False)
    c.subscribe([(topic, 1)])
    c.disconnect()
    pub = clients.raw_connected(b.port)
    publish_all(pub, topic, [f"m{i}".encode() for i in range(1, 11)], 1)
    c, sp = reconnect(clients, b.port, cid)
    assert sp == 1
    got = c.receive_publishes(5)
    assert [p.payload for p in got] == [f"m{i}".encode() for i in range(6, 11)]
    c.ping()


@pytest.mark.skipif(is_mosquitto(), reason=MOSQUITTO_QUEUE_POLICY)
def test_full_queue_drops_qos0_before_older_qos1(broker, clients):
    b = broker(session={"max_queued_messages": 5, "queue_qos0": True})
    cid, topic = unique("bound"), unique("q")
    c = clients.raw_connected(b.port, cid, clean=False)
    c.subscribe([(topic, 1)])
    c.disconnect()
    pub = clients.raw_connected(b.port)
    # Queue after m3: [m1 z1 m2 z2 m3] (full). m4, m5 push out z1, z2; m6 pushes out m1.
    for payload, qos in [(b"m1", 1), (b"z1", 0), (b"m2", 1), (b"z2", 0), (b"m3", 1),
                         (b"m4", 1), (b"m5", 1), (b"m6", 1)]:
        publish_all(pub, topic, [payload], qos)
    c, sp = reconnect(clients, b.port, cid)
    assert sp == 1
    got = c.receive_publishes(5)
    assert [p.payload for p in got] == [b"m2", b"m3", b"m4", b"m5", b"m6"]
    c.ping()


@pytest.mark.parametrize("qos", [1, 2])
def test_unacked_message_retried_while_connected(broker, clients, qos):
    b = broker(session={"retry_interval": "1s"})
    topic = unique("retry")
    c = clients.raw_connected(b.port)
    c.subscribe([(topic, qos)])
    pub = clients.raw_connected(b.port)
    publish_all(pub, topic, [b"again"], qos)
    first = c.expect(PUBLISH)
    start = time.monotonic()
    again = c.expect(PUBLISH, timeout=2.5)
    assert time.monotonic() - start >= 0.5, "resent too early for a 1 s retry interval"
    assert (again.payload, again.pid, again.qos, again.dup) == (b"again", first.pid, qos, True)
    if qos == 2:
        # Also the broker's PUBREL is retried until PUBCOMP arrives.
        c.send(pubrec_packet(first.pid))
        c.expect(PUBREL, pid=first.pid)
        c.expect(PUBREL, pid=first.pid, timeout=2.5)
        c.send(pubcomp_packet(first.pid))
    else:
        c.send(puback_packet(first.pid))
    c.expect_no_packet(1.5)  # acked: no more retries


@pytest.mark.parametrize("resend_publish", [True, False], ids=["resend-publish", "pubrel-only"])
def test_qos2_exactly_once_when_publisher_reconnects_mid_handshake(broker, clients,
                                                                   resend_publish):
    # [MQTT-4.3.3-2], [MQTT-4.4.0-1]: the broker keeps the packet id until PUBREL, across the
    # reconnect, and never forwards the message twice.
    b = broker()
    cid, topic = unique("pub2"), unique("once")
    sub = clients.raw_connected(b.port)
    sub.subscribe([(topic, 2)])
    pub = clients.raw_connected(b.port, cid, clean=False)
    pub.publish(topic, b"exactly once", qos=2, pid=3)
    pub.expect(PUBREC, pid=3)
    pub.close()
    pub, sp = reconnect(clients, b.port, cid)
    assert sp == 1
    if resend_publish:
        pub.publish(topic, b"exactly once", qos=2, pid=3, dup=True)
        pub.expect(PUBREC, pid=3)
    pub.send(pubrel_packet(3))
    pub.expect(PUBCOMP, pid=3)
    publish_all(pub, topic, [b"sentinel"], 1)
    got = sub.receive_publishes(2)
    assert [p.payload for p in got] == [b"exactly once", b"sentinel"]
    sub.ping()


def test_qos2_pubrel_resent_after_subscriber_reconnects(broker, clients):
    # [MQTT-4.4.0-1]: after PUBREC the broker resends PUBREL, not PUBLISH.
    b = broker()
    cid, topic = unique("sub2"), unique("once")
    c = clients.raw_connected(b.port, cid, clean=False)
    c.subscribe([(topic, 2)])
    pub = clients.raw_connected(b.port)
    publish_all(pub, topic, [b"exactly once"], 2)
    p = c.expect(PUBLISH)
    c.send(pubrec_packet(p.pid))
    c.expect(PUBREL, pid=p.pid)
    c.close()  # no PUBCOMP
    c, sp = reconnect(clients, b.port, cid)
    assert sp == 1
    rel = c.expect(PUBREL, pid=p.pid)
    assert rel.flags == 0x02
    c.send(pubcomp_packet(p.pid))
    c.ping()
    c.disconnect()
    c, sp = reconnect(clients, b.port, cid)
    c.ping()  # completed: nothing left to resend


def test_queued_messages_and_retained_survive_broker_restart(broker, clients):
    b = broker(persistent_store=True)
    cid, topic, kept = unique("restart"), unique("q"), unique("kept")
    c = clients.raw_connected(b.port, cid, clean=False)
    c.subscribe([(topic, 1)])
    c.disconnect()
    pub = clients.raw_connected(b.port)
    publish_all(pub, topic, [b"queued before restart"], 1)
    pub.publish_acked(kept, b"retained before restart", qos=1, retain=True)
    pub.disconnect()
    b.restart()
    c, sp = reconnect(clients, b.port, cid)
    assert sp == 1
    assert [p.payload for p in c.receive_publishes(1)] == [b"queued before restart"]
    late = clients.raw_connected(b.port)
    late.subscribe([(kept, 1)])
    p = late.receive_publishes(1)[0]
    assert (p.payload, p.retain) == (b"retained before restart", True)


def test_sigterm_stops_broker_cleanly(broker, clients):
    b = broker()
    c = clients.raw_connected(b.port, unique("t"), clean=False)
    c.subscribe([(unique("q"), 2)])
    rc, killed = b.stop()
    assert not killed, "broker still running 5 s after SIGTERM"
    assert rc == 0, f"exit code {rc} after SIGTERM\n{b.log_tail()}"
    c.wait_closed(timeout=1)
