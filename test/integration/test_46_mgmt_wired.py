# The management API and broker-ctl wired to the real subsystems: users of the password file
# (then a real MQTT client logs in with them), ACL reload, cluster membership (status, join,
# leave, remove) and the readiness probe of a clustered node.

import json
import re
import socket
import time

import pytest

import helpers
import mgmt_helpers as mh
from access_util import make_passwd, mosq
from helpers import RawClient

pytestmark = pytest.mark.skipif(helpers.is_mosquitto(), reason="Tern's management API")


# ---- users -------------------------------------------------------------------------------

def auth_node(broker, tmp_path):
    pw = make_passwd(tmp_path / "passwd", {"alice": "alice-pw"})
    b = mh.start(broker, auth={"chain": ["password_file"], "password_file": pw,
                               "allow_anonymous": False})
    return b, pw


def can_publish(b, user, password):
    r = mosq("pub", b.port, ["-t", "t/x", "-m", "hi", "-q", "1"], user=user, password=password)
    return r.returncode == 0


def test_users_add_passwd_del_reach_mqtt_logins(broker, tmp_path):
    b, pw = auth_node(broker, tmp_path)
    api = mh.Api(b.http_port)
    listed = api.get("/api/v1/users")
    assert [u["username"] for u in listed["items"]] == ["alice"] and listed["total"] == 1
    assert not can_publish(b, "bob", "bob-pw1")

    added = api.json("POST", "/api/v1/users", {"username": "bob", "password": "bob-pw1"},
                     expect=201)
    assert added["username"] == "bob" and "reload_errors" not in added
    assert "bob:$7$" in open(pw).read()  # the same file format tern-passwd writes
    assert can_publish(b, "bob", "bob-pw1")
    assert not can_publish(b, "bob", "wrong")

    api.json("PUT", "/api/v1/users/bob", {"password": "bob-pw2"})
    assert not can_publish(b, "bob", "bob-pw1")
    assert can_publish(b, "bob", "bob-pw2")

    # Never a hash or a password in an answer.
    for path in ("/api/v1/users", "/api/v1/users/bob"):
        status, _, body = api.request("GET", path)
        assert status == 200 and b"$7$" not in body and b"bob-pw" not in body, body

    api.json("DELETE", "/api/v1/users/bob")
    assert not can_publish(b, "bob", "bob-pw2")
    assert can_publish(b, "alice", "alice-pw")
    assert [u["username"] for u in api.get("/api/v1/users")["items"]] == ["alice"]


def test_users_errors(broker, tmp_path):
    b, _ = auth_node(broker, tmp_path)
    api = mh.Api(b.http_port)
    assert "exists" in api.json("POST", "/api/v1/users",
                                {"username": "alice", "password": "x"}, expect=409)["error"]
    api.json("POST", "/api/v1/users", {"username": "a:b", "password": "x"}, expect=400)
    api.json("POST", "/api/v1/users", {"username": "carol", "password": ""}, expect=400)
    api.json("POST", "/api/v1/users", "not json", expect=400)
    api.json("PUT", "/api/v1/users/nobody", {"password": "x"}, expect=404)
    api.json("DELETE", "/api/v1/users/nobody", expect=404)
    api.json("PATCH", "/api/v1/users", {}, expect=405)
    assert can_publish(b, "alice", "alice-pw")


def test_users_without_password_file(broker):
    b = mh.start(broker)
    api = mh.Api(b.http_port)
    for method, path in (("GET", "/api/v1/users"), ("POST", "/api/v1/users"),
                         ("DELETE", "/api/v1/users/x")):
        err = api.json(method, path, {"username": "u", "password": "p"}
                       if method == "POST" else None, expect=409)["error"]
        assert "password_file" in err, err
    r = mh.ctl(b.http_port, "users", "list")
    assert r.returncode == 1 and "password_file" in r.stderr


def test_broker_ctl_users(broker, tmp_path):
    b, _ = auth_node(broker, tmp_path)
    r = mh.ctl(b.http_port, "users", "add", "dave", "dave-pw")
    assert r.returncode == 0 and "dave" in r.stdout, r.stderr
    assert can_publish(b, "dave", "dave-pw")
    r = mh.ctl(b.http_port, "users", "list")
    assert r.returncode == 0 and "alice" in r.stdout and "dave" in r.stdout
    assert mh.ctl(b.http_port, "users", "passwd", "dave", "new-pw").returncode == 0
    assert can_publish(b, "dave", "new-pw") and not can_publish(b, "dave", "dave-pw")
    assert mh.ctl(b.http_port, "users", "del", "dave").returncode == 0
    assert not can_publish(b, "dave", "new-pw")
    r = mh.ctl(b.http_port, "users", "del", "dave")
    assert r.returncode == 1 and "HTTP 404" in r.stderr


# ---- ACL reload --------------------------------------------------------------------------

def test_acl_reload_changes_a_decision(broker, tmp_path):
    f = tmp_path / "acl.conf"
    f.write_text("{allow, all}.\n")
    b = mh.start(broker, acl={"file": str(f)})
    api = mh.Api(b.http_port)
    sub = RawClient(b.port)
    sub.connect_ok()
    assert sub.subscribe([("secret/#", 1)]).codes == [1]
    pub = RawClient(b.port)
    pub.connect_ok()
    pub.publish_acked("secret/1", b"allowed", qos=1)
    assert sub.receive_publishes(1)[0].payload == b"allowed"

    f.write_text('{deny, all, publish, ["secret/#"]}.\n{allow, all}.\n')
    r = api.json("POST", "/api/v1/acl/reload", {})
    assert r["result"] == "reloaded" and r["acl_file"] == str(f)
    pub.publish_acked("secret/2", b"denied", qos=1)
    sub.expect_no_packet(0.3)

    # A broken file keeps the rules in force; the error names the file and line.
    f.write_text('{allow, all}.\n{deny, all, publish, ["x"]\n')
    err = api.json("POST", "/api/v1/acl/reload", {}, expect=422)["error"]
    assert "previous rules kept" in err and f"{f}:" in err, err
    r = mh.ctl(b.http_port, "acl", "reload")
    assert r.returncode == 1 and f"{f}:" in r.stderr
    pub.publish_acked("secret/3", b"still denied", qos=1)
    sub.expect_no_packet(0.3)

    f.write_text("{allow, all}.\n")
    r = mh.ctl(b.http_port, "acl", "reload")
    assert r.returncode == 0 and "reloaded" in r.stdout.lower(), r.stderr
    pub.publish_acked("secret/4", b"allowed again", qos=1)
    assert sub.receive_publishes(1)[0].payload == b"allowed again"
    api.json("GET", "/api/v1/acl/reload", expect=405)


# ---- cluster -----------------------------------------------------------------------------

def node_api(n, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"management API on https?://\S+:(\d+)", n.log_since_start())
        if m:
            n.http_port = int(m.group(1))
            return mh.Api(n.http_port)
        time.sleep(0.05)
    raise AssertionError(f"{n.name}: no management API line\n{n.log_tail()}")


def wait_for(what, check, timeout=10.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


def view(api):
    c = api.get("/api/v1/cluster")
    return {n["name"]: n["status"] for n in c["nodes"]}


def free_port():
    with socket.socket() as s:
        s.bind((helpers.HOST, 0))
        return s.getsockname()[1]


def test_cluster_status_lists_both_nodes(cluster):
    n1, n2 = cluster.start(2)
    a1, a2 = node_api(n1), node_api(n2)
    c = a1.get("/api/v1/cluster")
    assert c["clustered"] is True and c["self"] == "n1"
    assert sorted(c["running_nodes"]) == ["n1", "n2"] and c["stopped_nodes"] == []
    by_name = {n["name"]: n for n in c["nodes"]}
    assert by_name["n2"]["address"] == n2.cluster_addr and by_name["n2"]["incarnation"] > 0
    assert by_name["n1"]["self"] is True and by_name["n2"]["self"] is False
    nodes = a2.get("/api/v1/nodes")
    assert sorted(n["name"] for n in nodes) == ["n1", "n2"]
    assert all(n["status"] == "running" for n in nodes)
    assert a1.get("/api/v1/status")["clustered"] is True
    # Joining a member again is a no-op.
    assert "joined node n2" in a1.json("POST", "/api/v1/cluster/join",
                                       {"node": n2.cluster_addr})["result"]
    assert view(a1) == {"n1": "running", "n2": "running"}

    r = mh.ctl(n1.http_port, "cluster", "status")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any("n1 (this node)" in ln and "running" in ln for ln in lines), r.stdout
    assert any(ln.startswith("n2 ") and "running" in ln and n2.cluster_addr in ln
               for ln in lines), r.stdout

    # A killed node is listed as stopped, then forgotten by 'cluster remove'.
    n2.kill9()
    wait_for("n2 stopped", lambda: view(a1) == {"n1": "running", "n2": "stopped"})
    r = mh.ctl(n1.http_port, "cluster", "remove", "n2")
    assert r.returncode == 0 and "removed" in r.stdout, r.stderr
    assert view(a1) == {"n1": "running"}


def test_routes_list_every_node_of_the_cluster(cluster):
    n1, n2 = cluster.start(2)
    a1 = node_api(n1)
    s1, s2 = RawClient(n1.port), RawClient(n2.port)
    s1.connect_ok()
    s2.connect_ok()
    s1.subscribe([("rt/one/#", 1), ("rt/both", 0), ("$share/g/rt/shared", 1)])
    s2.subscribe([("rt/two", 1), ("rt/both", 0), ("$share/g/rt/shared", 1)])
    want = {"rt/one/#": ["n1"], "rt/two": ["n2"], "rt/both": ["n1", "n2"],
            "$share/g/rt/shared": ["n1", "n2"]}

    def routes():
        items = a1.get("/api/v1/routes?limit=1000")["items"]
        return {r["topic"]: r["nodes"] for r in items if "rt/" in r["topic"]}
    wait_for("routes of both nodes", lambda: routes() == want)
    r = mh.ctl(n1.http_port, "routes", "list")
    assert r.returncode == 0 and any(ln.split()[:1] == ["rt/two"] and "n2" in ln
                                     for ln in r.stdout.splitlines()), r.stdout
    # A node that goes away takes its routes with it.
    s2.close()
    n2.kill9()
    del want["rt/two"]
    want["rt/both"] = want["$share/g/rt/shared"] = ["n1"]
    wait_for("n2's routes purged", lambda: routes() == want)


def test_clients_list_every_node_of_the_cluster(cluster):
    n1, n2, n3 = cluster.start(3)
    a1 = node_api(n1)
    ids, conns = {}, []
    for n, user in ((n1, "u-one"), (n2, "u-two"), (n3, "u-three")):
        c = RawClient(n.port)
        c.connect_ok(helpers.unique("cl"), username=user)
        ids[n.name] = c.client_id
        conns.append(c)  # kept open for the whole test

    def listed(query=""):
        r = a1.get("/api/v1/clients?limit=1000" + query)
        assert "missing_nodes" not in r, r
        return {c["clientid"]: (c["node"], c["username"]) for c in r["items"]
                if c["clientid"] in ids.values()}
    # A connection registers for the API just after its CONNACK: wait for all three.
    wait_for("clients of all nodes", lambda: len(listed()) == 3)
    assert listed() == {ids["n1"]: ("n1", "u-one"), ids["n2"]: ("n2", "u-two"),
                        ids["n3"]: ("n3", "u-three")}
    assert listed("&node=n2") == {ids["n2"]: ("n2", "u-two")}
    assert listed("&node=n1") == {ids["n1"]: ("n1", "u-one")}
    assert listed("&username=u-three") == {ids["n3"]: ("n3", "u-three")}
    r = mh.ctl(n1.http_port, "clients", "list", "--node", "n3")
    assert r.returncode == 0 and ids["n3"] in r.stdout and ids["n1"] not in r.stdout, r.stdout
    # Details and kick of a client on another member go through the node that holds it.
    d = a1.get(f"/api/v1/clients/{ids['n2']}")
    assert (d["clientid"], d["node"], d["username"]) == (ids["n2"], "n2", "u-two")
    r = mh.ctl(n1.http_port, "clients", "kick", ids["n2"])
    assert r.returncode == 0 and "kicked" in r.stdout, r.stderr
    conns[1].wait_closed()
    wait_for("kicked client gone", lambda: ids["n2"] not in listed())
    r = mh.ctl(n1.http_port, "clients", "kick", ids["n2"])
    assert r.returncode == 1 and "not connected to any node" in r.stderr, r.stderr
    # A member that stops answering is named, not waited for forever; the rest is listed.
    n3.pause()
    try:
        r = a1.get("/api/v1/clients?limit=1000")
        got = {c["clientid"] for c in r["items"]}
        assert ids["n1"] in got and ids["n3"] not in got
        assert r.get("missing_nodes") == ["n3"] or view(a1)["n3"] == "stopped", r
    finally:
        n3.resume()


def test_cluster_leave_then_join(cluster):
    n1, n2, n3 = cluster.start(3)
    a1, a2, a3 = node_api(n1), node_api(n2), node_api(n3)
    r = a3.json("POST", "/api/v1/cluster/leave", {})
    assert "left" in r["result"]
    wait_for("n3 gone from n1", lambda: view(a1) == {"n1": "running", "n2": "running"})
    wait_for("n3 gone from n2", lambda: view(a2) == {"n1": "running", "n2": "running"})
    assert view(a3) == {"n3": "running"}
    # Nobody dials it back (n3 had joined n2 as its seed): still apart a while later.
    time.sleep(1.5)
    assert view(a3) == {"n3": "running"} and "n3" not in view(a1)
    assert a3.get("/readyz")["ready"] is True

    r = mh.ctl(n3.http_port, "cluster", "join", n1.cluster_addr)
    assert r.returncode == 0 and "joined node n1" in r.stdout, r.stderr
    full = {"n1": "running", "n2": "running", "n3": "running"}
    for api in (a1, a2, a3):
        wait_for("full mesh again", lambda: view(api) == full)


def test_cluster_remove_errors_and_propagation(cluster):
    n1, n2, n3 = cluster.start(3)
    a1, a2 = node_api(n1), node_api(n2)
    assert "running" in a1.json("POST", "/api/v1/cluster/remove", {"node": "n2"},
                                expect=409)["error"]
    a1.json("POST", "/api/v1/cluster/remove", {"node": "n1"}, expect=400)
    a1.json("POST", "/api/v1/cluster/remove", {"node": "nope"}, expect=404)
    a1.json("POST", "/api/v1/cluster/remove", {}, expect=400)
    n3.kill9()
    for api in (a1, a2):
        wait_for("n3 stopped", lambda: view(api).get("n3") == "stopped")
    a1.json("POST", "/api/v1/cluster/remove", {"node": "n3"})
    # The other member forgets it too.
    wait_for("n3 forgotten on n2", lambda: "n3" not in view(a2))
    assert "n3" not in view(a1)


def test_cluster_join_errors(cluster):
    (n1,) = cluster.start(1)
    a1 = node_api(n1)
    err = a1.json("POST", "/api/v1/cluster/join", {"node": f"{helpers.HOST}:{free_port()}"},
                  expect=502)["error"]
    assert "cannot reach" in err
    a1.json("POST", "/api/v1/cluster/join", {"node": "no-port"}, expect=400)
    a1.json("POST", "/api/v1/cluster/join", {"node": n1.cluster_addr}, expect=400)
    r = mh.ctl(n1.http_port, "cluster", "join", "no-port")
    assert r.returncode == 1
    assert view(a1) == {"n1": "running"}


def test_readyz_in_a_cluster(cluster):
    n1, n2 = cluster.start(2)
    r = node_api(n2).get("/readyz", authorization="")
    assert r["ready"] is True and r["cluster"] == "joined"
    # A node whose seed answers but refuses it (another cookie) is not ready.
    n3 = cluster.node("n3")
    n3.start(join=[n1.cluster_addr], cookie="another-cookie")
    a3 = node_api(n3)
    n3.wait_log("cookie mismatch")
    time.sleep(1.5)  # longer than the first-node grace (5 reconnect intervals of 250 ms)
    status, _, body = a3.request("GET", "/readyz", authorization="")
    assert status == 503, body
    assert "cookie" in json.loads(body)["cluster"]
    # A node whose seeds are all unreachable is the first node: ready after the grace.
    n4 = cluster.node("n4")
    n4.start(join=[f"{helpers.HOST}:{free_port()}"])
    a4 = node_api(n4)
    r = wait_for("n4 ready", lambda: a4.request("GET", "/readyz", authorization="")[0] == 200)
    assert r
    assert "first node" in a4.get("/readyz", authorization="")["cluster"]


def test_first_user_creates_the_password_file(broker, tmp_path):
    path = tmp_path / "new.passwd"
    b = mh.start(broker, auth={"password_file": str(path)})
    api = mh.Api(b.http_port)
    assert api.get("/api/v1/users")["total"] == 0
    api.json("POST", "/api/v1/users", {"username": "erin", "password": "erin-pw"}, expect=201)
    assert path.read_text().startswith("erin:$7$")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [u["username"] for u in api.get("/api/v1/users")["items"]] == ["erin"]
