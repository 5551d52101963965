# MQTT 5 will: Will Delay Interval (cancelled by a timely reconnect, cut short by the end of
# the session), DISCONNECT 0x04 (with will), will properties passed on.

import time

import pytest

import helpers
from helpers import unique
from mqtt5 import RawClient5, disconnect5, raw5

pytestmark = pytest.mark.skipif(helpers.is_mosquitto(), reason="checks Tern's own values")


def will(topic, delay=None, payload=b"gone", props=()):
    p = list(props)
    if delay is not None:
        p.append(("will_delay_interval", delay))
    return {"topic": topic, "payload": payload, "qos": 1, "props": p}


def test_will_is_delayed(broker):
    b = broker()
    topic = unique("wd")
    watcher = raw5(b.port)
    watcher.subscribe([(topic, 1)])
    c = raw5(b.port, props=[("session_expiry_interval", 60)], will=will(topic, delay=1))
    c.close()  # no DISCONNECT: the will applies
    start = time.monotonic()
    watcher.expect_no_packet(0.6)
    p = watcher.receive_publishes(1, timeout=3)[0]
    assert p.payload == b"gone"
    assert p.prop("will_delay_interval") is None  # not a PUBLISH property
    assert time.monotonic() - start >= 0.9


def test_reconnect_within_the_delay_cancels_the_will(broker):
    b = broker()
    topic = unique("wc")
    cid = unique("wcc")
    watcher = raw5(b.port)
    watcher.subscribe([(topic, 1)])
    c = raw5(b.port, cid, props=[("session_expiry_interval", 60)], will=will(topic, delay=1))
    c.close()
    back = RawClient5(b.port)
    assert back.connect(cid, clean=False,
                        props=[("session_expiry_interval", 60)]).session_present == 1
    watcher.expect_no_packet(1.8)
    back.disconnect()
    watcher.expect_no_packet(0.3)  # a clean DISCONNECT: no will at all


def test_session_end_publishes_a_delayed_will_early(broker):
    b = broker()
    topic = unique("we")
    watcher = raw5(b.port)
    watcher.subscribe([(topic, 1)])
    c = raw5(b.port, props=[("session_expiry_interval", 1)], will=will(topic, delay=30))
    c.close()
    # The session ends after 1 s, long before the 30 s delay.
    p = watcher.receive_publishes(1, timeout=4)[0]
    assert p.payload == b"gone"


def test_will_without_delay_and_expiry_zero_is_immediate(broker):
    b = broker()
    topic = unique("wi")
    watcher = raw5(b.port)
    watcher.subscribe([(topic, 1)])
    c = raw5(b.port, will=will(topic, delay=10))  # session expiry 0: ends at once
    c.close()
    watcher.receive_publishes(1, timeout=2)


def test_disconnect_with_will_message_publishes_it(broker):
    b = broker()
    topic = unique("w4")
    watcher = raw5(b.port)
    watcher.subscribe([(topic, 1)])
    c = raw5(b.port, will=will(topic, props=[("content_type", "text/plain"),
                                             ("user_property", ("why", "test"))]))
    c.send(disconnect5(0x04))
    c.wait_closed()
    p = watcher.receive_publishes(1)[0]
    assert p.payload == b"gone"
    assert p.prop("content_type") == "text/plain"
    assert p.all("user_property") == [("why", "test")]


def test_normal_disconnect_discards_the_will(broker):
    b = broker()
    topic = unique("wn")
    watcher = raw5(b.port)
    watcher.subscribe([(topic, 1)])
    c = raw5(b.port, will=will(topic))
    c.disconnect()
    watcher.expect_no_packet(0.5)


def test_takeover_cancels_a_delayed_will(broker):
    b = broker()
    topic = unique("wt")
    cid = unique("wtc")
    watcher = raw5(b.port)
    watcher.subscribe([(topic, 1)])
    old = raw5(b.port, cid, props=[("session_expiry_interval", 60)], will=will(topic, delay=1))
    new = RawClient5(b.port)
    assert new.connect(cid, clean=False,
                       props=[("session_expiry_interval", 60)]).session_present == 1
    old.expect_disconnect(0x8E)
    watcher.expect_no_packet(1.8)
    new.disconnect()


def test_takeover_publishes_an_undelayed_will(broker):
    b = broker()
    topic = unique("wu")
    cid = unique("wuc")
    watcher = raw5(b.port)
    watcher.subscribe([(topic, 1)])
    old = raw5(b.port, cid, props=[("session_expiry_interval", 60)], will=will(topic))
    new = raw5(b.port, cid, clean=False, props=[("session_expiry_interval", 60)])
    old.expect_disconnect(0x8E)
    assert watcher.receive_publishes(1)[0].payload == b"gone"
    new.disconnect()
