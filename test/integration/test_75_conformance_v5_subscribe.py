# MQTT 5.0 conformance, 3.8 SUBSCRIBE to 3.15 AUTH: one test per server-side normative
# statement that no other test checks. Each test is named after its statement and quotes the
# id in its docstring; docs/conformance.md maps every statement of these sections
# to the test that checks it.
#
# Packets are hand-built (mqtt5.RawClient5) so that flags, packet identifiers, subscription
# options, property lengths and sizes on the wire are exactly what the test says.

import struct
import threading
import time

import pytest

from helpers import (CONNACK, DISCONNECT, PINGREQ, PINGRESP, PUBACK, PUBCOMP, PUBLISH, PUBREC,
                     PUBREL, SUBACK, SUBSCRIBE, UNSUBACK, UNSUBSCRIBE, ConnectionClosed,
                     is_mosquitto, mqtt_string, packet, unique)
from mqtt5 import (AUTH, RawClient5, ack5, auth5, connect5, disconnect5, encode_props,
                   publish5, raw5, subscribe5, unsubscribe5, varint, wire_size)

tern_only = pytest.mark.skipif(is_mosquitto(), reason="uses Tern's configuration")
# A filter breaking the wildcard rules (4.7.1): Tern refuses it in the SUBACK (0x8F) or
# UNSUBACK (0x11) and goes on; closing the connection instead, as Mosquitto does, is as right.
refuses_bad_filters = pytest.mark.skipif(
    is_mosquitto(), reason="Tern answers an invalid filter with a reason code, Mosquitto closes")
BAD = "bad/#/x"

MALFORMED, PROTOCOL_ERROR = 0x81, 0x82
# Table 3-8: Subscribe Reason Codes [MQTT-3.9.3-2].
SUBACK_REASON_CODES = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2}
# Table 3-9: Unsubscribe Reason Codes [MQTT-3.11.3-2].
UNSUBACK_REASON_CODES = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91}
# Table 3-10: Disconnect Reason Codes a Server may send (0x04 is the Client's only)
# [MQTT-3.14.2-1].
SERVER_DISCONNECT_CODES = {0x00, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F,
                           0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C,
                           0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2}
# Table 3-11: Authenticate Reason Codes the Server sends (0x19 is the Client's only)
# [MQTT-3.15.2-1].
SERVER_AUTH_CODES = {0x00, 0x18}
SCRAM = "SCRAM-SHA-256"


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def raw_subscribe(pid, pairs, props=b"\x00"):
    """A SUBSCRIBE with raw (filter bytes, options byte) pairs."""
    body = struct.pack("!H", pid) + props
    for f, o in pairs:
        body += mqtt_string(f) + bytes([o])
    return packet(SUBSCRIBE, 0x02, body)


def read_until(c, ptype, pid, timeout=5.0):
    """Packets up to and including the `ptype` with packet id `pid`, answering as a client
    does on the way (PUBACK, PUBREC, PUBCOMP). Returns them in arrival order."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        try:
            p = c.read_packet(max(deadline - time.monotonic(), 0.001))
        except TimeoutError:
            raise AssertionError(f"no packet {ptype} (id {pid}) within {timeout}s; got {seen}")
        except ConnectionClosed as e:
            raise AssertionError(f"connection closed before packet {ptype} ({e}); got {seen}")
        seen.append(p)
        if p.type == PUBLISH and p.qos == 1:
            c.send(ack5(PUBACK, p.pid))
        elif p.type == PUBLISH and p.qos == 2:
            c.send(ack5(PUBREC, p.pid))
        elif p.type == PUBREL:
            c.send(ack5(PUBCOMP, p.pid))
        if p.type == ptype and p.pid == pid:
            return seen


def publishes(packets):
    return [p for p in packets if p.type == PUBLISH]


def collect_publishes(c, quiet=0.4, timeout=5.0):
    """PUBLISH packets until none came for `quiet` seconds, acknowledged as they arrive."""
    deadline = time.monotonic() + timeout
    got = []
    while time.monotonic() < deadline:
        try:
            p = c.read_packet(quiet)
        except TimeoutError:
            return got
        assert p.type in (PUBLISH, PUBREL), p
        if p.type == PUBREL:
            c.send(ack5(PUBCOMP, p.pid))
            continue
        got.append(p)
        if p.qos:
            c.send(ack5(PUBACK if p.qos == 1 else PUBREC, p.pid))
    raise AssertionError(f"publishes did not stop within {timeout}s: {got[:5]}")


def session_barrier(c, pid=65000, timeout=5.0):
    """Everything the session sends before it answers an UNSUBSCRIBE of a filter nobody
    holds (the session handles SUBSCRIBE and UNSUBSCRIBE in order); the UNSUBACK excluded."""
    c.send(unsubscribe5(pid, [unique("barrier")]))
    return read_until(c, UNSUBACK, pid, timeout)[:-1]


def will(topic, payload=b"gone", qos=1, props=()):
    return {"topic": topic, "payload": payload, "qos": qos, "retain": False,
            "props": list(props)}


def no_problem_properties(p):
    return p.prop("reason_string") is None and not p.all("user_property")


def scram_broker(broker, tmp_path):
    """A broker offering SCRAM-SHA-256 (user alice) and letting anonymous clients in."""
    from access_util import make_passwd
    pw = make_passwd(tmp_path / "passwd", {"alice": "wonderland"})
    return broker(auth={"allow_anonymous": True, "chain": ["password_file"],
                        "password_file": pw})


def scram_connect(port, max_packet_size=None):
    """A CONNECT with SCRAM-SHA-256; returns (client, scram state, the broker's AUTH)."""
    from access_util import ScramClient
    s = ScramClient("alice", "wonderland")
    props = [("authentication_method", SCRAM), ("authentication_data", s.first())]
    if max_packet_size is not None:
        props.append(("maximum_packet_size", max_packet_size))
    c = RawClient5(port)
    c.send(connect5(unique("scram"), props=props))
    return c, s, c.expect(AUTH)


# ---------------------------------------------------------------------------------------------
# 3.8 SUBSCRIBE
# ---------------------------------------------------------------------------------------------

def test_mqtt_3_8_1_1_subscribe_fixed_header_flags_must_be_0010(broker):
    """[MQTT-3.8.1-1] SUBSCRIBE flags other than 0,0,1,0 make a Malformed Packet: DISCONNECT
    0x81 and close; with 0010 the same packet is answered."""
    b = broker()
    good = subscribe5(1, [(unique("f"), 1)])
    for flags in (0x00, 0x01, 0x03, 0x06, 0x0A, 0x0F):
        c = raw5(b.port)
        c.send(bytes([(SUBSCRIBE << 4) | flags]) + good[1:])
        c.expect_disconnect(MALFORMED)
    c = raw5(b.port)
    c.send(good)
    assert c.expect(SUBACK, pid=1).codes == [1]


def test_mqtt_3_8_3_1_topic_filter_not_utf8_is_malformed(broker):
    """[MQTT-3.8.3-1] (a Client requirement) A Topic Filter that is not a well-formed UTF-8
    string makes the SUBSCRIBE malformed: DISCONNECT 0x81, and no subscription is made."""
    b = broker()
    base = unique("u8")
    for bad in (b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82"):
        c = raw5(b.port)
        c.send(raw_subscribe(2, [(base.encode() + b"/" + bad, 1), (base.encode(), 1)]))
        c.expect_disconnect(MALFORMED)


def test_mqtt_3_8_3_2_subscribe_without_a_filter_is_a_protocol_error(broker):
    """[MQTT-3.8.3-2] (a Client requirement) A SUBSCRIBE with no Topic Filter / Subscription
    Options pair is a Protocol Error: DISCONNECT 0x82, no SUBACK."""
    b = broker()
    for props in ([], [("subscription_identifier", 5)]):
        c = raw5(b.port)
        c.send(packet(SUBSCRIBE, 0x02, struct.pack("!H", 3) + encode_props(props)))
        c.expect_disconnect(PROTOCOL_ERROR)


def test_mqtt_3_8_3_5_reserved_subscription_option_bits_are_malformed(broker):
    """[MQTT-3.8.3-5] Bits 6 and 7 of the Subscription Options are reserved: set in any pair,
    the SUBSCRIBE is malformed (DISCONNECT 0x81)."""
    b = broker()
    for options in (0x41, 0x81, 0xC0, 0x40 | 0x2E):
        for pairs in ([(b"r/a", options)], [(b"r/a", 0x01), (b"r/b", options)]):
            c = raw5(b.port)
            c.send(raw_subscribe(4, pairs))
            c.expect_disconnect(MALFORMED)
    c = raw5(b.port)  # the same options without the reserved bits are fine
    c.send(raw_subscribe(4, [(b"r/a", 0x01), (b"r/b", 0x2E)]))
    assert c.expect(SUBACK, pid=4).codes == [1, 2]


@refuses_bad_filters
def test_mqtt_3_8_4_1_every_subscribe_gets_a_suback(broker):
    """[MQTT-3.8.4-1] [MQTT-3.8.4-2] Each SUBSCRIBE is answered by a SUBACK with its Packet
    Identifier, also when every filter in it is refused; pipelined, in the order sent."""
    b = broker()
    base = unique("sa")
    c = raw5(b.port)
    c.send(subscribe5(10, [(base + "/a", 1)]) +
           subscribe5(11, [(BAD, 1)]) +
           subscribe5(12, [("bad+", 0), (base + "/b", 2)]) +
           subscribe5(13, [(base + "/a", 0)]) +
           subscribe5(65535, [(f"$share/g/{base}/c", 1)]))
    acks = [c.expect(SUBACK) for _ in range(5)]
    assert [a.pid for a in acks] == [10, 11, 12, 13, 65535], acks
    assert [a.codes for a in acks] == [[1], [0x8F], [0x8F, 2], [0], [1]], acks


def test_mqtt_3_8_4_3_same_filter_replaces_the_subscription(broker):
    """[MQTT-3.8.4-3] A SUBSCRIBE with a filter the session already has replaces that
    subscription: its new options (QoS, Subscription Identifier, Retain As Published, No Local)
    apply and there is still one copy per message."""
    b = broker()
    topic = unique("repl")
    c = raw5(b.port)
    assert c.subscribe([(topic, 0)], props=[("subscription_identifier", 1)]).codes == [0]
    assert c.subscribe([(topic, 2, {"rap": True})],
                       props=[("subscription_identifier", 2)]).codes == [2]
    pub = raw5(b.port)
    pub.publish_acked(topic, b"one", qos=2, retain=True)
    p = c.receive_publishes(1)[0]
    assert (p.payload, p.qos, p.retain) == (b"one", 2, True), p
    assert p.all("subscription_identifier") == [2], p
    c.expect_no_packet(0.3)  # one copy: the first subscription is gone
    assert c.subscribe([(topic, 1, {"no_local": True, "rh": 2})]).codes == [1]
    c.publish_acked(topic, b"own", qos=1)
    pub.publish_acked(topic, b"two", qos=2)
    got = c.receive_publishes(1)
    assert [(p.payload, p.qos, p.retain) for p in got] == [(b"two", 1, False)], got
    assert got[0].all("subscription_identifier") == [], got
    c.expect_no_packet(0.3)  # "own" was not sent back (No Local), nothing twice


def test_mqtt_3_8_4_4_resubscribe_resends_retained_and_loses_nothing(broker):
    """[MQTT-3.8.4-4] Replacing a subscription with Retain Handling 0 sends the retained
    message again, and no message published meanwhile is lost to the replacement."""
    b = broker()
    topic = unique("rh0")
    pub = raw5(b.port)
    pub.publish_acked(topic, b"retained", qos=1, retain=True)
    c = raw5(b.port, props=[("receive_maximum", 100)])
    c.subscribe([(topic, 1)])
    first = c.receive_publishes(1)[0]
    assert (first.payload, first.retain) == (b"retained", True), first
    n = 60
    pub.send(b"".join(publish5(topic, f"m{i}".encode(), qos=1, pid=100 + i) for i in range(n)))
    c.send(subscribe5(9, [(topic, 1, {"rh": 0})]))
    seen = read_until(c, SUBACK, 9)
    while len(publishes(seen)) < n + 1:
        try:
            p = c.read_packet(5)
        except TimeoutError:
            break
        assert p.type == PUBLISH, p
        c.send(ack5(PUBACK, p.pid))
        seen.append(p)
    got = publishes(seen)
    again = [p.payload for p in got if p.retain]
    live = [p.payload for p in got if not p.retain]
    assert again == [b"retained"], got
    assert live == [f"m{i}".encode() for i in range(n)], live
    for i in range(n):
        pub.expect(PUBACK, pid=100 + i)
    c.expect_no_packet(0.3)


@refuses_bad_filters
def test_mqtt_3_8_4_5_several_filters_act_as_a_sequence_of_subscribes(broker):
    """[MQTT-3.8.4-5] A SUBSCRIBE with several filters is handled as that many SUBSCRIBEs in
    a row with one SUBACK: a filter given twice is created, then replaced (Retain Handling 1
    of the second finds it existing: one retained copy), a refused filter does not stop the
    others."""
    b = broker()
    topic = unique("seq")
    pub = raw5(b.port)
    pub.publish_acked(topic, b"r", qos=1, retain=True)
    c = raw5(b.port)
    c.send(subscribe5(3, [(topic, 0, {"rh": 0}), (topic, 2, {"rh": 1}), (BAD, 1),
                          (topic + "/+", 1, {"rh": 0})]))
    seen = read_until(c, SUBACK, 3) + session_barrier(c)
    acks = [p for p in seen if p.type == SUBACK]
    assert [a.codes for a in acks] == [[0, 2, 0x8F, 1]], seen
    assert [(p.payload, p.retain) for p in publishes(seen)] == [(b"r", True)], seen
    pub.publish_acked(topic, b"live", qos=2)
    got = c.receive_publishes(1)
    assert [(p.payload, p.qos) for p in got] == [(b"live", 2)], got  # the second one's QoS
    pub.publish_acked(topic + "/x", b"deeper", qos=1)
    assert [(p.payload, p.qos) for p in c.receive_publishes(1)] == [(b"deeper", 1)]
    c.expect_no_packet(0.3)


def test_mqtt_3_8_4_6_one_reason_code_per_filter(broker):
    """[MQTT-3.8.4-6] The SUBACK has one Reason Code per Topic Filter / Subscription Options
    pair: for 1, 7 and 300 pairs (refused ones too: test_mqtt_3_9_3_1)."""
    b = broker()
    base = unique("rc")
    c = raw5(b.port)
    for n in (1, 7, 300):
        ack = c.subscribe([(f"{base}/{n}/{i}", i % 3) for i in range(n)])
        assert ack.codes == [i % 3 for i in range(n)], (n, ack.codes)


@refuses_bad_filters
def test_mqtt_3_8_4_7_reason_code_is_the_granted_qos_or_a_failure(broker):
    """[MQTT-3.8.4-7] Each Reason Code is the maximum QoS granted, and messages then come at
    no more than that QoS, or a failure (0x80 or more) for a subscription not made."""
    b = broker()
    base = unique("grant")
    c = raw5(b.port)
    asked = [(base + "/0", 0), (base + "/1", 1), (base + "/2", 2), (BAD, 2),
             (base + "/+/y", 1)]
    codes = c.subscribe(asked).codes
    assert len(codes) == len(asked)
    for (f, q), rc in zip(asked, codes):
        if f == BAD:
            assert rc >= 0x80, codes
        else:
            assert rc <= q, codes  # granted: at most what was asked
    pub = raw5(b.port)
    for i in range(3):
        pub.publish_acked(f"{base}/{i}", str(i).encode(), qos=2)
    pub.publish_acked(base + "/z/y", b"w", qos=2)
    got = {p.topic: p.qos for p in c.receive_publishes(4)}
    assert got == {base + "/0": codes[0], base + "/1": codes[1], base + "/2": codes[2],
                   base + "/z/y": codes[4]}, (got, codes)


def test_mqtt_3_8_4_8_delivered_qos_is_the_minimum_of_published_and_granted(broker):
    """[MQTT-3.8.4-8] A message goes out at the lower of its published QoS and the QoS
    granted to the subscription: every combination of 0, 1 and 2."""
    b = broker()
    base = unique("min")
    c = raw5(b.port)
    assert c.subscribe([(f"{base}/{g}/+", g) for g in (0, 1, 2)]).codes == [0, 1, 2]
    pub = raw5(b.port)
    for g in (0, 1, 2):
        for q in (0, 1, 2):
            if q == 0:
                pub.publish(f"{base}/{g}/{q}", b"m")
            else:
                pub.publish_acked(f"{base}/{g}/{q}", b"m", qos=q)
    got = {p.topic: p.qos for p in c.receive_publishes(9)}
    assert got == {f"{base}/{g}/{q}": min(g, q) for g in (0, 1, 2) for q in (0, 1, 2)}, got


# ---------------------------------------------------------------------------------------------
# 3.9 SUBACK
# ---------------------------------------------------------------------------------------------

@refuses_bad_filters
def test_mqtt_3_9_2_1_and_2_suback_problem_properties_within_the_client_maximum(broker):
    """[MQTT-3.9.2-1] [MQTT-3.9.2-2] No Reason String or User Property takes a SUBACK past
    the client's Maximum Packet Size (Tern sends neither on SUBACK), for granted and refused
    filters alike."""
    b = broker()
    c = raw5(b.port, props=[("maximum_packet_size", 16)])
    for pairs in ([(unique("ok"), 1)], [(BAD, 1)], [("$share/g+/x", 0), ("a", 2)]):
        ack = c.subscribe(pairs)
        assert no_problem_properties(ack) and wire_size(ack) <= 16, ack
    roomy = raw5(b.port)
    ack = roomy.subscribe([(BAD, 1)])
    assert ack.codes == [0x8F] and no_problem_properties(ack), ack


@refuses_bad_filters
def test_mqtt_3_9_3_1_suback_codes_in_filter_order(broker):
    """[MQTT-3.9.3-1] The SUBACK's Reason Codes are in the order of the SUBSCRIBE's
    filters."""
    b = broker()
    base = unique("ord")
    c = raw5(b.port)
    ack = c.subscribe([(base + "/a", 2), (BAD, 1), (base + "/b", 0), (base + "/c", 1),
                       ("bad+", 0), (base + "/a", 0), (f"$share/g/{base}", 2)])
    assert ack.codes == [2, 0x8F, 0, 1, 0x8F, 0, 2], ack


@tern_only
def test_mqtt_3_9_3_2_suback_codes_come_from_table_3_8(broker, tmp_path):
    """[MQTT-3.9.3-2] Every Reason Code in a SUBACK is one of Table 3-8: a grant, 0x87 for a
    filter the ACL denies, 0x8F for an invalid filter, 0x97 past the subscription quota."""
    acl = tmp_path / "acl.conf"
    acl.write_text('{deny, all, subscribe, ["denied/#"]}.\n{allow, all}.\n')
    b = broker(acl={"file": str(acl), "format": "emqttd", "no_match": "allow"},
               session={"max_subscriptions": 3})
    base = unique("tbl")
    c = raw5(b.port)
    ack = c.subscribe([(base + "/1", 1), ("denied/x", 1), (BAD, 1), (base + "/2", 0),
                       (base + "/3", 2), (base + "/4", 1), ("$share//x", 1)])
    assert ack.codes == [1, 0x87, 0x8F, 0, 2, 0x97, 0x8F], ack
    assert set(ack.codes) <= SUBACK_REASON_CODES, ack


# ---------------------------------------------------------------------------------------------
# 3.10 UNSUBSCRIBE
# ---------------------------------------------------------------------------------------------

def test_mqtt_3_10_1_1_unsubscribe_fixed_header_flags_must_be_0010(broker):
    """[MQTT-3.10.1-1] UNSUBSCRIBE flags other than 0,0,1,0 make a Malformed Packet:
    DISCONNECT 0x81 and close; the subscription stays."""
    b = broker()
    topic = unique("uf")
    good = unsubscribe5(1, [topic])
    for flags in (0x00, 0x01, 0x03, 0x06, 0x0A, 0x0F):
        c = raw5(b.port, props=[("session_expiry_interval", 30)])
        c.subscribe([(topic, 1)])
        c.send(bytes([(UNSUBSCRIBE << 4) | flags]) + good[1:])
        c.expect_disconnect(MALFORMED)
        back = RawClient5(b.port)  # the subscription was not removed
        assert back.connect(c.client_id, clean=False,
                            props=[("session_expiry_interval", 30)]).session_present == 1
        back.send(good)
        assert back.expect(UNSUBACK, pid=1).codes == [0x00]
        back.disconnect()


def test_mqtt_3_10_3_1_unsubscribe_filter_not_utf8_is_malformed(broker):
    """[MQTT-3.10.3-1] (a Client requirement) A filter in an UNSUBSCRIBE that is not
    well-formed UTF-8 makes it malformed: DISCONNECT 0x81."""
    b = broker()
    for bad in (b"\xff", b"x/\xc0\xaf", b"\xed\xbf\xbf"):
        c = raw5(b.port)
        c.send(packet(UNSUBSCRIBE, 0x02, struct.pack("!H", 2) + b"\x00" + mqtt_string(bad)))
        c.expect_disconnect(MALFORMED)


def test_mqtt_3_10_3_2_unsubscribe_without_a_filter_is_a_protocol_error(broker):
    """[MQTT-3.10.3-2] (a Client requirement) An UNSUBSCRIBE with no Topic Filter is a
    Protocol Error: DISCONNECT 0x82, no UNSUBACK."""
    b = broker()
    for props in ([], [("user_property", ("k", "v"))]):
        c = raw5(b.port)
        c.send(packet(UNSUBSCRIBE, 0x02, struct.pack("!H", 3) + encode_props(props)))
        c.expect_disconnect(PROTOCOL_ERROR)


def test_mqtt_3_10_4_1_unsubscribe_compares_filters_character_by_character(broker):
    """[MQTT-3.10.4-1] UNSUBSCRIBE deletes only a subscription whose filter is the same,
    character for character: not one its filter matches as a topic, not another case or
    Unicode normalization form (the Subscription Identifiers show which subscriptions
    are left)."""
    b = broker()
    base = unique("cbc")
    c = raw5(b.port)
    for i, f in enumerate([base + "/+", base + "/#", base + "/a", base + "/\u00e9"], start=1):
        c.subscribe([(f, 1)], props=[("subscription_identifier", i)])
    c.send(unsubscribe5(7, [base + "/b", base + "/A", base + "/e\u0301", base + "/+/#",
                            base + "/+"]))
    assert c.expect(UNSUBACK, pid=7).codes == [0x11, 0x11, 0x11, 0x11, 0x00]
    pub = raw5(b.port)
    expect = {base + "/a": [2, 3], base + "/x": [2], base + "/\u00e9": [2, 4]}
    for topic in expect:
        pub.publish_acked(topic, b"m", qos=1)
    got = {}
    for p in collect_publishes(c):  # one copy per message, or one per subscription
        got.setdefault(p.topic, []).extend(p.all("subscription_identifier"))
    assert {t: sorted(ids) for t, ids in got.items()} == expect, got


def test_mqtt_3_10_4_2_no_new_messages_after_unsubscribe(broker):
    """[MQTT-3.10.4-2] Once the broker has an UNSUBSCRIBE it adds no new message matching
    the filter for the client, at any QoS."""
    b = broker()
    topic, other = unique("gone"), unique("kept")
    c = raw5(b.port)
    c.subscribe([(topic, 2), (other, 1)])
    pub = raw5(b.port)
    pub.publish_acked(topic, b"before", qos=1)
    assert c.receive_publishes(1)[0].payload == b"before"
    c.send(unsubscribe5(5, [topic]))
    assert c.expect(UNSUBACK, pid=5).codes == [0x00]
    pub.publish(topic, b"after-0")
    pub.publish_acked(topic, b"after-1", qos=1)
    pub.publish_acked(topic, b"after-2", qos=2)
    pub.publish_acked(other, b"sentinel", qos=1)
    got = c.receive_publishes(1)
    assert [(p.topic, p.payload) for p in got] == [(other, b"sentinel")], got
    c.expect_no_packet(0.3)


@pytest.mark.parametrize("shared", [False, True], ids=["plain", "shared"])
def test_mqtt_3_10_4_3_qos1_delivery_started_is_completed_after_unsubscribe(broker, shared):
    """[MQTT-3.10.4-3] A QoS 1 message sent to the client and not yet acknowledged when it
    unsubscribes is still delivered to it: resent (DUP) when its session resumes, also from a
    shared subscription another member has meanwhile joined."""
    b = broker()
    topic, cid = unique("inflight1"), unique("u1")
    filt = f"$share/g/{topic}" if shared else topic
    keep = [("session_expiry_interval", 30)]
    c = raw5(b.port, cid, props=keep)
    c.subscribe([(filt, 1)])
    pub = raw5(b.port)
    pub.publish_acked(topic, b"started", qos=1)
    p = c.expect_publish()
    if shared:  # joins once the message is on its way to `c`
        raw5(b.port).subscribe([(filt, 1)])
    c.send(unsubscribe5(5, [filt]))
    assert c.expect(UNSUBACK, pid=5).codes == [0x00]
    c.close()  # without PUBACK
    again = RawClient5(b.port)
    assert again.connect(cid, clean=False, props=keep).session_present == 1
    try:
        r = again.expect_publish(timeout=1.0)
    except AssertionError:
        raise AssertionError("the message whose delivery had started was not resent") from None
    assert (r.payload, r.pid, r.qos, r.dup) == (b"started", p.pid, 1, True), r
    again.send(ack5(PUBACK, r.pid))
    pub.publish_acked(topic, b"not any more", qos=1)
    again.expect_no_packet(0.3)


@pytest.mark.parametrize("shared", [False, True], ids=["plain", "shared"])
def test_mqtt_3_10_4_3_qos2_delivery_started_is_completed_after_unsubscribe(broker, shared):
    """[MQTT-3.10.4-3] A QoS 2 message sent to the client before it unsubscribes is
    completed: its PUBREC gets a PUBREL (not 0x92, packet identifier not found), and, on a
    shared subscription, no other member of the group gets the message as well."""
    b = broker()
    topic = unique("inflight2")
    filt = f"$share/g/{topic}" if shared else topic
    c = raw5(b.port)
    c.subscribe([(filt, 2)])
    pub = raw5(b.port)
    pub.publish_acked(topic, b"started", qos=2)
    p = c.expect_publish()
    assert p.qos == 2, p
    other = raw5(b.port)
    if shared:  # joins once the message is on its way to `c`
        other.subscribe([(filt, 2)])
    c.send(unsubscribe5(5, [filt]))
    assert c.expect(UNSUBACK, pid=5).codes == [0x00]
    c.send(ack5(PUBREC, p.pid))
    rel = c.expect(PUBREL, pid=p.pid)
    assert rel.rc < 0x80, f"delivery not completed: {rel!r}"
    c.send(ack5(PUBCOMP, p.pid))
    c.expect_no_packet(0.2)
    other.expect_no_packet(0.3)  # exactly once: nobody else gets it


def test_mqtt_3_10_4_4_every_unsubscribe_gets_an_unsuback(broker):
    """[MQTT-3.10.4-4] Each UNSUBSCRIBE is answered by an UNSUBACK, pipelined ones in the
    order sent, whatever their filters."""
    b = broker()
    base = unique("ua")
    c = raw5(b.port)
    c.subscribe([(base + "/a", 1), (f"$share/g/{base}", 1)])
    pids = [21, 22, 23, 24, 25]
    c.send(unsubscribe5(21, [base + "/a"]) + unsubscribe5(22, [base + "/a"]) +
           unsubscribe5(23, [base + "/+"]) + unsubscribe5(24, [f"$share/g/{base}"]) +
           unsubscribe5(25, [base + "/never", "#"]))
    acks = [c.expect(UNSUBACK) for _ in pids]
    assert [a.pid for a in acks] == pids, acks
    assert [a.codes for a in acks] == [[0x00], [0x11], [0x11], [0x00], [0x11, 0x11]], acks


def test_mqtt_3_10_4_5_unsuback_has_the_packet_identifier_even_when_nothing_is_deleted(broker):
    """[MQTT-3.10.4-5] The UNSUBACK has the UNSUBSCRIBE's Packet Identifier, and is sent
    also when no subscription was deleted."""
    b = broker()
    c = raw5(b.port)
    for pid in (1, 0x0100, 0xABCD, 65535):
        c.send(unsubscribe5(pid, [unique("never"), "never/+/x"]))
        ack = c.expect(UNSUBACK)
        assert (ack.pid, ack.codes) == (pid, [0x11, 0x11]), ack


def test_mqtt_3_10_4_6_several_filters_act_as_a_sequence_of_unsubscribes(broker):
    """[MQTT-3.10.4-6] An UNSUBSCRIBE with several filters is handled as that many
    UNSUBSCRIBEs in a row with a single UNSUBACK: a filter given twice is deleted, then not
    found."""
    b = broker()
    base = unique("useq")
    c = raw5(b.port)
    c.subscribe([(base + "/a", 1), (base + "/b", 1), (base + "/c", 1)])
    c.send(unsubscribe5(8, [base + "/a", base + "/a", base + "/b", base + "/never"]) +
           unsubscribe5(9, [base + "/zz"]))
    first = c.expect(UNSUBACK)
    assert (first.pid, first.codes) == (8, [0x00, 0x11, 0x00, 0x11]), first
    second = c.expect(UNSUBACK)  # the next UNSUBACK answers the next UNSUBSCRIBE
    assert second.pid == 9, second
    pub = raw5(b.port)
    for t in ("a", "b", "c"):
        pub.publish_acked(f"{base}/{t}", t.encode(), qos=1)
    assert [p.payload for p in c.receive_publishes(1)] == [b"c"]
    c.expect_no_packet(0.3)


# ---------------------------------------------------------------------------------------------
# 3.11 UNSUBACK
# ---------------------------------------------------------------------------------------------

def test_mqtt_3_11_2_1_and_2_unsuback_problem_properties_within_the_client_maximum(broker):
    """[MQTT-3.11.2-1] [MQTT-3.11.2-2] No Reason String or User Property takes an UNSUBACK
    past the client's Maximum Packet Size (Tern sends neither on UNSUBACK)."""
    b = broker()
    topic = unique("usz")
    c = raw5(b.port, props=[("maximum_packet_size", 12)])
    c.subscribe([(topic, 1)])
    for pid, filters in ((2, [topic]), (3, [topic]), (4, [topic + "/#", unique("n")])):
        c.send(unsubscribe5(pid, filters))
        ack = c.expect(UNSUBACK, pid=pid)
        assert no_problem_properties(ack) and wire_size(ack) <= 12, ack
    roomy = raw5(b.port)
    roomy.send(unsubscribe5(5, [unique("never")]))
    ack = roomy.expect(UNSUBACK, pid=5)
    assert ack.codes == [0x11] and no_problem_properties(ack), ack


def test_mqtt_3_11_3_1_unsuback_codes_in_filter_order(broker):
    """[MQTT-3.11.3-1] The UNSUBACK's Reason Codes are in the order of the UNSUBSCRIBE's
    filters."""
    b = broker()
    base = unique("uord")
    c = raw5(b.port)
    c.subscribe([(base + "/a", 1), (base + "/c", 0)])
    c.send(unsubscribe5(6, [base + "/x", base + "/a", base + "/y", base + "/c", base + "/a"]))
    assert c.expect(UNSUBACK, pid=6).codes == [0x11, 0x00, 0x11, 0x00, 0x11]


@refuses_bad_filters
def test_mqtt_3_11_3_2_unsuback_codes_come_from_table_3_9(broker):
    """[MQTT-3.11.3-2] Every Reason Code in an UNSUBACK is one of Table 3-9, for existing,
    missing, shared, invalid and $-filters alike."""
    b = broker()
    base = unique("utbl")
    c = raw5(b.port)
    c.subscribe([(base, 1), (f"$share/g/{base}", 1), (f"$SYS/{base}/#", 0)])
    filters = [base, base, f"$share/g/{base}", f"$SYS/{base}/#", BAD, "bad+", "$share//x",
               "#"]
    c.send(unsubscribe5(7, filters))
    ack = c.expect(UNSUBACK, pid=7)
    assert len(ack.codes) == len(filters), ack
    assert set(ack.codes) <= UNSUBACK_REASON_CODES, ack
    assert ack.codes == [0x00, 0x11, 0x00, 0x00] + [0x11] * 4, ack


# ---------------------------------------------------------------------------------------------
# 3.12 PINGREQ
# ---------------------------------------------------------------------------------------------

def test_mqtt_3_12_4_1_pingreq_gets_pingresp(broker):
    """[MQTT-3.12.4-1] Each PINGREQ is answered by a PINGRESP (0xD0 0x00): pipelined ones
    each, and also while the client's Receive Maximum is used up."""
    b = broker()
    topic = unique("ping")
    c = raw5(b.port, props=[("receive_maximum", 1)])
    c.send(packet(PINGREQ, 0) * 5)
    for _ in range(5):
        p = c.expect(PINGRESP)
        assert (p.flags, p.body) == (0, b""), p
    c.subscribe([(topic, 1)])
    pub = raw5(b.port)
    for i in range(3):
        pub.publish_acked(topic, str(i).encode(), qos=1)
    c.expect_publish()  # not acknowledged: the send quota is 0
    c.send(packet(PINGREQ, 0))
    p = c.expect(PINGRESP)
    assert (p.flags, p.body) == (0, b""), p


# ---------------------------------------------------------------------------------------------
# 3.14 DISCONNECT
# ---------------------------------------------------------------------------------------------

@tern_only
def test_mqtt_3_14_0_1_no_disconnect_before_a_successful_connack(broker, tmp_path):
    """[MQTT-3.14.0-1] Until it has sent a CONNACK below 0x80 the broker sends no DISCONNECT:
    errors during the authentication exchange, after a refused CONNECT and before any
    CONNECT end in a CONNACK refusal or a bare close."""
    b = scram_broker(broker, tmp_path)
    cases = {}
    c, s, a = scram_connect(b.port)  # a packet other than AUTH during the exchange
    c.send(publish5("t", b"x"))
    cases["publish during AUTH"] = c.wait_closed()
    c, s, a = scram_connect(b.port)  # the exchange fails
    c.send(auth5(0x18, [("authentication_method", SCRAM),
                        ("authentication_data", "c=biws,r=x,p=AAAA")]))
    cases["bad proof"] = c.wait_closed()
    c, s, a = scram_connect(b.port)  # AUTH with a reason code the exchange does not expect
    c.send(auth5(0x19, [("authentication_method", SCRAM)]))
    cases["AUTH 0x19 during the exchange"] = c.wait_closed()
    c = RawClient5(b.port)  # refused CONNECT, then a protocol error and a malformed packet
    c.send(connect5(unique("r"), props=[("authentication_method", "X-NONE")]) +
           connect5(unique("r")) + packet(PINGREQ, 0x01))
    cases["refused CONNECT"] = c.wait_closed()
    c = RawClient5(b.port)  # no CONNECT at all
    c.send(subscribe5(1, [("t", 1)]))
    cases["SUBSCRIBE first"] = c.wait_closed()
    for what, seen in cases.items():
        assert all(p.type == CONNACK and p.rc >= 0x80 for p in seen) and len(seen) <= 1, \
            (what, seen)
        assert DISCONNECT not in [p.type for p in seen], (what, seen)


def test_mqtt_3_14_1_1_disconnect_reserved_flags_get_disconnect_0x81(broker):
    """[MQTT-3.14.1-1] The broker checks the reserved DISCONNECT flags: any set bit gets
    DISCONNECT 0x81 (Malformed Packet). It is no normal disconnection: the will goes out."""
    b = broker()
    topic = unique("dflags")
    watcher = raw5(b.port)
    watcher.subscribe([(topic, 1)])
    for flags in (0x01, 0x02, 0x04, 0x08, 0x0F):
        c = raw5(b.port, will=will(topic, payload=bytes([flags])))
        c.send(bytes([(DISCONNECT << 4) | flags, 0x01, 0x00]))
        c.expect_disconnect(MALFORMED)
        assert watcher.receive_publishes(1)[0].payload == bytes([flags])


def broker_disconnects(b, props=()):
    """Provokes DISCONNECTs from the broker, on connections with CONNECT properties `props`;
    returns {case: DISCONNECT packet}."""
    out = {}

    def one(what, data, cid=None):
        c = raw5(b.port, cid, props=list(props))
        c.send(data)
        seen = c.wait_closed()
        kinds = [p.type for p in seen]
        assert kinds.count(DISCONNECT) == 1 and kinds[-1] == DISCONNECT, (what, seen)
        out[what] = seen[-1]

    one("AUTH without an authentication method", auth5(0x19, [("authentication_method", "X")]))
    one("second CONNECT", connect5(unique("again")))
    one("ill-formed UTF-8 topic", publish5(b"a/\xff", b"x"))
    one("packet too large", bytes([PUBLISH << 4]) + varint(5000) + mqtt_string("t"))
    one("topic alias 0", publish5(unique("ta"), b"x", props=[("topic_alias", 0)]))
    one("topic alias out of range", publish5(unique("ta"), b"x", props=[("topic_alias", 9999)]))
    one("QoS 2 beyond the broker's Receive Maximum",
        b"".join(publish5("rm", b"x", qos=2, pid=i) for i in range(1, 4)))
    cid = unique("taken")
    old = raw5(b.port, cid, props=list(props))
    raw5(b.port, cid)
    seen = old.wait_closed()
    assert [p.type for p in seen] == [DISCONNECT], seen
    out["session taken over"] = seen[0]
    return out


def test_mqtt_3_14_2_1_and_2_broker_disconnects_use_table_3_10_without_session_expiry(broker):
    """[MQTT-3.14.2-1] The broker's DISCONNECT reason codes are ones Table 3-10 lets a Server
    send. [MQTT-3.14.2-2] No DISCONNECT from the broker carries a Session Expiry Interval
    (also not for a client whose session has one, nor at shutdown)."""
    b = broker(mqtt={"max_packet_size": 1024}, session={"max_awaiting_rel": 2})
    got = broker_disconnects(b, props=[("session_expiry_interval", 60)])
    shut = raw5(b.port, props=[("session_expiry_interval", 60)])
    b.stop()
    seen = shut.wait_closed()
    assert [p.type for p in seen] == [DISCONNECT], seen
    got["shutdown"] = seen[0]
    codes = {what: p.rc for what, p in got.items()}
    assert {w: rc for w, rc in codes.items() if rc not in SERVER_DISCONNECT_CODES} == {}, codes
    assert codes["session taken over"] == 0x8E and codes["ill-formed UTF-8 topic"] == 0x81
    assert {w: p for w, p in got.items() if p.prop("session_expiry_interval") is not None} == {}


def test_mqtt_3_14_2_3_and_4_disconnect_problem_properties_within_the_client_maximum(broker):
    """[MQTT-3.14.2-3] [MQTT-3.14.2-4] A DISCONNECT from the broker leaves out its Reason
    String and User Properties where they would take it past the client's Maximum Packet
    Size (with room, Tern sends the Reason String)."""
    b = broker(mqtt={"max_packet_size": 1024}, session={"max_awaiting_rel": 2})
    small = broker_disconnects(b, props=[("maximum_packet_size", 8)])
    assert {w: (p, wire_size(p)) for w, p in small.items()
            if wire_size(p) > 8 or not no_problem_properties(p)} == {}
    if not is_mosquitto():
        roomy = broker_disconnects(b, props=[("maximum_packet_size", 2000)])
        why = roomy["AUTH without an authentication method"].prop("reason_string")
        assert why and wire_size(roomy["AUTH without an authentication method"]) > 8, roomy


def flood(port, topic, stop, size=200):
    """Publishes QoS 0 messages to `topic` until `stop` is set."""
    pub = raw5(port)
    batch = publish5(topic, b"f" * size) * 50
    try:
        while not stop.is_set():
            pub.send(batch)
    except (ConnectionClosed, OSError):
        pass
    finally:
        pub.close()


def test_mqtt_3_14_4_1_nothing_after_the_broker_disconnect(broker):
    """[MQTT-3.14.4-1] After its DISCONNECT the broker sends nothing more on the connection,
    while messages keep coming for it: DISCONNECT 0x81 for a malformed packet, 0x82 for a
    protocol error, 0x8E on takeover. Many rounds: a PUBLISH slipping in between the
    DISCONNECT and the close is a race, seen in a few percent of them."""
    b = broker()
    topic = unique("flood")
    stop = threading.Event()
    feeders = [threading.Thread(target=flood, args=(b.port, topic, stop), daemon=True)
               for _ in range(2)]
    for f in feeders:
        f.start()
    cases = (("malformed", publish5(b"a/\xff", b"x")),
             ("protocol error", auth5(0x19, [("authentication_method", "X")])),
             ("takeover", None))
    try:
        for attempt in range(150):
            for case, data in cases:
                cid = unique("nd")
                c = raw5(b.port, cid)
                c.subscribe([(topic, 0)])
                c.expect_publish()  # the flood reaches it
                if data is None:
                    raw5(b.port, cid).close()
                else:
                    c.send(data)
                seen = c.wait_closed()
                c.close()
                kinds = [p.type for p in seen]
                assert DISCONNECT in kinds, (attempt, case, seen[-3:])
                after = seen[kinds.index(DISCONNECT) + 1:]
                assert after == [], \
                    f"round {attempt}, {case}: {len(after)} packets after the DISCONNECT: {after[:2]}"
    finally:
        stop.set()
        for f in feeders:
            f.join(5)


def test_mqtt_3_14_4_2_broker_closes_after_its_disconnect(broker):
    """[MQTT-3.14.4-2] After its DISCONNECT the broker closes the connection (the client,
    which keeps its side open, reads the end of the stream at once), and what the client
    sent after the offending packet is not processed."""
    b = broker()
    topic = unique("after")
    watcher = raw5(b.port)
    watcher.subscribe([(topic, 1)])
    for bad in (auth5(0x19, [("authentication_method", "X")]), publish5(b"a/\xff", b"x"),
                packet(PINGREQ, 0x01)):
        c = raw5(b.port)
        c.send(bad + publish5(topic, b"must not be routed", qos=1, pid=7))
        p = c.expect(DISCONNECT)
        assert p.rc in (MALFORMED, PROTOCOL_ERROR), p
        t0 = time.monotonic()
        assert c.wait_closed(timeout=1.0) == []  # no PUBACK either
        assert time.monotonic() - t0 < 1.0
    watcher.expect_no_packet(0.3)


@pytest.mark.parametrize("data", [packet(DISCONNECT, 0), packet(DISCONNECT, 0, b"\x00"),
                                  disconnect5(0x00, [("reason_string", "bye"),
                                                     ("user_property", ("k", "v"))])],
                         ids=["remaining-length-0", "reason-0", "reason-0-with-properties"])
def test_mqtt_3_14_4_3_disconnect_0x00_discards_the_will(broker, data):
    """[MQTT-3.14.4-3] DISCONNECT 0x00, in each of its encodings, discards the will without
    publishing it, also a delayed will of a session that outlives the connection. A
    connection that just closes publishes its will (the watcher works)."""
    b = broker()
    topic = unique("wd")
    watcher = raw5(b.port)
    watcher.subscribe([(topic, 1)])
    now = raw5(b.port, will=will(topic, b"now"))
    later = raw5(b.port, props=[("session_expiry_interval", 2)],
                 will=will(topic, b"later", props=[("will_delay_interval", 1)]))
    for c in (now, later):
        c.send(data)
        assert c.wait_closed() == []
    watcher.expect_no_packet(1.3)  # past the will delay
    control = raw5(b.port, will=will(topic, b"control"))
    control.close()
    assert watcher.receive_publishes(1)[0].payload == b"control"


# ---------------------------------------------------------------------------------------------
# 3.15 AUTH
# ---------------------------------------------------------------------------------------------

def test_mqtt_3_15_1_1_auth_reserved_flags_are_malformed(broker):
    """[MQTT-3.15.1-1] An AUTH whose fixed header flags are not 0000 is malformed: DISCONNECT
    0x81 (not the 0x82 the same AUTH with flags 0 gets), and the close."""
    b = broker()
    body = bytes([0x19]) + encode_props([("authentication_method", "X")])
    for flags in (0x01, 0x02, 0x04, 0x08, 0x0F):
        c = raw5(b.port)
        c.send(bytes([(AUTH << 4) | flags]) + varint(len(body)) + body)
        c.expect_disconnect(MALFORMED)
    c = raw5(b.port)
    c.send(packet(AUTH, 0, body))
    c.expect_disconnect(PROTOCOL_ERROR)


@tern_only
def test_mqtt_3_15_1_1_auth_reserved_flags_during_the_exchange_are_malformed(broker, tmp_path):
    """[MQTT-3.15.1-1] During the authentication exchange too, an AUTH with flags set is
    malformed: the connection is closed without a successful CONNACK."""
    b = scram_broker(broker, tmp_path)
    for flags in (0x01, 0x02, 0x08):
        c, s, a = scram_connect(b.port)
        body = bytes([0x18]) + encode_props([
            ("authentication_method", SCRAM),
            ("authentication_data", s.final(a.prop("authentication_data").decode()))])
        c.send(bytes([(AUTH << 4) | flags]) + varint(len(body)) + body)
        seen = c.wait_closed()
        assert all(p.type == CONNACK and p.rc >= 0x80 for p in seen), (flags, seen)


@tern_only
def test_mqtt_3_15_2_1_broker_auth_uses_authenticate_reason_codes(broker, tmp_path):
    """[MQTT-3.15.2-1] The AUTH packets the broker sends carry an Authenticate Reason Code a
    Server may send: 0x18 (continue authentication) with the client's method."""
    b = scram_broker(broker, tmp_path)
    c, s, a = scram_connect(b.port)
    assert a.rc in SERVER_AUTH_CODES and a.rc == 0x18, a
    assert a.prop("authentication_method") == SCRAM, a
    assert a.flags == 0, a
    c.send(auth5(0x18, [("authentication_method", SCRAM),
                        ("authentication_data", s.final(a.prop("authentication_data").decode()))]))
    ack = c.expect(CONNACK)
    assert ack.rc == 0, ack


@tern_only
def test_mqtt_3_15_2_2_and_3_auth_problem_properties_within_the_client_maximum(broker, tmp_path):
    """[MQTT-3.15.2-2] [MQTT-3.15.2-3] No Reason String or User Property takes the broker's
    AUTH past the client's Maximum Packet Size (Tern sends neither on AUTH)."""
    b = scram_broker(broker, tmp_path)
    c, s, a = scram_connect(b.port)
    size = wire_size(a)
    assert no_problem_properties(a), a
    c, s, a = scram_connect(b.port, max_packet_size=size)  # just room for the AUTH itself
    assert no_problem_properties(a) and wire_size(a) <= size, a
    c.send(auth5(0x18, [("authentication_method", SCRAM),
                        ("authentication_data", s.final(a.prop("authentication_data").decode()))]))
    assert c.expect(CONNACK).rc == 0
