# Numbered message streams for tests of what survives crashes and moves: paho publishers with
# persistent sessions that send "<name>:<seq>" messages one acknowledgement at a time,
# subscribers that keep what they got across reconnects and moves, and the check that every
# message arrived in order (QoS 2 exactly once).
import threading

import paho.mqtt.client as paho

import helpers
from helpers import unique


class _Client(paho.Client):
    """paho 1.6 with one client bug fixed: each reconnect attempt turns a QoS 2 message whose
    PUBREL is owed ("resend_pubrel") back into one to PUBLISH again, so when the broker is down
    for more than one attempt paho sends the PUBLISH again after it has sent the PUBREL
    ([MQTT-4.3.3] forbids it). The broker has released that packet id and rightly takes the
    PUBLISH as a new message: a duplicate made by the client. Keep the owed PUBREL owed."""

    def _messages_reconnect_reset_out(self):
        with self._out_message_mutex:
            for m in self._out_messages.values():
                if m.qos == 2 and m.state == paho.mqtt_ms_resend_pubrel:
                    m.state = paho.mqtt_ms_wait_for_pubcomp
        super()._messages_reconnect_reset_out()


class Publisher:
    """A paho client with a persistent session publishing seq-numbered messages, `window` at a
    time: each acknowledgement publishes the next one. paho keeps what is not acknowledged and
    sends it again after a reconnect. New messages are published from paho's own thread (its
    acknowledgement callback) on purpose: paho 1.6 resends after a reconnect without holding
    off other threads, so a publish from elsewhere could overtake the resent ones on the wire,
    a reordering by the client that would hide (or fake) one by the broker."""

    def __init__(self, port, name, topic, qos, window=20):
        self.name, self.topic, self.qos = name, topic, qos
        self.sent = 0
        self.infos = []  # paho's MQTTMessageInfo per seq: published once acknowledged
        self.stop = threading.Event()
        self.c = _Client(client_id=unique(name), clean_session=False)
        self.c.reconnect_delay_set(0.05, 0.3)
        self.c.max_inflight_messages_set(window)
        self.c.on_publish = lambda c, u, mid: self._next()
        for _ in range(window):
            self._next()  # queued until the connection is up
        self.c.connect_async(helpers.HOST, port, keepalive=10)
        self.c.loop_start()
        self._done = 0  # infos[:_done] are all acknowledged

    def _next(self):
        if not self.stop.is_set():
            self.infos.append(self.c.publish(self.topic, f"{self.name}:{self.sent}", qos=self.qos))
            self.sent += 1

    def acked(self):
        # is_published() raises for a message published while disconnected, which paho keeps
        # and sends after the reconnect all the same: read its flag instead.
        def published(info):
            with info._condition:
                return info._published
        while self._done < len(self.infos) and published(self.infos[self._done]):
            self._done += 1
        return self._done

    def all_acked(self):
        return self.acked() == self.sent


class Subscriber:
    """A paho client with a persistent session that subscribes `filt` when `client_id` is
    new, or takes that session back when given."""

    def __init__(self, port, name, filt, qos, client_id=None, got=()):
        self.name, self.qos = name, qos
        self.client_id = client_id or unique(name)
        self.got = list(got)
        self.lock = threading.Lock()
        self.c = paho.Client(client_id=self.client_id, clean_session=False)
        self.c.reconnect_delay_set(0.05, 0.3)
        self.c.on_message = self._on_message
        if client_id is None:
            self.c.on_connect = lambda c, u, f, rc: c.subscribe(filt, qos)
        self.c.connect_async(helpers.HOST, port, keepalive=10)
        self.c.loop_start()

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.got.append(msg.payload.decode())

    def received(self):
        with self.lock:
            return list(self.got)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def check_stream(sub, pub):
    """Every message of `pub` reached `sub`: QoS 2 end to end exactly once, QoS 1 at least once,
    first deliveries in publish order."""
    seqs = [int(x.split(":")[1]) for x in sub.received() if x.startswith(pub.name + ":")]
    want = list(range(pub.sent))
    first = []
    seen = set()
    for s in seqs:
        if s not in seen:
            seen.add(s)
            first.append(s)
    missing = sorted(set(want) - seen)
    assert not missing, (f"{sub.name} lost {len(missing)} of {pub.name}'s {len(want)} "
                         f"(got {len(seqs)}): {missing[:20]}")
    if first != want:
        i = next(i for i, (a, b) in enumerate(zip(first, want)) if a != b)
        j = seqs.index(first[i])
        raise AssertionError(f"{sub.name}: {pub.name}'s messages out of order at {want[i]}: "
                             f"received ... {seqs[max(j - 10, 0):j + 40]} ...")
    if min(sub.qos, pub.qos) == 2:
        dups = sorted({x for x in seqs if seqs.count(x) > 1})
        assert not dups, (f"{sub.name} got {len(seqs) - len(want)} duplicates of {pub.name}'s "
                          f"QoS 2 messages: {dups[:30]}; around the first: "
                          f"{seqs[max(seqs.index(dups[0]) - 5, 0):seqs.index(dups[0]) + 40]}")
