# MQTT 5 subscription options: No Local, Retain As Published, Retain Handling 0/1/2, and
# Subscription Identifiers (one copy carrying every matching identifier).

import subprocess

import pytest

import helpers
from helpers import unique
from mqtt5 import Client5, raw5

pytestmark = pytest.mark.skipif(helpers.is_mosquitto(), reason="checks Tern's own values")


def test_no_local(broker):
    b = broker()
    topic = unique("nl")
    me = raw5(b.port)
    me.subscribe([(topic, 1, {"no_local": True})])
    other = raw5(b.port)
    other.subscribe([(topic, 1)])
    me.publish_acked(topic, b"mine")
    assert other.receive_publishes(1)[0].payload == b"mine"
    me.expect_no_packet(0.4)
    other.publish_acked(topic, b"theirs")
    assert me.receive_publishes(1)[0].payload == b"theirs"


def test_no_local_with_paho(broker):
    b = broker()
    topic = unique("nlp")
    c = Client5(b.port)
    c.connect()
    c.subscribe(topic, 1, no_local=True)
    c.publish(topic, b"x", qos=1)
    c.expect_none(0.4)
    c.stop()


def test_retain_as_published(broker):
    b = broker()
    topic = unique("rap")
    keep = raw5(b.port)
    keep.subscribe([(topic, 0, {"rap": True})])
    clear = raw5(b.port)
    clear.subscribe([(topic, 0)])
    pub = raw5(b.port)
    pub.publish_acked(topic, b"r", retain=True)
    assert keep.expect_publish().retain is True
    assert clear.expect_publish().retain is False


def test_retain_handling(broker):
    b = broker()
    topic = unique("rh")
    pub = raw5(b.port)
    pub.publish_acked(topic, b"stored", retain=True)
    c = raw5(b.port)
    # 0: sent at every subscribe.
    c.subscribe([(topic, 0, {"rh": 0})])
    assert c.expect_publish().retain
    c.subscribe([(topic, 0, {"rh": 0})])
    assert c.expect_publish().retain
    # 1: only when the subscription is new.
    d = raw5(b.port)
    d.subscribe([(topic, 0, {"rh": 1})])
    assert d.expect_publish().payload == b"stored"
    d.subscribe([(topic, 0, {"rh": 1})])
    d.expect_no_packet(0.4)
    # 2: never.
    e = raw5(b.port)
    e.subscribe([(topic, 0, {"rh": 2})])
    e.expect_no_packet(0.4)


def test_subscription_identifiers_on_one_copy(broker):
    b = broker()
    base = unique("sid")
    c = raw5(b.port)
    c.subscribe([(base + "/+", 0)], props=[("subscription_identifier", 7)])
    c.subscribe([(base + "/x", 1)], props=[("subscription_identifier", 300)])
    c.subscribe([(base + "/#", 0)])  # no identifier
    pub = raw5(b.port)
    pub.publish_acked(base + "/x", b"m", qos=1)
    got = c.receive_publishes(1)
    assert got[0].qos == 1  # the highest granted QoS
    assert sorted(got[0].all("subscription_identifier")) == [7, 300]
    c.expect_no_packet(0.4)  # one copy only
    # A topic matching only the first subscription carries only its identifier.
    pub.publish_acked(base + "/y", b"n", qos=1)
    assert c.receive_publishes(1)[0].all("subscription_identifier") == [7]


def test_subscription_identifier_with_paho_and_retained(broker):
    b = broker()
    topic = unique("sidr")
    pub = raw5(b.port)
    pub.publish_acked(topic, b"ret", retain=True)
    c = Client5(b.port)
    c.connect()
    c.subscribe(topic, 1, sub_id=42)
    m = c.expect_one()
    assert m.retain and m.properties.SubscriptionIdentifier == [42]
    c.stop()


def test_mosquitto_sub_with_subscription_identifier(broker):
    b = broker()
    topic = unique("msid")
    sub = helpers.MosquittoSub(b.port, topic, count=1, wait=10,
                               extra=["-V", "5", "-D", "subscribe", "subscription-identifier",
                                      "9", "-F", "%t %p"])
    # MosquittoSub passes -V mqttv311 first; a later -V 5 wins.
    try:
        sub.wait_subscribed()
        subprocess.run([helpers.MOSQUITTO_PUB, "-h", helpers.HOST, "-p", str(b.port), "-V", "5",
                        "-t", topic, "-m", "hi"], check=True, timeout=10, capture_output=True)
        assert sub.expect_lines(1) == [f"{topic} hi"]
    finally:
        sub.stop()
