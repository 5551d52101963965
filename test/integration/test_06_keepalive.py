# Keepalive: a silent client is disconnected after 1.5 x its keepalive; PINGREQ or any other
# packet keeps it connected; keepalive 0 turns the check off.

import time

import pytest

from helpers import LEVEL_V31, LEVEL_V311, PINGRESP, is_mosquitto, pingreq_packet, unique

# Mosquitto 2.0.11 checks keepalives only every ~5 s, so it may act that much later.
KEEPALIVE_LATENESS = 6.5 if is_mosquitto() else 0.0


def test_silent_client_disconnected_after_one_and_a_half_keepalive(broker, clients):
    # [MQTT-3.1.2-24]
    b = broker()
    silent = {}
    for level in (LEVEL_V31, LEVEL_V311):
        c = clients.raw(b.port)
        c.connect_ok(unique("silent"), keepalive=2, level=level)
        silent[level] = (c, time.monotonic())
    for level, (c, start) in silent.items():
        c.wait_closed(timeout=6 + KEEPALIVE_LATENESS)
        elapsed = time.monotonic() - start
        assert 2.5 <= elapsed <= 4.5 + KEEPALIVE_LATENESS, \
            f"level {level}: closed after {elapsed:.2f}s, expected ~3s"


def test_pingreq_gets_pingresp(broker, clients):
    b = broker()
    c = clients.raw_connected(b.port, keepalive=10)
    p = c.ping()
    assert p.flags == 0 and p.body == b""


@pytest.mark.parametrize("traffic", ["pingreq", "publish"])
def test_traffic_keeps_client_connected(broker, clients, traffic):
    # Any control packet resets the keepalive timer, not only PINGREQ.
    b = broker()
    topic = unique("ka")
    c = clients.raw_connected(b.port, keepalive=1)
    end = time.monotonic() + 3.5
    while time.monotonic() < end:
        if traffic == "pingreq":
            c.send(pingreq_packet())
            assert c.expect(PINGRESP, timeout=1.0)
        else:
            c.publish(topic, b"tick", qos=0)
        time.sleep(0.4)
    assert c.is_open()
    c.ping()


def test_keepalive_zero_disables_the_check(broker, clients):
    # Spec 3.1.2.10: keepalive 0 turns the keepalive mechanism off.
    b = broker()
    c = clients.raw_connected(b.port, keepalive=0)
    short = clients.raw_connected(b.port, keepalive=1)
    short.wait_closed(timeout=3 + KEEPALIVE_LATENESS)  # the check is running...
    assert c.is_open()  # ...and spared the keepalive-0 client
    c.ping()
