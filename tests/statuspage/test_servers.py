"""The page where it is served: `audsync daemon --metrics-port` and `audsync serve`, as
subprocesses of the installed command, on the state the syncs made."""

from __future__ import annotations

import signal

from daemon.conftest import DaemonProc  # tests/daemon/conftest.py
from ingest.conftest import ServeProc  # tests/ingest/conftest.py

from .conftest import HOSTILE_KEY, HOSTILE_NAME
from .pages import fetch


def _check(base: str) -> None:
    status, headers, body = fetch(base + "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Buyers" in body and HOSTILE_NAME not in body
    assert 'id="ingest"' in body  # serve's write keys are configured: the ingest section shows
    status, _, body = fetch(f"{base}/audiences/{HOSTILE_KEY}")
    assert status == 200 and '<table id="runs">' in body
    assert fetch(base + "/", "POST")[0] == 405
    assert fetch(base + "/audiences/nope")[0] == 404


def test_the_daemon_serves_the_page_on_its_metrics_port(status_state):
    daemon = DaemonProc(status_state.path)
    try:
        _check(f"http://127.0.0.1:{daemon.metrics_port}")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0, daemon.output()
    finally:
        daemon.kill()


def test_serve_serves_the_page_on_its_port(status_state):
    serve = ServeProc(status_state.path)
    try:
        _check(f"http://127.0.0.1:{serve.port}")
        metrics = fetch(f"http://127.0.0.1:{serve.port}/metrics")[2]
        assert 'audsync_ingest_requests_total{code="200"}' not in metrics  # page views are not clients' requests
        # A client beyond this host (here through a proxy on it, which names the client as
        # uvicorn trusts a loopback proxy to) is refused the page, which shows user ids.
        status, _, body = fetch(f"http://127.0.0.1:{serve.port}/", headers={"X-Forwarded-For": "203.0.113.9"})
        assert status == 403 and "answers only on this host" in body and "user-" not in body
        assert fetch(f"http://127.0.0.1:{serve.port}/audiences/{HOSTILE_KEY}",
                     headers={"X-Forwarded-For": "203.0.113.9"})[0] == 403
        serve.signal(signal.SIGTERM)
        assert serve.wait(30) == 0, serve.output()
    finally:
        serve.kill()
