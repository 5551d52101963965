# Ban list: repeated authentication failures ban the client id and the address for a while.

import time

from access_util import make_passwd, raw_v5, skip_unless_tern
from helpers import RawClient, unique

pytestmark = skip_unless_tern


def test_ban_after_repeated_failures_then_expiry(broker, tmp_path):
    pw = make_passwd(tmp_path / "passwd", {"alice": "right"})
    b = broker(auth={"allow_anonymous": False, "chain": ["password_file"], "password_file": pw},
               ban={"enabled": True, "max_failures": 3, "window": "1m", "duration": "2s"})
    cid = unique("brute")
    for _ in range(3):
        assert RawClient(b.port).connect(cid, username="alice", password="guess").rc == 4
    banned_at = time.monotonic()
    # Banned: even the right password is refused (5 = not authorized in 3.1.1; 0x8A in 5.0),
    # for this client id and for any client id from this address.
    assert RawClient(b.port).connect(cid, username="alice", password="right").rc == 5
    assert RawClient(b.port).connect(unique("other"), username="alice",
                                     password="right").rc == 5
    _, rc, _ = raw_v5(b.port, unique("v5"), username="alice", password="right")
    assert rc == 0x8A
    assert "banned" in b.log_text()
    # The ban ends after its duration.
    while time.monotonic() - banned_at < 2.2:
        time.sleep(0.1)
    assert RawClient(b.port).connect(cid, username="alice", password="right").rc == 0


def test_no_ban_when_disabled(broker, tmp_path):
    pw = make_passwd(tmp_path / "passwd", {"alice": "right"})
    b = broker(auth={"allow_anonymous": False, "chain": ["password_file"], "password_file": pw})
    cid = unique("c")
    for _ in range(6):
        assert RawClient(b.port).connect(cid, username="alice", password="guess").rc == 4
    assert RawClient(b.port).connect(cid, username="alice", password="right").rc == 0
