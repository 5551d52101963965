# Interoperability with MQTT.js 5 (the `mqtt` npm package pinned in test/interop/package.json):
#  - in Node over TCP (test/interop/mqttjs_node.js), and
#  - in headless Chromium over WebSocket (test/interop/mqttjs_browser.html, with MQTT.js's
#    browser bundle served by a small HTTP server of this test on 127.0.0.1).
# Both run test/interop/mqttjs_driver.js: the test sends it commands (connect, subscribe,
# publish, end) and gets back every reply and message as JSON, so that QoS, retain flags, reason
# codes, Session Present and MQTT 5 properties can be asserted on. Every scenario runs on both.
#
# MQTT.js must be installed: `npm ci --prefix test/interop` (node_modules is not committed), or
# TERN_INTEROP_NODE_MODULES names a node_modules directory holding mqtt 5.x.

import http.server
import json
import os
import queue
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

import helpers
from conftest import free_port
from helpers import HOST, is_mosquitto, marker_after, unique

INTEROP = Path(__file__).resolve().parents[1] / "interop"
TIMEOUT = 10.0
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def node_modules_dir():
    env = os.environ.get("TERN_INTEROP_NODE_MODULES")
    return Path(env) if env else INTEROP / "node_modules"


@pytest.fixture(scope="module")
def mqttjs():
    d = node_modules_dir()
    pkg = d / "mqtt" / "package.json"
    if not pkg.exists():
        msg = (f"MQTT.js is not installed ({pkg} is missing): run `npm ci --prefix test/interop` "
               f"or set TERN_INTEROP_NODE_MODULES to a node_modules directory with mqtt 5.x")
        if is_mosquitto():
            pytest.skip(msg)
        pytest.fail(msg)
    version = json.loads(pkg.read_text())["version"]
    assert version.startswith("5."), f"MQTT.js {version} in {d}: the tests expect 5.x"
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (Node.js 18 or later runs MQTT.js)")
    return SimpleNamespace(dir=d, version=version, node=node,
                           bundle=d / "mqtt" / "dist" / "mqtt.min.js")


# ---------------------------------------------------------------------------------------------
# Sessions: where the driver runs (a Node process, or a page in Chromium)
# ---------------------------------------------------------------------------------------------

class Session:
    """Routes the driver's events: replies by id, the rest to the client they name."""

    def __init__(self):
        self.cond = threading.Condition()
        self.replies = {}
        self.clients = {}
        self.log = []  # events of no client (ready, page errors)
        self.dead = None

    def on_event(self, ev):
        with self.cond:
            if ev.get("ev") == "reply":
                self.replies[ev["id"]] = ev
            elif ev.get("client") in self.clients:
                self.clients[ev["client"]].on_event(ev)
            else:
                self.log.append(ev)
            self.cond.notify_all()

    def wait(self, pred, what, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                if self.dead:
                    raise AssertionError(f"{what}: the MQTT.js driver stopped: {self.dead}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {what} within {timeout}s (driver log: "
                                         f"{self.log[-5:]})")
                self.cond.wait(min(left, 0.5))

    def call(self, cmd, timeout=TIMEOUT):
        cmd = dict(cmd, id=uuid.uuid4().hex)
        self.send(cmd)
        self.wait(lambda: cmd["id"] in self.replies, f"reply to {cmd['op']}", timeout)
        with self.cond:
            return self.replies.pop(cmd["id"])


class NodeSession(Session):
    def __init__(self, mqttjs):
        super().__init__()
        env = dict(os.environ, NODE_PATH=str(mqttjs.dir))
        self.proc = subprocess.Popen([mqttjs.node, str(INTEROP / "mqttjs_node.js")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1, env=env)
        self.stderr = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        self.wait(lambda: any(e.get("ev") == "ready" for e in self.log), "node driver start")

    def _read(self):
        for line in self.proc.stdout:
            self.on_event(json.loads(line))
        with self.cond:
            self.dead = f"node exited: {''.join(self.stderr)[-2000:]}"
            self.cond.notify_all()

    def send(self, cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class BrowserSession(Session):
    """Chromium showing mqttjs_browser.html; commands go out through a long-polled GET."""

    def __init__(self, mqttjs, profile):
        super().__init__()
        self.commands = queue.Queue()
        self.closing = False
        files = {"/": (INTEROP / "mqttjs_browser.html", "text/html"),
                 "/mqttjs_driver.js": (INTEROP / "mqttjs_driver.js", "text/javascript"),
                 "/mqtt.min.js": (mqttjs.bundle, "text/javascript")}
        session = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body=b"", ctype="application/json"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/commands":
                    if session.closing:
                        return self._send(410)
                    try:
                        cmds = [session.commands.get(timeout=5)]
                    except queue.Empty:
                        return self._send(200, b"[]")
                    while not session.commands.empty():
                        cmds.append(session.commands.get_nowait())
                    return self._send(200, json.dumps(cmds).encode())
                if self.path in files:
                    path, ctype = files[self.path]
                    return self._send(200, path.read_bytes(), ctype)
                self._send(404)

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                for ev in json.loads(body):
                    session.on_event(ev)
                self._send(204)

        self.http = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.http.daemon_threads = True
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        url = f"http://{HOST}:{self.http.server_address[1]}/"
        args = [CHROMIUM, "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-extensions", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", url]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # chromium refuses to run as root with its sandbox
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.stderr = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        try:
            self.wait(lambda: any(e.get("ev") == "ready" for e in self.log), "page start", 30)
        except AssertionError as e:
            self.close()
            raise AssertionError(f"{e}; chromium: {''.join(self.stderr)[-2000:]}") from None
        self.user_agent = [e for e in self.log if e.get("ev") == "ready"][0]["user_agent"]

    def send(self, cmd):
        if self.proc.poll() is not None:
            raise AssertionError(f"chromium exited: {''.join(self.stderr)[-2000:]}")
        self.commands.put(cmd)

    def close(self):
        self.closing = True
        helpers.terminate(self.proc)
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture(scope="module")
def browser(mqttjs, tmp_path_factory):
    if CHROMIUM is None:
        pytest.fail("chromium is not installed (scripts/setup.sh installs it): the MQTT.js "
                    "browser tests cannot run")
    s = BrowserSession(mqttjs, tmp_path_factory.mktemp("chromium-profile"))
    yield s
    s.close()


# ---------------------------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------------------------

def decode(v):
    """The driver's JSON back to Python: {"hex": ...} becomes bytes."""
    if isinstance(v, dict):
        if set(v) == {"hex"}:
            return bytes.fromhex(v["hex"])
        return {k: decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [decode(x) for x in v]
    return v


class JsClient:
    def __init__(self, env, client_id, version):
        self.env = env
        self.session = env.session
        self.name = unique("c")
        self.client_id = client_id or unique("mqttjs")
        self.version = version
        self.messages = []
        self.events = []  # disconnect / close / error
        self.connack = None
        self.session.clients[self.name] = self

    def on_event(self, ev):  # under session.cond
        if ev["ev"] == "message":
            self.messages.append(SimpleNamespace(
                topic=ev["topic"], payload=bytes.fromhex(ev["payload_hex"]), qos=ev["qos"],
                retain=ev["retain"], dup=ev["dup"], props=decode(ev["properties"])))
        else:
            self.events.append(ev)

    def call(self, op, **kw):
        return self.session.call(dict(kw, op=op, name=self.name))

    def connect(self, clean=True, properties=None, will=None, expect_ok=True, **options):
        opts = dict(clientId=self.client_id, protocolVersion=self.version, clean=clean,
                    keepalive=30, **options)
        if self.version == 3:
            opts["protocolId"] = "MQIsdp"
        if properties:
            opts["properties"] = properties
        if will:
            will = dict(will)
            will["payload_hex"] = will.pop("payload", b"").hex()
            opts["will"] = will
        r = self.call("connect", url=self.env.url, options=opts)
        if expect_ok:
            assert r["ok"], f"connect failed: {r}"
            self.connack = decode(r["connack"])
            assert self.connack["reasonCode" if self.version == 5 else "returnCode"] == 0
        return r

    def subscribe(self, topic, qos=0, properties=None, **opts):
        opts["qos"] = qos
        if properties:
            opts["properties"] = properties
        r = self.call("subscribe", topic=topic, opts=opts)
        assert r["ok"], f"SUBSCRIBE {topic}: {r}"
        assert [g["qos"] for g in r["granted"]] == [qos], r
        return r

    def publish(self, topic, payload=b"", qos=0, retain=False, properties=None, expect_ok=True):
        opts = dict(qos=qos, retain=retain)
        if properties:
            properties = dict(properties)
            if "correlationData" in properties:
                properties["correlationData_hex"] = properties.pop("correlationData").hex()
            opts["properties"] = properties
        r = self.call("publish", topic=topic, payload_hex=payload.hex(), opts=opts)
        if expect_ok:
            assert r["ok"], f"PUBLISH {topic}: {r}"
        return r

    def end(self, force=False, reason=None):
        opts = {"reasonCode": reason} if reason is not None else {}
        r = self.call("end", force=force, opts=opts)
        assert r["ok"], r
        return r

    def wait_messages(self, n, what="messages"):
        self.session.wait(lambda: len(self.messages) >= n,
                          f"{n} {what} at {self.client_id} (got {len(self.messages)})")
        return self.messages[:n]

    def wait_for(self, pred, what="event"):
        self.session.wait(pred, what)


class JsEnv:
    def __init__(self, transport, session, broker, url):
        self.transport = transport
        self.session = session
        self.broker = broker
        self.url = url
        self.made = []

    def client(self, client_id=None, version=5, connect=True, **kw):
        c = JsClient(self, client_id, version)
        self.made.append(c)
        if connect:
            c.connect(**kw)
        return c

    def close(self):
        for c in self.made:
            try:
                self.session.call(dict(op="end", name=c.name, force=True), timeout=3)
            except AssertionError:
                pass
            self.session.clients.pop(c.name, None)


@pytest.fixture(params=["node-tcp", "browser-ws"])
def js(request, broker, mqttjs):
    if request.param == "browser-ws":
        if is_mosquitto():
            pytest.skip("Tern listener configuration (WebSocket)")
        session = request.getfixturevalue("browser")
        assert "Chrome" in session.user_agent, session.user_agent
        ws_port = free_port()
        b = broker(**{"listeners.ws.interop": {"bind": f"{HOST}:{ws_port}"}})
        env = JsEnv(request.param, session, b, f"ws://{HOST}:{ws_port}/mqtt")
        yield env
        env.close()
    else:
        b = broker()
        session = NodeSession(mqttjs)
        env = JsEnv(request.param, session, b, f"mqtt://{HOST}:{b.port}")
        yield env
        env.close()
        session.close()


VERSIONS = pytest.mark.parametrize("version", [5, 4], ids=["v5", "v311"])


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [5, 4, 3], ids=["v5", "v311", "v31"])
def test_connect_and_qos_levels(js, version):
    topic = unique("mqttjs-qos")
    subs = [js.client(version=version) for _ in range(3)]
    for c in subs:
        assert c.connack["sessionPresent"] is False
    for q, c in enumerate(subs):
        c.subscribe(topic, qos=q)
    pub = js.client(version=version)
    payloads = [bytes([0, 1, 2, q, 0xFF, 0xFE]) + b"qos" + str(q).encode() for q in range(3)]
    for q, p in enumerate(payloads):
        r = pub.publish(topic, p, qos=q)
        want = [[], ["puback"], ["pubrec", "pubcomp"]][q]
        assert [a["cmd"] for a in r["acks"]] == want
        if version == 5:
            assert all(a["reasonCode"] == 0 for a in r["acks"]), r
    for sq, c in enumerate(subs):
        got = c.wait_messages(3)
        assert [m.payload for m in got] == payloads  # in order, byte for byte
        assert [m.qos for m in got] == [min(sq, pq) for pq in range(3)]
        assert all(m.topic == topic and not m.retain and not m.dup for m in got)


@pytest.mark.skipif(is_mosquitto(), reason="Tern documents PUBACK/PUBREC 0x10")
def test_ack_reason_no_matching_subscribers(js):
    pub = js.client()
    r = pub.publish(unique("nobody"), b"x", qos=1)
    assert [(a["cmd"], a["reasonCode"]) for a in r["acks"]] == [("puback", 0x10)]
    r = pub.publish(unique("nobody"), b"x", qos=2)
    assert [(a["cmd"], a["reasonCode"]) for a in r["acks"]] == [("pubrec", 0x10),
                                                                 ("pubcomp", 0)]


@pytest.mark.skipif(is_mosquitto(), reason="validating the payload format is optional; "
                    "mosquitto 2.0.11 does not")
def test_payload_format_invalid_is_refused(js):
    """Payload Format Indicator 1 with a payload that is not UTF-8: PUBACK 0x99, not routed."""
    topic = unique("mqttjs-pfi")
    sub = js.client()
    sub.subscribe(topic, qos=1)
    pub = js.client()
    r = pub.publish(topic, b"\xff\xfe", qos=1, properties={"payloadFormatIndicator": True},
                    expect_ok=False)
    assert not r["ok"] and r["code"] == 0x99, r
    assert marker_after(sub, pub, topic) == []


@VERSIONS
def test_retained_messages(js, version):
    base = unique("mqttjs-retain")
    live = js.client(version=version)
    live.subscribe(f"{base}/#", qos=2)
    pub = js.client(version=version)
    props = ({"userProperties": {"kept": "with the message"}, "contentType": "text/x-retained"}
             if version == 5 else None)
    pub.publish(f"{base}/a", b"retained-a", qos=1, retain=True, properties=props)
    pub.publish(f"{base}/b", b"retained-b", qos=2, retain=True)
    got = live.wait_messages(2)
    assert [(m.payload, m.retain) for m in got] == [(b"retained-a", False), (b"retained-b", False)]

    late = js.client(version=version)
    late.subscribe(f"{base}/#", qos=1)
    got = late.wait_messages(2)
    assert sorted((m.topic, m.payload, m.qos, m.retain) for m in got) == [
        (f"{base}/a", b"retained-a", 1, True), (f"{base}/b", b"retained-b", 1, True)]
    if version == 5:  # the retained copy keeps its properties
        (a,) = [m for m in got if m.payload == b"retained-a"]
        assert a.props["userProperties"] == {"kept": "with the message"}
        assert a.props["contentType"] == "text/x-retained"

    pub.publish(f"{base}/a", b"", qos=1, retain=True)  # clears it
    fresh = js.client(version=version)
    fresh.subscribe(f"{base}/#", qos=1)
    before = marker_after(fresh, pub, f"{base}/marker", since=0)
    assert [(m.topic, m.payload, m.retain) for m in before] == [(f"{base}/b", b"retained-b", True)]


@VERSIONS
def test_will_published_when_connection_drops(js, version):
    base = unique("mqttjs-will")
    watcher = js.client(version=version)
    watcher.subscribe(f"{base}/#", qos=2)
    will = dict(topic=f"{base}/status", payload=b"offline\x00\xff", qos=2, retain=True)
    if version == 5:
        will["properties"] = {"userProperties": {"who": "mqtt.js", "why": ["dropped", "2"]},
                              "contentType": "text/plain"}
    holder = js.client(version=version, will=will)
    assert marker_after(watcher, js.client(), f"{base}/marker") == []  # nothing yet
    holder.end(force=True)  # the connection closes without DISCONNECT
    watcher.wait_for(lambda: any(m.topic == f"{base}/status" for m in watcher.messages), "will")
    (m,) = [m for m in watcher.messages if m.topic == f"{base}/status"]
    assert (m.payload, m.qos) == (b"offline\x00\xff", 2)
    if version == 5:
        assert m.props["userProperties"] == {"who": "mqtt.js", "why": ["dropped", "2"]}
        assert m.props["contentType"] == "text/plain"
    late = js.client(version=version)  # the will was retained
    late.subscribe(f"{base}/status", qos=1)
    (r,) = late.wait_messages(1)
    assert (r.payload, r.qos, r.retain) == (b"offline\x00\xff", 1, True)


@VERSIONS
def test_unsubscribe(js, version):
    base = unique("mqttjs-unsub")
    sub = js.client(version=version)
    sub.subscribe(f"{base}/a", qos=1)
    sub.subscribe(f"{base}/b", qos=1)
    r = sub.call("unsubscribe", topic=f"{base}/a")
    assert r["ok"], r
    if version == 5:
        assert r["packet"]["granted"] == [0], r  # MQTT.js keeps UNSUBACK codes in "granted"
        if not is_mosquitto():  # Tern documents UNSUBACK 0x11
            r = sub.call("unsubscribe", topic=f"{base}/never")
            assert r["ok"] and r["packet"]["granted"] == [0x11], r  # No subscription existed
    pub = js.client(version=version)
    pub.publish(f"{base}/a", b"unsubscribed", qos=1)
    assert marker_after(sub, pub, f"{base}/b") == []


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_large_payload(js, qos):
    topic = unique("mqttjs-large")
    sub = js.client()
    sub.subscribe(topic, qos=2)
    pub = js.client()
    payload = bytes((i * 7 + qos) % 256 for i in range(512 * 1024 + 3))
    pub.publish(topic, payload, qos=qos)
    (m,) = sub.wait_messages(1)
    assert (len(m.payload), m.qos) == (len(payload), qos)
    assert m.payload == payload


def test_will_after_disconnect_reason_0x04_but_not_after_normal_disconnect(js):
    base = unique("mqttjs-will-dc")
    watcher = js.client()
    watcher.subscribe(f"{base}/#", qos=1)
    polite = js.client(will=dict(topic=f"{base}/polite", payload=b"x", qos=1))
    polite.end()  # DISCONNECT 0x00: the will is discarded
    leaving = js.client(will=dict(topic=f"{base}/with-will", payload=b"bye", qos=1))
    leaving.end(reason=0x04)  # Disconnect with Will Message
    watcher.wait_for(lambda: any(m.topic == f"{base}/with-will" for m in watcher.messages),
                     "will after DISCONNECT 0x04")
    before = marker_after(watcher, js.client(), f"{base}/marker", since=0)
    assert [(m.topic, m.payload) for m in before] == [(f"{base}/with-will", b"bye")]


@pytest.mark.skipif(is_mosquitto(), reason="needs sub-hour session expiry")
def test_will_delay_and_reconnect_before_it(js):
    base = unique("mqttjs-will-delay")
    watcher = js.client()
    watcher.subscribe(f"{base}/#", qos=1)
    cid = unique("mqttjs-delayed")
    held = js.client(client_id=cid, properties={"sessionExpiryInterval": 120},
                     will=dict(topic=f"{base}/held", payload=b"late", qos=1,
                               properties={"willDelayInterval": 60}))
    held.end(force=True)
    back = js.client(client_id=cid, clean=False, properties={"sessionExpiryInterval": 120})
    assert back.connack["sessionPresent"] is True
    # reconnecting within the delay cancels the will
    assert marker_after(watcher, back, f"{base}/marker") == []
    back.end(force=True)

    short = js.client(properties={"sessionExpiryInterval": 60},
                      will=dict(topic=f"{base}/short", payload=b"after delay", qos=1,
                                properties={"willDelayInterval": 1}))
    short.end(force=True)
    watcher.wait_for(lambda: any(m.topic == f"{base}/short" for m in watcher.messages),
                     "delayed will")
    assert [m.payload for m in watcher.messages if m.topic == f"{base}/short"] == [b"after delay"]


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_properties_round_trip(js, qos):
    topic = unique("mqttjs-props")
    sub = js.client()
    sub.subscribe(topic, qos=2, properties={"subscriptionIdentifier": 4242})
    pub = js.client()
    user = {"k": ["v1", "v2"], "ключ": "значение ✓", "empty": ""}
    props = {"userProperties": user, "contentType": "application/x-test; v=1",
             "responseTopic": f"{topic}/reply", "correlationData": b"\x00corr\xff",
             "payloadFormatIndicator": True, "messageExpiryInterval": 3600}
    pub.publish(topic, "grüße".encode(), qos=qos, properties=props)
    (m,) = sub.wait_messages(1)
    assert (m.payload, m.qos) == ("grüße".encode(), qos)
    assert m.props["userProperties"] == user
    assert list(m.props["userProperties"]) == list(user)  # in order
    assert m.props["contentType"] == "application/x-test; v=1"
    assert m.props["responseTopic"] == f"{topic}/reply"
    assert m.props["correlationData"] == b"\x00corr\xff"
    assert m.props["payloadFormatIndicator"] is True
    assert 0 < m.props["messageExpiryInterval"] <= 3600
    assert m.props["subscriptionIdentifier"] == 4242
    assert "topicAlias" not in m.props


def test_request_response_with_correlation_data(js):
    base = unique("mqttjs-rr")
    responder = js.client()
    responder.subscribe(f"{base}/service", qos=1)
    requester = js.client()
    requester.subscribe(f"{base}/replies/#", qos=1)
    for i in range(3):
        requester.publish(f"{base}/service", f"req {i}".encode(), qos=1,
                          properties={"responseTopic": f"{base}/replies/{requester.client_id}",
                                      "correlationData": bytes([i, 0xAB])})
    for req in responder.wait_messages(3):
        responder.publish(req.props["responseTopic"], req.payload.replace(b"req", b"resp"),
                          qos=1, properties={"correlationData": req.props["correlationData"]})
    got = requester.wait_messages(3)
    assert [(m.payload, m.props["correlationData"]) for m in got] == [
        (f"resp {i}".encode(), bytes([i, 0xAB])) for i in range(3)]


@pytest.mark.skipif(is_mosquitto(), reason="Tern's topic_alias_maximum")
def test_topic_aliases_both_ways(js):
    """MQTT.js assigns aliases to what it sends (autoAssignTopicAlias, within the broker's Topic
    Alias Maximum) and resolves the aliases the broker sends it (Topic Alias Maximum 2)."""
    base = unique("mqttjs-alias")
    sub = js.client(properties={"topicAliasMaximum": 2})
    sub.subscribe(f"{base}/#", qos=1)
    pub = js.client(autoAssignTopicAlias=True)
    assert pub.connack["properties"]["topicAliasMaximum"] >= 1
    sent = [(f"{base}/{t}", f"{i}".encode()) for i, t in enumerate("abcabcaab")]
    for t, p in sent:
        pub.publish(t, p, qos=1)
    got = sub.wait_messages(len(sent))
    assert [(m.topic, m.payload) for m in got] == sent  # MQTT.js resolved every alias
    aliases = [m.props.get("topicAlias") for m in got]
    assert all(a is None or 1 <= a <= 2 for a in aliases), aliases
    assert any(a is not None for a in aliases), "the broker used no alias"


def test_subscription_options(js):
    base = unique("mqttjs-subopts")
    me = js.client()
    other = js.client()
    me.subscribe(f"{base}/nl", qos=1, nl=True)  # No Local
    me.publish(f"{base}/nl", b"mine", qos=1)
    other.publish(f"{base}/nl", b"theirs", qos=1)
    me.wait_messages(1)
    assert [m.payload for m in me.messages] == [b"theirs"]

    other.publish(f"{base}/ret", b"old", qos=1, retain=True)
    rap = js.client()
    rap.subscribe(f"{base}/ret", qos=1, rap=True)  # Retain As Published, Retain Handling 0
    rh2 = js.client()
    rh2.subscribe(f"{base}/ret", qos=1, rh=2)  # never send retained messages
    (m,) = rap.wait_messages(1)
    assert (m.payload, m.retain) == (b"old", True)
    other.publish(f"{base}/ret", b"new", qos=1, retain=True)
    (_, m) = rap.wait_messages(2)
    assert (m.payload, m.retain) == (b"new", True)  # the live message keeps RETAIN 1
    (m,) = rh2.wait_messages(1)
    assert (m.payload, m.retain) == (b"new", False)  # live only, RETAIN cleared

    rh1 = js.client()
    rh1.subscribe(f"{base}/ret", qos=1, rh=1)  # only when the subscription is new
    (m,) = rh1.wait_messages(1)
    assert (m.payload, m.retain) == (b"new", True)
    rh1.subscribe(f"{base}/ret", qos=1, rh=1)  # existing subscription: nothing
    assert marker_after(rh1, other, f"{base}/ret") == []


def test_shared_subscription_each_message_to_one_member(js):
    topic = unique("mqttjs-shared")
    members = [js.client() for _ in range(2)]
    for c in members:
        c.subscribe(f"$share/g1/{topic}", qos=1)
    plain = js.client()
    plain.subscribe(topic, qos=1)
    pub = js.client()
    sent = [f"m{i}".encode() for i in range(20)]
    for p in sent:
        pub.publish(topic, p, qos=1)
    plain.wait_messages(len(sent))
    assert [m.payload for m in plain.messages] == sent  # ordinary subscribers get all
    js.session.wait(lambda: sum(len(c.messages) for c in members) >= len(sent),
                    "all shared messages")
    for c in members:  # a marker on another topic shows nothing else is on its way
        c.subscribe(f"{topic}/marker", qos=1)
        marker_after(c, pub, f"{topic}/marker")
    got = sorted(m.payload for c in members for m in c.messages if m.topic == topic)
    assert got == sorted(sent)  # each message exactly once in the group
    assert all(len([m for m in c.messages if m.topic == topic]) > 0 for c in members)
    assert all(m.qos == 1 for c in members for m in c.messages)


def test_session_expiry_keeps_session_and_queues_messages(js):
    topic = unique("mqttjs-session")
    cid = unique("mqttjs-persistent")
    sub = js.client(client_id=cid, properties={"sessionExpiryInterval": 300})
    assert sub.connack["sessionPresent"] is False
    sub.subscribe(topic, qos=1)
    sub.end()
    pub = js.client()
    queued = [f"queued {i}".encode() for i in range(3)]
    for p in queued:
        pub.publish(topic, p, qos=1, properties={"userProperties": {"n": p.decode()}})
    back = js.client(client_id=cid, clean=False, properties={"sessionExpiryInterval": 300})
    assert back.connack["sessionPresent"] is True
    got = back.wait_messages(3)
    assert [(m.payload, m.qos) for m in got] == [(p, 1) for p in queued]
    assert [m.props["userProperties"] for m in got] == [{"n": p.decode()} for p in queued]
    pub.publish(topic, b"live", qos=1)  # the subscription is part of the session
    back.wait_messages(4)
    back.end()

    fresh = js.client(client_id=cid, clean=True, properties={"sessionExpiryInterval": 300})
    assert fresh.connack["sessionPresent"] is False  # Clean Start discarded the session
    fresh.subscribe(f"{topic}/x", qos=1)
    pub.publish(topic, b"stale", qos=1)  # no longer subscribed to
    assert marker_after(fresh, pub, f"{topic}/x") == []


def test_session_expiry_zero_ends_session_with_connection(js):
    topic = unique("mqttjs-nosession")
    cid = unique("mqttjs-transient")
    sub = js.client(client_id=cid, clean=False)  # no Session Expiry Interval: 0
    sub.subscribe(topic, qos=1)
    sub.end()
    pub = js.client()
    pub.publish(topic, b"lost", qos=1)
    back = js.client(client_id=cid, clean=False)
    assert back.connack["sessionPresent"] is False
    back.subscribe(f"{topic}/x", qos=1)
    pub.publish(topic, b"stale", qos=1)
    assert marker_after(back, pub, f"{topic}/x") == []  # nothing queued, old subscription gone


def test_persistent_session_mqtt311(js):
    topic = unique("mqttjs-311-session")
    cid = unique("mqttjs-311")
    js.client(client_id=cid, version=4, clean=True).end()
    sub = js.client(client_id=cid, version=4, clean=False)
    assert sub.connack["sessionPresent"] is False
    sub.subscribe(topic, qos=2)
    sub.end()
    pub = js.client(version=4)
    pub.publish(topic, b"q1", qos=1)
    pub.publish(topic, b"q2", qos=2)
    back = js.client(client_id=cid, version=4, clean=False)
    assert back.connack["sessionPresent"] is True
    got = back.wait_messages(2)
    assert [(m.payload, m.qos) for m in got] == [(b"q1", 1), (b"q2", 2)]
    back.end()
    clean = js.client(client_id=cid, version=4, clean=True)
    assert clean.connack["sessionPresent"] is False


@pytest.mark.skipif(is_mosquitto(), reason="mosquitto 2.0.11 closes a taken-over MQTT 5 "
                    "connection without DISCONNECT 0x8E")
def test_session_takeover_sends_disconnect_0x8e(js):
    cid = unique("mqttjs-takeover")
    first = js.client(client_id=cid)
    js.client(client_id=cid)
    first.wait_for(lambda: any(e["ev"] == "close" for e in first.events), "close")
    disconnects = [e for e in first.events if e["ev"] == "disconnect"]
    assert [e["reasonCode"] for e in disconnects] == [0x8E], first.events  # Session taken over
