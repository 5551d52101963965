# Shared subscriptions across a cluster: a group ($share/{group}/{filter} or $queue/{filter})
# with members on several nodes gets each message once in the whole cluster. The publishing
# node serves a group itself when it has a member, else forwards to one node with members.
import collections
import time

import pytest

import helpers
from cluster_nodes import wait_route
from helpers import unique

pytestmark = pytest.mark.skipif(helpers.is_mosquitto(), reason="Tern cluster only")

N = 60


def wait_group_routes(pub, members, topic, timeout=10.0):
    """Publishes QoS 0 probes on `topic` until every member got at least one: the publisher's
    node then knows the group on every members' node. Members keep probes apart from their
    messages; drains the members afterwards."""
    seen = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(seen) < len(members):
        pub.publish(topic, helpers.PROBE, qos=0)
        time.sleep(0.02)
        for i, m in enumerate(members):
            if m.take_probes():
                seen.add(i)
    assert len(seen) == len(members), f"only members {sorted(seen)} reached within {timeout}s"
    time.sleep(0.3)
    for m in members:
        m.drain()


def publish_n(pub, topic, n=N):
    infos = [pub.publish(topic, f"m{i}".encode(), qos=1, wait=False) for i in range(n)]
    for info in infos:
        info.wait_for_publish(10)
        assert info.is_published()


def collect(members, topic, total, timeout=10.0):
    """Payloads on `topic` per member once `total` arrived in all, then checks nothing more
    comes (a duplicate would)."""
    got = [[] for _ in members]
    deadline = time.monotonic() + timeout
    while sum(len(g) for g in got) < total and time.monotonic() < deadline:
        for i, m in enumerate(members):
            for msg in m.drain():
                if msg.topic == topic:
                    got[i].append(msg.payload)
        time.sleep(0.02)
    time.sleep(0.5)
    for i, m in enumerate(members):
        got[i] += [msg.payload for msg in m.drain() if msg.topic == topic]
    return got


def assert_each_once(got, n=N):
    flat = [p for g in got for p in g]
    dups = [p for p, c in collections.Counter(flat).items() if c > 1]
    assert not dups, f"delivered more than once: {dups[:10]}"
    assert sorted(flat) == sorted(f"m{i}".encode() for i in range(n)), \
        f"lost: {sorted(set(f'm{i}'.encode() for i in range(n)) - set(flat))[:10]}"


def test_group_members_on_two_nodes_get_each_message_once(cluster, clients):
    n1, n2, n3 = cluster.start(3)
    base = unique("shc")
    members = [clients.paho(n1.port), clients.paho(n2.port)]
    for m in members:
        m.subscribe(f"$share/g/{base}/#", qos=1)
    pub = clients.paho(n3.port)
    wait_group_routes(pub, members, f"{base}/probe")
    publish_n(pub, f"{base}/data")
    got = collect(members, f"{base}/data", N)
    assert_each_once(got)
    # Random strategy (the default) over two nodes: both take part.
    assert all(got), [len(g) for g in got]


def test_queue_group_across_nodes(cluster, clients):
    n1, n2, n3 = cluster.start(3)
    base = unique("shq")
    members = [clients.paho(n1.port), clients.paho(n2.port), clients.paho(n2.port)]
    for m in members:
        m.subscribe(f"$queue/{base}/+", qos=1)
    pub = clients.paho(n3.port)
    wait_group_routes(pub, members, f"{base}/probe")
    publish_n(pub, f"{base}/data")
    assert_each_once(collect(members, f"{base}/data", N))


def test_only_remote_members_get_everything(cluster, clients):
    n1, n2 = cluster.start(2)
    base = unique("shr")
    members = [clients.paho(n1.port), clients.paho(n1.port)]
    for m in members:
        m.subscribe(f"$share/g/{base}", qos=1)
    # A plain subscriber on the publishing node does not make the group local.
    plain = clients.paho(n2.port)
    plain.subscribe(base, qos=1)
    pub = clients.paho(n2.port)
    wait_group_routes(pub, members, base)
    plain.drain()
    publish_n(pub, base)
    assert_each_once(collect(members, base, N))
    assert_each_once([[m.payload for m in plain.expect(N, timeout=10)]])
    plain.expect_none(0.3)


def test_a_local_member_serves_the_group_for_its_node(cluster, clients):
    n1, n2 = cluster.start(2)
    base = unique("shl")
    remote = clients.paho(n1.port)
    remote.subscribe(f"$share/g/{base}", qos=1)
    local = clients.paho(n2.port)
    local.subscribe(f"$share/g/{base}", qos=1)
    p1 = clients.paho(n1.port)
    p2 = clients.paho(n2.port)
    # Probes would only ever reach the local member; wait for the routes through a plain
    # subscriber on each side, subscribed after the members (routes travel in order).
    w1 = clients.paho(n1.port)
    w1.subscribe(base, qos=0)
    w2 = clients.paho(n2.port)
    w2.subscribe(base, qos=0)
    wait_route(p2, w1, base)
    wait_route(p1, w2, base)
    time.sleep(0.3)
    for c in (remote, local, w1, w2):
        c.drain()
    publish_n(p2, base)
    got = collect([remote, local], base, N)
    assert_each_once(got)
    assert got[0] == [], "a member on the publishing node serves the group there"
    publish_n(p1, base)
    got = collect([remote, local], base, N)
    assert_each_once(got)
    assert got[1] == []


def test_one_forward_per_node_for_subscribers_and_group(cluster, clients):
    """A node with normal subscribers and group members of the same filter gets each message
    once for each: its normal subscribers once, a group it was chosen for once, and a group
    served on the publishing node not at all."""
    n1, n2 = cluster.start(2)
    base = unique("shm")
    topic = f"{base}/data"
    plain = clients.paho(n1.port)
    plain.subscribe(f"{base}/#", qos=1)
    member = clients.paho(n1.port)
    member.subscribe(f"$share/g/{base}/#", qos=1)
    both = clients.paho(n1.port)  # the only member of group h, and subscribed normally
    both.subscribe([(f"$share/h/{base}/#", 1), (f"{base}/+", 1)])
    pub = clients.paho(n2.port)
    wait_group_routes(pub, [plain, member, both], f"{base}/probe")
    # Group g now also has a member on the publishing node: it serves g there.
    here = clients.paho(n2.port)
    here.subscribe(f"$share/g/{base}/#", qos=1)
    publish_n(pub, topic)
    assert_each_once(collect([plain], topic, N))
    assert_each_once(collect([here], topic, N))
    assert collect([member], topic, 0, timeout=0.5) == [[]]
    got = collect([both], topic, 2 * N)[0]
    assert sorted(got) == sorted([f"m{i}".encode() for i in range(N)] * 2)


def test_round_robin_alternates_between_member_nodes(cluster, clients):
    toml = '\n[mqtt5]\nshared_subscription_strategy = "round_robin"\n'
    n1 = cluster.node(cluster_toml=toml).start()
    n2 = cluster.node(cluster_toml=toml).start(join=[n1.cluster_addr])
    n3 = cluster.node(cluster_toml=toml).start(join=[n2.cluster_addr])
    cluster.wait_mesh([n1, n2, n3])
    base = unique("shrr")
    members = [clients.paho(n1.port), clients.paho(n2.port)]
    for m in members:
        m.subscribe(f"$share/g/{base}/#", qos=1)
    pub = clients.paho(n3.port)
    wait_group_routes(pub, members, f"{base}/probe")
    publish_n(pub, f"{base}/data")
    got = collect(members, f"{base}/data", N)
    assert_each_once(got)
    assert [len(g) for g in got] == [N // 2, N // 2]
