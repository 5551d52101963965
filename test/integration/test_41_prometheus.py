# GET /metrics: Prometheus text exposition, parsed line by line; every listed metric present
# with its type, and counters that move with traffic.

import re

import helpers
import mgmt_helpers as mh
from helpers import unique

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (-?[0-9.eE+-]+|NaN)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

EXPECTED = {
    "tern_build_info": "gauge",
    "tern_uptime_seconds": "gauge",
    "tern_connections": "gauge",
    "tern_connections_max": "gauge",
    "tern_connections_accepted_total": "counter",
    "tern_sessions": "gauge",
    "tern_subscriptions": "gauge",
    "tern_routes": "gauge",
    "tern_retained_messages": "gauge",
    "tern_messages_received_total": "counter",
    "tern_messages_sent_total": "counter",
    "tern_messages_dropped_total": "counter",
    "tern_bytes_received_total": "counter",
    "tern_bytes_sent_total": "counter",
    "tern_packets_received_total": "counter",
    "tern_packets_sent_total": "counter",
    "tern_protocol_errors_total": "counter",
    "tern_auth_failures_total": "counter",
    "tern_limit_hits_total": "counter",
    "tern_cluster_members": "gauge",
    "tern_cluster_forwarded_messages_total": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_virtual_memory_bytes": "gauge",
    "process_cpu_seconds_total": "counter",
    "process_open_fds": "gauge",
    "process_start_time_seconds": "gauge",
}


def parse(text):
    """{name: type}, {(name, frozenset(labels)): value}; asserts the format is well formed."""
    types, samples, helps = {}, {}, set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split(" ", 3)[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            types[name] = kind
        else:
            m = SAMPLE.match(line)
            assert m, f"malformed sample line: {line!r}"
            labels = frozenset(LABEL.findall(m.group(3) or ""))
            assert m.group(1) in types, f"sample before its TYPE: {line!r}"
            samples[(m.group(1), labels)] = float(m.group(4))
    assert helps == set(types)
    return types, samples


def scrape(node):
    status, headers, body = mh.Api(node.http_port).request("GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(body.decode())


def value(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


def test_every_listed_metric_is_exposed(broker, clients):
    node = mh.start(broker)
    clients.paho(node.port)
    # CONNACK may reach the client just before the node counts the connection
    types, samples = mh.wait_until(
        lambda: (lambda r: r if value(r[1], "tern_connections") == 1 else None)(scrape(node)),
        what="one connection counted")
    for name, kind in EXPECTED.items():
        assert types.get(name) == kind, name
    for q in ("0", "1", "2"):
        value(samples, "tern_messages_received_total", qos=q)
        value(samples, "tern_messages_sent_total", qos=q)
    for t in ("connect", "connack", "publish", "puback", "pubrec", "pubrel", "pubcomp",
              "subscribe", "suback", "unsubscribe", "unsuback", "pingreq", "pingresp",
              "disconnect"):
        value(samples, "tern_packets_received_total", type=t)
        value(samples, "tern_packets_sent_total", type=t)
    assert value(samples, "tern_connections") == 1
    assert value(samples, "tern_cluster_members") == 1
    assert value(samples, "process_resident_memory_bytes") > 1e6
    assert value(samples, "process_open_fds") > 0
    assert value(samples, "tern_build_info", version=next(
        dict(k[1])["version"] for k in samples if k[0] == "tern_build_info"),
        node="tern@127.0.0.1") == 1


def test_counters_follow_traffic(broker, clients):
    node = mh.start(broker, sys_interval="0s")  # no retained $SYS messages
    _, before = scrape(node)
    topic = unique("prom")
    sub = clients.paho(node.port)
    sub.subscribe(topic, qos=2)
    helpers.run_pub(node.port, topic, "p" * 1000, qos=2)
    helpers.run_pub(node.port, topic + "/r", "kept", qos=1, retain=True)  # routed before PUBACK
    sub.expect_one()
    _, after = scrape(node)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("tern_messages_received_total", qos="2") == 1
    assert delta("tern_messages_received_total", qos="1") == 1
    assert delta("tern_messages_sent_total", qos="2") == 1
    assert delta("tern_packets_received_total", type="pubrel") == 1
    assert delta("tern_packets_sent_total", type="pubrec") == 1
    assert delta("tern_packets_received_total", type="connect") == 3
    assert delta("tern_bytes_received_total") > 1000
    assert delta("tern_bytes_sent_total") > 1000
    assert delta("tern_retained_messages") == 1
    assert value(after, "tern_subscriptions") == 1 and value(after, "tern_routes") == 1
    assert value(after, "tern_sessions") >= 1  # mosquitto_pub's sessions may still be ending


def test_protocol_errors_are_counted(broker, clients):
    node = mh.start(broker)
    _, before = scrape(node)
    c = clients.raw_connected(node.port)
    c.send(helpers.connect_packet("again"))  # a second CONNECT is a protocol violation
    c.wait_closed()
    _, after = mh.wait_until(
        lambda: (lambda r: r if value(r[1], "tern_protocol_errors_total") > 0 else None)(
            scrape(node)), what="protocol error counted")
    assert value(after, "tern_protocol_errors_total") == \
        value(before, "tern_protocol_errors_total") + 1
