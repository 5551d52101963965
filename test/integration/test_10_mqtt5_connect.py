# MQTT 5 CONNECT / CONNACK / DISCONNECT / AUTH: properties, session expiry, clean start,
# reason codes both ways, enhanced authentication refusal.

import socket
import subprocess
import time

import pytest

import helpers
from helpers import CONNACK, DISCONNECT, unique
from mqtt5 import AUTH, RawClient5, auth5, disconnect5, raw5

pytestmark = pytest.mark.skipif(helpers.is_mosquitto(), reason="checks Tern's own values")


def test_connack_properties(broker, clients):
    b = broker(session={"max_awaiting_rel": 7}, mqtt={"max_packet_size": 4096},
               mqtt5={"topic_alias_maximum": 12})
    c = RawClient5(b.port)
    ack = c.connect_ok()
    assert ack.rc == 0 and ack.session_present == 0
    assert ack.prop("receive_maximum") == 7
    assert ack.prop("maximum_packet_size") == 4096
    assert ack.prop("topic_alias_maximum") == 12
    for name in ("retain_available", "wildcard_subscription_available",
                 "subscription_identifier_available", "shared_subscription_available"):
        assert ack.prop(name) == 1, name
    assert ack.prop("assigned_client_identifier") is None  # the client named itself
    assert ack.prop("server_keep_alive") is None  # no maximum configured
    assert ack.prop("response_information") is None  # not requested
    c.disconnect()


def test_assigned_client_identifier_resumes_its_session(broker):
    b = broker()
    c = RawClient5(b.port)
    ack = c.connect("", props=[("session_expiry_interval", 60)])
    assert ack.rc == 0
    assigned = ack.prop("assigned_client_identifier")
    assert assigned, ack
    c.disconnect()
    again = RawClient5(b.port)
    ack = again.connect(assigned, clean=False, props=[("session_expiry_interval", 60)])
    assert ack.rc == 0 and ack.session_present == 1
    assert ack.prop("assigned_client_identifier") is None
    again.disconnect()


def test_server_keep_alive_caps_the_client(broker):
    b = broker(mqtt5={"max_keepalive": 2})
    c = RawClient5(b.port)
    ack = c.connect_ok(keepalive=600)
    assert ack.prop("server_keep_alive") == 2
    # Held to it: silent for more than 2 s * 1.5 means disconnected.
    c.wait_closed(timeout=6)
    zero = RawClient5(b.port)
    assert zero.connect_ok(keepalive=0).prop("server_keep_alive") == 2
    ok = RawClient5(b.port)
    assert ok.connect_ok(keepalive=1).prop("server_keep_alive") is None
    zero.close()
    ok.close()


def test_response_information_only_when_requested(broker):
    b = broker(mqtt5={"response_information": "reply/"})
    c = RawClient5(b.port)
    ack = c.connect_ok("rr-client", props=[("request_response_information", 1)])
    assert ack.prop("response_information") == "reply/rr-client"
    c.disconnect()
    d = RawClient5(b.port)
    assert d.connect_ok().prop("response_information") is None
    d.disconnect()


def test_session_expiry_zero_ends_the_session_at_disconnect(broker):
    b = broker()
    cid = unique("sx0")
    c = raw5(b.port, cid, clean=False)  # no Session Expiry Interval: 0
    c.subscribe("sx0/t")
    c.disconnect()
    again = RawClient5(b.port)
    assert again.connect(cid, clean=False).session_present == 0
    again.disconnect()


def test_session_expiry_keeps_then_ends_the_session(broker):
    b = broker()
    cid = unique("sx1")
    c = raw5(b.port, cid, props=[("session_expiry_interval", 1)])
    c.subscribe([("sx1/t", 1)])
    c.disconnect()
    # Within the interval: present, and the subscription still delivers.
    again = RawClient5(b.port)
    ack = again.connect(cid, clean=False, props=[("session_expiry_interval", 1)])
    assert ack.session_present == 1
    pub = raw5(b.port)
    pub.publish_acked("sx1/t", b"kept", qos=1)
    assert again.expect_publish().payload == b"kept"
    again.disconnect()
    time.sleep(2.0)  # past the 1 s interval
    late = RawClient5(b.port)
    assert late.connect(cid, clean=False).session_present == 0
    late.disconnect()
    pub.disconnect()


def test_clean_start_discards_a_session(broker):
    b = broker()
    cid = unique("cs")
    c = raw5(b.port, cid, props=[("session_expiry_interval", 60)])
    c.disconnect()
    again = RawClient5(b.port)
    ack = again.connect(cid, clean=True, props=[("session_expiry_interval", 60)])
    assert ack.session_present == 0
    again.disconnect()


def test_session_expiry_is_capped_by_the_configured_maximum(broker):
    b = broker(session={"expiry_interval": "10s"})
    c = RawClient5(b.port)
    ack = c.connect_ok(props=[("session_expiry_interval", 0xFFFFFFFF)])
    assert ack.prop("session_expiry_interval") == 10
    c.disconnect()


def test_disconnect_can_shorten_the_session_expiry(broker):
    b = broker()
    cid = unique("dx")
    c = raw5(b.port, cid, props=[("session_expiry_interval", 60)])
    c.disconnect(props=[("session_expiry_interval", 0)])
    again = RawClient5(b.port)
    assert again.connect(cid, clean=False).session_present == 0
    again.disconnect()


def test_disconnect_cannot_set_expiry_after_zero(broker):
    b = broker()
    c = raw5(b.port)
    c.send(disconnect5(0, [("session_expiry_interval", 30)]))
    c.expect_disconnect(0x82)


def test_second_connect_gets_disconnect_protocol_error_with_reason_string(broker):
    b = broker()
    c = raw5(b.port)
    from mqtt5 import connect5
    c.send(connect5(unique("x")))
    p = c.expect_disconnect(0x82)
    assert p.prop("reason_string")


def test_session_takeover_disconnects_the_old_connection_with_0x8e(broker):
    b = broker()
    cid = unique("to")
    old = raw5(b.port, cid)
    new = raw5(b.port, cid)
    old.expect_disconnect(0x8E)
    new.disconnect()


def test_shutdown_tells_v5_clients_server_shutting_down(broker):
    b = broker()
    v5, v3 = raw5(b.port), helpers.RawClient(b.port)
    v3.connect_ok()
    code, killed = b.stop()
    assert (code, killed) == (0, False)
    p = v5.expect_disconnect(0x8B)
    assert p.prop("server_reference") is None
    assert v3.wait_closed() == [], "an MQTT 3.1.1 client is only closed"


def test_shutdown_points_v5_clients_to_the_server_reference(broker, tmp_path):
    b = broker(mqtt5={"server_reference": "tern.example:1883"})
    c = raw5(b.port)
    connecting = RawClient5(b.port)  # no CONNACK yet: must not get a DISCONNECT [MQTT-3.14.0-1]
    stalled = raw5(b.port)  # does not read: it must not hold the shutdown up
    stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    flood = raw5(b.port)
    stalled.subscribe([("flood/#", 0)])
    for _ in range(200):
        flood.publish("flood/x", bytes(16384))
    time.sleep(0.5)
    code, killed = b.stop()
    assert (code, killed) == (0, False)
    p = c.expect_disconnect(0x9C)
    assert p.prop("server_reference") == "tern.example:1883"
    assert connecting.wait_closed() == []


def test_unknown_authentication_method_is_refused_with_0x8c(broker):
    b = broker()
    c = RawClient5(b.port)
    ack = c.connect(props=[("authentication_method", "SCRAM-SHA-256"),
                           ("authentication_data", b"n,,n=user,r=abc")])
    assert ack.rc == 0x8C
    c.wait_closed()


def test_auth_without_a_method_is_a_protocol_error(broker):
    b = broker()
    c = raw5(b.port)
    c.send(auth5(0x19, [("authentication_method", "PLAIN")]))
    c.expect_disconnect(0x82)


def test_mosquitto_clients_speak_v5(broker):
    b = broker()
    topic = unique("m5")
    sub = subprocess.Popen([helpers.MOSQUITTO_SUB, "-h", helpers.HOST, "-p", str(b.port),
                            "-V", "5", "-t", topic, "-C", "1", "-W", "10", "-q", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Publish until the subscriber is in place and exits with the message.
        deadline = time.monotonic() + 10
        while sub.poll() is None and time.monotonic() < deadline:
            subprocess.run([helpers.MOSQUITTO_PUB, "-h", helpers.HOST, "-p", str(b.port),
                            "-V", "5", "-t", topic, "-m", "hello5", "-q", "1"],
                           check=True, timeout=10, capture_output=True)
            time.sleep(0.2)
        out, err = sub.communicate(timeout=10)
        assert sub.returncode == 0, err
        assert out.decode().strip() == "hello5"
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
