# Crash safety ([store] durability, docs/durability.md): what a client was told is safe
# survives kill -9 of the broker. Persistent sessions with their subscriptions, queued and
# in-flight messages and QoS 2 state come back from the store; QoS 1 is delivered at least
# once and QoS 2 exactly once, in order per publisher, across any number of crashes. A store
# that cannot write refuses what needs it; a store that cannot be opened stops the node.
#
# The kill loop runs TERN_KILL_LOOPS crashes (default 20); scripts/crash-soak.sh runs more.

import os
import random
import subprocess
import time

import pytest

import helpers
from streams import Publisher, Subscriber, check_stream
from helpers import (PUBCOMP, PUBLISH, PUBREC, PUBREL, pubcomp_packet, pubrec_packet,
                     pubrel_packet, unique)

pytestmark = pytest.mark.skipif(helpers.is_mosquitto(), reason="Tern's store")

KILL_LOOPS = int(os.environ.get("TERN_KILL_LOOPS", "20"))


def durable_broker(broker, **sections):
    sections.setdefault("session", {}).setdefault("expiry_interval", "1h")
    return broker(**sections)


# ---------------------------------------------------------------------------------------------
# One crash at a known moment
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("qos", [1, 2])
def test_offline_queue_survives_kill9_in_order(broker, clients, qos):
    b = durable_broker(broker)
    cid, topic = unique("off"), unique("q")
    sub = clients.raw_connected(b.port, cid, clean=False)
    sub.subscribe([(topic, qos)])
    sub.disconnect()
    pub = clients.raw_connected(b.port)
    payloads = [f"m{i}".encode() for i in range(200)]
    for p in payloads:
        pub.publish_acked(topic, p, qos=qos)  # acknowledged: must survive
    pub.close()
    b.restart(graceful=False)
    back = clients.raw(b.port)
    ack = back.connect_ok(cid, clean=False)
    assert ack.session_present == 1
    got = back.receive_publishes(len(payloads), timeout=10)
    assert [p.payload for p in got] == payloads
    back.expect_no_packet(0.3)


def test_subscription_acknowledged_survives_kill9(broker, clients):
    b = durable_broker(broker)
    cid, topic = unique("subk"), unique("t")
    sub = clients.raw_connected(b.port, cid, clean=False)
    sub.subscribe([(topic, 1)])  # the SUBACK says it exists
    b.restart(graceful=False)
    pub = clients.raw_connected(b.port)
    pub.publish_acked(topic, b"after the crash", qos=1)
    back = clients.raw(b.port)
    assert back.connect_ok(cid, clean=False).session_present == 1
    assert [p.payload for p in back.receive_publishes(1)] == [b"after the crash"]


def test_inflight_qos1_resent_with_dup_after_kill9(broker, clients):
    b = durable_broker(broker)
    cid, topic = unique("inf"), unique("t")
    sub = clients.raw_connected(b.port, cid, clean=False)
    sub.subscribe([(topic, 1)])
    pub = clients.raw_connected(b.port)
    pub.publish_acked(topic, b"unacked", qos=1)
    first = sub.expect(PUBLISH)  # received, never acknowledged
    assert not first.dup
    b.restart(graceful=False)
    back = clients.raw(b.port)
    back.connect_ok(cid, clean=False)
    again = back.expect(PUBLISH)
    assert (again.payload, again.pid, again.dup) == (b"unacked", first.pid, True)


def test_qos2_to_subscriber_exactly_once_across_kill9(broker, clients):
    """PUBREC received, crash before PUBCOMP: the broker resends PUBREL, never the PUBLISH."""
    b = durable_broker(broker)
    cid, topic = unique("q2s"), unique("t")
    sub = clients.raw_connected(b.port, cid, clean=False)
    sub.subscribe([(topic, 2)])
    pub = clients.raw_connected(b.port)
    pub.publish_acked(topic, b"once", qos=2)
    p = sub.expect(PUBLISH)
    sub.send(pubrec_packet(p.pid))
    sub.expect(PUBREL, pid=p.pid)  # the PUBREC is on disk once PUBREL is sent
    b.restart(graceful=False)
    back = clients.raw(b.port)
    back.connect_ok(cid, clean=False)
    rel = back.expect(PUBREL)
    assert rel.pid == p.pid
    back.send(pubcomp_packet(p.pid))
    back.expect_no_packet(0.5)


def test_qos2_from_publisher_routed_once_across_kill9(broker, clients):
    """PUBREC sent, crash before PUBREL: the publisher's resent PUBLISH (DUP) is not routed
    a second time, and its PUBREL completes it."""
    b = durable_broker(broker)
    topic, pcid = unique("t"), unique("q2p")
    sub_id = unique("q2sub")
    sub = clients.raw_connected(b.port, sub_id, clean=False)
    sub.subscribe([(topic, 2)])
    sub.disconnect()
    pub = clients.raw_connected(b.port, pcid, clean=False)
    pid = pub.publish(topic, b"exactly once", qos=2)
    pub.expect_ack(PUBREC, pid)
    b.restart(graceful=False)
    pub = clients.raw(b.port)
    assert pub.connect_ok(pcid, clean=False).session_present == 1
    pub.publish(topic, b"exactly once", qos=2, pid=pid, dup=True)
    pub.expect_ack(PUBREC, pid)
    pub.send(pubrel_packet(pid))
    pub.expect_ack(PUBCOMP, pid)
    back = clients.raw(b.port)
    back.connect_ok(sub_id, clean=False)
    got = back.receive_publishes(1)
    assert got[0].payload == b"exactly once"
    back.expect_no_packet(0.5)


def test_session_expired_while_down_is_gone(broker, clients):
    b = durable_broker(broker, session={"expiry_interval": "1s"})
    cid = unique("exp")
    sub = clients.raw_connected(b.port, cid, clean=False)
    sub.subscribe([(unique("t"), 1)])
    sub.disconnect()  # the expiry counts from here
    # The session writes "away since" as it hears of the disconnect, a moment later; a crash
    # before that finds it connected, and its expiry then counts from the restart.
    time.sleep(0.3)
    b.kill()
    time.sleep(1.5)
    b.start(b.port)
    back = clients.raw(b.port)
    assert back.connect_ok(cid, clean=False).session_present == 0


def test_durability_none_loses_sessions_on_kill9(broker, clients):
    """The old behaviour, kept as a choice: written at a graceful stop only."""
    b = durable_broker(broker, store={"durability": "none"})
    cid, topic = unique("none"), unique("t")
    sub = clients.raw_connected(b.port, cid, clean=False)
    sub.subscribe([(topic, 1)])
    sub.disconnect()
    clients.raw_connected(b.port).publish_acked(topic, b"x", qos=1)
    b.restart(graceful=False)
    back = clients.raw(b.port)
    assert back.connect_ok(cid, clean=False).session_present == 0


@pytest.mark.parametrize("mode", ["batch", "sync"])
def test_graceful_restart_keeps_everything(broker, clients, mode):
    b = durable_broker(broker, store={"durability": mode})
    cid, topic = unique("grace"), unique("t")
    sub = clients.raw_connected(b.port, cid, clean=False)
    sub.subscribe([(topic, 2)])
    sub.disconnect()
    pub = clients.raw_connected(b.port)
    for i in range(20):
        pub.publish_acked(topic, f"g{i}".encode(), qos=1 + i % 2)
    b.restart(graceful=True)
    b.restart(graceful=False)  # and a crash right after: nothing written twice or lost
    back = clients.raw(b.port)
    back.connect_ok(cid, clean=False)
    assert [p.payload for p in back.receive_publishes(20)] == [f"g{i}".encode()
                                                               for i in range(20)]
    back.expect_no_packet(0.3)


# ---------------------------------------------------------------------------------------------
# A store that cannot be opened, a disk that is full
# ---------------------------------------------------------------------------------------------

def test_corrupt_store_stops_the_node_with_exit_2(tmp_path, broker):
    b = durable_broker(broker)
    b.stop()
    store_dir = b.data_dir / "store"
    manifests = [p for p in store_dir.iterdir() if p.name.startswith("MANIFEST-")]
    assert manifests
    for m in manifests:
        m.write_bytes(b"\x00garbage" * 64)
    r = subprocess.run(b._command(b.port), capture_output=True, text=True, timeout=20,
                       cwd=b.dir)
    assert r.returncode == 2, r.stderr[-2000:]
    assert str(store_dir) in r.stderr, r.stderr[-2000:]
    assert "docs/durability.md" in r.stderr


def _mount_tmpfs(path, size):
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); the fault-injecting "
                    f"store of store_test covers the same paths")


def _fill(path):
    """Writes a file until the file system is full; returns its path."""
    filler = path / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def _metric(b, name):
    import mgmt_helpers
    status, _, body = mgmt_helpers.Api(mgmt_helpers.http_port(b)).request("GET", "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise KeyError(name)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_full_disk_refuses_then_recovers_without_loss(tmp_path, broker, clients):
    mnt = tmp_path / "small"
    _mount_tmpfs(mnt, "24m")
    try:
        b = durable_broker(broker, node={"data_dir": str(mnt / "data")},
                           store={"min_free_mb": 2},
                           http={"port": 0, "users": ["admin:public"]})
        cid, topic = unique("full"), unique("t")
        sub = clients.raw_connected(b.port, cid, clean=False)
        sub.subscribe([(topic, 1)])
        sub.disconnect()
        pub = clients.raw_connected(b.port)
        pub.publish_acked(topic, b"before", qos=1)
        filler = _fill(mnt)
        # MQTT 3.1.1 has no way to say "not stored": the publisher is disconnected, with no
        # PUBACK, and sends again later. (The first write to fail may already be the
        # acknowledged one's neighbour: keep publishing until the store notices.)
        refused = False
        big = b"x" * 65536
        for i in range(200):
            try:
                pid = pub.publish(topic, big, qos=1)
                pub.expect_ack(helpers.PUBACK, pid, timeout=5)
            except (AssertionError, helpers.ConnectionClosed):
                refused = True
                break
        assert refused, "the broker acknowledged everything on a full disk"
        assert "the store cannot write" in b.log_text() or "writing failed" in b.log_text()
        # MQTT 5: PUBACK with 0x80 while the disk stays full, and the connection stays.
        import mqtt5
        p5 = mqtt5.RawClient5(b.port)
        p5.connect_ok(unique("p5"))
        pid = p5.publish(topic, b"refused", qos=1)
        ack = p5.expect_ack(helpers.PUBACK, pid)
        assert ack.rc == 0x80
        assert _metric(b, "tern_store_healthy") == 0
        assert _metric(b, "tern_store_refused_publishes_total") >= 2
        assert _metric(b, "tern_store_write_failures_total") >= 1
        os.unlink(filler)
        # The store tries again by itself; then publishes are accepted and kept.
        deadline = time.monotonic() + 15
        while True:
            pid = p5.publish(topic, b"after", qos=1)
            ack = p5.expect_ack(helpers.PUBACK, pid)
            if ack.rc in (0x00, 0x10):
                break
            assert time.monotonic() < deadline, "the store did not recover"
            time.sleep(0.2)
        b.restart(graceful=False)
        back = clients.raw(b.port)
        back.connect_ok(cid, clean=False)
        got = [p.payload for p in back.receive_publishes(2, timeout=10)]
        # Everything acknowledged, in order; the big ones acknowledged before the disk filled
        # up are there too (nothing refused is).
        got += [p.payload for p in _drain(back)]
        assert got[0] == b"before" and got[-1] == b"after", [g[:10] for g in got]
        assert b"refused" not in got
        b.stop()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _drain(c, quiet=0.5):
    out = []
    while True:
        try:
            p = c.read_packet(quiet)
        except TimeoutError:
            return out
        if p.type == PUBLISH:
            out.append(p)
            if p.qos == 1:
                c.send(helpers.puback_packet(p.pid))


# ---------------------------------------------------------------------------------------------
# kill -9 in a loop under continuous QoS 1 and QoS 2 traffic
# ---------------------------------------------------------------------------------------------

def _publish_through_kills(b, base, kills):
    """p1 (QoS 1 on base/a) and p2 (QoS 2 on base/b) publish while broker `b` is killed with
    SIGKILL `kills` times at random moments and started again; returns them once every
    message they sent is acknowledged."""
    pubs = [Publisher(b.port, "p1", base + "/a", 1), Publisher(b.port, "p2", base + "/b", 2)]
    rng = random.Random(os.getpid())
    try:
        for _ in range(kills):
            time.sleep(rng.uniform(0.2, 0.8))
            b.kill()
            b.start(b.port)
        time.sleep(0.5)
    finally:
        for p in pubs:
            p.stop.set()
    deadline = time.monotonic() + 60
    while not all(p.all_acked() for p in pubs):
        assert time.monotonic() < deadline, [(p.name, p.sent, p.acked()) for p in pubs]
        time.sleep(0.1)
    return pubs


def test_kill9_loop_loses_nothing_acknowledged(broker, clients):
    # Offline queues are bounded (max_queued_messages drops the oldest): large enough here
    # that the subscribers away during the whole loop keep everything (both publishers send
    # about 4,000 messages per kill).
    queued = max(200000, KILL_LOOPS * 8000)
    b = durable_broker(broker, log={"level": "info"},
                       session={"expiry_interval": "1h", "max_queued_messages": queued})
    base = unique("loop")
    subs = [Subscriber(b.port, "on1", base + "/#", 1), Subscriber(b.port, "on2", base + "/#", 2)]
    offline = []
    for name, q in (("off1", 1), ("off2", 2)):
        s = Subscriber(b.port, name, base + "/#", q)
        offline.append(s)
    deadline = time.monotonic() + 10
    while not all(s.c.is_connected() for s in subs + offline):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)  # SUBACKs
    for s in offline:
        s.close()  # away; their sessions queue (and their routes stay)
    pubs = _publish_through_kills(b, base, KILL_LOOPS)
    # The subscribers that were away take their sessions back: every message waited for them.
    back = [Subscriber(b.port, s.name, base + "/#", s.qos, s.client_id, s.received())
            for s in offline]
    everyone = subs + back
    total = sum(p.sent for p in pubs)
    deadline = time.monotonic() + 60
    while True:
        counts = [len(set(s.received())) for s in everyone]
        if all(c >= total for c in counts) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    time.sleep(0.5)  # anything duplicated arrives too
    for s in everyone:
        s.close()
    for p in pubs:
        p.c.loop_stop()
        p.c.disconnect()
    for s in everyone:
        for p in pubs:
            check_stream(s, p)
    assert total > 20 * KILL_LOOPS, f"only {total} messages published"


def test_kill9_loop_bridge_queue_loses_nothing_acknowledged(broker, clients):
    """A node bridging QoS 1/2 to a remote broker is killed again and again: every message it
    acknowledged reaches the remote's subscriber, in order (at least once: what was in flight
    to the remote at a crash is sent again)."""
    remote = broker()
    base = unique("br")
    sink = Subscriber(remote.port, "sink", "site1/#", 1)
    deadline = time.monotonic() + 10
    while not sink.c.is_connected():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)  # SUBACK
    bridge = {"address": f"{helpers.HOST}:{remote.port}", "reconnect_interval": "100ms",
              "keepalive": "10s", "max_queued": 200000,
              "topics": [{"filter": base + "/#", "direction": "out", "qos": 2,
                          "remote_prefix": "site1/"}]}
    b = durable_broker(broker, log={"level": "info"}, **{"bridges.up": bridge})
    pubs = _publish_through_kills(b, base, max(5, KILL_LOOPS // 4))
    total = sum(p.sent for p in pubs)
    deadline = time.monotonic() + 60
    while len(set(sink.received())) < total and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    sink.close()
    for p in pubs:
        p.c.loop_stop()
        p.c.disconnect()
    for p in pubs:
        check_stream(sink, p)
    assert total > 100, f"only {total} messages published"
