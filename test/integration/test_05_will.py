# Will messages: published on abnormal disconnects (socket closed, process killed, keepalive
# timeout, protocol error), not on DISCONNECT; will QoS and retain honoured.

import os
import select
import signal
import subprocess
import sys
import time

import pytest

from helpers import HOST, LEVEL_V31, LEVEL_V311, PUBLISH, is_mosquitto, packet, unique

# Mosquitto 2.0.11 checks keepalives only every ~5 s, so it may act that much later.
KEEPALIVE_LATENESS = 6.5 if is_mosquitto() else 0.0

WILL_PAYLOAD = b"gone \x00\xff"


def will_of(topic, qos=0, retain=False):
    return {"topic": topic, "payload": WILL_PAYLOAD, "qos": qos, "retain": retain}


@pytest.mark.parametrize("level,qos", [(LEVEL_V31, 1), (LEVEL_V311, 0), (LEVEL_V311, 1),
                                       (LEVEL_V311, 2)], ids=["v31-q1", "v311-q0", "v311-q1",
                                                              "v311-q2"])
def test_will_published_when_socket_closed_without_disconnect(broker, clients, level, qos):
    b = broker()
    topic = unique("will")
    sub = clients.paho(b.port)
    sub.subscribe(topic, 2)
    dying = clients.raw_connected(b.port, level=level, will=will_of(topic, qos))
    dying.ping()
    sub.expect_none(0.1)
    dying.close()
    m = sub.expect_one(timeout=5)
    assert (m.topic, m.payload, m.qos, m.retain) == (topic, WILL_PAYLOAD, qos, False)


def test_will_published_when_mosquitto_sub_is_killed(broker, clients):
    b = broker()
    topic = unique("will")
    sub = clients.paho(b.port)
    sub.subscribe(topic, 1)
    victim = clients.mosquitto_sub(b.port, [unique("x")], extra=[
        "--will-topic", topic, "--will-payload", "killed", "--will-qos", "1"])
    victim.wait_subscribed()
    victim.kill9()
    m = sub.expect_one(timeout=5)
    assert (m.topic, m.payload, m.qos) == (topic, b"killed", 1)


PAHO_VICTIM = """
import sys, time
import paho.mqtt.client as mqtt
port, topic = int(sys.argv[1]), sys.argv[2]
c = mqtt.Client(client_id="victim-" + topic, protocol=mqtt.MQTTv311)
c.will_set(topic, b"paho died", qos=2)
c.on_connect = lambda *a: print("connected", flush=True)
c.connect("{host}", port, 60)
c.loop_forever()
"""


def test_will_published_when_paho_process_is_killed(broker, clients, tmp_path):
    b = broker()
    topic = unique("will")
    sub = clients.paho(b.port)
    sub.subscribe(topic, 2)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    victim = subprocess.Popen([sys.executable, "-c", PAHO_VICTIM.format(host=HOST), str(b.port),
                               topic], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        ready, _, _ = select.select([victim.stdout], [], [], 10)
        assert ready and victim.stdout.readline().strip() == b"connected", "paho victim failed"
        sub.expect_none(0.1)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(5)
    finally:
        if victim.poll() is None:
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(5)
    m = sub.expect_one(timeout=5)
    assert (m.topic, m.payload, m.qos) == (topic, b"paho died", 2)


def test_will_published_on_keepalive_timeout(broker, clients):
    # [MQTT-3.1.2-24]: a client silent for 1.5 x keepalive is disconnected; its will is sent.
    b = broker()
    topic = unique("will")
    sub = clients.paho(b.port)
    sub.subscribe(topic, 1)
    silent = clients.raw_connected(b.port, keepalive=1, will=will_of(topic, 1))
    start = time.monotonic()
    m = sub.expect_one(timeout=3.0 + KEEPALIVE_LATENESS)
    elapsed = time.monotonic() - start
    assert m.payload == WILL_PAYLOAD
    assert 1.0 <= elapsed <= 2.5 + KEEPALIVE_LATENESS, f"will after {elapsed:.2f}s (expected ~1.5s)"
    silent.wait_closed(timeout=2)


def test_will_published_on_protocol_error(broker, clients):
    # [MQTT-3.1.2-8]: the server closing the connection for a protocol error sends the will.
    b = broker()
    topic = unique("will")
    sub = clients.paho(b.port)
    sub.subscribe(topic, 1)
    bad = clients.raw_connected(b.port, will=will_of(topic, 1))
    bad.send(packet(PUBLISH, 0x06, b"\x00\x01t\x00\x01"))  # QoS 3 is malformed [MQTT-3.3.1-4]
    bad.wait_closed(timeout=5)
    assert sub.expect_one(timeout=5).payload == WILL_PAYLOAD


@pytest.mark.parametrize("level", [LEVEL_V31, LEVEL_V311], ids=["v31", "v311"])
def test_no_will_after_disconnect(broker, clients, level):
    # [MQTT-3.1.2-10], [MQTT-3.14.4-3]: DISCONNECT discards the will.
    b = broker()
    topic = unique("will")
    sub = clients.paho(b.port)
    sub.subscribe(topic, 1)
    polite = clients.raw_connected(b.port, level=level, will=will_of(topic, 1))
    polite.disconnect()
    sub.expect_none(1.0)


def test_will_with_retain_is_retained(broker, clients):
    b = broker()
    topic = unique("will")
    live = clients.paho(b.port)
    live.subscribe(topic, 1)
    dying = clients.raw_connected(b.port, will=will_of(topic, 1, retain=True))
    dying.close()
    m = live.expect_one(timeout=5)
    assert (m.payload, m.retain) == (WILL_PAYLOAD, False), "live subscribers get RETAIN=0"
    late = clients.paho(b.port)
    late.subscribe(topic, 1)
    m = late.expect_one()
    assert (m.payload, m.retain) == (WILL_PAYLOAD, True)


def test_will_without_retain_is_not_retained(broker, clients):
    b = broker()
    topic = unique("will")
    live = clients.paho(b.port)
    live.subscribe(topic, 1)
    dying = clients.raw_connected(b.port, will=will_of(topic, 1, retain=False))
    dying.close()
    assert live.expect_one(timeout=5).payload == WILL_PAYLOAD
    late = clients.paho(b.port)
    late.subscribe(topic, 1)
    late.expect_none(0.5)
