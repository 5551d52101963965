# Cluster failures: kill -9 of a node purges its routes at once and the rest keeps flowing;
# the killed node rejoins under its name; a clean stop is a leave; retained messages are
# replicated, also to a node that joins later.
import re
import time

import pytest

import helpers
from cluster_nodes import wait_route

pytestmark = pytest.mark.skipif(helpers.is_mosquitto(), reason="Tern cluster only")


def purged_count(node, dead, since):
    m = node.wait_log(rf"node {dead} down \(.*\); purged (\d+) routes", timeout=5, since=since)
    return int(m.group(1))


def test_kill9_purges_routes_and_others_still_flow(cluster, clients):
    n1, n2, n3 = cluster.start(3)
    s2 = clients.paho(n2.port)
    s2.subscribe("k/#", qos=1)
    s3 = clients.paho(n3.port)
    s3.subscribe([("k/#", 1), ("only3/+", 1)])
    pub = clients.paho(n1.port)
    wait_route(pub, s2, "k/probe")
    wait_route(pub, s3, "only3/probe")
    time.sleep(0.3)
    s2.drain()
    s3.drain()
    mark1, mark2 = n1.log_size(), n2.log_size()
    t0 = time.monotonic()
    n3.kill9()
    # Both survivors drop all of n3's routes (k/#, only3/+) in one go.
    assert purged_count(n1, "n3", mark1) == 2
    assert purged_count(n2, "n3", mark2) == 2
    detect = time.monotonic() - t0
    assert n1.members() == n2.members() == {"n1", "n2"}
    for i in range(20):
        pub.publish(f"k/{i}", str(i).encode(), qos=1)
    got = s2.expect(20, timeout=5)
    assert [m.payload for m in got] == [str(i).encode() for i in range(20)]
    pub.publish("only3/x", b"void", qos=1)  # nobody left to take it: acked, dropped
    s2.expect_none(0.3)
    print(f"n3 purged on n1 and n2 {detect * 1000:.0f} ms after kill -9")


def test_killed_node_rejoins_under_its_name(cluster, clients):
    n1, n2, n3 = cluster.start(3)
    old = re.search(r"node n3 joined \(incarnation (\d+)", n1.log_text()).group(1)
    n3.kill9()
    n1.wait_log(r"node n3 down")
    mark = n1.log_size()
    n3.start()  # no --join: the others retry the lost member's address
    m = n1.wait_log(r"node n3 joined \(incarnation (\d+)", since=mark)
    assert int(m.group(1)) > int(old)
    cluster.wait_mesh([n1, n2, n3])
    sub = clients.paho(n3.port)
    sub.subscribe("back/#", qos=1)
    pub = clients.paho(n2.port)
    wait_route(pub, sub, "back/probe")
    pub.publish("back/x", b"again", qos=1)
    assert sub.expect_one().payload == b"again"


def test_restart_with_same_name_replaces_old_incarnation(cluster, clients):
    n1, n2 = cluster.start(2)
    sub = clients.paho(n2.port)
    sub.subscribe("stale/#", qos=1)
    pub = clients.paho(n1.port)
    wait_route(pub, sub, "stale/probe")
    clients.close_all()
    # A quick restart: the new incarnation must not inherit the old one's routes.
    n2.kill9()
    n2.start(join=[n1.cluster_addr])
    cluster.wait_mesh([n1, n2])
    time.sleep(0.5)
    sub2 = clients.paho(n2.port)
    sub2.subscribe("fresh/#", qos=1)
    pub2 = clients.paho(n1.port)
    wait_route(pub2, sub2, "fresh/probe")
    pub2.publish("stale/x", b"nobody", qos=1)
    pub2.publish("fresh/x", b"yes", qos=1)
    got = sub2.expect_until("fresh/x")
    assert [m.payload for m in got] == [b"yes"]


def test_clean_stop_is_a_leave_and_not_retried(cluster):
    n1, n2, n3 = cluster.start(3)
    n3.stop()
    n1.wait_log(r"node n3 left")
    n2.wait_log(r"node n3 left")
    assert n1.members() == {"n1", "n2"}
    mark = n1.log_size()
    time.sleep(1.0)  # four reconnect rounds
    assert "n3" not in n1.log_text()[mark:]


def test_retained_messages_are_replicated_also_to_late_joiners(cluster, clients):
    n1, n2 = cluster.start(2)
    pub = clients.paho(n1.port)
    pub.publish("ret/a", b"before", qos=1, retain=True)
    time.sleep(0.3)
    n3 = cluster.node()
    n3.start(join=[n2.cluster_addr])
    cluster.wait_mesh([n1, n2, n3])
    pub.publish("ret/b", b"after", qos=1, retain=True)
    deadline = time.monotonic() + 5
    for n in (n2, n3):
        while True:
            sub = clients.paho(n.port)
            sub.subscribe("ret/#", qos=1)
            got = sorted((m.topic, m.payload, m.retain) for m in sub.collect(2))
            if got == [("ret/a", b"before", True), ("ret/b", b"after", True)]:
                break
            assert time.monotonic() < deadline, f"{n.name} has retained {got}"
            sub.disconnect()
            time.sleep(0.1)


