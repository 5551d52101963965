# MQTT 5.0 conformance, chapters 1, 2, 3.1 (CONNECT) and 3.2 (CONNACK): one test per
# server-side normative statement that no other test checks. Each test is named after its
# statement and quotes the id in its docstring; docs/conformance.md maps every
# statement of these chapters to the test that checks it.
#
# Packets are hand-built (mqtt5.RawClient5) so that flags, packet identifiers, property
# lengths and sizes on the wire are exactly what the test says.

import struct
import time

import pytest

import helpers
from helpers import (CONNACK, CONNECT, DISCONNECT, PINGREQ, PINGRESP, PUBACK, PUBCOMP, PUBLISH,
                     PUBREC, PUBREL, SUBACK, SUBSCRIBE, UNSUBACK, UNSUBSCRIBE, ConnectionClosed,
                     is_mosquitto, mqtt_string, packet, unique)
from mqtt5 import (AUTH, RawClient5, ack5, auth5, connect5, encode_props, publish5, raw5,
                   read_varint, subscribe5, unsubscribe5, varint, wire_size)

# Table 3-1: the Connect Reason Code values [MQTT-3.2.2-8].
CONNACK_REASON_CODES = {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A,
                        0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F}
MALFORMED, PROTOCOL_ERROR = 0x81, 0x82


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def connect_bytes(flags, payload, props=b"\x00", name="MQTT", level=5, keepalive=60):
    """A CONNECT with hand-set flags, raw property bytes and raw payload."""
    body = mqtt_string(name) + bytes([level, flags]) + struct.pack("!H", keepalive)
    return packet(CONNECT, 0, body + props + payload)


def until_closed(port, data, timeout=5.0):
    """Sends `data` on a new connection; returns what the broker sent before it closed it.
    Packets are read as MQTT 3.1.1 (type and, for CONNACK, the reason byte), so that any
    CONNACK form parses."""
    c = helpers.RawClient(port)
    try:
        c.send(data)
    except ConnectionClosed:
        pass
    return c.wait_closed(timeout)


def assert_refused(seen, allowed=None):
    """Nothing, or one refusing CONNACK (session present 0), before the close."""
    assert len(seen) <= 1 and all(p.type == CONNACK for p in seen), \
        f"expected at most a CONNACK before the close, got {seen}"
    if seen:
        ack = seen[0]
        if allowed is None:
            assert ack.rc >= 0x80, f"CONNECT accepted: {ack}"
        else:
            assert ack.rc in allowed, f"CONNACK {ack.rc:#x}, expected one of {allowed}"
        assert ack.session_present == 0, ack


def read_frames(c, n, timeout=5.0):
    """The next `n` packets from the broker as raw bytes: (frame, end of the fixed header)."""
    deadline = time.monotonic() + timeout
    frames = []
    while len(frames) < n:
        buf = c.buf
        i = 1
        while i < len(buf) and buf[i] & 0x80:
            i += 1
        if len(buf) >= 2 and i < len(buf):
            length, end = read_varint(buf, 1)
            if len(buf) >= end + length:
                frames.append((bytes(buf[:end + length]), end))
                c.buf = buf[end + length:]
                continue
        c._fill(deadline)  # raises TimeoutError or ConnectionClosed
    return frames


def will(topic, payload=b"gone", qos=1, retain=False, props=()):
    return {"topic": topic, "payload": payload, "qos": qos, "retain": retain,
            "props": list(props)}


def no_problem_properties(p):
    return p.prop("reason_string") is None and not p.all("user_property")


# ---------------------------------------------------------------------------------------------
# 1.5 Data representation
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("topic", [b"a/\xff", b"a/\xed\xa0\x80", b"a/\xc0\xaf", b"a/\xe2\x82"],
                         ids=["invalid-byte", "surrogate-d800", "overlong", "truncated"])
def test_mqtt_1_5_4_1_ill_formed_utf8_is_a_malformed_packet(broker, topic):
    """[MQTT-1.5.4-1] Ill-formed UTF-8 (including U+D800..U+DFFF) in a string is a Malformed
    Packet: DISCONNECT 0x81, and only that connection is closed."""
    b = broker()
    c = raw5(b.port)
    c.send(publish5(topic, b"x"))
    c.expect_disconnect(MALFORMED)
    other = raw5(b.port)
    other.ping()


def test_mqtt_1_5_4_2_null_character_is_a_malformed_packet(broker):
    """[MQTT-1.5.4-2] U+0000 in a UTF-8 string is a Malformed Packet, in a PUBLISH topic as in
    the client identifier of a CONNECT."""
    b = broker()
    c = raw5(b.port)
    c.send(publish5(b"a\x00b", b"x"))
    c.expect_disconnect(MALFORMED)
    assert_refused(until_closed(b.port, connect5(b"nul\x00id")))


def test_mqtt_1_5_4_3_bom_is_neither_skipped_nor_stripped(broker):
    """[MQTT-1.5.4-3] 0xEF 0xBB 0xBF is U+FEFF wherever it appears: a topic with it is another
    topic than the one without, and it reaches subscribers unchanged."""
    b = broker()
    base = unique("bom")
    with_bom, without = base + "/\ufeffv", base + "/v"
    sub_bom = raw5(b.port)
    sub_bom.subscribe([(with_bom, 1)])
    sub_plain = raw5(b.port)
    sub_plain.subscribe([(without, 1)])
    pub = raw5(b.port)
    pub.publish_acked(with_bom, b"m", props=[("user_property", ("k", "\ufeffv\ufeff"))])
    p = sub_bom.receive_publishes(1)[0]
    assert p.topic.encode() == with_bom.encode() and p.topic.startswith(base + "/\ufeff"), p
    assert p.all("user_property") == [("k", "\ufeffv\ufeff")]
    sub_plain.expect_no_packet(0.3)


@pytest.mark.parametrize("remaining", [127, 128, 16383, 16384])
def test_mqtt_1_5_5_1_broker_encodes_variable_byte_integers_minimally(broker, remaining):
    """[MQTT-1.5.5-1] Remaining Length, Property Length and Subscription Identifier the broker
    sends use the fewest bytes (127/128 and 16383/16384 are the 1/2 and 2/3 byte borders)."""
    b = broker()
    topic = unique("vbi")
    sub = raw5(b.port)
    sub.subscribe([(topic, 0)], props=[("subscription_identifier", 200)])
    props = encode_props([("subscription_identifier", 200)])  # 3 bytes + length byte
    payload = b"p" * (remaining - len(mqtt_string(topic)) - len(props))
    pub = raw5(b.port)
    pub.publish_acked(topic, payload)
    frame, end = read_frames(sub, 1)[0]
    assert frame[0] >> 4 == PUBLISH
    length, _ = read_varint(frame, 1)
    assert length == remaining and frame[1:end] == varint(remaining), frame[:6]
    # QoS 0: topic, properties (minimal length and identifier), payload.
    assert frame[end:] == mqtt_string(topic) + props + payload


@pytest.mark.skipif(is_mosquitto(), reason="refusing a non-minimal encoding is Tern's choice "
                                           "as a receiver")
def test_mqtt_1_5_5_1_non_minimal_remaining_length_is_malformed(broker):
    """[MQTT-1.5.5-1] A Remaining Length not in the fewest bytes breaks the encoding rule:
    Tern treats it as a Malformed Packet (DISCONNECT 0x81)."""
    b = broker()
    c = raw5(b.port)
    c.send(bytes([PINGREQ << 4, 0x80, 0x00]))  # 0 in two bytes
    c.expect_disconnect(MALFORMED)


@pytest.mark.parametrize("pair", [(b"\xff", b"v"), (b"k", b"\xed\xbf\xbf"), (b"k", b"a\x00")],
                         ids=["name", "value-surrogate", "value-nul"])
def test_mqtt_1_5_7_1_string_pair_halves_must_be_utf8(broker, pair):
    """[MQTT-1.5.7-1] Both strings of a UTF-8 String Pair (User Property) follow the UTF-8
    string rules; otherwise the packet is malformed (DISCONNECT 0x81)."""
    b = broker()
    c = raw5(b.port)
    c.send(publish5(unique("pair"), b"x", props=[("user_property", pair)]))
    c.expect_disconnect(MALFORMED)


# ---------------------------------------------------------------------------------------------
# 2 MQTT Control Packet format
# ---------------------------------------------------------------------------------------------

def test_mqtt_2_1_3_1_broker_sets_the_reserved_flags(broker):
    """[MQTT-2.1.3-1] Every packet the broker sends has the fixed header flags of Table 2-2:
    0 for CONNACK, PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK, PINGRESP; 0b0010 for PUBREL."""
    b = broker()
    topic = unique("flags")
    c = RawClient5(b.port)
    assert c.connect_ok().flags == 0
    assert c.subscribe([(topic, 2)]).flags == 0
    pid = c.publish(topic + "/x", b"1", qos=1)
    assert c.expect_ack(PUBACK, pid).flags == 0
    pid = c.publish(topic + "/x", b"2", qos=2)
    assert c.expect_ack(PUBREC, pid).flags == 0
    c.send(ack5(PUBREL, pid))
    assert c.expect_ack(PUBCOMP, pid).flags == 0
    pub = raw5(b.port)
    pub.publish_acked(topic, b"3", qos=2)
    p = c.expect_publish()
    assert p.qos == 2 and p.dup is False and p.retain is False
    c.send(ack5(PUBREC, p.pid))
    rel = c.expect(PUBREL, pid=p.pid)
    assert rel.flags == 0x02, rel
    c.send(ack5(PUBCOMP, p.pid))
    c.send(unsubscribe5(77, [topic]))
    assert c.expect(UNSUBACK, pid=77).flags == 0
    assert c.ping().flags == 0


BAD_FLAGS = {
    "subscribe-0000": bytes([SUBSCRIBE << 4]) + subscribe5(1, [("t", 0)])[1:],
    "unsubscribe-0000": bytes([UNSUBSCRIBE << 4]) + unsubscribe5(1, ["t"])[1:],
    "pubrel-0000": bytes([PUBREL << 4]) + ack5(PUBREL, 1)[1:],
    "pingreq-0001": packet(PINGREQ, 0x01),
    "disconnect-1000": packet(DISCONNECT, 0x08, b"\x00\x00"),
}


@pytest.mark.parametrize("data", BAD_FLAGS.values(), ids=BAD_FLAGS.keys())
def test_mqtt_2_1_3_1_wrong_reserved_flags_are_malformed(broker, data):
    """[MQTT-2.1.3-1] Reserved flags other than listed make a Malformed Packet: DISCONNECT
    0x81 and close."""
    b = broker()
    c = raw5(b.port)
    c.send(data)
    c.expect_disconnect(MALFORMED)


def test_mqtt_2_2_1_2_qos0_publish_has_no_packet_identifier(broker):
    """[MQTT-2.2.1-2] A QoS 0 PUBLISH the broker sends has no Packet Identifier: topic,
    properties and payload follow each other directly."""
    b = broker()
    topic = unique("qos0")
    sub = raw5(b.port)
    sub.subscribe([(topic, 0)])
    pub = raw5(b.port)
    pub.publish_acked(topic, b"\x00\x07payload", qos=1)  # sent at QoS 1, granted QoS 0
    p = sub.expect_publish()
    assert p.qos == 0 and p.pid is None
    assert p.body == mqtt_string(topic) + b"\x00" + b"\x00\x07payload", p.body


def test_mqtt_2_2_1_3_packet_identifier_zero_is_a_protocol_error(broker):
    """[MQTT-2.2.1-3] (a Client requirement) A QoS > 0 PUBLISH needs a non-zero Packet
    Identifier: the broker answers identifier 0 with DISCONNECT 0x82."""
    b = broker()
    c = raw5(b.port)
    c.send(publish5(unique("pid0"), b"x", qos=1, pid=0))
    c.expect_disconnect(PROTOCOL_ERROR)


def test_mqtt_2_2_1_4_broker_packet_identifiers_are_nonzero_and_unused(broker):
    """[MQTT-2.2.1-4] Each new QoS 1/2 PUBLISH from the broker has a non-zero identifier that
    no unacknowledged PUBLISH uses."""
    b = broker()
    base = unique("pids")
    sub = raw5(b.port, props=[("receive_maximum", 20)])
    sub.subscribe([(base + "/#", 2)])
    pub = raw5(b.port)
    for i in range(16):
        pub.publish_acked(f"{base}/{i}", str(i).encode(), qos=1 + i % 2)
    got = [sub.expect_publish() for _ in range(16)]  # none acknowledged
    pids = [p.pid for p in got]
    assert 0 not in pids and len(set(pids)) == 16, pids
    freed = next(p for p in got if p.qos == 1)
    sub.send(ack5(PUBACK, freed.pid))
    pub.publish_acked(base + "/more", b"more", qos=1)
    nxt = sub.expect_publish()
    assert nxt.pid != 0 and nxt.pid not in set(pids) - {freed.pid}, (nxt, pids)


def test_mqtt_2_2_1_5_acks_carry_the_packet_identifier_of_the_publish(broker):
    """[MQTT-2.2.1-5] PUBACK, PUBREC, PUBCOMP the broker sends for a client's PUBLISH, and the
    PUBREL it sends for its own QoS 2 PUBLISH, carry that PUBLISH's identifier."""
    b = broker()
    topic = unique("ackid")
    c = raw5(b.port)
    c.send(publish5(topic + "/in", b"1", qos=1, pid=0x1234))
    assert c.expect(PUBACK).pid == 0x1234
    c.send(publish5(topic + "/in", b"2", qos=2, pid=0xFEDC))
    assert c.expect(PUBREC).pid == 0xFEDC
    c.send(ack5(PUBREL, 0xFEDC))
    assert c.expect(PUBCOMP).pid == 0xFEDC
    c.subscribe([(topic, 2)])
    pub = raw5(b.port)
    pub.publish_acked(topic, b"3", qos=2)
    p = c.expect_publish()
    c.send(ack5(PUBREC, p.pid))
    assert c.expect(PUBREL).pid == p.pid
    c.send(ack5(PUBCOMP, p.pid))
    c.ping()


def test_mqtt_2_2_1_6_suback_and_unsuback_carry_the_request_identifier(broker):
    """[MQTT-2.2.1-6] SUBACK and UNSUBACK carry the identifier of their SUBSCRIBE and
    UNSUBSCRIBE."""
    b = broker()
    c = raw5(b.port)
    c.send(subscribe5(777, [(unique("s"), 1)]))
    assert c.expect(SUBACK).pid == 777
    c.send(subscribe5(65535, [(unique("s"), 0)]))
    assert c.expect(SUBACK).pid == 65535
    c.send(unsubscribe5(4242, [unique("never")]))
    assert c.expect(UNSUBACK).pid == 4242


def test_mqtt_2_2_2_1_no_properties_is_a_property_length_of_zero(broker):
    """[MQTT-2.2.2-1] A packet the broker sends without properties still has a Property
    Length, of zero (SUBACK, UNSUBACK, PUBLISH)."""
    b = broker()
    topic = unique("plen")
    c = raw5(b.port)
    c.send(subscribe5(5, [(topic, 1)]))
    ack = c.expect(SUBACK, pid=5)
    assert ack.body == b"\x00\x05" + b"\x00" + b"\x01", ack.body
    pub = raw5(b.port)
    pub.publish_acked(topic, b"body", qos=1)
    p = c.expect_publish()
    assert p.body == mqtt_string(topic) + struct.pack("!H", p.pid) + b"\x00" + b"body", p.body
    c.send(ack5(PUBACK, p.pid))
    c.send(unsubscribe5(6, [topic]))
    ack = c.expect(UNSUBACK, pid=6)
    assert ack.body == b"\x00\x06" + b"\x00" + b"\x00", ack.body


# ---------------------------------------------------------------------------------------------
# 3.1 CONNECT
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["MQTX", "mqtt", "MQTT5", ""])
def test_mqtt_3_1_2_1_wrong_protocol_name_is_closed(broker, name):
    """[MQTT-3.1.2-1] A CONNECT whose protocol name is not "MQTT" is not accepted: the broker
    may send CONNACK 0x84, then must close the connection."""
    b = broker()
    seen = until_closed(b.port, connect_bytes(0x02, mqtt_string(unique("pn")), name=name))
    assert_refused(seen, allowed={0x84})


@pytest.mark.parametrize("level", [0, 1, 2, 6, 7, 0x85, 255])
def test_mqtt_3_1_2_2_unsupported_protocol_version_is_closed(broker, level):
    """[MQTT-3.1.2-2] A Protocol Version the broker does not speak: a CONNACK refusing it
    (0x84, or 3.1.1's 0x01) at most, then the close."""
    b = broker()
    seen = until_closed(b.port, connect_bytes(0x02, mqtt_string(unique("pv")), level=level))
    assert_refused(seen, allowed={0x84, 0x01})


def test_mqtt_3_1_2_3_reserved_connect_flag_is_malformed(broker):
    """[MQTT-3.1.2-3] The broker checks that the reserved Connect Flags bit is 0: with it set
    the CONNECT is malformed and refused (CONNACK 0x81 at most), the connection closed."""
    b = broker()
    assert_refused(until_closed(b.port, connect_bytes(0x03, mqtt_string(unique("rf")))),
                   allowed={MALFORMED})


def test_mqtt_3_1_2_4_clean_start_discards_the_existing_session(broker):
    """[MQTT-3.1.2-4] Clean Start 1 discards the session: session present 0, no queued
    message, no subscription left."""
    b = broker()
    cid, topic = unique("cs"), unique("cst")
    c = raw5(b.port, cid, props=[("session_expiry_interval", 60)])
    c.subscribe([(topic, 1)])
    c.disconnect()
    pub = raw5(b.port)
    pub.publish_acked(topic, b"queued while away", qos=1)
    again = RawClient5(b.port)
    ack = again.connect(cid, clean=True, props=[("session_expiry_interval", 60)])
    assert ack.rc == 0 and ack.session_present == 0
    again.expect_no_packet(0.5)  # the queued message went with the old session
    pub.publish_acked(topic, b"after", qos=1)
    again.expect_no_packet(0.5)  # and so did the subscription


def test_mqtt_3_1_2_6_clean_start_0_without_a_session_creates_one(broker):
    """[MQTT-3.1.2-6] Clean Start 0 and no session for the client id: a new session (session
    present 0) that then holds subscriptions and messages like any other."""
    b = broker()
    cid, topic = unique("new"), unique("newt")
    c = RawClient5(b.port)
    ack = c.connect(cid, clean=False, props=[("session_expiry_interval", 60)])
    assert ack.rc == 0 and ack.session_present == 0
    c.subscribe([(topic, 1)])
    c.disconnect()
    pub = raw5(b.port)
    pub.publish_acked(topic, b"kept", qos=1)
    again = RawClient5(b.port)
    ack = again.connect(cid, clean=False, props=[("session_expiry_interval", 60)])
    assert ack.rc == 0 and ack.session_present == 1
    assert again.receive_publishes(1)[0].payload == b"kept"
    other = RawClient5(b.port)  # the session is this client id's only
    assert other.connect(unique("new"), clean=False).session_present == 0


def test_mqtt_3_1_2_10_will_is_removed_once_published(broker):
    """[MQTT-3.1.2-10] A will is published once: after that it is gone from the session, so
    the next connection's end publishes nothing."""
    b = broker()
    cid, topic = unique("w1"), unique("w1t")
    watcher = raw5(b.port)
    watcher.subscribe([(topic, 1)])
    c = raw5(b.port, cid, props=[("session_expiry_interval", 60)],
             will=will(topic, props=[("will_delay_interval", 1)]))
    c.close()  # no DISCONNECT: the will applies after its delay
    assert watcher.receive_publishes(1, timeout=4)[0].payload == b"gone"
    back = RawClient5(b.port)
    assert back.connect(cid, clean=False,
                        props=[("session_expiry_interval", 60)]).session_present == 1
    back.close()  # this connection has no will; the old one must not come back
    watcher.expect_no_packet(1.6)


@pytest.mark.parametrize("retain", [False, True], ids=["retain-0", "retain-1"])
def test_mqtt_3_1_2_14_and_15_will_retain_flag(broker, retain):
    """[MQTT-3.1.2-14] Will Retain 0: published as a non-retained message.
    [MQTT-3.1.2-15] Will Retain 1: published as a retained message."""
    b = broker()
    topic = unique("wr")
    watcher = raw5(b.port)
    watcher.subscribe([(topic, 1, {"rap": True})])  # Retain As Published: shows the flag
    c = RawClient5(b.port)
    ack = c.connect_ok(will=will(topic, retain=retain))
    assert ack.prop("retain_available") in (None, 1)  # [MQTT-3.2.2-13]: retain is supported
    c.close()
    p = watcher.receive_publishes(1)[0]
    assert p.payload == b"gone" and p.retain is retain
    late = raw5(b.port)
    late.subscribe([(topic, 1)])
    if retain:
        r = late.receive_publishes(1)[0]
        assert r.payload == b"gone" and r.retain is True
    else:
        late.expect_no_packet(0.5)


def test_mqtt_3_1_2_22_silent_client_is_closed_after_one_and_a_half_keep_alive(broker):
    """[MQTT-3.1.2-22] [MQTT-3.2.2-22] No Server Keep Alive: the broker holds the client to
    its own Keep Alive (1 s here). Packets within it keep the connection; silence closes it
    within 1.5 keep alives, as if the network failed (the will is published)."""
    b = broker()
    topic = unique("ka")
    watcher = raw5(b.port)
    watcher.subscribe([(topic, 1)])
    c = RawClient5(b.port)
    ack = c.connect_ok(keepalive=1, will=will(topic))
    assert ack.prop("server_keep_alive") is None
    for _ in range(3):
        time.sleep(0.8)  # under the keep alive: the client is on time
        c.ping()
    c.expect_no_packet(0.9)  # still open: not closed before the keep alive is up
    c.wait_closed(timeout=4)
    assert watcher.receive_publishes(1)[0].payload == b"gone"


def test_mqtt_3_1_2_24_broker_packets_fit_the_client_maximum_packet_size(broker):
    """[MQTT-3.1.2-24] No packet the broker sends exceeds the client's Maximum Packet Size:
    the CONNACK, and the DISCONNECT for a protocol error (its Reason String must go rather
    than make the packet too large). PUBLISH: see test_11."""
    b = broker()
    c = RawClient5(b.port)
    ack = c.connect_ok(props=[("maximum_packet_size", 40)])
    assert wire_size(ack) <= 40, ack
    c.send(auth5(0x19, [("authentication_method", "PLAIN")]))  # AUTH without a method at CONNECT
    seen = c.wait_closed()
    assert all(wire_size(p) <= 40 for p in seen), \
        [(p, wire_size(p)) for p in seen]
    assert all(p.type == DISCONNECT for p in seen), seen


def test_mqtt_3_1_2_27_topic_alias_maximum_zero_means_no_aliases(broker):
    """[MQTT-3.1.2-27] Topic Alias Maximum 0 (as when absent): the broker sends no Topic
    Alias, every PUBLISH has its topic."""
    b = broker()
    topic = unique("ta0")
    sub = raw5(b.port, props=[("topic_alias_maximum", 0)])
    sub.subscribe([(topic, 0)])
    pub = raw5(b.port)
    for _ in range(3):
        pub.publish_acked(topic, b"x")
    got = [sub.expect_publish() for _ in range(3)]
    assert [(p.topic, p.prop("topic_alias")) for p in got] == [(topic, None)] * 3


def test_mqtt_3_1_2_28_no_response_information_when_not_requested(broker):
    """[MQTT-3.1.2-28] Request Response Information 0: no Response Information in the
    CONNACK, even where the broker has some to give."""
    b = broker(mqtt5={"response_information": "reply/"})
    c = RawClient5(b.port)
    ack = c.connect_ok(props=[("request_response_information", 0)])
    assert ack.prop("response_information") is None, ack
    d = RawClient5(b.port)
    assert d.connect_ok(props=[("request_response_information", 1)]).prop(
        "response_information") == "reply/" + d.client_id  # the broker does have some


def test_mqtt_3_1_2_29_no_reason_string_when_problem_information_is_0(broker):
    """[MQTT-3.1.2-29] Request Problem Information 0: no Reason String or User Property on
    any packet but PUBLISH, CONNACK and DISCONNECT, error codes included."""
    b = broker()
    c = raw5(b.port, props=[("request_problem_information", 0)])
    acks = [c.publish_acked(unique("nobody"), b"x", qos=1),   # 0x10 no subscribers
            c.publish_acked("$SYS/x", b"x", qos=1)]           # 0x87 (Tern) not authorized
    pid = c.publish(unique("nobody"), b"x", qos=2)
    acks.append(c.expect_ack(PUBREC, pid))
    c.send(ack5(PUBREL, pid))
    acks.append(c.expect_ack(PUBCOMP, pid))
    c.send(ack5(PUBREL, 4242))                                 # 0x92 unknown identifier
    acks.append(c.expect(PUBCOMP, pid=4242))
    c.send(subscribe5(9, [(unique("s"), 2)]))
    acks.append(c.expect(SUBACK, pid=9))
    c.send(unsubscribe5(10, [unique("never")]))                # 0x11 no subscription
    acks.append(c.expect(UNSUBACK, pid=10))
    assert [p for p in acks if not no_problem_properties(p)] == [], acks


def test_mqtt_3_1_3_5_short_alphanumeric_client_ids_are_allowed(broker):
    """[MQTT-3.1.3-5] Client identifiers of 1 to 23 bytes of [0-9a-zA-Z] are accepted."""
    b = broker()
    for cid in ("a", "Z", "9", "0123456789abcdefghijKLM", "abcdefghijklmnopqrstuvw",
                "ABCDEFGHIJKLMNOPQRSTUVW"):
        c = RawClient5(b.port)
        ack = c.connect(cid)
        assert ack.rc == 0, (cid, ack)
        c.ping()
        c.disconnect()


def test_mqtt_3_1_3_6_empty_client_ids_get_distinct_assigned_ids(broker):
    """[MQTT-3.1.3-6] [MQTT-3.2.2-16] Each client connecting with an empty client id gets a
    unique one, told in Assigned Client Identifier: two such clients are two sessions, and
    neither takes the other over."""
    b = broker()
    first, second = RawClient5(b.port), RawClient5(b.port)
    a1 = first.connect_ok("").prop("assigned_client_identifier")
    a2 = second.connect_ok("").prop("assigned_client_identifier")
    assert a1 and a2 and a1 != a2, (a1, a2)
    first.ping()
    second.ping()
    topic = unique("anon5")
    first.subscribe([(topic, 1)])
    second.publish_acked(topic, b"hi", qos=1)
    assert first.receive_publishes(1)[0].payload == b"hi"


def test_mqtt_3_1_3_8_rejected_client_id_closes_the_connection(broker):
    """[MQTT-3.1.3-8] A client id the broker rejects (longer than mqtt.max_clientid_len):
    CONNACK 0x85 at most, then the close."""
    b = broker(mqtt={"max_clientid_len": 23})
    ok = RawClient5(b.port)
    assert ok.connect("c" * 23).rc == 0
    assert_refused(until_closed(b.port, connect5("c" * 24)), allowed={0x85})


def test_mqtt_3_1_3_10_will_user_properties_keep_their_order(broker):
    """[MQTT-3.1.3-10] The will's User Properties are published in the order given, repeated
    names included."""
    b = broker()
    topic = unique("wup")
    pairs = [("b", "2"), ("a", "1"), ("b", "3"), ("z", ""), ("a", "0")]
    watcher = raw5(b.port)
    watcher.subscribe([(topic, 1)])
    c = raw5(b.port, will=will(topic, props=[("user_property", p) for p in pairs]))
    c.close()
    assert watcher.receive_publishes(1)[0].all("user_property") == pairs


CID = mqtt_string("malformed")
NO_PROPS = b"\x00"
MALFORMED_CONNECT = {
    "reserved-flag": connect_bytes(0x03, CID),                                   # 3.1.2-3
    "will-flag-without-will-fields": connect_bytes(0x06, CID),                   # 3.1.2-9
    "will-qos-without-will-flag": connect_bytes(0x0A, CID),                      # 3.1.2-11
    "will-qos-3": connect_bytes(0x1E, CID + NO_PROPS + mqtt_string("w") + mqtt_string("p")),
    "will-retain-without-will-flag": connect_bytes(0x22, CID),                   # 3.1.2-13
    "user-name-without-flag": connect_bytes(0x02, CID + mqtt_string("user")),    # 3.1.2-16
    "user-name-flag-without-user-name": connect_bytes(0x82, CID),                # 3.1.2-17
    "password-without-flag": connect_bytes(0x82, CID + mqtt_string("u") + mqtt_string("pw")),
    "password-flag-without-password": connect_bytes(0xC2, CID + mqtt_string("u")),  # 3.1.2-19
    "no-client-id": connect_bytes(0x02, b""),                                    # 3.1.3-3
    "client-id-not-utf8": connect_bytes(0x02, mqtt_string(b"\xc3\x28")),         # 3.1.3-4
    "will-topic-not-utf8": connect_bytes(0x06, CID + NO_PROPS + mqtt_string(b"w\xff") +
                                         mqtt_string(b"p")),                     # 3.1.3-11
    "user-name-not-utf8": connect_bytes(0x82, CID + mqtt_string(b"\xed\xa0\x80")),  # 3.1.3-12
    "fixed-header-flags": bytes([(CONNECT << 4) | 0x01]) + connect_bytes(0x02, CID)[1:],
    "client-id-past-the-end": connect_bytes(0x02, b"\x00\x14abc"),
    "property-length-past-the-end": connect_bytes(0x02, CID, props=b"\x09\x11\x00"),
    "will-delay-in-connect-properties": connect_bytes(
        0x02, CID, props=encode_props([("will_delay_interval", 1)])),
    "session-expiry-twice": connect_bytes(
        0x02, CID, props=encode_props([("session_expiry_interval", 1),
                                       ("session_expiry_interval", 2)])),
    "receive-maximum-0": connect_bytes(0x02, CID, props=encode_props([("receive_maximum", 0)])),
    "maximum-packet-size-0": connect_bytes(
        0x02, CID, props=encode_props([("maximum_packet_size", 0)])),
    "request-problem-information-2": connect_bytes(
        0x02, CID, props=encode_props([("request_problem_information", 2)])),
    "authentication-data-without-method": connect_bytes(
        0x02, CID, props=encode_props([("authentication_data", b"d")])),
}


@pytest.mark.parametrize("data", MALFORMED_CONNECT.values(), ids=MALFORMED_CONNECT.keys())
def test_mqtt_3_1_4_1_connect_not_matching_the_format_is_closed(broker, data):
    """[MQTT-3.1.4-1] A CONNECT that does not match the format of 3.1 is refused: a CONNACK
    with a reason code of 0x80 or more at most, then the close. The cases break the client
    side statements noted next to them."""
    b = broker()
    assert_refused(until_closed(b.port, data))
    raw5(b.port).ping()  # the broker goes on for everybody else


@pytest.mark.skipif(is_mosquitto(), reason="uses Tern's password file")
def test_mqtt_3_1_4_2_failed_authentication_closes_the_connection(broker, tmp_path):
    """[MQTT-3.1.4-2] A CONNECT failing authentication or authorization: CONNACK 0x86 (bad
    user name or password) / 0x87 (not authorized), session present 0, then the close."""
    from access_util import make_passwd
    pw = make_passwd(tmp_path / "passwd", {"alice": "wonderland"})
    b = broker(auth={"allow_anonymous": False, "chain": ["password_file"], "password_file": pw})
    for data, rc in ((connect5(unique("a"), username="alice", password="wrong"), 0x86),
                     (connect5(unique("a")), 0x87)):
        c = RawClient5(b.port)
        c.send(data)
        seen = c.wait_closed()
        assert [(p.type, p.rc, p.session_present) for p in seen] == [(CONNACK, rc, 0)], seen
    ok = RawClient5(b.port)
    assert ok.connect(unique("a"), username="alice", password="wonderland").rc == 0


def test_mqtt_3_1_4_4_refused_connect_leaves_the_session_alone(broker):
    """[MQTT-3.1.4-4] Clean Start is processed only once the CONNECT is accepted: a refused
    CONNECT with Clean Start 1 does not discard the client's session."""
    b = broker()
    cid, topic = unique("keep"), unique("keept")
    c = raw5(b.port, cid, props=[("session_expiry_interval", 60)])
    c.subscribe([(topic, 1)])
    c.disconnect()
    refused = RawClient5(b.port)
    refused.send(connect5(cid, clean=True, props=[("session_expiry_interval", 60),
                                                  ("authentication_method", "X-NONE")]))
    seen = refused.wait_closed()
    assert len(seen) <= 1 and all(p.type == CONNACK and p.rc >= 0x80 for p in seen), seen
    again = RawClient5(b.port)
    ack = again.connect(cid, clean=False, props=[("session_expiry_interval", 60)])
    assert ack.rc == 0 and ack.session_present == 1


def test_mqtt_3_1_4_6_data_after_a_refused_connect_is_not_processed(broker):
    """[MQTT-3.1.4-6] What a client pipelines after a CONNECT the broker refuses is not
    processed: no PUBLISH is routed, no retained message stored, no SUBSCRIBE made."""
    b = broker()
    topic = unique("after")
    watcher = raw5(b.port)
    watcher.subscribe([(topic, 1)])
    cid = unique("refused")
    data = (connect5(cid, props=[("session_expiry_interval", 60),
                                 ("authentication_method", "X-NONE")]) +
            publish5(topic, b"must not be routed", qos=1, pid=1) +
            publish5(topic, b"must not be retained", retain=True) +
            subscribe5(2, [(topic + "/sub", 1)]))
    seen = until_closed(b.port, data)
    assert_refused(seen)
    watcher.expect_no_packet(0.5)
    late = raw5(b.port)
    late.subscribe([(topic, 1)])
    late.expect_no_packet(0.3)  # nothing retained
    # Nor did the refused client get a session with that subscription.
    again = RawClient5(b.port)
    assert again.connect(cid, clean=False,
                         props=[("session_expiry_interval", 60)]).session_present == 0


# ---------------------------------------------------------------------------------------------
# 3.2 CONNACK
# ---------------------------------------------------------------------------------------------

def test_mqtt_3_2_0_1_connack_precedes_the_answers_to_pipelined_packets(broker):
    """[MQTT-3.2.0-1] Packets sent right behind the CONNECT are answered after the CONNACK
    0x00, never before it."""
    b = broker()
    topic = unique("pipe")
    c = RawClient5(b.port)
    c.send(connect5(unique("pipe")) + packet(PINGREQ, 0) + subscribe5(3, [(topic, 1)]) +
           publish5(topic + "/other", b"x", qos=1, pid=4))
    first = c.read_packet()
    assert first.type == CONNACK and first.rc == 0, first
    rest = sorted(c.read_packet().type for _ in range(3))
    assert rest == sorted([PINGRESP, SUBACK, PUBACK]), rest


def test_mqtt_3_2_0_1_no_disconnect_before_the_connack(broker):
    """[MQTT-3.2.0-1] A malformed packet right behind the CONNECT: the broker may close, or
    send the CONNACK first, but sends nothing else before a CONNACK 0x00 (no DISCONNECT)."""
    b = broker()
    bad = packet(PUBLISH, 0x06, mqtt_string("t") + b"\x00\x01" + b"\x00" + b"x")  # QoS 3
    for attempt in range(5):  # the order on the wire may depend on timing: try a few times
        c = RawClient5(b.port)
        c.send(connect5(unique("early")) + bad)
        seen = c.wait_closed()
        if seen:
            assert seen[0].type == CONNACK and seen[0].rc == 0, \
                f"attempt {attempt}: {seen[0]!r} before any CONNACK 0x00: {seen}"


def test_mqtt_3_2_0_2_one_connack_per_connection(broker):
    """[MQTT-3.2.0-2] Two CONNECTs back to back get one CONNACK: the second is a protocol
    error, not a second connection."""
    b = broker()
    c = RawClient5(b.port)
    c.send(connect5(unique("twice")) + connect5(unique("twice")))
    seen = c.wait_closed()
    assert [p.type for p in seen].count(CONNACK) == 1, seen
    assert seen[0].type == CONNACK and seen[0].rc == 0, seen
    assert all(p.type == DISCONNECT and p.rc == PROTOCOL_ERROR for p in seen[1:]), seen


def test_mqtt_3_2_2_1_connack_acknowledge_flags_reserved_bits_are_0(broker):
    """[MQTT-3.2.2-1] Bits 7-1 of the Connect Acknowledge Flags are 0: session present 0 or
    1, and in a refusal."""
    b = broker()
    cid = unique("ackf")
    first = RawClient5(b.port)
    assert first.connect_ok(cid, props=[("session_expiry_interval", 60)]).body[0] == 0x00
    first.disconnect()
    again = RawClient5(b.port)
    assert again.connect_ok(cid, clean=False,
                            props=[("session_expiry_interval", 60)]).body[0] == 0x01
    refused = RawClient5(b.port)
    ack = refused.connect(unique("ackf"), props=[("authentication_method", "X-NONE")])
    assert ack.rc >= 0x80 and ack.body[0] == 0x00, ack


def test_mqtt_3_2_2_6_refusal_has_session_present_0(broker):
    """[MQTT-3.2.2-6] A CONNACK with a non-zero reason code has Session Present 0, even when
    the client id has a session."""
    b = broker()
    cid = unique("sp0")
    c = raw5(b.port, cid, props=[("session_expiry_interval", 60)])
    c.disconnect()
    refused = RawClient5(b.port)
    ack = refused.connect(cid, clean=False, props=[("session_expiry_interval", 60),
                                                   ("authentication_method", "X-NONE")])
    assert ack.rc != 0 and ack.session_present == 0, ack
    refused.wait_closed()


REFUSED_CONNECT = [
    pytest.param(dict(props=[("authentication_method", "X-NONE")]),
                 id="unknown-authentication-method"),
    pytest.param(dict(will=will("w/+/x")), id="will-topic-with-wildcard"),
    pytest.param(dict(will=will("w", payload=b"\xff\xfe", props=[("payload_format_indicator", 1)])),
                 id="will-payload-not-utf8",
                 marks=pytest.mark.skipif(is_mosquitto(), reason="checking the will payload "
                                          "format is optional (3.1.3.2.3); Tern checks it")),
]


@pytest.mark.parametrize("kw", REFUSED_CONNECT)
def test_mqtt_3_2_2_7_connack_0x80_or_more_then_close(broker, kw):
    """[MQTT-3.2.2-7] After a CONNACK with a reason code of 0x80 or more the broker closes the
    connection."""
    b = broker()
    c = RawClient5(b.port)
    c.send(connect5(unique("rc"), **kw))
    seen = c.wait_closed()
    assert len(seen) <= 1, seen
    assert all(p.type == CONNACK and p.rc >= 0x80 for p in seen), seen


@pytest.mark.skipif(is_mosquitto(), reason="uses Tern's password file and client id limit")
def test_mqtt_3_2_2_8_refusals_use_connect_reason_codes(broker, tmp_path):
    """[MQTT-3.2.2-8] Each refusal the broker sends carries a value of Table 3-1 (Connect
    Reason Codes)."""
    from access_util import ScramClient, make_passwd
    pw = make_passwd(tmp_path / "passwd", {"alice": "wonderland"})
    b = broker(auth={"allow_anonymous": False, "chain": ["password_file"], "password_file": pw},
               mqtt={"max_clientid_len": 23})
    good = dict(username="alice", password="wonderland")
    cases = {
        "client id too long": connect5("c" * 24, **good),
        "will topic with wildcard": connect5(unique("r"), will=will("w/#"), **good),
        "will payload not UTF-8": connect5(unique("r"), will=will(
            "w", payload=b"\xff", props=[("payload_format_indicator", 1)]), **good),
        "bad password": connect5(unique("r"), username="alice", password="wrong"),
        "no credentials": connect5(unique("r")),
        "unknown authentication method": connect5(
            unique("r"), props=[("authentication_method", "X-NONE")], **good),
    }
    codes = {}
    for what, data in cases.items():
        c = RawClient5(b.port)
        c.send(data)
        seen = c.wait_closed()
        assert [p.type for p in seen] == [CONNACK], (what, seen)
        codes[what] = seen[0].rc
    # A packet other than AUTH during enhanced authentication (SCRAM) [MQTT-3.1.2-30].
    c = RawClient5(b.port)
    c.send(connect5(unique("r"), props=[("authentication_method", "SCRAM-SHA-256"),
                                        ("authentication_data",
                                         ScramClient("alice", "wonderland").first())]))
    assert c.expect(AUTH).rc == 0x18
    c.send(publish5("t", b"x"))
    seen = c.wait_closed()
    assert [p.type for p in seen] == [CONNACK], seen
    codes["PUBLISH during AUTH"] = seen[0].rc
    assert {w: rc for w, rc in codes.items()
            if rc not in CONNACK_REASON_CODES or rc < 0x80} == {}, codes


def test_mqtt_3_2_2_9_every_qos_is_supported(broker):
    """[MQTT-3.2.2-9] [MQTT-3.2.2-10] [MQTT-3.2.2-12] The broker supports QoS 2, so it sends
    no Maximum QoS, grants SUBSCRIBE at QoS 0, 1 and 2, accepts QoS 2 PUBLISH and a QoS 2
    will."""
    b = broker()
    base = unique("q")
    sub = RawClient5(b.port)
    ack = sub.connect_ok()
    assert ack.prop("maximum_qos") is None, ack
    assert sub.subscribe([(base + "/0", 0), (base + "/1", 1), (base + "/2", 2)]).codes == [0, 1, 2]
    pub = raw5(b.port)
    assert pub.publish_acked(base + "/2", b"two", qos=2).rc < 0x80
    p = sub.receive_publishes(1)[0]
    assert (p.qos, p.payload) == (2, b"two")
    w = RawClient5(b.port)
    assert w.connect(will=will(base + "/2", qos=2)).rc == 0
    w.close()
    p = sub.receive_publishes(1)[0]
    assert (p.qos, p.payload) == (2, b"gone")


def test_mqtt_3_2_2_15_packet_above_the_broker_maximum_gets_0x95(broker):
    """[MQTT-3.2.2-15] (a Client requirement) A packet larger than the Maximum Packet Size in
    the CONNACK: DISCONNECT 0x95 (packet too large), then the close."""
    b = broker(mqtt={"max_packet_size": 1024})
    c = RawClient5(b.port)
    assert c.connect_ok().prop("maximum_packet_size") == 1024
    # The fixed header announces 2000 bytes; the broker need not read them to know.
    c.send(bytes([PUBLISH << 4]) + varint(2000) + mqtt_string("t") + b"\x00")
    c.expect_disconnect(0x95)


def test_mqtt_3_2_2_18_topic_alias_when_the_broker_takes_none_gets_0x94(broker):
    """[MQTT-3.2.2-18] (a Client requirement) No Topic Alias Maximum in the CONNACK means no
    aliases: a PUBLISH with one gets DISCONNECT 0x94 (topic alias invalid)."""
    b = broker(mqtt5={"topic_alias_maximum": 0})
    c = RawClient5(b.port)
    assert c.connect_ok().prop("topic_alias_maximum") is None
    c.send(publish5(unique("ta"), b"x", props=[("topic_alias", 1)]))
    c.expect_disconnect(0x94)


def test_mqtt_3_2_2_19_reason_string_does_not_push_the_connack_past_the_client_maximum(broker):
    """[MQTT-3.2.2-19] A refusing CONNACK leaves out its Reason String where it would make the
    packet larger than the client's Maximum Packet Size."""
    b = broker()
    c = RawClient5(b.port)
    c.send(connect5(unique("small"), props=[("maximum_packet_size", 16)], will=will("w/#")))
    seen = c.wait_closed()
    assert all(p.type == CONNACK and p.rc >= 0x80 for p in seen), seen
    assert [(p, wire_size(p)) for p in seen if wire_size(p) > 16] == []


def test_mqtt_3_2_2_20_no_user_property_past_the_client_maximum(broker):
    """[MQTT-3.2.2-20] No User Property makes a CONNACK larger than the client's Maximum
    Packet Size (Tern sends none on CONNACK), accepting or refusing."""
    b = broker()
    ok = RawClient5(b.port)
    ack = ok.connect_ok(props=[("maximum_packet_size", 40)])
    assert not ack.all("user_property") and wire_size(ack) <= 40, ack
    c = RawClient5(b.port)
    c.send(connect5(unique("small"), props=[("maximum_packet_size", 16),
                                            ("authentication_method", "X-NONE")]))
    seen = c.wait_closed()
    assert all(p.type == CONNACK and p.rc >= 0x80 for p in seen), seen
    assert [p for p in seen if p.all("user_property") or wire_size(p) > 16] == [], seen
