# MQTT over WebSocket and secure WebSocket: paho-mqtt with transport="websockets", and a
# hand-written WebSocket client for frame-level cases (packets split across frames and
# messages, several packets in one frame, control frames in between, bad upgrades).

import base64
import os
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest

import helpers
from conftest import free_port
from helpers import (CONNACK, PINGRESP, PUBACK, PUBLISH, SUBACK, Packet, assert_pubsub_works,
                     connect_packet, is_mosquitto, pingreq_packet, publish_packet,
                     subscribe_packet, unique)

pytestmark = pytest.mark.skipif(is_mosquitto(), reason="Tern listener configuration")

GEN_CERTS = Path(__file__).resolve().parents[2] / "scripts" / "gen-certs.sh"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    out = tmp_path_factory.mktemp("certs")
    subprocess.run(["bash", str(GEN_CERTS), str(out)], check=True, capture_output=True)
    return out


def free_ports(n):
    """n distinct free ports (held open together while picked)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def ws_broker(broker, certs=None, **ws):
    port, sport = free_ports(2)
    sections = {"listeners.ws.t": {"bind": f"127.0.0.1:{port}", **ws}}
    if certs is not None:
        sections["listeners.wss.t"] = {"bind": f"127.0.0.1:{sport}",
                                       "certfile": str(certs / "server.pem"),
                                       "keyfile": str(certs / "server.key"), **ws}
    b = broker(**sections)
    b.ws_port, b.wss_port = port, sport
    return b


class PahoWs:
    """A paho client over WebSocket; messages land in .messages."""

    def __init__(self, port, path="/mqtt", ca=None, client_id=None):
        self.messages = []
        self.connack = None
        self.c = paho.Client(client_id=client_id or unique("ws"), transport="websockets")
        self.c.ws_set_options(path=path)
        if ca is not None:
            self.c.tls_set(ca_certs=str(ca))
        self.c.on_connect = lambda c, u, f, rc: setattr(self, "connack", rc)
        self.c.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.subscribed = False
        self.c.on_subscribe = lambda c, u, mid, q: setattr(self, "subscribed", True)
        self.c.connect("localhost" if ca else "127.0.0.1", port, 60)
        self.c.loop_start()
        wait_for(lambda: self.connack is not None, "CONNACK over WebSocket")
        assert self.connack == 0

    def subscribe(self, topic, qos=1):
        self.c.subscribe(topic, qos)
        wait_for(lambda: self.subscribed, "SUBACK over WebSocket")

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()


def wait_for(pred, what, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"no {what} within {timeout}s"
        time.sleep(0.01)


class RawWs:
    """A minimal RFC 6455 client: explicit frames in, frames and MQTT packets out."""

    def __init__(self, port, path="/mqtt", protocols="mqtt", tls_ca=None):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if tls_ca is not None:
            s = ssl.create_default_context(cafile=str(tls_ca)).wrap_socket(
                s, server_hostname="localhost")
        self.sock = s
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n")
        if protocols is not None:
            req += f"Sec-WebSocket-Protocol: {protocols}\r\n"
        s.sendall((req + "\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
        head, _, self.buf = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines and lines[0] else 0
        self.headers = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip()
                        for l in lines[1:] if ":" in l}
        self.mqtt = b""

    def frame(self, payload, opcode=2, fin=True):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([(0x80 if fin else 0) | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return head + mask + body

    def send(self, *frames):
        self.sock.sendall(b"".join(frames))

    def _need(self, n, deadline):
        while len(self.buf) < n:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise helpers.ConnectionClosed("EOF")
            self.buf += chunk

    def read_frame(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        assert not b1 & 0x80, "server frames must not be masked"
        n, pos = b1 & 0x7F, 2
        if n == 126:
            self._need(4, deadline)
            (n,) = struct.unpack("!H", self.buf[2:4])
            pos = 4
        elif n == 127:
            self._need(10, deadline)
            (n,) = struct.unpack("!Q", self.buf[2:10])
            pos = 10
        self._need(pos + n, deadline)
        payload = self.buf[pos:pos + n]
        self.buf = self.buf[pos + n:]
        return b0 & 0x0F, payload

    def read_packet(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            p = parse_packet(self)
            if p is not None:
                return p
            op, payload = self.read_frame(max(deadline - time.monotonic(), 0.001))
            assert op in (0, 2), f"expected a binary frame, got opcode {op}"
            self.mqtt += payload

    def closed(self, timeout=5.0):
        """True once the server closes (a close frame or EOF)."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                op, _ = self.read_frame(max(deadline - time.monotonic(), 0.001))
                if op == 8:
                    return True
        except (helpers.ConnectionClosed, ConnectionResetError):
            return True
        except socket.timeout:
            return False
        return False

    def close(self):
        self.sock.close()


def parse_packet(ws):
    data = ws.mqtt
    if len(data) < 2:
        return None
    mult, length, i = 1, 0, 1
    while True:
        if i >= len(data):
            return None
        length += (data[i] & 0x7F) * mult
        mult *= 128
        i += 1
        if not data[i - 1] & 0x80:
            break
    if len(data) < i + length:
        return None
    ws.mqtt = data[i + length:]
    return Packet(data[0], data[i:i + length])


def test_paho_websocket_pubsub_with_tcp(broker, clients):
    b = ws_broker(broker)
    topic = unique("ws")
    ws_sub = PahoWs(b.ws_port)
    tcp_sub = clients.paho(b.port)
    try:
        ws_sub.subscribe(topic)
        tcp_sub.subscribe(topic, 1)
        ws_pub = PahoWs(b.ws_port)
        ws_pub.c.publish(topic, b"from-ws", 1).wait_for_publish(5)
        helpers.run_pub(b.port, topic, "from-tcp", qos=1)
        wait_for(lambda: len(ws_sub.messages) == 2, "2 messages on the WebSocket subscriber")
        assert sorted(p for _, p in ws_sub.messages) == [b"from-tcp", b"from-ws"]
        got = sorted(m.payload for m in tcp_sub.expect(2))
        assert got == [b"from-tcp", b"from-ws"]
        ws_pub.stop()
    finally:
        ws_sub.stop()


def test_paho_secure_websocket(broker, certs):
    b = ws_broker(broker, certs)
    topic = unique("wss")
    sub = PahoWs(b.wss_port, ca=certs / "ca.pem")
    try:
        sub.subscribe(topic)
        big = os.urandom(200_000)  # many TLS records and WebSocket frames
        pub = PahoWs(b.wss_port, ca=certs / "ca.pem")
        pub.c.publish(topic, b"small", 1).wait_for_publish(5)
        pub.c.publish(topic, big, 1).wait_for_publish(5)
        pub.stop()
        wait_for(lambda: len(sub.messages) == 2, "2 messages over WSS")
        assert sub.messages == [(topic, b"small"), (topic, big)]
    finally:
        sub.stop()


def test_upgrade_answers_the_mqtt_subprotocol(broker):
    b = ws_broker(broker)
    for offered, answered in (("mqtt", "mqtt"), ("mqttv3.1", "mqttv3.1"),
                              ("chat, mqtt", "mqtt")):
        ws = RawWs(b.ws_port, protocols=offered)
        assert ws.status == 101, offered
        assert ws.headers.get("sec-websocket-protocol") == answered
        ws.close()
    ws = RawWs(b.ws_port, protocols=None)  # lenient: no header at all is accepted
    assert ws.status == 101
    assert "sec-websocket-protocol" not in ws.headers
    ws.close()


def test_bad_upgrades_are_refused(broker):
    b = ws_broker(broker)
    assert RawWs(b.ws_port, path="/other").status == 404
    assert RawWs(b.ws_port, protocols="chat").status == 400
    s = socket.create_connection(("127.0.0.1", b.ws_port), timeout=5)
    s.sendall(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 400")
    s.close()
    s = socket.create_connection(("127.0.0.1", b.ws_port), timeout=5)
    s.sendall(connect_packet("not-http"))   # MQTT bytes where HTTP is expected
    s.settimeout(5)
    try:
        assert not s.recv(100).startswith(b"\x20")
    except ConnectionResetError:
        pass
    s.close()
    assert "WebSocket upgrade refused" in b.log_text()
    assert_pubsub_works(b.port)


def test_packet_split_across_frames_and_messages(broker):
    b = ws_broker(broker)
    ws = RawWs(b.ws_port)
    assert ws.status == 101
    c = connect_packet(unique("split"))
    # One message in three fragments, with a ping between fragments.
    ws.send(ws.frame(c[:3], opcode=2, fin=False), ws.frame(c[3:7], opcode=0, fin=False),
            ws.frame(b"hello", opcode=9), ws.frame(c[7:], opcode=0, fin=True))
    op, payload = ws.read_frame()
    assert (op, payload) == (10, b"hello")  # pong
    assert ws.read_packet().type == CONNACK
    # A SUBSCRIBE cut into three separate binary messages, one byte first.
    topic = unique("t")
    sub = subscribe_packet(1, [(topic, 1)])
    ws.send(ws.frame(sub[:1]), ws.frame(sub[1:5]), ws.frame(sub[5:]))
    ack = ws.read_packet()
    assert (ack.type, ack.pid) == (SUBACK, 1)
    ws.close()


def test_several_packets_in_one_frame(broker):
    b = ws_broker(broker)
    ws = RawWs(b.ws_port)
    topic = unique("packed")
    ws.send(ws.frame(connect_packet(unique("packed")) + subscribe_packet(1, [(topic, 1)]) +
                     pingreq_packet()))
    got = [ws.read_packet().type for _ in range(3)]
    assert got[0] == CONNACK and sorted(got[1:]) == sorted([SUBACK, PINGRESP])
    ws.send(ws.frame(publish_packet(topic, b"one", qos=1, pid=2) +
                     publish_packet(topic, b"two") + pingreq_packet()))
    got = [ws.read_packet() for _ in range(4)]
    assert sorted(p.type for p in got) == sorted([PUBLISH, PUBLISH, PUBACK, PINGRESP])
    assert [p.payload for p in got if p.type == PUBLISH] == [b"one", b"two"]
    ws.close()


def test_text_frame_closes_the_connection(broker):
    b = ws_broker(broker)
    ws = RawWs(b.ws_port)
    ws.send(ws.frame(connect_packet(unique("txt"))))
    assert ws.read_packet().type == CONNACK
    ws.send(ws.frame(pingreq_packet(), opcode=1))  # [MQTT-6.0.0-1] binary frames only
    assert ws.closed()
    b.assert_alive()


def test_raw_client_over_wss(broker, certs):
    b = ws_broker(broker, certs)
    ws = RawWs(b.wss_port, tls_ca=certs / "ca.pem")
    assert ws.status == 101
    c = connect_packet(unique("wss"))
    ws.send(ws.frame(c[:2], fin=False), ws.frame(c[2:], opcode=0))
    assert ws.read_packet().type == CONNACK
    ws.close()
