# Flow control between nodes: publishers on one node, a slow subscriber on another. The
# subscriber's node holds back its acknowledgements of the forwards once the subscriber's
# session is over its mark, the publishing node's window to it closes and its publishers are
# paused, as on one node: every acknowledged message arrives, in order per publisher, and
# neither node drops or queues without bound.

import re

import mgmt_helpers as mh
from cluster_nodes import wait_route
from flow_pumps import assert_every_publisher_in_order, fan_in


def metric(node, name):
    m = re.search(r"management API on https?://\S+:(\d+)", node.log_since_start())
    assert m, "no management API line in the log"
    status, _, body = mh.Api(int(m.group(1))).request("GET", "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exported")


def routed_via(clients, pub_node, sub_node):
    def wait(topic):
        probe_sub = clients.paho(sub_node.port)
        probe_sub.subscribe(topic, qos=0)
        wait_route(clients.paho(pub_node.port), probe_sub, topic)
        probe_sub.disconnect()
    return wait


def test_slow_subscriber_on_another_node_pauses_the_publishers(cluster, clients):
    n1, n2 = cluster.start(2)
    # 100 publishers on n1, each with everything in flight at once: 30,000 messages through a
    # window of 4,096 forwards into a subscriber session that holds 1,000 (shipped defaults).
    sp, pumps = fan_in(clients, n1.port, n2.port, 100, 300, read_size=8192,
                       routed=routed_via(clients, n1, n2))
    assert_every_publisher_in_order(sp, 100, 300)
    for n in (n1, n2):
        assert metric(n, "tern_messages_dropped_total") == 0
    assert metric(n1, "tern_flow_pauses_total") > 0, "the publishers were never paused"
    assert metric(n2, "tern_flow_pauses_total") > 0, "the link was never paused"
