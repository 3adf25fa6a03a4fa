"""Three `audsync daemon` processes sharing the real PostgreSQL state: every audience runs once per
slot, runs of one audience never overlap, audiences spread over the workers, and a killed worker's
audience resumes on another one with nothing lost."""

from __future__ import annotations

import signal
import time

import pytest

from audsync.config import load
from audsync.state import StateStore
from audsync.sync import lease_name

from .conftest import wait_until

pytestmark = pytest.mark.slow

KEYS = ["alpha", "beta", "gamma"]
USERS = [f"user{i:05d}" for i in range(900)]


def _finished(project):
    return [r for r in project.runs() if r["finished_at"] is not None]


def _assert_no_overlap(runs, killed_at: float | None = None):
    """Intervals of one audience never intersect; a run killed with its worker counts as running
    until it was killed."""
    for key in KEYS:
        mine = sorted((r for r in runs if r["key"] == key), key=lambda r: r["started_at"])
        for before, after in zip(mine, mine[1:]):
            end = before["finished_at"]
            if end is None:
                assert killed_at is not None, f"{key}: run {before['id']} never finished"
                end = killed_at
            assert after["started_at"] >= end, f"{key}: runs {before['id']} and {after['id']} overlap"


def test_three_workers_on_postgresql_run_each_slot_once_never_overlap_and_survive_a_killed_worker(
        make_project, pg_url, daemons, amplitude):
    project = make_project(pg_url)
    for n, key in enumerate(KEYS):
        project.members(key, USERS[n * 100:n * 100 + 150])
    config = project.write({key: "every 2s" for key in KEYS},
                           daemon="lease_ttl_s = 4\nmisfire_grace_s = 5\nstop_timeout_s = 10",
                           delivery="concurrency = 1")
    # Each worker on its own (simulated) machine: takeover has to wait for the lease to expire.
    workers = [daemons(config, hostname=f"worker-{n}") for n in range(3)]
    for w in workers:
        w.wait_for("daemon started", timeout=30)

    # Steady state: every audience runs on schedule, once per 2 s slot, never overlapping itself.
    wait_until(lambda: all(sum(r["key"] == k for r in _finished(project)) >= 4 for k in KEYS), 30,
               "four runs of every audience", *workers)
    assert project.synced_properly()
    runs = _finished(project)
    _assert_no_overlap(runs)
    slots = [(r["key"], int(r["started_at"] // 2)) for r in runs]
    assert len(set(slots)) == len(slots), "a slot ran twice"
    ran = {w.pid for w in workers if w.finished_runs()}
    assert len(ran) >= 2, "audiences did not spread over the workers"

    status, metrics = workers[0].get("/metrics")
    assert status == 200 and "audsync_runs_total" in metrics and "audsync_up 1.0" in metrics
    assert all(w.get("/healthz") == (200, "ok\n") for w in workers)

    # A big change, delivered slowly: kill the worker that is delivering it.
    amplitude.delay_s = 0.3
    amplitude.max_items = 40
    project.members("alpha", USERS[50:150] + USERS[400:900])  # a third leave: under the mass-exit guard
    cfg = load(config, environ={})
    store = StateStore(pg_url)
    try:
        lease = lease_name(cfg, cfg.audience("alpha"))
        changed_at = time.time()

        def delivering_holder():
            info = store.lease_info(lease)
            if info is None or amplitude.items_received == 0:
                return None
            return next((w for w in workers if w.pid == info.pid), None) if any(
                r["key"] == "alpha" and r["status"] == "running" and r["started_at"] > changed_at
                for r in project.runs()) else None

        received = amplitude.items_received
        victim = wait_until(lambda: amplitude.items_received > received and delivering_holder(), 30,
                            "a worker delivering the change", *workers)
    finally:
        store.close()
    victim.kill()
    killed_at = time.time()
    survivors = [w for w in workers if w is not victim]

    # Another worker takes the audience over once the lease expires, and delivers everything.
    amplitude.delay_s = 0.0
    amplitude.max_items = None
    def resumed_elsewhere():
        return project.synced_properly() and project.pending() == 0 and any(
            r["key"] == "alpha" and r["started_at"] > killed_at and r["status"] == "ok" for r in project.runs())

    wait_until(resumed_elsewhere, 40, "the killed worker's audience to be resumed elsewhere", *survivors)
    runs = project.runs()
    dead = [r for r in runs if r["key"] == "alpha" and r["status"] in ("running", "interrupted")]
    logs = "".join(f"\n--- worker {w.pid} ---\n{w.output()[-3000:]}" for w in workers)
    assert len(dead) == 1 and dead[0]["started_at"] > changed_at, f"{runs}\n{logs}"
    resumed = [r for r in runs if r["key"] == "alpha" and r["started_at"] > killed_at and r["status"] == "ok"]
    assert resumed[0]["started_at"] >= killed_at + 2, "taken over before the dead worker's lease could expire"
    assert resumed, f"{runs}\n{logs}"
    assert {r["run_id"] for w in survivors for r in w.finished_runs() if r["audience"] == "alpha"} & {
        r["id"] for r in resumed}
    _assert_no_overlap(runs, killed_at)

    for w in survivors:
        w.signal(signal.SIGTERM)
    for w in survivors:
        assert w.wait(30) == 0, w.output()
