# Helpers for the management tests (test_4x_*): the node's HTTP API port, an HTTP client with
# basic/bearer auth, broker-ctl, and the broker fixture configured for them.

import base64
import http.client
import json
import os
import re
import subprocess
import time

import pytest

import helpers

USER, PASSWORD = "admin", "public"
API_KEY = "test-key-0123456789abcdef"


def require_tern():
    if helpers.is_mosquitto():
        pytest.skip("management API tests need Tern")


def start(broker, sys_interval="10s", presence=True, **sections):
    """A Tern node with the API on a free port and a known user and API key."""
    require_tern()
    http = {"port": 0, "users": [f"{USER}:{PASSWORD}"], "api_keys": [API_KEY]}
    http.update(sections.pop("http", {}))
    b = broker(http=http, sys={"interval": sys_interval, "presence": presence}, **sections)
    b.http_port = http_port(b)
    return b


def http_port(b, timeout=10.0):
    """The port the node logged for its management API."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"management API on https?://\S+:(\d+)", b.log_text()[b.log_start:])
        if m:
            return int(m.group(1))
        b.assert_alive()
        time.sleep(0.05)
    raise AssertionError(f"no 'management API on' line in the log\n{b.log_tail()}")


def basic(user=USER, password=PASSWORD):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Api:
    def __init__(self, port, authorization=None):
        self.port = port
        self.authorization = basic() if authorization is None else authorization

    def request(self, method, path, body=None, authorization=None, headers=None):
        """(status, headers dict lower-cased, body bytes)."""
        conn = http.client.HTTPConnection(helpers.HOST, self.port, timeout=10)
        h = dict(headers or {})
        auth = self.authorization if authorization is None else authorization
        if auth:
            h["Authorization"] = auth
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            h["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def json(self, method, path, body=None, expect=200, **kw):
        status, headers, data = self.request(method, path, body, **kw)
        assert status == expect, f"{method} {path}: {status} {data!r}"
        assert headers["content-type"].startswith("application/json"), headers
        return json.loads(data)

    def get(self, path, **kw):
        return self.json("GET", path, **kw)


def wait_until(pred, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def broker_ctl_path():
    path = os.environ.get("TERN_BROKER_CTL")
    if not path:
        node = os.environ.get("TERN_BROKER_NODE", "")
        path = os.path.join(os.path.dirname(node), "broker-ctl")
    if not os.path.exists(path):
        pytest.fail(f"broker-ctl not found at {path} (set TERN_BROKER_CTL)")
    return path


def ctl(port, *args, user=f"{USER}:{PASSWORD}", api_key=None, json_out=False, timeout=20):
    """Runs broker-ctl against the node; returns CompletedProcess (text)."""
    cmd = [broker_ctl_path(), "--host", f"{helpers.HOST}:{port}"]
    if api_key:
        cmd += ["--api-key", api_key]
    elif user:
        cmd += ["--user", user]
    if json_out:
        cmd.append("--json")
    cmd += list(args)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TERN_CTL_")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
