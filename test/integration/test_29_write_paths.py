# Outgoing bytes take two paths: written at once by the actor that sends them (a quiet plain
# TCP connection), or queued for the connection's io thread (a write is already under way, or
# the connection was written to a moment ago). A write the socket takes only partly continues
# on the io thread. Whatever the mix, the client must get every packet whole and in order.

import time

import pytest

from helpers import PUBLISH, assert_pubsub_works, is_mosquitto, unique

pytestmark = pytest.mark.skipif(is_mosquitto(), reason="Tern send buffer option")


def payload_for(i, size):
    stamp = f"{i:08d}".encode()
    return (stamp * (size // len(stamp) + 1))[:size]


def test_large_and_small_deliveries_to_a_stalled_reader_arrive_whole_and_in_order(
        broker, clients):
    b = broker(session={"max_send_buffer": 32_000_000, "max_inflight": 65535})
    topic = unique("paths")
    sub = clients.raw(b.port, rcvbuf=4096)
    sub.connect_ok()
    sub.subscribe([(topic, 1)])
    pub = clients.raw_connected(b.port)
    # Far more than the socket buffers hold while `sub` reads nothing: the first delivery is
    # written only in part, the rest of it and everything after queue on the io thread. Small
    # messages between the large ones, and some after a pause, mix in quiet-connection writes.
    sizes = []
    for i in range(24):
        size = 700_000 if i % 4 == 0 else 37 + i
        pub.publish_acked(topic, payload_for(i, size), qos=1)
        sizes.append(size)
        if i % 8 == 7:
            time.sleep(0.2)
    for i, size in enumerate(sizes):
        p = sub.expect(PUBLISH, timeout=20)
        assert p.topic == topic
        assert len(p.payload) == size, f"message {i}: {len(p.payload)} bytes, expected {size}"
        assert p.payload == payload_for(i, size), f"message {i} arrived corrupted or out of order"
    # Once the reader caught up, the connection is quiet again and small deliveries are
    # written at once.
    for i in range(len(sizes), len(sizes) + 20):
        pub.publish_acked(topic, payload_for(i, 64), qos=1)
        p = sub.expect(PUBLISH, timeout=5)
        assert p.payload == payload_for(i, 64)
    assert_pubsub_works(b.port)
