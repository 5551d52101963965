# broker-ctl against a running node: every command, human tables and --json, exit codes.

import json

import pytest

import helpers
import mgmt_helpers as mh
from helpers import unique


@pytest.fixture
def node(broker, clients):
    b = mh.start(broker)
    b.sub_id = unique("ctl-sub")
    s = clients.paho(b.port, client_id=b.sub_id, username="dave")
    s.subscribe("ctl/+/x", qos=1)
    b.sub = s
    return b


def ok(node, *args, **kw):
    r = mh.ctl(node.http_port, *args, **kw)
    assert r.returncode == 0, f"broker-ctl {' '.join(args)}: rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def ok_json(node, *args, **kw):
    return json.loads(ok(node, *args, json_out=True, **kw))


def test_status_and_broker(node):
    assert "Node tern@127.0.0.1 is running" in ok(node, "status")
    out = ok(node, "broker")
    assert "version:" in out and "uptime:" in out and "clients/count" in out
    assert ok_json(node, "status")["stats"]["clients/count"] == 1
    # API key instead of a user
    assert "is running" in ok(node, "status", user=None, api_key=mh.API_KEY)


def test_clients(node):
    out = ok(node, "clients", "list")
    assert "CLIENT ID" in out and node.sub_id in out and "dave" in out
    items = ok_json(node, "clients", "list", "--username", "dave")["items"]
    assert [c["clientid"] for c in items] == [node.sub_id]
    assert ok_json(node, "clients", "list", "--clientid", "nobody")["items"] == []
    show = ok(node, "clients", "show", node.sub_id)
    assert node.sub_id in show and "ctl/+/x" in show and "MQTT 3.1.1" in show
    assert ok_json(node, "clients", "show", node.sub_id)["subscriptions"] == [
        {"topic": "ctl/+/x", "qos": 1}]


def test_kick(node, clients):
    victim = unique("ctl-victim")
    c = clients.raw_connected(node.port, victim)
    api = mh.Api(node.http_port)
    # The CONNACK is written before the connection registers for the API.
    mh.wait_until(lambda: api.request("GET", f"/api/v1/clients/{victim}")[0] == 200,
                  what="client listed")
    assert f"client {victim} kicked" in ok(node, "clients", "kick", victim)
    c.wait_closed()
    mh.wait_until(lambda: api.request("GET", f"/api/v1/clients/{victim}")[0] == 404,
                  what="kicked client unregistered")
    r = mh.ctl(node.http_port, "clients", "kick", victim)
    assert r.returncode == 1 and "not connected" in r.stderr


def test_sessions_and_subscriptions(node):
    out = ok(node, "sessions", "list")
    assert node.sub_id in out and "CONNECTED" in out
    show = ok(node, "sessions", "show", node.sub_id)
    assert "inflight:" in show and "queue length:" in show and "ctl/+/x" in show
    subs = ok(node, "subscriptions", "list")
    assert node.sub_id in subs and "ctl/+/x" in subs
    assert ok_json(node, "subscriptions", "show", node.sub_id)[0]["topic"] == "ctl/+/x"
    assert ok_json(node, "subscriptions", "list", "--clientid", "x")["items"] == []
    assert mh.ctl(node.http_port, "sessions", "show", "nobody").returncode == 1


def test_routes_listeners_metrics(node):
    routes = ok(node, "routes", "list")
    assert "ctl/+/x" in routes and "tern@127.0.0.1" in routes
    listeners = ok(node, "listeners")
    assert f"127.0.0.1:{node.port}" in listeners and "mqtt/tcp" in listeners
    metrics = ok(node, "metrics")
    assert "bytes/received" in metrics and "messages/qos1/received" in metrics
    assert ok_json(node, "metrics")["metrics"]["packets/subscribe"] >= 1


def test_publish(node):
    out = ok(node, "publish", "ctl/a/x", "from ctl", "--qos", "1")
    assert "1 subscribers" in out
    m = node.sub.expect_one()
    assert (m.topic, m.payload, m.qos) == ("ctl/a/x", b"from ctl", 1)
    ok(node, "publish", "ctl/b/x", "kept", "--retain")
    assert node.sub.expect_one().payload == b"kept"
    bad = mh.ctl(node.http_port, "publish", "bad/+/topic", "x")
    assert bad.returncode == 1 and "invalid topic" in bad.stderr


def test_cluster_single_node(node):
    out = ok(node, "cluster", "status")
    assert "tern@127.0.0.1" in out and "running" in out and "not clustered" in out
    for args in (("join", "127.0.0.1:4370"), ("leave",), ("remove", "other@host")):
        r = mh.ctl(node.http_port, "cluster", *args)
        assert r.returncode == 1 and "not clustered" in r.stderr, args


def test_users_without_password_file_and_acl_reload(node):
    for args in (("users", "list"), ("users", "add", "u", "p"), ("users", "passwd", "u", "p"),
                 ("users", "del", "u")):
        r = mh.ctl(node.http_port, *args)
        assert r.returncode == 1 and "HTTP 409" in r.stderr and "password_file" in r.stderr, args
    assert "ACL reloaded" in ok(node, "acl", "reload")


def test_log_level(node):
    assert ok(node, "log", "level").strip() == "debug"
    assert "log level set to error" in ok(node, "log", "level", "error")
    assert ok(node, "log", "level").strip() == "error"
    assert mh.ctl(node.http_port, "log", "level", "chatty").returncode == 2


def test_exit_codes(node):
    bad_auth = mh.ctl(node.http_port, "status", user="admin:wrong")
    assert bad_auth.returncode == 4 and "invalid credentials" in bad_auth.stderr
    assert mh.ctl(node.http_port, "status", user=None).returncode == 4
    assert mh.ctl(node.http_port).returncode == 2            # no command
    assert mh.ctl(node.http_port, "frobnicate").returncode == 2
    assert mh.ctl(node.http_port, "clients", "show").returncode == 2  # missing argument
    help_ = mh.ctl(node.http_port, "--help")
    assert help_.returncode == 0 and "clients" in help_.stdout
    # a port nobody listens on: "unreachable"
    import socket
    with socket.socket() as s:
        s.bind((helpers.HOST, 0))
        closed = s.getsockname()[1]
    down = mh.ctl(closed, "status")
    assert down.returncode == 3 and "cannot connect" in down.stderr
