# Multi-node fixture for the cluster tests: real broker-node processes on 127.0.0.1 (free
# ports), each with its own MQTT and cluster port, joined with --join.
#
#   def test_x(cluster, clients):
#       n1, n2, n3 = cluster.start(3)            # n2 and n3 join n1; waits for a full mesh
#       sub = clients.paho(n2.port)
#
# Nodes are stopped through their own PIDs. Logs are attached to the report of a failing test.

import os
import re
import signal
import socket
import subprocess
import time

import pytest

import helpers

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
COOKIE = "test-cookie"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((helpers.HOST, 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, name, workdir, host=helpers.HOST, netns=None, cluster_toml=""):
        self.name = name
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "node.log"
        self.host = host
        self.netns = netns
        self.cluster_toml = cluster_toml  # extra lines for the [cluster] section
        self.port = None
        self.cluster_port = None
        self.proc = None
        self.expected_exit = False

    @property
    def cluster_addr(self):
        return f"{self.host}:{self.cluster_port}"

    def command(self, join, cookie, extra):
        binary = os.environ.get("TERN_BROKER_NODE")
        if not binary:
            pytest.fail("set TERN_BROKER_NODE to the broker-node binary")
        conf = self.dir / "tern.toml"
        conf.write_text(
            "[node]\n"
            f'name = "{self.name}"\n'
            f'data_dir = "{self.dir / "data"}"\n'
            "[log]\nlevel = \"debug\"\n"
            "[listeners.tcp.default]\n"
            f'bind = "{helpers.HOST}:{self.port}"\n'
            # several nodes on one host: the management API on a free port each
            "[http]\nport = 0\n"
            "[cluster]\n"
            'heartbeat_interval = "250ms"\n'
            'connection_timeout = "1s"\n'
            'reconnect_interval = "250ms"\n' + self.cluster_toml)
        cmd = [binary, "--config", str(conf), "--cluster-listen", self.cluster_addr,
               "--cookie", cookie]
        for j in join:
            cmd += ["--join", j]
        cmd += list(extra)
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        return cmd

    def start(self, join=(), cookie=COOKIE, extra=()):
        """Starts (on its previous ports after a restart); waits for the MQTT port. Ports it
        picked itself are picked again when another process took one first."""
        fresh = self.port is None
        for attempt in range(5):
            if fresh:
                self.port = free_port()
                self.cluster_port = free_port()
            if self._start_once(join, cookie, extra, retry=fresh and attempt < 4):
                return self

    def _start_once(self, join, cookie, extra, retry):
        cmd = self.command(join, cookie, extra)
        self.log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            log.write(f"==== {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.dir)
        self.expected_exit = False
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = self.log_text()[self.log_start:].lower()
                if retry and ("in use" in text or "cannot listen" in text):
                    return False  # a port taken between free_port() and the bind
                pytest.fail(f"{self.name} exited with {self.proc.returncode} at start-up\n"
                            f"{self.log_tail()}")
            if "listening on" in self.log_text()[self.log_start:] and self._mqtt_up():
                return True
            time.sleep(0.02)
        pytest.fail(f"{self.name} did not start within {START_TIMEOUT}s\n{self.log_tail()}")

    def _mqtt_up(self):
        if self.netns:
            return True  # not reachable from the root namespace; the log line is enough
        try:
            socket.create_connection((helpers.HOST, self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self):
        if self.proc is None:
            return
        self.expected_exit = True
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(STOP_TIMEOUT)

    def kill9(self):
        self.expected_exit = True
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT)

    def pause(self):
        """SIGSTOP: the process keeps its sockets but answers nothing (a hung node). Returns
        once every thread is stopped."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            states = []
            for t in os.listdir(f"/proc/{self.proc.pid}/task"):
                try:
                    with open(f"/proc/{self.proc.pid}/task/{t}/stat") as f:
                        states.append(f.read().rsplit(")", 1)[1].split()[0])
                except OSError:
                    pass  # a thread that just ended
            if states and all(s in "tT" for s in states):
                return
            time.sleep(0.01)
        raise AssertionError(f"{self.name} did not stop on SIGSTOP")

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def is_alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_since_start(self):
        return self.log_text()[self.log_start:]

    def log_tail(self, lines=120):
        text = self.log_text().splitlines()
        return "\n".join([f"---- {self.name} log ----"] + text[-lines:])

    def members(self):
        """The member list of the last membership log line of this run (including itself)."""
        found = re.findall(r"members: ([^\s]+)", self.log_since_start())
        if not found:
            return {self.name}
        return set(found[-1].split(","))

    def wait_log(self, pattern, timeout=10.0, since=None):
        """Waits until `pattern` (a regex) appears in the log after offset `since`."""
        since = self.log_start if since is None else since
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.log_text()[since:])
            if m:
                return m
            time.sleep(0.02)
        raise AssertionError(f"{self.name}: no log line matching {pattern!r} within "
                             f"{timeout}s\n{self.log_tail()}")

    def log_size(self):
        return self.log_path.stat().st_size if self.log_path.exists() else 0


class Cluster:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.nodes = []

    def node(self, name=None, **kw):
        name = name or f"n{len(self.nodes) + 1}"
        n = Node(name, self.tmp / name, **kw)
        self.nodes.append(n)
        return n

    def start(self, count, cookie=COOKIE):
        """Starts `count` nodes; every node after the first joins the previous one (so the
        mesh must be learnt from member lists). Waits until every node sees all."""
        nodes = []
        for i in range(count):
            n = self.node()
            n.start(join=[nodes[-1].cluster_addr] if nodes else [], cookie=cookie)
            nodes.append(n)
        self.wait_mesh(nodes)
        return nodes

    def wait_mesh(self, nodes, timeout=10.0):
        want = {n.name for n in nodes}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(n.members() == want for n in nodes):
                return
            time.sleep(0.02)
        views = {n.name: sorted(n.members()) for n in nodes}
        raise AssertionError(f"no full mesh of {sorted(want)} within {timeout}s: {views}\n" +
                             "\n".join(n.log_tail(40) for n in nodes))

    def stop_all(self):
        crashed = []
        for n in self.nodes:
            if n.proc is not None and not n.expected_exit and n.proc.poll() is not None:
                crashed.append(f"{n.name} exited during the test with {n.proc.returncode}\n"
                               f"{n.log_tail()}")
            n.stop()
        return crashed


def wait_route(publisher, subscriber, topic, timeout=5.0):
    """Publishes probes on `topic` from `publisher` until `subscriber` gets one (the route
    reached the publisher's node). The subscriber keeps probes apart from the messages a test
    expects, so a late probe cannot turn up among them."""
    token = helpers.PROBE + helpers.unique("-").encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publisher.publish(topic, token, qos=0)
        if subscriber.expect_probe(token, timeout=0.1):
            subscriber.drain()
            return
    raise AssertionError(f"no route for {topic!r} from port {publisher.port} to "
                         f"port {subscriber.port} within {timeout}s")
