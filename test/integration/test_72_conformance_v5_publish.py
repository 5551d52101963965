# MQTT 5.0 conformance, 3.3 PUBLISH, 3.4 PUBACK, 3.5 PUBREC, 3.6 PUBREL and 3.7 PUBCOMP: one
# test per server-side normative statement that no other test checks. Each test is named after
# its statement and quotes the id in its docstring; docs/conformance.md maps every
# statement of these sections to the test that checks it.
#
# Packets are hand-built (mqtt5.RawClient5) so that flags, packet identifiers, properties and
# sizes on the wire are exactly what the test says.

import struct

import pytest

from helpers import (PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, SUBACK, UNSUBACK, is_mosquitto,
                     mqtt_string, packet, unique)
from mqtt5 import RawClient5, ack5, publish5, raw5, subscribe5, unsubscribe5, wire_size

MALFORMED, PROTOCOL_ERROR = 0x81, 0x82

# The reason code tables of 3.4.2.1, 3.5.2.1, 3.6.2.1 and 3.7.2.1.
PUBACK_CODES = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99}
PUBREC_CODES = PUBACK_CODES
PUBREL_CODES = {0x00, 0x92}
PUBCOMP_CODES = {0x00, 0x92}

# A client Maximum Packet Size that the CONNACK (24 bytes with Tern's properties) just fits:
# any Reason String or User Property would have to be dropped from an acknowledgement.
SMALL = 24

tern_only = pytest.mark.skipif(is_mosquitto(), reason="checks Tern's own choices")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def persistent(port, cid, clean=True, **kw):
    """A connected client whose session outlives the connection (60 s)."""
    props = [("session_expiry_interval", 60)] + kw.pop("props", [])
    return raw5(port, cid, clean=clean, props=props, **kw)


def resume(port, cid, **kw):
    """Reconnects `cid` with Clean Start 0; its session must still be there."""
    props = [("session_expiry_interval", 60)] + kw.pop("props", [])
    c = RawClient5(port)
    ack = c.connect(cid, clean=False, props=props, **kw)
    assert ack.rc == 0 and ack.session_present == 1, ack
    return c


def read_all(c, quiet=0.4):
    """Every packet the broker sends until it is quiet for `quiet` seconds."""
    got = []
    while True:
        try:
            got.append(c.read_packet(quiet))
        except TimeoutError:
            return got


def matches(filt, topic):
    """Topic filter matching of 4.7 ($share/<group>/ stripped)."""
    if filt.startswith("$share/"):
        filt = filt.split("/", 2)[2]
    f, t = filt.split("/"), topic.split("/")
    if topic.startswith("$") and f[0] in ("+", "#"):
        return False
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)


def no_problem_properties(p):
    return p.prop("reason_string") is None and not p.all("user_property")


# ---------------------------------------------------------------------------------------------
# 3.3.1 PUBLISH fixed header
# ---------------------------------------------------------------------------------------------

def test_mqtt_3_3_1_1_redelivery_has_dup_set(broker):
    """[MQTT-3.3.1-1] A PUBLISH the broker sends again (on session resumption) has DUP 1 and
    its first packet identifier; the first attempt had DUP 0. A PUBREL sent again is not a
    PUBLISH and keeps its flags 0010."""
    b = broker()
    cid, base = unique("dup"), unique("dupt")
    sub = persistent(b.port, cid)
    sub.subscribe([(base + "/1", 1), (base + "/2", 2)])
    pub = raw5(b.port)
    pub.publish_acked(base + "/1", b"one", qos=1)
    pub.publish_acked(base + "/2", b"two", qos=2)
    pub.publish_acked(base + "/2", b"released", qos=2)
    first = {p.payload: p for p in (sub.expect_publish() for _ in range(3))}
    assert [p.dup for p in first.values()] == [False] * 3, first
    sub.send(ack5(PUBREC, first[b"released"].pid))  # only this one gets as far as PUBREL
    assert sub.expect(PUBREL).pid == first[b"released"].pid
    sub.close()
    again = resume(b.port, cid)
    got = read_all(again)
    publishes = {p.payload: p for p in got if p.type == PUBLISH}
    assert sorted(publishes) == [b"one", b"two"], got
    for payload, p in publishes.items():
        assert p.dup is True and p.pid == first[payload].pid and p.qos == first[payload].qos, p
    rels = [p for p in got if p.type == PUBREL]
    assert [(r.pid, r.flags) for r in rels] == [(first[b"released"].pid, 0x02)], got
    again.send(ack5(PUBACK, publishes[b"one"].pid) + ack5(PUBREC, publishes[b"two"].pid) +
               ack5(PUBCOMP, rels[0].pid))
    assert again.expect(PUBREL).pid == publishes[b"two"].pid
    again.send(ack5(PUBCOMP, publishes[b"two"].pid))
    again.ping()


def test_mqtt_3_3_1_2_qos0_messages_have_dup_0(broker):
    """[MQTT-3.3.1-2] Every QoS 0 PUBLISH the broker sends has DUP 0: a message published with
    DUP 1 and granted QoS 0, and QoS 0 messages queued for a session and delivered on its
    resumption next to QoS 1 ones that are resent with DUP 1. A client's QoS 0 PUBLISH with
    DUP 1 breaks the rule: Tern takes it as a Malformed Packet (DISCONNECT 0x81)."""
    b = broker()
    cid, base = unique("dup0"), unique("dup0t")
    live = raw5(b.port)
    live.subscribe([(base + "/live", 0)])
    pub = raw5(b.port)
    pub.publish(base + "/live", b"resent by its publisher", qos=1, pid=9, dup=True)
    pub.expect_ack(PUBACK, 9)
    p = live.expect_publish()
    assert (p.qos, p.dup, p.flags) == (0, False, 0x00), p
    sub = persistent(b.port, cid)
    sub.subscribe([(base + "/q1", 1), (base + "/q0", 0)])
    pub.publish_acked(base + "/q1", b"unacked", qos=1)
    assert sub.expect_publish().dup is False
    sub.disconnect()  # no PUBACK: the QoS 1 message stays in flight
    for i in range(3):
        pub.publish(base + "/q0", f"queued {i}".encode())  # queued for the session
    pub.ping()
    again = resume(b.port, cid)
    got = again.receive_publishes(4)
    assert [(p.payload, p.qos, p.dup) for p in got] == [
        (b"unacked", 1, True), (b"queued 0", 0, False), (b"queued 1", 0, False),
        (b"queued 2", 0, False)], got
    if not is_mosquitto():
        bad = raw5(b.port)
        bad.send(publish5(base + "/live", b"x", qos=0, dup=True))
        bad.expect_disconnect(MALFORMED)
        live.expect_no_packet(0.3)


def test_mqtt_3_3_1_3_outgoing_dup_does_not_follow_the_incoming_one(broker):
    """[MQTT-3.3.1-3] The DUP flag of a PUBLISH the broker forwards says only whether that
    PUBLISH is a retransmission: messages received with DUP 1 go out with DUP 0."""
    b = broker()
    topic = unique("dupin")
    sub = raw5(b.port)
    sub.subscribe([(topic, 2)])
    pub = raw5(b.port)
    pub.publish(topic, b"q1", qos=1, pid=3, dup=True)
    pub.expect_ack(PUBACK, 3)
    pub.publish(topic, b"q2", qos=2, pid=4, dup=True)
    pub.expect_ack(PUBREC, 4)
    pub.send(ack5(PUBREL, 4))
    pub.expect_ack(PUBCOMP, 4)
    got = sub.receive_publishes(2)
    assert [(p.payload, p.qos, p.dup) for p in got] == [(b"q1", 1, False), (b"q2", 2, False)]


@pytest.mark.parametrize("flags", [0x06, 0x07, 0x0E, 0x0F], ids=["qos3", "qos3-retain",
                                                                 "qos3-dup", "qos3-dup-retain"])
def test_mqtt_3_3_1_4_qos_3_is_a_malformed_packet(broker, flags):
    """[MQTT-3.3.1-4] A PUBLISH with both QoS bits set is a Malformed Packet: DISCONNECT 0x81,
    and the message goes nowhere."""
    b = broker()
    topic = unique("qos3")
    sub = raw5(b.port)
    sub.subscribe([(topic, 2)])
    c = raw5(b.port)
    c.send(packet(PUBLISH, flags, mqtt_string(topic) + b"\x00\x01" + b"\x00" + b"x"))
    c.expect_disconnect(MALFORMED)
    sub.expect_no_packet(0.3)


def test_mqtt_3_3_1_5_retained_message_is_replaced_and_keeps_its_qos(broker):
    """[MQTT-3.3.1-5] RETAIN 1: the message replaces the topic's retained message and is
    stored with its QoS (a later subscriber granted QoS 2 gets it at the QoS it was published
    with)."""
    b = broker()
    topic = unique("ret")
    pub = raw5(b.port)
    pub.publish_acked(topic, b"old", qos=2, retain=True)
    pub.publish_acked(topic, b"new", qos=1, retain=True,
                      props=[("content_type", "text/plain")])
    sub = raw5(b.port)
    sub.subscribe([(topic, 2)])
    got = sub.receive_publishes(1)
    assert [(p.payload, p.qos, p.retain, p.prop("content_type")) for p in got] == [
        (b"new", 1, True, "text/plain")], got
    sub.expect_no_packet(0.3)  # the old one is gone
    pub.publish(topic, b"newest", qos=0, retain=True)
    pub.ping()
    later = raw5(b.port)
    later.subscribe([(topic, 2)])
    got = later.receive_publishes(1)
    assert [(p.payload, p.qos, p.retain) for p in got] == [(b"newest", 0, True)], got


def test_mqtt_3_3_1_6_empty_retained_payload_is_forwarded_and_removes_the_message(broker):
    """[MQTT-3.3.1-6] A retained PUBLISH with an empty payload goes to the current subscribers
    like any other message, and removes the topic's retained message: later subscribers get
    none."""
    b = broker()
    root = unique("retdel")
    topic, marker = root + "/doomed", root + "/marker"
    live = raw5(b.port)
    live.subscribe([(topic, 1)])
    pub = raw5(b.port)
    pub.publish_acked(topic, b"doomed", retain=True)
    pub.publish_acked(topic, b"", retain=True)
    got = live.receive_publishes(2)
    assert [p.payload for p in got] == [b"doomed", b""], got
    pub.publish_acked(marker, b"marker", retain=True)
    later = raw5(b.port)
    later.subscribe([(root + "/+", 1)])
    got = later.receive_publishes(1)
    assert [p.topic for p in got] == [marker], got
    later.expect_no_packet(0.3)


def test_mqtt_3_3_1_7_empty_retained_message_is_not_stored(broker):
    """[MQTT-3.3.1-7] A zero-length retained message is never stored as a retained message,
    also on a topic that had none."""
    b = broker()
    root = unique("retempty")
    pub = raw5(b.port)
    pub.publish_acked(root + "/empty", b"", retain=True)
    pub.publish_acked(root + "/empty0", b"", qos=2, retain=True)
    pub.publish_acked(root + "/marker", b"m", retain=True)
    later = raw5(b.port)
    later.subscribe([(root + "/#", 1)])
    got = later.receive_publishes(1)
    assert [(p.topic, p.payload) for p in got] == [(root + "/marker", b"m")], got
    later.expect_no_packet(0.3)


def test_mqtt_3_3_1_8_retain_0_neither_stores_nor_replaces(broker):
    """[MQTT-3.3.1-8] RETAIN 0: the message is not stored as retained, and the topic's
    retained message is neither removed (by an empty payload) nor replaced."""
    b = broker()
    root = unique("ret0")
    kept, plain = root + "/kept", root + "/plain"
    pub = raw5(b.port)
    pub.publish_acked(kept, b"retained", retain=True)
    pub.publish_acked(kept, b"transient", qos=2)
    pub.publish_acked(kept, b"")
    pub.publish_acked(plain, b"never retained", qos=1)
    later = raw5(b.port)
    later.subscribe([(root + "/#", 1)])
    got = later.receive_publishes(1)
    assert [(p.topic, p.payload, p.retain) for p in got] == [(kept, b"retained", True)], got
    later.expect_no_packet(0.3)


# ---------------------------------------------------------------------------------------------
# 3.3.2 PUBLISH variable header
# ---------------------------------------------------------------------------------------------

BROKEN_TOPIC = {
    "no-body": packet(PUBLISH, 0x00, b""),
    "half-a-length": packet(PUBLISH, 0x00, b"\x00"),
    "length-past-the-end": packet(PUBLISH, 0x02, b"\x00\x05ab"),
}


@pytest.mark.parametrize("data", BROKEN_TOPIC.values(), ids=BROKEN_TOPIC.keys())
def test_mqtt_3_3_2_1_publish_without_a_topic_name_is_malformed(broker, data):
    """[MQTT-3.3.2-1] The Topic Name is the first field of the variable header: a PUBLISH
    that does not start with a whole UTF-8 string is a Malformed Packet (DISCONNECT 0x81)."""
    b = broker()
    c = raw5(b.port)
    c.send(data)
    c.expect_disconnect(MALFORMED)


def test_mqtt_3_3_2_1_empty_topic_without_an_alias_is_a_protocol_error(broker):
    """[MQTT-3.3.2-1] (3.3.2.1) A zero-length Topic Name with no Topic Alias names no topic:
    a Protocol Error (DISCONNECT 0x82)."""
    b = broker()
    c = raw5(b.port)
    c.send(publish5("", b"x", qos=1, pid=1))
    c.expect_disconnect(PROTOCOL_ERROR)


@pytest.mark.parametrize("topic,qos", [("a/+", 0), ("a/#", 1), ("+", 1), ("#", 0),
                                       ("a/b+c", 1), ("a#", 0)])
def test_mqtt_3_3_2_2_wildcards_in_a_topic_name_get_0x90(broker, topic, qos):
    """[MQTT-3.3.2-2] A Topic Name with a wildcard character: DISCONNECT 0x90 (Topic Name
    invalid), nothing is routed."""
    b = broker()
    sub = raw5(b.port)
    sub.subscribe([("#", 1)])
    c = raw5(b.port)
    c.send(publish5(topic, b"x", qos=qos, pid=1 if qos else None))
    c.expect_disconnect(0x90)
    sub.expect_no_packet(0.3)


@tern_only
def test_mqtt_3_3_2_3_delivered_topic_names_match_the_filters(broker):
    """[MQTT-3.3.2-3] Each PUBLISH the broker sends a subscriber has a Topic Name that matches
    one of its filters (plain, wildcard, shared), $local/ mapped to the bare topic included;
    topics no filter matches are not sent."""
    b = broker()
    base = unique("match")
    filters = [base + "/+/x", base + "/a/#", "$share/g/" + base + "/+", base + "/exact"]
    sub = raw5(b.port)
    assert sub.subscribe([(f, 1) for f in filters]).codes == [1, 1, 1, 1]
    topics = [base + "/a/x", base + "/b/x", base + "/a", base + "/a/b/c", base + "/exact",
              base + "/zz/y/x", base + "/q", base + "x/a/x", base, base + "/b/x/y"]
    pub = raw5(b.port)
    for t in topics:
        pub.publish_acked(t, t.encode())
    pub.publish_acked("$local/" + base + "/local/x", b"local")
    # One copy per topic matching a plain filter, one more per matching shared filter.
    expected = sorted(
        [t for t in topics if any(matches(f, t) for f in filters if "$share" not in f)] +
        [t for t in topics if matches(filters[2], t)] + [base + "/local/x"])
    got = sub.receive_publishes(len(expected))
    sub.expect_no_packet(0.3)
    assert sorted(p.topic for p in got) == expected
    assert [p.topic for p in got if not any(matches(f, p.topic) for f in filters)] == []


MESSAGE_PROPS = [
    ("payload_format_indicator", 1),
    ("content_type", "application/json; charset=utf-8"),
    ("response_topic", "reply/\u00e9t\u00e9/\ufeff"),
    ("correlation_data", b"\x00\x01\xff corr \x00"),
    ("user_property", ("b", "2")),
    ("user_property", ("a", "1")),
    ("user_property", ("b", "3")),
    ("user_property", ("", "")),
    ("user_property", ("k\u00fc", "v \u2603")),
]


def assert_unaltered(p, payload, who):
    assert p.payload == payload, (who, p)
    for name in ("payload_format_indicator", "content_type", "response_topic",
                 "correlation_data"):
        assert p.prop(name) == dict(MESSAGE_PROPS)[name], (who, name, p)
    assert p.all("user_property") == [v for n, v in MESSAGE_PROPS if n == "user_property"], \
        (who, p)


def test_mqtt_3_3_2_4_to_20_message_properties_reach_every_subscriber_unaltered(broker):
    """[MQTT-3.3.2-4] Payload Format Indicator, [MQTT-3.3.2-15] Response Topic,
    [MQTT-3.3.2-16] Correlation Data, [MQTT-3.3.2-17] User Properties, [MQTT-3.3.2-18] in
    their order, [MQTT-3.3.2-20] Content Type: unaltered for every subscriber, live at QoS 0
    and 1, queued for an offline session across a broker restart, and retained."""
    b = broker()
    base, cid = unique("props"), unique("propsoff")
    topic = base + "/t"
    payload = '{"\u00e9": 1}'.encode()
    offline = persistent(b.port, cid)
    offline.subscribe([(topic, 2)])
    offline.disconnect()
    live1 = raw5(b.port)
    live1.subscribe([(topic, 1)])
    live0 = raw5(b.port)
    live0.subscribe([(base + "/#", 0)])
    pub = raw5(b.port)
    pub.publish_acked(topic, payload, qos=2, retain=True, props=MESSAGE_PROPS)
    assert_unaltered(live1.receive_publishes(1)[0], payload, "live QoS 1")
    assert_unaltered(live0.receive_publishes(1)[0], payload, "live QoS 0")
    b.restart()
    assert_unaltered(resume(b.port, cid).receive_publishes(1)[0], payload, "queued")
    late = raw5(b.port)
    late.subscribe([(topic, 1)])
    assert_unaltered(late.receive_publishes(1)[0], payload, "retained")


def test_mqtt_3_3_2_5_expired_message_waiting_for_the_window_is_not_sent(broker):
    """[MQTT-3.3.2-5] A message whose expiry passes while it waits for the connected
    subscriber's Receive Maximum window is deleted, never sent; the next one is."""
    b = broker()
    topic = unique("expwin")
    sub = raw5(b.port, props=[("receive_maximum", 1)])
    sub.subscribe([(topic, 1)])
    pub = raw5(b.port)
    pub.publish_acked(topic, b"first")
    first = sub.expect_publish()
    pub.publish_acked(topic, b"short", props=[("message_expiry_interval", 1)])
    pub.publish_acked(topic, b"long", props=[("message_expiry_interval", 60)])
    sub.expect_no_packet(1.3)  # the window is full; "short" expires meanwhile
    sub.send(ack5(PUBACK, first.pid))
    got = sub.receive_publishes(1)
    assert [p.payload for p in got] == [b"long"], got
    sub.expect_no_packet(0.3)


def test_mqtt_3_3_2_6_expiry_interval_is_reduced_by_the_time_waited(broker):
    """[MQTT-3.3.2-6] The Message Expiry Interval sent is the one received minus the time the
    message waited in the broker: about the same for a live delivery, a second less after a
    second in the queue. A message without one gets none."""
    b = broker()
    topic = unique("expleft")
    sub = raw5(b.port, props=[("receive_maximum", 1)])
    sub.subscribe([(topic, 1)])
    pub = raw5(b.port)
    pub.publish_acked(topic, b"live", props=[("message_expiry_interval", 30)])
    live = sub.expect_publish()
    assert 29 <= live.prop("message_expiry_interval") <= 30, live
    pub.publish_acked(topic, b"waited", props=[("message_expiry_interval", 30)])
    pub.publish_acked(topic, b"forever")
    sub.expect_no_packet(1.2)
    sub.send(ack5(PUBACK, live.pid))
    waited = sub.expect_publish()
    assert waited.payload == b"waited" and 28 <= waited.prop("message_expiry_interval") <= 29, \
        waited
    sub.send(ack5(PUBACK, waited.pid))
    forever = sub.expect_publish()
    assert forever.payload == b"forever" and forever.prop("message_expiry_interval") is None


def test_mqtt_3_3_2_7_topic_aliases_end_with_the_connection(broker):
    """[MQTT-3.3.2-7] No Topic Alias mapping survives its connection, even when the session
    does: an alias the client defined is unknown on its next connection (DISCONNECT 0x82),
    and the broker's first PUBLISH on a new connection names its topic again."""
    b = broker()
    topic = unique("alias")
    watcher = raw5(b.port)
    watcher.subscribe([(topic, 1)])
    cid = unique("aliaspub")
    pub = persistent(b.port, cid)
    pub.publish_acked(topic, b"defines", props=[("topic_alias", 1)])
    pub.publish_acked("", b"uses", props=[("topic_alias", 1)])
    assert [p.payload for p in watcher.receive_publishes(2)] == [b"defines", b"uses"]
    pub.disconnect()
    pub = resume(b.port, cid)
    pub.send(publish5("", b"must not resolve", qos=1, pid=7, props=[("topic_alias", 1)]))
    pub.expect_disconnect(PROTOCOL_ERROR)
    watcher.expect_no_packet(0.3)
    # The broker as sender.
    scid = unique("aliassub")
    sub = persistent(b.port, scid, props=[("topic_alias_maximum", 4)])
    sub.subscribe([(topic, 0)])
    sender = raw5(b.port)
    sender.publish_acked(topic, b"1")
    sender.publish_acked(topic, b"2")
    got = [sub.expect_publish(), sub.expect_publish()]
    assert [(p.topic, p.prop("topic_alias")) for p in got] == [(topic, 1), ("", 1)], got
    sub.disconnect()
    sub = resume(b.port, scid, props=[("topic_alias_maximum", 4)])
    sender.publish_acked(topic, b"3")
    p = sub.expect_publish()
    assert (p.topic, p.payload) == (topic, b"3"), p


def test_mqtt_3_3_2_11_outbound_aliases_stay_within_the_client_maximum(broker):
    """[MQTT-3.3.2-11] [MQTT-3.3.2-8] The broker's Topic Aliases are 1 to the client's Topic
    Alias Maximum (2 here), never 0, and each PUBLISH resolves to its topic."""
    b = broker()
    base = unique("amax")
    sub = raw5(b.port, props=[("topic_alias_maximum", 2)])
    sub.subscribe([(base + "/#", 0)])
    order = [0, 1, 2, 0, 3, 1, 4, 0, 2, 1, 0]
    sent = [f"{base}/t{i}" for i in order]
    pub = raw5(b.port)
    for t in sent:
        pub.publish_acked(t, t.encode())
    got = [sub.expect_publish() for _ in sent]
    aliases = {p.prop("topic_alias") for p in got} - {None}
    assert aliases and aliases <= {1, 2}, got
    known, resolved = {}, []
    for p in got:
        alias = p.prop("topic_alias")
        if p.topic:
            if alias is not None:
                known[alias] = p.topic
            resolved.append(p.topic)
        else:
            assert alias in known, f"empty topic with an undefined alias: {p}"
            resolved.append(known[alias])
    assert resolved == sent
    assert [p.payload.decode() for p in got] == sent


def test_mqtt_3_3_2_12_every_alias_up_to_the_maximum_is_accepted(broker):
    """[MQTT-3.3.2-12] The broker accepts every Topic Alias from 1 to the Topic Alias Maximum
    of its CONNACK (4 here): defined, used, and redefined for another topic."""
    b = broker(mqtt5={"topic_alias_maximum": 4})
    base = unique("ain")
    sub = raw5(b.port)
    sub.subscribe([(base + "/#", 1)])
    pub = RawClient5(b.port)
    assert pub.connect_ok().prop("topic_alias_maximum") == 4
    expected = []
    for alias in range(1, 5):
        t = f"{base}/a{alias}"
        assert pub.publish_acked(t, b"define", props=[("topic_alias", alias)]).rc == 0
        expected.append((t, b"define"))
    for alias in range(4, 0, -1):
        assert pub.publish_acked("", b"use", props=[("topic_alias", alias)]).rc == 0
        expected.append((f"{base}/a{alias}", b"use"))
    assert pub.publish_acked(base + "/other", b"redefine", props=[("topic_alias", 2)]).rc == 0
    assert pub.publish_acked("", b"use", qos=2, props=[("topic_alias", 2)]).rc == 0
    expected += [(base + "/other", b"redefine"), (base + "/other", b"use")]
    got = sub.receive_publishes(len(expected))
    assert [(p.topic, p.payload) for p in got] == expected


def test_mqtt_3_3_2_13_response_topic_must_be_utf8(broker):
    """[MQTT-3.3.2-13] A Response Topic that is not a valid UTF-8 string makes the PUBLISH a
    Malformed Packet (DISCONNECT 0x81); it is not forwarded."""
    b = broker()
    topic = unique("rtu")
    sub = raw5(b.port)
    sub.subscribe([(topic, 1)])
    for bad in (b"r/\xff", b"r/\xed\xa0\x80", b"r/\x00"):
        c = raw5(b.port)
        c.send(publish5(topic, b"x", qos=1, pid=1, props=[("response_topic", bad)]))
        c.expect_disconnect(MALFORMED)
    sub.expect_no_packet(0.3)


@pytest.mark.parametrize("response_topic", ["reply/+", "a/+/#"])
def test_mqtt_3_3_2_14_no_publish_carries_a_wildcard_response_topic(broker, response_topic):
    """[MQTT-3.3.2-14] A Response Topic has no wildcard characters, in any PUBLISH: the broker
    may refuse a client's PUBLISH that has one (Protocol Error), but must not send it on to a
    subscriber unaltered ([MQTT-3.3.2-15]) as that would be a PUBLISH breaking the rule."""
    b = broker()
    topic = unique("rtw")
    sub = raw5(b.port)
    sub.subscribe([(topic, 1)])
    c = raw5(b.port)
    c.send(publish5(topic, b"x", qos=1, pid=1, props=[("response_topic", response_topic)]))
    try:
        p = sub.read_packet(0.5)
    except TimeoutError:
        return
    forwarded = p.type == PUBLISH and any(ch in (p.prop("response_topic") or "") for ch in "+#")
    assert not forwarded, f"forwarded a PUBLISH with a wildcard Response Topic: {p}"


def test_mqtt_3_3_2_19_content_type_must_be_utf8(broker):
    """[MQTT-3.3.2-19] A Content Type that is not a valid UTF-8 string makes the PUBLISH a
    Malformed Packet (DISCONNECT 0x81); it is not forwarded."""
    b = broker()
    topic = unique("ctu")
    sub = raw5(b.port)
    sub.subscribe([(topic, 1)])
    for bad in (b"text/\xc3\x28", b"text/\xed\xbf\xbf", b"\x00"):
        c = raw5(b.port)
        c.send(publish5(topic, b"x", qos=1, pid=1, props=[("content_type", bad)]))
        c.expect_disconnect(MALFORMED)
    sub.expect_no_packet(0.3)


# ---------------------------------------------------------------------------------------------
# 3.3.4 PUBLISH actions
# ---------------------------------------------------------------------------------------------

def test_mqtt_3_3_4_1_each_qos_gets_its_response(broker):
    """[MQTT-3.3.4-1] Table 3-4: QoS 0 gets no response, QoS 1 a PUBACK, QoS 2 a PUBREC (and
    the PUBREL a PUBCOMP); also for a message the broker does not route ($SYS, 0x87)."""
    b = broker()
    topic = unique("resp")
    sub = raw5(b.port)
    sub.subscribe([(topic, 2)])
    c = raw5(b.port)
    for t in (topic, "$SYS/x"):
        c.publish(t, b"0")
        c.ping()  # the next packet is the PINGRESP: nothing answered the QoS 0 PUBLISH
        c.publish(t, b"1", qos=1, pid=11)
        assert c.expect(PUBACK, pid=11).rc in PUBACK_CODES
        c.publish(t, b"2", qos=2, pid=12)
        rec = c.expect(PUBREC, pid=12)
        assert rec.rc in PUBREC_CODES
        if rec.rc < 0x80:
            c.send(ack5(PUBREL, 12))
            assert c.expect(PUBCOMP, pid=12).rc == 0
    got = sub.receive_publishes(3)
    assert [(p.payload, p.qos) for p in got] == [(b"0", 0), (b"1", 1), (b"2", 2)]


def test_mqtt_3_3_4_5_each_copy_carries_its_own_subscription_identifier(broker):
    """[MQTT-3.3.4-5] When the broker sends a client several copies of a message (its shared
    subscription's and its plain one's), each carries the identifier of the subscription it
    is sent for."""
    b = broker()
    topic = unique("sids")
    c = raw5(b.port)
    c.subscribe([(topic, 1)], props=[("subscription_identifier", 11)])
    c.subscribe([("$share/g/" + topic, 1)], props=[("subscription_identifier", 12)])
    pub = raw5(b.port)
    pub.publish_acked(topic, b"m")
    got = c.receive_publishes(2)
    assert sorted(p.all("subscription_identifier") for p in got) == [[11], [12]], got
    c.expect_no_packet(0.3)


def test_mqtt_3_3_4_6_subscription_identifier_from_a_client_is_a_protocol_error(broker):
    """[MQTT-3.3.4-6] (a Client requirement) A client's PUBLISH with a Subscription Identifier
    gets DISCONNECT 0x82 and is not routed."""
    b = broker()
    topic = unique("sidin")
    sub = raw5(b.port)
    sub.subscribe([(topic, 1)])
    for qos in (0, 1):
        c = raw5(b.port)
        c.send(publish5(topic, b"x", qos=qos, pid=1 if qos else None,
                        props=[("subscription_identifier", 5)]))
        c.expect_disconnect(PROTOCOL_ERROR)
    sub.expect_no_packet(0.3)


def test_mqtt_3_3_4_9_qos2_counts_until_pubcomp(broker):
    """[MQTT-3.3.4-9] A QoS 2 PUBLISH counts against the client's Receive Maximum until its
    PUBCOMP, not its PUBREC: with a window of 2, a third message waits for a PUBCOMP."""
    b = broker()
    topic = unique("rm2")
    sub = raw5(b.port, props=[("receive_maximum", 2)])
    sub.subscribe([(topic, 2)])
    pub = raw5(b.port)
    for i in range(4):
        pub.publish_acked(topic, str(i).encode(), qos=2)
    first = [sub.expect_publish(), sub.expect_publish()]
    sub.expect_no_packet(0.4)
    sub.send(ack5(PUBREC, first[0].pid))
    assert sub.expect(PUBREL).pid == first[0].pid
    sub.expect_no_packet(0.4)  # PUBREC'd, not yet PUBCOMP'd: still unacknowledged
    sub.send(ack5(PUBCOMP, first[0].pid))
    third = sub.expect_publish()
    assert (third.payload, third.qos) == (b"2", 2)
    sub.expect_no_packet(0.3)


def test_mqtt_3_3_4_9_resent_messages_respect_the_new_receive_maximum(broker):
    """[MQTT-3.3.4-9] Receive Maximum is per connection: a session resumed with a Receive
    Maximum of 2 and 5 unacknowledged messages gets at most 2 PUBLISHes at a time, the others
    as acknowledgements come."""
    b = broker()
    cid, topic = unique("rmre"), unique("rmret")
    sub = persistent(b.port, cid, props=[("receive_maximum", 5)])
    sub.subscribe([(topic, 1)])
    pub = raw5(b.port)
    for i in range(5):
        pub.publish_acked(topic, str(i).encode())
    assert [sub.expect_publish().payload for _ in range(5)] == [b"0", b"1", b"2", b"3", b"4"]
    sub.close()  # none acknowledged
    again = resume(b.port, cid, props=[("receive_maximum", 2)])
    burst = read_all(again)
    assert len(burst) <= 2, f"{len(burst)} unacknowledged PUBLISHes for a window of 2: {burst}"
    got, pending = [], list(burst)
    while len(got) < 5:
        p = pending.pop(0) if pending else again.expect_publish()
        got.append(p.payload)
        again.send(ack5(PUBACK, p.pid))
    assert got == [b"0", b"1", b"2", b"3", b"4"]


def test_mqtt_3_3_4_10_full_window_delays_only_publish(broker):
    """[MQTT-3.3.4-10] While the client's Receive Maximum window is full, the broker still
    sends every other packet at once: PINGRESP, SUBACK, UNSUBACK, PUBACK, PUBREC, PUBCOMP
    for the client's own messages and PUBREL for its own QoS 2 delivery."""
    b = broker()
    topic = unique("full")
    sub = raw5(b.port, props=[("receive_maximum", 1)])
    sub.subscribe([(topic, 2)])
    pub = raw5(b.port)
    for i in range(3):
        pub.publish_acked(topic, str(i).encode(), qos=2)
    first = sub.expect_publish()
    sub.ping()
    sub.send(subscribe5(40, [(unique("other"), 1)]))
    sub.expect(SUBACK, pid=40)
    sub.send(unsubscribe5(41, [unique("never")]))
    sub.expect(UNSUBACK, pid=41)
    sub.send(publish5(unique("nobody"), b"own", qos=1, pid=42))
    sub.expect(PUBACK, pid=42)
    sub.send(publish5(unique("nobody"), b"own", qos=2, pid=43))
    sub.expect(PUBREC, pid=43)
    sub.send(ack5(PUBREL, 43))
    sub.expect(PUBCOMP, pid=43)
    sub.send(ack5(PUBREC, first.pid))
    sub.expect(PUBREL, pid=first.pid)
    sub.expect_no_packet(0.3)  # the window is still full
    sub.send(ack5(PUBCOMP, first.pid))
    assert sub.expect_publish().payload == b"1"


# ---------------------------------------------------------------------------------------------
# 3.4 PUBACK, 3.5 PUBREC, 3.6 PUBREL, 3.7 PUBCOMP
# ---------------------------------------------------------------------------------------------

def outcomes(port, qos):
    """A client's QoS 1 or 2 PUBLISH in each case the broker acknowledges differently, as
    (case, PUBACK or PUBREC); QoS 2 exchanges are completed."""
    topic = unique("acks")
    sub = raw5(port)
    sub.subscribe([(topic, 2)])
    c = raw5(port)
    cases = {
        "routed": (topic, b"x", []),
        "no subscribers": (unique("nobody"), b"x", []),
        "$SYS": ("$SYS/x", b"x", []),
        "payload not UTF-8": (topic, b"\xff\xfe", [("payload_format_indicator", 1)]),
        "alias defined": (topic, b"x", [("topic_alias", 1)]),
        "alias used": ("", b"x", [("topic_alias", 1)]),
    }
    out = {}
    for what, (t, payload, props) in cases.items():
        pid = c.publish(t, payload, qos=qos, props=props)
        ack = c.expect(PUBACK if qos == 1 else PUBREC, pid=pid)
        out[what] = ack
        if qos == 2 and ack.rc < 0x80:
            c.send(ack5(PUBREL, pid))
            c.expect(PUBCOMP, pid=pid)
    return out


@tern_only
def test_mqtt_3_4_2_1_puback_reason_codes(broker):
    """[MQTT-3.4.2-1] Every PUBACK the broker sends has a reason code of the PUBACK table:
    0x00 routed, 0x10 no matching subscribers, 0x87 not authorized, 0x99 payload format
    invalid."""
    b = broker()
    codes = {what: ack.rc for what, ack in outcomes(b.port, 1).items()}
    assert {w: rc for w, rc in codes.items() if rc not in PUBACK_CODES} == {}, codes
    assert codes == {"routed": 0x00, "no subscribers": 0x10, "$SYS": 0x87,
                     "payload not UTF-8": 0x99, "alias defined": 0x00, "alias used": 0x00}


@tern_only
def test_mqtt_3_4_2_2_and_3_puback_fits_the_client_maximum_packet_size(broker):
    """[MQTT-3.4.2-2] [MQTT-3.4.2-3] No Reason String or User Property makes a PUBACK larger
    than the client's Maximum Packet Size: each PUBACK, success or failure, arrives within
    it (Tern sends neither property on PUBACK)."""
    b = broker()
    c = raw5(b.port, props=[("maximum_packet_size", SMALL)])
    acks = [c.publish_acked(t, b"\xff", props=props) for t, props in (
        (unique("n"), []), ("$SYS/x", []), (unique("n"), [("payload_format_indicator", 1)]))]
    assert [a.rc for a in acks] == [0x10, 0x87, 0x99]
    assert [(a, wire_size(a)) for a in acks if wire_size(a) > SMALL or
            not no_problem_properties(a)] == []


@tern_only
def test_mqtt_3_5_2_1_pubrec_reason_codes(broker):
    """[MQTT-3.5.2-1] Every PUBREC the broker sends has a reason code of the PUBREC table,
    also for a QoS 2 PUBLISH sent again with DUP before its PUBREL."""
    b = broker()
    codes = {what: ack.rc for what, ack in outcomes(b.port, 2).items()}
    assert {w: rc for w, rc in codes.items() if rc not in PUBREC_CODES} == {}, codes
    assert codes == {"routed": 0x00, "no subscribers": 0x10, "$SYS": 0x87,
                     "payload not UTF-8": 0x99, "alias defined": 0x00, "alias used": 0x00}
    c = raw5(b.port)
    t = unique("dup")
    c.publish(t, b"x", qos=2, pid=5)
    first = c.expect(PUBREC, pid=5)
    c.publish(t, b"x", qos=2, pid=5, dup=True)
    again = c.expect(PUBREC, pid=5)
    assert {first.rc, again.rc} <= PUBREC_CODES, (first, again)


@tern_only
def test_mqtt_3_5_2_2_and_3_pubrec_fits_the_client_maximum_packet_size(broker):
    """[MQTT-3.5.2-2] [MQTT-3.5.2-3] No Reason String or User Property makes a PUBREC larger
    than the client's Maximum Packet Size (Tern sends neither on PUBREC)."""
    b = broker()
    c = raw5(b.port, props=[("maximum_packet_size", SMALL)])
    recs = []
    for t, props in ((unique("n"), []), ("$SYS/x", []),
                     (unique("n"), [("payload_format_indicator", 1)])):
        pid = c.publish(t, b"\xff", qos=2, props=props)
        recs.append(c.expect(PUBREC, pid=pid))
    assert [r.rc for r in recs] == [0x10, 0x87, 0x99]
    assert [(r, wire_size(r)) for r in recs if wire_size(r) > SMALL or
            not no_problem_properties(r)] == []


def test_mqtt_3_6_2_1_broker_pubrel_reason_code_is_success(broker):
    """[MQTT-3.6.2-1] The PUBREL the broker sends (after the subscriber's PUBREC, and again on
    session resumption) has a reason code of the PUBREL table: 0x00, written in full or in
    the short form of Remaining Length 2."""
    b = broker()
    cid, topic = unique("rel"), unique("relt")
    sub = persistent(b.port, cid)
    sub.subscribe([(topic, 2)])
    pub = raw5(b.port)
    pub.publish_acked(topic, b"x", qos=2)
    p = sub.expect_publish()
    sub.send(ack5(PUBREC, p.pid))
    rels = [sub.expect(PUBREL, pid=p.pid)]
    sub.close()
    again = resume(b.port, cid)
    rels.append(again.expect(PUBREL, pid=p.pid))
    for rel in rels:
        assert rel.body[:2] == struct.pack("!H", p.pid), rel
        assert len(rel.body) == 2 or rel.body[2] == 0x00, rel
        assert rel.rc in PUBREL_CODES and rel.rc == 0x00, rel
    again.send(ack5(PUBCOMP, p.pid))
    again.ping()


@tern_only
def test_mqtt_3_6_2_2_and_3_pubrel_fits_the_client_maximum_packet_size(broker):
    """[MQTT-3.6.2-2] [MQTT-3.6.2-3] No Reason String or User Property makes the broker's
    PUBREL larger than the client's Maximum Packet Size (Tern sends neither on PUBREL)."""
    b = broker()
    topic = unique("r")[:12]
    sub = raw5(b.port, props=[("maximum_packet_size", SMALL)])
    sub.subscribe([(topic, 2)])
    pub = raw5(b.port)
    pub.publish_acked(topic, b"x", qos=2)
    p = sub.expect_publish()
    sub.send(ack5(PUBREC, p.pid))
    rel = sub.expect(PUBREL, pid=p.pid)
    assert wire_size(rel) <= SMALL and no_problem_properties(rel), rel
    sub.send(ack5(PUBCOMP, p.pid))
    sub.ping()


def test_mqtt_3_7_2_1_pubcomp_reason_codes(broker):
    """[MQTT-3.7.2-1] Every PUBCOMP the broker sends has a reason code of the PUBCOMP table:
    0x00 for an identifier awaiting PUBREL (also after a reconnect), 0x92 for an unknown
    one."""
    b = broker()
    cid = unique("comp")
    c = persistent(b.port, cid)
    c.publish(unique("nobody"), b"x", qos=2, pid=1)
    c.expect(PUBREC, pid=1)
    c.publish(unique("nobody"), b"x", qos=2, pid=2)
    c.expect(PUBREC, pid=2)
    c.send(ack5(PUBREL, 1))
    comps = [c.expect(PUBCOMP, pid=1)]
    c.disconnect()
    again = resume(b.port, cid)
    again.send(ack5(PUBREL, 2))
    comps.append(again.expect(PUBCOMP, pid=2))
    again.send(ack5(PUBREL, 3))
    comps.append(again.expect(PUBCOMP, pid=3))
    assert [p.rc for p in comps] == [0x00, 0x00, 0x92], comps
    assert {p.rc for p in comps} <= PUBCOMP_CODES


@tern_only
def test_mqtt_3_7_2_2_and_3_pubcomp_fits_the_client_maximum_packet_size(broker):
    """[MQTT-3.7.2-2] [MQTT-3.7.2-3] No Reason String or User Property makes a PUBCOMP larger
    than the client's Maximum Packet Size, success or 0x92 (Tern sends neither on
    PUBCOMP)."""
    b = broker()
    c = raw5(b.port, props=[("maximum_packet_size", SMALL)])
    c.publish(unique("n"), b"x", qos=2, pid=1)
    c.expect(PUBREC, pid=1)
    c.send(ack5(PUBREL, 1) + ack5(PUBREL, 2))
    comps = [c.expect(PUBCOMP, pid=1), c.expect(PUBCOMP, pid=2)]
    assert [p.rc for p in comps] == [0x00, 0x92]
    assert [(p, wire_size(p)) for p in comps if wire_size(p) > SMALL or
            not no_problem_properties(p)] == []
