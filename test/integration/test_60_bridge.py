# Bridges: a Tern node forwards topics to and from a remote broker (a second, separate Tern
# node, or Mosquitto), with prefixes, QoS 1 kept across a remote outage, no loops, and a
# refused CONNECT retried and logged.
import re
import time

import pytest

import conftest
import helpers
import mgmt_helpers
from cluster_nodes import wait_route
from flow_pumps import Pump, assert_exactly_once_in_order, publishes, run

pytestmark = pytest.mark.skipif(helpers.is_mosquitto(), reason="bridges are a Tern feature")

BRIDGE_NAME = "up"


def bridge_section(remote_port, topics, **kw):
    cfg = {"address": f"{helpers.HOST}:{remote_port}", "reconnect_interval": "200ms",
           "keepalive": "10s", "topics": topics}
    cfg.update(kw)
    return {f"bridges.{BRIDGE_NAME}": cfg}


def wait_log(b, pattern, count=1, timeout=10.0):
    """Waits until `pattern` (a regex) occurs `count` times in b's log since its last start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.findall(pattern, b.log_text()[b.log_start:])
        if len(found) >= count:
            return found
        b.assert_alive()
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not logged {count} time(s) within {timeout}s\n"
                         f"{b.log_tail()}")


def connected(b, count=1):
    return wait_log(b, rf"bridge {BRIDGE_NAME}: connected to ", count)


@pytest.fixture
def mosquitto(tmp_path):
    """Debian's mosquitto on a free port, stopped at the end."""
    started = []

    def start():
        m = conftest.Broker("mosquitto", tmp_path / f"mosquitto{len(started)}", {}, False)
        started.append(m)
        return m.start()

    yield start
    for m in started:
        m.stop()


@pytest.fixture
def clients():
    made = []

    def make(port, **kw):
        c = helpers.Client(port, **kw)
        made.append(c)
        c.connect()
        return c

    yield make
    for c in made:
        c.stop()


def check_out_and_in(local, remote_port, clients):
    """out: sensors/# goes to the remote under site1/; in: site1/cmd/# comes back here
    under from-b/."""
    remote_sub = clients(remote_port)
    remote_sub.subscribe("site1/#", qos=1)
    local_sub = clients(local.port)
    local_sub.subscribe("from-b/#", qos=1)
    pub = clients(local.port)
    pub.publish("sensors/t1", b"21.5", qos=1)
    m = remote_sub.expect_one(timeout=5)
    assert (m.topic, m.payload, m.qos) == ("site1/sensors/t1", b"21.5", 1)
    # A topic no rule names stays here.
    pub.publish("other/t1", b"x", qos=1)
    remote_sub.expect_none(0.3)

    rpub = clients(remote_port)
    rpub.publish("site1/cmd/reboot", b"now", qos=1)
    m = local_sub.expect_one(timeout=5)
    assert (m.topic, m.payload, m.qos) == ("from-b/cmd/reboot", b"now", 1)
    # The remote's own subscriber has it once: the bridge did not send it back.
    assert [m.topic for m in remote_sub.expect(1)] == ["site1/cmd/reboot"]
    remote_sub.expect_none(0.3)
    local_sub.expect_none(0.2)


TOPICS = [
    {"filter": "sensors/#", "direction": "out", "qos": 1, "remote_prefix": "site1/"},
    {"filter": "cmd/#", "direction": "in", "qos": 1, "local_prefix": "from-b/",
     "remote_prefix": "site1/"},
]


def test_out_and_in_with_prefixes_to_tern(broker, clients):
    remote = broker()
    local = broker(**bridge_section(remote.port, TOPICS))
    connected(local)
    check_out_and_in(local, remote.port, clients)


def test_out_and_in_with_prefixes_to_mosquitto(broker, mosquitto, clients):
    remote = mosquitto()
    local = broker(**bridge_section(remote.port, TOPICS, protocol="v5"))
    connected(local)
    check_out_and_in(local, remote.port, clients)


def test_metrics_and_api(broker, clients):
    remote = broker()
    local = mgmt_helpers.start(broker, **bridge_section(remote.port, TOPICS))
    connected(local)
    remote_sub = clients(remote.port)
    remote_sub.subscribe("site1/#", qos=1)
    pub = clients(local.port)
    for i in range(3):
        pub.publish(f"sensors/{i}", b"v", qos=1)
    remote_sub.expect(3)
    api = mgmt_helpers.Api(local.http_port)
    rows = mgmt_helpers.wait_until(
        lambda: [r for r in api.get("/api/v1/bridges") if r["forwarded_out"] == 3],
        what="3 messages forwarded in the API")
    assert rows[0]["name"] == BRIDGE_NAME and rows[0]["connected"] is True
    status, _, body = api.request("GET", "/metrics")
    assert status == 200
    text = body.decode()
    assert f'tern_bridge_connected{{bridge="{BRIDGE_NAME}"}} 1' in text
    assert f'tern_bridge_messages_out_total{{bridge="{BRIDGE_NAME}"}} 3' in text


def bridged_to_stopped_remote(broker, clients, sink_id):
    """A remote with a persistent subscriber `sink_id` on site1/# (its session outlives the
    remote's restart), a local node bridged to it, then the remote stopped."""
    remote = broker()
    sub = clients(remote.port, client_id=sink_id, clean_session=False)
    sub.subscribe("site1/#", qos=1)
    sub.disconnect()
    local = broker(**bridge_section(remote.port, TOPICS))
    connected(local)
    remote.stop()
    wait_log(local, rf"bridge {BRIDGE_NAME}: disconnected from ")
    return remote, local


def expect_sequence_once(clients, remote, sink_id, topic, n):
    """The sink gets messages 0..n-1 on `topic` once each, in order, and nothing more."""
    sub = clients(remote.port, client_id=sink_id, clean_session=False)
    got = sub.expect(n, timeout=10)
    assert [m.payload for m in got] == [str(i).encode() for i in range(n)]
    assert all(m.topic == topic for m in got)
    sub.expect_none(1.0)  # exactly once: nothing resent twice


def test_qos1_queued_while_remote_down_delivered_once_in_order(broker, clients):
    remote, local = bridged_to_stopped_remote(broker, clients, "bridge-sink")
    pub = clients(local.port)
    n = 20
    for i in range(n):
        pub.publish("sensors/seq", str(i).encode(), qos=1)
    remote.start(remote.port)
    connected(local, count=2)
    expect_sequence_once(clients, remote, "bridge-sink", "site1/sensors/seq", n)


@pytest.mark.parametrize("protocol", ["v5", "v4"])
def test_both_directions_do_not_loop(broker, clients, protocol):
    remote = broker()
    local = broker(**bridge_section(
        remote.port, [{"filter": "loop/#", "direction": "both", "qos": 1}], protocol=protocol))
    connected(local)
    # The bridge has subscribed on the remote once its SUBACK is in; a probe through the
    # remote shows when.
    local_sub = clients(local.port)
    local_sub.subscribe("loop/#", qos=1)
    remote_sub = clients(remote.port)
    remote_sub.subscribe("loop/#", qos=1)
    rpub = clients(remote.port)
    deadline = time.monotonic() + 5
    while not local_sub.collect(1, timeout=0.2):
        assert time.monotonic() < deadline, "the bridge never brought loop/# in"
        rpub.publish("loop/ready", b"probe", qos=1)
    time.sleep(0.3)
    local_sub.drain()
    remote_sub.drain()

    # Remote -> here: once on each side, never sent back out.
    rpub.publish("loop/b", b"from-b", qos=1)
    assert [m.payload for m in local_sub.expect(1)] == [b"from-b"]
    assert [m.payload for m in remote_sub.expect(1)] == [b"from-b"]
    time.sleep(0.5)
    assert local_sub.drain() == [] and remote_sub.drain() == []

    # Here -> remote: once there; v5 No Local keeps the echo away, a v4 remote sends it
    # back once (it cannot tell the bridge's own messages), and it stops there.
    pub = clients(local.port)
    pub.publish("loop/a", b"from-a", qos=1)
    assert [m.payload for m in remote_sub.expect(1)] == [b"from-a"]
    assert local_sub.expect(1)[0].payload == b"from-a"
    time.sleep(0.8)
    extra_local = local_sub.drain()
    assert remote_sub.drain() == []
    assert len(extra_local) == (0 if protocol == "v5" else 1), extra_local


def test_refused_connect_is_retried_and_logged(broker):
    remote = broker(auth={"allow_anonymous": False})
    local = broker(**bridge_section(remote.port, TOPICS, username="nobody", password="wrong"))
    found = wait_log(local, rf"bridge {BRIDGE_NAME}: connection to \S+ failed: "
                            r"CONNECT refused with code (\d+)", count=3)
    assert all(code in ("4", "5") for code in found), found
    local.assert_alive()


def test_bad_bridge_config_names_the_line(tmp_path):
    conf = tmp_path / "bad.toml"
    conf.write_text('[bridges.x]\naddress = "127.0.0.1:1"\n'
                    'topics = [{ filter = "a/#", direction = "sideways" }]\n')
    import os
    import subprocess
    r = subprocess.run([os.environ["TERN_BROKER_NODE"], "--config", str(conf)],
                       capture_output=True, timeout=10, cwd=tmp_path)
    assert r.returncode != 0
    out = (r.stdout + r.stderr).decode()
    assert "bad.toml:3" in out and "bridges.x.topics" in out, out


def test_bridge_tls_file_that_cannot_be_loaded_stops_the_start(broker, tmp_path):
    b = conftest.Broker("tern", tmp_path / "n", bridge_section(
        1, TOPICS, tls=True, cacertfile=str(tmp_path / "missing.pem")), False)
    import subprocess
    port = conftest.free_port()
    r = subprocess.run(b._command(port), capture_output=True, timeout=10, cwd=b.dir)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode != 0
    assert f"bridge {BRIDGE_NAME}: cannot load cacertfile" in out, out


def test_cluster_runs_the_bridge_on_one_member_and_moves_it(broker, cluster, clients):
    """node = "*": only the live member with the lowest name runs the bridge; when it dies,
    the next one takes over."""
    remote = broker()
    bridge_toml = (f'\n[bridges.{BRIDGE_NAME}]\naddress = "{helpers.HOST}:{remote.port}"\n'
                   'reconnect_interval = "200ms"\nnode = "*"\n'
                   'topics = [{ filter = "sensors/#", direction = "out", qos = 1 }]\n')
    n1 = cluster.node("n1", cluster_toml=bridge_toml)
    n2 = cluster.node("n2", cluster_toml=bridge_toml)
    n1.start()
    n2.start(join=[n1.cluster_addr])
    cluster.wait_mesh([n1, n2])
    n1.wait_log(rf"bridge {BRIDGE_NAME}: connected to ")
    n2.wait_log(rf"bridge {BRIDGE_NAME}: n1 runs it now")
    assert not re.search(rf"bridge {BRIDGE_NAME}: connected to ", n2.log_since_start())

    remote_sub = clients(remote.port)
    remote_sub.subscribe("sensors/#", qos=1)
    pub2 = clients(n2.port)
    # Published on n2, forwarded by the cluster to n1, which bridges it: exactly once.
    deadline = time.monotonic() + 5
    while not remote_sub.collect(1, timeout=0.2):
        assert time.monotonic() < deadline, "n2 never reached the bridge"
        pub2.publish("sensors/probe", b"p", qos=1)
    time.sleep(0.3)
    remote_sub.drain()
    pub2.publish("sensors/a", b"1", qos=1)
    assert [m.payload for m in remote_sub.expect(1)] == [b"1"]
    remote_sub.expect_none(0.5)

    n1.kill9()
    n2.wait_log(rf"bridge {BRIDGE_NAME}: connected to ", timeout=10)
    pub2.publish("sensors/b", b"2", qos=1)
    assert [m.payload for m in remote_sub.expect(1, timeout=5)] == [b"2"]
    remote_sub.expect_none(0.5)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    import subprocess
    from pathlib import Path
    out = tmp_path_factory.mktemp("certs")
    gen = Path(__file__).resolve().parents[2] / "scripts" / "gen-certs.sh"
    subprocess.run(["bash", str(gen), str(out)], check=True, capture_output=True)
    return out


def tls_remote(broker, certs):
    port = conftest.free_port()
    remote = broker(**{"listeners.ssl.t": {"bind": f"{helpers.HOST}:{port}",
                                           "certfile": str(certs / "server.pem"),
                                           "keyfile": str(certs / "server.key")}})
    remote.tls_port = port
    return remote


def test_tls_to_the_remote(broker, clients, certs):
    remote = tls_remote(broker, certs)
    local = broker(**bridge_section(remote.tls_port, TOPICS, tls=True,
                                    cacertfile=str(certs / "ca.pem")))
    connected(local)
    remote_sub = clients(remote.port)
    remote_sub.subscribe("site1/#", qos=1)
    clients(local.port).publish("sensors/tls", b"secret", qos=1)
    m = remote_sub.expect_one(timeout=5)
    assert (m.topic, m.payload) == ("site1/sensors/tls", b"secret")


@pytest.mark.parametrize("ca,server_name", [("other-ca.pem", ""), ("ca.pem", "wrong.example")])
def test_tls_remote_not_verified_is_refused_and_retried(broker, certs, ca, server_name):
    remote = tls_remote(broker, certs)
    local = broker(**bridge_section(remote.tls_port, TOPICS, tls=True,
                                    cacertfile=str(certs / ca), server_name=server_name))
    wait_log(local, rf"bridge {BRIDGE_NAME}: connection to \S+ failed: TLS handshake failed",
             count=2)
    assert not re.search(rf"bridge {BRIDGE_NAME}: connected to ", local.log_text())


@pytest.mark.parametrize("graceful", [True, False], ids=["sigterm", "kill9"])
def test_queue_survives_a_restart_of_the_bridging_node(broker, clients, graceful):
    remote, local = bridged_to_stopped_remote(broker, clients, "bridge-sink-2")
    pub = clients(local.port)
    n = 10
    for i in range(n):
        pub.publish("sensors/keep", str(i).encode(), qos=1)  # each one acknowledged
    pub.disconnect()
    # Written ahead before each PUBACK ([store] durability batch): a crash keeps them too.
    local.restart(graceful=graceful)
    wait_log(local, rf"bridge {BRIDGE_NAME}: {n} message\(s\) for the remote restored")
    remote.start(remote.port)
    connected(local)
    expect_sequence_once(clients, remote, "bridge-sink-2", "site1/sensors/keep", n)


def paused_through_bridge(clients, sub_port, topic, pub_port, pub_topic, probe, pub_probe, n):
    """A raw subscriber of `topic` on `sub_port` that does not read, and a raw publisher that
    writes `n` QoS 1 messages to `pub_topic` on `pub_port` once the bridge's route is in place
    (paho probes: `probe` as subscribed, `pub_probe` as published). Returns the two pumps once
    the publisher has been paused (the subscriber's client id is sp.client_id)."""
    sub = helpers.RawClient(sub_port, rcvbuf=4096)
    sub_id = helpers.unique("slow")
    sub.connect_ok(sub_id)
    sub.subscribe([(topic, 1)])
    sp = Pump(sub)
    sp.client_id = sub_id
    sp.reading = False
    probe_sub = clients(sub_port)
    probe_sub.subscribe(probe, qos=0)
    wait_route(clients(pub_port), probe_sub, pub_probe)  # the bridge subscribed
    pub = helpers.RawClient(pub_port)
    pub.connect_ok()
    pp = Pump(pub)
    pp.queue(publishes(pub_topic, 0, n))
    assert not run([pp], lambda: len(pp.pubacks) == n, timeout=60, stall=3), \
        "the publisher was never paused"
    return sp, pp


def read_all(sp, pp, n):
    """The subscriber reads: every message arrives once, in order, and nothing more."""
    sp.reading = True
    run([sp, pp], lambda: len(sp.seqs) >= n and len(pp.pubacks) == n, timeout=180)
    run([sp, pp], lambda: False, timeout=3, stall=0.5)
    assert_exactly_once_in_order(sp.seqs, n)
    sp.c.close()
    pp.c.close()


def test_slow_local_subscriber_pauses_what_the_bridge_brings_in(broker, clients):
    # Messages a bridge brings in are published here like a client's: a local subscriber that
    # does not read fills its session to the high-water mark, then the bridge holds back what
    # its remote sends (whose own publishers are paused in turn) instead of queueing everything
    # here. Once the subscriber reads, every message arrives once and in order.
    n = 5000
    remote = broker()
    local = mgmt_helpers.start(
        broker, flow={"max_pause": "120s"},
        **bridge_section(remote.port, [{"filter": "cmd/#", "direction": "in", "qos": 1,
                                        "local_prefix": "from-b/", "remote_prefix": "site1/"}]))
    connected(local)
    sp, pp = paused_through_bridge(clients, local.port, "from-b/cmd/x", remote.port,
                                   "site1/cmd/x", "from-b/cmd/probe", "site1/cmd/probe", n)
    api = mgmt_helpers.Api(local.http_port)
    queued = api.get(f"/api/v1/sessions/{sp.client_id}")["queue_len"]
    assert queued <= 1100, f"{queued} messages queued for the local subscriber"
    read_all(sp, pp, n)


def test_slow_remote_subscriber_pauses_local_publishers_instead_of_dropping(broker, clients):
    # The other direction: the remote's subscriber does not read, the remote pauses the bridge
    # (its publisher), the bridge's queue reaches the high-water mark while its remote is
    # connected, and the local publisher is paused, instead of the queue filling to max_queued
    # (10,000) and dropping. Then everything arrives once, in order.
    n = 12000
    remote = broker(flow={"max_pause": "120s"})
    local = mgmt_helpers.start(
        broker, flow={"max_pause": "120s"},
        **bridge_section(remote.port, [{"filter": "sensors/#", "direction": "out", "qos": 1,
                                        "remote_prefix": "site1/"}]))
    connected(local)
    sp, pp = paused_through_bridge(clients, remote.port, "site1/sensors/x", local.port,
                                   "sensors/x", "site1/sensors/probe", "sensors/probe", n)
    api = mgmt_helpers.Api(local.http_port)
    (b,) = api.get("/api/v1/bridges")
    assert b["dropped"] == 0
    assert b["queued"] <= 1100, f"{b['queued']} queued in the bridge"
    read_all(sp, pp, n)
    assert api.get("/api/v1/bridges")[0]["dropped"] == 0
