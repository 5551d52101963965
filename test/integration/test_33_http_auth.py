# HTTP authentication provider against a small HTTP server started by the test.

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from access_util import raw_v5, skip_unless_tern
from helpers import HOST, RawClient, unique

pytestmark = skip_unless_tern


class AuthServer:
    """Answers by username: good -> 200 allow, json -> 200 {"result":"allow"}, bad -> 200 deny,
    forbidden -> 403, pass -> 200 ignore, slow -> waits 3 s, error -> 500."""

    def __init__(self):
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                ctype = self.headers.get("Content-Type", "")
                if ctype.startswith("application/json"):
                    fields = json.loads(body)
                else:
                    fields = {k: v[0] for k, v in urllib.parse.parse_qs(
                        body, keep_blank_values=True).items()}
                outer.requests.append((self.path, ctype, fields))
                user = fields.get("username") or ""
                status, text = {
                    "good": (200, "allow"),
                    "json": (200, '{"result": "allow"}'),
                    "bad": (200, "deny"),
                    "forbidden": (403, ""),
                    "pass": (200, "ignore"),
                    "error": (500, "allow"),
                }.get(user, (200, "deny"))
                if user == "slow":
                    time.sleep(3)
                if user == "good" and fields.get("password") != "pw":
                    status, text = 200, "deny"
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def auth_server():
    s = AuthServer()
    yield s
    s.stop()


@pytest.mark.parametrize("body", ["json", "form"])
def test_http_provider_allow_deny_ignore(broker, auth_server, body):
    b = broker(auth={"allow_anonymous": False, "chain": ["http"],
                     "http_url": f"http://{HOST}:{auth_server.port}/mqtt/auth",
                     "http_body": body, "http_timeout": "1s"})
    cid = unique("h")
    assert RawClient(b.port).connect(cid, username="good", password="pw").rc == 0
    path, ctype, fields = auth_server.requests[-1]
    assert path == "/mqtt/auth"
    assert ctype.startswith("application/json" if body == "json" else
                            "application/x-www-form-urlencoded")
    assert fields["clientid"] == cid and fields["password"] == "pw"
    assert fields["ipaddress"] == "127.0.0.1"
    assert RawClient(b.port).connect(unique("h"), username="good", password="no").rc == 4
    assert RawClient(b.port).connect(unique("h"), username="json", password="x").rc == 0
    assert RawClient(b.port).connect(unique("h"), username="bad", password="x").rc == 4
    assert RawClient(b.port).connect(unique("h"), username="forbidden", password="x").rc == 4
    # ignore / 500: nobody allowed, anonymous off -> refused.
    assert RawClient(b.port).connect(unique("h"), username="pass", password="x").rc == 4
    assert RawClient(b.port).connect(unique("h"), username="error", password="x").rc == 4
    _, rc, _ = raw_v5(b.port, unique("h5"), username="good", password="pw")
    assert rc == 0
    _, rc, _ = raw_v5(b.port, unique("h5"), username="bad", password="pw")
    assert rc == 0x86


def test_http_provider_timeout_passes_on(broker, auth_server, tmp_path):
    # A slow server does not hold the client beyond the timeout; the chain goes on to the
    # next provider (here anonymous, which lets the client in).
    b = broker(auth={"allow_anonymous": True, "chain": ["http"],
                     "http_url": f"http://{HOST}:{auth_server.port}/auth",
                     "http_timeout": "300ms"})
    c = RawClient(b.port)
    t0 = time.monotonic()
    assert c.connect(unique("s"), username="slow", password="x").rc == 0
    assert time.monotonic() - t0 < 2.5
    assert RawClient(b.port).connect(unique("s"), username="bad", password="x").rc == 4


def test_http_provider_unreachable_passes_on(broker):
    b = broker(auth={"allow_anonymous": False, "chain": ["http"],
                     "http_url": f"http://{HOST}:1/auth", "http_timeout": "1s"})
    assert RawClient(b.port).connect(unique("u"), username="good", password="pw").rc == 4
    assert "HTTP request failed" in b.log_text()
