# MQTT 5 publish path: topic aliases, receive maximum both ways, maximum packet size, message
# expiry, property pass-through, UTF-8 payload check, reason codes on acks, $local topics.

import subprocess
import time

import pytest

import helpers
from helpers import PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, UNSUBACK, unique
from mqtt5 import Client5, RawClient5, ack5, publish_props, raw5

pytestmark = pytest.mark.skipif(helpers.is_mosquitto(), reason="checks Tern's own values")


def test_inbound_topic_alias(broker):
    b = broker()
    topic = unique("alias")
    sub = raw5(b.port)
    sub.subscribe([(topic, 1)])
    pub = raw5(b.port)
    pub.publish_acked(topic, b"one", props=[("topic_alias", 3)])
    pub.publish_acked("", b"two", props=[("topic_alias", 3)])
    got = sub.receive_publishes(2)
    assert [(p.topic, p.payload) for p in got] == [(topic, b"one"), (topic, b"two")]
    assert all(p.prop("topic_alias") is None for p in got)  # aliases are per connection


def test_topic_alias_out_of_range_is_0x94(broker):
    b = broker(mqtt5={"topic_alias_maximum": 4})
    pub = raw5(b.port)
    pub.publish("a/b", b"x", props=[("topic_alias", 5)])
    pub.expect_disconnect(0x94)
    zero = raw5(b.port)
    zero.publish("a/b", b"x", props=[("topic_alias", 0)])
    zero.expect_disconnect(0x94)


def test_unknown_topic_alias_is_a_protocol_error(broker):
    b = broker()
    pub = raw5(b.port)
    pub.publish("", b"x", props=[("topic_alias", 1)])
    pub.expect_disconnect(0x82)


def test_broker_respects_the_client_receive_maximum(broker):
    b = broker(session={"max_inflight": 32})
    topic = unique("rm")
    sub = raw5(b.port, props=[("receive_maximum", 2)])
    sub.subscribe([(topic, 1)])
    pub = raw5(b.port)
    for i in range(5):
        pub.publish_acked(topic, str(i).encode())
    first = [sub.expect_publish(), sub.expect_publish()]
    sub.expect_no_packet(0.5)  # a third would exceed the client's Receive Maximum
    sub.send(ack5(PUBACK, first[0].pid))
    third = sub.expect_publish()
    assert third.payload == b"2"
    sub.expect_no_packet(0.3)


def test_client_exceeding_the_broker_receive_maximum_gets_0x93(broker):
    b = broker(session={"max_awaiting_rel": 2})
    c = RawClient5(b.port)
    assert c.connect_ok().prop("receive_maximum") == 2
    for pid in (1, 2):
        c.publish("rm/in", b"x", qos=2, pid=pid)
        c.expect(PUBREC, pid=pid)
    c.publish("rm/in", b"x", qos=2, pid=3)  # no PUBREL sent: a third is one too many
    c.expect_disconnect(0x93)


def test_messages_larger_than_the_client_maximum_packet_size_are_dropped(broker):
    b = broker()
    topic = unique("mps")
    sub = raw5(b.port, props=[("maximum_packet_size", 200), ("receive_maximum", 1)])
    sub.subscribe([(topic, 1)])
    pub = raw5(b.port)
    pub.publish_acked(topic, b"x" * 500)
    pub.publish_acked(topic, b"small")
    # The large one is skipped without occupying the client's single inflight slot.
    p = sub.expect_publish()
    assert p.payload == b"small"
    sub.send(ack5(PUBACK, p.pid))
    sub.expect_no_packet(0.3)


def test_expired_messages_are_never_delivered_and_the_rest_is_sent(broker):
    b = broker()
    topic = unique("exp")
    cid = unique("exps")
    sub = raw5(b.port, cid, props=[("session_expiry_interval", 60)])
    sub.subscribe([(topic, 1)])
    sub.disconnect()
    pub = raw5(b.port)
    # QoS 0: should the session still be detaching, it is lost rather than held inflight
    # (an inflight message has started its delivery and would rightly be resent).
    pub.publish(topic, b"short", props=[("message_expiry_interval", 1)])
    pub.publish_acked(topic, b"long", props=[("message_expiry_interval", 60)])
    time.sleep(1.6)
    again = RawClient5(b.port)
    assert again.connect(cid, clean=False,
                         props=[("session_expiry_interval", 60)]).session_present == 1
    got = again.receive_publishes(1)
    assert got[0].payload == b"long"
    left = got[0].prop("message_expiry_interval")
    assert 55 <= left < 60, got[0]  # the time that is left, not the original 60
    again.expect_no_packet(0.3)


def test_expired_retained_message_is_not_sent(broker):
    b = broker()
    topic = unique("rexp")
    pub = raw5(b.port)
    pub.publish_acked(topic, b"old", retain=True, props=[("message_expiry_interval", 1)])
    time.sleep(1.3)
    sub = raw5(b.port)
    sub.subscribe([(topic, 1)])
    sub.expect_no_packet(0.5)


def test_properties_pass_through_unchanged(broker):
    b = broker()
    topic = unique("props")
    sub = Client5(b.port)
    sub.connect()
    sub.subscribe(topic, 1)
    pub = Client5(b.port)
    pub.connect()
    props = publish_props(ResponseTopic="reply/here", CorrelationData=b"\x00\x01corr",
                          ContentType="application/json", PayloadFormatIndicator=1,
                          UserProperty=[("b", "2"), ("a", "1"), ("b", "3")])
    pub.publish(topic, b'{"k": 1}', qos=1, props=props)
    m = sub.expect_one()
    assert m.payload == b'{"k": 1}'
    p = m.properties
    assert p.ResponseTopic == "reply/here"
    assert p.CorrelationData == b"\x00\x01corr"
    assert p.ContentType == "application/json"
    assert p.PayloadFormatIndicator == 1
    assert p.UserProperty == [("b", "2"), ("a", "1"), ("b", "3")]  # order kept
    sub.stop()
    pub.stop()


def test_mosquitto_pub_user_properties_reach_a_v5_subscriber(broker):
    b = broker()
    topic = unique("mup")
    sub = raw5(b.port)
    sub.subscribe([(topic, 0)])
    subprocess.run([helpers.MOSQUITTO_PUB, "-h", helpers.HOST, "-p", str(b.port), "-V", "5",
                    "-t", topic, "-m", "m", "-D", "publish", "user-property", "k", "v",
                    "-D", "publish", "content-type", "text/plain"],
                   check=True, timeout=10, capture_output=True)
    p = sub.expect_publish()
    assert p.all("user_property") == [("k", "v")]
    assert p.prop("content_type") == "text/plain"


def test_invalid_utf8_with_format_indicator_is_refused(broker):
    b = broker()
    topic = unique("utf")
    sub = raw5(b.port)
    sub.subscribe([(topic, 1)])
    pub = raw5(b.port)
    ack = pub.publish_acked(topic, b"\xff\xfe", props=[("payload_format_indicator", 1)])
    assert ack.rc == 0x99
    sub.expect_no_packet(0.3)
    pub.publish(topic, b"\xc3\x28", props=[("payload_format_indicator", 1)])  # QoS 0
    pub.expect_disconnect(0x99)
    # Not claimed to be UTF-8: any bytes pass.
    ok = raw5(b.port)
    assert ok.publish_acked(topic, b"\xff\xfe").rc == 0
    assert sub.expect_publish().payload == b"\xff\xfe"


def test_reason_codes_on_acks(broker):
    b = broker()
    c = raw5(b.port)
    # Nobody subscribed: 0x10 on PUBACK and PUBREC.
    assert c.publish_acked(unique("none"), b"x", qos=1).rc == 0x10
    assert c.publish_acked(unique("none"), b"x", qos=2).rc == 0x10
    # Someone subscribed: 0x00.
    topic = unique("some")
    c.subscribe([(topic, 0)])
    assert c.publish_acked(topic, b"x", qos=1).rc == 0x00
    c.expect_publish()
    # $SYS is not writable: 0x87.
    assert c.publish_acked("$SYS/x", b"x", qos=1).rc == 0x87
    # PUBREL for an unknown packet id: PUBCOMP 0x92.
    c.send(ack5(PUBREL, 4242))
    assert c.expect(PUBCOMP, pid=4242).rc == 0x92
    c.disconnect()


def test_unsuback_reason_codes(broker):
    b = broker()
    c = raw5(b.port)
    c.subscribe([("u/a", 0)])
    import struct
    from mqtt5 import encode_props
    body = struct.pack("!H", 9) + encode_props([]) + helpers.mqtt_string("u/a") + \
        helpers.mqtt_string("u/never")
    c.send(helpers.packet(helpers.UNSUBSCRIBE, 0x02, body))
    ack = c.expect(UNSUBACK, pid=9)
    assert ack.codes == [0x00, 0x11]
    c.disconnect()


def test_local_topic_reaches_local_subscribers_of_the_bare_topic(broker):
    b = broker()
    topic = unique("loc")
    sub = raw5(b.port)
    sub.subscribe([(topic, 1)])
    pub = raw5(b.port)
    assert pub.publish_acked("$local/" + topic, b"here").rc == 0
    p = sub.expect_publish()
    assert (p.topic, p.payload) == (topic, b"here")


def test_outbound_topic_aliases_when_the_client_allows_them(broker):
    b = broker()
    t1, t2 = unique("oa1"), unique("oa2")
    sub = raw5(b.port, props=[("topic_alias_maximum", 1)])
    sub.subscribe([(t1, 0), (t2, 0)])
    pub = raw5(b.port)
    for t in (t1, t1, t2, t1):
        pub.publish_acked(t, b"x")
    got = [sub.expect_publish() for _ in range(4)]
    assert [(p.topic, p.prop("topic_alias")) for p in got] == [
        (t1, 1), ("", 1), (t2, None), ("", 1)]
    # Without a Topic Alias Maximum the broker never uses aliases.
    plain = raw5(b.port)
    plain.subscribe([(t1, 0)])
    pub.publish_acked(t1, b"y")
    pub.publish_acked(t1, b"y")
    assert [plain.expect_publish().prop("topic_alias") for _ in range(2)] == [None, None]

