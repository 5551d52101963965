# Hooks: the audit-log hook records every hook point as the broker runs them.

import time

from access_util import skip_unless_tern
from helpers import RawClient, unique

pytestmark = skip_unless_tern

ALL_POINTS = [
    "client.connect", "client.connected", "client.disconnected", "client.authenticate",
    "client.check_acl", "client.subscribe", "client.unsubscribe", "session.created",
    "session.subscribed", "session.terminated", "message.publish", "message.delivered",
    "message.acked", "message.dropped",
]


def wait_for_lines(path, predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if predicate(lines):
            return lines
        time.sleep(0.05)
    raise AssertionError("audit log never matched; it has:\n" + "\n".join(lines))


def events(lines):
    return [line.split(" ")[1] for line in lines]


def test_every_hook_point_fires(broker, tmp_path):
    audit = tmp_path / "audit.log"
    acl = tmp_path / "acl.conf"
    acl.write_text('{deny, all, publish, ["blocked/#"]}.\n{allow, all}.\n')
    b = broker(hooks={"audit_log": str(audit), "audit_events": ALL_POINTS},
               acl={"file": str(acl)})
    cid = unique("hook")
    c = RawClient(b.port)
    c.connect_ok(cid, username="u1", password="pw")
    assert c.subscribe([("h/#", 1)]).codes == [1]
    c.publish("h/1", b"x", qos=0)
    got = c.receive_publishes(1)
    assert got[0].topic == "h/1"
    pub = RawClient(b.port)
    pub.connect_ok(unique("pub"))
    pub.publish_acked("h/2", b"y", qos=1)
    got = c.receive_publishes(1)      # QoS 1, acked by the helper: message.acked
    assert got[0].topic == "h/2"
    c.publish("blocked/1", b"no", qos=0)   # denied by ACL: message.dropped
    c.unsubscribe("h/#")
    c.send(b"\xe0\x00")  # DISCONNECT
    c.wait_closed()
    lines = wait_for_lines(audit, lambda ls: set(ALL_POINTS) <= set(events(ls)))
    mine = [line for line in lines if f"client={cid}" in line]
    seen = events(mine)
    for p in ALL_POINTS:
        assert p in seen, f"{p} not in {seen}"
    # Order of the connection's life, and the details of some events.
    assert seen.index("client.connect") < seen.index("client.authenticate") < \
        seen.index("client.connected") < seen.index("client.disconnected")
    auth = next(line for line in mine if " client.authenticate " in line)
    assert "user=u1" in auth and "verdict=allow" in auth and "pw" not in auth.split("peer=")[0]
    assert any(" client.connected " in line and "code=0" in line for line in mine)
    assert any(" message.dropped " in line and "topic=blocked/1" in line and "reason=acl" in line
               for line in mine)
    assert any(" client.check_acl " in line and "topic=blocked/1" in line and
               "verdict=deny" in line for line in mine)
    assert any(" session.subscribed " in line and "topic=h/# qos=1" in line for line in mine)


def test_audit_log_default_events_and_refused_connect(broker, tmp_path):
    audit = tmp_path / "audit.log"
    b = broker(hooks={"audit_log": str(audit)}, auth={"allow_anonymous": False})
    cid = unique("refused")
    assert RawClient(b.port).connect(cid).rc == 5
    lines = wait_for_lines(audit, lambda ls: any(cid in line for line in ls))
    line = next(line for line in lines if cid in line)
    assert " client.connected " in line and "code=5" in line
    # Not configured: no publish events in the default set.
    assert not any("message." in line for line in lines)
