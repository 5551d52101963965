# TLS between nodes (CAF's OpenSSL module): anonymous (encryption, the cookie authenticates)
# and with certificates signed by a CA the test makes.
import shutil
import subprocess

import pytest

import helpers
from cluster_nodes import wait_route

pytestmark = pytest.mark.skipif(helpers.is_mosquitto(), reason="Tern cluster only")

OPENSSL = shutil.which("openssl")


def tls_nodes(cluster, toml):
    a = cluster.node(cluster_toml=toml)
    a.start()
    b = cluster.node(cluster_toml=toml)
    b.start(join=[a.cluster_addr])
    cluster.wait_mesh([a, b])
    return a, b


def check_flow(a, b, clients):
    sub = clients.paho(b.port)
    sub.subscribe("tls/#", qos=1)
    pub = clients.paho(a.port)
    wait_route(pub, sub, "tls/probe")
    pub.publish("tls/x", b"secret", qos=1)
    assert sub.expect_one().payload == b"secret"


def test_anonymous_tls_between_nodes(cluster, clients):
    a, b = tls_nodes(cluster, "tls = true\n")
    assert ", TLS)" in a.log_text()
    check_flow(a, b, clients)


def make_ca_and_cert(d):
    def run(*args):
        subprocess.run([OPENSSL, *args], check=True, capture_output=True, cwd=d)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=tern-test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr",
        "-subj", "/CN=tern-node")
    run("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "node.pem", "-days", "2")
    return d / "node.pem", d / "node.key", d / "ca.pem"


@pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command to make certificates")
def test_tls_with_certificates_between_nodes(cluster, clients, tmp_path):
    cert, key, ca = make_ca_and_cert(tmp_path)
    toml = (f'tls = true\ntls_cert = "{cert}"\ntls_key = "{key}"\ntls_cafile = "{ca}"\n')
    a, b = tls_nodes(cluster, toml)
    assert "TLS with certificates" in a.log_text()
    check_flow(a, b, clients)
