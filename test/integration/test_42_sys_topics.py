# $SYS/brokers/<node>/... topics published by the node (interval from [sys]) and client
# connected/disconnected events as JSON, received by mosquitto_sub.

import json
import time

import helpers
import mgmt_helpers as mh
from helpers import unique

NODE = "tern@127.0.0.1"
PREFIX = f"$SYS/brokers/{NODE}/"


def collect(sub, want, timeout=10.0):
    """Reads "topic payload" lines until every topic in `want` has been seen."""
    seen = {}
    deadline = time.monotonic() + timeout
    while not want <= set(seen) and time.monotonic() < deadline:
        for line in sub.expect_lines(1, timeout=max(deadline - time.monotonic(), 0.1)):
            topic, _, payload = line.partition(" ")
            seen[topic] = payload
    missing = want - set(seen)
    assert not missing, f"not received: {sorted(missing)}"
    return seen


def test_periodic_sys_topics(broker, clients):
    node = mh.start(broker, sys_interval="1s")
    clients.paho(node.port, client_id=unique("sys-peer"))
    sub = clients.mosquitto_sub(node.port, ["$SYS/#"]).wait_subscribed()
    want = {"$SYS/brokers"} | {PREFIX + t for t in (
        "version", "sysdescr", "uptime", "datetime",
        "stats/clients/count", "stats/clients/max", "stats/sessions/count",
        "stats/subscriptions/count", "stats/topics/count", "stats/retained/count",
        "stats/retained/max",
        "metrics/bytes/received", "metrics/bytes/sent", "metrics/packets/received",
        "metrics/packets/connect", "metrics/packets/publish/received",
        "metrics/messages/received", "metrics/messages/sent", "metrics/messages/qos0/received",
        "metrics/messages/qos1/sent", "metrics/messages/qos2/received",
        "metrics/messages/dropped", "metrics/messages/retained")}
    seen = collect(sub, want)
    assert seen["$SYS/brokers"] == NODE
    assert seen[PREFIX + "sysdescr"] == "Tern MQTT broker"
    assert seen[PREFIX + "uptime"].endswith("seconds")
    assert int(seen[PREFIX + "stats/clients/count"]) >= 1  # the peer (and the subscriber)
    assert int(seen[PREFIX + "metrics/packets/connect"]) >= 2
    # retained: a new subscriber gets version at once
    late = clients.mosquitto_sub(node.port, [PREFIX + "version"], count=1)
    assert late.wait_exit() == 0
    assert late.expect_lines(1)[0] == f"{PREFIX}version {seen[PREFIX + 'version']}"


def test_sys_interval_zero_disables_periodic_topics(broker, clients):
    node = mh.start(broker, sys_interval="0s")
    sub = clients.paho(node.port)
    sub.subscribe(PREFIX + "uptime", qos=0)
    sub.expect_none(timeout=2.5)


def test_client_connected_and_disconnected_events(broker, clients):
    node = mh.start(broker, sys_interval="0s")
    sub = clients.mosquitto_sub(node.port, [PREFIX + "clients/#"]).wait_subscribed()
    cid = unique("presence")
    c = clients.paho(node.port, client_id=cid, username="carol", clean_session=False)
    lines = {}
    deadline = time.monotonic() + 5
    while PREFIX + f"clients/{cid}/connected" not in lines and time.monotonic() < deadline:
        t, _, p = sub.expect_lines(1)[0].partition(" ")
        lines[t] = p
    ev = json.loads(lines[PREFIX + f"clients/{cid}/connected"])
    assert ev["clientid"] == cid and ev["username"] == "carol"
    assert ev["ipaddress"] == "127.0.0.1" and ev["session"] is True
    assert ev["protocol"] == 4 and ev["connack"] == 0 and abs(ev["ts"] - time.time()) < 60
    c.disconnect()
    while PREFIX + f"clients/{cid}/disconnected" not in lines and time.monotonic() < deadline + 5:
        t, _, p = sub.expect_lines(1)[0].partition(" ")
        lines[t] = p
    ev = json.loads(lines[PREFIX + f"clients/{cid}/disconnected"])
    assert ev["clientid"] == cid and ev["username"] == "carol" and ev["reason"]


def test_presence_can_be_turned_off(broker, clients):
    node = mh.start(broker, sys_interval="0s", presence=False)
    watcher = clients.paho(node.port)
    watcher.subscribe(PREFIX + "clients/#", qos=0)
    clients.paho(node.port, client_id=unique("quiet"))
    watcher.expect_none(timeout=1.0)


def test_clients_cannot_fake_sys_events(broker, clients):
    node = mh.start(broker, sys_interval="0s")
    watcher = clients.paho(node.port)
    watcher.subscribe(PREFIX + "clients/#", qos=0)
    helpers.run_pub(node.port, PREFIX + "clients/fake/connected", "{}", qos=1)
    # mosquitto_pub itself connects: only its real events may arrive
    for m in watcher.expect(2, timeout=5):
        assert "/fake/" not in m.topic
