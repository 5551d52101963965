# Admission limits of a listener: max_connections refuses at accept without disturbing the
# connected clients; max_conn_rate refuses connections beyond the rate.

import socket
import time

import pytest

import helpers
from helpers import RawClient, connect_packet, is_mosquitto, unique

pytestmark = pytest.mark.skipif(is_mosquitto(), reason="Tern listener configuration")


def wait_log(b, text, timeout=5.0):
    deadline = time.monotonic() + timeout
    while text not in b.log_text():
        assert time.monotonic() < deadline, f"no log line with {text!r}"
        time.sleep(0.02)


def try_connect(port, timeout=3.0):
    """Opens a socket and sends CONNECT: True on CONNACK, False when the broker closes it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(connect_packet(unique("try")))
        data = s.recv(4)
        return data == b"\x20\x02\x00\x00"
    except (ConnectionResetError, BrokenPipeError):
        return False
    finally:
        s.close()


def connect_when_room(clients, port, timeout=5.0):
    """A connected RawClient; retries while the broker still counts a socket that was just
    closed (the fixture's start-up probe, for instance)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return clients.raw_connected(port)
        except (AssertionError, helpers.ConnectionClosed, OSError):
            assert time.monotonic() < deadline, "the listener never had room"
            time.sleep(0.05)


def test_max_connections_refuses_at_accept(broker, clients):
    b = broker(**{"listeners.tcp.default": {"max_connections": 3}})
    held = [connect_when_room(clients, b.port) for _ in range(3)]
    # The fourth socket is closed at once, before any MQTT byte is read.
    for _ in range(3):
        assert not try_connect(b.port)
    wait_log(b, "max_connections (3) reached")
    # The connected clients did not notice.
    for c in held:
        c.ping()
    # One leaves: there is room again (the close is asynchronous, so allow a moment).
    held[0].disconnect()
    deadline = time.monotonic() + 5
    while not try_connect(b.port):
        assert time.monotonic() < deadline, "no room after a client left"
        time.sleep(0.05)
    for c in held[1:]:
        c.ping()
    b.assert_alive()


def test_max_connections_counts_per_listener(broker, clients):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        other = s.getsockname()[1]
    b = broker(**{"listeners.tcp.default": {"max_connections": 1},
                  "listeners.tcp.other": {"bind": f"127.0.0.1:{other}"}})
    connect_when_room(clients, b.port)
    assert not try_connect(b.port)
    # The other listener has its own count.
    a, c = clients.raw_connected(other), clients.raw_connected(other)
    a.ping()
    c.ping()


def test_connection_rate_limit(broker, clients):
    b = broker(**{"listeners.tcp.default": {"max_conn_rate": 5}})
    start = time.monotonic()
    results = [try_connect(b.port) for _ in range(20)]
    elapsed = time.monotonic() - start
    accepted = results.count(True)
    # A full bucket admits 5 at once, plus 5 per second of the burst's duration.
    assert 1 <= accepted <= 5 + int(elapsed * 5) + 1, (accepted, elapsed)
    assert results.count(False) >= 20 - (5 + int(elapsed * 5) + 1)
    wait_log(b, "max_conn_rate (5/s) exceeded")
    # The bucket refills: a little later connections are accepted again.
    time.sleep(1.0)
    assert try_connect(b.port)
    b.assert_alive()
