"""The daemon in this process (no signals): /healthz turns 503 as soon as a stop is asked for, the
running run finishes its in-flight batch and records the stop, and the metrics say what happened."""

from __future__ import annotations

import threading

from audsync.config import load
from audsync.daemon.metrics import Metrics, MetricsServer
from audsync.daemon.scheduler import Daemon

from .conftest import get_url, wait_until

USERS = [f"user{i:05d}" for i in range(300)]


def test_healthz_answers_200_while_healthy_and_503_otherwise():
    healthy = [True]
    server = MetricsServer(Metrics(), 0, lambda: healthy[0], host="127.0.0.1").start()
    try:
        assert get_url(f"http://127.0.0.1:{server.port}/healthz") == (200, "ok\n")
        healthy[0] = False
        assert get_url(f"http://127.0.0.1:{server.port}/healthz") == (503, "stopping\n")
        assert get_url(f"http://127.0.0.1:{server.port}/nothing")[0] == 404
    finally:
        server.stop()


def test_a_stop_during_delivery_turns_healthz_to_503_and_records_the_stopped_run_in_the_metrics(
        make_project, sqlite_url, amplitude):
    project = make_project(sqlite_url)
    project.members("alpha", USERS)
    config = load(project.write({"alpha": "every 1s"}, delivery="concurrency = 1"), environ={})
    arrived = threading.Event()
    amplitude.on_receive = lambda path, raw: arrived.set()
    amplitude.delay_s = 1.0
    daemon = Daemon(config, metrics_port=0, metrics_host="127.0.0.1")
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(daemon.run()))
    thread.start()
    try:
        assert arrived.wait(20), "no delivery started"
        url = f"http://127.0.0.1:{daemon.metrics_server.port}"
        assert get_url(url + "/healthz") == (200, "ok\n")
        daemon.request_stop()
        assert get_url(url + "/healthz") == (503, "stopping\n")
        assert "audsync_up 0.0" in get_url(url + "/metrics")[1]
    finally:
        daemon.request_stop()
        thread.join(30)
    assert result == [0]
    [run] = project.runs()
    assert run["status"] == "stopped" and run["delivered"] == len(USERS) and run["pending"] == 0
    text = daemon.metrics.render().decode()
    assert 'audsync_runs_total{audience="alpha",result="stopped"} 1.0' in text
    assert 'audsync_users_total{audience="alpha",kind="delivered"} 300.0' in text
    assert 'audsync_amplitude_responses_total{api="identify",status="200"} 1.0' in text
    assert 'audsync_last_success_timestamp_seconds{audience="alpha"}' not in text
    wait_until(lambda: not thread.is_alive(), 5, "the daemon thread to end")


def test_a_guarded_run_is_recorded_as_guarded_in_the_runs_table_and_the_metrics(make_project, sqlite_url, amplitude):
    from audsync.sync import run_once

    project = make_project(sqlite_url)
    project.members("alpha", USERS)
    path = project.write({"alpha": "every 1s"})
    assert run_once(load(path, environ={})).exit_code == 0
    amplitude.clear()
    project.members("alpha", USERS[:100])  # two thirds would leave: the daemon has no way to allow it
    daemon = Daemon(load(path, environ={}))
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        wait_until(lambda: any(r["status"] == "guarded" for r in project.runs()), 20, "a guarded run")
    finally:
        daemon.request_stop()
        thread.join(30)
    assert 'audsync_runs_total{audience="alpha",result="guarded"}' in daemon.metrics.render().decode()
    assert {r["status"] for r in project.runs()[1:]} == {"guarded"}
    assert amplitude.identifies == []
