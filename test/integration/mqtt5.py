# MQTT 5 test helpers: raw v5 packets with properties, and paho clients speaking MQTT 5.
#
# RawClient5 builds every v5 packet by hand (exact properties, subscription options, AUTH,
# DISCONNECT reason codes) and parses the broker's packets with their properties, so tests
# can assert on each property the broker sends. Client5 wraps paho-mqtt 1.6 with
# protocol=MQTTv5.

import queue
import struct
import threading
import time

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

import helpers
from helpers import (CONNACK, DISCONNECT, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, SUBACK,
                     UNSUBACK, mqtt_string, packet, unique)

AUTH = 15
LEVEL_V5 = 5

# Property id -> (name, wire type). Names as in the spec, lower case with underscores.
PROPERTIES = {
    0x01: ("payload_format_indicator", "byte"),
    0x02: ("message_expiry_interval", "u32"),
    0x03: ("content_type", "str"),
    0x08: ("response_topic", "str"),
    0x09: ("correlation_data", "bin"),
    0x0B: ("subscription_identifier", "varint"),
    0x11: ("session_expiry_interval", "u32"),
    0x12: ("assigned_client_identifier", "str"),
    0x13: ("server_keep_alive", "u16"),
    0x15: ("authentication_method", "str"),
    0x16: ("authentication_data", "bin"),
    0x17: ("request_problem_information", "byte"),
    0x18: ("will_delay_interval", "u32"),
    0x19: ("request_response_information", "byte"),
    0x1A: ("response_information", "str"),
    0x1C: ("server_reference", "str"),
    0x1F: ("reason_string", "str"),
    0x21: ("receive_maximum", "u16"),
    0x22: ("topic_alias_maximum", "u16"),
    0x23: ("topic_alias", "u16"),
    0x24: ("maximum_qos", "byte"),
    0x25: ("retain_available", "byte"),
    0x26: ("user_property", "pair"),
    0x27: ("maximum_packet_size", "u32"),
    0x28: ("wildcard_subscription_available", "byte"),
    0x29: ("subscription_identifier_available", "byte"),
    0x2A: ("shared_subscription_available", "byte"),
}
BY_NAME = {name: (pid, kind) for pid, (name, kind) in PROPERTIES.items()}


def varint(n):
    return helpers.encode_remaining_length(n)


def encode_props(props):
    """`props`: list of (name, value); a pair value is a (key, value) tuple."""
    out = b""
    for name, value in props or []:
        pid, kind = BY_NAME[name]
        out += varint(pid)
        if kind == "byte":
            out += bytes([value])
        elif kind == "u16":
            out += struct.pack("!H", value)
        elif kind == "u32":
            out += struct.pack("!I", value)
        elif kind == "varint":
            out += varint(value)
        elif kind in ("str", "bin"):
            out += mqtt_string(value)
        elif kind == "pair":
            out += mqtt_string(value[0]) + mqtt_string(value[1])
    return varint(len(out)) + out


def read_varint(buf, pos):
    mult, value = 1, 0
    while True:
        b = buf[pos]
        pos += 1
        value += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            return value, pos


def decode_props(buf, pos):
    """Returns (props, new_pos); props is a list of (name, value) in wire order."""
    length, pos = read_varint(buf, pos)
    end = pos + length
    out = []
    while pos < end:
        pid, pos = read_varint(buf, pos)
        name, kind = PROPERTIES[pid]
        if kind == "byte":
            value, pos = buf[pos], pos + 1
        elif kind == "u16":
            (value,), pos = struct.unpack("!H", buf[pos:pos + 2]), pos + 2
        elif kind == "u32":
            (value,), pos = struct.unpack("!I", buf[pos:pos + 4]), pos + 4
        elif kind == "varint":
            value, pos = read_varint(buf, pos)
        elif kind in ("str", "bin"):
            (n,) = struct.unpack("!H", buf[pos:pos + 2])
            value = bytes(buf[pos + 2:pos + 2 + n])
            if kind == "str":
                value = value.decode("utf-8")
            pos += 2 + n
        else:
            (n,) = struct.unpack("!H", buf[pos:pos + 2])
            k = bytes(buf[pos + 2:pos + 2 + n]).decode("utf-8")
            pos += 2 + n
            (n,) = struct.unpack("!H", buf[pos:pos + 2])
            v = bytes(buf[pos + 2:pos + 2 + n]).decode("utf-8")
            pos += 2 + n
            value = (k, v)
        out.append((name, value))
    return out, end


class Packet5:
    """One packet from the broker, parsed as MQTT 5."""

    def __init__(self, first_byte, body):
        self.type = first_byte >> 4
        self.flags = first_byte & 0x0F
        self.body = body
        self.pid = None
        self.rc = 0
        self.props = []
        if self.type == CONNACK:
            self.session_present = body[0] & 0x01
            self.rc = body[1]
            self.props, _ = decode_props(body, 2)
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
            self.props, pos = decode_props(body, pos)
            self.payload = bytes(body[pos:])
        elif self.type in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            (self.pid,) = struct.unpack("!H", body[:2])
            if len(body) > 2:
                self.rc = body[2]
            if len(body) > 3:
                self.props, _ = decode_props(body, 3)
        elif self.type in (SUBACK, UNSUBACK):
            (self.pid,) = struct.unpack("!H", body[:2])
            self.props, pos = decode_props(body, 2)
            self.codes = list(body[pos:])
        elif self.type in (DISCONNECT, AUTH):
            if body:
                self.rc = body[0]
            if len(body) > 1:
                self.props, _ = decode_props(body, 1)

    def prop(self, name, default=None):
        for n, v in self.props:
            if n == name:
                return v
        return default

    def all(self, name):
        return [v for n, v in self.props if n == name]

    @property
    def name(self):
        return helpers.TYPE_NAMES.get(self.type, "AUTH" if self.type == AUTH else str(self.type))

    def __repr__(self):
        if self.type == PUBLISH:
            return (f"PUBLISH(topic={self.topic!r}, qos={self.qos}, retain={int(self.retain)}, "
                    f"pid={self.pid}, payload={self.payload[:40]!r}, props={self.props})")
        return f"{self.name}(pid={self.pid}, rc={self.rc:#x}, props={self.props})"


def connect5(client_id="", clean=True, keepalive=60, props=None, will=None, username=None,
             password=None):
    """v5 CONNECT. `will`: dict with topic, payload, qos, retain, props."""
    flags = 0x02 if clean else 0
    payload = mqtt_string(client_id)
    if will is not None:
        flags |= 0x04 | (will.get("qos", 0) << 3)
        if will.get("retain", False):
            flags |= 0x20
        payload += encode_props(will.get("props")) + mqtt_string(will["topic"]) + \
            mqtt_string(will.get("payload", b""))
    if username is not None:
        flags |= 0x80
        payload += mqtt_string(username)
    if password is not None:
        flags |= 0x40
        payload += mqtt_string(password)
    body = mqtt_string("MQTT") + bytes([LEVEL_V5, flags]) + struct.pack("!H", keepalive)
    return packet(helpers.CONNECT, 0, body + encode_props(props) + payload)


def publish5(topic, payload=b"", qos=0, pid=None, retain=False, dup=False, props=None):
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    flags = (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = mqtt_string(topic)
    if qos > 0:
        body += struct.pack("!H", pid)
    return packet(PUBLISH, flags, body + encode_props(props) + payload)


def subscribe5(pid, subs, props=None):
    """`subs`: list of (filter, qos) or (filter, qos, dict(no_local, rap, rh))."""
    body = struct.pack("!H", pid) + encode_props(props)
    for s in subs:
        f, q = s[0], s[1]
        o = s[2] if len(s) > 2 else {}
        opts = q | (0x04 if o.get("no_local") else 0) | (0x08 if o.get("rap") else 0) | \
            (o.get("rh", 0) << 4)
        body += mqtt_string(f) + bytes([opts])
    return packet(helpers.SUBSCRIBE, 0x02, body)


def ack5(ptype, pid, rc=0, props=None):
    flags = 0x02 if ptype == PUBREL else 0
    body = struct.pack("!H", pid)
    if rc or props:
        body += bytes([rc]) + encode_props(props)
    return packet(ptype, flags, body)


def disconnect5(rc=0, props=None):
    return packet(DISCONNECT, 0, bytes([rc]) + encode_props(props))


def unsubscribe5(pid, filters, props=None):
    body = struct.pack("!H", pid) + encode_props(props)
    for f in filters:
        body += helpers.mqtt_string(f)
    return helpers.packet(helpers.UNSUBSCRIBE, 0x02, body)


def wire_size(p):
    """Size on the wire of a parsed packet: fixed header + remaining length."""
    return 1 + len(varint(len(p.body))) + len(p.body)


def auth5(rc, props=None):
    return packet(AUTH, 0, bytes([rc]) + encode_props(props))


class RawClient5(helpers.RawClient):
    """A hand-driven MQTT 5 connection (see helpers.RawClient)."""

    packet_class = Packet5  # the framing is RawClient's; packets are read as MQTT 5

    def expect(self, ptype, timeout=5.0, pid=None):
        try:
            p = self.read_packet(timeout)
        except TimeoutError:
            raise AssertionError(f"expected packet type {ptype} within {timeout}s, got nothing")
        except helpers.ConnectionClosed as e:
            raise AssertionError(f"expected packet type {ptype}, connection closed ({e})")
        assert p.type == ptype, f"expected packet type {ptype}, got {p!r}"
        if pid is not None:
            assert p.pid == pid, f"expected packet id {pid}, got {p!r}"
        return p

    def connect(self, client_id=None, clean=True, keepalive=60, props=None, **kw):
        if client_id is None:
            client_id = unique("raw5")
        self.client_id = client_id
        self.send(connect5(client_id, clean=clean, keepalive=keepalive, props=props, **kw))
        return self.expect(CONNACK)

    def connect_ok(self, client_id=None, clean=True, keepalive=60, props=None, **kw):
        ack = self.connect(client_id, clean=clean, keepalive=keepalive, props=props, **kw)
        assert ack.rc == 0, f"CONNACK refused: {ack}"
        return ack

    def subscribe(self, subs, pid=None, props=None):
        """`subs`: a filter, or a list as for subscribe5. Returns the SUBACK."""
        if isinstance(subs, str):
            subs = [(subs, 0)]
        pid = pid or self.next_pid()
        self.send(subscribe5(pid, subs, props))
        ack = self.expect(SUBACK)
        assert ack.pid == pid
        return ack

    def publish(self, topic, payload=b"", qos=0, pid=None, retain=False, dup=False, props=None):
        if qos > 0 and pid is None:
            pid = self.next_pid()
        self.send(publish5(topic, payload, qos=qos, pid=pid, retain=retain, dup=dup, props=props))
        return pid

    def publish_acked(self, topic, payload=b"", qos=1, retain=False, props=None):
        """Publishes with QoS 1/2, completes the handshake, returns the PUBACK/PUBREC."""
        pid = self.publish(topic, payload, qos=qos, retain=retain, props=props)
        if qos == 1:
            return self.expect_ack(PUBACK, pid)
        rec = self.expect_ack(PUBREC, pid)
        self.send(ack5(PUBREL, pid))
        self.expect_ack(PUBCOMP, pid)
        return rec

    def disconnect(self, timeout=2.0, rc=0, props=None):
        try:
            self.send(disconnect5(rc, props))
            self.wait_closed(timeout)
        except (helpers.ConnectionClosed, AssertionError, OSError):
            pass
        self.close()

    def receive_publishes(self, n, timeout=5.0):
        """As helpers.RawClient.receive_publishes, acking with v5 packets."""
        return helpers.RawClient.receive_publishes(self, n, timeout)

    def expect_disconnect(self, rc, timeout=5.0):
        """The broker sends DISCONNECT with reason `rc` and closes the connection."""
        p = self.expect(DISCONNECT, timeout=timeout)
        assert p.rc == rc, f"DISCONNECT reason {p.rc:#x}, expected {rc:#x}: {p!r}"
        self.wait_closed(timeout)
        return p


def raw5(port, client_id=None, **kw):
    c = RawClient5(port)
    c.connect_ok(client_id, **kw)
    return c


class Client5:
    """A paho MQTT 5 client with its loop in a thread; messages (with properties) in a queue."""

    def __init__(self, port, client_id=None, clean_start=True, keepalive=60, will=None,
                 connect_props=None):
        self.port = port
        self.client_id = client_id if client_id is not None else unique("paho5")
        self.keepalive = keepalive
        self.clean_start = clean_start
        self.connect_props = connect_props
        self.messages = queue.Queue()
        self._cond = threading.Condition()
        self.connack = None
        self._subacks = {}
        self.disconnected = threading.Event()
        self.disconnect_rc = None
        self._c = paho.Client(client_id=self.client_id, protocol=paho.MQTTv5,
                              reconnect_on_failure=False)
        if will is not None:
            self._c.will_set(will["topic"], will.get("payload", b""), will.get("qos", 0),
                             will.get("retain", False), properties=will.get("props"))
        self._c.on_connect = self._on_connect
        self._c.on_message = self._on_message
        self._c.on_subscribe = self._on_subscribe
        self._c.on_disconnect = self._on_disconnect

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        with self._cond:
            self.connack = (rc.value, flags.get("session present", 0), properties)
            self._cond.notify_all()

    def _on_message(self, client, userdata, msg):
        self.messages.put(msg)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None):
        with self._cond:
            self._subacks[mid] = [rc.value for rc in reason_codes]
            self._cond.notify_all()

    def _on_disconnect(self, client, userdata, rc, properties=None):
        self.disconnect_rc = rc
        self.disconnected.set()

    def _wait(self, pred, timeout, what):
        with self._cond:
            if not self._cond.wait_for(pred, timeout):
                raise AssertionError(f"{self.client_id}: no {what} within {timeout}s")

    def connect(self, timeout=5.0, expect_rc=0):
        self._c.connect(helpers.HOST, self.port, self.keepalive, clean_start=self.clean_start,
                        properties=self.connect_props)
        self._c.loop_start()
        self._wait(lambda: self.connack is not None, timeout, "CONNACK")
        assert self.connack[0] == expect_rc, f"CONNACK {self.connack}"
        return self.connack[1]

    def subscribe(self, topic, qos=0, no_local=False, rap=False, rh=0, sub_id=None,
                  timeout=5.0):
        props = None
        if sub_id is not None:
            props = Properties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = sub_id
        opts = SubscribeOptions(qos=qos, noLocal=no_local, retainAsPublished=rap,
                                retainHandling=rh)
        rc, mid = self._c.subscribe(topic, options=opts, properties=props)
        assert rc == paho.MQTT_ERR_SUCCESS
        self._wait(lambda: mid in self._subacks, timeout, "SUBACK")
        return self._subacks[mid]

    def publish(self, topic, payload=b"", qos=0, retain=False, props=None, wait=True,
                timeout=10.0):
        info = self._c.publish(topic, payload, qos, retain, properties=props)
        assert info.rc == paho.MQTT_ERR_SUCCESS
        if wait and qos > 0:
            info.wait_for_publish(timeout)
            assert info.is_published()
        return info

    def expect(self, n=1, timeout=5.0):
        deadline = time.monotonic() + timeout
        got = []
        while len(got) < n:
            try:
                got.append(self.messages.get(timeout=max(deadline - time.monotonic(), 0.001)))
            except queue.Empty:
                raise AssertionError(f"{self.client_id}: expected {n} message(s), got {got}")
        return got

    def expect_one(self, timeout=5.0):
        return self.expect(1, timeout)[0]

    def expect_none(self, timeout=0.5):
        try:
            m = self.messages.get(timeout=timeout)
        except queue.Empty:
            return
        raise AssertionError(f"{self.client_id}: expected no message, got {m.topic} {m.payload}")

    def disconnect(self, rc=0, props=None):
        self._c.disconnect(reasoncode=None, properties=props)
        self.disconnected.wait(5)
        self._c.loop_stop()

    def stop(self):
        try:
            if not self.disconnected.is_set():
                self._c.disconnect()
                self.disconnected.wait(2)
            self._c.loop_stop()
        except Exception:
            pass


def publish_props(**kw):
    """paho PUBLISH Properties from keyword names (MessageExpiryInterval=..., ...)."""
    p = Properties(PacketTypes.PUBLISH)
    for k, v in kw.items():
        setattr(p, k, v)
    return p
