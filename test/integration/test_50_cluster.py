# Cluster basics: three broker-node processes joined with --join, publish anywhere and
# receive everywhere, wildcards, order and QoS across nodes, idempotent join, cookie check.
import re
import time

import pytest

import helpers
from cluster_nodes import wait_route

pytestmark = pytest.mark.skipif(helpers.is_mosquitto(), reason="Tern cluster only")


def test_three_nodes_form_a_full_mesh_from_a_chain_of_joins(cluster):
    n1, n2, n3 = cluster.start(3)  # n3 joined only n2, yet knows n1
    for n in (n1, n2, n3):
        assert n.members() == {"n1", "n2", "n3"}
    assert re.search(r"node n1 joined", n3.log_text())


def test_publish_on_any_node_reaches_subscribers_on_every_node(cluster, clients):
    nodes = cluster.start(3)
    subs = [clients.paho(n.port) for n in nodes]
    pubs = [clients.paho(n.port) for n in nodes]
    for s in subs:
        s.subscribe("all/#", qos=1)
    for p in pubs:
        for s in subs:
            wait_route(p, s, "all/probe")
    time.sleep(0.3)
    for s in subs:
        s.drain()  # probes of the other pairs
    for i, p in enumerate(pubs):
        p.publish(f"all/from{i}", f"m{i}".encode(), qos=1)
    for s in subs:
        got = sorted((m.topic, m.payload) for m in s.expect(3, timeout=5))
        assert got == [("all/from0", b"m0"), ("all/from1", b"m1"), ("all/from2", b"m2")]
        s.expect_none(0.3)  # once per subscriber, not once per node or per filter


def test_wildcards_across_nodes_deliver_one_copy(cluster, clients):
    n1, n2, n3 = cluster.start(3)
    sub = clients.paho(n3.port)
    sub.subscribe([("w/+/x", 1), ("w/#", 0)])
    other = clients.paho(n2.port)
    other.subscribe("w/a/+", qos=1)
    pub = clients.paho(n1.port)
    wait_route(pub, sub, "w/probe")
    wait_route(pub, other, "w/a/probe")
    time.sleep(0.3)
    sub.drain()
    pub.publish("w/a/x", b"1", qos=1)
    m = sub.expect_one()
    assert (m.topic, m.payload, m.qos) == ("w/a/x", b"1", 1)  # overlapping: one copy, max QoS
    assert other.expect_one().payload == b"1"
    pub.publish("w/b", b"2", qos=1)
    m = sub.expect_one()
    assert (m.topic, m.qos) == ("w/b", 0)
    sub.expect_none(0.3)
    other.expect_none(0.1)
    pub.publish("nomatch/x", b"3", qos=1)
    sub.expect_none(0.3)


def test_order_and_qos1_kept_per_publisher_subscriber_pair(cluster, clients):
    n1, n2 = cluster.start(2)
    sub = clients.paho(n2.port)
    sub.subscribe("ord/t", qos=1)
    pub = clients.paho(n1.port)
    wait_route(pub, sub, "ord/t")
    count = 500
    infos = [pub.publish("ord/t", str(i).encode(), qos=1, wait=False) for i in range(count)]
    for info in infos:
        info.wait_for_publish(10)
    got = sub.expect(count, timeout=20)
    assert [int(m.payload) for m in got] == list(range(count))
    assert all(m.qos == 1 for m in got)


def test_local_topics_stay_on_their_node(cluster, clients):
    n1, n2 = cluster.start(2)
    sub = clients.paho(n2.port)
    sub.subscribe("#", qos=0)
    pub = clients.paho(n1.port)
    wait_route(pub, sub, "loc/probe")
    pub.publish("$local/loc/x", b"only n1", qos=1)
    pub.publish("loc/after", b"x", qos=1)
    got = sub.expect_until("loc/after")
    assert [m.topic for m in got] == ["loc/after"]


def test_join_is_idempotent(cluster):
    n1, n2 = cluster.start(2)
    n3 = cluster.node()
    # The same member twice, and a second member: one membership each.
    n3.start(join=[n1.cluster_addr, n1.cluster_addr, n2.cluster_addr])
    cluster.wait_mesh([n1, n2, n3])
    time.sleep(1.0)  # several reconnect rounds over the seeds
    assert len(re.findall(r"node n1 joined", n3.log_since_start())) == 1
    assert len(re.findall(r"node n3 joined", n1.log_since_start())) == 1
    assert n1.members() == n2.members() == n3.members() == {"n1", "n2", "n3"}


def test_wrong_cookie_is_refused_with_a_clear_log_line(cluster, clients):
    n1, n2 = cluster.start(2)
    bad = cluster.node("intruder")
    bad.start(join=[n1.cluster_addr], cookie="not-the-cookie")
    bad.wait_log(r"cookie mismatch with node n1")
    n1.wait_log(r"refused node intruder .*cookie mismatch")
    time.sleep(0.5)
    assert n1.members() == n2.members() == {"n1", "n2"}
    assert bad.members() == {"intruder"}
    # Nothing flows between them.
    sub = clients.paho(n1.port)
    sub.subscribe("c/#", qos=1)
    p = clients.paho(bad.port)
    p.publish("c/x", b"leak", qos=1)
    sub.expect_none(0.5)


def test_node_without_cookie_does_not_start(cluster):
    n = cluster.node()
    with pytest.raises(pytest.fail.Exception):
        n.start(cookie="")
    n.expected_exit = True
    assert "cookie is required" in n.log_text()
