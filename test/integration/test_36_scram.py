# MQTT 5 enhanced authentication with SCRAM-SHA-256 (AUTH packets), against credentials
# that tern-passwd stores next to each password hash.

from access_util import (AUTH, ScramClient, auth_fields, auth_v5, connack_v5, connect_v5,
                         make_passwd, publish_v5, puback_reason_v5, skip_unless_tern)
from helpers import CONNACK, PUBACK, RawClient, unique

pytestmark = skip_unless_tern

METHOD = "SCRAM-SHA-256"


def scram_broker(broker, tmp_path):
    pw = make_passwd(tmp_path / "passwd", {"alice": "wonderland"})
    return broker(auth={"allow_anonymous": False, "chain": ["password_file"],
                        "password_file": pw})


def test_scram_exchange_succeeds(broker, tmp_path):
    b = scram_broker(broker, tmp_path)
    s = ScramClient("alice", "wonderland")
    c = RawClient(b.port)
    c.send(connect_v5(unique("scram"), auth_method=METHOD, auth_data=s.first()))
    rc, props = auth_fields(c.expect(AUTH))
    assert rc == 0x18 and props[0x15] == METHOD.encode()
    server_first = props[0x16].decode()
    c.send(auth_v5(0x18, METHOD, s.final(server_first)))
    rc, props = connack_v5(c.expect(CONNACK))
    assert rc == 0
    assert props[0x15] == METHOD.encode()
    assert s.verify_server(props[0x16].decode()), "the server proved it knows the key"
    # The session works after enhanced authentication.
    c.send(publish_v5("s/1", b"x", 1, 5))
    assert puback_reason_v5(c.expect(PUBACK, pid=5)) in (0x00, 0x10)  # accepted (0x10: no subscriber matched)


def test_scram_wrong_password_and_unknown_user(broker, tmp_path):
    b = scram_broker(broker, tmp_path)
    s = ScramClient("alice", "Xyzzy-not-it")
    c = RawClient(b.port)
    c.send(connect_v5(unique("scram"), auth_method=METHOD, auth_data=s.first()))
    _, props = auth_fields(c.expect(AUTH))
    c.send(auth_v5(0x18, METHOD, s.final(props[0x16].decode())))
    rc, _ = connack_v5(c.expect(CONNACK))
    assert rc == 0x86
    c.wait_closed()
    c = RawClient(b.port)
    c.send(connect_v5(unique("scram"), auth_method=METHOD,
                      auth_data=ScramClient("nobody", "x").first()))
    rc, _ = connack_v5(c.expect(CONNACK))
    assert rc == 0x87
    log = b.log_text()
    assert "Xyzzy-not-it" not in log
    assert 'user "alice"' in log


def test_unknown_method_and_stray_packets(broker, tmp_path):
    b = scram_broker(broker, tmp_path)
    c = RawClient(b.port)
    c.send(connect_v5(unique("m"), auth_method="KERBEROS", auth_data="x"))
    rc, _ = connack_v5(c.expect(CONNACK))
    assert rc == 0x8C
    # Anything but AUTH during the exchange closes the connection.
    s = ScramClient("alice", "wonderland")
    c = RawClient(b.port)
    c.send(connect_v5(unique("m"), auth_method=METHOD, auth_data=s.first()))
    c.expect(AUTH)
    c.send(publish_v5("t", b"x", 0, 0))
    c.wait_closed()
    b.assert_alive()
