# tern-bench against a real broker: delivery checking (--check) passes when every QoS 1 message
# arrives once and in order, fails when the broker drops some, and TLS works against Mosquitto's
# TLS listener with certificates made for the test.

import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

import helpers
from conftest import MOSQUITTO_BIN, Broker, free_port

OPENSSL = shutil.which("openssl")


def bench_bin():
    path = os.environ.get("TERN_BENCH")
    if not path:
        node = os.environ.get("TERN_BROKER_NODE", "")
        path = os.path.join(os.path.dirname(node), "tern-bench") if node else ""
    if not path or not os.access(path, os.X_OK):
        pytest.skip("tern-bench not built (set TERN_BENCH or TERN_BROKER_NODE)")
    return path


def run_bench(port, *args, timeout=60):
    """Runs tern-bench with --json --check; returns (exit code, summary dict, stderr)."""
    cmd = [bench_bin(), *args, "-p", str(port), "--json", "--check", "--quiet"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    assert lines, f"no JSON summary from {' '.join(cmd)}\n{p.stderr}"
    return p.returncode, json.loads(lines[-1]), p.stderr


def test_pairs_qos1_every_message_checked(broker):
    b = broker()
    rc, s, err = run_bench(b.port, "pairs", "--pairs", "5", "-q", "1", "-n", "100")
    assert rc == 0, err
    assert s["connected"] == 10
    assert s["sent"] == 500 and s["acked"] == 500
    assert s["received"] == 500 and s["expected"] == 500
    assert (s["lost"], s["duplicated"], s["reordered"]) == (0, 0, 0)
    assert s["latency_us"]["count"] == 500


def test_check_fails_when_the_broker_drops_qos1(tmp_path):
    # Mosquitto with a one-message window and queue acknowledges every PUBLISH but drops most
    # of what five publishers send to the one subscriber (Tern pauses its publishers instead,
    # so it cannot be made to lose them).
    if not os.access(MOSQUITTO_BIN, os.X_OK):
        pytest.skip("mosquitto not installed")
    b = Broker("mosquitto", tmp_path / "mosquitto",
               {"session": {"max_inflight": 1, "max_queued_messages": 1}}, False).start()
    try:
        rc, s, err = run_bench(b.port, "fanin", "--pubs", "5", "-q", "1", "-n", "200",
                               "--drain", "2")
    finally:
        b.stop()
    assert s["sent"] == 1000
    assert s["lost"] > 0
    assert s["received"] + s["lost"] == 1000
    assert rc == 1
    assert "check failed" in err and "lost" in err


# ---------------------------------------------------------------------------------------------
# TLS, against Mosquitto (the TLS option is the client's; it needs a TLS broker)

def openssl(*args, cwd):
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tls_broker(tmp_path):
    if not OPENSSL or not os.access(MOSQUITTO_BIN, os.X_OK):
        pytest.skip("needs openssl and mosquitto")
    d = tmp_path
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "1", "-subj", "/CN=test-ca", cwd=d)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out",
            "other.pem", "-days", "1", "-subj", "/CN=other-ca", cwd=d)
    (d / "san.cnf").write_text("subjectAltName=DNS:broker,IP:127.0.0.1\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "1",
                *(["-extfile", "san.cnf"] if name == "server" else []), cwd=d)
    port, mtls_port = free_port(), free_port()
    tls = [f"cafile {d}/ca.pem", f"certfile {d}/server.pem", f"keyfile {d}/server.key"]
    conf = [f"listener {port} {helpers.HOST}", "allow_anonymous true", *tls,
            "require_certificate false",
            f"listener {mtls_port} {helpers.HOST}", *tls, "require_certificate true",
            "log_dest stderr", "log_type error"]
    if os.geteuid() == 0:
        conf.append("user root")
    (d / "mosquitto.conf").write_text("\n".join(conf) + "\n")
    with open(d / "mosquitto.log", "wb") as log:
        proc = subprocess.Popen([MOSQUITTO_BIN, "-c", str(d / "mosquitto.conf")], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_port(port)
        wait_port(mtls_port)
        yield {"dir": d, "port": port, "mtls_port": mtls_port}
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(5)


def wait_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((helpers.HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"mosquitto did not listen on {port}")


def test_tls_verified_pairs(tls_broker):
    d = tls_broker["dir"]
    rc, s, err = run_bench(tls_broker["port"], "pairs", "--pairs", "3", "-q", "1", "-n", "50",
                           "--cafile", str(d / "ca.pem"), "--tls-server-name", "broker")
    assert rc == 0, err
    assert s["connected"] == 6
    assert s["received"] == 150 and (s["lost"], s["duplicated"], s["reordered"]) == (0, 0, 0)


def test_tls_wrong_ca_or_name_fails_the_handshake(tls_broker):
    d = tls_broker["dir"]
    for extra in (["--cafile", str(d / "other.pem")],
                  ["--cafile", str(d / "ca.pem"), "--tls-server-name", "elsewhere"]):
        rc, s, err = run_bench(tls_broker["port"], "conn", "--conns", "2", "-d", "0.1", *extra)
        assert rc == 1
        assert s["connected"] == 0 and s["connect_failed"] == 2
        assert "certificate verify failed" in err


def test_tls_client_certificate(tls_broker):
    d = tls_broker["dir"]
    port = tls_broker["mtls_port"]
    rc, s, _ = run_bench(port, "conn", "--conns", "2", "-d", "0.1", "--cafile", str(d / "ca.pem"))
    assert rc == 1 and s["connected"] == 0  # the listener requires a client certificate
    rc, s, err = run_bench(port, "conn", "--conns", "2", "-d", "0.1", "--cafile",
                           str(d / "ca.pem"), "--cert", str(d / "client.pem"), "--key",
                           str(d / "client.key"))
    assert rc == 0, err
    assert s["connected"] == 2


def test_plain_client_on_tls_port_fails(tls_broker):
    rc, s, _ = run_bench(tls_broker["port"], "conn", "--conns", "1", "-d", "0.1",
                         "--connect-timeout", "3")
    assert rc == 1 and s["connected"] == 0
