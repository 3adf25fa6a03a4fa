"""`audsync daemon` at start and stop: a state database that cannot be reached yet (not created,
server down) is waited for, each attempt logged, instead of ending the daemon; SIGTERM still stops
it. A run that outlasts daemon.stop_timeout_s is abandoned with exit 1, as README says."""

from __future__ import annotations

import signal
import socket
import threading
import uuid

import pytest
import sqlalchemy as sa

from .conftest import wait_until

pytestmark = pytest.mark.slow


def test_the_daemon_waits_for_a_state_database_created_after_it_started_then_runs(
        make_project, pg_url, daemons):
    base, _ = pg_url.rsplit("/", 1)
    name = f"audsync_late_{uuid.uuid4().hex[:12]}"
    project = make_project(f"{base}/{name}")
    project.members("alpha", [f"user{i:05d}" for i in range(30)])
    daemon = daemons(project.write({"alpha": "every 1s"}))
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        first = daemon.wait_for("attempt 1 failed")
        assert first["level"] == "warning" and first["retry_in_s"] == 1.0
        assert f"{name}" in first["message"] and "does not exist" in first["message"]
        daemon.wait_for("attempt 2 failed")  # it keeps trying, with a longer pause
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        daemon.wait_for("daemon started", timeout=30)
        wait_until(project.synced_properly, 20, "the audience to be synced", daemon)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0, daemon.output()
    finally:
        daemon.kill()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def test_sigterm_stops_a_daemon_still_waiting_for_its_state_database_with_exit_0(make_project, daemons):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    project = make_project(f"postgresql+psycopg://postgres@127.0.0.1:{port}/state")
    daemon = daemons(project.write({"alpha": None}))
    record = daemon.wait_for("attempt 1 failed")
    assert f"127.0.0.1:{port}" in record["message"] and "trying again at" in record["message"]
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0, daemon.output()
    assert "daemon stopped before the state database could be reached" in daemon.output()


def test_a_run_outlasting_the_stop_timeout_is_abandoned_and_the_daemon_exits_1_as_documented(
        make_project, sqlite_url, daemons, amplitude):
    release = threading.Event()
    arrived = threading.Event()

    def hold(path, raw):
        arrived.set()
        release.wait(30)

    amplitude.on_receive = hold
    project = make_project(sqlite_url)
    project.members("alpha", [f"user{i:05d}" for i in range(30)])
    daemon = daemons(project.write({"alpha": "every 1s"}, daemon="stop_timeout_s = 0.5"))
    try:
        assert arrived.wait(30), daemon.output()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 1, daemon.output()
    finally:
        release.set()
    assert "stop timeout (0.5 s, daemon.stop_timeout_s): abandoning runs of alpha" in daemon.output()
