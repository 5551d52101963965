# The dashboard at / in a real headless browser (Debian's chromium): the page loads, its
# JavaScript signs in from the URL fragment, calls the API and shows the connected clients.

import os
import shutil
import subprocess

import pytest

import mgmt_helpers as mh
from helpers import unique

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def dump_dom(url, profile, budget_ms=8000):
    args = [CHROMIUM, "--headless", "--disable-gpu", "--no-first-run", "--disable-extensions",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}", "--dump-dom", url]
    if os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # chromium refuses to run as root with its sandbox
    r = subprocess.run(args, capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, f"chromium failed ({r.returncode}): {r.stderr[-2000:]}"
    return r.stdout


@pytest.fixture
def chromium():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (scripts/setup.sh installs it): "
                    "the dashboard browser test cannot run")
    return CHROMIUM


def test_static_files_are_served(broker):
    node = mh.start(broker)
    api = mh.Api(node.http_port, authorization="")
    for path, kind in (("/", "text/html"), ("/index.html", "text/html"),
                       ("/app.js", "text/javascript"), ("/style.css", "text/css")):
        status, headers, body = api.request("GET", path)
        assert status == 200 and headers["content-type"].startswith(kind), path
        assert len(body) > 100
    assert b"/app.js" in api.request("GET", "/")[2]
    assert api.request("GET", "/nope.js")[0] == 401  # unknown paths are API paths


def test_dashboard_shows_connected_clients(broker, clients, chromium, tmp_path):
    node = mh.start(broker)
    ids = [unique("dash-a"), unique("dash-b")]
    for cid in ids:
        c = clients.paho(node.port, client_id=cid)
        c.subscribe(f"dash/{cid}/#", qos=1)
    url = (f"http://127.0.0.1:{node.http_port}/#user={mh.USER}&password={mh.PASSWORD}")
    dom = dump_dom(url, tmp_path / "profile")
    assert 'id="clients"' in dom
    for cid in ids:
        assert f'<td class="clientid">{cid}</td>' in dom, dom[-3000:]
        assert f"dash/{cid}/#" in dom  # subscriptions table
    assert "tern@127.0.0.1" in dom  # node overview
    assert "Cannot reach the node" not in dom


def test_dashboard_without_credentials_shows_sign_in(broker, chromium, tmp_path):
    node = mh.start(broker)
    dom = dump_dom(f"http://127.0.0.1:{node.http_port}/", tmp_path / "profile", 3000)
    assert '<form id="login">' in dom  # visible: no hidden attribute
    assert '<main id="main" hidden="">' in dom
