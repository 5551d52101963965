# CONNECT timeout (slowloris): a socket that sends nothing, half a CONNECT, or never finishes
# its WebSocket upgrade is closed after mqtt.connect_timeout; connected clients stay.

import socket
import time

import pytest

import helpers
from helpers import RawClient, connect_packet, is_mosquitto

pytestmark = pytest.mark.skipif(is_mosquitto(), reason="Tern listener configuration")


def closed_within(sock, timeout):
    """Seconds until the broker closed `sock` (reading discards any data)."""
    start = time.monotonic()
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except socket.timeout:
        raise AssertionError(f"not closed within {timeout}s")
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def test_silent_and_half_connect_sockets_are_closed(broker, clients):
    b = broker(mqtt={"connect_timeout": "1s"})
    keep = clients.raw_connected(b.port, keepalive=60)
    silent = socket.create_connection(("127.0.0.1", b.port))
    half = socket.create_connection(("127.0.0.1", b.port))
    half.sendall(connect_packet("half")[:6])
    t1 = closed_within(silent, 10)
    t2 = closed_within(half, 10)
    assert t1 >= 0.5 and t2 >= 0.0
    assert "no CONNECT in time" in b.log_text()
    keep.ping()  # older than the timeout, but connected: untouched


def test_websocket_upgrade_must_finish_in_time(broker):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        ws_port = s.getsockname()[1]
    b = broker(mqtt={"connect_timeout": "1s"},
               **{"listeners.ws.t": {"bind": f"127.0.0.1:{ws_port}"}})
    idle = socket.create_connection(("127.0.0.1", ws_port))
    partial = socket.create_connection(("127.0.0.1", ws_port))
    partial.sendall(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n")  # headers never end
    closed_within(idle, 10)
    closed_within(partial, 10)
    b.assert_alive()


def test_client_connecting_in_time_is_kept(broker):
    b = broker(mqtt={"connect_timeout": "1s"})
    c = RawClient(b.port)
    time.sleep(0.3)
    c.connect_ok()
    time.sleep(1.5)
    c.ping()
