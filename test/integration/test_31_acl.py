# ACL: publish and subscribe allowed and denied in MQTT 3.1.1 and 5.0 (reason codes), the
# no-match default, placeholders, Mosquitto's acl_file format, and reload on SIGHUP.

import os
import signal
import time

from access_util import (make_passwd, mosq, puback_reason_v5, publish_v5, raw_v5,
                         skip_unless_tern, subscribe_v5, suback_codes_v5)
from helpers import PUBACK, PUBREC, SUBACK, RawClient, unique

pytestmark = skip_unless_tern

RULES = """
%% test rules
{deny, all, publish, ["secret/#"]}.
{deny, all, subscribe, ["private/#", {eq, "#"}]}.
{allow, {user, "alice"}, pubsub, ["users/%u/#"]}.
{deny, all, pubsub, ["users/#"]}.
{allow, all}.
"""


def acl_broker(broker, tmp_path, rules=RULES, fmt="emqttd", no_match="allow"):
    f = tmp_path / "acl.conf"
    f.write_text(rules)
    pw = make_passwd(tmp_path / "passwd", {"alice": "a", "bob": "b"})
    b = broker(acl={"file": str(f), "format": fmt, "no_match": no_match},
               auth={"chain": ["password_file"], "password_file": pw})
    return b, f


def wait_log(b, text, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in b.log_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the log\n{b.log_tail()}")


def test_denied_publish_is_dropped_in_311(broker, tmp_path):
    b, _ = acl_broker(broker, tmp_path)
    sub = RawClient(b.port)
    sub.connect_ok()
    assert sub.subscribe([("secret/#", 1), ("open/#", 1)]).codes == [1, 1]
    pub = RawClient(b.port)
    pub.connect_ok()
    # QoS 1 and 2: acknowledged (so the client does not resend forever), never delivered.
    pub.publish_acked("secret/a", b"no", qos=1)
    pub.publish_acked("secret/b", b"no", qos=2)
    pub.publish("secret/c", b"no", qos=0)
    pub.publish_acked("open/x", b"yes", qos=1)
    got = sub.receive_publishes(1)
    assert [(p.topic, p.payload) for p in got] == [("open/x", b"yes")]
    sub.expect_no_packet(0.3)


def test_denied_publish_gets_0x87_in_v5(broker, tmp_path):
    b, _ = acl_broker(broker, tmp_path)
    c, rc, _ = raw_v5(b.port, unique("p5"))
    assert rc == 0
    c.send(publish_v5("secret/x", b"no", 1, 7))
    assert puback_reason_v5(c.expect(PUBACK, pid=7)) == 0x87
    c.send(publish_v5("secret/x", b"no", 2, 8))
    assert puback_reason_v5(c.expect(PUBREC, pid=8)) == 0x87
    c.send(publish_v5("open/x", b"yes", 1, 9))
    assert puback_reason_v5(c.expect(PUBACK, pid=9)) in (0x00, 0x10)  # accepted (0x10: no subscriber matched)
    # mosquitto_pub -V 5 reports the refusal too.
    r = mosq("pub", b.port, ["-t", "secret/y", "-m", "x", "-q", "1"], version="mqttv5")
    assert r.returncode != 0 or "not authori" in (r.stdout + r.stderr).lower()


def test_will_on_a_denied_topic_is_not_published(broker, tmp_path):
    b, _ = acl_broker(broker, tmp_path)
    sub = RawClient(b.port)
    sub.connect_ok()
    assert sub.subscribe([("secret/#", 1), ("open/#", 1)]).codes == [1, 1]
    for topic in ("secret/will", "open/will"):
        c = RawClient(b.port)
        c.connect_ok(will={"topic": topic, "payload": b"gone", "qos": 1})
        c.close()  # no DISCONNECT: the will fires
    got = sub.receive_publishes(1)
    assert [(p.topic, p.payload) for p in got] == [("open/will", b"gone")]
    sub.expect_no_packet(0.3)
    wait_log(b, "will on secret/will denied by the ACL")


def test_denied_subscribe_codes_311_and_v5(broker, tmp_path):
    b, _ = acl_broker(broker, tmp_path)
    c = RawClient(b.port)
    c.connect_ok()
    assert c.subscribe([("private/x", 1), ("ok/x", 1), ("#", 0), ("a/#", 0)]).codes == \
        [0x80, 1, 0x80, 0]
    c5, rc, _ = raw_v5(b.port, unique("s5"))
    assert rc == 0
    c5.send(subscribe_v5(3, [("private/x", 1), ("ok/x", 2), ("#", 0)]))
    assert suback_codes_v5(c5.expect(SUBACK, pid=3)) == [0x87, 2, 0x87]
    # A denied filter was not subscribed: nothing published there arrives.
    pub = RawClient(b.port)
    pub.connect_ok()
    pub.publish_acked("private/x", b"p", qos=1)
    pub.publish_acked("ok/x", b"ok", qos=1)
    got = c.receive_publishes(1)
    assert got[0].topic == "ok/x"
    c.expect_no_packet(0.3)
    r = mosq("sub", b.port, ["-t", "private/#", "-C", "1", "-W", "2"], version="mqttv311")
    assert "denied" in r.stderr


def test_placeholders_and_users(broker, tmp_path):
    b, _ = acl_broker(broker, tmp_path)
    alice = RawClient(b.port)
    alice.connect_ok(username="alice", password="a")
    assert alice.subscribe([("users/alice/#", 1), ("users/bob/#", 1)]).codes == [1, 0x80]
    bob = RawClient(b.port)
    bob.connect_ok(username="bob", password="b")
    assert bob.subscribe([("users/bob/#", 1)]).codes == [0x80]
    alice.publish("users/alice/x", b"mine", qos=0)
    assert alice.receive_publishes(1)[0].payload == b"mine"
    bob.publish("users/alice/x", b"not bob's", qos=0)   # denied for bob
    alice.expect_no_packet(0.3)


def test_no_match_deny(broker, tmp_path):
    b, _ = acl_broker(broker, tmp_path, rules='{allow, all, subscribe, ["in/#"]}.\n',
                      no_match="deny")
    c = RawClient(b.port)
    c.connect_ok()
    assert c.subscribe([("in/1", 1), ("out/1", 1)]).codes == [1, 0x80]
    c.publish_acked("in/1", b"x", qos=1)  # publish: no rule matches -> denied
    c.expect_no_packet(0.3)


def test_sighup_reload_changes_decisions(broker, tmp_path):
    b, f = acl_broker(broker, tmp_path)
    c = RawClient(b.port)
    c.connect_ok()
    assert c.subscribe([("secret/#", 1)]).codes == [1]
    p = RawClient(b.port)
    p.connect_ok()
    p.publish_acked("secret/1", b"before", qos=1)   # denied (and now cached)
    c.expect_no_packet(0.3)
    f.write_text("{allow, all}.\n")
    os.kill(b.pid, signal.SIGHUP)
    wait_log(b, "SIGHUP: access files reloaded")
    # The same, still connected clients: the cache was flushed with the reload.
    p.publish_acked("secret/2", b"after", qos=1)
    assert c.receive_publishes(1)[0].payload == b"after"
    assert c.subscribe([("private/x", 0)]).codes == [0]
    # A broken file keeps the previous rules and says which line is wrong.
    f.write_text("{allow, all}.\n{deny, all, publish, [\"x\"]\n")
    os.kill(b.pid, signal.SIGHUP)
    wait_log(b, "reload failed")
    assert f"{f}:" in b.log_text()
    p.publish_acked("secret/3", b"still", qos=1)
    assert c.receive_publishes(1)[0].payload == b"still"
    b.assert_alive()


def test_mosquitto_acl_file(broker, tmp_path):
    rules = """# anonymous
topic read public/#
user alice
topic readwrite alice/#
pattern write devices/%c/out
"""
    b, _ = acl_broker(broker, tmp_path, rules=rules, fmt="mosquitto", no_match="deny")
    anon = RawClient(b.port)
    anon.connect_ok("dev1")
    assert anon.subscribe([("public/#", 1), ("alice/#", 1)]).codes == [1, 0x80]
    alice = RawClient(b.port)
    alice.connect_ok(username="alice", password="a")
    assert alice.subscribe([("alice/#", 1), ("public/#", 1)]).codes == [1, 0x80]
    anon.publish_acked("devices/dev1/out", b"reading", qos=1)
    anon.publish_acked("public/x", b"no", qos=1)  # read-only for anonymous
    alice.publish("alice/1", b"a1", qos=0)
    assert alice.receive_publishes(1)[0].payload == b"a1"
    alice.expect_no_packet(0.2)
    sub = RawClient(b.port)
    sub.connect_ok()
    assert sub.subscribe([("devices/dev1/out", 1)]).codes == [0x80]  # write only
