# Authentication: anonymous off, the password file (tern-passwd), the client id allow-list,
# CONNACK codes for MQTT 3.1.1 and 5.0, log lines without passwords, the failure counter.

import os
import signal
import subprocess
import time

import helpers
from access_util import make_passwd, mosq, raw_v5, skip_unless_tern, tern_passwd_bin
from helpers import RawClient, unique

pytestmark = skip_unless_tern

NOT_AUTHORIZED_V3 = 5
BAD_CREDENTIALS_V3 = 4
BAD_CREDENTIALS_V5 = 0x86
NOT_AUTHORIZED_V5 = 0x87


def password_broker(broker, tmp_path, anonymous=False, **extra):
    pw = make_passwd(tmp_path / "passwd", {"alice": "wonderland", "bob": "builder"})
    return broker(auth={"allow_anonymous": anonymous, "chain": ["password_file"],
                        "password_file": pw}, **extra)


def test_anonymous_off_refuses_clients_without_credentials(broker, tmp_path):
    b = password_broker(broker, tmp_path)
    c = RawClient(b.port)
    assert c.connect(unique("anon")).rc == NOT_AUTHORIZED_V3
    c.wait_closed()
    _, rc, _ = raw_v5(b.port, unique("anon5"))
    assert rc == NOT_AUTHORIZED_V5
    r = mosq("pub", b.port, ["-t", "t", "-m", "x"])
    assert r.returncode != 0
    assert "not authori" in (r.stderr + r.stdout).lower()


def test_password_file_good_and_bad(broker, tmp_path):
    b = password_broker(broker, tmp_path)
    # Good password: mosquitto_pub/sub work (3.1.1 and 5.0).
    topic = unique("pw")
    sub = helpers.MosquittoSub(b.port, topic, count=1, extra=["-u", "alice", "-P", "wonderland"])
    sub.wait_subscribed()
    r = mosq("pub", b.port, ["-t", topic, "-m", "hello"], user="bob", password="builder")
    assert r.returncode == 0, r.stderr
    assert sub.expect_lines(1) == [f"{topic} hello"]
    r = mosq("pub", b.port, ["-t", topic, "-m", "v5"], user="bob", password="builder",
             version="mqttv5")
    assert r.returncode == 0, r.stderr
    # Wrong password / unknown user: 4 (3.1.1), 0x86 (5.0).
    c = RawClient(b.port)
    assert c.connect(unique("c"), username="alice", password="wrong").rc == BAD_CREDENTIALS_V3
    c = RawClient(b.port)
    assert c.connect(unique("c"), username="mallory", password="x").rc == BAD_CREDENTIALS_V3
    c = RawClient(b.port)
    assert c.connect(unique("c"), username="alice").rc == BAD_CREDENTIALS_V3
    _, rc, _ = raw_v5(b.port, unique("c5"), username="alice", password="wrong")
    assert rc == BAD_CREDENTIALS_V5
    _, rc, _ = raw_v5(b.port, unique("c5"), username="alice", password="wonderland")
    assert rc == 0
    r = mosq("pub", b.port, ["-t", topic, "-m", "x"], user="alice", password="nope")
    assert r.returncode != 0
    # The log names the client and user, never the password.
    log = b.log_text()
    assert "authentication failed" in log and "alice" in log
    assert "wrong" not in log.replace("wrong password", "")
    assert "nope" not in log and "wonderland" not in log


def test_anonymous_on_still_checks_given_passwords(broker, tmp_path):
    b = password_broker(broker, tmp_path, anonymous=True)
    assert RawClient(b.port).connect(unique("a")).rc == 0
    assert RawClient(b.port).connect(unique("a"), username="alice",
                                     password="wonderland").rc == 0
    assert RawClient(b.port).connect(unique("a"), username="alice",
                                     password="bad").rc == BAD_CREDENTIALS_V3


def test_password_change_takes_effect_on_sighup(broker, tmp_path):
    b = password_broker(broker, tmp_path)
    pw = str(tmp_path / "passwd")
    r = subprocess.run([tern_passwd_bin(), "-I", "1000", "passwd", pw, "alice", "looking-glass"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    # Not yet reloaded: the old password still works.
    assert RawClient(b.port).connect(unique("a"), username="alice",
                                     password="wonderland").rc == 0
    os.kill(b.pid, signal.SIGHUP)
    wait_log(b, "SIGHUP: access files reloaded")
    assert RawClient(b.port).connect(unique("a"), username="alice",
                                     password="wonderland").rc == BAD_CREDENTIALS_V3
    assert RawClient(b.port).connect(unique("a"), username="alice",
                                     password="looking-glass").rc == 0


def wait_log(b, text, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in b.log_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"log line {text!r} not seen\n{b.log_tail()}")


def test_tern_passwd_manages_the_file(tmp_path):
    pw = tmp_path / "users"
    tp = tern_passwd_bin()

    def run(*args, stdin=None):
        return subprocess.run([tp, "-I", "1000", *args], input=stdin, capture_output=True,
                              text=True, timeout=30)

    assert run("add", str(pw), "u1", "p1").returncode == 0
    assert run("add", str(pw), "u2", stdin="p2\n").returncode == 0
    assert run("add", str(pw), "u1", "again").returncode != 0   # exists
    assert run("list", str(pw)).stdout.split() == ["u1", "u2"]
    text = pw.read_text()
    assert "p1" not in text.replace("$", " ").split() and ":$7$1000$" in text
    assert oct(pw.stat().st_mode & 0o777) == "0o600"
    assert run("passwd", str(pw), "nobody", "x").returncode != 0
    assert run("del", str(pw), "u1").returncode == 0
    assert run("list", str(pw)).stdout.split() == ["u2"]
    assert run("add", str(pw), "bad:name", "x").returncode != 0
    assert run("list", str(tmp_path / "missing")).returncode != 0


def test_clientid_allow_list(broker, tmp_path):
    ids = tmp_path / "clients"
    ids.write_text("# allowed\nsensor-1\nsensor-2 127.0.0.1\nsensor-3 10.0.0.0/8\n")
    b = broker(auth={"allow_anonymous": False, "chain": ["clientid"],
                     "clientid_file": str(ids)})
    assert RawClient(b.port).connect("sensor-1").rc == 0
    assert RawClient(b.port).connect("sensor-2").rc == 0
    assert RawClient(b.port).connect("sensor-3").rc == NOT_AUTHORIZED_V3  # wrong address
    assert RawClient(b.port).connect("intruder").rc == NOT_AUTHORIZED_V3
    _, rc, _ = raw_v5(b.port, "intruder")
    assert rc == NOT_AUTHORIZED_V5


def test_bad_access_config_names_the_file_line(tmp_path):
    acl = tmp_path / "acl.conf"
    acl.write_text("{allow, all}.\n{allow, {user, \"x\"}, publish}.\n")
    conf = tmp_path / "bad.toml"
    conf.write_text(f'[acl]\nfile = "{acl}"\n')
    r = subprocess.run([os.environ["TERN_BROKER_NODE"], "--config", str(conf),
                        "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d")],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert f"{acl}:2:" in r.stderr + r.stdout


def test_auth_failure_closes_only_that_connection(broker, tmp_path):
    b = password_broker(broker, tmp_path)
    c = RawClient(b.port)
    assert c.connect(unique("x"), username="bob", password="x").rc == BAD_CREDENTIALS_V3
    c.wait_closed()
    b.assert_alive()
