# Raw MQTT connections driven without blocking, for flow control tests: many publishers and
# slow subscribers in one thread, and the checks of what arrived.

import select
import socket
import struct
import time

import mgmt_helpers as mh
from helpers import PUBACK, PUBLISH, publish_packet, puback_packet, unique

PAYLOAD = 1000  # bytes per message of publishes(): sequence number + padding


class Pump:
    """A raw MQTT connection driven without blocking: queued bytes go out as the socket takes
    them, incoming packets are parsed; QoS 1 deliveries are acknowledged when `ack` is set."""

    def __init__(self, client, ack=True, read_size=262144):
        self.c = client
        self.c.sock.setblocking(False)
        self.out = bytearray()
        self.ack = ack
        self.read_size = read_size
        self.reading = True
        self.pubacks = []  # packet ids of PUBACKs received
        self.seqs = []  # sequence numbers of PUBLISHes received, in order
        self.pubs = []  # (sequence number, publisher) of payloads that name a publisher

    def queue(self, data):
        self.out += data

    def step(self):
        """One non-blocking round; returns whether anything moved."""
        moved = False
        if self.out:
            try:
                n = self.c.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                n = 0
            if n:
                del self.out[:n]
                moved = True
        if self.reading:
            try:
                data = self.c.sock.recv(self.read_size)
            except (BlockingIOError, InterruptedError):
                data = None
            if data == b"":
                raise AssertionError("broker closed the connection")
            if data:
                self.c.buf += data
                moved = True
            while (p := self.c._try_parse()) is not None:
                if p.type == PUBACK:
                    self.pubacks.append(p.pid)
                elif p.type == PUBLISH:
                    self.seqs.append(struct.unpack(">Q", p.payload[:8])[0])
                    if len(p.payload) == 76:
                        self.pubs.append(struct.unpack(">QI", p.payload[:12]))
                    if p.qos == 1 and self.ack:
                        self.out += puback_packet(p.pid)
                else:
                    raise AssertionError(f"unexpected {p!r}")
        return moved


def run(pumps, until, timeout, stall=None):
    """Steps the pumps until `until()` holds (True), nothing moved for `stall` seconds
    (False, only when `stall` is given) or `timeout` passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    last_move = time.monotonic()
    while not until():
        now = time.monotonic()
        assert now < deadline, "timed out"
        if stall is not None and now - last_move > stall:
            return False
        if any([p.step() for p in pumps]):
            last_move = now
        else:
            select.select([p.c.sock for p in pumps if p.reading],
                          [p.c.sock for p in pumps if p.out], [], 0.05)
    return True


def publishes(topic, first, n):
    data = bytearray()
    for seq in range(first, first + n):
        pid = seq % 65535 + 1
        payload = struct.pack(">Q", seq) + bytes(PAYLOAD - 8)
        data += publish_packet(topic, payload, qos=1, pid=pid)
    return bytes(data)


def assert_exactly_once_in_order(seqs, n):
    assert len(seqs) == n, f"got {len(seqs)} of {n} messages"
    assert seqs == list(range(n)), "lost, duplicated or reordered messages"


def small_send_buffer(c):
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)


def fan_in(clients, pub_port, sub_port, publishers, per_publisher, read_size, routed=None):
    """`publishers` raw clients on `pub_port` each write `per_publisher` QoS 1 PUBLISHes at once
    (no window: as many unacknowledged as the broker takes) to one topic; one QoS 1 subscriber
    on `sub_port` reads `read_size` bytes per round, slower than they publish. `routed(topic)`
    returns once the publishers' node knows the subscription. Returns (subscriber pump,
    publisher pumps)."""
    topic = unique("fanin")
    sub = clients.raw(sub_port, rcvbuf=65536)
    sub.connect_ok()
    sub.subscribe([(topic, 1)])
    if routed is not None:
        routed(topic)
    sp = Pump(sub, read_size=read_size)
    pumps = []
    for i in range(publishers):
        c = clients.raw_connected(pub_port)
        p = Pump(c)
        data = bytearray()
        for seq in range(per_publisher):
            payload = struct.pack(">QI", seq, i) + bytes(64)
            data += publish_packet(topic, payload, qos=1, pid=seq % 65535 + 1)
        p.queue(bytes(data))
        pumps.append(p)
    total = publishers * per_publisher
    run([sp] + pumps, lambda: len(sp.seqs) >= total and
        all(len(p.pubacks) == per_publisher for p in pumps), timeout=240)
    run([sp] + pumps, lambda: False, timeout=5, stall=0.5)  # nothing more comes
    return sp, pumps


def assert_every_publisher_in_order(sp, publishers, per_publisher):
    by_pub = {}
    for seq, pub in sp.pubs:
        by_pub.setdefault(pub, []).append(seq)
    assert len(sp.pubs) == publishers * per_publisher, \
        f"got {len(sp.pubs)} of {publishers * per_publisher}"
    for i in range(publishers):
        assert by_pub.get(i) == list(range(per_publisher)), f"publisher {i}: lost, doubled or reordered"


def metric(node, name):
    status, _, body = mh.Api(node.http_port).request("GET", "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exported")


