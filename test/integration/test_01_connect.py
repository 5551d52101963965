# CONNECT and CONNACK for MQTT 3.1 and 3.1.1: client ids, protocol level, session present,
# second CONNECT, client id takeover.

import pytest

from helpers import (CONNACK, CONNACK_ACCEPTED, CONNACK_BAD_PROTOCOL_VERSION,
                     CONNACK_IDENTIFIER_REJECTED, LEVEL_V31, LEVEL_V311, PUBLISH, connect_packet,
                     is_mosquitto, unique)

LEVELS = [pytest.param(LEVEL_V31, id="v31"), pytest.param(LEVEL_V311, id="v311")]


def assert_refused_then_closed(raw, allowed_rc):
    """The broker answers with a CONNACK carrying `allowed_rc` (or nothing), then closes."""
    seen = raw.wait_closed(timeout=5)
    assert len(seen) <= 1, f"expected at most a CONNACK before the close, got {seen}"
    if seen:
        assert seen[0].type == CONNACK and seen[0].rc == allowed_rc, seen


@pytest.mark.parametrize("level", LEVELS)
def test_connect_accepted(broker, clients, level):
    b = broker()
    raw = clients.raw(b.port)
    ack = raw.connect(unique("c"), level=level)
    assert ack.rc == CONNACK_ACCEPTED
    assert len(ack.body) == 2, "CONNACK has a 2-byte variable header"
    raw.ping()


@pytest.mark.parametrize("level", LEVELS)
def test_connect_with_username_and_password_accepted_when_anonymous_allowed(broker, clients,
                                                                            level):
    b = broker()
    raw = clients.raw(b.port)
    assert raw.connect(unique("c"), level=level, username="u", password="p").rc == 0
    raw.ping()


@pytest.mark.parametrize("level", LEVELS)
def test_empty_client_id_with_clean_session_gets_generated_id(broker, clients, level):
    if level == LEVEL_V31 and is_mosquitto():
        pytest.skip("mosquitto applies MQTT 3.1's 1-23 character rule and rejects an empty id "
                    "(0x02); Tern accepts it with a generated id, as 3.1.1 does")
    b = broker()
    first = clients.raw(b.port)
    assert first.connect("", clean=True, level=level).rc == CONNACK_ACCEPTED
    # A second anonymous client must get a different generated id: if both got the same id
    # the second would take over and close the first.
    second = clients.raw(b.port)
    assert second.connect("", clean=True, level=level).rc == CONNACK_ACCEPTED
    topic = unique("anon")
    assert first.subscribe([(topic, 1)]).codes == [1]
    second.publish_acked(topic, b"hello", qos=1)
    m = first.expect_publish()
    assert (m.topic, m.payload) == (topic, b"hello")
    assert first.is_open() and second.is_open()


@pytest.mark.parametrize("level", LEVELS)
def test_empty_client_id_without_clean_session_rejected(broker, clients, level):
    # [MQTT-3.1.3-8]: CONNACK 0x02 (identifier rejected), then close.
    b = broker()
    raw = clients.raw(b.port)
    raw.send(connect_packet("", clean=False, level=level))
    seen = raw.wait_closed(timeout=5)
    assert [(p.type, p.rc) for p in seen] == [(CONNACK, CONNACK_IDENTIFIER_REJECTED)], seen


def test_long_client_id_accepted_in_v311(broker, clients):
    # 3.1.1 lifts 3.1's 23-character limit [MQTT-3.1.3-5 allows servers to accept more].
    b = broker()
    raw = clients.raw(b.port)
    assert raw.connect("x" * 200).rc == CONNACK_ACCEPTED


def test_client_id_longer_than_max_clientid_len_rejected(broker, clients):
    b = broker(mqtt={"max_clientid_len": 23})  # 23: the smallest limit Tern allows
    ok = clients.raw(b.port)
    assert ok.connect("a" * 23).rc == CONNACK_ACCEPTED
    raw = clients.raw(b.port)
    raw.send(connect_packet("b" * 24))
    seen = raw.wait_closed(timeout=5)
    assert [(p.type, p.rc) for p in seen] == [(CONNACK, CONNACK_IDENTIFIER_REJECTED)], seen


@pytest.mark.parametrize("name,level", [("MQTT", 2), ("MQTT", 6), ("MQTT", 0), ("MQTT", 3),
                                        ("MQIsdp", 4), ("MQIsdp", 6)])
def test_unsupported_protocol_level_refused(broker, clients, name, level):
    # [MQTT-3.1.2-2]: CONNACK 0x01 (unacceptable protocol version) and close.
    b = broker()
    raw = clients.raw(b.port)
    raw.send(connect_packet(unique("c"), level=level, proto_name=name))
    assert_refused_then_closed(raw, CONNACK_BAD_PROTOCOL_VERSION)


@pytest.mark.parametrize("name", ["MQTX", "mqtt", "MQIsdP", ""])
def test_unknown_protocol_name_closes_connection(broker, clients, name):
    # [MQTT-3.1.2-1]: the server may disconnect without CONNACK; any CONNACK must refuse.
    b = broker()
    raw = clients.raw(b.port)
    raw.send(connect_packet(unique("c"), proto_name=name))
    assert_refused_then_closed(raw, CONNACK_BAD_PROTOCOL_VERSION)


def test_session_present_flag_v311(broker, clients):
    b = broker()
    cid = unique("sp")

    def connect(clean):
        raw = clients.raw(b.port)
        ack = raw.connect(cid, clean=clean)
        assert ack.rc == CONNACK_ACCEPTED
        raw.disconnect()
        return ack.session_present

    assert connect(clean=True) == 0, "clean session: session present must be 0 [MQTT-3.2.2-1]"
    assert connect(clean=False) == 0, "no stored session yet [MQTT-3.2.2-3]"
    assert connect(clean=False) == 1, "resumed session [MQTT-3.2.2-2]"
    assert connect(clean=True) == 0, "clean session discards the stored one"
    assert connect(clean=False) == 0, "the session was discarded by the clean connect"


def test_connack_flags_zero_in_v31(broker, clients):
    # MQTT 3.1 has no session present flag: the first CONNACK byte is reserved (0).
    b = broker()
    cid = unique("sp31")
    raw = clients.raw(b.port)
    assert raw.connect(cid, clean=False, level=LEVEL_V31).rc == 0
    raw.disconnect()
    raw = clients.raw(b.port)
    ack = raw.connect(cid, clean=False, level=LEVEL_V31)
    assert ack.rc == 0 and ack.ack_flags == 0, ack.body


@pytest.mark.parametrize("level", LEVELS)
def test_second_connect_closes_connection(broker, clients, level):
    # [MQTT-3.1.0-2]: a second CONNECT is a protocol violation; the server disconnects.
    b = broker()
    raw = clients.raw(b.port)
    raw.connect_ok(unique("c"), level=level)
    raw.send(connect_packet(unique("c"), level=level))
    seen = raw.wait_closed(timeout=5)
    assert not [p for p in seen if p.type == CONNACK], f"no second CONNACK expected: {seen}"


@pytest.mark.parametrize("level", LEVELS)
def test_same_client_id_takes_over_and_closes_old_connection(broker, clients, level):
    # [MQTT-3.1.4-2]: the server disconnects the existing client with that id.
    b = broker()
    cid = unique("dup")
    old = clients.raw_connected(b.port, cid, level=level)
    new = clients.raw(b.port)
    ack = new.connect(cid, level=level)
    assert ack.rc == CONNACK_ACCEPTED and ack.session_present == 0
    old.wait_closed(timeout=5)
    new.ping()


def test_takeover_of_clean_session_does_not_resume_it(broker, clients):
    # [MQTT-3.1.2-6]: the state of a clean session must not be reused by any later session,
    # even when a clean-session-0 connection takes over while the old one is still open.
    b = broker()
    cid, topic, end = unique("dup"), unique("old"), unique("end")
    old = clients.raw_connected(b.port, cid, clean=True)
    old.subscribe([(topic, 1)])
    new = clients.raw(b.port)
    ack = new.connect(cid, clean=False)
    assert ack.rc == CONNACK_ACCEPTED and ack.session_present == 0
    old.wait_closed(timeout=5)
    new.subscribe([(end, 1)])
    pub = clients.raw_connected(b.port)
    pub.publish_acked(topic, b"for the old clean session", qos=1)
    pub.publish_acked(end, b"sentinel", qos=1)
    assert [p.topic for p in new.receive_publishes(1)] == [end]


def test_takeover_of_persistent_session_keeps_subscriptions(broker, clients):
    b = broker()
    cid = unique("dup")
    topic = unique("take")
    old = clients.raw_connected(b.port, cid, clean=False)
    assert old.subscribe([(topic, 1)]).codes == [1]
    new = clients.raw(b.port)
    ack = new.connect(cid, clean=False)
    assert ack.rc == CONNACK_ACCEPTED and ack.session_present == 1
    old.wait_closed(timeout=5)
    pub = clients.raw_connected(b.port)
    pub.publish_acked(topic, b"after takeover", qos=1)
    m = new.expect(PUBLISH)
    assert (m.topic, m.payload, m.qos) == (topic, b"after takeover", 1)
