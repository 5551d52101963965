# MQTT 3.1.1 conformance: one test per server-side normative statement (or per client rule
# whose handling by the server is worth pinning down) that no other test checks. Each test is
# named after its statement and quotes the id in its docstring; docs/conformance.md
# maps every statement of MQTT 3.1.1 (with errata 01) to the test that checks it.
#
# Packets are hand-built (helpers.RawClient) so that flags, packet identifiers and the bytes of
# topic names are exactly what the test says.

import struct
import time

import pytest

from helpers import (CONNACK, CONNACK_IDENTIFIER_REJECTED, CONNECT, DISCONNECT, PINGRESP,
                     PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, SUBACK, SUBSCRIBE, UNSUBACK,
                     UNSUBSCRIBE, ConnectionClosed, assert_pubsub_works, connect_packet,
                     disconnect_packet, is_mosquitto, mqtt_string, packet, pingreq_packet,
                     puback_packet, pubcomp_packet, publish_packet, pubrec_packet, pubrel_packet,
                     subscribe_packet, unique, unsubscribe_packet)

WILL_PAYLOAD = b"will \x00\xff"


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def connect_bytes(flags, *fields, level=4, keepalive=60):
    """CONNECT with hand-set connect flags; `fields` are payload strings (str or raw bytes)."""
    body = mqtt_string("MQTT") + bytes([level, flags]) + struct.pack("!H", keepalive)
    return packet(CONNECT, 0, body + b"".join(mqtt_string(f) for f in fields))


def until_closed(clients, port, data, timeout=5.0):
    """Sends `data` on a new connection; returns the packets the broker sent before closing."""
    c = clients.raw(port)
    try:
        c.send(data)
    except ConnectionClosed:
        pass
    return c.wait_closed(timeout)


def closed_after(c, data, timeout=5.0):
    """Sends `data` on the connected client `c`; returns what came before the broker closed."""
    try:
        c.send(data)
    except ConnectionClosed:
        pass
    return c.wait_closed(timeout)


def assert_no_retained(clients, port, topic):
    """A new subscription to `topic` gets no retained message: the next packet after the
    SUBACK is the PINGRESP."""
    late = clients.raw_connected(port)
    late.subscribe([(topic, 1)])
    late.ping()


def will_of(topic, qos=1, retain=False):
    return {"topic": topic, "payload": WILL_PAYLOAD, "qos": qos, "retain": retain}


# ---------------------------------------------------------------------------------------------
# 1.5.3 UTF-8 encoded strings
# ---------------------------------------------------------------------------------------------

BAD_UTF8 = {
    "subscribe-invalid-byte": subscribe_packet(1, [(b"a/\xff", 0)]),
    "subscribe-surrogate": subscribe_packet(1, [(b"a/\xed\xa0\x80", 0)]),
    "subscribe-overlong": subscribe_packet(1, [(b"\xc0\xaf", 0)]),
    "unsubscribe-invalid-byte": unsubscribe_packet(1, [b"a/\xfe"]),
    "unsubscribe-truncated-sequence": unsubscribe_packet(1, [b"a/\xe2\x82"]),
}


@pytest.mark.parametrize("case", BAD_UTF8.keys())
def test_mqtt_1_5_3_1_ill_formed_utf8_closes_the_connection(broker, clients, case):
    """[MQTT-1.5.3-1] A Control Packet with ill-formed UTF-8 in a string (here a topic filter)
    makes the receiver close the Network Connection. ([MQTT-3.8.3-1], [MQTT-3.10.3-1]: filters
    are UTF-8 strings.) CONNECT strings: test_mqtt_3_1_4_1_..., PUBLISH: test_09."""
    b = broker()
    c = clients.raw_connected(b.port)
    seen = closed_after(c, BAD_UTF8[case])
    assert seen == [], f"expected the connection closed without an answer, got {seen}"
    assert_pubsub_works(b.port)


NUL_IN_STRING = {
    "subscribe-filter": subscribe_packet(1, [(b"a/\x00/b", 0)]),
    "unsubscribe-filter": unsubscribe_packet(1, [b"a\x00"]),
}


@pytest.mark.parametrize("case", NUL_IN_STRING.keys())
def test_mqtt_1_5_3_2_null_character_closes_the_connection(broker, clients, case):
    """[MQTT-1.5.3-2] A string containing U+0000 makes the receiver close the Network
    Connection ([MQTT-4.7.3-2]: no U+0000 in topic filters)."""
    b = broker()
    c = clients.raw_connected(b.port)
    seen = closed_after(c, NUL_IN_STRING[case])
    assert seen == [], f"expected the connection closed without an answer, got {seen}"
    assert_pubsub_works(b.port)


def test_mqtt_1_5_3_3_bom_is_neither_skipped_nor_stripped(broker, clients):
    """[MQTT-1.5.3-3] 0xEF 0xBB 0xBF is U+FEFF wherever it appears; the receiver never skips
    or strips it: a topic with it is another topic, and it reaches subscribers unchanged."""
    b = broker()
    root = unique("bom")
    with_bom, plain = f"{root}/\ufeffx\ufeff", f"{root}/x"
    exact = clients.raw_connected(b.port)
    assert exact.subscribe([(with_bom, 1)]).codes == [1]
    other = clients.raw_connected(b.port)
    assert other.subscribe([(plain, 1)]).codes == [1]
    wild = clients.raw_connected(b.port)
    assert wild.subscribe([(root + "/+", 1)]).codes == [1]
    pub = clients.raw_connected(b.port)
    pub.publish_acked(with_bom, b"with", qos=1)
    pub.publish_acked(plain, b"plain", qos=1)
    assert [(p.topic, p.payload) for p in wild.receive_publishes(2)] == \
        [(with_bom, b"with"), (plain, b"plain")]
    got = exact.receive_publishes(1)
    assert [(p.topic, p.payload) for p in got] == [(with_bom, b"with")]
    assert got[0].body[2:2 + len(with_bom.encode())] == with_bom.encode()
    assert [(p.topic, p.payload) for p in other.receive_publishes(1)] == [(plain, b"plain")]
    exact.ping()
    other.ping()


# ---------------------------------------------------------------------------------------------
# 2.2.2 Flags, 2.3.1 Packet Identifier
# ---------------------------------------------------------------------------------------------

def test_mqtt_2_2_2_1_server_sets_the_reserved_flags(broker, clients):
    """[MQTT-2.2.2-1] Every packet the Server sends has the fixed header flags of Table 2.2:
    0000 for CONNACK, PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK, PINGRESP, 0010 for PUBREL,
    and DUP/QoS/RETAIN as meant for PUBLISH."""
    b = broker()
    topic = unique("flags")
    sub = clients.raw(b.port)
    ack = sub.connect(unique("sub"))
    assert (ack.type, ack.flags, ack.body) == (CONNACK, 0, b"\x00\x00")
    suback = sub.subscribe([(topic, 2)])
    assert (suback.flags, suback.codes) == (0, [2])
    pub = clients.raw_connected(b.port)
    pub.publish(topic, b"q1", qos=1, pid=1)
    puback = pub.expect(PUBACK, pid=1)
    assert (puback.flags, len(puback.body)) == (0, 2)
    pub.publish(topic, b"q2", qos=2, pid=2)
    pubrec = pub.expect(PUBREC, pid=2)
    assert (pubrec.flags, len(pubrec.body)) == (0, 2)
    pub.send(pubrel_packet(2))
    pubcomp = pub.expect(PUBCOMP, pid=2)
    assert (pubcomp.flags, len(pubcomp.body)) == (0, 2)
    first = sub.expect(PUBLISH)
    assert (first.payload, first.flags) == (b"q1", 0x02)  # QoS 1, no DUP, no RETAIN
    sub.send(puback_packet(first.pid))
    second = sub.expect(PUBLISH)
    assert (second.payload, second.flags) == (b"q2", 0x04)  # QoS 2
    sub.send(pubrec_packet(second.pid))
    rel = sub.expect(PUBREL, pid=second.pid)
    assert (rel.flags, len(rel.body)) == (0x02, 2)
    sub.send(pubcomp_packet(second.pid))
    pub.publish(topic, b"q0", qos=0)
    third = sub.expect(PUBLISH)
    assert (third.payload, third.flags) == (b"q0", 0x00)
    unsuback = sub.unsubscribe(topic)
    assert (unsuback.flags, len(unsuback.body)) == (0, 2)
    pingresp = sub.ping()
    assert (pingresp.flags, pingresp.body) == (0, b"")


INVALID_FLAGS = {
    "puback-0001": packet(PUBACK, 0x01, b"\x00\x01"),
    "pubrec-0010": packet(PUBREC, 0x02, b"\x00\x01"),
    "pubcomp-1000": packet(PUBCOMP, 0x08, b"\x00\x01"),
    "pubrel-1010": packet(PUBREL, 0x0A, b"\x00\x01"),
    "subscribe-1010": packet(SUBSCRIBE, 0x0A, subscribe_packet(1, [("t", 0)])[2:]),
    "unsubscribe-0011": packet(UNSUBSCRIBE, 0x03, unsubscribe_packet(1, ["t"])[2:]),
}


# Violations Mosquitto 2.0.11 lets through (Tern closes the connection, as the spec says).
MOSQUITTO_IGNORES_FLAGS = "mosquitto 2.0.11 ignores the reserved flags of PUBACK, PUBREC, PUBCOMP"


@pytest.mark.parametrize("case", INVALID_FLAGS.keys())
def test_mqtt_2_2_2_2_invalid_flags_close_the_connection(broker, clients, case):
    """[MQTT-2.2.2-2] A packet whose reserved fixed header flags differ from Table 2.2 makes the
    receiver close the Network Connection (the cases test_09 does not send)."""
    if is_mosquitto() and case.split("-")[0] in ("puback", "pubrec", "pubcomp"):
        pytest.skip(MOSQUITTO_IGNORES_FLAGS)
    b = broker()
    c = clients.raw_connected(b.port)
    seen = closed_after(c, INVALID_FLAGS[case])
    assert seen == [], f"expected the connection closed without an answer, got {seen}"
    assert_pubsub_works(b.port)


PACKET_ID_ZERO = {
    "subscribe": subscribe_packet(0, [("t", 0)]),
    "unsubscribe": unsubscribe_packet(0, ["t"]),
    "publish-qos2": publish_packet("t", b"x", qos=2, pid=0),
}


@pytest.mark.parametrize("case", PACKET_ID_ZERO.keys())
def test_mqtt_2_3_1_1_packet_identifier_zero_closes_the_connection(broker, clients, case):
    """[MQTT-2.3.1-1] SUBSCRIBE, UNSUBSCRIBE and QoS > 0 PUBLISH carry a non-zero Packet
    Identifier; the broker treats 0 as a protocol violation and closes [MQTT-4.8.0-1]."""
    b = broker()
    c = clients.raw_connected(b.port)
    seen = closed_after(c, PACKET_ID_ZERO[case])
    assert seen == [], f"expected the connection closed without an answer, got {seen}"


# ---------------------------------------------------------------------------------------------
# 3.1 CONNECT
# ---------------------------------------------------------------------------------------------

def test_mqtt_3_1_2_7_retained_messages_outlive_the_session(broker, clients):
    """[MQTT-3.1.2-7] Retained messages are not part of the Session state: they are not
    deleted when the Session ends (clean session closed, persistent session discarded)."""
    b = broker()
    clean_topic, kept_topic = unique("clean"), unique("kept")
    clean = clients.raw_connected(b.port, unique("pc"), clean=True)
    clean.publish_acked(clean_topic, b"from a clean session", qos=1, retain=True)
    clean.disconnect()  # its session ends with the connection
    cid = unique("pp")
    persistent = clients.raw_connected(b.port, cid, clean=False)
    persistent.publish_acked(kept_topic, b"from a persistent session", qos=1, retain=True)
    persistent.disconnect()
    discard = clients.raw(b.port)
    assert discard.connect(cid, clean=True).session_present == 0  # the session is discarded
    discard.disconnect()
    sub = clients.raw_connected(b.port)
    sub.subscribe([(clean_topic, 1), (kept_topic, 1)])
    got = sub.receive_publishes(2)
    assert sorted((p.topic, p.payload, p.retain) for p in got) == sorted([
        (clean_topic, b"from a clean session", True),
        (kept_topic, b"from a persistent session", True)])


def test_mqtt_3_1_2_10_will_is_removed_once_published(broker, clients):
    """[MQTT-3.1.2-10] Once published, the Will Message is removed from the Session state: it
    is not published again when the same persistent session later ends or is discarded."""
    b = broker()
    will_topic, end = unique("will"), unique("end")
    observer = clients.raw_connected(b.port)
    observer.subscribe([(will_topic, 1), (end, 1)])
    cid = unique("dying")
    first = clients.raw_connected(b.port, cid, clean=False, will=will_of(will_topic))
    first.close()  # no DISCONNECT: the will goes out
    got = observer.receive_publishes(1)
    assert [(p.topic, p.payload) for p in got] == [(will_topic, WILL_PAYLOAD)]
    # The same session resumed without a will, then closed again without DISCONNECT.
    second = clients.raw(b.port)
    assert second.connect(cid, clean=False).session_present == 1
    second.close()
    # The session discarded by a clean connection, which ends with a will on `end`.
    third = clients.raw(b.port)
    third.connect_ok(cid, clean=True, will=will_of(end))
    third.close()
    got = observer.receive_publishes(1)
    assert [(p.topic, p.payload) for p in got] == [(end, WILL_PAYLOAD)], \
        "the first will was published again"
    observer.expect_no_packet(0.3)


def test_mqtt_3_1_2_12_no_will_without_the_will_flag(broker, clients):
    """[MQTT-3.1.2-12] With Will Flag 0 no Will Message is published when the connection
    ends, even if an earlier connection of the same persistent session had one."""
    b = broker()
    will_topic, end = unique("will"), unique("end")
    observer = clients.raw_connected(b.port)
    observer.subscribe([(will_topic, 1), (end, 1)])
    cid = unique("nowill")
    first = clients.raw_connected(b.port, cid, clean=False, will=will_of(will_topic))
    first.disconnect()  # discards that will [MQTT-3.14.4-3]
    second = clients.raw(b.port)
    assert second.connect(cid, clean=False).session_present == 1
    second.close()  # Will Flag 0: nothing to publish
    marker = clients.raw_connected(b.port, will=will_of(end))
    marker.close()
    got = observer.receive_publishes(1)
    assert [(p.topic, p.payload) for p in got] == [(end, WILL_PAYLOAD)], \
        "a will was published for a connection without the will flag"
    observer.expect_no_packet(0.3)


SHORT_IDS = ["0", "Z", "0123456789abcdefghijklm", "nopqrstuvwxyzABCDEFGHIJ", "KLMNOPQRSTUVWXYZ"]


@pytest.mark.parametrize("config", [{}, {"mqtt": {"max_clientid_len": 23}}],
                         ids=["default", "max-clientid-len-23"])
def test_mqtt_3_1_3_5_client_ids_of_1_to_23_alphanumerics_are_allowed(broker, clients, config):
    """[MQTT-3.1.3-5] The Server allows every ClientId of 1 to 23 bytes made of 0-9, a-z and
    A-Z, also with the smallest client id limit Tern can be configured to."""
    b = broker(**config)
    for cid in SHORT_IDS:
        c = clients.raw(b.port)
        ack = c.connect(cid, clean=False)
        assert (ack.rc, ack.session_present) == (0, 0), (cid, ack)
        c.disconnect()
        # The id identifies the session [MQTT-3.1.3-2]: it is there when the client returns.
        c = clients.raw(b.port)
        ack = c.connect(cid, clean=False)
        assert (ack.rc, ack.session_present) == (0, 1), (cid, ack)
        c.disconnect()


NONCONFORMING_CONNECT = {
    # [MQTT-3.1.2-9] Will Flag 1 without the Will Topic and Will Message.
    "will-flag-without-will-fields": connect_bytes(0x06, "c"),
    # [MQTT-3.1.2-11] Will Flag 0 with a Will Topic and Will Message in the payload.
    "will-fields-without-will-flag": connect_bytes(0x02, "c", "wt", "wp"),
    # [MQTT-3.1.2-18] User Name Flag 0 with a user name.
    "user-name-without-flag": connect_bytes(0x02, "c", "user"),
    # [MQTT-3.1.2-19] User Name Flag 1 without a user name.
    "user-name-flag-without-user-name": connect_bytes(0x82, "c"),
    # [MQTT-3.1.2-20] Password Flag 0 with a password.
    "password-without-flag": connect_bytes(0x82, "c", "user", "secret"),
    # [MQTT-3.1.2-21] Password Flag 1 without a password.
    "password-flag-without-password": connect_bytes(0xC2, "c", "user"),
    # [MQTT-3.1.3-3] no Client Identifier at all.
    "no-client-id": connect_bytes(0x02),
    # [MQTT-3.1.3-4] / [MQTT-1.5.3-1] the Client Identifier is not UTF-8.
    "client-id-invalid-utf8": connect_bytes(0x02, b"c\xc3\x28"),
    # [MQTT-1.5.3-2] U+0000 in the Client Identifier.
    "client-id-nul": connect_bytes(0x02, b"a\x00b"),
    # [MQTT-3.1.3-10] the Will Topic is not UTF-8.
    "will-topic-invalid-utf8": connect_bytes(0x0E, "c", b"w/\xff", "p"),
    # [MQTT-3.1.3-11] the User Name is not UTF-8.
    "user-name-invalid-utf8": connect_bytes(0x82, "c", b"u\xed\xa0\x80"),
}


@pytest.mark.parametrize("case", NONCONFORMING_CONNECT.keys())
def test_mqtt_3_1_4_1_nonconforming_connect_is_closed_without_connack(broker, clients, case):
    """[MQTT-3.1.4-1] A CONNECT that does not conform to section 3.1 is answered by closing the
    Network Connection without sending a CONNACK ([MQTT-3.2.2-6]: no return code applies)."""
    b = broker()
    seen = until_closed(clients, b.port, NONCONFORMING_CONNECT[case])
    assert seen == [], f"expected the connection closed without a CONNACK, got {seen}"
    assert_pubsub_works(b.port)


REJECTED_CONNECT = {
    "identifier-rejected": connect_packet("", clean=False),
    "unacceptable-protocol-level": connect_packet(unique("c"), level=6),
}


@pytest.mark.parametrize("case", REJECTED_CONNECT.keys())
def test_mqtt_3_1_4_5_data_after_a_rejected_connect_is_not_processed(broker, clients, case):
    """[MQTT-3.1.4-5] If the Server rejects the CONNECT it does not process anything the
    client sent after it: here a retained PUBLISH, a SUBSCRIBE and a PINGREQ in the same
    segment as the CONNECT get no answer, and the message is neither routed nor retained."""
    b = broker()
    topic, end = unique("after"), unique("end")
    observer = clients.raw_connected(b.port)
    observer.subscribe([(topic, 1), (end, 1)])
    data = (REJECTED_CONNECT[case] +
            publish_packet(topic, b"must not be processed", qos=1, pid=1, retain=True) +
            subscribe_packet(2, [(topic, 1)]) + pingreq_packet())
    seen = until_closed(clients, b.port, data)
    assert len(seen) <= 1 and all(p.type == CONNACK and p.rc != 0 for p in seen), \
        f"expected at most a refusing CONNACK, got {seen}"
    pub = clients.raw_connected(b.port)
    pub.publish_acked(end, b"sentinel", qos=1)
    assert [p.topic for p in observer.receive_publishes(1)] == [end], "the PUBLISH was routed"
    assert_no_retained(clients, b.port, topic)


# ---------------------------------------------------------------------------------------------
# 3.2 CONNACK
# ---------------------------------------------------------------------------------------------

def test_mqtt_3_2_0_1_first_packet_from_the_server_is_connack(broker, clients):
    """[MQTT-3.2.0-1] The first packet the Server sends is the CONNACK, even when the client
    pipelines a SUBSCRIBE (with a retained message waiting), a PUBLISH and a PINGREQ behind
    its CONNECT."""
    b = broker()
    topic = unique("first")
    pub = clients.raw_connected(b.port)
    pub.publish_acked(topic, b"retained", qos=1, retain=True)
    c = clients.raw(b.port)
    c.send(connect_packet(unique("pipe")) + subscribe_packet(1, [(topic, 1)]) +
           publish_packet(unique("other"), b"x", qos=1, pid=2) + pingreq_packet())
    first = c.read_packet()
    assert first.type == CONNACK and first.rc == 0, f"first packet {first!r}"
    # The answers to the pipelined packets, in any order (3.1.1 orders only PUBLISH flows).
    rest = [c.read_packet() for _ in range(4)]
    assert sorted(p.type for p in rest) == sorted([SUBACK, PUBLISH, PUBACK, PINGRESP]), rest
    c.ping()


def password_broker(broker, tmp_path):
    from access_util import make_passwd
    pw = make_passwd(tmp_path / "passwd", {"alice": "wonderland"})
    return broker(auth={"allow_anonymous": False, "chain": ["password_file"],
                        "password_file": pw})


@pytest.mark.skipif(is_mosquitto(), reason="Tern's password file configuration")
def test_mqtt_3_2_2_4_and_5_refusal_has_session_present_0_then_close(broker, clients, tmp_path):
    """[MQTT-3.2.2-4] A CONNACK with a non-zero return code has Session Present 0, even when
    the Server holds a session for that client id; [MQTT-3.2.2-5] the Server then closes the
    Network Connection."""
    b = password_broker(broker, tmp_path)
    cid = unique("stored")
    c = clients.raw(b.port)
    c.connect_ok(cid, clean=False, username="alice", password="wonderland")
    c.subscribe([(unique("t"), 1)])
    c.disconnect()
    c = clients.raw(b.port)
    assert c.connect(cid, clean=False, username="alice",
                     password="wonderland").session_present == 1, "no session stored"
    c.disconnect()
    refused = clients.raw(b.port)
    refused.send(connect_packet(cid, clean=False, username="alice", password="wrong"))
    seen = refused.wait_closed(timeout=5)
    assert [(p.type, p.rc, p.ack_flags) for p in seen] == [(CONNACK, 4, 0)], seen
    refused = clients.raw(b.port)
    refused.send(connect_packet(cid, clean=False))  # no credentials
    seen = refused.wait_closed(timeout=5)
    assert [(p.type, p.rc, p.ack_flags) for p in seen] == [(CONNACK, 5, 0)], seen


def test_mqtt_3_2_2_4_identifier_rejected_has_session_present_0(broker, clients):
    """[MQTT-3.2.2-4] The CONNACK 0x02 refusing an empty client id with Clean Session 0 has all
    acknowledge flags 0; [MQTT-3.2.2-5] the connection is then closed."""
    b = broker()
    seen = until_closed(clients, b.port, connect_packet("", clean=False))
    assert [(p.type, p.rc, p.ack_flags) for p in seen] == \
        [(CONNACK, CONNACK_IDENTIFIER_REJECTED, 0)], seen


# ---------------------------------------------------------------------------------------------
# 3.3 PUBLISH
# ---------------------------------------------------------------------------------------------

@pytest.mark.skipif(is_mosquitto(), reason="mosquitto 2.0.11 accepts and routes a QoS 0 PUBLISH "
                    "with DUP=1")
def test_mqtt_3_3_1_2_dup_on_a_qos0_publish_closes_the_connection(broker, clients):
    """[MQTT-3.3.1-2] DUP is 0 for all QoS 0 messages: a client's QoS 0 PUBLISH with DUP=1 is a
    protocol violation; the broker closes the connection [MQTT-4.8.0-1] and routes nothing."""
    b = broker()
    topic, end = unique("dup0"), unique("end")
    observer = clients.raw_connected(b.port)
    observer.subscribe([(topic, 0), (end, 0)])
    c = clients.raw_connected(b.port)
    seen = closed_after(c, packet(PUBLISH, 0x08, mqtt_string(topic) + b"dup at qos 0"))
    assert seen == [], seen
    pub = clients.raw_connected(b.port)
    pub.publish_acked(end, b"sentinel", qos=1)
    assert [p.topic for p in observer.receive_publishes(1)] == [end]


@pytest.mark.parametrize("granted", [0, 1, 2])
def test_mqtt_3_3_1_3_dup_of_an_incoming_publish_is_not_propagated(broker, clients, granted):
    """[MQTT-3.3.1-3] The DUP flag of an outgoing PUBLISH depends only on whether that packet
    is a retransmission: publishes received with DUP=1 reach subscribers with DUP=0
    ([MQTT-3.3.1-2]: always DUP=0 at QoS 0)."""
    b = broker()
    topic = unique("dup")
    sub = clients.raw_connected(b.port)
    assert sub.subscribe([(topic, granted)]).codes == [granted]
    pub = clients.raw_connected(b.port)
    pub.publish(topic, b"q1 dup", qos=1, pid=1, dup=True)
    pub.expect(PUBACK, pid=1)
    pub.publish(topic, b"q2 dup", qos=2, pid=2, dup=True)
    pub.expect(PUBREC, pid=2)
    pub.send(pubrel_packet(2))
    pub.expect(PUBCOMP, pid=2)
    got = sub.receive_publishes(2)
    assert [(p.payload, p.qos, p.dup) for p in got] == \
        [(b"q1 dup", min(1, granted), False), (b"q2 dup", min(2, granted), False)]
    sub.ping()


def test_mqtt_3_3_1_7_qos0_retained_message_replaces_the_previous_one(broker, clients):
    """[MQTT-3.3.1-7] A QoS 0 PUBLISH with RETAIN=1 discards the message retained before on
    that topic. Tern takes the SHOULD: the QoS 0 message becomes the retained message."""
    b = broker()
    topic = unique("r0")
    pub = clients.raw_connected(b.port)
    pub.publish_acked(topic, b"old at qos 1", qos=1, retain=True)
    pub.publish(topic, b"new at qos 0", qos=0, retain=True)
    pub.ping()  # the QoS 0 PUBLISH was read before the PINGRESP
    sub = clients.raw_connected(b.port)
    sub.subscribe([(topic, 2)])
    got = sub.receive_publishes(1)
    assert [(p.payload, p.qos, p.retain) for p in got] == [(b"new at qos 0", 0, True)]
    sub.ping()


# ---------------------------------------------------------------------------------------------
# 3.8 SUBSCRIBE, 3.10 UNSUBSCRIBE
# ---------------------------------------------------------------------------------------------

def test_mqtt_3_8_4_2_suback_and_unsuback_carry_the_request_packet_identifier(broker, clients):
    """[MQTT-3.8.4-2] [MQTT-2.3.1-7] [MQTT-3.10.4-4] SUBACK / UNSUBACK have the Packet
    Identifier of the SUBSCRIBE / UNSUBSCRIBE, also for pipelined requests, in order."""
    b = broker()
    topic = unique("pid")
    c = clients.raw_connected(b.port)
    ids = [1, 0x0100, 0x1234, 0xFFFF]
    c.send(b"".join(subscribe_packet(i, [(f"{topic}/{i}", 1)]) for i in ids))
    acks = [c.expect(SUBACK) for _ in ids]
    assert [(a.pid, a.codes) for a in acks] == [(i, [1]) for i in ids]
    c.send(b"".join(unsubscribe_packet(i, [f"{topic}/{i}"]) for i in reversed(ids)))
    acks = [c.expect(UNSUBACK) for _ in ids]
    assert [a.pid for a in acks] == list(reversed(ids))
    c.ping()


def test_mqtt_3_8_4_3_resubscribing_does_not_interrupt_the_flow(broker, clients):
    """[MQTT-3.8.4-3] A SUBSCRIBE with the filter of an existing subscription replaces it
    without interrupting the flow of publications: while a publisher streams messages and the
    subscriber subscribes again and again, every message arrives exactly once, in order."""
    b = broker()
    topic = unique("flow")
    sub = clients.raw_connected(b.port)
    sub.subscribe([(topic, 1)])
    pub = clients.raw_connected(b.port)
    n, chunk = 300, 50
    payloads = [f"m{i}".encode() for i in range(n)]
    got, subacks, resubscribes = [], 0, 0
    for start in range(0, n, chunk):
        pub.send(b"".join(publish_packet(topic, payloads[i], qos=1, pid=i + 1)
                          for i in range(start, start + chunk)))
        sub.send(subscribe_packet(100 + resubscribes, [(topic, 1)]))
        resubscribes += 1
    deadline = time.monotonic() + 20
    while len(got) < n or subacks < resubscribes:
        p = sub.read_packet(max(deadline - time.monotonic(), 0.001))
        if p.type == SUBACK:
            assert p.codes == [1], p
            subacks += 1
        else:
            assert p.type == PUBLISH, p
            got.append(p.payload)
            sub.send(puback_packet(p.pid))
    assert got == payloads, f"{len(got)} messages, {len(set(got))} distinct, of {n}"
    acks = [pub.expect(PUBACK).pid for _ in range(n)]
    assert acks == list(range(1, n + 1))
    sub.ping()


def test_mqtt_3_8_4_4_filters_of_one_subscribe_are_handled_in_sequence(broker, clients):
    """[MQTT-3.8.4-4] A SUBSCRIBE with several filters is handled as a sequence of SUBSCRIBEs
    with one combined SUBACK: the same filter twice means the second replaces the first."""
    b = broker()
    topic, other = unique("seq"), unique("other")
    sub = clients.raw_connected(b.port)
    ack = sub.subscribe([(topic, 2), (other, 1), (topic, 0)], pid=5)
    assert (ack.pid, ack.codes) == (5, [2, 1, 0])
    pub = clients.raw_connected(b.port)
    pub.publish_acked(topic, b"once", qos=2)
    pub.publish_acked(other, b"other", qos=2)
    got = sub.receive_publishes(2)
    assert [(p.topic, p.payload, p.qos) for p in got] == [(topic, b"once", 0),
                                                           (other, b"other", 1)]
    sub.ping()


def test_mqtt_3_10_4_3_delivery_started_before_unsubscribe_is_completed(broker, clients):
    """[MQTT-3.10.4-3] After deleting a subscription the Server completes the delivery of the
    QoS 1 and QoS 2 messages it had started to send: PUBREL follows the PUBREC, and the
    unacknowledged QoS 1 message is sent again when the session resumes."""
    b = broker()
    cid, t1, t2 = unique("unsub"), unique("q1"), unique("q2")
    sub = clients.raw_connected(b.port, cid, clean=False)
    sub.subscribe([(t1, 1), (t2, 2)])
    pub = clients.raw_connected(b.port)
    pub.publish_acked(t1, b"one", qos=1)
    pub.publish_acked(t2, b"two", qos=2)
    first, second = sub.expect(PUBLISH), sub.expect(PUBLISH)
    assert [(first.payload, first.qos), (second.payload, second.qos)] == [(b"one", 1),
                                                                          (b"two", 2)]
    sub.unsubscribe([t1, t2])
    sub.send(pubrec_packet(second.pid))
    sub.expect(PUBREL, pid=second.pid)
    sub.send(pubcomp_packet(second.pid))
    pub.publish_acked(t1, b"after", qos=1)  # no subscription any more [MQTT-3.10.4-2]
    sub.ping()
    sub.close()  # the QoS 1 message is still unacknowledged
    sub = clients.raw(b.port)
    assert sub.connect(cid, clean=False).session_present == 1
    again = sub.expect(PUBLISH)
    assert (again.topic, again.payload, again.pid, again.dup) == (t1, b"one", first.pid, True)
    sub.send(puback_packet(again.pid))
    sub.ping()


def test_mqtt_3_10_4_6_unsubscribe_with_several_filters(broker, clients):
    """[MQTT-3.10.4-6] An UNSUBSCRIBE with several filters is handled as a sequence of
    UNSUBSCRIBEs answered by a single UNSUBACK."""
    b = broker()
    root = unique("un")
    a, bb, c = f"{root}/a", f"{root}/b", f"{root}/c"
    sub = clients.raw_connected(b.port)
    sub.subscribe([(a, 1), (bb, 1), (c, 1)])
    sub.send(unsubscribe_packet(9, [a, f"{root}/never", bb, a]))
    assert sub.expect(UNSUBACK).pid == 9
    sub.ping()  # one UNSUBACK only
    pub = clients.raw_connected(b.port)
    for t in (a, bb, c):
        pub.publish_acked(t, t.encode(), qos=1)
    assert [p.topic for p in sub.receive_publishes(1)] == [c]
    sub.ping()


# ---------------------------------------------------------------------------------------------
# 3.14 DISCONNECT
# ---------------------------------------------------------------------------------------------

BAD_DISCONNECT = {
    "flags-0001": packet(DISCONNECT, 0x01),
    "flags-1000": packet(DISCONNECT, 0x08),
    "remaining-length-1": packet(DISCONNECT, 0x00, b"\x00"),
}


@pytest.mark.parametrize("case", BAD_DISCONNECT.keys())
def test_mqtt_3_14_1_1_disconnect_with_reserved_bits_is_a_violation(broker, clients, case):
    """[MQTT-3.14.1-1] The Server validates that the reserved bits of DISCONNECT are zero and
    disconnects the Client if not. Such a packet is no DISCONNECT: the will is published
    (closed because of a protocol error, 3.1.2.5)."""
    b = broker()
    will_topic = unique("will")
    observer = clients.raw_connected(b.port)
    observer.subscribe([(will_topic, 1)])
    c = clients.raw_connected(b.port, will=will_of(will_topic))
    seen = closed_after(c, BAD_DISCONNECT[case])
    assert seen == [], seen
    got = observer.receive_publishes(1)
    assert [(p.topic, p.payload) for p in got] == [(will_topic, WILL_PAYLOAD)]


def test_mqtt_3_14_4_2_packets_after_disconnect_are_not_processed(broker, clients):
    """[MQTT-3.14.4-2] A client sends nothing after DISCONNECT; what it sends anyway (here in
    the same segment) is not processed, and the Server closes the connection itself (the
    SHOULD of 3.14.4) without the will [MQTT-3.14.4-3]."""
    b = broker()
    topic, will_topic, end = unique("late"), unique("will"), unique("end")
    observer = clients.raw_connected(b.port)
    observer.subscribe([(topic, 1), (will_topic, 1), (end, 1)])
    c = clients.raw_connected(b.port, will=will_of(will_topic))
    c.send(disconnect_packet() + publish_packet(topic, b"after disconnect", qos=1, pid=1,
                                                retain=True) + pingreq_packet())
    seen = c.wait_closed(timeout=5)  # the client never closes its side
    assert seen == [], f"packets after DISCONNECT were answered: {seen}"
    pub = clients.raw_connected(b.port)
    pub.publish_acked(end, b"sentinel", qos=1)
    assert [p.topic for p in observer.receive_publishes(1)] == [end]
    assert_no_retained(clients, b.port, topic)


# ---------------------------------------------------------------------------------------------
# 4 Operational behavior
# ---------------------------------------------------------------------------------------------

def test_mqtt_4_1_0_2_session_lasts_while_the_connection_is_open(broker, clients):
    """[MQTT-4.1.0-2] A Session lasts at least as long as its Network Connection: a session
    expiry shorter than the connection's life does not end a connected client's session."""
    b = broker(session={"expiry_interval": "1s"})
    cid, topic = unique("long"), unique("t")
    c = clients.raw_connected(b.port, cid, clean=False, keepalive=10)
    c.subscribe([(topic, 1)])
    end = time.monotonic() + 2.5  # the behaviour under test is the passing of time
    while time.monotonic() < end:
        c.ping()
        time.sleep(0.25)
    pub = clients.raw_connected(b.port)
    pub.publish_acked(topic, b"still subscribed", qos=1)
    assert [p.payload for p in c.receive_publishes(1)] == [b"still subscribed"]
    c.disconnect()
    c = clients.raw(b.port)
    assert c.connect(cid, clean=False).session_present == 1


def test_mqtt_4_3_2_2_same_packet_id_after_puback_is_a_new_message(broker, clients):
    """[MQTT-4.3.2-2] After sending PUBACK the Server treats a PUBLISH with the same Packet
    Identifier as a new publication, whatever its DUP flag."""
    b = broker()
    topic = unique("reuse1")
    sub = clients.raw_connected(b.port)
    sub.subscribe([(topic, 1)])
    pub = clients.raw_connected(b.port)
    for payload, dup in ((b"a", False), (b"b", True), (b"c", False)):
        pub.publish(topic, payload, qos=1, pid=5, dup=dup)
        pub.expect(PUBACK, pid=5)
    assert [p.payload for p in sub.receive_publishes(3)] == [b"a", b"b", b"c"]
    sub.ping()


def test_mqtt_4_3_3_2_same_packet_id_after_pubcomp_is_a_new_message(broker, clients):
    """[MQTT-4.3.3-2] After sending PUBCOMP the Server treats a PUBLISH with the same Packet
    Identifier as a new publication, whatever its DUP flag."""
    b = broker()
    topic = unique("reuse2")
    sub = clients.raw_connected(b.port)
    sub.subscribe([(topic, 2)])
    pub = clients.raw_connected(b.port)
    for payload, dup in ((b"a", False), (b"b", True), (b"c", False)):
        pub.publish(topic, payload, qos=2, pid=5, dup=dup)
        pub.expect(PUBREC, pid=5)
        pub.send(pubrel_packet(5))
        pub.expect(PUBCOMP, pid=5)
    assert [p.payload for p in sub.receive_publishes(3)] == [b"a", b"b", b"c"]
    sub.ping()


def acks_in_order(broker, clients, qos):
    """A persistent subscriber on half of the topics (so that those acknowledgements wait for
    the store), 40 pipelined PUBLISHes: returns the packet ids of the acknowledgements."""
    b = broker()
    root = unique("ackorder")
    persistent = clients.raw_connected(b.port, unique("ps"), clean=False)
    persistent.subscribe([(root + "/durable", 2)])
    pub = clients.raw_connected(b.port)
    n = 40
    pub.send(b"".join(publish_packet(f"{root}/{'durable' if i % 2 else 'plain'}",
                                     f"m{i}".encode(), qos=qos, pid=i) for i in range(1, n + 1)))
    ack_type = PUBACK if qos == 1 else PUBREC
    ids = [pub.expect(ack_type).pid for _ in range(n)]
    if qos == 2:
        pub.send(b"".join(pubrel_packet(i) for i in ids))
        assert [pub.expect(PUBCOMP).pid for _ in range(n)] == ids
    assert [p.payload for p in persistent.receive_publishes(n // 2)] == \
        [f"m{i}".encode() for i in range(1, n + 1) if i % 2]
    return ids, n


def test_mqtt_4_6_0_2_pubacks_go_out_in_publish_order(broker, clients):
    """[MQTT-4.6.0-2] PUBACKs are sent in the order of the PUBLISH packets (a client rule;
    Tern keeps it as a receiver too, also when some acknowledgements wait for the store)."""
    ids, n = acks_in_order(broker, clients, 1)
    assert ids == list(range(1, n + 1))


@pytest.mark.skipif(is_mosquitto(), reason="mosquitto 2.0.11 answers all 40 pipelined QoS 2 "
                    "PUBLISHes with PUBREC (in order) but delivers only some of them")
def test_mqtt_4_6_0_3_pubrecs_go_out_in_publish_order(broker, clients):
    """[MQTT-4.6.0-3] PUBRECs are sent in the order of the PUBLISH packets (a client rule;
    Tern keeps it as a receiver too, and its PUBCOMPs follow the order of the PUBRELs)."""
    ids, n = acks_in_order(broker, clients, 2)
    assert ids == list(range(1, n + 1))


def test_mqtt_4_6_0_4_pubrels_go_out_in_pubrec_order(broker, clients):
    """[MQTT-4.6.0-4] [MQTT-4.6.0-6] Delivering to a subscriber, the Server sends PUBREL
    packets in the order in which the PUBRECs arrived."""
    b = broker()
    topic = unique("relorder")
    sub = clients.raw_connected(b.port)
    sub.subscribe([(topic, 2)])
    pub = clients.raw_connected(b.port)
    for i in range(6):
        pub.publish_acked(topic, f"m{i}".encode(), qos=2)
    got = [sub.expect(PUBLISH) for _ in range(6)]
    assert [p.payload for p in got] == [f"m{i}".encode() for i in range(6)]
    order = [got[i].pid for i in (3, 1, 5, 0, 4, 2)]
    sub.send(b"".join(pubrec_packet(pid) for pid in order))
    rels = [sub.expect(PUBREL) for _ in order]
    assert [r.pid for r in rels] == order
    sub.send(b"".join(pubcomp_packet(pid) for pid in order))
    sub.ping()


def test_mqtt_4_7_3_3_topic_of_65535_bytes_is_handled_end_to_end(broker, clients):
    """[MQTT-4.7.3-3] Topic names and filters encode to at most 65535 bytes: one of exactly
    65535 bytes is accepted as a filter and a name, queued for an offline session, kept across
    a restart and retained, and sent back byte for byte."""
    b = broker(persistent_store=True)
    topic = unique("long") + "/"
    topic += "x" * (65535 - len(topic))
    cid = unique("longsub")
    sub = clients.raw_connected(b.port, cid, clean=False)
    assert sub.subscribe([(topic, 2)]).codes == [2]
    sub.disconnect()
    pub = clients.raw_connected(b.port)
    pub.publish_acked(topic, b"queued", qos=2)
    pub.publish_acked(topic, b"retained", qos=1, retain=True)
    pub.disconnect()
    b.restart()
    sub = clients.raw(b.port)
    assert sub.connect(cid, clean=False).session_present == 1
    got = sub.receive_publishes(2)
    assert [(len(p.topic.encode()), p.topic == topic, p.payload) for p in got] == \
        [(65535, True, b"queued"), (65535, True, b"retained")]
    late = clients.raw_connected(b.port)
    late.subscribe([(topic.split("/")[0] + "/#", 1)])
    got = late.receive_publishes(1)
    assert [(p.topic == topic, p.payload, p.retain) for p in got] == [(True, b"retained", True)]


NOT_NORMALIZED = {
    "nfc": "caf\u00e9",            # é precomposed
    "nfd": "cafe\u0301",           # e + combining acute accent
    "angstrom-sign": "\u212b",     # canonically equivalent to U+00C5
    "a-ring": "\u00c5",
    "fullwidth-a": "\uff21",       # compatibility equivalent to "A"
    "ascii-a": "A",
    "unassigned": "\u0378",        # no character assigned (yet)
    "private-use": "\ue000",
}


def test_mqtt_4_7_3_4_topics_are_not_normalized(broker, clients):
    """[MQTT-4.7.3-4] Subscription matching does no normalization of topic names or filters
    and no substitution of unrecognized characters: canonically or compatibly equivalent
    strings are different topics, and unassigned or private-use code points pass unchanged."""
    b = broker()
    root = unique("norm")
    subs = {}
    for name, level in NOT_NORMALIZED.items():
        s = clients.raw_connected(b.port)
        assert s.subscribe([(f"{root}/{level}", 1)]).codes == [1]
        subs[name] = s
    wild = clients.raw_connected(b.port)
    wild.subscribe([(root + "/#", 1)])
    pub = clients.raw_connected(b.port)
    for name, level in NOT_NORMALIZED.items():
        pub.publish_acked(f"{root}/{level}", name.encode(), qos=1)
    got = wild.receive_publishes(len(NOT_NORMALIZED))
    assert [(p.topic.encode(), p.payload.decode()) for p in got] == \
        [(f"{root}/{level}".encode(), name) for name, level in NOT_NORMALIZED.items()]
    for name, s in subs.items():
        assert [p.payload.decode() for p in s.receive_publishes(1)] == [name]
        s.ping()  # nothing published to an "equivalent" topic arrived


def test_mqtt_4_8_0_2_transient_error_closes_only_that_connection(broker, clients):
    """[MQTT-4.8.0-2] A Transient Error while processing an inbound packet (here: no room for
    one more QoS 2 message awaiting PUBREL) closes the connection it came on, and (SHOULD)
    affects no other client."""
    b = broker(session={"max_awaiting_rel": 2})
    topic = unique("full")
    sub = clients.raw_connected(b.port)
    sub.subscribe([(topic, 0)])
    pub = clients.raw_connected(b.port)
    for pid in (1, 2):
        pub.publish(topic, f"m{pid}".encode(), qos=2, pid=pid)
        pub.expect(PUBREC, pid=pid)
    seen = closed_after(pub, publish_packet(topic, b"m3", qos=2, pid=3))
    assert seen == [], f"expected the connection closed, got {seen}"
    assert [p.payload for p in sub.receive_publishes(2)] == [b"m1", b"m2"]
    sub.ping()
    assert_pubsub_works(b.port)
