# MQTT over TLS: server certificate, client certificates (mutual TLS), TLS versions, the
# client certificate's CN as client id, and bad clients on a TLS port. Real clients:
# mosquitto_pub/mosquitto_sub with --cafile/--cert/--key, and paho-mqtt's tls_set().
#
# Certificates come from scripts/gen-certs.sh, run into this module's tmp dir.

import os
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

import helpers
from conftest import free_port
from helpers import (MOSQUITTO_PUB, assert_pubsub_works, is_mosquitto, unique)

pytestmark = pytest.mark.skipif(is_mosquitto(), reason="Tern listener configuration")

GEN_CERTS = Path(__file__).resolve().parents[2] / "scripts" / "gen-certs.sh"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    out = tmp_path_factory.mktemp("certs")
    subprocess.run(["bash", str(GEN_CERTS), str(out)], check=True, capture_output=True)
    return out


def tls_broker(broker, certs, **tls):
    port = free_port()
    section = {"bind": f"127.0.0.1:{port}", "certfile": str(certs / "server.pem"),
               "keyfile": str(certs / "server.key")}
    section.update(tls)
    b = broker(**{"listeners.ssl.t": section})
    b.tls_port = port
    return b


def pub(port, topic, message, *tls_args, extra=()):
    """mosquitto_pub over TLS; returns the CompletedProcess (any exit code)."""
    args = [MOSQUITTO_PUB, "-h", "localhost", "-p", str(port), "-V", "mqttv311", "-t", topic,
            "-m", message, "-q", "1", *tls_args, *extra]
    return subprocess.run(args, capture_output=True, timeout=15)


def ca(certs):
    return ["--cafile", str(certs / "ca.pem")]


def client_cert(certs, name="client"):
    return ["--cert", str(certs / f"{name}.pem"), "--key", str(certs / f"{name}.key")]


def test_tls_publish_reaches_tcp_and_tls_subscribers(broker, clients, certs):
    b = tls_broker(broker, certs)
    topic = unique("tls")
    plain = clients.mosquitto_sub(b.port, topic, qos=1, count=1).wait_subscribed()
    secure = clients.mosquitto_sub(b.tls_port, topic, qos=1, count=1,
                                   extra=["-h", "localhost", *ca(certs)]).wait_subscribed()
    r = pub(b.tls_port, topic, "over-tls", *ca(certs))
    assert r.returncode == 0, r.stderr
    assert plain.expect_lines(1) == [f"{topic} over-tls"]
    assert secure.expect_lines(1) == [f"{topic} over-tls"]


def test_tls_client_rejects_server_from_wrong_ca(broker, certs):
    b = tls_broker(broker, certs)
    r = pub(b.tls_port, unique("t"), "x", "--cafile", str(certs / "other-ca.pem"))
    assert r.returncode != 0
    b.assert_alive()


def test_mtls_good_client_certificate(broker, clients, certs):
    b = tls_broker(broker, certs, cacertfile=str(certs / "ca.pem"), verify="require")
    topic = unique("mtls")
    sub = clients.mosquitto_sub(b.port, topic, qos=1, count=1).wait_subscribed()
    r = pub(b.tls_port, topic, "with-cert", *ca(certs), *client_cert(certs))
    assert r.returncode == 0, r.stderr
    assert sub.expect_lines(1) == [f"{topic} with-cert"]


def wait_log(b, text, timeout=5.0):
    """The broker logs a refused handshake on its io thread, maybe after the client exited."""
    deadline = time.monotonic() + timeout
    while text not in b.log_text():
        assert time.monotonic() < deadline, f"{text!r} not in the log\n{b.log_tail()}"
        time.sleep(0.02)


def test_mtls_no_client_certificate_when_required(broker, clients, certs):
    b = tls_broker(broker, certs, cacertfile=str(certs / "ca.pem"), verify="require")
    topic = unique("mtls")
    sub = clients.mosquitto_sub(b.port, topic, count=1).wait_subscribed()
    r = pub(b.tls_port, topic, "no-cert", *ca(certs))
    assert r.returncode != 0
    sub.expect_lines(0)
    with pytest.raises(AssertionError):
        sub.expect_lines(1, timeout=0.5)
    wait_log(b, "handshake failed")
    assert_pubsub_works(b.port)


def test_mtls_client_certificate_from_wrong_ca(broker, certs):
    b = tls_broker(broker, certs, cacertfile=str(certs / "ca.pem"), verify="require")
    r = pub(b.tls_port, unique("t"), "x", *ca(certs), *client_cert(certs, "other-client"))
    assert r.returncode != 0
    wait_log(b, "handshake failed")
    assert_pubsub_works(b.port)


def test_mtls_request_makes_the_certificate_optional(broker, certs):
    b = tls_broker(broker, certs, cacertfile=str(certs / "ca.pem"), verify="request")
    assert pub(b.tls_port, unique("t"), "x", *ca(certs)).returncode == 0
    assert pub(b.tls_port, unique("t"), "x", *ca(certs), *client_cert(certs)).returncode == 0
    # A certificate that is sent must still verify.
    r = pub(b.tls_port, unique("t"), "x", *ca(certs), *client_cert(certs, "other-client"))
    assert r.returncode != 0


def test_certificate_cn_becomes_the_client_id(broker, certs):
    b = tls_broker(broker, certs, cacertfile=str(certs / "ca.pem"), verify="require",
                   peer_cert_as_clientid="cn", peer_cert_as_username="cn")
    # Two clients with different ids but the same certificate: the second takes the first
    # one's session over, because both are "client-cn-1" to the broker.
    first = helpers.Client(b.tls_port, client_id="first-id")
    first._c.tls_set(ca_certs=str(certs / "ca.pem"), certfile=str(certs / "client.pem"),
                     keyfile=str(certs / "client.key"))
    first._c.connect("localhost", b.tls_port, 60)
    first._c.loop_start()
    try:
        first._wait(lambda: first._connack is not None, 5, "CONNACK")
        assert first._connack[0] == 0
        r = pub(b.tls_port, unique("t"), "x", *ca(certs), *client_cert(certs),
                extra=["-i", "second-id"])
        assert r.returncode == 0, r.stderr
        assert first.disconnected.wait(5), "the first client was not taken over"
    finally:
        first.stop()
    log = b.log_text()
    assert "client client-cn-1 connected" in log
    assert "first-id" not in log.split("client client-cn-1 connected")[0].split("\n")[-1]


def tls_handshake_ok(port, certs, version):
    """Whether a handshake pinned to one TLS version succeeds."""
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    ctx.minimum_version = ctx.maximum_version = version
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost"):
                return True
    except (ssl.SSLError, ConnectionResetError):
        return False


def test_tls_versions(broker, certs):
    only13 = tls_broker(broker, certs, tls_versions="tlsv1.3")
    assert tls_handshake_ok(only13.tls_port, certs, ssl.TLSVersion.TLSv1_3)
    assert not tls_handshake_ok(only13.tls_port, certs, ssl.TLSVersion.TLSv1_2)
    only12 = tls_broker(broker, certs, tls_versions="tlsv1.2")
    assert tls_handshake_ok(only12.tls_port, certs, ssl.TLSVersion.TLSv1_2)
    assert not tls_handshake_ok(only12.tls_port, certs, ssl.TLSVersion.TLSv1_3)
    # mosquitto_pub's --tls-version is a minimum: 1.3 cannot talk to a 1.2-only listener.
    assert pub(only12.tls_port, unique("t"), "x", *ca(certs)).returncode == 0
    assert pub(only12.tls_port, unique("t"), "x", *ca(certs),
               "--tls-version", "tlsv1.3").returncode != 0


def test_plain_mqtt_on_tls_port_is_closed(broker, certs):
    b = tls_broker(broker, certs)
    s = socket.create_connection(("127.0.0.1", b.tls_port), timeout=5)
    s.sendall(helpers.connect_packet("plain"))
    s.settimeout(5)
    try:
        data = s.recv(100)
        # The TLS server may answer with an alert before closing; never with a CONNACK.
        assert not data.startswith(b"\x20\x02")
    except ConnectionResetError:
        pass
    s.close()
    b.assert_alive()
    assert_pubsub_works(b.port)


def test_tls_handshake_with_python_ssl(broker, certs):
    """A TLS connection that completes the handshake and then speaks MQTT by hand."""
    b = tls_broker(broker, certs)
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    with socket.create_connection(("127.0.0.1", b.tls_port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(helpers.connect_packet(unique("py")) + helpers.pingreq_packet())
            got = b""
            deadline = time.monotonic() + 5
            while len(got) < 6 and time.monotonic() < deadline:
                got += s.recv(100)
            assert got[:4] == b"\x20\x02\x00\x00"   # CONNACK accepted
            assert got[4:6] == b"\xd0\x00"          # PINGRESP


def test_client_certificate_authenticates(broker, certs):
    # [auth] chain = ["cert"] with anonymous off: a verified client certificate is the
    # credential; no certificate, or a username that is not the certificate's, is refused.
    port = free_port()
    b = broker(**{"listeners.ssl.t": {"bind": f"127.0.0.1:{port}",
                                      "certfile": str(certs / "server.pem"),
                                      "keyfile": str(certs / "server.key"),
                                      "cacertfile": str(certs / "ca.pem"),
                                      "verify": "request"},
                  "auth": {"allow_anonymous": False, "chain": ["cert"]}})
    ok = pub(port, unique("cert"), "x", *ca(certs), *client_cert(certs))
    assert ok.returncode == 0, ok.stderr
    ok_user = pub(port, unique("cert"), "x", *ca(certs), *client_cert(certs),
                  extra=["-u", "client-cn-1"])
    assert ok_user.returncode == 0, ok_user.stderr
    no_cert = pub(port, unique("cert"), "x", *ca(certs))
    assert no_cert.returncode != 0
    other_user = pub(port, unique("cert"), "x", *ca(certs), *client_cert(certs),
                     extra=["-u", "admin", "-P", "x"])
    assert other_user.returncode != 0
    plain = pub(b.port, unique("cert"), "x")
    assert plain.returncode != 0
    b.assert_alive()
