#!/usr/bin/python3
"""Tern vs Mosquitto: the standard benchmark set, side by side on one machine.

Starts each broker (Tern's broker-node and Mosquitto) by PID on a free loopback port with a
generated config and comparable limits, drives it with tern-bench, samples the broker's CPU time
and resident memory from /proc/<pid>/ while each scenario runs, and prints one table with both
columns and their ratio. Every scenario gets a freshly started broker, and the two brokers take
turns scenario by scenario, so that a change in machine load hits both alike.

    /usr/bin/python3 bench/run.py                 # the full set (takes a few minutes)
    /usr/bin/python3 bench/run.py --quick         # small sizes: a smoke run of the script
    /usr/bin/python3 bench/run.py --only fanin_q1 --only pairs_q1
    /usr/bin/python3 bench/run.py --only durable  # the persistent-session scenarios only
    /usr/bin/python3 bench/run.py --note "loaded machine"   # a remark stored with the results

The *_durable scenarios run the traffic of their namesake with persistent sessions
(tern-bench --persistent) against several variants of each broker: Tern with [store]
durability "batch", "sync" and "none", and Mosquitto with persistence on (it writes its
database only at autosave and shutdown, so in a run it holds everything in memory). They get a
second table with a column per variant.

fanin_q1_defaults runs fan-in QoS 1 with each broker's shipped limits instead of the large
common ones (Tern: max_inflight 32, max_queued_messages 1000; Mosquitto: 20 and 1000), which is
what users meet: a loss there is a loss in production. pairs_q1_10k and pairs_q1_20k run the
pairs at twice and four times pairs_rate (full size: 10,000 and 20,000 msg/s). Every traffic
scenario reports the broker's CPU time per delivered message beside its rate.

Results go to bench/results/<date>-<host>.json and .md (host = a short machine description,
--host-label to choose it); --no-save only prints. Binaries default to build/ of this checkout.
Uses only the Python standard library; Linux only (/proc).
"""

import argparse
import datetime
import json
import os
import pathlib
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Sizes of the standard set and of --quick.
SIZES = {
    "full": {
        "idle_conns": 15000,     # memory per idle connection
        "idle_procs": 3,         # tern-bench processes sharing them (one source address each)
        "connect_conns": 10000,  # connect rate
        "fanin_pubs": 100,
        "fanout_subs": 1000,
        "pairs": 1000,
        "pairs_rate": 5000,      # messages/s in total over all pairs
        "duration": 10,          # seconds of publishing
        "drain": 60,             # seconds allowed for acks and deliveries after publishing
    },
    "quick": {
        "idle_conns": 1000,
        "idle_procs": 2,
        "connect_conns": 1000,
        "fanin_pubs": 20,
        "fanout_subs": 100,
        "pairs": 100,
        "pairs_rate": 1000,
        "duration": 3,
        "drain": 20,
    },
}

# Broker limits for a fair comparison: large enough that neither broker drops a QoS 1 message
# for want of queue room in these runs, and the same in both.
LIMITS = {
    "max_inflight": 1000,
    "max_queued_messages": 1000000,
}

# Connection handshakes in progress at once. Mosquitto listens with a backlog of 100: more
# parallel SYNs overflow its accept queue and the client's SYN retransmission (1 s) would then
# dominate the connect rate.
CONN_PARALLEL = 64

# Tern's node.io_threads in the benchmark (override with --tern-config node.io_threads=N).
TERN_IO_THREADS = os.cpu_count() or 1

# A broker is killed when its RSS passes this (--rss-cap-mb).
RSS_CAP_KB = 6 * 1024 * 1024

SCENARIOS = ["idle_memory", "connect", "fanin_q0", "fanin_q1", "fanin_q1_defaults",
             "fanout_q0", "fanout_q1", "pairs_q1", "pairs_q1_10k", "pairs_q1_20k",
             "fanin_q1_durable", "pairs_q1_durable"]

# Pairs scenarios at other rates: the factor on the size's pairs_rate (full: 5,000 msg/s).
PAIRS_RATE_FACTOR = {"pairs_q1": 1, "pairs_q1_10k": 2, "pairs_q1_20k": 4}

# A broker variant: result key, column title, broker kind and its config overlay (Tern:
# "section.key=value" overrides, value in TOML syntax; Mosquitto: config lines that replace the
# base config's lines of the same option). Scenarios run against the plain variant of each
# broker; the *_durable ones (persistent sessions) against DURABLE_VARIANTS.
PLAIN_VARIANTS = [
    ("tern", "Tern", "tern", []),
    ("mosquitto", "Mosquitto", "mosquitto", []),
]
DURABLE_VARIANTS = [
    ("tern_batch", "Tern batch", "tern", ['store.durability="batch"']),
    ("tern_sync", "Tern sync", "tern", ['store.durability="sync"']),
    ("tern_none", "Tern none", "tern", ['store.durability="none"']),
    # Saves at autosave_interval (default 1800 s) and at shutdown only: within a run nothing
    # is written.
    ("mosquitto_persist", "Mosquitto persistence", "mosquitto",
     ["persistence true", "autosave_interval 1800"]),
]
# Columns of the durable table whose ratio is shown: Tern batch to its in-memory reference,
# and to Mosquitto.
DURABLE_RATIOS = [("tern_batch", "tern_none"), ("tern_batch", "mosquitto_persist")]


def is_durable(name):
    return name.endswith("_durable")


def is_defaults(name):
    """Run with each broker's shipped limits instead of LIMITS (the settings users meet)."""
    return name.endswith("_defaults")


def base_scenario(name):
    """The scenario whose traffic a *_durable or *_defaults scenario runs."""
    for suffix in ("_durable", "_defaults"):
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return name


def variants_for(name, kinds):
    """The variants a scenario runs against, in the column order of --brokers."""
    pool = DURABLE_VARIANTS if is_durable(name) else PLAIN_VARIANTS
    return [v for k in kinds for v in pool if v[2] == k]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def raise_nofile():
    """In the child before exec: the soft open-file limit up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---------------------------------------------------------------------------------------------
# /proc sampling
# ---------------------------------------------------------------------------------------------

def proc_cpu_seconds(pid):
    """User + system CPU seconds of a process (all threads)."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def proc_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Sampler:
    """Samples a process's CPU time and RSS every `interval` seconds in a thread. A process
    whose RSS passes RSS_CAP_KB is killed (SIGKILL, by its PID): a broker without back-pressure
    must not take the machine down with it."""

    def __init__(self, pid, interval=0.25):
        self.pid = pid
        self.killed_for_rss = False
        self.interval = interval
        self.samples = []  # (monotonic time, cpu seconds, rss kB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _take(self):
        try:
            self.samples.append((time.monotonic(), proc_cpu_seconds(self.pid),
                                 proc_rss_kb(self.pid)))
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            return
        if self.samples[-1][2] > RSS_CAP_KB and not self.killed_for_rss:
            self.killed_for_rss = True
            log(f"   RSS {self.samples[-1][2] // 1024} MB is over the cap of "
                f"{RSS_CAP_KB // 1024} MB: killing pid {self.pid}")
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _run(self):
        while not self._stop.wait(self.interval):
            self._take()

    def __enter__(self):
        self._take()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._take()

    def peak_cpu_percent(self, window=1.0):
        """Highest CPU use over any `window` seconds, in percent of one core."""
        best = 0.0
        j = 0
        for i in range(len(self.samples)):
            while self.samples[i][0] - self.samples[j][0] > window:
                j += 1
            if i > j and self.samples[i][0] - self.samples[j][0] >= window * 0.75:
                dt = self.samples[i][0] - self.samples[j][0]
                best = max(best, 100.0 * (self.samples[i][1] - self.samples[j][1]) / dt)
        return round(best, 1)

    def summary(self):
        if len(self.samples) < 2:
            return {}
        (t0, c0, _), (t1, c1, _) = self.samples[0], self.samples[-1]
        return {
            "cpu_percent": round(100.0 * (c1 - c0) / max(t1 - t0, 1e-9), 1),
            "cpu_peak_percent": self.peak_cpu_percent(),
            "cpu_seconds": round(c1 - c0, 2),
            "rss_peak_kb": max(s[2] for s in self.samples),
            "rss_end_kb": self.samples[-1][2],
            "killed_for_rss": self.killed_for_rss,
            "seconds": round(t1 - t0, 2),
        }


# ---------------------------------------------------------------------------------------------
# Brokers
# ---------------------------------------------------------------------------------------------

class Broker:
    """One broker process in its own temporary directory, stopped only through its PID."""

    def __init__(self, kind, binary, workdir, extra, limits=True):
        self.kind = kind
        self.binary = binary
        self.limits = limits  # LIMITS, else the broker's shipped defaults
        self.dir = pathlib.Path(workdir)
        self.extra = extra  # Tern: "section.key=value" overrides; Mosquitto: config lines
        self.proc = None
        self.port = None
        self.log_path = self.dir / "broker.log"

    @property
    def pid(self):
        return self.proc.pid

    def _config(self, port):
        if self.kind == "tern":
            data = self.dir / "data"
            shutil.rmtree(data, ignore_errors=True)  # an empty store for every start
            data.mkdir()
            sections = {
                # One Asio thread per core, as CAF's workers: with the default of one, the
                # subscriber's writes starve behind 100 publishers' reads in fan-in QoS 0
                # (see docs/benchmark.md).
                "node": {"data_dir": json.dumps(str(data)),
                         "io_threads": str(TERN_IO_THREADS)},
                "log": {"level": '"warn"'},
                "listeners.tcp.default": {"bind": json.dumps(f"{HOST}:{port}")},
            }
            if self.limits:
                sections["session"] = {
                    "max_inflight": str(LIMITS["max_inflight"]),
                    "max_queued_messages": str(LIMITS["max_queued_messages"])}
            for override in self.extra:  # "section.key=value", value in TOML syntax
                name, value = override.split("=", 1)
                section, key = name.strip().rsplit(".", 1)
                sections.setdefault(section, {})[key] = value.strip()
            lines = []
            for section, values in sections.items():
                lines.append(f"[{section}]")
                lines += [f"{k} = {v}" for k, v in values.items()]
            text = "\n".join(lines) + "\n"
            path = self.dir / "tern.toml"
            path.write_text(text)
            return [str(self.binary), "--config", str(path)]
        lines = [
            f"listener {port} {HOST}",
            "allow_anonymous true",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "connection_messages false",
            # tern-bench and Tern both disable Nagle; so does Mosquitto here, or its latency
            # would measure Nagle's algorithm.
            "set_tcp_nodelay true",
            "max_connections -1",
        ]
        if self.limits:
            lines += [f"max_inflight_messages {LIMITS['max_inflight']}",
                      f"max_queued_messages {LIMITS['max_queued_messages']}"]
        # A variant's lines replace the base lines of the same option. With persistence on,
        # mosquitto.db goes to the working directory, self.dir.
        replaced = {line.split()[0] for line in self.extra}
        lines = [line for line in lines if line.split()[0] not in replaced] + self.extra
        if os.geteuid() == 0:
            lines.append("user root")  # otherwise mosquitto switches to the user "mosquitto"
        path = self.dir / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return [str(self.binary), "-c", str(path)]

    def start(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        while True:
            port = free_port()
            cmd = self._config(port)
            with open(self.log_path, "ab") as logf:
                self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, cwd=self.dir,
                                             preexec_fn=raise_nofile)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    socket.create_connection((HOST, port), timeout=0.5).close()
                    self.port = port
                    time.sleep(0.3)  # let the probe connection go away
                    return self
                except OSError:
                    time.sleep(0.02)
            if self.proc.poll() is None:
                self.stop()
            if time.monotonic() >= deadline or "in use" not in self.log_tail().lower():
                raise RuntimeError(f"{self.kind} did not start:\n{self.log_tail()}")

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def assert_alive(self):
        if self.proc.poll() is not None:
            why = (" (SIGKILL: RSS over --rss-cap-mb)" if self.proc.returncode == -signal.SIGKILL
                   else "")
            raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}{why}:\n"
                               f"{self.log_tail()}")

    def log_tail(self, n=30):
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(lines[-n:])


def broker_version(kind, binary):
    if kind == "mosquitto":
        try:
            out = subprocess.run([str(binary), "-h"], capture_output=True, text=True,
                                 timeout=5).stdout
            m = re.search(r"mosquitto version (\S+)", out)
            return m.group(1) if m else "?"
        except OSError:
            return "?"
    try:
        out = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=5).stdout.strip()
        return out or "?"
    except OSError:
        return "?"


# ---------------------------------------------------------------------------------------------
# tern-bench
# ---------------------------------------------------------------------------------------------

class BenchProcess:
    """One tern-bench run; the summary is the JSON line it prints at the end."""

    def __init__(self, bench_bin, port, args, verbose):
        self.cmd = [str(bench_bin)] + args + ["-p", str(port), "--json", "--check"]
        if not verbose:
            self.cmd.append("--quiet")
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE,
                                     stderr=None if verbose else subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True)

    def interrupt(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)

    def result(self, timeout=None):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            out, err = self.proc.communicate()
        summary = {}
        for line in (out or "").splitlines()[::-1]:
            if line.startswith("{"):
                summary = json.loads(line)
                break
        summary["exit_code"] = self.proc.returncode
        failed = [l for l in (err or "").splitlines()
                  if l.startswith("check failed") or l.startswith("error:")]
        if failed:
            summary["check"] = failed[:5]
        if not summary.get("scenario"):
            raise RuntimeError(f"tern-bench gave no summary (exit {self.proc.returncode}): "
                               f"{' '.join(self.cmd)}\n{err}")
        return summary


def delivery(s):
    return {k: s.get(k) or 0 for k in ("sent", "acked", "received", "expected", "lost",
                                      "duplicated", "reordered")}


# ---------------------------------------------------------------------------------------------
# Scenarios: each takes a started broker and returns a dict of numbers
# ---------------------------------------------------------------------------------------------

def wait_for(predicate, timeout, broker, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        broker.assert_alive()
        if predicate():
            return True
        time.sleep(step)
    return False


def run_idle_memory(broker, cfg, args):
    n = cfg["idle_conns"]
    procs = cfg["idle_procs"]
    time.sleep(1.0)
    rss0 = proc_rss_kb(broker.pid)
    fd0 = proc_fd_count(broker.pid)
    per = [n // procs + (1 if k < n % procs else 0) for k in range(procs)]
    benches = []
    offset = 0
    with Sampler(broker.pid) as sampler:
        t0 = time.monotonic()
        for k, count in enumerate(per):
            benches.append(BenchProcess(args.bench_bin, broker.port, [
                "conn", "--conns", str(count), "--id-offset", str(offset),
                "--source-ip", f"127.0.0.{10 + k}", "--threads", "1", "-d", "100000",
                "--keepalive", "300", "--connect-timeout", "60",
                "--conn-parallel", str(CONN_PARALLEL // procs),
            ], args.verbose))
            offset += count
        is_all = wait_for(lambda: proc_fd_count(broker.pid) - fd0 >= n, 120, broker, 0.2)
        connected_s = time.monotonic() - t0
        # Let the brokers finish the sessions' set-up and the allocator settle.
        time.sleep(3.0)
        samples = []
        for _ in range(5):
            samples.append(proc_rss_kb(broker.pid))
            time.sleep(0.2)
        rss1 = sorted(samples)[len(samples) // 2]
        fds = proc_fd_count(broker.pid) - fd0
        for b in benches:
            b.interrupt()
        results = [b.result(timeout=60) for b in benches]
    connected = sum(r.get("connected", 0) for r in results)
    out = {
        "connections": n,
        "connected": connected,
        "broker_sockets": fds,
        "all_connected": is_all and connected == n,
        "rss_before_kb": rss0,
        "rss_after_kb": rss1,
        "bytes_per_connection": round((rss1 - rss0) * 1024 / max(n, 1)),
        "seconds_to_connect": round(connected_s, 2),
        "connect_failed": sum(r.get("connect_failed", 0) for r in results),
        "broker": sampler.summary(),
    }
    checks = [c for r in results for c in r.get("check", [])]
    if checks:
        out["check"] = checks
    return out


def run_connect(broker, cfg, args):
    n = cfg["connect_conns"]
    with Sampler(broker.pid) as sampler:
        b = BenchProcess(args.bench_bin, broker.port, [
            "conn", "--conns", str(n), "--threads", "2", "-d", "0.5",
            "--source-ip", "127.0.0.20", "--connect-timeout", "60",
            "--conn-parallel", str(CONN_PARALLEL),
        ], args.verbose)
        r = b.result(timeout=300)
    out = {
        "connections": n,
        "connected": r.get("connected", 0),
        "connect_failed": r.get("connect_failed", 0),
        "connect_rate": round(r.get("connect_rate", 0)),
        "connect_seconds": round(r.get("connect_seconds", 0), 3),
        "broker": sampler.summary(),
    }
    if "check" in r:
        out["check"] = r["check"]
    return out


def run_traffic(broker, cfg, args, bench_args):
    with Sampler(broker.pid) as sampler:
        b = BenchProcess(args.bench_bin, broker.port, bench_args + [
            "-d", str(cfg["duration"]), "--drain", str(cfg["drain"]), "--threads", "2",
            "--connect-timeout", "60",
        ], args.verbose)
        r = b.result(timeout=cfg["duration"] + cfg["drain"] + 300)
    lat = r.get("latency_us") or {}
    out = {
        "publishers": r.get("publishers", 0),
        "subscribers": r.get("subscribers", 0),
        "connected": r.get("connected", 0),
        "connect_failed": r.get("connect_failed", 0) + r.get("disconnected_early", 0),
        "sent_rate": round(r.get("sent_rate", 0)),
        "received_rate": round(r.get("received_rate", 0)),
        "latency_p50_ms": round(lat.get("p50", 0) / 1000, 3),
        "latency_p99_ms": round(lat.get("p99", 0) / 1000, 3),
        "latency_max_ms": round(lat.get("max", 0) / 1000, 3),
        "stalled": r.get("stalled", False),
        "broker": sampler.summary(),
    }
    out.update(delivery(r))
    if out["received"]:
        out["cpu_us_per_msg"] = round(out["broker"].get("cpu_seconds", 0) * 1e6 /
                                      out["received"], 2)
    if "check" in r:
        out["check"] = r["check"]
    return out


def scenario_runner(name, cfg):
    if is_durable(name):
        run = scenario_runner(base_scenario(name), cfg)
        return lambda b, c, a: run(b, c, a, ["--persistent"])
    if is_defaults(name):
        return scenario_runner(base_scenario(name), cfg)
    if name == "idle_memory":
        return run_idle_memory
    if name == "connect":
        return run_connect
    if name.startswith("fanin_"):
        q = name[-1]
        return lambda b, c, a, more=(): run_traffic(b, c, a, [
            "fanin", "--pubs", str(c["fanin_pubs"]), "-q", q, *more])
    if name.startswith("fanout_"):
        q = name[-1]
        return lambda b, c, a, more=(): run_traffic(b, c, a, [
            "fanout", "--subs", str(c["fanout_subs"]), "-q", q, *more])
    if name in PAIRS_RATE_FACTOR:
        rate = cfg["pairs_rate"] * PAIRS_RATE_FACTOR[name]
        return lambda b, c, a, more=(): run_traffic(b, c, a, [
            "pairs", "--pairs", str(c["pairs"]), "-q", "1", "-r", str(rate), *more])
    raise ValueError(name)


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------

def describe(name, cfg):
    if is_durable(name):
        return describe(base_scenario(name), cfg) + ", persistent sessions"
    if is_defaults(name):
        return describe(base_scenario(name), cfg) + ", shipped defaults"
    if name in PAIRS_RATE_FACTOR:
        rate = cfg["pairs_rate"] * PAIRS_RATE_FACTOR[name]
        return f"{cfg['pairs']} pairs, QoS 1, {rate:,} msg/s"
    return {
        "idle_memory": f"idle connections: {cfg['idle_conns']}",
        "connect": f"connect {cfg['connect_conns']} clients",
        "fanin_q0": f"fan-in {cfg['fanin_pubs']}→1, QoS 0",
        "fanin_q1": f"fan-in {cfg['fanin_pubs']}→1, QoS 1",
        "fanout_q0": f"fan-out 1→{cfg['fanout_subs']}, QoS 0",
        "fanout_q1": f"fan-out 1→{cfg['fanout_subs']}, QoS 1",
    }[name]


def fmt_num(v):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and abs(v) < 100:
        return f"{v:.2f}"
    return f"{round(v):,}"


def ratio(a, b):
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
        return "–"
    return f"{a / b:.2f}×"


def rows_for(name, res):
    """(metric, key function) rows of one scenario; a key function maps a result to a value."""
    name = base_scenario(name)
    g = lambda k: (lambda r: r.get(k))  # noqa: E731
    ldr = lambda r: (f"{r.get('lost', 0)}/{r.get('duplicated', 0)}/"  # noqa: E731
                     f"{r.get('reordered', 0)}")
    cpu = ("broker CPU % (100 = 1 core)", lambda r: r.get("broker", {}).get("cpu_percent"))
    cpu_peak = ("broker peak CPU % over 1 s (100 = 1 core)",
                lambda r: r.get("broker", {}).get("cpu_peak_percent"))
    cpu_msg = ("broker CPU µs per delivered msg (whole run)", g("cpu_us_per_msg"))
    rss = ("broker peak RSS MB",
           lambda r: round(r.get("broker", {}).get("rss_peak_kb", 0) / 1024, 1)
           if r.get("broker") else None)
    if name == "idle_memory":
        return [("bytes per idle connection (RSS)", g("bytes_per_connection")),
                ("connected", g("connected")), rss]
    if name == "connect":
        return [("connections/s", g("connect_rate")), ("connected", g("connected")), cpu]
    rows = [("delivered msg/s", g("received_rate")), ("published msg/s", g("sent_rate"))]
    if name in PAIRS_RATE_FACTOR:
        rows += [("latency p50 ms", g("latency_p50_ms")), ("latency p99 ms", g("latency_p99_ms"))]
    if "_q1" in name:
        rows.append(("lost/dup/reordered", ldr))
    else:
        rows.append(("not delivered (QoS 0 may drop)", g("lost")))
    rows += [cpu_msg, cpu_peak, rss]
    return rows


def build_table(results, cfg, scenarios, variants, ratios):
    """Markdown table: scenario, metric, one column per variant (result key, title, ...), then
    one column per (numerator key, denominator key) of `ratios`."""
    titles = {v[0]: v[1] for v in variants}
    keys = [v[0] for v in variants]
    ratios = [(a, b) for a, b in ratios if a in titles and b in titles]
    head = (["scenario", "metric"] + [titles[k] for k in keys] +
            [f"{titles[a]}/{titles[b]}" for a, b in ratios])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in scenarios:
        if name not in results:
            continue
        per = results[name]
        for i, (metric, fn) in enumerate(rows_for(name, next(iter(per.values()), {}))):
            vals = {k: fn(per[k]) if k in per and "error" not in per[k] else None for k in keys}
            cells = ([describe(name, cfg) if i == 0 else "", metric] +
                     [fmt_num(vals[k]) for k in keys] +
                     [ratio(vals[a], vals[b]) if metric != "lost/dup/reordered" else ""
                      for a, b in ratios])
            lines.append("| " + " | ".join(cells) + " |")
        for k in keys:
            if k in per and ("error" in per[k] or per[k].get("check")):
                why = per[k].get("error") or "; ".join(per[k]["check"])
                lines.append(f"| | {titles[k]}: {why} |" + " |" * (len(head) - 2))
    return "\n".join(lines)


def build_tables(results, cfg, kinds):
    """The standard scenarios' table (Tern, Mosquitto, Tern/Mosquitto) and, when any ran, the
    durable scenarios' table (a column per variant)."""
    plain = [n for n in SCENARIOS if not is_durable(n) and n in results]
    durable = [n for n in SCENARIOS if is_durable(n) and n in results]
    tables = []
    if plain:
        variants = variants_for(plain[0], kinds)
        tables.append(build_table(results, cfg, plain, variants,
                                  [(variants[0][0], variants[1][0])] if len(variants) == 2
                                  else []))
    if durable:
        tables.append(build_table(results, cfg, durable, variants_for(durable[0], kinds),
                                  DURABLE_RATIOS))
    return "\n\n".join(tables)


# ---------------------------------------------------------------------------------------------
# Machine description
# ---------------------------------------------------------------------------------------------

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown cpu"


def host_label():
    model = re.sub(r"\((R|TM)\)|CPU|@.*|Processor|\d+-Core", " ", cpu_model())
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-") or "cpu"
    return f"{os.cpu_count()}c-{slug}"


def filesystem_of(path):
    """The file system type of the mount that holds `path` (the brokers' stores), e.g. ext4;
    on tmpfs an fsync costs nothing and durability "sync" measures no disk."""
    path = os.path.realpath(path)
    best, fstype = "", "?"
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            point = parts[1].replace("\\040", " ")
            if (path == point or path.startswith(point.rstrip("/") + "/")) and \
                    len(point) >= len(best):
                best, fstype = point, parts[2]
    return fstype


def machine():
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": os.uname().release,
        "open_files_hard_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
        "temp_filesystem": filesystem_of(tempfile.gettempdir()),
    }


# ---------------------------------------------------------------------------------------------

def main():
    global RSS_CAP_KB
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--only", action="append", default=[], metavar="SCENARIO",
                    help=f"run only this scenario (repeatable; a prefix such as 'fanin' "
                         f"selects all fan-in scenarios, 'durable' the *_durable ones): "
                         f"{', '.join(SCENARIOS)}")
    ap.add_argument("--brokers", default="tern,mosquitto",
                    help="comma-separated, in column order (default tern,mosquitto)")
    ap.add_argument("--tern-bin", type=pathlib.Path,
                    default=REPO / "build" / "apps" / "broker-node")
    ap.add_argument("--mosquitto-bin", type=pathlib.Path, default=pathlib.Path("/usr/sbin/mosquitto"))
    ap.add_argument("--bench-bin", type=pathlib.Path,
                    default=REPO / "build" / "apps" / "tern-bench")
    ap.add_argument("--tern-config", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override in Tern's config, value in TOML syntax, e.g. "
                         "node.io_threads=2 (repeatable; applied after a variant's own, "
                         "such as store.durability)")
    ap.add_argument("--duration", type=float, help="seconds of publishing per traffic scenario")
    ap.add_argument("--pairs-rate", type=int, help="total msg/s of the pairs scenario")
    ap.add_argument("--rss-cap-mb", type=int, default=RSS_CAP_KB // 1024,
                    help="kill a broker whose RSS passes this many MB (default %(default)s)")
    ap.add_argument("--note", default="", help="a remark stored with the results")
    ap.add_argument("--host-label", default=None, help="machine name in the result file names")
    ap.add_argument("--results-dir", type=pathlib.Path, default=REPO / "bench" / "results")
    ap.add_argument("--no-save", action="store_true", help="print only")
    ap.add_argument("--verbose", action="store_true", help="show tern-bench progress")
    args = ap.parse_args()

    RSS_CAP_KB = args.rss_cap_mb * 1024
    size = "quick" if args.quick else "full"
    cfg = dict(SIZES[size])
    if args.duration:
        cfg["duration"] = args.duration
    if args.pairs_rate:
        cfg["pairs_rate"] = args.pairs_rate
    names = SCENARIOS
    if args.only:
        def selects(o, s):
            if o in SCENARIOS:
                return s == o
            return s.startswith(o) or s.endswith("_" + o)
        names = [s for s in SCENARIOS if any(selects(o, s) for o in args.only)]
        if not names:
            ap.error(f"--only: no scenario matches {args.only}; choose from {SCENARIOS}")
    kinds = [k.strip() for k in args.brokers.split(",") if k.strip()]
    if not kinds or any(k not in ("tern", "mosquitto") for k in kinds):
        ap.error("--brokers: tern and/or mosquitto")
    binaries = {"tern": args.tern_bin, "mosquitto": args.mosquitto_bin}
    for override in args.tern_config:
        if "=" not in override or "." not in override.split("=", 1)[0]:
            ap.error(f"--tern-config: expected SECTION.KEY=VALUE, got {override!r}")
    for path in [args.bench_bin] + [binaries[k] for k in kinds]:
        if not os.access(path, os.X_OK):
            ap.error(f"not executable: {path} (build first, or pass its path)")

    started = datetime.datetime.now(datetime.timezone.utc)
    results = {}
    with tempfile.TemporaryDirectory(prefix="tern-bench-run-") as tmp:
        for name in names:
            results[name] = {}
            variants = variants_for(name, kinds)
            for i in range(len(variants)):
                # Alternate who goes first, so that neither broker always runs on a warmer or
                # busier machine.
                key, _, kind, overlay = variants[(i + names.index(name)) % len(variants)]
                workdir = pathlib.Path(tmp) / f"{name}-{key}"
                workdir.mkdir()
                extra = overlay + (args.tern_config if kind == "tern" else [])
                broker = Broker(kind, binaries[kind], workdir, extra,
                                limits=not is_defaults(name))
                load = open("/proc/loadavg").read().split()[0]
                log(f"== {name} on {key} (load average {load})")
                try:
                    broker.start()
                    res = scenario_runner(name, cfg)(broker, cfg, args)
                    broker.assert_alive()
                except Exception as e:  # one failed run must not lose the others
                    res = {"error": str(e).splitlines()[0] if str(e) else repr(e)}
                    log(f"   failed: {e}")
                finally:
                    broker.stop()
                res["load_average_before"] = float(load)
                results[name][key] = res
                log("   " + json.dumps({k: v for k, v in res.items() if k != "broker"}))
                time.sleep(1.0)  # let sockets in TIME_WAIT and the CPU calm down

    table = build_tables(results, cfg, kinds)
    print(table)
    doc = {
        "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "size": size,
        "note": args.note,
        "machine": machine(),
        "versions": {k: broker_version(k, binaries[k]) for k in kinds},
        "settings": {"sizes": cfg, "limits": LIMITS, "tern_io_threads": TERN_IO_THREADS,
                     "tern_config_extra": args.tern_config,
                     "variants": {v[0]: {"broker": v[2], "config": v[3]}
                                  for v in PLAIN_VARIANTS + DURABLE_VARIANTS
                                  if v[2] in kinds}},
        "results": results,
    }
    if args.no_save:
        return 0
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{started.strftime('%Y-%m-%d')}-{args.host_label or host_label()}"
    if size == "quick":
        stem += "-quick"
    (args.results_dir / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n")
    m = doc["machine"]
    md = [f"# Tern vs Mosquitto, {doc['date']} ({size} set)", "",
          f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Linux {m['kernel']}, "
          f"brokers' data on {m['temp_filesystem']}. "
          f"Versions: " + ", ".join(f"{k} {v}" for k, v in doc["versions"].items()) + ".",
          ""]
    if args.note:
        md += [f"Note: {args.note}", ""]
    md += [table, "",
           "Ratio = the two columns named in its title. Delivered msg/s counts messages "
           "received by the subscribers per second; lost/dup/reordered are checked by "
           "tern-bench on every QoS 1 delivery. Durable scenarios: persistent sessions "
           "(clean session 0), Tern with [store] durability batch/sync/none, Mosquitto with "
           "persistence true (saved at autosave and shutdown only). "
           "Made with `/usr/bin/python3 bench/run.py"
           + (" --quick" if size == "quick" else "") + "`.", ""]
    (args.results_dir / f"{stem}.md").write_text("\n".join(md))
    log(f"saved {args.results_dir / (stem + '.json')} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
