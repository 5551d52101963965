# Kubernetes manifests (etc/kubernetes/tern.yaml) and the image (Dockerfile), checked without
# a cluster or a container engine:
# - the ports of the container, the Services, the ConfigMap's tern.toml and the StatefulSet's
#   args agree, and every name a manifest refers to exists;
# - the probes' paths answer 200 on a node started with the ConfigMap's tern.toml;
# - three nodes started with the StatefulSet's args (pod names tern-0..2, the pods' DNS names
#   replaced by localhost and free ports, the cookie from the Secret through TERN_COOKIE) form
#   a full mesh and pass a message between them;
# - the Dockerfile copies files that exist and installs a package for every shared library
#   the binaries link.
import os
import pathlib
import re
import shlex
import subprocess
import time
import tomllib
import urllib.error
import urllib.request

import pytest
import yaml

import helpers
from cluster_nodes import Node, free_port, wait_route

pytestmark = pytest.mark.skipif(helpers.is_mosquitto(), reason="Tern manifests only")

REPO = pathlib.Path(__file__).resolve().parents[2]
MANIFEST = REPO / "etc" / "kubernetes" / "tern.yaml"
DOCKERFILE = REPO / "Dockerfile"
NAMESPACE = "tern"


# ---- reading the manifest ------------------------------------------------------------------

def load():
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    return by_kind


def one(objs, kind, name=None):
    found = [o for o in objs.get(kind, []) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''} in {MANIFEST.name}, got {len(found)}"
    return found[0]


def statefulset(objs):
    return one(objs, "StatefulSet")


def container(objs):
    cs = statefulset(objs)["spec"]["template"]["spec"]["containers"]
    assert len(cs) == 1
    return cs[0]


def container_ports(objs):
    return {p["name"]: p["containerPort"] for p in container(objs)["ports"]}


def services(objs):
    sts = statefulset(objs)
    headless = one(objs, "Service", sts["spec"]["serviceName"])
    others = [s for s in objs["Service"] if s is not headless]
    assert len(others) == 1, "expected one client Service beside the headless one"
    return headless, others[0]


def resolve_port(objs, target):
    """A Service targetPort or probe port (a number or a container port name) as a number."""
    if isinstance(target, int):
        return target
    ports = container_ports(objs)
    assert target in ports, f"port name {target!r} is not a container port ({sorted(ports)})"
    return ports[target]


def config_toml_text(objs):
    """The ConfigMap key the StatefulSet's --config names, found through the volume mounts."""
    c = container(objs)
    args = c["args"]
    config_path = pathlib.PurePosixPath(args[args.index("--config") + 1])
    volumes = {v["name"]: v for v in statefulset(objs)["spec"]["template"]["spec"]["volumes"]}
    for m in c["volumeMounts"]:
        if pathlib.PurePosixPath(m["mountPath"]) == config_path.parent:
            cm_name = volumes[m["name"]]["configMap"]["name"]
            return one(objs, "ConfigMap", cm_name)["data"][config_path.name]
    pytest.fail(f"no volume mounted at {config_path.parent} for --config {config_path}")


def env_values(objs, pod_name):
    """The container's env as Kubernetes would set it for pod `pod_name`."""
    out = {}
    for e in container(objs)["env"]:
        if "value" in e:
            out[e["name"]] = e["value"]
            continue
        src = e["valueFrom"]
        if "fieldRef" in src:
            field = src["fieldRef"]["fieldPath"]
            out[e["name"]] = {"metadata.name": pod_name, "metadata.namespace": NAMESPACE}[field]
        elif "secretKeyRef" in src:
            ref = src["secretKeyRef"]
            secret = one(objs, "Secret", ref["name"])
            data = secret.get("stringData", {})
            assert ref["key"] in data, f"Secret {ref['name']} has no key {ref['key']}"
            out[e["name"]] = data[ref["key"]]
        else:
            pytest.fail(f"env {e['name']}: unsupported source {src}")
    return out


def expand(arg, env):
    """Kubernetes $(VAR) expansion of container args ($$ is a literal $)."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, arg)


def local_config(toml_text, mqtt_port, data_dir):
    """The ConfigMap's tern.toml with its addresses moved to free loopback ports and the data
    directory to a temporary one. Checked after the rewrite, so a rewrite that did not apply
    fails here rather than binding 0.0.0.0."""
    text = re.sub(r'(?m)^bind = "0\.0\.0\.0:\d+"', f'bind = "127.0.0.1:{mqtt_port}"', toml_text)
    text = re.sub(r'(?m)^bind = "0\.0\.0\.0"', 'bind = "127.0.0.1"', text)
    text = re.sub(r'(?m)^port = \d+', "port = 0", text)  # [http]: a free port, logged
    text = re.sub(r'(?m)^data_dir = ".*"', f'data_dir = "{data_dir}"', text)
    parsed = tomllib.loads(text)
    assert parsed["listeners"]["tcp"]["default"]["bind"] == f"127.0.0.1:{mqtt_port}"
    assert parsed["http"]["bind"] == "127.0.0.1" and parsed["http"]["port"] == 0
    assert parsed["node"]["data_dir"] == str(data_dir)
    return text


def http_get(port, path, timeout=3.0):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def wait_status(port, path, want, timeout=15.0):
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = http_get(port, path)
        if status == want:
            return
        time.sleep(0.1)
    raise AssertionError(f"GET {path} on port {port}: {status}, wanted {want}")


def logged_http_port(node, timeout=10.0):
    m = node.wait_log(r"management API on https?://\S+:(\d+)", timeout=timeout)
    return int(m.group(1))


# ---- static checks -------------------------------------------------------------------------

def test_ports_of_container_services_config_and_args_agree():
    objs = load()
    ports = container_ports(objs)
    assert set(ports) >= {"mqtt", "http", "cluster"}
    headless, client = services(objs)

    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert [resolve_port(objs, p["targetPort"]) for p in headless["spec"]["ports"]] == \
        [ports["cluster"]]
    client_ports = {p["port"]: resolve_port(objs, p["targetPort"]) for p in client["spec"]["ports"]}
    assert client_ports == {1883: ports["mqtt"], 18083: ports["http"]}

    labels = statefulset(objs)["spec"]["template"]["metadata"]["labels"]
    for s in (headless, client):
        assert s["spec"]["selector"].items() <= labels.items(), s["metadata"]["name"]
    assert statefulset(objs)["spec"]["selector"]["matchLabels"].items() <= labels.items()

    conf = tomllib.loads(config_toml_text(objs))
    listeners = [l for kind in conf.get("listeners", {}).values() for l in kind.values()
                 if l.get("enabled", True)]
    assert [l["bind"] for l in listeners] == [f"0.0.0.0:{ports['mqtt']}"]
    assert conf["http"]["bind"] == "0.0.0.0" and conf["http"]["port"] == ports["http"]

    args = container(objs)["args"]
    assert args[args.index("--cluster-listen") + 1] == f"0.0.0.0:{ports['cluster']}"
    addresses = [args[i + 1] for i, a in enumerate(args) if a in ("--advertise", "--join")]
    assert len(addresses) >= 2
    for a in addresses:
        assert a.endswith(f".{headless['metadata']['name']}.$(POD_NAMESPACE).svc.cluster.local:"
                          f"{ports['cluster']}"), a

    for probe in ("livenessProbe", "readinessProbe"):
        assert resolve_port(objs, container(objs)[probe]["httpGet"]["port"]) == ports["http"]


def test_statefulset_refers_to_what_exists():
    objs = load()
    sts = statefulset(objs)
    spec = sts["spec"]
    assert spec["replicas"] == 3 and spec["podManagementPolicy"] == "Parallel"
    c = container(objs)
    env = env_values(objs, "tern-0")  # every Secret key / field it names exists
    assert env["POD_NAME"] == "tern-0" and "TERN_COOKIE" in env
    assert "--cookie" not in c["args"], "the cookie must come from the Secret, not the args"

    conf = tomllib.loads(config_toml_text(objs))
    claims = {t["metadata"]["name"] for t in spec["volumeClaimTemplates"]}
    data_mounts = [m["mountPath"] for m in c["volumeMounts"] if m["name"] in claims]
    assert len(data_mounts) == 1
    assert pathlib.PurePosixPath(conf["node"]["data_dir"]).is_relative_to(data_mounts[0])

    pod_sc = spec["template"]["spec"]["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] != 0
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] > 10  # the node's own
    assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"]


# ---- probes on a real node -----------------------------------------------------------------

def test_probe_paths_answer_200_on_a_node_with_the_configmap_config(tmp_path):
    objs = load()
    node = Node("probe", tmp_path / "probe")
    node.port = free_port()
    conf = node.dir / "tern.toml"
    conf.write_text(local_config(config_toml_text(objs), node.port, node.dir / "data"))
    binary = os.environ.get("TERN_BROKER_NODE")
    if not binary:
        pytest.fail("set TERN_BROKER_NODE to the broker-node binary")
    log = open(node.log_path, "ab")
    proc = subprocess.Popen([binary, "--config", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=node.dir)
    node.proc = proc
    node.log_start = 0
    try:
        port = logged_http_port(node)
        c = container(objs)
        for probe in ("livenessProbe", "readinessProbe"):
            wait_status(port, c[probe]["httpGet"]["path"], 200)
        assert http_get(port, "/no-such-probe") != 200  # the check can tell a wrong path
        assert proc.poll() is None
    finally:
        node.stop()
        log.close()


# ---- the StatefulSet's args, three nodes on localhost --------------------------------------

class PodNode(Node):
    """A node started with the StatefulSet's args for pod `name`: the pods' DNS names become
    localhost with each pod's cluster port, 0.0.0.0 becomes 127.0.0.1."""

    def __init__(self, name, workdir, objs, cluster_ports):
        super().__init__(name, workdir)
        self.objs = objs
        self.cluster_ports = cluster_ports
        self.args = None

    def command(self, join, cookie, extra):
        binary = os.environ.get("TERN_BROKER_NODE")
        if not binary:
            pytest.fail("set TERN_BROKER_NODE to the broker-node binary")
        env = env_values(self.objs, self.name)
        headless, _ = services(self.objs)
        dns = re.compile(rf"^(tern-\d+)\.{re.escape(headless['metadata']['name'])}\."
                         rf"{NAMESPACE}\.svc\.cluster\.local:(\d+)$")
        cluster_port = container_ports(self.objs)["cluster"]
        args = [expand(a, env) for a in container(self.objs)["args"]]
        out = []
        for i, a in enumerate(args):
            if i > 0 and args[i - 1] == "--config":
                conf = self.dir / "tern.toml"
                conf.write_text(local_config(config_toml_text(self.objs), self.port,
                                             self.dir / "data"))
                a = str(conf)
            elif a == f"0.0.0.0:{cluster_port}":
                a = f"127.0.0.1:{self.cluster_ports[self.name]}"
            elif m := dns.match(a):
                assert int(m.group(2)) == cluster_port, a
                a = f"localhost:{self.cluster_ports[m.group(1)]}"
            assert "$(" not in a and "cluster.local" not in a and "0.0.0.0" not in a, a
            out.append(a)
        self.args = out
        return [binary] + out


def test_statefulset_args_form_a_full_mesh_that_passes_messages(tmp_path, clients, monkeypatch,
                                                                  request):
    objs = load()
    replicas = statefulset(objs)["spec"]["replicas"]
    names = [f"tern-{i}" for i in range(replicas)]
    cluster_ports = {n: free_port() for n in names}
    # The cookie only through the environment, as the Secret delivers it.
    monkeypatch.setenv("TERN_COOKIE", env_values(objs, "tern-0")["TERN_COOKIE"])

    class Holder:
        nodes = []
    request.node.tern_cluster = Holder  # logs attached to a failure report
    nodes = []
    try:
        for n in names:
            node = PodNode(n, tmp_path / n, objs, cluster_ports)
            node.port = free_port()
            node.cluster_port = cluster_ports[n]
            nodes.append(node)
            Holder.nodes.append(node)
        for node in nodes:  # podManagementPolicy: Parallel, every pod at once
            node.start()
        assert "--cookie" not in nodes[0].args

        # tern-0 and tern-1 have their own address among their seeds
        own = [n for n in nodes if f"localhost:{n.cluster_port}" in
               [n.args[i + 1] for i, a in enumerate(n.args) if a == "--join"]]
        assert [n.name for n in own] == ["tern-0", "tern-1"]

        want = set(names)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(n.members() == want for n in nodes):
            time.sleep(0.05)
        assert {n.name: n.members() for n in nodes} == {n: want for n in names}
        for n in nodes:
            n.wait_log(rf"advertised as localhost:{n.cluster_port}\)")
            wait_status(logged_http_port(n), "/readyz", 200)

        sub = clients.paho(nodes[2].port)  # tern-2: not a seed of anyone
        sub.subscribe("k8s/#", qos=1)
        pub = clients.paho(nodes[0].port)
        wait_route(pub, sub, "k8s/probe", timeout=10)
        pub.publish("k8s/hello", b"from tern-0", qos=1)
        m = sub.expect_one(timeout=5)
        assert (m.topic, m.payload) == ("k8s/hello", b"from tern-0")
        for n in nodes:
            assert n.is_alive(), n.log_tail()
    finally:
        for n in nodes:
            n.stop()


# ---- the Dockerfile ------------------------------------------------------------------------

def dockerfile_stages():
    """[(stage header, [instructions])] with continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append((line, []))
        else:
            assert stages, f"instruction before FROM: {line}"
            stages[-1][1].append(line)
    return stages


def apt_packages(instructions):
    out = []
    for ins in instructions:
        if ins.upper().startswith("RUN ") and "apt-get install" in ins:
            part = ins.split("apt-get install", 1)[1].split("&&", 1)[0]
            out += [w for w in shlex.split(part) if not w.startswith("-")]
    return out


def setup_packages():
    text = (REPO / "scripts" / "setup.sh").read_text()
    body = re.search(r"packages=\((.*?)\n\)", text, re.S).group(1)
    return [w for line in body.splitlines() for w in line.split("#", 1)[0].split()]


def installed_closure(packages):
    """`packages` and everything they depend on, by the installed packages' Depends (every
    alternative that is installed)."""
    seen = set()
    todo = list(packages)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Depends},${Pre-Depends}", p],
                           capture_output=True, text=True)
        if r.returncode != 0:
            continue
        for dep in re.split(r"[,|]", r.stdout):
            name = dep.strip().split(" ", 1)[0].split(":", 1)[0]
            if name:
                todo.append(name)
    return seen


def owning_package(lib):
    for path in (lib, os.path.realpath(lib)):
        r = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":", 1)[0]
    r = subprocess.run(["dpkg", "-S", "*/" + os.path.basename(lib)], capture_output=True,
                       text=True)
    assert r.returncode == 0, f"no Debian package owns {lib}"
    return r.stdout.split(":", 1)[0]


def test_dockerfile_copies_existing_paths_and_builds_with_setup_packages():
    stages = dockerfile_stages()
    assert len(stages) == 2
    assert stages[0][0].split()[1] == "debian:12" and stages[1][0].split()[1] == "debian:12-slim"
    for _, instructions in stages:
        for ins in instructions:
            if ins.upper().startswith("COPY ") and "--from=" not in ins:
                for src in shlex.split(ins)[1:-1]:
                    assert (REPO / src).exists(), f"Dockerfile: COPY {src}: no such path"
    build = set(apt_packages(stages[0][1]))
    test_only = {"clang", "libclang-rt-14-dev", "catch2", "postgresql", "mosquitto",
                 "mosquitto-clients", "python3", "python3-paho-mqtt", "python3-pytest",
                 "python3-yaml", "procps", "iproute2", "openssl", "chromium",
                 # interoperability clients (the Paho C driver is compiled with gcc)
                 "libpaho-mqtt-dev", "paho.mqtt.c-examples", "gcc", "nodejs"}
    missing = [p for p in setup_packages() if p not in test_only and p not in build]
    assert not missing, f"build stage lacks packages of scripts/setup.sh: {missing}"
    run = " ".join(stages[0][1])
    assert "-DTERN_TESTS=OFF" in run and "Release" in run


def test_runtime_packages_cover_every_library_the_binaries_link():
    binary = os.environ.get("TERN_BROKER_NODE")
    if not binary:
        pytest.fail("set TERN_BROKER_NODE to the broker-node binary")
    apps = pathlib.Path(binary).parent
    runtime = apt_packages(dockerfile_stages()[1][1])
    assert runtime, "no apt-get install in the runtime stage"
    # Present in every Debian image (debian:12-slim): the C and C++ runtimes.
    base = {"libc6", "libgcc-s1", "libstdc++6"}
    covered = installed_closure(runtime + sorted(base))
    owners = {}
    for b in ("broker-node", "broker-ctl", "tern-passwd"):
        out = subprocess.run(["ldd", str(apps / b)], capture_output=True, text=True,
                             check=True).stdout
        libs = re.findall(r"=> (/\S+)", out)
        assert libs, out
        for lib in libs:
            owners.setdefault(owning_package(lib), set()).add(f"{b}: {os.path.basename(lib)}")
    uncovered = {p: sorted(w) for p, w in owners.items() if p not in covered}
    assert not uncovered, f"runtime stage installs nothing that provides {uncovered}"
    # and nothing that no binary needs directly or through another listed package
    needed = installed_closure(sorted(owners))
    assert [p for p in runtime if p not in needed] == []


# ---- the flags the manifest relies on ------------------------------------------------------

def run_node(tmp_path, args, env_cookie=None):
    binary = os.environ.get("TERN_BROKER_NODE")
    if not binary:
        pytest.fail("set TERN_BROKER_NODE to the broker-node binary")
    conf = tmp_path / "tern.toml"
    conf.write_text(f'[listeners.tcp.default]\nbind = "127.0.0.1:{free_port()}"\n'
                    "[http]\nenabled = false\n")
    env = {k: v for k, v in os.environ.items() if k != "TERN_COOKIE"}
    if env_cookie is not None:
        env["TERN_COOKIE"] = env_cookie
    return subprocess.Popen([binary, "--config", str(conf), "--data-dir", str(tmp_path / "d"),
                             "--cluster-listen", f"127.0.0.1:{free_port()}"] + args,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)


def test_advertise_must_be_host_port(tmp_path):
    p = run_node(tmp_path, ["--advertise", "no-port-here"], env_cookie="c")
    out, _ = p.communicate(timeout=10)
    assert p.returncode == 2
    assert '--advertise: expected host:port, got "no-port-here"' in out


def test_a_clustered_node_without_cookie_flag_config_or_env_does_not_start(tmp_path):
    p = run_node(tmp_path, [])
    out, _ = p.communicate(timeout=10)
    assert p.returncode != 0 and "cluster.cookie" in out, out
