# The management API over HTTPS ([http] tls_cert/tls_key): Python's TLS client and
# broker-ctl --tls (with --cafile and --insecure); plain HTTP is not served then.

import http.client
import json
import socket
import ssl
import subprocess

import pytest

import helpers
import mgmt_helpers as mh


@pytest.fixture
def cert(tmp_path):
    key, crt = tmp_path / "key.pem", tmp_path / "cert.pem"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(crt)], capture_output=True)
    assert r.returncode == 0, r.stderr
    return crt, key


def test_https_api(broker, cert):
    crt, key = cert
    node = mh.start(broker, http={"tls_cert": str(crt), "tls_key": str(key)})
    assert "management API on https://" in node.log_text()
    ctx = ssl.create_default_context(cafile=str(crt))
    conn = http.client.HTTPSConnection(helpers.HOST, node.http_port, context=ctx, timeout=10)
    conn.request("GET", "/api/v1/status", headers={"Authorization": mh.basic()})
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read())["status"] == "running"
    conn.close()
    # plain HTTP on the TLS port gets no HTTP answer
    with socket.create_connection((helpers.HOST, node.http_port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = s.recv(100)
        except OSError:
            data = b""
        assert not data.startswith(b"HTTP/1.1 200")

    def ctl(*extra):
        cmd = [mh.broker_ctl_path(), "--host", f"127.0.0.1:{node.http_port}", "--user",
               f"{mh.USER}:{mh.PASSWORD}", "--tls", *extra, "status"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20)

    assert "is running" in ctl("--cafile", str(crt)).stdout
    assert "is running" in ctl("--insecure").stdout
    unverified = ctl()  # self-signed, not in the system store
    assert unverified.returncode == 3 and "TLS handshake" in unverified.stderr


def test_unreadable_tls_files_stop_the_node(tmp_path):
    mh.require_tern()
    import os
    from conftest import free_port, tern_config
    conf = tmp_path / "tern.toml"
    conf.write_text(tern_config(free_port(), tmp_path / "data", {
        "http": {"port": 0, "tls_cert": "missing.pem", "tls_key": "missing.key"}}))
    (tmp_path / "data").mkdir()
    r = subprocess.run([os.environ["TERN_BROKER_NODE"], "--config", str(conf)],
                       capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert r.returncode == 1
    assert "cannot load tls_cert missing.pem" in r.stderr
