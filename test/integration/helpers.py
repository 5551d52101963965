# Integration test helpers: raw MQTT packets over a socket, paho clients, mosquitto_pub/sub.
#
# Three ways to talk to the broker under test:
# - RawClient: builds every packet by hand, for exact flags, packet ids, DUP checks, CONNACK
#   codes and malformed input. Reading is explicit (read_packet), so a test can also choose
#   not to read at all.
# - Client: a paho-mqtt client (3.1 or 3.1.1) running its network loop in a thread; received
#   messages go into a thread-safe queue read with expect()/expect_none().
# - run_pub()/MosquittoSub: the mosquitto_pub and mosquitto_sub command-line clients.
#
# Every wait has a timeout; nothing here sleeps to let the broker "settle".

import os
import queue
import select
import socket
import struct
import subprocess
import threading
import time
import uuid

import paho.mqtt.client as paho

HOST = "127.0.0.1"
MOSQUITTO_PUB = "/usr/bin/mosquitto_pub"
MOSQUITTO_SUB = "/usr/bin/mosquitto_sub"
STDBUF = "/usr/bin/stdbuf"

MQTTv31 = paho.MQTTv31
MQTTv311 = paho.MQTTv311

# Packet types (spec 3.1.1, 2.2.1).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14
TYPE_NAMES = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
    7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
    12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT",
}

# CONNACK return codes (3.1.1, 3.2.2.3).
CONNACK_ACCEPTED = 0x00
CONNACK_BAD_PROTOCOL_VERSION = 0x01
CONNACK_IDENTIFIER_REJECTED = 0x02

# Protocol levels for raw CONNECT.
LEVEL_V31 = 3
LEVEL_V311 = 4


def broker_kind():
    """"mosquitto" when TERN_BROKER=mosquitto, else "tern" (the binary in TERN_BROKER_NODE)."""
    return "mosquitto" if os.environ.get("TERN_BROKER") == "mosquitto" else "tern"


def is_mosquitto():
    return broker_kind() == "mosquitto"


# Payload prefix of route probes (see Client.probes).
PROBE = b"route-probe"


def unique(prefix="t"):
    """A topic or client id nobody else in this run uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------------------------------------
# Raw packet encoding
# ---------------------------------------------------------------------------------------------

def encode_remaining_length(n):
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        if n:
            byte |= 0x80
        out.append(byte)
        if not n:
            return bytes(out)


def mqtt_string(s):
    """Two-byte length prefix + bytes. `s` may be str (UTF-8 encoded) or raw bytes."""
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("!H", len(b)) + b


def packet(ptype, flags, body=b""):
    return bytes([(ptype << 4) | flags]) + encode_remaining_length(len(body)) + body


def connect_packet(client_id="", clean=True, keepalive=60, level=LEVEL_V311, proto_name=None,
                   will=None, username=None, password=None, reserved=False):
    """CONNECT. `will` is a dict with topic, payload, qos (default 0) and retain (default False)."""
    if proto_name is None:
        proto_name = "MQIsdp" if level == LEVEL_V31 else "MQTT"
    flags = 0
    if reserved:
        flags |= 0x01
    if clean:
        flags |= 0x02
    payload = mqtt_string(client_id)
    if will is not None:
        flags |= 0x04 | (will.get("qos", 0) << 3)
        if will.get("retain", False):
            flags |= 0x20
        payload += mqtt_string(will["topic"]) + mqtt_string(will.get("payload", b""))
    if username is not None:
        flags |= 0x80
        payload += mqtt_string(username)
    if password is not None:
        flags |= 0x40
        payload += mqtt_string(password)
    body = mqtt_string(proto_name) + bytes([level, flags]) + struct.pack("!H", keepalive)
    return packet(CONNECT, 0, body + payload)


def publish_packet(topic, payload=b"", qos=0, pid=None, retain=False, dup=False):
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    flags = (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = mqtt_string(topic)
    if qos > 0:
        body += struct.pack("!H", pid)
    return packet(PUBLISH, flags, body + payload)


def subscribe_packet(pid, filters):
    """`filters`: list of (filter, qos)."""
    body = struct.pack("!H", pid)
    for f, q in filters:
        body += mqtt_string(f) + bytes([q])
    return packet(SUBSCRIBE, 0x02, body)


def unsubscribe_packet(pid, filters):
    body = struct.pack("!H", pid)
    for f in filters:
        body += mqtt_string(f)
    return packet(UNSUBSCRIBE, 0x02, body)


def ack_packet(ptype, pid):
    flags = 0x02 if ptype == PUBREL else 0  # [MQTT-3.6.1-1] PUBREL has flags 0010
    return packet(ptype, flags, struct.pack("!H", pid))


def puback_packet(pid):
    return ack_packet(PUBACK, pid)


def pubrec_packet(pid):
    return ack_packet(PUBREC, pid)


def pubrel_packet(pid):
    return ack_packet(PUBREL, pid)


def pubcomp_packet(pid):
    return ack_packet(PUBCOMP, pid)


def pingreq_packet():
    return packet(PINGREQ, 0)


def disconnect_packet():
    return packet(DISCONNECT, 0)


# ---------------------------------------------------------------------------------------------
# Raw packet decoding
# ---------------------------------------------------------------------------------------------

class Packet:
    """One packet received from the broker, with the fields of its type parsed."""

    def __init__(self, first_byte, body):
        self.type = first_byte >> 4
        self.flags = first_byte & 0x0F
        self.body = body
        self.pid = None
        if self.type == CONNACK:
            self.session_present = body[0] & 0x01
            self.ack_flags = body[0]
            self.rc = body[1]
        elif self.type == PUBLISH:
            self.dup = bool(self.flags & 0x08)
            self.qos = (self.flags >> 1) & 0x03
            self.retain = bool(self.flags & 0x01)
            (tlen,) = struct.unpack("!H", body[:2])
            self.topic = body[2:2 + tlen].decode("utf-8")
            pos = 2 + tlen
            if self.qos > 0:
                (self.pid,) = struct.unpack("!H", body[pos:pos + 2])
                pos += 2
            self.payload = body[pos:]
        elif self.type in (PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK):
            (self.pid,) = struct.unpack("!H", body[:2])
        elif self.type == SUBACK:
            (self.pid,) = struct.unpack("!H", body[:2])
            self.codes = list(body[2:])

    @property
    def name(self):
        return TYPE_NAMES.get(self.type, f"type{self.type}")

    def __repr__(self):
        if self.type == PUBLISH:
            return (f"PUBLISH(topic={self.topic!r}, qos={self.qos}, dup={int(self.dup)}, "
                    f"retain={int(self.retain)}, pid={self.pid}, payload={self.payload[:40]!r}"
                    f"{'...' if len(self.payload) > 40 else ''})")
        if self.type == CONNACK:
            return f"CONNACK(sp={self.session_present}, rc={self.rc})"
        if self.type == SUBACK:
            return f"SUBACK(pid={self.pid}, codes={self.codes})"
        if self.pid is not None:
            return f"{self.name}(pid={self.pid}, flags={self.flags:#x})"
        return f"{self.name}(flags={self.flags:#x}, body={self.body!r})"


class ConnectionClosed(Exception):
    """The broker closed the connection (EOF or reset)."""


class RawClient:
    """A hand-driven MQTT connection. Nothing is read unless the test asks."""

    packet_class = Packet  # subclasses may read another packet model (mqtt5.RawClient5)

    def __init__(self, port, rcvbuf=None, timeout=5.0):
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Set before connect so the advertised window is small from the start.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.send_timeout = timeout
        self.sock.settimeout(timeout)
        self.sock.connect((HOST, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.closed_by_peer = False
        self._next_pid = 0
        # PUBLISH packets read while waiting for the ack of this client's own publish: a
        # delivery to its own subscription may come before or after that ack (either order is
        # correct), so they are kept here and returned by the next read.
        self.held = []

    # -- sending ------------------------------------------------------------------------------

    def send(self, data):
        self.sock.settimeout(self.send_timeout)
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise ConnectionClosed(str(e)) from e

    def next_pid(self):
        self._next_pid = self._next_pid % 65535 + 1
        return self._next_pid

    def connect(self, client_id=None, clean=True, keepalive=60, level=LEVEL_V311, **kw):
        """Sends CONNECT and returns the CONNACK packet (any return code)."""
        if client_id is None:
            client_id = unique("raw")
        self.client_id = client_id
        self.send(connect_packet(client_id, clean=clean, keepalive=keepalive, level=level, **kw))
        return self.expect(CONNACK)

    def connect_ok(self, client_id=None, clean=True, keepalive=60, level=LEVEL_V311, **kw):
        ack = self.connect(client_id, clean=clean, keepalive=keepalive, level=level, **kw)
        assert ack.rc == CONNACK_ACCEPTED, f"CONNACK refused: {ack}"
        return ack

    def subscribe(self, filters, pid=None):
        """`filters`: a filter string or a list of (filter, qos). Returns the SUBACK."""
        if isinstance(filters, str):
            filters = [(filters, 0)]
        pid = pid or self.next_pid()
        self.send(subscribe_packet(pid, filters))
        ack = self.expect(SUBACK)
        assert ack.pid == pid, f"SUBACK for {ack.pid}, expected {pid}"
        return ack

    def unsubscribe(self, filters, pid=None):
        if isinstance(filters, str):
            filters = [filters]
        pid = pid or self.next_pid()
        self.send(unsubscribe_packet(pid, filters))
        ack = self.expect(UNSUBACK)
        assert ack.pid == pid, f"UNSUBACK for {ack.pid}, expected {pid}"
        return ack

    def publish(self, topic, payload=b"", qos=0, pid=None, retain=False, dup=False):
        """Sends PUBLISH; returns the packet id used (None for QoS 0). Does not wait for acks."""
        if qos > 0 and pid is None:
            pid = self.next_pid()
        self.send(publish_packet(topic, payload, qos=qos, pid=pid, retain=retain, dup=dup))
        return pid

    def publish_acked(self, topic, payload=b"", qos=1, retain=False):
        """Publishes with QoS 1 or 2 and completes the handshake."""
        pid = self.publish(topic, payload, qos=qos, retain=retain)
        if qos == 1:
            self.expect_ack(PUBACK, pid)
        elif qos == 2:
            self.expect_ack(PUBREC, pid)
            self.send(pubrel_packet(pid))
            self.expect_ack(PUBCOMP, pid)
        return pid

    def expect_ack(self, ptype, pid, timeout=5.0):
        """The ack `ptype` for packet id `pid` of this client's own PUBLISH or PUBREL. PUBLISH
        packets that arrive first are held for the next read (see `held`); any other packet
        is an error."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                p = self._read_wire(max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                raise AssertionError(f"expected {TYPE_NAMES[ptype]} within {timeout}s, got nothing")
            except ConnectionClosed as e:
                raise AssertionError(f"expected {TYPE_NAMES[ptype]}, connection closed ({e})")
            if p.type == PUBLISH and ptype != PUBLISH:
                self.held.append(p)
                continue
            assert p.type == ptype, f"expected {TYPE_NAMES[ptype]}, got {p!r}"
            assert p.pid == pid, f"expected {TYPE_NAMES[ptype]} for packet id {pid}, got {p!r}"
            return p

    def ping(self, timeout=5.0):
        """PINGREQ; the next packet must be PINGRESP. Proves nothing else was pending."""
        self.send(pingreq_packet())
        return self.expect(PINGRESP, timeout=timeout)

    def disconnect(self, timeout=2.0):
        """DISCONNECT, then wait (up to `timeout`) for the broker to close the connection, so
        that what the test does next happens after the broker has ended this connection."""
        try:
            self.send(disconnect_packet())
            self.sock.shutdown(socket.SHUT_WR)
            self.wait_closed(timeout)
        except (ConnectionClosed, AssertionError, OSError):
            pass
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- receiving ----------------------------------------------------------------------------

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from broker")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout as e:
            raise TimeoutError("no data from broker") from e
        except (ConnectionResetError, BrokenPipeError) as e:
            self.closed_by_peer = True
            raise ConnectionClosed(str(e)) from e
        if not data:
            self.closed_by_peer = True
            raise ConnectionClosed("EOF")
        self.buf += data

    def _try_parse(self):
        if len(self.buf) < 2:
            return None
        mult, length, i = 1, 0, 1
        while True:
            if i >= len(self.buf):
                return None
            b = self.buf[i]
            length += (b & 0x7F) * mult
            mult *= 128
            i += 1
            if not b & 0x80:
                break
            if i > 4:
                raise AssertionError(f"broker sent a bad remaining length: {self.buf[:8]!r}")
        if len(self.buf) < i + length:
            return None
        p = self.packet_class(self.buf[0], self.buf[i:i + length])
        self.buf = self.buf[i + length:]
        return p

    def read_packet(self, timeout=5.0):
        """Next packet (a held PUBLISH first). Raises TimeoutError or ConnectionClosed."""
        if self.held:
            return self.held.pop(0)
        return self._read_wire(timeout)

    def _read_wire(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            p = self._try_parse()
            if p is not None:
                return p
            self._fill(deadline)

    def expect(self, ptype, timeout=5.0, pid=None):
        """Next packet must be of type `ptype` (and packet id `pid` if given)."""
        try:
            p = self.read_packet(timeout)
        except TimeoutError:
            raise AssertionError(f"expected {TYPE_NAMES[ptype]} within {timeout}s, got nothing")
        except ConnectionClosed as e:
            raise AssertionError(f"expected {TYPE_NAMES[ptype]}, connection closed ({e})")
        assert p.type == ptype, f"expected {TYPE_NAMES[ptype]}, got {p!r}"
        if pid is not None:
            assert p.pid == pid, f"expected {TYPE_NAMES[ptype]} for packet id {pid}, got {p!r}"
        return p

    def expect_publish(self, timeout=5.0):
        return self.expect(PUBLISH, timeout=timeout)

    def receive_publishes(self, n, timeout=5.0):
        """Reads until `n` PUBLISH packets have arrived, acking as a client does (PUBACK; PUBREC,
        then PUBCOMP for each PUBREL) and finishing open QoS 2 handshakes. Returns the PUBLISH
        packets in arrival order. Any other packet type is an error."""
        deadline = time.monotonic() + timeout
        got, awaiting_rel = [], set()
        while len(got) < n or awaiting_rel:
            try:
                p = self.read_packet(max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                raise AssertionError(f"expected {n} PUBLISH within {timeout}s, got {len(got)}: "
                                     f"{got[:10]}; awaiting PUBREL for {awaiting_rel}")
            except ConnectionClosed as e:
                raise AssertionError(f"connection closed after {len(got)} PUBLISH ({e})")
            if p.type == PUBLISH:
                got.append(p)
                if p.qos == 1:
                    self.send(puback_packet(p.pid))
                elif p.qos == 2:
                    self.send(pubrec_packet(p.pid))
                    awaiting_rel.add(p.pid)
            elif p.type == PUBREL:
                assert p.flags == 0x02, f"PUBREL with flags {p.flags:#x} [MQTT-3.6.1-1]"
                assert p.pid in awaiting_rel, f"PUBREL for unknown packet id: {p!r}"
                awaiting_rel.discard(p.pid)
                self.send(pubcomp_packet(p.pid))
            else:
                raise AssertionError(f"unexpected {p!r} while receiving messages")
        return got

    def expect_no_packet(self, timeout):
        """Nothing arrives for `timeout` seconds (the connection may stay open)."""
        try:
            p = self.read_packet(timeout)
        except TimeoutError:
            return
        except ConnectionClosed as e:
            raise AssertionError(f"connection closed unexpectedly ({e})")
        raise AssertionError(f"expected no packet, got {p!r}")

    def wait_closed(self, timeout=5.0):
        """Reads until the broker closes the connection; returns the packets seen before."""
        deadline = time.monotonic() + timeout
        seen, self.held = self.held, []
        while True:
            try:
                p = self._try_parse()
            except AssertionError:
                p = None
                self.buf = b""
            if p is not None:
                seen.append(p)
                continue
            try:
                self._fill(deadline)
            except ConnectionClosed:
                return seen
            except TimeoutError:
                raise AssertionError(
                    f"broker did not close the connection within {timeout}s; received {seen}")

    def is_open(self):
        """True if the broker has not closed the connection (does not consume packets)."""
        if self.closed_by_peer:
            return False
        r, _, _ = select.select([self.sock], [], [], 0)
        if not r:
            return True
        try:
            data = self.sock.recv(65536, socket.MSG_PEEK)
        except (ConnectionResetError, BrokenPipeError):
            return False
        return bool(data)


def raw_connect(port, client_id=None, clean=True, keepalive=60, level=LEVEL_V311, **kw):
    """A connected RawClient (CONNACK 0 checked)."""
    c = RawClient(port)
    c.connect_ok(client_id, clean=clean, keepalive=keepalive, level=level, **kw)
    return c


# ---------------------------------------------------------------------------------------------
# paho clients
# ---------------------------------------------------------------------------------------------

class Message:
    __slots__ = ("topic", "payload", "qos", "retain", "dup", "mid")

    def __init__(self, m):
        self.topic = m.topic
        self.payload = bytes(m.payload)
        self.qos = m.qos
        self.retain = bool(m.retain)
        self.dup = bool(m.dup)
        self.mid = m.mid

    def __repr__(self):
        p = self.payload if len(self.payload) <= 40 else self.payload[:40] + b"..."
        return f"Message({self.topic!r}, {p!r}, qos={self.qos}, retain={int(self.retain)})"


class Client:
    """A paho client with its loop in a background thread and received messages in a queue."""

    def __init__(self, port, client_id=None, clean_session=True, protocol=MQTTv311,
                 keepalive=60, will=None, username=None, password=None):
        self.port = port
        self.client_id = client_id if client_id is not None else unique("paho")
        self.keepalive = keepalive
        self.messages = queue.Queue()
        # Route probes (payload starting with PROBE) go to `probes`, never to `messages`: a
        # probe that arrives late must not turn up among the messages a test expects.
        self.probes = queue.Queue()
        self._cond = threading.Condition()
        self._connack = None
        self._subacks = {}
        self._unsubacks = set()
        self.disconnected = threading.Event()
        self.disconnect_rc = None
        self._c = paho.Client(client_id=self.client_id, clean_session=clean_session,
                              protocol=protocol, reconnect_on_failure=False)
        if will is not None:
            self._c.will_set(will["topic"], will.get("payload", b""), will.get("qos", 0),
                             will.get("retain", False))
        if username is not None:
            self._c.username_pw_set(username, password)
        self._c.on_connect = self._on_connect
        self._c.on_message = self._on_message
        self._c.on_subscribe = self._on_subscribe
        self._c.on_unsubscribe = self._on_unsubscribe
        self._c.on_disconnect = self._on_disconnect

    # paho callbacks (network thread)
    def _on_connect(self, client, userdata, flags, rc):
        with self._cond:
            self._connack = (rc, flags.get("session present", 0))
            self._cond.notify_all()

    def _on_message(self, client, userdata, msg):
        is_probe = msg.payload.startswith(PROBE)
        (self.probes if is_probe else self.messages).put(Message(msg))

    def _on_subscribe(self, client, userdata, mid, granted):
        with self._cond:
            self._subacks[mid] = list(granted)
            self._cond.notify_all()

    def _on_unsubscribe(self, client, userdata, mid):
        with self._cond:
            self._unsubacks.add(mid)
            self._cond.notify_all()

    def _on_disconnect(self, client, userdata, rc):
        self.disconnect_rc = rc
        self.disconnected.set()

    def _wait(self, pred, timeout, what):
        with self._cond:
            if not self._cond.wait_for(pred, timeout):
                raise AssertionError(f"{self.client_id}: no {what} within {timeout}s")

    def connect(self, timeout=5.0, expect_rc=0):
        """Connects and waits for CONNACK; returns the session present flag."""
        self._c.connect(HOST, self.port, self.keepalive)
        self._c.loop_start()
        self._wait(lambda: self._connack is not None, timeout, "CONNACK")
        rc, sp = self._connack
        assert rc == expect_rc, f"{self.client_id}: CONNACK rc {rc}, expected {expect_rc}"
        return sp

    @property
    def session_present(self):
        return self._connack[1]

    def subscribe(self, topic, qos=0, timeout=5.0):
        """`topic` may be a filter string or a list of (filter, qos). Returns granted QoS list."""
        if isinstance(topic, str):
            rc, mid = self._c.subscribe(topic, qos)
        else:
            rc, mid = self._c.subscribe(list(topic))
        assert rc == paho.MQTT_ERR_SUCCESS, f"subscribe failed: {rc}"
        self._wait(lambda: mid in self._subacks, timeout, "SUBACK")
        return self._subacks[mid]

    def unsubscribe(self, topic, timeout=5.0):
        rc, mid = self._c.unsubscribe(topic)
        assert rc == paho.MQTT_ERR_SUCCESS, f"unsubscribe failed: {rc}"
        self._wait(lambda: mid in self._unsubacks, timeout, "UNSUBACK")

    def publish(self, topic, payload=b"", qos=0, retain=False, wait=True, timeout=10.0):
        """Publishes; for QoS 1/2 waits for the handshake to finish unless wait=False."""
        info = self._c.publish(topic, payload, qos, retain)
        assert info.rc == paho.MQTT_ERR_SUCCESS, f"publish failed: {info.rc}"
        if wait and qos > 0:
            info.wait_for_publish(timeout)
            assert info.is_published(), \
                f"{self.client_id}: QoS {qos} publish not acked in {timeout}s"
        return info

    def expect(self, n=1, timeout=5.0):
        """Waits for the next `n` messages and returns them (a list)."""
        deadline = time.monotonic() + timeout
        got = []
        while len(got) < n:
            remaining = deadline - time.monotonic()
            try:
                got.append(self.messages.get(timeout=max(remaining, 0.001)))
            except queue.Empty:
                raise AssertionError(
                    f"{self.client_id}: expected {n} message(s) within {timeout}s, got "
                    f"{len(got)}: {got[:10]}")
        return got

    def collect(self, n, timeout=1.0):
        """Up to `n` messages, waiting at most `timeout`; unlike expect(), a timeout loses
        nothing: whatever arrived is returned."""
        deadline = time.monotonic() + timeout
        got = []
        while len(got) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                got.append(self.messages.get(timeout=remaining))
            except queue.Empty:
                break
        return got

    def expect_probe(self, payload, timeout):
        """True once a probe with `payload` arrives within `timeout` (other probes skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                if self.probes.get(timeout=remaining).payload == payload:
                    return True
            except queue.Empty:
                return False

    def take_probes(self):
        """The probes received so far."""
        out = []
        while True:
            try:
                out.append(self.probes.get_nowait())
            except queue.Empty:
                return out

    def expect_one(self, timeout=5.0):
        return self.expect(1, timeout)[0]

    def expect_until(self, topic, timeout=5.0, max_messages=100000):
        """Messages up to and including the first one on `topic` (a sentinel)."""
        deadline = time.monotonic() + timeout
        got = []
        while len(got) < max_messages:
            remaining = deadline - time.monotonic()
            try:
                m = self.messages.get(timeout=max(remaining, 0.001))
            except queue.Empty:
                raise AssertionError(f"{self.client_id}: no message on {topic!r} within "
                                     f"{timeout}s; got {got[:10]}")
            got.append(m)
            if m.topic == topic:
                return got
        raise AssertionError(f"{self.client_id}: too many messages before {topic!r}")

    def expect_none(self, timeout=0.5):
        try:
            m = self.messages.get(timeout=timeout)
        except queue.Empty:
            return
        raise AssertionError(f"{self.client_id}: expected no message, got {m!r}")

    def drain(self):
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def disconnect(self):
        """Clean DISCONNECT, then stops the loop."""
        self._c.disconnect()
        self.disconnected.wait(5)
        self._c.loop_stop()

    def stop(self):
        """Teardown: disconnect if still connected; never raises."""
        try:
            if not self.disconnected.is_set():
                self._c.disconnect()
                self.disconnected.wait(2)
            self._c.loop_stop()
        except Exception:
            pass


# ---------------------------------------------------------------------------------------------
# mosquitto_pub / mosquitto_sub
# ---------------------------------------------------------------------------------------------

def run_pub(port, topic, message=None, qos=0, retain=False, extra=(), timeout=10):
    """mosquitto_pub once; `message=None` sends an empty (null) message."""
    args = [MOSQUITTO_PUB, "-h", HOST, "-p", str(port), "-V", "mqttv311", "-t", topic,
            "-q", str(qos)]
    args += ["-n"] if message is None else ["-m", message]
    if retain:
        args.append("-r")
    args += list(extra)
    r = subprocess.run(args, capture_output=True, timeout=timeout)
    assert r.returncode == 0, f"mosquitto_pub failed ({r.returncode}): {r.stderr!r}"


class MosquittoSub:
    """mosquitto_sub with -d -v: its debug lines tell when SUBACK arrived, so no guessing."""

    def __init__(self, port, topics, qos=0, count=None, wait=None, extra=(), client_id=None):
        if isinstance(topics, str):
            topics = [topics]
        # stdbuf: line-buffered stdout, so debug lines arrive as they happen, not at exit.
        args = [STDBUF, "-oL", MOSQUITTO_SUB, "-h", HOST, "-p", str(port), "-V", "mqttv311",
                "-d", "-v", "-q", str(qos)]
        for t in topics:
            args += ["-t", t]
        if count is not None:
            args += ["-C", str(count)]
        if wait is not None:
            args += ["-W", str(wait)]
        if client_id is not None:
            args += ["-i", client_id]
        args += list(extra)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self.lines = queue.Queue()
        self.debug = []
        self.stderr = []
        self._subscribed = threading.Event()
        self._readers = [threading.Thread(target=self._read, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for t in self._readers:
            t.start()

    def _read_stderr(self):
        for raw in self.proc.stderr:
            self.stderr.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.startswith("Client ") or line.startswith("Subscribed"):
                self.debug.append(line)
                if "received SUBACK" in line:
                    self._subscribed.set()
            else:
                self.lines.put(line)

    def wait_subscribed(self, timeout=5.0):
        assert self._subscribed.wait(timeout), \
            f"mosquitto_sub got no SUBACK within {timeout}s: {self.debug}"
        return self

    def expect_lines(self, n, timeout=5.0):
        """Next n "topic payload" lines."""
        deadline = time.monotonic() + timeout
        got = []
        while len(got) < n:
            try:
                got.append(self.lines.get(timeout=max(deadline - time.monotonic(), 0.001)))
            except queue.Empty:
                raise AssertionError(f"mosquitto_sub: expected {n} lines, got {got}; "
                                     f"debug: {self.debug[-5:]}; stderr: {self.stderr}")
        return got

    def wait_exit(self, timeout=10.0):
        """Exit code, once the process has exited and all its output has been read."""
        rc = self.proc.wait(timeout)
        for t in self._readers:
            t.join(timeout)
        return rc

    def kill9(self):
        os.kill(self.pid, 9)
        self.proc.wait(5)

    def stop(self):
        terminate(self.proc)


def terminate(proc, timeout=5):
    """Stops a process this test started: SIGTERM, then SIGKILL after `timeout` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def marker_after(sub, pub, topic, since=None):
    """Publishes a QoS 1 marker on `topic` (which `sub` subscribes to) and returns what `sub`
    received before it (from message number `since` on, by default from now): evidence that
    nothing else was on its way. `sub` is an interop client (.messages, .wait_for)."""
    before = len(sub.messages) if since is None else since
    token = unique("marker").encode()
    pub.publish(topic, token, qos=1)
    sub.wait_for(lambda: any(m.payload == token for m in sub.messages[before:]), what="marker")
    got = sub.messages[before:]
    return got[:[m.payload for m in got].index(token)]


# ---------------------------------------------------------------------------------------------
# Checks shared by many tests
# ---------------------------------------------------------------------------------------------

def assert_pubsub_works(port, timeout=5.0):
    """A fresh publisher/subscriber pair exchanges a QoS 1 message."""
    topic = unique("health")
    sub = Client(port)
    pub = Client(port)
    try:
        sub.connect()
        sub.subscribe(topic, 1)
        pub.connect()
        pub.publish(topic, b"ping", qos=1)
        m = sub.expect_one(timeout)
        assert (m.topic, m.payload) == (topic, b"ping")
    finally:
        pub.stop()
        sub.stop()
