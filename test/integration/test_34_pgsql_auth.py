# PostgreSQL authentication provider against a throw-away cluster (initdb on a free port).
# Skips, saying why, when no cluster can be started (no PostgreSQL binaries, no user to run
# it as when the tests run as root).

import glob
import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

from access_util import make_passwd, raw_v5, skip_unless_tern
from conftest import free_port
from helpers import HOST, RawClient, unique

pytestmark = skip_unless_tern


def pg_bin(name):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class Cluster:
    def __init__(self):
        self.initdb, self.pg_ctl, self.psql = pg_bin("initdb"), pg_bin("pg_ctl"), pg_bin("psql")
        if not (self.initdb and self.pg_ctl and self.psql):
            pytest.skip("PostgreSQL binaries (initdb, pg_ctl, psql) not found; "
                        "install the postgresql package")
        self.runas = []
        # PostgreSQL refuses to run as root: run it as the postgres user then.
        self.dir = tempfile.mkdtemp(prefix="tern-pg-")
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.dir, ignore_errors=True)
                pytest.skip("running as root and there is no postgres user to run the cluster")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.runas = ["runuser", "-u", "postgres", "--"]
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.started = False

    def run(self, *cmd, check=True, timeout=60):
        r = subprocess.run(self.runas + list(cmd), capture_output=True, text=True,
                           timeout=timeout, cwd=self.dir)
        if check and r.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {r.stderr or r.stdout}")
        return r

    def start(self):
        try:
            self.run(self.initdb, "-D", self.data, "-A", "trust", "-U", "postgres",
                     "--no-sync", "-E", "UTF8")
            opts = f"-p {self.port} -k {self.dir} -h {HOST} -c fsync=off"
            self.run(self.pg_ctl, "-D", self.data, "-o", opts, "-l",
                     os.path.join(self.dir, "log"), "-w", "-t", "30", "start")
            self.started = True
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            self.stop()
            pytest.skip(f"cannot start a throw-away PostgreSQL cluster: {e}")

    def sql(self, statement):
        return self.run(self.psql, "-h", HOST, "-p", str(self.port), "-U", "postgres",
                        "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", statement)

    def stop(self):
        if self.started:
            self.run(self.pg_ctl, "-D", self.data, "-m", "immediate", "-w", "stop", check=False)
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def pg():
    c = Cluster()
    c.start()
    yield c
    c.stop()


def test_pgsql_provider(broker, pg, tmp_path):
    # Hashes come from tern-passwd: the database never sees a plain password.
    passwd = make_passwd(tmp_path / "passwd", {"alice": "secret", "bob": "builder"})
    hashes = dict(line.split(":")[:2] for line in open(passwd).read().split())
    pg.sql("CREATE TABLE mqtt_user (username text PRIMARY KEY, password_hash text NOT NULL)")
    pg.sql(f"INSERT INTO mqtt_user VALUES ('alice', '{hashes['alice']}'), "
           f"('bob', '{hashes['bob']}')")
    b = broker(auth={"allow_anonymous": False, "chain": ["pgsql"],
                     "pgsql_conninfo": f"host={HOST} port={pg.port} user=postgres "
                                       f"dbname=postgres",
                     "pgsql_timeout": "3s"})
    assert RawClient(b.port).connect(unique("p"), username="alice", password="secret").rc == 0
    assert RawClient(b.port).connect(unique("p"), username="alice", password="nope").rc == 4
    assert RawClient(b.port).connect(unique("p"), username="carol", password="x").rc == 4
    assert RawClient(b.port).connect(unique("p")).rc == 5
    _, rc, _ = raw_v5(b.port, unique("p5"), username="bob", password="builder")
    assert rc == 0
    # The query is configurable; the provider keeps working after the database restarts.
    pg.run(pg.pg_ctl, "-D", pg.data, "-l", os.path.join(pg.dir, "log"), "-m", "fast", "-w",
           "restart")
    assert RawClient(b.port).connect(unique("p"), username="alice", password="secret").rc == 0
    log = b.log_text()
    assert "secret" not in log and "builder" not in log


def test_pgsql_unreachable_passes_on(broker):
    b = broker(auth={"allow_anonymous": True, "chain": ["pgsql"],
                     "pgsql_conninfo": f"host={HOST} port={free_port()} user=postgres",
                     "pgsql_timeout": "2s"})
    # The database is down: the provider passes on, anonymous lets the client in.
    assert RawClient(b.port).connect(unique("p"), username="alice", password="x").rc == 0
