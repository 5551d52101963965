# MQTT 5.0 conformance, chapters 4 (operational behavior) and 6 (WebSocket): one test per
# server-side normative statement that no other test checks. Each test is named after its
# statement and quotes the id in its docstring; docs/conformance.md maps every
# statement of these chapters to the test that checks it.
#
# Packets are hand-built (mqtt5.RawClient5) so that flags, packet identifiers, reason codes
# and the order of packets on the wire are exactly what the test says.

import socket
import time

import pytest

from helpers import (CONNACK, DISCONNECT, PINGREQ, PINGRESP, PUBACK, PUBCOMP, PUBLISH, PUBREC,
                     PUBREL, SUBACK, UNSUBACK, ConnectionClosed, is_mosquitto, packet, unique)
from mqtt5 import (AUTH, Packet5, RawClient5, ack5, auth5, connect5, disconnect5, publish5, raw5,
                   subscribe5, unsubscribe5)

tern_only = pytest.mark.skipif(is_mosquitto(), reason="uses Tern's configuration")

EXPIRY = [("session_expiry_interval", 60)]
PROTOCOL_ERROR = 0x82


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def persistent(port, cid=None, props=(), **kw):
    """A connected v5 client whose session outlives the connection (expiry 60 s)."""
    return raw5(port, cid or unique("ps"), props=EXPIRY + list(props), **kw)


def resume(port, cid, props=()):
    """Reconnects `cid` with Clean Start 0; the CONNACK must say the session was there."""
    c = RawClient5(port)
    ack = c.connect(cid, clean=False, props=EXPIRY + list(props))
    assert ack.rc == 0 and ack.session_present == 1, ack
    return c


def sync(c, timeout=5.0):
    """PINGREQ, then reads up to the PINGRESP; returns the packets that came before it."""
    c.send(packet(PINGREQ, 0))
    seen = []
    while True:
        p = c.read_packet(timeout)
        if p.type == PINGRESP:
            return seen
        seen.append(p)


def publish_all(pub, topic, payloads, qos=1, props=None):
    for payload in payloads:
        if qos == 0:
            pub.publish(topic, payload, props=props)
        else:
            pub.publish_acked(topic, payload, qos=qos, props=props)
    pub.ping()  # all read by the broker


def send_pipelined(pub, msgs):
    """Writes every (topic, payload, qos) at once, then completes the handshakes; returns the
    acknowledgements in the order they came (PUBACK / PUBREC packets)."""
    pids = {}
    data = b""
    for i, (topic, payload, qos) in enumerate(msgs, start=1):
        data += publish5(topic, payload, qos=qos, pid=i if qos else None)
        if qos:
            pids[i] = qos
    pub.send(data)
    acks, comps = [], 0
    want_comps = sum(1 for q in pids.values() if q == 2)
    while len(acks) < len(pids) or comps < want_comps:
        p = pub.read_packet()
        if p.type in (PUBACK, PUBREC):
            acks.append(p)
            if p.type == PUBREC:
                pub.send(ack5(PUBREL, p.pid))
        elif p.type == PUBCOMP:
            comps += 1
        else:
            raise AssertionError(f"unexpected {p!r} while publishing")
    return acks


def scram_broker(broker, tmp_path, **sections):
    from access_util import make_passwd
    pw = make_passwd(tmp_path / "passwd", {"alice": "wonderland"})
    return broker(auth={"allow_anonymous": False, "chain": ["password_file"],
                        "password_file": pw}, **sections)


SCRAM = "SCRAM-SHA-256"


def scram_start(port, cid=None):
    """CONNECT with SCRAM-SHA-256; returns (client, ScramClient, server-first message)."""
    from access_util import ScramClient
    s = ScramClient("alice", "wonderland")
    c = RawClient5(port)
    c.send(connect5(cid or unique("scram"), props=[("authentication_method", SCRAM),
                                                   ("authentication_data", s.first())]))
    a = c.expect(AUTH)
    assert a.rc == 0x18 and a.prop("authentication_method") == SCRAM, a
    return c, s, a.prop("authentication_data").decode()


def scram_connected(port):
    c, s, server_first = scram_start(port)
    c.send(auth5(0x18, [("authentication_method", SCRAM),
                        ("authentication_data", s.final(server_first))]))
    ack = c.expect(CONNACK)
    assert ack.rc == 0, ack
    return c


# ---------------------------------------------------------------------------------------------
# 4.1 Session State
# ---------------------------------------------------------------------------------------------

@tern_only
def test_mqtt_4_1_0_1_session_state_is_kept_while_the_connection_is_open(broker):
    """[MQTT-4.1.0-1] The session is not discarded while its connection is open, however
    long that is: with a session expiry of 1 s, a client connected for longer keeps its
    subscription, its unacknowledged message, its QoS 2 message awaiting PUBREL, and its
    session after the close."""
    b = broker(session={"expiry_interval": "1s"})
    cid, topic = unique("open"), unique("open")
    c = RawClient5(b.port)
    c.connect_ok(cid, clean=True, props=[("session_expiry_interval", 1)])
    c.subscribe([(topic, 1)])
    pub = raw5(b.port)
    pub.publish_acked(topic, b"unacked", qos=1)
    first = c.expect_publish()                       # left unacknowledged
    c.publish(unique("in"), b"q2", qos=2, pid=77)
    c.expect_ack(PUBREC, 77)                         # no PUBREL yet
    deadline = time.monotonic() + 1.6                # longer than the session expiry
    while time.monotonic() < deadline:
        assert sync(c) == []
        time.sleep(0.3)
    c.send(ack5(PUBREL, 77))
    assert c.expect(PUBCOMP, pid=77).rc == 0x00      # the id awaiting PUBREL was kept
    pub.publish_acked(topic, b"still subscribed", qos=1)
    assert c.expect_publish().payload == b"still subscribed"
    c.close()                                        # the first message is still unacked
    again = RawClient5(b.port)
    ack = again.connect(cid, clean=False, props=[("session_expiry_interval", 1)])
    assert ack.session_present == 1, ack
    got = again.receive_publishes(2)
    assert [(p.payload, p.dup) for p in got] == [(b"unacked", True), (b"still subscribed", True)]
    assert got[0].pid == first.pid


# ---------------------------------------------------------------------------------------------
# 4.3 Quality of Service levels and protocol flows
# ---------------------------------------------------------------------------------------------

def test_mqtt_4_3_1_1_qos0_delivery_has_qos_0_and_dup_0(broker):
    """[MQTT-4.3.1-1] A QoS 0 delivery is a PUBLISH with QoS 0 and DUP 0: also for messages
    published at QoS 1/2 with DUP 1 (granted QoS 0), and for one that waited in the offline
    queue of a persistent session."""
    b = broker()
    cid, topic = unique("q0"), unique("q0")
    sub = persistent(b.port, cid)
    sub.subscribe([(topic, 0)])
    pub = raw5(b.port)
    pub.publish(topic, b"zero")
    pub.send(publish5(topic, b"one", qos=1, pid=1, dup=True))
    pub.expect_ack(PUBACK, 1)
    pub.send(publish5(topic, b"two", qos=2, pid=2, dup=True))
    pub.expect_ack(PUBREC, 2)
    pub.send(ack5(PUBREL, 2))
    pub.expect_ack(PUBCOMP, 2)
    got = [sub.expect_publish() for _ in range(3)]
    sub.disconnect()
    publish_all(pub, topic, [b"queued"], qos=1)
    again = resume(b.port, cid)
    got.append(again.expect_publish())
    assert [(p.payload, p.flags, p.pid) for p in got] == \
        [(b"zero", 0, None), (b"one", 0, None), (b"two", 0, None), (b"queued", 0, None)]


@pytest.mark.parametrize("qos", [1, 2])
def test_mqtt_4_3_2_2_and_4_3_3_2_new_message_has_its_qos_and_dup_0(broker, qos):
    """[MQTT-4.3.2-2] A new QoS 1 message goes out as a PUBLISH with QoS 1 and DUP 0.
    [MQTT-4.3.3-2] A new QoS 2 message goes out as a PUBLISH with QoS 2 and DUP 0.
    Whatever the publisher's DUP flag, and also when it was queued while the client was away
    (its first sending is not a resend)."""
    b = broker()
    cid, topic = unique("new"), unique("new")
    sub = persistent(b.port, cid)
    sub.subscribe([(topic, 2)])
    pub = raw5(b.port)
    pub.send(publish5(topic, b"live", qos=qos, pid=9, dup=True))
    if qos == 1:
        pub.expect_ack(PUBACK, 9)
    else:
        pub.expect_ack(PUBREC, 9)
        pub.send(ack5(PUBREL, 9))
        pub.expect_ack(PUBCOMP, 9)
    got = sub.receive_publishes(1)
    sub.disconnect()
    publish_all(pub, topic, [b"queued"], qos=qos)
    again = resume(b.port, cid)
    got += again.receive_publishes(1)
    assert [(p.payload, p.qos, p.dup) for p in got] == [(b"live", qos, False),
                                                        (b"queued", qos, False)]
    assert all(p.pid for p in got), got


def test_mqtt_4_3_2_3_qos1_publish_is_unacknowledged_until_puback(broker):
    """[MQTT-4.3.2-3] The broker treats its QoS 1 PUBLISH as unacknowledged until the PUBACK:
    it takes the client's one Receive Maximum slot, and is resent (same identifier, DUP 1) when
    the client comes back without having acknowledged it; once acknowledged, never again."""
    b = broker()
    cid, topic = unique("un1"), unique("un1")
    sub = persistent(b.port, cid, props=[("receive_maximum", 1)])
    sub.subscribe([(topic, 1)])
    pub = raw5(b.port)
    publish_all(pub, topic, [b"m1", b"m2"])
    first = sub.expect_publish()
    assert first.payload == b"m1"
    sub.expect_no_packet(0.4)  # m2 waits: m1 is still unacknowledged
    sub.close()
    again = resume(b.port, cid, props=[("receive_maximum", 1)])
    p = again.expect_publish()
    assert (p.payload, p.pid, p.dup) == (b"m1", first.pid, True), p
    again.send(ack5(PUBACK, p.pid))
    p2 = again.expect_publish()
    assert (p2.payload, p2.dup) == (b"m2", False), p2
    again.send(ack5(PUBACK, p2.pid))
    assert sync(again) == []
    again.close()
    last = resume(b.port, cid)
    assert sync(last) == []  # both acknowledged: nothing is resent


@pytest.mark.parametrize("qos", [1, 2])
def test_mqtt_4_3_2_4_and_4_3_3_8_the_ack_means_the_broker_owns_the_message(broker, qos):
    """[MQTT-4.3.2-4] The PUBACK carries the PUBLISH's identifier and is sent once the broker
    owns the message. [MQTT-4.3.3-8] Likewise the PUBREC for QoS 2. A publisher that goes away
    right after the acknowledgement (QoS 2: without ever sending PUBREL) does not lose its
    message: an offline persistent subscriber receives it."""
    b = broker()
    cid, topic = unique("own"), unique("own")
    sub = persistent(b.port, cid)
    sub.subscribe([(topic, 2)])
    sub.disconnect()
    pub = raw5(b.port)
    pub.send(publish5(topic, b"owned", qos=qos, pid=0x4242))
    ack = pub.expect(PUBACK if qos == 1 else PUBREC)
    assert (ack.pid, ack.rc) == (0x4242, 0x00), ack
    pub.close()
    again = resume(b.port, cid)
    p = again.receive_publishes(1)[0]
    assert (p.payload, p.qos) == (b"owned", qos)


def test_mqtt_4_3_2_5_same_identifier_after_puback_is_a_new_message(broker):
    """[MQTT-4.3.2-5] After its PUBACK, a PUBLISH with the same Packet Identifier is a new
    message, DUP flag or not: each one is delivered."""
    b = broker()
    topic = unique("reuse1")
    sub = raw5(b.port)
    sub.subscribe([(topic, 1)])
    pub = raw5(b.port)
    for payload, dup in ((b"a", False), (b"b", True), (b"c", True)):
        pub.send(publish5(topic, payload, qos=1, pid=5, dup=dup))
        assert pub.expect_ack(PUBACK, 5).rc == 0x00
    assert [p.payload for p in sub.receive_publishes(3)] == [b"a", b"b", b"c"]
    assert sync(sub) == []


def test_mqtt_4_3_3_3_qos2_publish_is_unacknowledged_until_pubrec(broker):
    """[MQTT-4.3.3-3] The broker treats its QoS 2 PUBLISH as unacknowledged until the PUBREC:
    a client that comes back without having sent PUBREC gets the PUBLISH again (same
    identifier, DUP 1); after PUBREC it gets PUBREL, never the PUBLISH."""
    b = broker()
    cid, topic = unique("un2"), unique("un2")
    sub = persistent(b.port, cid)
    sub.subscribe([(topic, 2)])
    pub = raw5(b.port)
    publish_all(pub, topic, [b"m"], qos=2)
    first = sub.expect_publish()
    sub.close()
    again = resume(b.port, cid)
    p = again.expect_publish()
    assert (p.payload, p.qos, p.pid, p.dup) == (b"m", 2, first.pid, True), p
    again.send(ack5(PUBREC, p.pid))
    assert again.expect(PUBREL).pid == p.pid
    again.close()
    last = resume(b.port, cid)
    rel = last.read_packet()
    assert (rel.type, rel.pid) == (PUBREL, p.pid), rel
    last.send(ack5(PUBCOMP, p.pid))
    assert sync(last) == []


def test_mqtt_4_3_3_4_pubrel_only_after_a_successful_pubrec(broker):
    """[MQTT-4.3.3-4] The broker answers a PUBREC below 0x80 with a PUBREL of the same
    identifier. A PUBREC of 0x80 or more ends the exchange instead (4.3.3: the identifier is
    free again; 4.9: the send quota is returned): no PUBREL follows it, and with a Receive
    Maximum of 1 the next message comes without a PUBCOMP."""
    b = broker()
    topic = unique("rel")
    sub = raw5(b.port, props=[("receive_maximum", 1)])
    sub.subscribe([(topic, 2)])
    pub = raw5(b.port)
    publish_all(pub, topic, [b"ok", b"refused", b"next"], qos=2)
    ok = sub.expect_publish()
    sub.send(ack5(PUBREC, ok.pid))
    assert sub.expect(PUBREL).pid == ok.pid
    sub.send(ack5(PUBCOMP, ok.pid))
    refused = sub.expect_publish()
    assert refused.payload == b"refused"
    sub.send(ack5(PUBREC, refused.pid, rc=0x80))
    p = sub.read_packet()
    assert (p.type, getattr(p, "payload", None)) == (PUBLISH, b"next"), \
        f"after PUBREC 0x80 for {refused.pid}: {p!r} (expected the next PUBLISH, no PUBREL)"


def test_mqtt_4_3_3_5_and_6_pubrel_is_resent_until_pubcomp_never_the_publish(broker):
    """[MQTT-4.3.3-5] The broker's PUBREL stays unacknowledged until PUBCOMP: resent at every
    reconnection before it. [MQTT-4.3.3-6] Once PUBREL is sent, the PUBLISH is never sent
    again."""
    b = broker()
    cid, topic = unique("pubrel"), unique("pubrel")
    sub = persistent(b.port, cid)
    sub.subscribe([(topic, 2)])
    pub = raw5(b.port)
    publish_all(pub, topic, [b"m"], qos=2)
    p = sub.expect_publish()
    sub.send(ack5(PUBREC, p.pid))
    assert sub.expect(PUBREL).pid == p.pid
    sub.close()  # no PUBCOMP
    for _ in range(2):
        again = resume(b.port, cid)
        seen = sync(again)
        assert [(x.type, x.pid) for x in seen] == [(PUBREL, p.pid)], seen
        again.close()
    last = resume(b.port, cid)
    assert last.expect(PUBREL).pid == p.pid
    last.send(ack5(PUBCOMP, p.pid))
    assert sync(last) == []
    last.close()
    done = resume(b.port, cid)
    assert sync(done) == []


def test_mqtt_4_3_3_7_no_message_expiry_once_the_qos2_publish_is_sent(broker):
    """[MQTT-4.3.3-7] A QoS 2 PUBLISH already sent is not expired: resent after its Message
    Expiry Interval has passed. (A message with the same expiry still queued, never sent, is
    expired [MQTT-3.3.2-5].)"""
    b = broker()
    cid, topic = unique("exp2"), unique("exp2")
    sub = persistent(b.port, cid, props=[("receive_maximum", 1)])
    sub.subscribe([(topic, 2)])
    pub = raw5(b.port)
    publish_all(pub, topic, [b"sent", b"queued"], qos=2,
                props=[("message_expiry_interval", 1)])
    first = sub.expect_publish()
    assert first.payload == b"sent"
    sub.close()
    time.sleep(1.5)  # past the expiry of both
    again = resume(b.port, cid, props=[("receive_maximum", 1)])
    p = again.expect_publish()
    assert (p.payload, p.pid, p.dup) == (b"sent", first.pid, True), p
    again.send(ack5(PUBREC, p.pid))
    assert again.expect(PUBREL).pid == p.pid
    again.send(ack5(PUBCOMP, p.pid))
    assert sync(again) == []  # "queued" expired before it was sent


def test_mqtt_4_3_3_9_after_a_failed_pubrec_the_identifier_is_a_new_message(broker):
    """[MQTT-4.3.3-9] After a PUBREC of 0x80 or more, a PUBLISH with the same identifier is a
    new message (not a duplicate of the refused one): it is routed and acknowledged 0x00."""
    b = broker()
    topic = unique("r80")
    sub = raw5(b.port)
    sub.subscribe([(topic, 2)])
    pub = raw5(b.port)
    # The payload does not match its Payload Format Indicator: PUBREC 0x99.
    pub.send(publish5(topic, b"\xff\xfe", qos=2, pid=7, props=[("payload_format_indicator", 1)]))
    assert pub.expect_ack(PUBREC, 7).rc == 0x99
    pub.send(publish5(topic, b"good", qos=2, pid=7, dup=True))
    assert pub.expect_ack(PUBREC, 7).rc == 0x00
    pub.send(ack5(PUBREL, 7))
    assert pub.expect_ack(PUBCOMP, 7).rc == 0x00
    assert [p.payload for p in sub.receive_publishes(1)] == [b"good"]


def test_mqtt_4_3_3_10_duplicates_before_pubrel_get_pubrec_and_are_not_delivered(broker):
    """[MQTT-4.3.3-10] Until PUBREL, a PUBLISH with the same identifier is answered with
    PUBREC and not delivered again, also when the publisher resends it after reconnecting."""
    b = broker()
    cid, topic = unique("dupq2"), unique("dupq2")
    sub = raw5(b.port)
    sub.subscribe([(topic, 2)])
    pub = persistent(b.port, cid)
    pub.send(publish5(topic, b"once", qos=2, pid=3))
    pub.expect_ack(PUBREC, 3)
    pub.send(publish5(topic, b"once", qos=2, pid=3, dup=True))
    pub.expect_ack(PUBREC, 3)
    pub.close()
    pub = resume(b.port, cid)
    pub.send(publish5(topic, b"once", qos=2, pid=3, dup=True))
    pub.expect_ack(PUBREC, 3)
    pub.send(ack5(PUBREL, 3))
    assert pub.expect_ack(PUBCOMP, 3).rc == 0x00
    publish_all(pub, topic, [b"sentinel"])  # same publisher: ordered after any copy
    assert [p.payload for p in sub.receive_publishes(2)] == [b"once", b"sentinel"]


def test_mqtt_4_3_3_12_same_identifier_after_pubcomp_is_a_new_message(broker):
    """[MQTT-4.3.3-12] After its PUBCOMP, a PUBLISH with the same identifier is a new
    message, DUP flag or not: each one is delivered."""
    b = broker()
    topic = unique("reuse2")
    sub = raw5(b.port)
    sub.subscribe([(topic, 2)])
    pub = raw5(b.port)
    for payload, dup in ((b"a", False), (b"b", True), (b"c", True)):
        pub.send(publish5(topic, payload, qos=2, pid=5, dup=dup))
        assert pub.expect_ack(PUBREC, 5).rc == 0x00
        pub.send(ack5(PUBREL, 5))
        assert pub.expect_ack(PUBCOMP, 5).rc == 0x00
    assert [p.payload for p in sub.receive_publishes(3)] == [b"a", b"b", b"c"]


def test_mqtt_4_3_3_13_qos2_exchange_goes_on_after_the_message_expired(broker):
    """[MQTT-4.3.3-13] The QoS 2 acknowledgement sequence continues after the message's
    expiry: a PUBREL that comes after the Message Expiry Interval gets PUBCOMP 0x00."""
    b = broker()
    pub = raw5(b.port)
    pub.send(publish5(unique("late"), b"x", qos=2, pid=11,
                      props=[("message_expiry_interval", 1)]))
    assert pub.expect_ack(PUBREC, 11).rc < 0x80
    time.sleep(1.4)
    pub.send(ack5(PUBREL, 11))
    assert pub.expect_ack(PUBCOMP, 11).rc == 0x00


# ---------------------------------------------------------------------------------------------
# 4.4 Message delivery retry
# ---------------------------------------------------------------------------------------------

@tern_only
def test_mqtt_4_4_0_1_resend_only_on_reconnect(broker):
    """[MQTT-4.4.0-1] Unacknowledged PUBLISH and PUBREL packets are resent when the client
    reconnects with Clean Start 0 (original identifiers), and at no other time: not to a
    connected MQTT 5 client, even with a retry interval configured."""
    b = broker(session={"retry_interval": "500ms"})
    cid, topic = unique("retry"), unique("retry")
    sub = persistent(b.port, cid)
    sub.subscribe([(topic, 2)])
    pub = raw5(b.port)
    publish_all(pub, topic, [b"q1"], qos=1)
    publish_all(pub, topic, [b"q2"], qos=2)
    p1, p2 = sub.expect_publish(), sub.expect_publish()
    sub.send(ack5(PUBREC, p2.pid))
    assert sub.expect(PUBREL).pid == p2.pid
    sub.expect_no_packet(1.6)  # three retry intervals: nothing is resent while connected
    sub.close()
    again = resume(b.port, cid)
    seen = sync(again)
    assert [(x.type, x.pid, getattr(x, "dup", None)) for x in seen] == \
        [(PUBLISH, p1.pid, True), (PUBREL, p2.pid, None)], seen


@pytest.mark.parametrize("ack", [PUBACK, PUBREC], ids=["puback-0x80", "pubrec-0x80"])
def test_mqtt_4_4_0_2_refused_publish_is_not_retransmitted(broker, ack):
    """[MQTT-4.4.0-2] A PUBLISH the client answered with PUBACK or PUBREC of 0x80 or more is
    acknowledged: it is not sent again, neither while connected nor at the reconnection."""
    b = broker()
    cid, topic = unique("r80"), unique("r80")
    sub = persistent(b.port, cid)
    sub.subscribe([(topic, 1 if ack == PUBACK else 2)])
    pub = raw5(b.port)
    publish_all(pub, topic, [b"refused"], qos=1 if ack == PUBACK else 2)
    p = sub.expect_publish()
    sub.send(ack5(ack, p.pid, rc=0x80))
    seen = sync(sub)
    assert [x for x in seen if x.type == PUBLISH] == [], seen
    sub.close()
    again = resume(b.port, cid)
    seen = sync(again)
    for x in seen:
        if x.type == PUBREL:
            again.send(ack5(PUBCOMP, x.pid))
    assert [x for x in seen if x.type == PUBLISH] == [], seen


# ---------------------------------------------------------------------------------------------
# 4.6 Message ordering
# ---------------------------------------------------------------------------------------------

def test_mqtt_4_6_0_1_resends_keep_the_original_order(broker):
    """[MQTT-4.6.0-1] (a Client rule) Resent PUBLISH packets go in the order of the originals:
    Tern keeps it as a sender too, QoS 1 and 2 mixed."""
    b = broker()
    cid, topic = unique("reorder"), unique("reorder")
    sub = persistent(b.port, cid)
    sub.subscribe([(topic, 2)])
    pub = raw5(b.port)
    for i in range(6):
        publish_all(pub, topic, [f"m{i}".encode()], qos=1 + i % 2)
    first = [sub.expect_publish() for _ in range(6)]
    sub.close()
    again = resume(b.port, cid)
    got = again.receive_publishes(6)
    assert [(p.payload, p.pid, p.dup) for p in got] == \
        [(p.payload, p.pid, True) for p in first]


@pytest.mark.parametrize("qos", [1, 2])
def test_mqtt_4_6_0_2_and_3_acks_go_out_in_publish_order(broker, qos):
    """[MQTT-4.6.0-2] [MQTT-4.6.0-3] (Client rules) PUBACK / PUBREC go in the order of the
    PUBLISH packets: Tern keeps it as a receiver, also when some acknowledgements wait for the
    store (messages for a persistent session) and others do not."""
    b = broker()
    root = unique("ackorder")
    durable = persistent(b.port)
    durable.subscribe([(root + "/durable", 2)])
    pub = raw5(b.port)
    msgs = [(f"{root}/{'durable' if i % 2 else 'plain'}", f"m{i}".encode(), qos)
            for i in range(1, 41)]
    acks = send_pipelined(pub, msgs)
    assert [a.pid for a in acks] == list(range(1, 41))
    assert [p.payload for p in durable.receive_publishes(20)] == \
        [m[1] for m in msgs if m[0].endswith("durable")]


def test_mqtt_4_6_0_4_pubrels_go_out_in_pubrec_order(broker):
    """[MQTT-4.6.0-4] (a Client rule) PUBREL packets go in the order of the PUBRECs: Tern keeps
    it as a sender."""
    b = broker()
    topic = unique("relorder")
    sub = raw5(b.port)
    sub.subscribe([(topic, 2)])
    pub = raw5(b.port)
    publish_all(pub, topic, [f"m{i}".encode() for i in range(6)], qos=2)
    got = [sub.expect_publish() for _ in range(6)]
    order = [got[i].pid for i in (3, 1, 5, 0, 4, 2)]
    sub.send(b"".join(ack5(PUBREC, pid) for pid in order))
    assert [sub.expect(PUBREL).pid for _ in order] == order
    sub.send(b"".join(ack5(PUBCOMP, pid) for pid in order))
    assert sync(sub) == []


def test_mqtt_4_6_0_5_messages_of_a_topic_and_qos_keep_the_publisher_order(broker):
    """[MQTT-4.6.0-5] For each topic and QoS, subscribers get a publisher's messages in the
    order it sent them: 180 PUBLISH packets of 3 topics and 3 QoS written at once, delivered
    to an exact and a wildcard subscriber (QoS 2 granted), one of them behind a Receive
    Maximum of 3."""
    b = broker()
    root = unique("ord")
    topics = [f"{root}/t{t}" for t in range(3)]
    exact = raw5(b.port)
    exact.subscribe([(t, 2) for t in topics])
    wild = raw5(b.port, props=[("receive_maximum", 3)])
    wild.subscribe([(root + "/#", 2)])
    msgs = [(topics[i % 3], f"{i % 3}:{(i // 3) % 3}:{i}".encode(), (i // 3) % 3)
            for i in range(180)]
    pub = raw5(b.port)
    send_pipelined(pub, msgs)
    for sub in (exact, wild):
        got = sub.receive_publishes(180, timeout=10)
        for t in range(3):
            for q in range(3):
                sent = [m[1] for m in msgs if m[0] == topics[t] and m[2] == q]
                recv = [p.payload for p in got if p.topic == topics[t] and p.qos == q]
                assert recv == sent, (t, q, recv[:5], sent[:5])


def test_mqtt_4_6_0_6_every_topic_is_ordered_on_non_shared_subscriptions(broker):
    """[MQTT-4.6.0-6] Every topic is an Ordered Topic for non-shared subscriptions: two
    publishers interleaving QoS 1 messages on 10 topics, a subscriber on every topic (through
    '#') with a Receive Maximum of 2, so that most messages wait in its queue: each publisher's
    messages of each topic arrive in the order sent."""
    b = broker()
    root = unique("ord6")
    sub = raw5(b.port, props=[("receive_maximum", 2)])
    sub.subscribe([(root + "/#", 1)])
    pubs = [raw5(b.port), raw5(b.port)]
    sent = {}
    for i in range(60):
        for k, pub in enumerate(pubs):
            topic = f"{root}/t{i % 10}" + ("/deep" if i % 4 == 1 else "")
            payload = f"{k}:{i}".encode()
            pub.publish(topic, payload, qos=1, pid=i + 1)
            sent.setdefault((k, topic), []).append(payload)
    for pub in pubs:
        for i in range(60):
            pub.expect(PUBACK)
    got = sub.receive_publishes(120, timeout=10)
    for (k, topic), payloads in sent.items():
        assert [p.payload for p in got if p.topic == topic and
                p.payload.startswith(f"{k}:".encode())] == payloads, (k, topic)


# ---------------------------------------------------------------------------------------------
# 4.7 Topic Names and Topic Filters
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("topic", ["a/+", "a/#", "+", "#", "a/b+", "a#"])
def test_mqtt_4_7_0_1_wildcards_are_not_allowed_in_a_topic_name(broker, topic):
    """[MQTT-4.7.0-1] '+' and '#' are not allowed in a Topic Name: the PUBLISH is refused
    with DISCONNECT (0x90 Topic Name invalid, or 0x82), the connection closed, nothing
    routed."""
    b = broker()
    watcher = raw5(b.port)
    watcher.subscribe([("#", 0)])
    c = raw5(b.port)
    c.send(publish5(topic, b"x", qos=1, pid=1))
    seen = c.wait_closed()
    assert [(p.type, p.rc in (0x90, PROTOCOL_ERROR)) for p in seen] == [(DISCONNECT, True)], seen
    watcher.expect_no_packet(0.3)


def test_mqtt_4_7_1_1_multi_level_wildcard(broker):
    """[MQTT-4.7.1-1] '#' stands alone or after a '/', as the last character: such filters are
    granted and match the parent level and any number of levels below; other uses of '#' are
    refused (SUBACK 0x8F)."""
    b = broker()
    root = unique("mlw")
    end = root + "/end"
    sub = raw5(b.port)
    ack = sub.subscribe([(root + "/sport/#", 1), ("#", 1), (end, 1), (root + "/tennis#", 1),
                         (root + "/sport/#/ranking", 1), ("#/" + root, 1), (root + "/##", 1)])
    assert ack.codes == [1, 1, 1, 0x8F, 0x8F, 0x8F, 0x8F], ack
    only = raw5(b.port)
    only.subscribe([(root + "/sport/#", 1), (end, 1)])
    topics = [root + "/sport", root + "/sport/", root + "/sport/tennis/player1",
              root + "/sports", root + "/other", "/" + root]
    pub = raw5(b.port)
    for t in topics + [end]:
        publish_all(pub, t, [t.encode()])
    got = [p.topic for p in only.receive_publishes(4)]
    assert got == topics[:3] + [end], got
    got = [p.topic for p in sub.receive_publishes(len(topics) + 1)]
    assert got == topics + [end], got  # '#' alone: every topic, one copy each


def test_mqtt_4_7_1_2_single_level_wildcard(broker):
    """[MQTT-4.7.1-2] '+' occupies a whole level, at any level: it matches exactly one level
    (also an empty one); "sport+" or "+a" is refused (SUBACK 0x8F)."""
    b = broker()
    root = unique("slw")
    end = root + "-end"
    filters = {"+/+": None, "/+": None, "+": None, root + "/+": None, root + "/+/x/+": None}
    for f in filters:
        c = raw5(b.port)
        assert c.subscribe([(f, 1), (end, 1)]).codes == [1, 1], f
        filters[f] = c
    bad = raw5(b.port)
    assert bad.subscribe([(root + "+", 1), ("+" + root, 1), (root + "/a+/b", 1),
                          (root + "/+/", 1)]).codes == [0x8F, 0x8F, 0x8F, 1]
    topics = ["/" + root, root, root + "/", root + "/a", root + "/a/b", root + "/a/x/b"]
    expected = {
        "+/+": ["/" + root, root + "/", root + "/a"],
        "/+": ["/" + root],
        "+": [root],
        root + "/+": [root + "/", root + "/a"],
        root + "/+/x/+": [root + "/a/x/b"],
    }
    pub = raw5(b.port)
    for t in topics + [end]:
        publish_all(pub, t, [t.encode()])
    for f, c in filters.items():
        got = [p.topic for p in c.receive_publishes(len(expected[f]) + 1)]
        assert got == expected[f] + [end], f


def test_mqtt_4_7_2_1_wildcard_first_filters_do_not_match_dollar_topics(broker):
    """[MQTT-4.7.2-1] A filter starting with '#' or '+' (also inside $share) does not match a
    topic starting with '$'; a filter starting with the '$' level does."""
    b = broker()
    dollar = "$" + unique("dl")
    name = dollar + "/monitor/Clients"
    wild = {f: raw5(b.port) for f in ("#", "+/monitor/Clients", "+/#", "$share/g/#")}
    for f, c in wild.items():
        c.subscribe([(f, 1)])
    tame = {f: raw5(b.port) for f in (dollar + "/#", dollar + "/monitor/+")}
    for f, c in tame.items():
        c.subscribe([(f, 1)])
    pub = raw5(b.port)
    assert pub.publish_acked(name, b"dollar").rc == 0x00
    end = unique("end") + "/monitor/Clients"
    pub.publish_acked(end, b"end")
    for f, c in wild.items():
        assert [p.topic for p in c.receive_publishes(1)] == [end], f
        assert sync(c) == [], f
    for f, c in tame.items():
        assert [p.topic for p in c.receive_publishes(1)] == [name], f


def test_mqtt_4_7_3_1_topics_and_filters_have_at_least_one_character(broker):
    """[MQTT-4.7.3-1] An empty Topic Filter is refused (SUBACK 0x8F, the other filters of the
    SUBSCRIBE granted); an empty Topic Name without a Topic Alias closes the connection
    (DISCONNECT 0x82 or 0x90)."""
    b = broker()
    c = raw5(b.port)
    good = unique("one")
    assert c.subscribe([("", 1), (good, 1)]).codes == [0x8F, 1]
    c.send(publish5("", b"x", qos=1, pid=1))
    seen = c.wait_closed()
    assert [(p.type, p.rc in (PROTOCOL_ERROR, 0x90)) for p in seen] == [(DISCONNECT, True)], seen


def test_mqtt_4_7_3_3_topic_of_65535_bytes_works_end_to_end(broker):
    """[MQTT-4.7.3-3] Topic Names and Filters are at most 65535 bytes (the length prefix holds
    no more): a filter and a name of exactly 65535 bytes, some of them 3-byte characters, are
    granted, matched and sent back byte for byte."""
    b = broker()
    root = unique("long") + "/"
    topic = root + "\u20ac" * 1000
    topic += "x" * (65535 - len(topic.encode()))
    assert len(topic.encode()) == 65535
    sub = raw5(b.port)
    assert sub.subscribe([(topic, 1), (root + "#", 0)]).codes == [1, 0]
    pub = raw5(b.port)
    assert pub.publish_acked(topic, b"long", props=[("user_property", ("k", "v"))]).rc == 0
    p = sub.receive_publishes(1)[0]
    assert (p.topic == topic, p.qos, p.payload) == (True, 1, b"long")


# ---------------------------------------------------------------------------------------------
# 4.8 Subscriptions
# ---------------------------------------------------------------------------------------------

@tern_only
def test_mqtt_4_8_2_2_share_name_rules(broker):
    """[MQTT-4.8.2-1] [MQTT-4.8.2-2] A shared filter is $share/, a ShareName of one character
    or more without '/', '+', '#', then '/' and a Topic Filter: other forms are refused (SUBACK
    0x8F); "$share/g//finance" is the filter "/finance"."""
    b = broker()
    root = unique("sn")
    c = raw5(b.port)
    bad = ["$share/g#/" + root, "$share/+/" + root, "$share/a+b/" + root, "$share/g/",
           "$share/" + root, "$share//" + root, "$share/g/" + root + "/#/x"]
    ack = c.subscribe([(f, 1) for f in bad] + [("$share/g//" + root, 1)])
    assert ack.codes == [0x8F] * len(bad) + [1], ack
    pub = raw5(b.port)
    publish_all(pub, "/" + root, [b"slash"])
    publish_all(pub, root, [b"no slash"])
    assert [(p.topic, p.payload) for p in c.receive_publishes(1)] == [("/" + root, b"slash")]
    assert sync(c) == []


@tern_only
def test_mqtt_4_8_2_3_shared_delivery_respects_the_granted_qos(broker):
    """[MQTT-4.8.2-3] A message sent through a shared subscription has the QoS granted to that
    member (the lower of it and the message's): members of QoS 0, 1 and 2 in one group."""
    b = broker(mqtt5={"shared_subscription_strategy": "round_robin"})
    topic = unique("shq")
    members = []
    for q in range(3):
        m = raw5(b.port)
        assert m.subscribe([(f"$share/g/{topic}", q)]).codes == [q]
        members.append(m)
    pub = raw5(b.port)
    publish_all(pub, topic, [f"m{i}".encode() for i in range(6)], qos=2)
    for q, m in enumerate(members):
        got = m.receive_publishes(2)
        assert [p.qos for p in got] == [q, q], (q, got)


@tern_only
@pytest.mark.parametrize("phase", ["before-pubrec", "before-pubcomp"])
def test_mqtt_4_8_2_4_shared_qos2_delivery_is_completed_with_the_same_client(broker, phase):
    """[MQTT-4.8.2-4] A shared QoS 2 message whose delivery the connection's loss interrupted
    is completed with the same client when it reconnects (PUBLISH again, or PUBREL), and given
    to no other member."""
    b = broker()
    topic, cid = unique("sh4"), unique("sh4")
    first = persistent(b.port, cid)
    first.subscribe([(f"$share/g/{topic}", 2)])
    pub = raw5(b.port)
    publish_all(pub, topic, [b"exactly once"], qos=2)
    p = first.expect_publish()
    if phase == "before-pubcomp":
        first.send(ack5(PUBREC, p.pid))
        assert first.expect(PUBREL).pid == p.pid
    other = raw5(b.port)
    other.subscribe([(f"$share/g/{topic}", 2)])
    first.close()
    again = resume(b.port, cid)
    seen = sync(again)
    if phase == "before-pubrec":
        assert [(x.type, x.pid, getattr(x, "payload", None), getattr(x, "dup", None))
                for x in seen] == [(PUBLISH, p.pid, b"exactly once", True)], seen
        again.send(ack5(PUBREC, p.pid))
        assert again.expect(PUBREL).pid == p.pid
    else:
        assert [(x.type, x.pid) for x in seen] == [(PUBREL, p.pid)], seen
    again.send(ack5(PUBCOMP, p.pid))
    other.expect_no_packet(0.5)


@tern_only
def test_mqtt_4_8_2_5_shared_qos2_message_of_an_ended_session_goes_to_nobody_else(broker):
    """[MQTT-4.8.2-5] A shared QoS 2 message already sent to a member whose session ends
    before it reconnects is not sent to any other member."""
    b = broker()
    topic = unique("sh5")
    first = raw5(b.port)  # session expiry 0: the session ends with the connection
    first.subscribe([(f"$share/g/{topic}", 2)])
    pub = raw5(b.port)
    publish_all(pub, topic, [b"started"], qos=2)
    assert first.expect_publish().payload == b"started"  # no PUBREC
    other = raw5(b.port)
    other.subscribe([(f"$share/g/{topic}", 2)])
    first.close()
    time.sleep(0.3)
    publish_all(pub, topic, [b"later"], qos=2)
    got = other.receive_publishes(1)
    assert [p.payload for p in got] == [b"later"], got
    assert sync(other) == []


@tern_only
def test_mqtt_4_8_2_6_refused_shared_message_is_discarded(broker):
    """[MQTT-4.8.2-6] A shared message the member answered with PUBACK or PUBREC of 0x80 or
    more is discarded: not sent to any other member, even when that member's session ends."""
    b = broker()
    topic = unique("sh6")
    first = raw5(b.port)
    first.subscribe([(f"$share/g/{topic}", 2)])
    pub = raw5(b.port)
    publish_all(pub, topic, [b"q1"], qos=1)
    publish_all(pub, topic, [b"q2"], qos=2)
    p1, p2 = first.expect_publish(), first.expect_publish()
    first.send(ack5(PUBACK, p1.pid, rc=0x80) + ack5(PUBREC, p2.pid, rc=0x80))
    sync(first)  # both read (a PUBREL, if any, is skipped)
    other = raw5(b.port)
    other.subscribe([(f"$share/g/{topic}", 2)])
    first.close()
    time.sleep(0.3)
    publish_all(pub, topic, [b"later"], qos=1)
    got = other.receive_publishes(1)
    assert [p.payload for p in got] == [b"later"], got
    assert sync(other) == []


# ---------------------------------------------------------------------------------------------
# 4.9 Flow Control
# ---------------------------------------------------------------------------------------------

def test_mqtt_4_9_0_2_no_qos_1_2_publish_when_the_quota_is_zero(broker):
    """[MQTT-4.9.0-1] [MQTT-4.9.0-2] The send quota starts at the client's Receive Maximum
    (1) and is not above it: with one QoS 2 message out, the next waits until PUBCOMP (PUBREC
    does not return the quota); a PUBACK returns it even with an error code. QoS 0 is not
    held back by the quota (MAY)."""
    b = broker()
    topic = unique("quota")
    sub = raw5(b.port, props=[("receive_maximum", 1)])
    sub.subscribe([(topic, 2)])
    pub = raw5(b.port)
    publish_all(pub, topic, [b"a", b"b"], qos=2)
    publish_all(pub, topic, [b"c", b"d"], qos=1)
    publish_all(pub, topic, [b"zero"], qos=0)
    a = sub.expect_publish()
    assert a.payload == b"a"
    assert sub.expect_publish().payload == b"zero"  # QoS 0 goes on
    sub.expect_no_packet(0.3)
    sub.send(ack5(PUBREC, a.pid))
    assert sub.expect(PUBREL).pid == a.pid
    sub.expect_no_packet(0.3)  # quota still 0: "b" waits for the PUBCOMP
    sub.send(ack5(PUBCOMP, a.pid))
    b_ = sub.expect_publish()
    assert b_.payload == b"b"
    sub.send(ack5(PUBREC, b_.pid))
    sub.expect(PUBREL)
    sub.send(ack5(PUBCOMP, b_.pid))
    c = sub.expect_publish()
    assert c.payload == b"c"
    sub.expect_no_packet(0.3)
    sub.send(ack5(PUBACK, c.pid, rc=0x80))  # an error code returns the quota too
    assert sub.expect_publish().payload == b"d"


def test_mqtt_4_9_0_3_other_packets_are_handled_while_the_quota_is_zero(broker):
    """[MQTT-4.9.0-3] With its send quota at zero the broker still answers everything else:
    PINGREQ, SUBSCRIBE, UNSUBSCRIBE, the client's own PUBLISH (QoS 1 and 2), and the PUBREC of
    the message out (PUBREL), while the next QoS 2 message waits."""
    b = broker()
    topic = unique("q0")
    sub = raw5(b.port, props=[("receive_maximum", 1)])
    sub.subscribe([(topic, 2)])
    pub = raw5(b.port)
    publish_all(pub, topic, [b"first", b"second"], qos=2)
    first = sub.expect_publish()
    assert sync(sub) == []
    sub.send(subscribe5(20, [(unique("more"), 1)]))
    assert sub.expect(SUBACK, pid=20).codes == [1]
    sub.send(unsubscribe5(21, [unique("none")]))
    assert sub.expect(UNSUBACK, pid=21).pid == 21
    sub.send(publish5(unique("own"), b"x", qos=1, pid=22))
    sub.expect(PUBACK, pid=22)
    sub.send(publish5(unique("own"), b"y", qos=2, pid=23))
    sub.expect(PUBREC, pid=23)
    sub.send(ack5(PUBREL, 23))
    sub.expect(PUBCOMP, pid=23)
    sub.send(ack5(PUBREC, first.pid))
    assert sub.expect(PUBREL).pid == first.pid
    sub.send(ack5(PUBCOMP, first.pid))
    assert sub.expect_publish().payload == b"second"


# ---------------------------------------------------------------------------------------------
# 4.12 Enhanced authentication
# ---------------------------------------------------------------------------------------------

AUTH_REPLIES = {
    "reason-0x19": (0x19, SCRAM),
    "reason-0x00": (0x00, SCRAM),
    "other-method": (0x18, "SCRAM-SHA-1"),
    "no-method": (0x18, None),
}


@tern_only
@pytest.mark.parametrize("reply", AUTH_REPLIES.values(), ids=AUTH_REPLIES.keys())
def test_mqtt_4_12_0_3_and_5_client_auth_continues_with_0x18_and_the_method(broker, tmp_path,
                                                                            reply):
    """[MQTT-4.12.0-3] (a Client rule) The client answers the server's AUTH with AUTH 0x18.
    [MQTT-4.12.0-5] Every AUTH carries the CONNECT's Authentication Method. An answer with
    another reason code, another method or none is refused: CONNACK 0x80 or more (session
    present 0) at most, then the close."""
    b = scram_broker(broker, tmp_path)
    rc, method = reply
    c, s, server_first = scram_start(b.port)
    props = [("authentication_data", s.final(server_first))]
    if method is not None:
        props.insert(0, ("authentication_method", method))
    c.send(auth5(rc, props))
    seen = c.wait_closed()
    # A CONNACK is optional here (the AUTH without a method is a malformed packet to Tern's
    # decoder, closed without one); a DISCONNECT would come before any CONNACK [MQTT-3.14.0-1].
    assert [(p.type, p.rc >= 0x80, p.session_present) for p in seen] in \
        ([], [(CONNACK, True, 0)]), seen


@tern_only
def test_mqtt_4_12_0_6_no_authentication_method_no_auth_packet(broker, tmp_path):
    """[MQTT-4.12.0-6] A client that named no Authentication Method gets no AUTH packet and no
    Authentication Method (nor Data) in its CONNACK: anonymous, or with user name and password
    on a broker that also offers SCRAM-SHA-256."""
    plain = broker()
    c = RawClient5(plain.port)
    c.send(connect5(unique("plain")))
    ack = c.read_packet()
    assert ack.type == CONNACK and ack.rc == 0, ack
    assert ack.prop("authentication_method") is None and ack.prop("authentication_data") is None
    b = scram_broker(broker, tmp_path)
    c = RawClient5(b.port)
    c.send(connect5(unique("pw"), username="alice", password="wonderland"))
    ack = c.read_packet()
    assert ack.type == CONNACK and ack.rc == 0, ack
    assert ack.prop("authentication_method") is None and ack.prop("authentication_data") is None
    assert sync(c) == []


@tern_only
def test_mqtt_4_12_1_1_reauthentication_with_another_method_is_refused(broker, tmp_path):
    """[MQTT-4.12.1-1] (a Client rule) Re-authentication uses the method the connection was
    authenticated with: AUTH 0x19 with another method gets DISCONNECT 0x82, then the close."""
    b = scram_broker(broker, tmp_path)
    c = scram_connected(b.port)
    c.send(auth5(0x19, [("authentication_method", "PLAIN"), ("authentication_data", b"x")]))
    c.expect_disconnect(PROTOCOL_ERROR)


@tern_only
def test_mqtt_4_12_1_2_failed_reauthentication_closes_the_connection(broker, tmp_path):
    """[MQTT-4.12.1-2] A re-authentication that fails (Tern supports none: every AUTH 0x19
    fails) closes the connection, after a DISCONNECT (SHOULD)."""
    from access_util import ScramClient
    b = scram_broker(broker, tmp_path)
    c = scram_connected(b.port)
    c.send(auth5(0x19, [("authentication_method", SCRAM),
                        ("authentication_data", ScramClient("alice", "wonderland").first())]))
    seen = c.wait_closed()
    assert [(p.type, p.rc >= 0x80) for p in seen] in ([], [(DISCONNECT, True)]), seen


# ---------------------------------------------------------------------------------------------
# 4.13 Handling errors
# ---------------------------------------------------------------------------------------------

def test_mqtt_4_13_2_1_disconnect_0x80_or_more_closes_the_connection(broker):
    """[MQTT-4.13.2-1] With a Reason Code of 0x80 or more the connection is closed: a client
    that sends DISCONNECT 0x80 (or 0x93) and leaves its socket open is closed by the broker,
    without an answer."""
    b = broker()
    for rc in (0x80, 0x93):
        c = raw5(b.port)
        c.send(disconnect5(rc))
        assert c.wait_closed() == [], rc


# ---------------------------------------------------------------------------------------------
# 6 Using WebSocket as a network transport
# ---------------------------------------------------------------------------------------------

def ws_packet(ws, timeout=5.0):
    """The next MQTT 5 packet from a test_21 RawWs; every frame it comes in must be binary."""
    deadline = time.monotonic() + timeout
    while True:
        data = ws.mqtt
        if len(data) >= 2:
            i, length, mult = 1, 0, 1
            while i < len(data):
                length += (data[i] & 0x7F) * mult
                mult *= 128
                i += 1
                if not data[i - 1] & 0x80:
                    break
            if not data[i - 1] & 0x80 and len(data) >= i + length:
                ws.mqtt = data[i + length:]
                return Packet5(data[0], data[i:i + length])
        op, payload = ws.read_frame(max(deadline - time.monotonic(), 0.001))
        assert op in (0, 2), f"MQTT in a WebSocket frame of opcode {op}, not binary"
        ws.mqtt += payload


@tern_only
def test_mqtt_6_0_0_1_mqtt5_goes_in_binary_frames_only(broker):
    """[MQTT-6.0.0-1] MQTT 5 over WebSocket: the broker's packets come in binary frames, and
    a text frame from the client closes the connection (no PINGRESP for the PINGREQ in it)."""
    from test_21_websocket import RawWs, ws_broker
    b = ws_broker(broker)
    ws = RawWs(b.ws_port)
    assert ws.status == 101
    ws.send(ws.frame(connect5(unique("ws5"))))
    ack = ws_packet(ws)
    assert (ack.type, ack.rc) == (CONNACK, 0), ack
    ws.send(ws.frame(packet(PINGREQ, 0)))
    assert ws_packet(ws).type == PINGRESP
    ws.send(ws.frame(packet(PINGREQ, 0), opcode=1))
    try:
        while True:
            op, payload = ws.read_frame()
            if op == 8:
                break  # close frame
            assert not (op == 2 and payload[:1] == bytes([PINGRESP << 4])), \
                "the PINGREQ in a text frame was answered"
    except (ConnectionClosed, ConnectionResetError):
        pass  # EOF
    except socket.timeout:
        raise AssertionError("the connection is still open after a text frame")
    ws.close()
    b.assert_alive()


@tern_only
def test_mqtt_6_0_0_2_packets_are_not_aligned_on_frames(broker):
    """[MQTT-6.0.0-2] MQTT 5 packets are read across WebSocket frame boundaries: a CONNECT in
    one-byte frames, then SUBSCRIBE, PINGREQ and part of a PUBLISH in one frame, the rest of
    the PUBLISH in the next; the message reaches a TCP subscriber intact."""
    from test_21_websocket import RawWs, ws_broker
    b = ws_broker(broker)
    topic = unique("ws")
    tcp = raw5(b.port)
    tcp.subscribe([(topic, 1)])
    ws = RawWs(b.ws_port)
    c = connect5(unique("ws5"))
    ws.send(*[ws.frame(c[i:i + 1]) for i in range(len(c))])
    assert ws_packet(ws).type == CONNACK
    pub = publish5(topic, b"payload", qos=1, pid=2, props=[("user_property", ("k", "v"))])
    ws.send(ws.frame(subscribe5(1, [(unique("other"), 1)]) + packet(PINGREQ, 0) + pub[:7]),
            ws.frame(pub[7:]))
    got = [ws_packet(ws) for _ in range(3)]
    # Answered by different actors: the SUBACK may come after the other two.
    assert sorted((p.type, p.pid or 0) for p in got) == \
        sorted([(SUBACK, 1), (PINGRESP, 0), (PUBACK, 2)]), got
    p = tcp.receive_publishes(1)[0]
    assert (p.payload, p.all("user_property")) == (b"payload", [("k", "v")])
    ws.close()


@tern_only
@pytest.mark.parametrize("offered", ["mqtt", "mqtt, mqttv3.1", "mqttv3.1, mqtt", "mqttv5, mqtt",
                                     "chat, mqtt"])
def test_mqtt_6_0_0_4_the_selected_subprotocol_is_mqtt(broker, offered):
    """[MQTT-6.0.0-4] The subprotocol the broker selects is "mqtt" when the client offers it
    ([MQTT-6.0.0-3]), wherever in its list; MQTT 5 runs over that connection."""
    from test_21_websocket import RawWs, ws_broker
    b = ws_broker(broker)
    ws = RawWs(b.ws_port, protocols=offered)
    assert ws.status == 101, offered
    assert ws.headers.get("sec-websocket-protocol") == "mqtt", (offered, ws.headers)
    ws.send(ws.frame(connect5(unique("ws5"))))
    assert ws_packet(ws).type == CONNACK
    ws.close()
