# Integration test fixtures: start the broker under test on 127.0.0.1 with a free port.
#
# The broker is Tern's broker-node (path in $TERN_BROKER_NODE, set by CTest), or Mosquitto
# when TERN_BROKER=mosquitto, so the suite can be checked against a reference broker.
#
#   def test_x(broker, clients):
#       b = broker(session={"max_inflight": 2})   # Tern TOML sections as dicts
#       sub = clients.paho(b.port)                # connected paho client, stopped at teardown
#
# A Tern option that Mosquitto cannot express makes the test skip under Mosquitto, with the
# option named in the reason. The broker's log (stdout + stderr) is kept in the test's tmp dir
# and attached to the report of a failing test.

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import helpers  # noqa: E402

MOSQUITTO_BIN = "/usr/sbin/mosquitto"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((helpers.HOST, 0))
        return s.getsockname()[1]


def parse_duration(value):
    """Tern durations: integer seconds or "<n>ms|s|m|h". Returns seconds (float)."""
    if isinstance(value, (int, float)):
        return float(value)
    for suffix, scale in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)):
        if value.endswith(suffix) and value[: -len(suffix)].isdigit():
            return int(value[: -len(suffix)]) * scale
    raise ValueError(f"bad duration {value!r}")


# ---------------------------------------------------------------------------------------------
# Config files
# ---------------------------------------------------------------------------------------------

def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string for our values
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")


def tern_config(port, data_dir, overrides):
    sections = {
        "node": {"name": "tern@127.0.0.1", "data_dir": str(data_dir)},
        "log": {"level": "debug"},
        "listeners.tcp.default": {"bind": f"{helpers.HOST}:{port}"},
        # The management API on a free port (never the fixed default 18083).
        "http": {"port": 0},
    }
    for name, values in overrides.items():
        sections.setdefault(name, {}).update(values)
    out = []
    for name, values in sections.items():
        out.append(f"[{name}]")
        out += [f"{k} = {toml_value(v)}" for k, v in values.items()]
        out.append("")
    return "\n".join(out)


def _mosq_expiration(value):
    seconds = parse_duration(value)
    if seconds < 3600 or seconds % 3600:
        pytest.skip(f"mosquitto's persistent_client_expiration has a 1 h granularity; "
                    f"cannot express session.expiry_interval = {value!r}")
    return f"persistent_client_expiration {int(seconds // 3600)}h"


def _mosq_unsupported(why):
    def f(value):
        pytest.skip(why)
    return f


# Tern option -> mosquitto.conf line (or a skip when Mosquitto has no equivalent).
MOSQUITTO_OPTIONS = {
    ("mqtt", "max_packet_size"): lambda v: f"max_packet_size {v}",
    ("mqtt", "max_clientid_len"): _mosq_unsupported(
        "mosquitto has no option limiting the client id length"),
    ("session", "max_inflight"): lambda v: f"max_inflight_messages {v}",
    ("session", "max_queued_messages"): lambda v: f"max_queued_messages {v}",
    ("session", "queue_qos0"): lambda v: f"queue_qos0_messages {'true' if v else 'false'}",
    ("session", "expiry_interval"): _mosq_expiration,
    ("session", "retry_interval"): _mosq_unsupported(
        "mosquitto 2.0 has no retry_interval: it resends unacked messages only on reconnect"),
    ("session", "max_awaiting_rel"): _mosq_unsupported("mosquitto has no max_awaiting_rel"),
    ("session", "await_rel_timeout"): _mosq_unsupported("mosquitto has no await_rel_timeout"),
}
MOSQUITTO_IGNORED_SECTIONS = {"log", "node", "http", "sys"}


def mosquitto_config(port, data_dir, overrides, persistent_store):
    lines = [
        f"listener {port} {helpers.HOST}",
        "allow_anonymous true",
        "log_dest stderr",
        "log_type all",
        "connection_messages true",
        "sys_interval 1",
    ]
    if os.geteuid() == 0:
        lines.append("user root")  # otherwise mosquitto drops to user "mosquitto"
    if persistent_store:
        lines += ["persistence true", f"persistence_location {data_dir}/"]
    else:
        lines.append("persistence false")
    for section, values in overrides.items():
        if section in MOSQUITTO_IGNORED_SECTIONS:
            continue
        for key, value in values.items():
            to_line = MOSQUITTO_OPTIONS.get((section, key))
            if to_line is None:
                pytest.skip(f"no mosquitto equivalent for Tern option {section}.{key}")
            lines.append(to_line(value))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The broker process
# ---------------------------------------------------------------------------------------------

class Broker:
    """One broker process. Stopped only through its own PID."""

    def __init__(self, kind, workdir, overrides, persistent_store):
        self.kind = kind
        self.dir = workdir
        self.data_dir = workdir / "data"
        self.log_path = workdir / "broker.log"
        self.overrides = overrides
        self.persistent_store = persistent_store
        self.port = None
        self.proc = None
        self.expected_exit = False
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)

    @property
    def pid(self):
        return self.proc.pid

    def _command(self, port):
        if self.kind == "mosquitto":
            conf = self.dir / "mosquitto.conf"
            conf.write_text(mosquitto_config(port, self.data_dir, self.overrides,
                                             self.persistent_store))
            return [MOSQUITTO_BIN, "-c", str(conf)]
        binary = os.environ.get("TERN_BROKER_NODE")
        if not binary:
            pytest.fail("set TERN_BROKER_NODE to the broker-node binary "
                        "(or TERN_BROKER=mosquitto to run against Mosquitto)")
        conf = self.dir / "tern.toml"
        conf.write_text(tern_config(port, self.data_dir, self.overrides))
        return [binary, "--config", str(conf)]

    def start(self, port=None):
        """Starts on `port` (a fresh free port if None); retries when the port is taken."""
        fixed = port is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            p = port if fixed else free_port()
            outcome = self._start_once(p, deadline)
            if outcome == "ok":
                self.port = p
                return self
            if time.monotonic() > deadline:
                pytest.fail(f"{self.kind} did not bind 127.0.0.1:{p} within {START_TIMEOUT}s\n"
                            f"{self.log_tail()}")
            time.sleep(0.1 if fixed else 0)  # a fixed port may still be held by TIME_WAIT

    def _start_once(self, port, deadline):
        cmd = self._command(port)
        self.log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            log.write(f"==== {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.dir)
        self.expected_exit = False
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = self.log_text()[self.log_start:]
                if "in use" in text.lower():
                    return "port taken"
                pytest.fail(f"{self.kind} exited with {self.proc.returncode} at start-up\n"
                            f"{self.log_tail()}")
            try:
                socket.create_connection((helpers.HOST, port), timeout=0.5).close()
                if self._all_listeners_open():
                    return "ok"
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        pytest.fail(f"{self.kind} did not accept connections on port {port} within "
                    f"{START_TIMEOUT}s\n{self.log_tail()}")

    def _all_listeners_open(self):
        """Tern binds its listeners one after the other and accepts on the first before the
        last is bound; it logs "node ... started" once all are (when it logs at info)."""
        if self.kind != "tern":
            return True
        level = self.overrides.get("log", {}).get("level", "debug")
        if level not in ("trace", "debug", "info"):
            return True
        return re.search(r"node \S+ started \(", self.log_text()[self.log_start:]) is not None

    def stop(self):
        """SIGTERM, then SIGKILL after 5 s. Returns (exit code, whether SIGKILL was needed)."""
        if self.proc is None:
            return None, False
        self.expected_exit = True
        if self.proc.poll() is not None:
            return self.proc.returncode, False
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT), False
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(STOP_TIMEOUT), True

    def kill(self):
        """SIGKILL, as in a crash or power loss."""
        self.expected_exit = True
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT)

    def restart(self, graceful=True):
        """Stops (SIGTERM, or SIGKILL if not graceful) and starts again: same port, same data."""
        if graceful:
            self.stop()
        else:
            self.kill()
        return self.start(self.port)

    def is_alive(self):
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self):
        assert self.is_alive(), (f"{self.kind} exited with {self.proc.returncode}\n"
                                 f"{self.log_tail()}")

    def proc_status(self, field):
        """A /proc/<pid>/status field in kB (VmRSS, VmHWM)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def log_text(self):
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=150):
        text = self.log_text().splitlines()
        head = f"---- {self.kind} log ({self.log_path}), last {min(lines, len(text))} lines ----"
        return "\n".join([head] + text[-lines:])


@pytest.fixture
def broker(tmp_path, request):
    """Factory: broker(**sections, persistent_store=False) -> a started Broker.

    Keyword arguments other than persistent_store are Tern TOML sections, e.g.
    broker(session={"expiry_interval": "2s"}, mqtt={"max_packet_size": 1024}).
    persistent_store only matters for Mosquitto (Tern always keeps state in data_dir)."""
    started = []
    request.node.tern_brokers = started

    def start(persistent_store=False, **sections):
        workdir = tmp_path / f"broker{len(started)}"
        b = Broker(helpers.broker_kind(), workdir, sections, persistent_store)
        started.append(b)
        return b.start()

    yield start
    crashed = []
    for b in started:
        if b.proc is not None and not b.expected_exit and b.proc.poll() is not None:
            crashed.append(f"{b.kind} (pid {b.pid}) exited during the test with "
                           f"{b.proc.returncode}\n{b.log_tail()}")
        b.stop()
    if crashed:
        pytest.fail("\n".join(crashed))


class Clients:
    """Creates clients and closes them all at teardown."""

    def __init__(self):
        self._all = []

    def paho(self, port, connect=True, **kw):
        c = helpers.Client(port, **kw)
        self._all.append(c)
        if connect:
            c.connect()
        return c

    def raw(self, port, **kw):
        c = helpers.RawClient(port, **kw)
        self._all.append(c)
        return c

    def raw_connected(self, port, client_id=None, **kw):
        c = self.raw(port)
        c.connect_ok(client_id, **kw)
        return c

    def mosquitto_sub(self, port, topics, **kw):
        s = helpers.MosquittoSub(port, topics, **kw)
        self._all.append(s)
        return s

    def close_all(self):
        for c in reversed(self._all):
            try:
                c.stop() if hasattr(c, "stop") else c.close()
            except Exception:
                pass


@pytest.fixture
def clients():
    reg = Clients()
    yield reg
    reg.close_all()


@pytest.fixture
def cluster(tmp_path, request):
    """Multi-node clusters of real broker-node processes (cluster_nodes.py)."""
    import cluster_nodes
    c = cluster_nodes.Cluster(tmp_path)
    request.node.tern_cluster = c
    yield c
    crashed = c.stop_all()
    if crashed:
        pytest.fail("\n".join(crashed))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for b in getattr(item, "tern_brokers", []):
            report.sections.append((f"broker log ({b.kind})", b.log_tail(200)))
        c = getattr(item, "tern_cluster", None)
        for n in (c.nodes if c else []):
            report.sections.append((f"node log ({n.name})", n.log_tail(150)))
