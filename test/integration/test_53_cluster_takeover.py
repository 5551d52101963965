# Cluster-wide client registry and session takeover: a client that reconnects to another node
# gets its session back (subscriptions, queued QoS 1 messages), the routes follow it, and the
# old connection is closed. Exactly one session per client id in the cluster.
import os
import threading
import time

import pytest

import helpers
from cluster_nodes import wait_route
from streams import Publisher, Subscriber, check_stream

pytestmark = pytest.mark.skipif(helpers.is_mosquitto(), reason="Tern cluster only")


def test_takeover_moves_subscriptions_and_queued_qos1_messages(cluster, clients):
    n1, n2, n3 = cluster.start(3)
    cid = helpers.unique("mover")
    c1 = clients.paho(n1.port, client_id=cid, clean_session=False, connect=False)
    assert not c1.connect()
    c1.subscribe("tk/#", qos=1)
    pub = clients.paho(n2.port)
    wait_route(pub, c1, "tk/probe")
    c1.disconnect()
    time.sleep(0.2)
    for i in range(5):
        pub.publish(f"tk/{i}", f"q{i}".encode(), qos=1)  # queued on n1 for the offline client
    time.sleep(0.3)
    mark1 = n1.log_size()
    n3.wait_log(rf"client {cid} is on node n1")
    c2 = clients.paho(n3.port, client_id=cid, clean_session=False, connect=False)
    assert c2.connect() == 1, "session present: the session came from n1"
    got = c2.expect(5, timeout=5)
    assert [(m.topic, m.payload, m.qos) for m in got] == \
        [(f"tk/{i}", f"q{i}".encode(), 1) for i in range(5)]
    n1.wait_log(rf"client {cid} taken over by node n3", since=mark1)
    # The subscription lives on n3 now: publishes from n1 and n2 reach it there, once.
    p1 = clients.paho(n1.port)
    wait_route(p1, c2, "tk/probe1")
    time.sleep(0.3)
    c2.drain()
    p1.publish("tk/after", b"a", qos=1)
    pub.publish("tk/after2", b"b", qos=1)
    got = sorted((m.topic, m.payload) for m in c2.expect(2, timeout=5))
    assert got == [("tk/after", b"a"), ("tk/after2", b"b")]
    c2.expect_none(0.3)


def test_connected_client_is_taken_over_and_old_connection_closed(cluster, clients):
    n1, n2 = cluster.start(2)
    cid = helpers.unique("dup")
    old = clients.paho(n1.port, client_id=cid, clean_session=False, connect=False)
    old.connect()
    old.subscribe("dup/#", qos=1)
    # n2 must know where the client is first, or this is not a takeover but two connects at
    # the same moment (the last test).
    n2.wait_log(rf"client {cid} is on node n1")
    new = clients.paho(n2.port, client_id=cid, clean_session=False, connect=False)
    assert new.connect() == 1
    assert old.disconnected.wait(5), "the old connection on n1 was not closed"
    pub = clients.paho(n1.port)
    wait_route(pub, new, "dup/x")
    old.expect_none(0.2)
    assert not old.take_probes(), "the old connection got the probes too"


def test_clean_start_elsewhere_ends_the_old_session(cluster, clients):
    n1, n2 = cluster.start(2)
    cid = helpers.unique("clean")
    old = clients.paho(n1.port, client_id=cid, clean_session=False, connect=False)
    old.connect()
    old.subscribe("cl/#", qos=1)
    pub = clients.paho(n2.port)
    wait_route(pub, old, "cl/probe")
    new = clients.paho(n2.port, client_id=cid, clean_session=True, connect=False)
    assert new.connect() == 0
    assert old.disconnected.wait(5)
    # The old subscription is gone everywhere: n1 drops its route, nothing is delivered.
    time.sleep(0.5)
    pub.publish("cl/x", b"nobody", qos=1)
    new.expect_none(0.5)
    new.disconnect()  # a clean session ends with its connection
    time.sleep(0.2)
    again = clients.paho(n1.port, client_id=cid, clean_session=False, connect=False)
    assert again.connect() == 0, "no session should be left on n1 or n2"


def test_ended_session_is_dropped_from_the_registry(cluster, clients):
    n1, n2 = cluster.start(2)
    cid = helpers.unique("gone")
    c = clients.paho(n1.port, client_id=cid, clean_session=True, connect=False)
    c.connect()
    c.disconnect()  # clean session: it ends here, and n1 withdraws its claim
    time.sleep(0.3)
    mark = n1.log_size()
    again = clients.paho(n2.port, client_id=cid, clean_session=False, connect=False)
    assert again.connect() == 0
    time.sleep(0.3)
    assert f"client {cid} taken over" not in n1.log_text()[mark:]


def test_simultaneous_connects_on_two_nodes_leave_one_connection(cluster, clients):
    # Two connects of one client id on two nodes at the same moment (neither node knows the
    # other's claim yet): the newest claim wins and the other connection is closed, as in a
    # takeover. Exactly one session per client id in the cluster.
    n1, n2 = cluster.start(2)
    for _ in range(12):
        cid = helpers.unique("twin")
        a = clients.paho(n1.port, client_id=cid, clean_session=False, connect=False)
        b = clients.paho(n2.port, client_id=cid, clean_session=False, connect=False)
        ts = [threading.Thread(target=c.connect) for c in (a, b)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        deadline = time.monotonic() + 5
        while not (a.disconnected.is_set() or b.disconnected.is_set()):
            assert time.monotonic() < deadline, f"{cid}: connected on both nodes"
            time.sleep(0.02)
        time.sleep(0.3)
        assert a.disconnected.is_set() != b.disconnected.is_set(), \
            f"{cid}: both connections were closed"


def _settled(subs, deadline=10.0):
    end = time.monotonic() + deadline
    while not all(s.c.is_connected() for s in subs):
        assert time.monotonic() < end, "a client did not connect"
        time.sleep(0.02)


@pytest.mark.parametrize("online", [True, False], ids=["connected", "offline"])
def test_session_moves_under_load_lose_nothing(cluster, clients, online):
    """A persistent QoS 1 subscriber moves between two nodes again and again (connected: the
    new connection takes over the old one; offline: it reconnects elsewhere after a pause)
    while a publisher on each node sends without pause. Every message reaches it, in order
    per publisher: what reached the old node during a move is handed to the new one."""
    # Queues large enough that the pauses of the offline moves drop nothing.
    extra = "\n[session]\nmax_queued_messages = 200000\n"
    n1 = cluster.node(cluster_toml=extra).start()
    n2 = cluster.node(cluster_toml=extra).start(join=[n1.cluster_addr])
    cluster.wait_mesh([n1, n2])
    nodes = [n1, n2]
    base = helpers.unique("mv")
    sub = Subscriber(n1.port, "x", base + "/#", 1)
    _settled([sub])
    time.sleep(0.3)  # SUBACK
    probe = clients.paho(n2.port)
    probe_sub = clients.paho(n1.port)
    probe_sub.subscribe(base + "/#", qos=0)
    wait_route(probe, probe_sub, base + "/probe")  # n2 knows the route to n1
    pubs = [Publisher(n1.port, "p1", base + "/a", 1), Publisher(n2.port, "p2", base + "/b", 1)]
    moves = int(os.environ.get("TERN_MOVES", "8"))
    try:
        for i in range(moves):
            time.sleep(0.4)
            to = nodes[(i + 1) % 2]
            sub.c.loop_stop()  # this connection reads nothing more: the broker keeps the rest
            if not online:
                sub.c.disconnect()
                time.sleep(0.3)
            # The node the client goes to has learnt where its session is.
            sub = Subscriber(to.port, "x", base + "/#", 1, sub.client_id, sub.received())
            _settled([sub])
        time.sleep(0.5)
    finally:
        for p in pubs:
            p.stop.set()
    deadline = time.monotonic() + 30
    while not all(p.all_acked() for p in pubs):
        assert time.monotonic() < deadline, [(p.name, p.sent, p.acked()) for p in pubs]
        time.sleep(0.1)
    total = sum(p.sent for p in pubs)
    deadline = time.monotonic() + 30
    while len(set(sub.received())) < total and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    sub.close()
    for p in pubs:
        p.c.loop_stop()
        p.c.disconnect()
    for p in pubs:
        check_stream(sub, p)
    assert total > 500, f"only {total} messages published"
