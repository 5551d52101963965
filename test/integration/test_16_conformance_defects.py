# Regression tests for conformance defects found by hand with third-party clients and suites
# (see docs/conformance.md): each test is the reproduction, against the real binary.

import socket
import struct
import threading
import time

import pytest

import helpers
from helpers import (DISCONNECT, SUBACK, RawClient, connect_packet, mqtt_string, packet,
                     publish_packet, unique)
from mqtt5 import RawClient5, connect5, encode_props, publish5, raw5

tern_only = pytest.mark.skipif(helpers.is_mosquitto(), reason="checks Tern's own choices")


# -- Session Expiry Interval changed by DISCONNECT [MQTT-3.14.2-2] ------------------------------

def test_disconnect_raises_the_session_expiry(broker):
    b = broker()
    cid = unique("sei")
    c = RawClient5(b.port)
    c.connect_ok(cid, clean=True, props=[("session_expiry_interval", 1)])
    c.disconnect(props=[("session_expiry_interval", 5)])
    time.sleep(3)  # past the CONNECT's 1 s, inside the DISCONNECT's 5 s
    again = RawClient5(b.port)
    ack = again.connect(cid, clean=False, props=[("session_expiry_interval", 5)])
    assert ack.rc == 0 and ack.session_present == 1, ack
    again.disconnect()


def test_disconnect_lowers_the_session_expiry_to_zero(broker):
    b = broker()
    cid = unique("sei")
    c = RawClient5(b.port)
    c.connect_ok(cid, clean=True, props=[("session_expiry_interval", 300)])
    c.disconnect(props=[("session_expiry_interval", 0)])
    again = RawClient5(b.port)
    ack = again.connect(cid, clean=False, props=[("session_expiry_interval", 300)])
    assert ack.rc == 0 and ack.session_present == 0, ack
    again.disconnect()


def test_session_expiry_from_disconnect_keeps_queued_messages(broker):
    """The session kept by the DISCONNECT's longer expiry still queues for its client."""
    b = broker()
    cid, topic = unique("sei"), unique("sei/t")
    c = RawClient5(b.port)
    c.connect_ok(cid, props=[("session_expiry_interval", 1)])
    c.subscribe([(topic, 1)])
    c.disconnect(props=[("session_expiry_interval", 10)])
    pub = raw5(b.port)
    pub.publish_acked(topic, b"kept", qos=1)
    time.sleep(2)  # the CONNECT's 1 s is over
    again = RawClient5(b.port)
    ack = again.connect(cid, clean=False, props=[("session_expiry_interval", 10)])
    assert ack.session_present == 1, ack
    got = again.receive_publishes(1)
    assert got[0].payload == b"kept"


def test_will_delay_counts_against_the_expiry_set_by_disconnect(broker):
    """Will Delay 3 s, session expiry 1 s at CONNECT, 10 s at DISCONNECT (0x04, with will):
    the will waits for its delay, not for the CONNECT's expiry [MQTT-3.1.3-9]."""
    b = broker()
    wt = unique("will")
    watcher = raw5(b.port)
    watcher.subscribe([(wt, 1)])
    c = RawClient5(b.port)
    will = {"topic": wt, "payload": b"gone", "qos": 1, "props": [("will_delay_interval", 3)]}
    c.connect_ok(unique("wd"), props=[("session_expiry_interval", 1)], will=will)
    c.disconnect(rc=0x04, props=[("session_expiry_interval", 10)])
    watcher.expect_no_packet(2.0)  # the CONNECT's 1 s expiry would have sent it by now
    got = watcher.receive_publishes(1, timeout=5)
    assert got[0].payload == b"gone"


# -- Subscription identifiers of overlapping subscriptions [MQTT-3.3.4-4] [MQTT-3.3.4-5] --------

def sub_id_props(n):
    return [("subscription_identifier", n)]


def test_overlapping_subscriptions_carry_every_identifier(broker):
    b = broker()
    base = unique("ids")
    c = raw5(b.port)
    c.subscribe([(base, 1)], props=sub_id_props(2))
    c.subscribe([(base + "/#", 1)], props=sub_id_props(3))
    pub = raw5(b.port)
    pub.publish_acked(base, b"x", qos=1)
    got = c.receive_publishes(1)
    assert sorted(got[0].all("subscription_identifier")) == [2, 3], got[0]
    c.expect_no_packet(0.5)  # one copy [MQTT-3.3.4-2]


def test_overlapping_subscriptions_one_without_identifier(broker):
    b = broker()
    base = unique("ids")
    c = raw5(b.port)
    c.subscribe([(base, 0)])
    c.subscribe([(base + "/#", 0)], props=sub_id_props(7))
    pub = raw5(b.port)
    pub.publish_acked(base, b"x", qos=1)
    got = c.receive_publishes(1)
    assert got[0].all("subscription_identifier") == [7], got[0]


def test_one_subscribe_two_filters_same_identifier_carries_it_twice(broker):
    """Two matching subscriptions with the same identifier: [MQTT-3.3.4-4] wants the ids of
    all matching subscriptions, and 3.3.4 says the PUBLISH then "will carry multiple identical
    Subscription Identifiers". One copy, the id twice."""
    b = broker()
    base = unique("ids")
    c = raw5(b.port)
    c.subscribe([(base, 1), (base + "/#", 1)], props=sub_id_props(2333))
    pub = raw5(b.port)
    pub.publish_acked(base, b"x", qos=1)
    got = c.receive_publishes(1)
    assert got[0].all("subscription_identifier") == [2333, 2333], got[0]
    c.expect_no_packet(0.5)


def test_retained_message_on_overlapping_subscribe_has_that_subscription_id(broker):
    """A retained message sent because of a SUBSCRIBE carries that subscription's id."""
    b = broker()
    base = unique("ids")
    pub = raw5(b.port)
    pub.publish_acked(base, b"r", qos=1, retain=True)
    c = raw5(b.port)
    c.subscribe([(base, 1)], props=sub_id_props(4))
    first = c.receive_publishes(1)
    assert first[0].all("subscription_identifier") == [4]
    c.subscribe([(base + "/#", 1)], props=sub_id_props(5))
    second = c.receive_publishes(1)
    assert second[0].all("subscription_identifier") == [5]


# -- Server-initiated close: the last packet is read, not reset [MQTT-4.13.1-1] ---------------

class Flood:
    """Writes `chunk` over and over on a thread, as a client that is still sending when the
    broker closes; `error` is the write error it met before it was told to stop (a reset)."""

    def __init__(self, sock, chunk):
        self.sock, self.chunk = sock, chunk
        self.stop = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                self.sock.send(self.chunk)
            except (BlockingIOError, socket.timeout):
                time.sleep(0.001)
            except OSError as e:
                if not self.stop.is_set():
                    self.error = e
                return

    def finish(self):
        self.stop.set()
        self.thread.join(5)


def read_until_closed(sock, timeout=5.0, poll=False):
    """Bytes the broker sent before it closed the connection, and how it closed: "eof" or
    the error (ECONNRESET when unread input made the kernel reset the connection). With
    `poll` the socket keeps its short timeout (a Flood thread writes on it)."""
    if not poll:
        sock.settimeout(timeout)
    got = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            if poll:
                continue
            return got, "timeout"
        except OSError as e:
            return got, type(e).__name__
        if not data:
            return got, "eof"
        got += data
    return got, "timeout"


def split_packets(data):
    """The MQTT 5 packets in `data`, which must hold whole packets only."""
    c = RawClient5.__new__(RawClient5)
    c.buf = data
    out = []
    while c.buf:
        p = c._try_parse()
        assert p is not None, f"incomplete packet at the end of {data!r}"
        out.append(p)
    return out


@tern_only
def test_disconnect_0x93_reaches_a_client_that_keeps_sending(broker):
    b = broker(session={"max_awaiting_rel": 2})
    c = RawClient5(b.port)
    c.connect_ok()
    # Three unreleased QoS 2 messages (one too many), then QoS 0 publishes without pause.
    burst = b"".join(publish5(unique("q2"), b"x", qos=2, pid=i) for i in (1, 2, 3))
    c.sock.sendall(burst)
    c.sock.settimeout(0.05)
    f = Flood(c.sock, publish5("fill", b"f" * 4000) * 16)
    try:
        data, how = read_until_closed(c.sock, poll=True)
    finally:
        f.finish()
    packets = split_packets(data)
    assert how == "eof", f"connection ended by {how} after {packets}"
    assert f.error is None, f"the client's writes were reset ({f.error!r}) after {packets}"
    disc = [p for p in packets if p.type == DISCONNECT]
    assert disc and disc[0].rc == 0x93, packets


@tern_only
@pytest.mark.parametrize("level", [4, 5])
def test_connack_refusal_reaches_a_client_that_keeps_sending(broker, level):
    b = broker(auth={"allow_anonymous": False})
    s = socket.create_connection((helpers.HOST, b.port), timeout=5)
    if level == 5:
        s.sendall(connect5(unique("refused")))
        filler = publish5("fill", b"f" * 4000) * 16
    else:
        s.sendall(connect_packet(unique("refused")))
        filler = publish_packet("fill", b"f" * 4000) * 16
    s.settimeout(0.05)
    f = Flood(s, filler)
    try:
        data, how = read_until_closed(s, poll=True)
    finally:
        f.finish()
        s.close()
    assert how == "eof", f"connection ended by {how}; read {data[:16]!r}"
    assert f.error is None, f"the client's writes were reset ({f.error!r}); read {data[:16]!r}"
    assert data[0] == 0x20, data[:16]
    rc = data[3]
    assert rc == (0x87 if level == 5 else 0x05), data[:16]


# -- CONNECT refusals answered with CONNACK [MQTT-3.1.2-1] [MQTT-3.1.2-2] [MQTT-3.1.3-5] ----

def connect_raw(port, data):
    s = socket.create_connection((helpers.HOST, port), timeout=5)
    s.sendall(data)
    got, how = read_until_closed(s)
    s.close()
    return got, how


def connect_body(name, level, flags=0x02, client_id=b"c1", props=None):
    name = name.encode() if isinstance(name, str) else name
    body = struct.pack("!H", len(name)) + name + bytes([level, flags]) + struct.pack("!H", 60)
    if level == 5:
        body += encode_props(props)
    return packet(helpers.CONNECT, 0, body + struct.pack("!H", len(client_id)) + client_id)


def connack_rc(got):
    """The reason code of the CONNACK `got` starts with."""
    assert len(got) >= 4 and got[0] == 0x20, f"no CONNACK before the close: {got!r}"
    return got[3]


@tern_only
def test_v5_invalid_client_identifier_gets_connack_0x85(broker):
    b = broker()
    # U+0000 is not allowed in a UTF-8 string [MQTT-1.5.4-2]; the id is invalid.
    got, how = connect_raw(b.port, connect_body("MQTT", 5, client_id=b"bad\x00id"))
    assert how == "eof", how
    assert connack_rc(got) == 0x85, got


@tern_only
def test_v5_client_identifier_too_long_gets_connack_0x85(broker):
    b = broker(mqtt={"max_clientid_len": 23})
    got, how = connect_raw(b.port, connect_body("MQTT", 5, client_id=b"x" * 24))
    assert connack_rc(got) == 0x85, got
    assert how == "eof", how


@pytest.mark.parametrize("level", [0, 2, 6, 7, 255])
def test_unsupported_protocol_level_gets_connack_0x01(broker, level):
    b = broker()
    got, how = connect_raw(b.port, connect_body("MQTT", level))
    assert got[:4] == b"\x20\x02\x00\x01", got
    assert how == "eof", how


@tern_only
@pytest.mark.parametrize("name,level", [("MQTT", 3), ("MQIsdp", 4)])
def test_protocol_name_of_another_level_gets_connack_0x01(broker, name, level):
    b = broker()
    got, how = connect_raw(b.port, connect_body(name, level))
    assert got[:4] == b"\x20\x02\x00\x01", got
    assert how == "eof", how


@tern_only
@pytest.mark.parametrize("name", ["MQIsdp", "MQTX", "mqtt"])
def test_v5_wrong_protocol_name_gets_connack_0x84(broker, name):
    b = broker()
    got, how = connect_raw(b.port, connect_body(name, 5))
    assert connack_rc(got) == 0x84, got
    assert how == "eof", how


@tern_only
def test_v5_malformed_connect_gets_connack_0x81(broker):
    b = broker()
    # A property CONNECT may not carry (Topic Alias, 0x23) is a malformed packet.
    got, how = connect_raw(b.port, connect_body("MQTT", 5, props=[("topic_alias", 1)]))
    assert connack_rc(got) in (0x81, 0x82), got
    assert how == "eof", how


# -- Invalid topic filter in SUBSCRIBE: refused in the SUBACK [MQTT-3.9.3-2] -------------------

BAD_FILTERS = ["a/#/b", "a+", "a/b#", "#/a", "a/+b/c"]


@tern_only
def test_v5_invalid_filter_gets_suback_0x8f_and_the_others_are_granted(broker):
    b = broker()
    c = raw5(b.port)
    good = unique("good")
    ack = c.subscribe([(good, 1)] + [(f, 1) for f in BAD_FILTERS] + [(good + "/+", 2)])
    assert ack.codes == [1] + [0x8F] * len(BAD_FILTERS) + [2], ack
    pub = raw5(b.port)
    pub.publish_acked(good, b"ok", qos=1)
    assert c.receive_publishes(1)[0].payload == b"ok"


@tern_only
def test_v311_invalid_filter_gets_suback_0x80_and_the_others_are_granted(broker):
    b = broker()
    c = RawClient(b.port)
    c.connect_ok()
    good = unique("good")
    ack = c.subscribe([(good, 1)] + [(f, 1) for f in BAD_FILTERS])
    assert ack.codes == [1] + [0x80] * len(BAD_FILTERS), ack
    c.ping()


@tern_only
def test_v5_filter_with_invalid_utf8_gets_suback_0x8f(broker):
    """A filter that is a well-formed string but not a valid filter (U+0000 in it)."""
    b = broker()
    c = raw5(b.port)
    good = unique("good")
    body = struct.pack("!H", 5) + encode_props(None)
    body += mqtt_string(good) + bytes([1])
    body += struct.pack("!H", 3) + b"a\x00b" + bytes([1])
    c.send(packet(helpers.SUBSCRIBE, 0x02, body))
    p = c.read_packet(5)
    # U+0000 makes the packet malformed [MQTT-1.5.4-2]: a DISCONNECT 0x81 is as right as a
    # SUBACK refusal; what must not happen is a silent close or a grant.
    if p.type == SUBACK:
        assert p.codes == [1, 0x8F], p
    else:
        assert p.type == DISCONNECT and p.rc == 0x81, p


# -- Packets the server sends fit the client's Maximum Packet Size [MQTT-3.1.2-24] ------------

@tern_only
def test_connack_refusal_drops_its_reason_string_to_fit(broker):
    b = broker()
    s = socket.create_connection((helpers.HOST, b.port), timeout=5)
    will = {"topic": "w/#", "payload": b"x"}
    s.sendall(connect5(unique("mps"), props=[("maximum_packet_size", 16)], will=will))
    got, how = read_until_closed(s)
    s.close()
    assert connack_rc(got) == 0x90, got
    assert len(got) <= 16, got


@tern_only
def test_disconnect_drops_its_reason_string_to_fit(broker):
    b = broker(session={"max_awaiting_rel": 1})
    c = RawClient5(b.port)
    c.connect_ok(props=[("maximum_packet_size", 12)])
    c.send(publish5("a", b"x", qos=2, pid=1) + publish5("a", b"x", qos=2, pid=2))
    data, how = read_until_closed(c.sock)
    packets = split_packets(data)
    assert [p.type for p in packets] == [helpers.PUBREC, DISCONNECT], packets
    assert packets[1].rc == 0x93 and packets[1].prop("reason_string") is None, packets
    assert len(packets[1].body) + 2 <= 12, packets


# -- No DISCONNECT before the CONNACK [MQTT-3.2.0-1] ------------------------------------------

@tern_only
def test_malformed_packet_right_behind_connect_gets_no_disconnect_first(broker):
    b = broker()
    for _ in range(5):
        s = socket.create_connection((helpers.HOST, b.port), timeout=5)
        # PUBLISH with QoS 3 right behind the CONNECT, in one write.
        s.sendall(connect5(unique("c")) + b"\x36\x03\x00\x01a")
        got, how = read_until_closed(s)
        s.close()
        if got:
            assert got[0] == 0x20, f"first packet is not CONNACK: {got!r}"


def test_malformed_packet_sent_on_reading_the_connack_gets_disconnect_0x81(broker):
    """A client that sends a bad packet as soon as it reads its CONNACK is told why
    [MQTT-4.13.1-1]: DISCONNECT was allowed only after the CONNACK was handed to the socket,
    so a packet read in between was closed on without one."""
    b = broker()
    for i in range(30):
        c = raw5(b.port, unique("race"))
        c.send(publish5(b"a/\xed\xa0\x80", b"x"))  # ill-formed UTF-8: malformed
        c.expect_disconnect(0x81)


# -- Found while tracing every statement to a test ----------------------------------------------

@pytest.mark.parametrize("rc", [0x80, 0x04, 0x00])
def test_only_disconnect_0x00_discards_the_will(broker, rc):
    """[MQTT-3.14.4-3] DISCONNECT 0x00 discards the will; with any other reason (0x80, an
    error the client reports) it is published [MQTT-3.1.2-8]."""
    b = broker()
    wt = unique("will")
    watcher = raw5(b.port)
    watcher.subscribe([(wt, 1)])
    c = RawClient5(b.port)
    c.connect_ok(unique("wr"), will={"topic": wt, "payload": b"gone", "qos": 1})
    c.disconnect(rc=rc)
    if rc == 0x00:
        watcher.expect_no_packet(1.0)
    else:
        assert watcher.receive_publishes(1)[0].payload == b"gone"


def test_suback_larger_than_the_client_maximum_is_not_sent(broker):
    """[MQTT-3.1.2-24] a SUBACK for 20 filters (25 bytes) to a client allowing 16 bytes is not
    sent; the connection goes on."""
    b = broker()
    c = raw5(b.port, props=[("maximum_packet_size", 16)])
    body = struct.pack("!H", 9) + encode_props([])
    for i in range(20):
        body += mqtt_string(f"big/{i}") + b"\x00"
    c.send(packet(helpers.SUBSCRIBE, 0x02, body))
    small = struct.pack("!H", 10) + encode_props([]) + mqtt_string("small") + b"\x00"
    c.send(packet(helpers.SUBSCRIBE, 0x02, small))
    ack = c.expect(SUBACK)
    assert ack.pid == 10, f"the 25-byte SUBACK was sent: {ack}"


def test_shutdown_disconnect_fits_the_client_maximum(broker):
    """[MQTT-3.1.2-24] the shutdown DISCONNECT with a Server Reference does not fit 16 bytes:
    the client gets the bare reason code 0x9C."""
    b = broker(mqtt5={"server_reference": "a-long-server-reference.example:1883"})
    small = raw5(b.port, props=[("maximum_packet_size", 16)])
    wide = raw5(b.port)
    code, killed = b.stop()
    assert (code, killed) == (0, False)
    assert wide.expect_disconnect(0x9C).prop("server_reference")
    p = small.expect_disconnect(0x9C)
    assert p.prop("server_reference") is None and len(p.body) == 1, p


def test_a_close_that_waits_for_a_client_that_never_reads_still_happens(broker):
    """A server-initiated close (here a takeover's DISCONNECT 0x8E) waits for its last packet to
    be written, but not forever: a client that stops reading yet keeps sending PINGREQ (so its
    keepalive never expires) is closed once the wait passes 5 s. It was kept open for good."""
    b = broker(session={"max_send_buffer": 64 * 1024 * 1024})  # no overflow close meanwhile
    cid, topic = unique("stuck"), unique("flood")
    stuck = raw5(b.port, cid)
    stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.subscribe([(topic, 0)])
    flood = raw5(b.port)
    for _ in range(700):  # 11 MB: more than the kernel buffers, so a write stays pending
        flood.publish(topic, bytes(16384))
    flood.send(helpers.packet(helpers.PINGREQ, 0, b""))
    flood.expect(helpers.PINGRESP, timeout=10)
    raw5(b.port, cid)  # takes the session over: the stuck connection is to be closed
    deadline = time.monotonic() + 9
    while time.monotonic() < deadline:
        try:
            stuck.sock.sendall(helpers.packet(helpers.PINGREQ, 0, b""))
        except OSError:
            return  # reset by the broker: closed
        time.sleep(0.25)
    pytest.fail("the broker never closed a connection whose last packets could not be written")


@tern_only
def test_v5_connect_larger_than_the_maximum_packet_size_gets_connack_0x95(broker):
    """A CONNECT over `mqtt.max_packet_size` cannot be read, but its first bytes name its
    level: an MQTT 5 one gets CONNACK 0x95 (packet too large) before the close, a 3.1.1 one
    is closed without one (3.1.1 has no code for it)."""
    b = broker(mqtt={"max_packet_size": 1024})
    s = socket.create_connection((helpers.HOST, b.port), timeout=5)
    s.sendall(connect5(unique("big"), username="u", password=b"p" * 2000))
    got, how = read_until_closed(s)
    s.close()
    assert got[:3] == b"\x20\x03\x00" and got[3] == 0x95, (got, how)
    s = socket.create_connection((helpers.HOST, b.port), timeout=5)
    s.sendall(connect_packet(unique("big"), username="u", password="p" * 2000))
    got, how = read_until_closed(s)
    s.close()
    assert got == b"", (got, how)
