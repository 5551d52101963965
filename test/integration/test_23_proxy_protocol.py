# PROXY protocol v1 and v2 on a listener with proxy_protocol = true: the client address in
# the header is the one the broker logs and uses; bad or missing headers close only that
# connection.

import socket
import struct

import pytest

import helpers
from helpers import (CONNACK, RawClient, assert_pubsub_works, connect_packet, is_mosquitto,
                     unique)

pytestmark = pytest.mark.skipif(is_mosquitto(), reason="Tern listener configuration")

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proxy_broker(broker):
    port = free_port()
    b = broker(**{"listeners.tcp.lb": {"bind": f"127.0.0.1:{port}", "proxy_protocol": True}})
    b.proxy_port = port
    return b


def wait_log(b, text, timeout=5.0):
    """The broker's log contains `text` within `timeout` (log lines follow the CONNACK)."""
    deadline = helpers.time.monotonic() + timeout
    while text not in b.log_text():
        assert helpers.time.monotonic() < deadline, f"no log line with {text!r}"
        helpers.time.sleep(0.02)


def connack_after(port, header, client_id):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    # Header and CONNECT in one segment: the broker must not eat the client's bytes.
    s.sendall(header + connect_packet(client_id))
    data = s.recv(4)
    s.close()
    return data


def test_v1_header_sets_the_client_address(broker):
    b = proxy_broker(broker)
    cid = unique("p1")
    hdr = b"PROXY TCP4 203.0.113.7 192.0.2.1 40001 1883\r\n"
    assert connack_after(b.proxy_port, hdr, cid) == b"\x20\x02\x00\x00"
    wait_log(b, "PROXY v1 header: client 203.0.113.7:40001")
    wait_log(b, f"client {cid} connected from 203.0.113.7:40001")


def test_v1_tcp6_header(broker):
    b = proxy_broker(broker)
    cid = unique("p6")
    hdr = b"PROXY TCP6 2001:db8::42 2001:db8::1 5555 1883\r\n"
    assert connack_after(b.proxy_port, hdr, cid) == b"\x20\x02\x00\x00"
    wait_log(b, f"client {cid} connected from [2001:db8::42]:5555")


def test_v2_header_sets_the_client_address(broker):
    b = proxy_broker(broker)
    cid = unique("p2")
    addrs = socket.inet_aton("198.51.100.9") + socket.inet_aton("192.0.2.1") + \
        struct.pack("!HH", 50123, 1883)
    tlv = b"\x04\x00\x03abc"  # a NOOP TLV the broker skips
    hdr = V2_SIG + bytes([0x21, 0x11]) + struct.pack("!H", len(addrs + tlv)) + addrs + tlv
    assert connack_after(b.proxy_port, hdr, cid) == b"\x20\x02\x00\x00"
    wait_log(b, f"client {cid} connected from 198.51.100.9:50123")


def test_v2_local_keeps_the_socket_address(broker):
    b = proxy_broker(broker)
    cid = unique("plocal")
    hdr = V2_SIG + bytes([0x20, 0x00]) + b"\x00\x00"
    assert connack_after(b.proxy_port, hdr, cid) == b"\x20\x02\x00\x00"
    wait_log(b, f"client {cid} connected from 127.0.0.1:")


def test_header_arriving_in_pieces(broker):
    b = proxy_broker(broker)
    cid = unique("pieces")
    s = socket.create_connection(("127.0.0.1", b.proxy_port), timeout=5)
    hdr = b"PROXY TCP4 203.0.113.8 192.0.2.1 40002 1883\r\n"
    for piece in (hdr[:3], hdr[3:20], hdr[20:-1], hdr[-1:] + connect_packet(cid)[:5]):
        s.sendall(piece)
        helpers.time.sleep(0.05)
    s.sendall(connect_packet(cid)[5:])
    assert s.recv(4) == b"\x20\x02\x00\x00"
    s.close()
    wait_log(b, f"client {cid} connected from 203.0.113.8:40002")


@pytest.mark.parametrize("bad", [
    b"PROXY TCP4 203.0.113.7 192.0.2.1 40001\r\n",       # a field missing
    b"PROXY TCP4 999.0.113.7 192.0.2.1 40001 1883\r\n",  # not an address
    b"GET / HTTP/1.1\r\n\r\n",
    V2_SIG + bytes([0x31, 0x11]) + b"\x00\x0c" + bytes(12),  # version 3
], ids=["v1-short", "v1-bad-ip", "http", "v2-bad-version"])
def test_bad_header_closes_only_that_connection(broker, bad):
    b = proxy_broker(broker)
    c = RawClient(b.proxy_port)
    c.send(bad + connect_packet("bad-proxy"))
    c.wait_closed()
    wait_log(b, "bad PROXY protocol header")
    assert_pubsub_works(b.port)


def test_missing_header_is_refused(broker):
    b = proxy_broker(broker)
    c = RawClient(b.proxy_port)
    c.send(connect_packet("no-header"))
    c.wait_closed()
    # The listener without proxy_protocol is unaffected.
    assert_pubsub_works(b.port)
