# Retained messages: set, replace, delete, retain flag on delivery, wildcard subscriptions.

import pytest

from helpers import MQTTv31, MQTTv311, run_pub, unique


@pytest.mark.parametrize("proto", [MQTTv31, MQTTv311], ids=["v31", "v311"])
def test_retained_message_delivered_on_subscribe_with_retain_flag(broker, clients, proto):
    b = broker()
    topic = unique("ret")
    pub = clients.paho(b.port, protocol=proto)
    pub.publish(topic, b"kept", qos=1, retain=True)
    sub = clients.paho(b.port, protocol=proto)
    sub.subscribe(topic, 1)
    m = sub.expect_one()
    assert (m.topic, m.payload, m.retain, m.qos) == (topic, b"kept", True, 1)  # [MQTT-3.3.1-8]
    sub.expect_none(0.3)


def test_live_message_has_retain_flag_zero_for_existing_subscriber(broker, clients):
    # [MQTT-3.3.1-9]: a retained PUBLISH forwarded to an existing subscription has RETAIN=0.
    b = broker()
    topic = unique("live")
    sub = clients.paho(b.port)
    sub.subscribe(topic, 1)
    pub = clients.paho(b.port)
    pub.publish(topic, b"now", qos=1, retain=True)
    m = sub.expect_one()
    assert (m.payload, m.retain) == (b"now", False)
    late = clients.paho(b.port)
    late.subscribe(topic, 1)
    m = late.expect_one()
    assert (m.payload, m.retain) == (b"now", True)


def test_retained_message_replaced(broker, clients):
    b = broker()
    topic = unique("rep")
    pub = clients.paho(b.port)
    pub.publish(topic, b"old", qos=1, retain=True)
    pub.publish(topic, b"new", qos=1, retain=True)
    sub = clients.paho(b.port)
    sub.subscribe(topic, 1)
    assert [m.payload for m in sub.expect(1)] == [b"new"]
    sub.expect_none(0.3)


def test_retained_message_deleted_by_empty_payload(broker, clients):
    # [MQTT-3.3.1-10], [MQTT-3.3.1-11]: zero-length retained PUBLISH removes it and is not stored.
    b = broker()
    root = unique("del")
    topic, marker = root + "/doomed", root + "/marker"
    pub = clients.paho(b.port)
    pub.publish(topic, b"doomed", qos=1, retain=True)
    pub.publish(topic, b"", qos=1, retain=True)
    pub.publish(marker, b"marker", qos=1, retain=True)
    sub = clients.paho(b.port)
    sub.subscribe(root + "/+", 1)
    got = sub.expect_until(marker)
    assert [m.topic for m in got] == [marker], "deleted retained message still delivered"
    sub.expect_none(0.3)


def test_empty_retained_publish_is_forwarded_to_existing_subscribers(broker, clients):
    b = broker()
    topic = unique("empty")
    sub = clients.paho(b.port)
    sub.subscribe(topic, 1)
    pub = clients.paho(b.port)
    pub.publish(topic, b"x", qos=1, retain=True)
    pub.publish(topic, b"", qos=1, retain=True)
    got = sub.expect(2)
    assert [(m.payload, m.retain) for m in got] == [(b"x", False), (b"", False)]


def test_non_retained_publish_leaves_retained_message(broker, clients):
    b = broker()
    topic = unique("keep")
    pub = clients.paho(b.port)
    pub.publish(topic, b"retained", qos=1, retain=True)
    pub.publish(topic, b"transient", qos=1, retain=False)
    pub.publish(topic, b"", qos=1, retain=False)
    sub = clients.paho(b.port)
    sub.subscribe(topic, 1)
    m = sub.expect_one()
    assert (m.payload, m.retain) == (b"retained", True)
    sub.expect_none(0.3)


def test_wildcard_subscribe_gets_all_matching_retained(broker, clients):
    b = broker()
    root = unique("wild")
    retained = {
        f"{root}/a": b"1", f"{root}/b": b"2", f"{root}/a/x": b"3", f"{root}/c/d/e": b"4",
        f"{root}-other/a": b"no", "elsewhere": b"no",
    }
    pub = clients.paho(b.port)
    for t, p in retained.items():
        pub.publish(t, p, qos=1, retain=True)
    sub = clients.paho(b.port)
    sub.subscribe(f"{root}/#", 1)
    got = sub.expect(4)
    assert {m.topic: m.payload for m in got} == \
        {t: p for t, p in retained.items() if t.startswith(root + "/")}
    assert all(m.retain for m in got)
    sub.expect_none(0.3)
    plus = clients.paho(b.port)
    plus.subscribe(f"{root}/+", 1)
    assert sorted(m.topic for m in plus.expect(2)) == [f"{root}/a", f"{root}/b"]
    plus.expect_none(0.3)


@pytest.mark.parametrize("stored_qos,granted", [(2, 1), (1, 0), (0, 2), (2, 2)])
def test_retained_message_delivered_at_min_qos(broker, clients, stored_qos, granted):
    b = broker()
    topic = unique("rq")
    pub = clients.paho(b.port)
    pub.publish(topic, b"q", qos=stored_qos, retain=True)
    if stored_qos == 0:
        pub.publish(topic + "/sync", b"", qos=1)  # QoS 0 has no ack; this orders it
    sub = clients.raw_connected(b.port)
    sub.subscribe([(topic, granted)])
    p = sub.receive_publishes(1)[0]
    assert (p.payload, p.retain, p.qos) == (b"q", True, min(stored_qos, granted))


def test_resubscribe_resends_retained(broker, clients):
    # [MQTT-3.8.4-3]: replacing a subscription re-sends matching retained messages.
    b = broker()
    topic = unique("resub")
    pub = clients.paho(b.port)
    pub.publish(topic, b"again", qos=1, retain=True)
    sub = clients.paho(b.port)
    sub.subscribe(topic, 1)
    assert sub.expect_one().retain is True
    sub.subscribe(topic, 1)
    m = sub.expect_one()
    assert (m.payload, m.retain) == (b"again", True)


def test_retained_with_mosquitto_clients(broker, clients):
    b = broker()
    topic = unique("cli")
    run_pub(b.port, topic, "from mosquitto_pub", qos=1, retain=True)
    sub = clients.mosquitto_sub(b.port, [topic], qos=1, count=1, wait=10)
    assert sub.expect_lines(1) == [f"{topic} from mosquitto_pub"]
    assert sub.wait_exit() == 0
    run_pub(b.port, topic, None, qos=1, retain=True)  # -n: delete
    # --retained-only: print retained messages, exit at the first non-retained one or -W.
    gone = clients.mosquitto_sub(b.port, [topic], qos=1, wait=1, extra=["--retained-only"])
    gone.wait_subscribed()
    assert gone.wait_exit() == 27  # 27: mosquitto_sub timed out (-W) with nothing received
    assert gone.lines.empty()
