# A subscriber that stops reading its socket: the broker's outgoing buffer for it is bounded
# (session.max_send_buffer); past twice that it is disconnected. Memory stays bounded and
# everyone else keeps working.

import time

import pytest

from helpers import assert_pubsub_works, is_mosquitto, unique

pytestmark = pytest.mark.skipif(is_mosquitto(), reason="Tern send buffer option")


def test_non_reading_subscriber_is_disconnected(broker, clients):
    # QoS 1 with a wide inflight window: nothing is dropped for the slow client, so only the
    # send buffer bound can stop its backlog (once the kernel's socket buffers are full).
    # The bound is well above one message, so a client that does read keeps up.
    b = broker(session={"max_send_buffer": 1_000_000, "max_inflight": 65535})
    topic = unique("slow")
    slow = clients.raw(b.port, rcvbuf=4096)
    slow.connect_ok()
    slow.subscribe([(topic, 1)])
    # From here on `slow` reads nothing.
    reader = clients.paho(b.port)
    reader.subscribe(topic, 1)
    pub = clients.raw_connected(b.port)
    rss_before = b.proc_status("VmRSS")
    payload = bytes(100_000)
    deadline = time.monotonic() + 30
    sent = 0
    while "outgoing buffer over" not in b.log_text():
        assert time.monotonic() < deadline, "the non-reading client was never disconnected"
        for _ in range(5):
            pub.publish_acked(topic, payload, qos=1)
            sent += 1
    # The reading subscriber got everything, the slow one is gone.
    got = reader.expect(sent, timeout=30)
    assert len(got) == sent
    slow.wait_closed(timeout=10)
    assert not reader.disconnected.is_set(), "the reading subscriber was disconnected too"
    assert b.log_text().count("outgoing buffer over") == 1
    growth_kb = b.proc_status("VmRSS") - rss_before
    assert growth_kb < 64 * 1024, f"RSS grew by {growth_kb} kB"
    assert_pubsub_works(b.port)
