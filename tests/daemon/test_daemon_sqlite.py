"""One `audsync daemon` process on a SQLite state: schedules, metrics, graceful and hard stops,
resuming at start, and the refusal of a second daemon on the same file."""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest

from .conftest import wait_until

pytestmark = pytest.mark.slow

USERS = [f"user{i:05d}" for i in range(600)]


def _slow_amplitude(amplitude) -> None:
    """Many small, slow requests, so that a stop lands in the middle of a delivery."""
    amplitude.delay_s = 0.15
    amplitude.max_items = 25


def _fast_amplitude(amplitude) -> None:
    amplitude.delay_s = 0.0
    amplitude.max_items = None


def _runs_of(project, key):
    return [r for r in project.runs() if r["key"] == key and r["status"] != "running"]


def test_daemon_runs_every_audience_on_its_schedule_serves_metrics_and_stops_on_sigterm_with_exit_0(
        make_project, sqlite_url, daemons):
    project = make_project(sqlite_url)
    project.members("alpha", USERS[:40])
    project.members("beta", USERS[20:70])
    config = project.write({"alpha": "every 2s", "beta": "every 2s"}, daemon="lease_ttl_s = 3")
    daemon = daemons(config)
    daemon.wait_for("daemon started")
    wait_until(lambda: len(_runs_of(project, "alpha")) >= 2 and len(_runs_of(project, "beta")) >= 2, 15,
               "two scheduled runs of each audience", daemon)
    assert project.synced_properly(), (project.runs(), daemon.output())

    # Membership changes between runs reach Amplitude on the next slot.
    project.members("alpha", USERS[10:50])
    wait_until(project.synced_properly, 10, "the changed membership to be synced")

    assert daemon.get("/healthz") == (200, "ok\n")
    # The run is counted once it has finished, just after Amplitude got the last change.
    exited = 'audsync_users_total{audience="alpha",kind="exited"} 10.0'
    metrics = wait_until(lambda: exited in daemon.get("/metrics")[1] and daemon.get("/metrics")[1], 10,
                         "the run to be counted", daemon)
    assert 'audsync_runs_total{audience="alpha",result="ok"}' in metrics
    assert 'audsync_users_total{audience="alpha",kind="entered"} 50.0' in metrics
    assert 'audsync_amplitude_responses_total{api="identify",status="200"}' in metrics
    assert 'audsync_last_success_timestamp_seconds{audience="beta"}' in metrics
    assert 'audsync_pending_users{audience="alpha"} 0.0' in metrics
    assert "audsync_up 1.0" in metrics

    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.output()
    assert time.monotonic() - started < 30
    runs = project.runs()
    starts = {(r["key"], int(r["started_at"] // 2)) for r in runs}
    assert len(starts) == len(runs), "one run per audience per 2 s slot"
    assert all(r["status"] == "ok" for r in runs), runs


def test_sigterm_mid_delivery_exits_0_records_the_stop_and_the_next_start_delivers_the_rest(
        make_project, sqlite_url, daemons, amplitude):
    project = make_project(sqlite_url)
    project.members("alpha", USERS)
    config = project.write({"alpha": "every 2s"}, daemon="lease_ttl_s = 3", delivery="concurrency = 1")
    _slow_amplitude(amplitude)
    daemon = daemons(config)
    wait_until(lambda: amplitude.items_received >= 50, 20, "the delivery to be under way", daemon)

    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.output()
    assert time.monotonic() - started < 30
    [run] = project.runs()
    assert run["status"] == "stopped"
    assert 0 < run["pending"] < len(USERS)
    assert project.pending() == run["pending"]
    assert not project.synced_properly()

    # Restart on a schedule that would not fire for an hour: the pending plan is resumed at start.
    _fast_amplitude(amplitude)
    config = project.write({"alpha": "every 1h"}, daemon="lease_ttl_s = 3")
    daemon = daemons(config)
    wait_until(lambda: project.pending() == 0, 20, "the pending plan to be delivered")
    assert project.synced_properly()
    assert daemon.wait_for("run starting")["why"] == "resume"
    daemon.signal(signal.SIGINT)
    assert daemon.wait(30) == 0, daemon.output()


def test_a_second_signal_exits_at_once_and_the_next_start_still_delivers_every_planned_change(
        make_project, sqlite_url, daemons, amplitude):
    project = make_project(sqlite_url)
    project.members("alpha", USERS)
    config = project.write({"alpha": "every 2s"}, daemon="lease_ttl_s = 30", delivery="concurrency = 1")
    arrived = threading.Event()
    amplitude.on_receive = lambda path, raw: arrived.set()
    amplitude.delay_s = 3.0  # the first stop would wait for this in-flight request
    daemon = daemons(config)
    wait_until(arrived.is_set, 20, "the delivery to be under way", daemon)
    daemon.signal(signal.SIGTERM)
    time.sleep(0.2)
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 128 + signal.SIGTERM, daemon.output()
    assert time.monotonic() - started < 2
    assert project.pending() == len(USERS)

    # Its leases (30 s TTL) are stale; the next daemon on this machine sees their holder is gone.
    amplitude.on_receive = None
    _fast_amplitude(amplitude)
    config = project.write({"alpha": "every 1h"}, daemon="lease_ttl_s = 30")
    daemon = daemons(config)
    wait_until(lambda: project.pending() == 0, 20, "the pending plan to be delivered")
    assert project.synced_properly()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.output()


def test_a_second_daemon_on_the_same_sqlite_state_is_refused_with_exit_2_naming_the_first(
        make_project, sqlite_url, daemons):
    project = make_project(sqlite_url)
    project.members("alpha", USERS[:10])
    config = project.write({"alpha": "every 1h"})
    first = daemons(config)
    first.wait_for("daemon started")

    second = daemons(config, metrics=False)
    assert second.wait(20) == 2
    message = second.output()
    assert "a SQLite state supports one daemon" in message
    assert f"host {socket.gethostname()}, pid {first.pid}" in message
    assert "PostgreSQL" in message
    assert "Traceback" not in message

    assert first.get("/healthz")[0] == 200
    first.signal(signal.SIGTERM)
    assert first.wait(30) == 0
