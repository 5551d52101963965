# Partition healing: two nodes in their own network namespaces joined by a veth pair made by
# the test. Cutting the link (both ends down) makes each side see the other go down and purge
# its routes; both sides keep serving their own clients; routes change on both sides during
# the partition; after the link comes back the nodes rejoin by themselves, exchange route
# snapshots and converge (no stale route) within 5 seconds.
#
# Needs root (CAP_NET_ADMIN) and `ip netns`; skipped with the reason otherwise. All traffic
# stays inside the two namespaces; inside a fresh namespace nothing else listens, so the
# ports are fixed there.
import os
import random
import re
import shutil
import subprocess
import time

import pytest

import helpers

pytestmark = pytest.mark.skipif(helpers.is_mosquitto(), reason="Tern cluster only")

IP = shutil.which("ip") or "/usr/sbin/ip"
MQTT_PORT = 1883
CLUSTER_PORT = 4370


def run(*args, check=True):
    return subprocess.run([IP, *args], check=check, capture_output=True, text=True)


@pytest.fixture
def netns_pair():
    tag = f"{os.getpid() % 100000}{random.randint(0, 99)}"
    a, b = f"ternA{tag}", f"ternB{tag}"
    va, vb = f"tva{tag}", f"tvb{tag}"
    subnet = f"10.{random.randint(100, 250)}.{random.randint(0, 250)}"
    try:
        run("netns", "add", a)
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        msg = e.stderr.strip() if hasattr(e, "stderr") and e.stderr else str(e)
        pytest.skip(f"cannot create a network namespace (needs root and ip netns): {msg}")
    made = [a]
    try:
        run("netns", "add", b)
        made.append(b)
        run("link", "add", va, "netns", a, "type", "veth", "peer", "name", vb, "netns", b)
        for ns, dev, addr in ((a, va, f"{subnet}.1/24"), (b, vb, f"{subnet}.2/24")):
            run("-n", ns, "link", "set", "lo", "up")
            run("-n", ns, "addr", "add", addr, "dev", dev)
            run("-n", ns, "link", "set", dev, "up")
    except subprocess.CalledProcessError as e:
        for ns in made:
            run("netns", "del", ns, check=False)
        pytest.skip(f"cannot set up the veth pair between namespaces: {e.stderr.strip()}")
    yield {"a": (a, va, f"{subnet}.1"), "b": (b, vb, f"{subnet}.2")}
    for ns in made:
        run("netns", "del", ns, check=False)


class NsSub(helpers.MosquittoSub):
    """mosquitto_sub inside a namespace (QoS 1, -v: "topic payload" lines)."""

    def __init__(self, ns, topic):
        import queue
        import threading
        args = [IP, "netns", "exec", ns, helpers.STDBUF, "-oL", helpers.MOSQUITTO_SUB,
                "-h", helpers.HOST, "-p", str(MQTT_PORT), "-V", "mqttv311", "-d", "-v",
                "-q", "1", "-t", topic]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self.lines = queue.Queue()
        self.debug = []
        self.stderr = []
        self._subscribed = threading.Event()
        self._readers = [threading.Thread(target=self._read, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for t in self._readers:
            t.start()

    def drain(self):
        out = []
        while not self.lines.empty():
            out.append(self.lines.get_nowait())
        return out


def ns_pub(ns, topic, payload):
    subprocess.run([IP, "netns", "exec", ns, helpers.MOSQUITTO_PUB, "-h", helpers.HOST, "-p",
                    str(MQTT_PORT), "-q", "1", "-t", topic, "-m", payload],
                   check=True, timeout=10, capture_output=True)


def wait_flow(pub_ns, sub, topic, timeout):
    """Publishes on `topic` in pub_ns until `sub` prints it; returns the time it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        ns_pub(pub_ns, topic, "probe")
        try:
            sub.expect_lines(1, timeout=0.2)
            return time.monotonic() - t0
        except AssertionError:
            pass
    raise AssertionError(f"nothing on {topic} within {timeout}s")


def test_partition_heals_and_routes_converge(cluster, netns_pair):
    (ns_a, dev_a, ip_a), (ns_b, dev_b, ip_b) = netns_pair["a"], netns_pair["b"]
    a = cluster.node("a", host=ip_a, netns=ns_a)
    b = cluster.node("b", host=ip_b, netns=ns_b)
    for n in (a, b):
        n.port, n.cluster_port = MQTT_PORT, CLUSTER_PORT
    a.start()
    b.start(join=[a.cluster_addr])
    cluster.wait_mesh([a, b])

    subs = []
    try:
        sub_a = NsSub(ns_a, "p/#")
        keep_a = NsSub(ns_a, "r/#")
        sub_b = NsSub(ns_b, "p/#")
        subs += [sub_a, keep_a, sub_b]
        for s in subs:
            s.wait_subscribed()
        wait_flow(ns_b, sub_a, "p/from_b", 5)
        wait_flow(ns_a, sub_b, "p/from_a", 5)
        wait_flow(ns_b, keep_a, "r/from_b", 5)
        time.sleep(0.3)
        for s in subs:
            s.drain()

        # Cut the link.
        mark_a, mark_b = a.log_size(), b.log_size()
        run("-n", ns_a, "link", "set", dev_a, "down")
        run("-n", ns_b, "link", "set", dev_b, "down")
        a.wait_log(r"node b down", timeout=10, since=mark_a)
        b.wait_log(r"node a down", timeout=10, since=mark_b)

        # Each side still serves its own clients.
        ns_pub(ns_a, "p/cut_a", "a-side")
        ns_pub(ns_b, "p/cut_b", "b-side")
        assert sub_a.expect_lines(1) == ["p/cut_a a-side"]
        assert sub_b.expect_lines(1) == ["p/cut_b b-side"]
        time.sleep(0.3)
        assert sub_a.drain() == [] and sub_b.drain() == []

        # Routes change on both sides while apart: a loses p/#, b gains q/#.
        sub_a.stop()
        subs.remove(sub_a)
        new_b = NsSub(ns_b, "q/#")
        subs.append(new_b)
        new_b.wait_subscribed()

        # Heal.
        mark_a, mark_b = a.log_size(), b.log_size()
        t_heal = time.monotonic()
        run("-n", ns_a, "link", "set", dev_a, "up")
        run("-n", ns_b, "link", "set", dev_b, "up")
        a.wait_log(r"node b joined", timeout=5, since=mark_a)
        b.wait_log(r"node a joined", timeout=5, since=mark_b)
        # b learns a's current routes: only r/# is left (p/# went while apart).
        b.wait_log(r"cluster: 1 routes from a", timeout=5, since=mark_b)
        left = 5 - (time.monotonic() - t_heal)
        wait_flow(ns_a, new_b, "q/new", max(left, 0.5))
        wait_flow(ns_b, keep_a, "r/again", max(5 - (time.monotonic() - t_heal), 0.5))
        converged = time.monotonic() - t_heal
        assert converged < 5.0
        # And the route a gave up is gone on b: a publish on p/ from b reaches only b.
        assert re.search(r"cluster: 1 routes from a", b.log_text()[mark_b:])
        print(f"partition healed and routes converged in {converged:.2f}s")
    finally:
        for s in subs:
            s.stop()
