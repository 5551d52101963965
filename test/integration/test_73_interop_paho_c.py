# Interoperability with the Eclipse Paho C client library (Debian libpaho-mqtt-dev 1.3):
#  - its sample programs: paho_c_pub / paho_c_sub (asynchronous library, MQTTAsync) and
#    paho_cs_pub / paho_cs_sub (synchronous library, MQTTClient);
#  - test/interop/paho_c_driver.c, a small program on MQTTAsync built here with gcc, that runs
#    a client driven by commands on stdin and reports every reply and message as JSON, so that
#    QoS, retain flags, reason codes, Session Present and MQTT 5 properties can be asserted on.
# Each driver process holds one connection (the library takes about 2 s to connect a second
# client in one process, so a reconnect is a new process).

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import free_port
from helpers import HOST, is_mosquitto, marker_after, unique

INTEROP = Path(__file__).resolve().parents[1] / "interop"
DRIVER_SRC = INTEROP / "paho_c_driver.c"
TIMEOUT = 10.0
SAMPLES = ("paho_c_pub", "paho_c_sub", "paho_cs_pub", "paho_cs_sub")

# MQTT 5 property identifiers as the driver reports them.
PROPS = {1: "payload_format_indicator", 2: "message_expiry_interval", 3: "content_type",
         8: "response_topic", 9: "correlation_data", 11: "subscription_identifier",
         17: "session_expiry_interval", 18: "assigned_client_identifier",
         19: "server_keep_alive", 21: "authentication_method", 26: "response_information",
         28: "server_reference", 31: "reason_string", 33: "receive_maximum",
         34: "topic_alias_maximum", 35: "topic_alias", 36: "maximum_qos", 37: "retain_available",
         38: "user_property", 39: "maximum_packet_size", 40: "wildcard_available",
         41: "subscription_identifiers_available", 42: "shared_available"}
STRING_PROPS = {3, 8, 18, 21, 26, 28, 31}
REPEATED_PROPS = {11, 38}


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def driver_bin(tmp_path_factory):
    missing = [p for p in ("/usr/include/MQTTAsync.h",) if not os.path.exists(p)]
    gcc = shutil.which("gcc") or shutil.which("cc")
    if missing or gcc is None:
        pytest.fail("the Paho C tests need gcc and Debian's libpaho-mqtt-dev "
                    "(apt-get install gcc libpaho-mqtt-dev paho.mqtt.c-examples)")
    out = tmp_path_factory.mktemp("pahoc") / "paho_c_driver"
    r = subprocess.run([gcc, "-O1", "-Wall", "-o", str(out), str(DRIVER_SRC), "-lpaho-mqtt3a"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"building {DRIVER_SRC.name} failed:\n{r.stderr}"
    return out


@pytest.fixture(scope="module")
def samples():
    paths = {name: shutil.which(name) for name in SAMPLES}
    absent = [n for n, p in paths.items() if p is None]
    if absent:
        pytest.fail(f"{', '.join(absent)} not found: install Debian's paho.mqtt.c-examples")
    return paths


def hexarg(v):
    if isinstance(v, bool):
        v = int(v)
    if isinstance(v, bytes):
        return v.hex()
    return str(v).encode().hex()


def decode_props(raw):
    out = {}
    for entry in raw or []:
        pid, rest = entry[0], entry[1:]
        name = PROPS.get(pid, str(pid))
        if pid == 38:
            value = (bytes.fromhex(rest[0]).decode(), bytes.fromhex(rest[1]).decode())
        elif pid in STRING_PROPS:
            value = bytes.fromhex(rest[0]).decode()
        elif pid == 9 or pid == 22:
            value = bytes.fromhex(rest[0])
        else:
            value = rest[0]
        if pid in REPEATED_PROPS:
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    return out


class PahoC:
    """One Paho C client (MQTTAsync) in its own driver process."""

    def __init__(self, binary, port, client_id=None, version=5, uri=None, connect=True, **kw):
        self.client_id = client_id or unique("pahoc")
        self.version = version
        self.uri = uri or f"tcp://{HOST}:{port}"
        self.proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.events = queue.Queue()
        self.messages = []
        self.other = []  # "lost" and "disconnected" events
        self.stderr = []
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        ready = self._next_event(TIMEOUT)
        assert ready.get("ev") == "ready", ready
        self.connack = self.connect(**kw) if connect else None

    def _read(self):
        for line in self.proc.stdout:
            ev = json.loads(line)
            if ev["ev"] == "message":
                ev = SimpleNamespace(topic=bytes.fromhex(ev["topic"]).decode(),
                                     payload=bytes.fromhex(ev["payload"]), qos=ev["qos"],
                                     retain=bool(ev["retain"]), dup=bool(ev["dup"]),
                                     props=decode_props(ev["props"]))
                self.messages.append(ev)
                self.events.put(("message", ev))
            else:
                if "props" in ev:
                    ev["props"] = decode_props(ev["props"])
                if ev["ev"] in ("lost", "disconnected"):
                    self.other.append(ev)
                self.events.put(("event", ev))
        self.events.put(("eof", None))

    def _next_event(self, timeout):
        kind, ev = self.events.get(timeout=timeout)
        assert kind != "eof", f"paho C driver exited: {''.join(self.stderr)[-2000:]}"
        return ev

    def call(self, op, timeout=TIMEOUT, **kw):
        """Runs one command; returns its reply (dict) once the broker answered it."""
        self.next_id += 1
        cid = self.next_id
        parts = [str(cid), op]
        for k, v in kw.items():
            if v is None:
                continue
            for item in (v if isinstance(v, list) else [v]):
                if isinstance(item, tuple):  # a user property
                    item = f"{hexarg(item[0])}:{hexarg(item[1])}"
                parts.append(f"{k}={hexarg(item)}")
        self.proc.stdin.write(" ".join(parts) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no reply to {op} within {timeout}s")
            try:
                ev = self._next_event(left)
            except queue.Empty:
                continue
            if isinstance(ev, dict) and ev.get("ev") == "reply" and ev.get("id") == cid:
                return ev

    def connect(self, clean=True, **kw):
        r = self.call("connect", name="c", uri=self.uri, cid=self.client_id, v=self.version,
                      clean=clean, **kw)
        return r

    def subscribe(self, topic, qos=0, **kw):
        r = self.call("subscribe", name="c", topic=topic, qos=qos, **kw)
        assert r["ok"] == 1 and r["reason"] == qos, f"SUBSCRIBE {topic} at QoS {qos}: {r}"
        return r

    def publish(self, topic, payload=b"", qos=0, retain=False, **kw):
        r = self.call("publish", name="c", topic=topic, payload=payload, qos=qos, retain=retain,
                      **kw)
        assert r["ok"] == 1, f"PUBLISH {topic}: {r}"
        return r

    def disconnect(self, reason=None):
        return self.call("disconnect", name="c", reason=reason)

    def wait_messages(self, n, timeout=TIMEOUT, what="messages"):
        deadline = time.monotonic() + timeout
        while len(self.messages) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.client_id}: {len(self.messages)} of {n} {what} "
                                     f"arrived: {self.messages}")
            try:
                self._next_event(min(left, 0.5))
            except queue.Empty:
                pass
        return self.messages[:n]

    def wait_for(self, pred, timeout=TIMEOUT, what="event"):
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.client_id}: no {what} within {timeout}s")
            try:
                self._next_event(min(left, 0.5))
            except queue.Empty:
                pass

    def kill(self):
        """SIGKILL: the connection drops without DISCONNECT."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("0 quit\n")
                self.proc.stdin.flush()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def pahoc(driver_bin, broker):
    """Factory: pahoc(port, ...) -> a connected PahoC; all are stopped at teardown."""
    made = []

    def make(port, *args, **kw):
        c = PahoC(driver_bin, port, *args, **kw)
        made.append(c)
        return c

    yield make
    for c in reversed(made):
        c.close()


def ok_connack(c, session_present=0):
    assert c.connack["ok"] == 1, f"CONNACK: {c.connack}"
    assert c.connack["reason"] == 0
    assert c.connack["session_present"] == session_present, c.connack


# ---------------------------------------------------------------------------------------------
# The sample programs
# ---------------------------------------------------------------------------------------------

class SampleSub:
    """paho_c_sub / paho_cs_sub in the background; its output lines are collected."""

    LINE = re.compile(r"^(?:(\d+) )?(\S+)\t(.*)$")

    def __init__(self, path, port, topic, qos=2, version="5", extra=()):
        args = [path, "-h", HOST, "-p", str(port), "-t", topic, "-q", str(qos), "-V", version,
                "-i", unique("sample-sub"), *extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True, bufsize=1)
        self.lines = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()

    def messages(self):
        """(topic, payload, [property lines]) for every message printed."""
        out = []
        with self.cond:
            for line in self.lines:
                m = self.LINE.match(line)
                if m:
                    if m.group(1) is not None:
                        assert int(m.group(1)) == len(m.group(3).encode()), line
                    out.append((m.group(2), m.group(3), []))
                elif line.startswith("Property name ") and out:
                    out[-1][2].append(line[len("Property name "):])
        return out

    def wait(self, pred, what, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"{what}: sample subscriber printed {self.lines}")
                self.cond.wait(min(left, 0.2))

    def wait_ready(self, probe_pub, topic):
        """Publishes QoS 0 probes on `topic` until one is printed: then the subscription is in
        place at the broker."""
        deadline = time.monotonic() + TIMEOUT
        n = 0
        while True:
            n += 1
            token = f"probe-{n}"
            probe_pub.publish(topic, token.encode(), qos=0)
            try:
                self.wait(lambda: any(p == token for _, p, _ in self.messages()), "probe",
                          timeout=0.3)
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


@pytest.fixture
def sample_subs():
    made = []

    def make(*args, **kw):
        s = SampleSub(*args, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def run_sample_pub(path, port, topic, message, qos=0, version="5", extra=()):
    args = [path, "-h", HOST, "-p", str(port), "-t", topic, "-q", str(qos), "-V", version,
            "-i", unique("sample-pub")]
    args += ["-n"] if message is None else ["-m", message]
    r = subprocess.run(args + list(extra), capture_output=True, text=True, timeout=TIMEOUT,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"{Path(path).name} failed ({r.returncode}): {r.stdout}{r.stderr}"
    return r


@pytest.mark.parametrize("family", ["c", "cs"], ids=["async-samples", "sync-samples"])
@pytest.mark.parametrize("version", ["311", "5"])
def test_samples_publish_and_subscribe_at_each_qos(broker, pahoc, samples, sample_subs, family,
                                                   version):
    b = broker()
    base = unique("samples")
    sub = sample_subs(samples[f"paho_{family}_sub"], b.port, f"{base}/#", qos=2, version=version)
    sub.wait_ready(pahoc(b.port), f"{base}/probe")
    for qos in (0, 1, 2):
        run_sample_pub(samples[f"paho_{family}_pub"], b.port, f"{base}/q{qos}",
                       f"payload at qos {qos}", qos=qos, version=version)
    want = [(f"{base}/q{q}", f"payload at qos {q}") for q in (0, 1, 2)]
    sub.wait(lambda: all(w in [(t, p) for t, p, _ in sub.messages()] for w in want),
             "the three messages")
    got = [(t, p) for t, p, _ in sub.messages() if "/probe" not in t]
    assert got == want  # each once, in order


def test_samples_retained_message_and_clearing_it(broker, pahoc, samples, sample_subs):
    b = broker()
    base = unique("samples-ret")
    topic = f"{base}/r"
    run_sample_pub(samples["paho_cs_pub"], b.port, topic, "kept", qos=1, version="311",
                   extra=["-r"])
    sub = sample_subs(samples["paho_c_sub"], b.port, f"{base}/#", qos=1, version="5")
    sub.wait(lambda: len(sub.messages()) >= 1, "the retained message")
    assert sub.messages()[0][:2] == (topic, "kept")
    sub.stop()

    run_sample_pub(samples["paho_c_pub"], b.port, topic, None, qos=1, version="5",
                   extra=["-r"])  # -n: an empty retained message clears it
    sub2 = sample_subs(samples["paho_cs_sub"], b.port, f"{base}/#", qos=1, version="311")
    sub2.wait_ready(pahoc(b.port), f"{base}/probe")
    assert all(t != topic for t, _, _ in sub2.messages()), sub2.lines  # no retained message


@pytest.mark.parametrize("family,version", [("c", "5"), ("cs", "311")],
                         ids=["async-sample-v5", "sync-sample-v311"])
def test_samples_will_on_abrupt_close(broker, pahoc, samples, sample_subs, family, version):
    b = broker()
    base = unique("samples-will")
    watcher = pahoc(b.port)
    watcher.subscribe(f"{base}/will", qos=1)
    holder = sample_subs(samples[f"paho_{family}_sub"], b.port, f"{base}/in/#", qos=1,
                         version=version,
                         extra=["--will-topic", f"{base}/will", "--will-payload", "gone",
                                "--will-qos", "1"])
    holder.wait_ready(pahoc(b.port), f"{base}/in")
    assert watcher.messages == []
    holder.proc.send_signal(signal.SIGKILL)
    holder.proc.wait(5)
    (m,) = watcher.wait_messages(1, what="will")
    assert (m.topic, m.payload, m.qos, m.retain) == (f"{base}/will", b"gone", 1, False)


def test_samples_user_property_and_message_expiry(broker, pahoc, samples, sample_subs):
    b = broker()
    base = unique("samples-props")
    sub = sample_subs(samples["paho_cs_sub"], b.port, f"{base}/#", qos=1, version="5")
    watcher = pahoc(b.port)
    watcher.subscribe(f"{base}/#", qos=1)
    sub.wait_ready(pahoc(b.port), f"{base}/probe")
    run_sample_pub(samples["paho_c_pub"], b.port, f"{base}/p", "with props", qos=1, version="5",
                   extra=["--user-property", "origin", "paho-c-sample",
                          "--message-expiry", "120"])
    sub.wait(lambda: any(p == "with props" for _, p, _ in sub.messages()), "the message")
    (_, _, props), = [m for m in sub.messages() if m[1] == "with props"]
    assert "USER_PROPERTY key origin value paho-c-sample" in props, props
    (expiry,) = [int(p.split()[-1]) for p in props if p.startswith("MESSAGE_EXPIRY_INTERVAL")]
    assert 0 < expiry <= 120
    watcher.wait_for(lambda: any(m.payload == b"with props" for m in watcher.messages))
    (m,) = [m for m in watcher.messages if m.payload == b"with props"]
    assert m.props["user_property"] == [("origin", "paho-c-sample")]
    assert 0 < m.props["message_expiry_interval"] <= 120


# ---------------------------------------------------------------------------------------------
# The driver: MQTT 3.1.1 and 5.0 feature by feature
# ---------------------------------------------------------------------------------------------

VERSIONS = pytest.mark.parametrize("version", [5, 4], ids=["v5", "v311"])


@pytest.mark.parametrize("version", [5, 4, 3], ids=["v5", "v311", "v31"])
def test_connect_and_qos_levels(broker, pahoc, version):
    b = broker()
    topic = unique("pahoc-qos")
    subs = [pahoc(b.port, version=version) for _ in range(3)]
    for c in subs:
        ok_connack(c)
    for q, c in enumerate(subs):
        c.subscribe(topic, qos=q)
    pub = pahoc(b.port, version=version)
    payloads = [bytes([0, 1, 2, q, 0xFF, 0xFE]) + b"qos" + str(q).encode() for q in range(3)]
    for q, p in enumerate(payloads):
        r = pub.publish(topic, p, qos=q)
        if version == 5 and q > 0:
            assert r["reason"] == 0, r  # PUBACK / PUBCOMP success
    for sq, c in enumerate(subs):
        got = c.wait_messages(3)
        assert [m.payload for m in got] == payloads  # in order, byte for byte
        assert [m.qos for m in got] == [min(sq, pq) for pq in range(3)]
        assert all(m.topic == topic and not m.retain and not m.dup for m in got)


@VERSIONS
def test_retained_messages(broker, pahoc, version):
    b = broker()
    base = unique("pahoc-retain")
    live = pahoc(b.port, version=version)
    live.subscribe(f"{base}/#", qos=2)
    pub = pahoc(b.port, version=version)
    props = dict(up=[("kept", "with the message")], ct="text/x-retained") if version == 5 else {}
    pub.publish(f"{base}/a", b"retained-a", qos=1, retain=True, **props)
    pub.publish(f"{base}/b", b"retained-b", qos=2, retain=True)
    got = live.wait_messages(2)
    # an existing subscription gets the messages with RETAIN 0
    assert [(m.payload, m.retain) for m in got] == [(b"retained-a", False), (b"retained-b", False)]

    late = pahoc(b.port, version=version)
    late.subscribe(f"{base}/#", qos=1)
    got = late.wait_messages(2)
    assert sorted((m.topic, m.payload, m.qos, m.retain) for m in got) == [
        (f"{base}/a", b"retained-a", 1, True), (f"{base}/b", b"retained-b", 1, True)]
    if version == 5:  # the retained copy keeps its properties
        (a,) = [m for m in got if m.payload == b"retained-a"]
        assert a.props["user_property"] == [("kept", "with the message")]
        assert a.props["content_type"] == "text/x-retained"

    pub.publish(f"{base}/a", b"", qos=1, retain=True)  # clears it
    fresh = pahoc(b.port, version=version)
    fresh.subscribe(f"{base}/#", qos=1)
    before = marker_after(fresh, pub, f"{base}/marker", since=0)
    assert [(m.topic, m.payload, m.retain) for m in before] == [(f"{base}/b", b"retained-b", True)]


@VERSIONS
def test_will_published_when_connection_drops(broker, pahoc, version):
    b = broker()
    base = unique("pahoc-will")
    watcher = pahoc(b.port, version=version)
    watcher.subscribe(f"{base}/#", qos=2)
    extra = {}
    if version == 5:
        extra = dict(will_up=[("who", "paho-c"), ("why", "killed")], will_ct="text/plain")
    holder = pahoc(b.port, version=version, will_topic=f"{base}/status",
                   will_payload=b"offline\x00\xff", will_qos=2, will_retain=True, **extra)
    ok_connack(holder)
    assert marker_after(watcher, pahoc(b.port), f"{base}/marker") == []  # nothing yet
    holder.kill()
    watcher.wait_for(lambda: any(m.topic == f"{base}/status" for m in watcher.messages),
                     what="will")
    (m,) = [m for m in watcher.messages if m.topic == f"{base}/status"]
    assert (m.payload, m.qos) == (b"offline\x00\xff", 2)
    if version == 5:
        assert m.props["user_property"] == [("who", "paho-c"), ("why", "killed")]
        assert m.props["content_type"] == "text/plain"
    late = pahoc(b.port, version=version)  # the will was retained
    late.subscribe(f"{base}/status", qos=1)
    (r,) = late.wait_messages(1)
    assert (r.payload, r.qos, r.retain) == (b"offline\x00\xff", 1, True)


@VERSIONS
def test_unsubscribe(broker, pahoc, version):
    b = broker()
    base = unique("pahoc-unsub")
    sub = pahoc(b.port, version=version)
    sub.subscribe(f"{base}/a", qos=1)
    sub.subscribe(f"{base}/b", qos=1)
    r = sub.call("unsubscribe", name="c", topic=f"{base}/a")
    assert r["ok"] == 1 and r.get("reason", 0) == 0, r
    if version == 5 and not is_mosquitto():  # Tern documents UNSUBACK 0x11
        r = sub.call("unsubscribe", name="c", topic=f"{base}/never")
        assert (r["ok"], r["reason"]) == (1, 0x11), r  # No subscription existed
    pub = pahoc(b.port, version=version)
    pub.publish(f"{base}/a", b"unsubscribed", qos=1)
    assert marker_after(sub, pub, f"{base}/b") == []


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_large_payload(broker, pahoc, qos):
    b = broker()
    topic = unique("pahoc-large")
    sub = pahoc(b.port)
    sub.subscribe(topic, qos=2)
    pub = pahoc(b.port)
    payload = bytes((i * 7 + qos) % 256 for i in range(512 * 1024 + 3))
    pub.publish(topic, payload, qos=qos)
    (m,) = sub.wait_messages(1)
    assert (len(m.payload), m.qos) == (len(payload), qos)
    assert m.payload == payload


def test_will_after_disconnect_reason_0x04_but_not_after_normal_disconnect(broker, pahoc):
    b = broker()
    base = unique("pahoc-will-dc")
    watcher = pahoc(b.port)
    watcher.subscribe(f"{base}/#", qos=1)
    polite = pahoc(b.port, will_topic=f"{base}/polite", will_payload=b"x", will_qos=1)
    assert polite.disconnect()["ok"] == 1  # reason 0x00: the will is discarded
    leaving = pahoc(b.port, will_topic=f"{base}/with-will", will_payload=b"bye", will_qos=1)
    assert leaving.disconnect(reason=0x04)["ok"] == 1  # Disconnect with Will Message
    watcher.wait_for(lambda: any(m.topic == f"{base}/with-will" for m in watcher.messages),
                     what="will after DISCONNECT 0x04")
    before = marker_after(watcher, pahoc(b.port), f"{base}/marker", since=0)
    assert [(m.topic, m.payload) for m in before] == [(f"{base}/with-will", b"bye")]


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_properties_round_trip(broker, pahoc, qos):
    b = broker()
    topic = unique("pahoc-props")
    sub = pahoc(b.port)
    sub.subscribe(topic, qos=2, subid=4242)
    pub = pahoc(b.port)
    user = [("k", "v1"), ("k", "v2"), ("ключ", "значение ✓"), ("empty", "")]
    pub.publish(topic, "grüße".encode(), qos=qos, up=user, ct="application/x-test; v=1",
                rt=f"{topic}/reply", cd=b"\x00corr\xff", pfi=1, mei=3600)
    (m,) = sub.wait_messages(1)
    assert (m.payload, m.qos) == ("grüße".encode(), qos)
    assert m.props["user_property"] == user  # all of them, in order
    assert m.props["content_type"] == "application/x-test; v=1"
    assert m.props["response_topic"] == f"{topic}/reply"
    assert m.props["correlation_data"] == b"\x00corr\xff"
    assert m.props["payload_format_indicator"] == 1
    assert 0 < m.props["message_expiry_interval"] <= 3600
    assert m.props["subscription_identifier"] == [4242]
    assert "topic_alias" not in m.props  # the subscriber did not allow aliases


def test_request_response_with_correlation_data(broker, pahoc):
    b = broker()
    base = unique("pahoc-rr")
    responder = pahoc(b.port)
    responder.subscribe(f"{base}/service", qos=1)
    requester = pahoc(b.port)
    requester.subscribe(f"{base}/replies/#", qos=1)
    for i in range(3):
        requester.publish(f"{base}/service", f"req {i}".encode(), qos=1,
                          rt=f"{base}/replies/{requester.client_id}", cd=bytes([i, 0xAB]))
    for req in responder.wait_messages(3):
        responder.publish(req.props["response_topic"], req.payload.replace(b"req", b"resp"),
                          qos=1, cd=req.props["correlation_data"])
    got = requester.wait_messages(3)
    assert [(m.payload, m.props["correlation_data"]) for m in got] == [
        (f"resp {i}".encode(), bytes([i, 0xAB])) for i in range(3)]


@pytest.mark.skipif(is_mosquitto(), reason="Tern's topic_alias_maximum (mosquitto's default "
                    "differs)")
def test_topic_alias_from_client(broker, pahoc):
    b = broker()
    base = unique("pahoc-alias-in")
    sub = pahoc(b.port)
    sub.subscribe(f"{base}/#", qos=1)
    pub = pahoc(b.port)
    assert pub.connack["props"]["topic_alias_maximum"] >= 2
    pub.publish(f"{base}/one", b"1", qos=1, alias=1)   # binds alias 1
    pub.publish(f"{base}/two", b"2", qos=1, alias=2)   # binds alias 2
    pub.publish("", b"3", qos=1, alias=1)              # alias only
    pub.publish("", b"4", qos=0, alias=2)
    pub.publish(f"{base}/three", b"5", qos=1, alias=1)  # rebinds alias 1
    pub.publish("", b"6", qos=1, alias=1)
    got = sub.wait_messages(6)
    assert [(m.topic, m.payload) for m in got] == [
        (f"{base}/one", b"1"), (f"{base}/two", b"2"), (f"{base}/one", b"3"),
        (f"{base}/two", b"4"), (f"{base}/three", b"5"), (f"{base}/three", b"6")]


def test_topic_alias_to_client(broker, pahoc):
    """Paho C hands inbound aliases to the application: the first message on a topic carries
    the name and the alias, later ones may carry the alias only; resolving them gives back
    every topic."""
    b = broker()
    base = unique("pahoc-alias-out")
    sub = pahoc(b.port, alias_max=2)
    sub.subscribe(f"{base}/#", qos=1)
    pub = pahoc(b.port)
    sent = [(f"{base}/{t}", f"{i}".encode()) for i, t in enumerate("abcabcab")]
    for t, p in sent:
        pub.publish(t, p, qos=1)
    got = sub.wait_messages(len(sent))
    aliases, resolved = {}, []
    for m in got:
        alias = m.props.get("topic_alias")
        if alias is not None:
            assert 1 <= alias <= 2, m
            if m.topic:
                aliases[alias] = m.topic
            else:
                assert alias in aliases, f"alias {alias} used before it was set: {m}"
        else:
            assert m.topic, m
        resolved.append((m.topic or aliases[alias], m.payload))
    assert resolved == sent


def test_subscription_options(broker, pahoc):
    b = broker()
    base = unique("pahoc-subopts")
    me = pahoc(b.port)
    other = pahoc(b.port)
    me.subscribe(f"{base}/nl", qos=1, nl=1)  # No Local
    me.publish(f"{base}/nl", b"mine", qos=1)
    other.publish(f"{base}/nl", b"theirs", qos=1)
    me.wait_messages(1)
    assert [m.payload for m in me.messages] == [b"theirs"]

    other.publish(f"{base}/ret", b"old", qos=1, retain=True)
    rap = pahoc(b.port)
    rap.subscribe(f"{base}/ret", qos=1, rap=1)  # Retain As Published, Retain Handling 0
    rh2 = pahoc(b.port)
    rh2.subscribe(f"{base}/ret", qos=1, rh=2)  # never send retained messages
    (m,) = rap.wait_messages(1)
    assert (m.payload, m.retain) == (b"old", True)
    other.publish(f"{base}/ret", b"new", qos=1, retain=True)
    (_, m) = rap.wait_messages(2)
    assert (m.payload, m.retain) == (b"new", True)  # the live message keeps RETAIN 1
    (m,) = rh2.wait_messages(1)
    assert (m.payload, m.retain) == (b"new", False)  # live only, RETAIN cleared

    rh1 = pahoc(b.port)
    rh1.subscribe(f"{base}/ret", qos=1, rh=1)  # only when the subscription is new
    (m,) = rh1.wait_messages(1)
    assert (m.payload, m.retain) == (b"new", True)
    rh1.subscribe(f"{base}/ret", qos=1, rh=1)  # existing subscription: nothing
    assert marker_after(rh1, other, f"{base}/ret") == []


def test_shared_subscription_each_message_to_one_member(broker, pahoc):
    b = broker()
    topic = unique("pahoc-shared")
    members = [pahoc(b.port) for _ in range(2)]
    for c in members:
        c.subscribe(f"$share/g1/{topic}", qos=1)
    plain = pahoc(b.port)
    plain.subscribe(topic, qos=1)
    pub = pahoc(b.port)
    sent = [f"m{i}".encode() for i in range(20)]
    for p in sent:
        pub.publish(topic, p, qos=1)
    plain.wait_messages(len(sent))
    assert [m.payload for m in plain.messages] == sent  # ordinary subscribers get all
    deadline = time.monotonic() + TIMEOUT
    while sum(len(c.messages) for c in members) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.02)  # the reader threads collect the messages
    # each message exactly once in the group (a further marker shows nothing else comes)
    for c in members:
        c.subscribe(f"{topic}/marker", qos=1)
        marker_after(c, pub, f"{topic}/marker")
    got = sorted(m.payload for c in members for m in c.messages if not m.topic.endswith("marker"))
    assert got == sorted(sent)
    assert all(len(c.messages) > 1 for c in members), [len(c.messages) for c in members]
    for c in members:
        assert all(m.qos == 1 for m in c.messages)


def test_session_expiry_keeps_session_and_queues_messages(broker, pahoc):
    b = broker()
    topic = unique("pahoc-session")
    cid = unique("pahoc-persistent")
    sub = pahoc(b.port, client_id=cid, clean=True, expiry=300)
    ok_connack(sub, session_present=0)
    sub.subscribe(topic, qos=1)
    sub.disconnect()
    pub = pahoc(b.port)
    queued = [f"queued {i}".encode() for i in range(3)]
    for p in queued:
        pub.publish(topic, p, qos=1, up=[("n", p.decode())])
    back = pahoc(b.port, client_id=cid, clean=False, expiry=300)
    ok_connack(back, session_present=1)
    got = back.wait_messages(3)
    assert [(m.payload, m.qos) for m in got] == [(p, 1) for p in queued]
    assert [m.props["user_property"] for m in got] == [[("n", p.decode())] for p in queued]
    pub.publish(topic, b"live", qos=1)  # the subscription is part of the session
    back.wait_messages(4)
    back.disconnect()

    fresh = pahoc(b.port, client_id=cid, clean=True, expiry=300)
    ok_connack(fresh, session_present=0)  # Clean Start discarded the session
    fresh.subscribe(f"{topic}/x", qos=1)
    pub.publish(topic, b"stale", qos=1)  # no longer subscribed to
    assert marker_after(fresh, pub, f"{topic}/x") == []


def test_session_expiry_zero_ends_session_with_connection(broker, pahoc):
    b = broker()
    topic = unique("pahoc-nosession")
    cid = unique("pahoc-transient")
    sub = pahoc(b.port, client_id=cid, clean=False)  # no Session Expiry Interval: 0
    ok_connack(sub, session_present=0)
    sub.subscribe(topic, qos=1)
    sub.disconnect()
    pahoc(b.port).publish(topic, b"lost", qos=1)
    back = pahoc(b.port, client_id=cid, clean=False)
    ok_connack(back, session_present=0)
    back.subscribe(f"{topic}/x", qos=1)
    pub = pahoc(b.port)
    pub.publish(topic, b"stale", qos=1)
    assert marker_after(back, pub, f"{topic}/x") == []  # nothing queued, old subscription gone


def test_persistent_session_mqtt311(broker, pahoc):
    b = broker()
    topic = unique("pahoc-311-session")
    cid = unique("pahoc-311")
    first = pahoc(b.port, client_id=cid, version=4, clean=True)
    ok_connack(first, session_present=0)
    first.disconnect()
    sub = pahoc(b.port, client_id=cid, version=4, clean=False)
    ok_connack(sub, session_present=0)
    sub.subscribe(topic, qos=2)
    sub.disconnect()
    pub = pahoc(b.port, version=4)
    pub.publish(topic, b"q1", qos=1)
    pub.publish(topic, b"q2", qos=2)
    back = pahoc(b.port, client_id=cid, version=4, clean=False)
    ok_connack(back, session_present=1)
    got = back.wait_messages(2)
    assert [(m.payload, m.qos) for m in got] == [(b"q1", 1), (b"q2", 2)]
    back.disconnect()
    clean = pahoc(b.port, client_id=cid, version=4, clean=True)
    ok_connack(clean, session_present=0)


@pytest.mark.skipif(is_mosquitto(), reason="mosquitto 2.0.11 closes a taken-over MQTT 5 "
                    "connection without DISCONNECT 0x8E")
def test_session_takeover_sends_disconnect_0x8e(broker, pahoc):
    b = broker()
    cid = unique("pahoc-takeover")
    first = pahoc(b.port, client_id=cid)
    ok_connack(first)
    second = pahoc(b.port, client_id=cid)
    ok_connack(second)
    first.wait_for(lambda: first.other, what="DISCONNECT or connection loss")
    kinds = [e["ev"] for e in first.other]
    assert kinds[0] == "disconnected", first.other
    assert first.other[0]["reason"] == 0x8E  # Session taken over


# ---------------------------------------------------------------------------------------------
# Paho C over WebSocket
# ---------------------------------------------------------------------------------------------

@pytest.mark.skipif(is_mosquitto(), reason="Tern listener configuration")
@VERSIONS
def test_websocket(broker, pahoc, version):
    ws_port = free_port()
    b = broker(**{"listeners.ws.interop": {"bind": f"{HOST}:{ws_port}"}})
    uri = f"ws://{HOST}:{ws_port}/mqtt"
    topic = unique("pahoc-ws")
    sub = pahoc(b.port, version=version, uri=uri)
    ok_connack(sub)
    sub.subscribe(topic, qos=2)
    tcp_sub = pahoc(b.port, version=version)
    tcp_sub.subscribe(topic, qos=2)
    pub = pahoc(b.port, version=version, uri=uri)
    extra = {"up": [("via", "websocket")]} if version == 5 else {}
    big = bytes(range(256)) * 300  # several WebSocket frames' worth
    for q in (0, 1, 2):
        pub.publish(topic, big[: 1000 * (q + 1)] if q < 2 else big, qos=q, **extra)
    for c in (sub, tcp_sub):
        got = c.wait_messages(3)
        assert [(len(m.payload), m.qos) for m in got] == [(1000, 0), (2000, 1), (len(big), 2)]
        assert got[2].payload == big
        if version == 5:
            assert all(m.props["user_property"] == [("via", "websocket")] for m in got)
