# Several listeners: two TCP listeners on different ports share one broker, an IPv6 listener
# on ::1, and a bad listener configuration stops the node at start-up.

import os
import socket
import subprocess

import pytest

import helpers
from helpers import is_mosquitto, unique

pytestmark = pytest.mark.skipif(is_mosquitto(), reason="Tern listener configuration")


def free_ports(n, family=socket.AF_INET, host="127.0.0.1"):
    socks = [socket.socket(family) for _ in range(n)]
    for s in socks:
        s.bind((host, 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_two_tcp_listeners_share_one_broker(broker, clients):
    (second,) = free_ports(1)
    b = broker(**{"listeners.tcp.second": {"bind": f"127.0.0.1:{second}"}})
    topic = unique("two")
    sub = clients.paho(second)
    sub.subscribe(topic, 1)
    pub = clients.paho(b.port)
    pub.publish(topic, b"across listeners", qos=1)
    assert sub.expect_one().payload == b"across listeners"
    log = b.log_text()
    assert "listener tcp.default" in log and "listener tcp.second" in log


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_ipv6_listener(broker):
    (port6,) = free_ports(1, socket.AF_INET6, "::1")
    b = broker(**{"listeners.tcp.v6": {"bind": f"[::1]:{port6}"}})
    topic = unique("v6")
    sub = helpers.MosquittoSub(b.port, topic, qos=1, count=1)
    try:
        sub.wait_subscribed()
        r = subprocess.run([helpers.MOSQUITTO_PUB, "-h", "::1", "-p", str(port6), "-t", topic,
                            "-m", "over-ipv6", "-q", "1"], capture_output=True, timeout=10)
        assert r.returncode == 0, r.stderr
        assert sub.expect_lines(1) == [f"{topic} over-ipv6"]
    finally:
        sub.stop()
    # Raw IPv6 socket: CONNACK comes back, and the peer address is logged in [v6]:port form.
    with socket.create_connection(("::1", port6), timeout=5) as s:
        s.sendall(helpers.connect_packet("v6-raw"))
        assert s.recv(4) == b"\x20\x02\x00\x00"
    deadline = helpers.time.monotonic() + 5
    while "connected from [::1]:" not in b.log_text():
        assert helpers.time.monotonic() < deadline, "no log line with the IPv6 peer"
        helpers.time.sleep(0.02)
    # The IPv6 listener does not also answer on IPv4.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port6), timeout=2).close()


def test_unbindable_listener_stops_the_node(tmp_path):
    binary = os.environ.get("TERN_BROKER_NODE")
    (port,) = free_ports(1)
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    try:
        conf = tmp_path / "tern.toml"
        conf.write_text(f'[node]\ndata_dir = "{tmp_path}/data"\n'
                        f'[listeners.tcp.a]\nbind = "127.0.0.1:{free_ports(1)[0]}"\n'
                        f'[listeners.ws.b]\nbind = "127.0.0.1:{port}"\n')
        r = subprocess.run([binary, "--config", str(conf)], capture_output=True, timeout=20)
        assert r.returncode != 0
        assert b"ws.b" in r.stdout + r.stderr
    finally:
        holder.close()


def test_missing_certificate_file_stops_the_node(tmp_path):
    binary = os.environ.get("TERN_BROKER_NODE")
    conf = tmp_path / "tern.toml"
    conf.write_text(f'[node]\ndata_dir = "{tmp_path}/data"\n'
                    f'[listeners.ssl.s]\nbind = "127.0.0.1:{free_ports(1)[0]}"\n'
                    f'certfile = "{tmp_path}/nope.pem"\nkeyfile = "{tmp_path}/nope.key"\n')
    r = subprocess.run([binary, "--config", str(conf)], capture_output=True, timeout=20)
    assert r.returncode != 0
    out = (r.stdout + r.stderr).decode()
    assert "ssl.s" in out and "nope.pem" in out
