# Management HTTP API: every /api/v1 endpoint against a node with real clients connected,
# authentication (401 without or with wrong credentials), probes, kick and HTTP publish.

import json

import pytest

import helpers
import mgmt_helpers as mh
from helpers import unique


@pytest.fixture
def node(broker):
    return mh.start(broker, sys_interval="0s")  # no $SYS traffic in the counters


def connect_clients(node, clients):
    """Two paho clients with subscriptions and one persistent session left offline."""
    a_id, b_id, off_id = unique("api-a"), unique("api-b"), unique("api-off")
    a = clients.paho(node.port, client_id=a_id)
    a.subscribe(f"{a_id}/in/#", qos=1)
    b = clients.paho(node.port, client_id=b_id, username="bob")
    b.subscribe("sensors/+/temp", qos=2)
    off = clients.paho(node.port, client_id=off_id, clean_session=False)
    off.subscribe(f"{off_id}/inbox", qos=1)
    off.disconnect()
    api = mh.Api(node.http_port)
    mh.wait_until(lambda: api.get("/api/v1/clients")["total"] == 2, what="offline client gone")
    return a_id, b_id, off_id, a, b


def test_no_credential_is_401(node):
    api = mh.Api(node.http_port, authorization="")
    for path in ("/api/v1/status", "/api/v1/clients", "/metrics", "/api/v1/publish"):
        status, headers, body = api.request("GET", path)
        assert status == 401, path
        assert headers.get("www-authenticate", "").startswith("Basic"), headers
        assert "error" in json.loads(body)


def test_wrong_credentials_are_401(node):
    for auth in (mh.basic(mh.USER, "wrong"), mh.basic("nobody", mh.PASSWORD),
                 "Bearer not-a-valid-key-000000", "Basic !!!notbase64", "Digest abc"):
        status, _, _ = mh.Api(node.http_port, authorization=auth).request("GET", "/api/v1/status")
        assert status == 401, auth


def test_basic_and_bearer_are_accepted(node):
    assert mh.Api(node.http_port).get("/api/v1/status")["status"] == "running"
    bearer = mh.Api(node.http_port, authorization="Bearer " + mh.API_KEY)
    assert bearer.get("/api/v1/status")["node"] == "tern@127.0.0.1"


def test_probes_need_no_credential(node):
    api = mh.Api(node.http_port, authorization="")
    assert api.get("/healthz") == {"status": "ok"}
    assert api.get("/readyz") == {"ready": True}


def test_status_and_nodes(node, clients):
    connect_clients(node, clients)
    api = mh.Api(node.http_port)
    s = api.get("/api/v1/status")
    assert s["node"] == "tern@127.0.0.1" and s["status"] == "running"
    assert s["version"] and s["uptime"].endswith("seconds")
    assert s["clustered"] is False
    assert s["stats"]["clients/count"] == 2
    assert s["stats"]["sessions/count"] == 3
    assert s["stats"]["subscriptions/count"] == 3
    nodes = api.get("/api/v1/nodes")
    assert [n["name"] for n in nodes] == ["tern@127.0.0.1"]
    assert nodes[0]["connections"] == 2 and nodes[0]["memory_bytes"] > 0
    cluster = api.get("/api/v1/cluster")
    assert cluster["running_nodes"] == ["tern@127.0.0.1"] and cluster["clustered"] is False


def test_clients_list_filter_and_paging(node, clients):
    a_id, b_id, off_id, _, _ = connect_clients(node, clients)
    api = mh.Api(node.http_port)
    page = api.get("/api/v1/clients")
    assert page["total"] == 2
    ids = [c["clientid"] for c in page["items"]]
    assert sorted(ids) == sorted([a_id, b_id]) and off_id not in ids
    c = next(c for c in page["items"] if c["clientid"] == b_id)
    assert c["username"] == "bob" and c["proto_ver"] == 4 and c["node"] == "tern@127.0.0.1"
    assert c["ipaddress"].startswith("127.0.0.1:") and c["keepalive"] == 60
    assert api.get(f"/api/v1/clients?clientid={a_id}")["items"][0]["clientid"] == a_id
    assert [c["clientid"] for c in api.get("/api/v1/clients?username=bob")["items"]] == [b_id]
    assert api.get("/api/v1/clients?node=other@host")["total"] == 0
    p1 = api.get("/api/v1/clients?page=1&limit=1")
    p2 = api.get("/api/v1/clients?page=2&limit=1")
    assert p1["total"] == p2["total"] == 2 and len(p1["items"]) == len(p2["items"]) == 1
    assert p1["items"][0]["clientid"] != p2["items"][0]["clientid"]
    assert api.get("/api/v1/clients?page=3&limit=1")["items"] == []
    api.json("GET", "/api/v1/clients?limit=0", expect=400)
    api.json("GET", "/api/v1/clients?page=x", expect=400)


def test_client_details(node, clients):
    a_id, _, _, a, _ = connect_clients(node, clients)
    api = mh.Api(node.http_port)
    c = api.get(f"/api/v1/clients/{a_id}")
    assert c["clientid"] == a_id and c["keepalive"] == 60 and c["proto_name"] == "MQTT 3.1.1"
    assert c["connected_at"].endswith("Z")
    assert c["inflight"] == 0 and c["queue_len"] == 0
    assert c["subscriptions"] == [{"topic": f"{a_id}/in/#", "qos": 1}]
    api.json("GET", "/api/v1/clients/" + unique("nobody"), expect=404)


def test_sessions(node, clients):
    a_id, b_id, off_id, _, _ = connect_clients(node, clients)
    # The offline persistent session queues a QoS 1 message.
    helpers.run_pub(node.port, f"{off_id}/inbox", "queued", qos=1)
    api = mh.Api(node.http_port)
    # mosquitto_pub's own clean session ends just after it disconnects
    page = mh.wait_until(lambda: (lambda p: p if p["total"] == 3 else None)(
        api.get("/api/v1/sessions")), what="three sessions")
    by_id = {s["clientid"]: s for s in page["items"]}
    assert set(by_id) == {a_id, b_id, off_id}
    assert by_id[a_id]["connected"] is True and by_id[off_id]["connected"] is False
    off = mh.wait_until(lambda: (lambda s: s if s["queue_len"] == 1 else None)(
        api.get(f"/api/v1/sessions/{off_id}")), what="queued message in the offline session")
    assert off["subscriptions"] == [{"topic": f"{off_id}/inbox", "qos": 1}]
    assert off["expiry_interval_ms"] > 0
    api.json("GET", "/api/v1/sessions/" + unique("none"), expect=404)


def test_subscriptions_and_routes(node, clients):
    a_id, b_id, off_id, _, _ = connect_clients(node, clients)
    api = mh.Api(node.http_port)
    subs = api.get("/api/v1/subscriptions")
    rows = {(s["clientid"], s["topic"], s["qos"]) for s in subs["items"]}
    assert rows == {(a_id, f"{a_id}/in/#", 1), (b_id, "sensors/+/temp", 2),
                    (off_id, f"{off_id}/inbox", 1)}
    only_b = api.get(f"/api/v1/subscriptions?clientid={b_id}")["items"]
    assert [s["topic"] for s in only_b] == ["sensors/+/temp"]
    assert api.get(f"/api/v1/subscriptions/{b_id}") == [
        {"clientid": b_id, "topic": "sensors/+/temp", "qos": 2, "node": "tern@127.0.0.1"}]
    routes = api.get("/api/v1/routes")
    assert {r["topic"] for r in routes["items"]} == {f"{a_id}/in/#", "sensors/+/temp",
                                                     f"{off_id}/inbox"}
    assert all(r["nodes"] == ["tern@127.0.0.1"] for r in routes["items"])


def test_listeners(node):
    ls = mh.Api(node.http_port).get("/api/v1/listeners")
    mqtt = next(l for l in ls if l["protocol"] == "mqtt/tcp")
    assert mqtt["bind"] == f"127.0.0.1:{node.port}"
    http = next(l for l in ls if l["protocol"] == "http")
    assert http["bind"] == "127.0.0.1"


def test_metrics_json_counts_traffic(node, clients):
    api = mh.Api(node.http_port)
    before = api.get("/api/v1/metrics")["metrics"]
    topic = unique("m")
    sub = clients.paho(node.port)
    sub.subscribe(topic, qos=1)
    helpers.run_pub(node.port, topic, "x" * 100, qos=1)
    sub.expect_one()
    # the subscriber's PUBACK and mosquitto_pub's disconnect reach the node a moment later
    after = mh.wait_until(lambda: (lambda a: a if a["stats"]["clients/count"] == 1 and
                                   a["metrics"]["packets/puback/received"] >
                                   before["packets/puback/received"] else None)(
        api.get("/api/v1/metrics")), what="PUBACK and disconnect counted")
    m = after["metrics"]
    assert m["messages/received"] == before["messages/received"] + 1
    assert m["messages/qos1/received"] == before["messages/qos1/received"] + 1
    assert m["messages/qos1/sent"] >= before["messages/qos1/sent"] + 1
    assert m["bytes/received"] >= before["bytes/received"] + 100
    assert m["bytes/sent"] >= before["bytes/sent"] + 100
    assert m["packets/connect"] >= before["packets/connect"] + 2
    assert m["packets/subscribe"] == before["packets/subscribe"] + 1
    assert m["packets/suback"] == before["packets/suback"] + 1
    assert m["packets/puback/received"] >= before["packets/puback/received"] + 1
    assert after["stats"]["clients/count"] == 1


def test_kick(node, clients):
    victim_id = unique("victim")
    victim = clients.raw_connected(node.port, victim_id)
    api = mh.Api(node.http_port)
    # The registry learns of a client just after its CONNACK is on the way.
    mh.wait_until(lambda: api.get("/api/v1/clients")["total"] == 1, what="client listed")
    assert api.json("DELETE", f"/api/v1/clients/{victim_id}") == {"kicked": victim_id}
    victim.wait_closed()
    mh.wait_until(lambda: api.get("/api/v1/clients")["total"] == 0, what="client gone")
    api.json("DELETE", f"/api/v1/clients/{victim_id}", expect=404)


def test_http_publish(node, clients):
    topic = unique("httppub")
    sub = clients.paho(node.port)
    sub.subscribe(topic, qos=1)
    api = mh.Api(node.http_port)
    r = api.json("POST", "/api/v1/publish",
                 {"topic": topic, "payload": "hello", "qos": 1, "retain": True})
    assert r == {"topic": topic, "delivered_to": 1}
    m = sub.expect_one()
    assert (m.topic, m.payload, m.qos) == (topic, b"hello", 1)
    # retained: a later subscriber gets it
    late = clients.paho(node.port)
    late.subscribe(topic, qos=1)
    assert late.expect_one().payload == b"hello"
    api.json("POST", "/api/v1/publish", {"topic": "a/+/b", "payload": "x"}, expect=400)
    api.json("POST", "/api/v1/publish", {"topic": "$SYS/x", "payload": "x"}, expect=400)
    api.json("POST", "/api/v1/publish", {"topic": topic, "qos": 3}, expect=400)
    api.json("POST", "/api/v1/publish", "not json", expect=400)
    api.json("GET", "/api/v1/publish", expect=405)


def test_log_level(node):
    api = mh.Api(node.http_port)
    assert api.get("/api/v1/log/level") == {"level": "debug"}
    assert api.json("PUT", "/api/v1/log/level", {"level": "warn"}) == {"level": "warn"}
    assert api.get("/api/v1/log/level") == {"level": "warn"}
    api.json("PUT", "/api/v1/log/level", {"level": "loud"}, expect=400)


def test_refused_on_a_plain_node(node):
    # No [auth] password_file and no cluster: users and cluster changes answer 409;
    # an ACL reload (no files to read) succeeds. test_46 covers the configured cases.
    api = mh.Api(node.http_port)
    for method, path in (("GET", "/api/v1/users"), ("POST", "/api/v1/users")):
        err = api.json(method, path, {} if method == "POST" else None, expect=409)
        assert "password_file" in err["error"]
    assert api.json("POST", "/api/v1/acl/reload", {})["result"] == "reloaded"
    for action in ("join", "leave", "remove"):
        err = api.json("POST", f"/api/v1/cluster/{action}", {"node": "x"}, expect=409)
        assert "not clustered" in err["error"]
    api.json("GET", "/api/v1/nope", expect=404)


def test_bad_http_input_keeps_node_alive(node, clients):
    import socket
    for raw in (b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
                b"\x00\xff" * 100):
        with socket.create_connection((helpers.HOST, node.http_port), timeout=5) as s:
            s.sendall(raw)
            s.settimeout(5)
            try:
                s.recv(1024)
            except OSError:
                pass
    assert mh.Api(node.http_port).get("/healthz") == {"status": "ok"}
    helpers.assert_pubsub_works(node.port)


def test_graceful_stop_with_open_api_connections(node):
    import http.client
    idle = http.client.HTTPConnection(helpers.HOST, node.http_port, timeout=5)
    idle.request("GET", "/healthz")
    assert idle.getresponse().read()  # the keep-alive connection stays open
    import socket
    half = socket.create_connection((helpers.HOST, node.http_port))
    half.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n")  # request never finished
    code, killed = node.stop()
    assert (code, killed) == (0, False)
    idle.close()
    half.close()
