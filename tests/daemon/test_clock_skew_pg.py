"""Two `audsync daemon` workers sharing the real PostgreSQL state, one on a machine whose clock is
30 s ahead (libfaketime shifts that whole process's clock): schedule slots and run times come from
the database's clock, so every slot runs once, none is skipped, and both workers share them."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from libfaketime import get_reload_information

from audsync.state import StateStore

from .conftest import wait_until

pytestmark = pytest.mark.slow

SKEW_S = 30
PERIOD_S = 4  # not a divisor of the skew: on its own clock the fast worker fires mid-slot
KEYS = ["alpha", "beta"]
SLOTS = 5


def clock_ahead_env() -> dict[str, str]:
    _, env = get_reload_information()
    env = dict(env, FAKETIME=f"+{SKEW_S}s")
    seen = subprocess.run([sys.executable, "-c", "import time; print(time.time())"], env=env,
                          capture_output=True, text=True, check=True)
    assert abs(float(seen.stdout) - time.time() - SKEW_S) < 5, "libfaketime did not shift the clock"
    return env


def test_two_workers_whose_clocks_differ_by_30s_run_every_slot_once_and_skip_none(
        make_project, pg_url, daemons):
    project = make_project(pg_url)
    for n, key in enumerate(KEYS):
        project.members(key, [f"user{n}{i:04d}" for i in range(20)])
    config = project.write({key: f"every {PERIOD_S}s" for key in KEYS},
                           daemon="lease_ttl_s = 4\nmisfire_grace_s = 10\nstop_timeout_s = 10")
    exact = daemons(config, hostname="worker-exact")
    exact.wait_for("daemon started", timeout=30)
    wait_until(lambda: {r["key"] for r in project.runs() if r["finished_at"]} == set(KEYS), 30,
               "a first run of every audience", exact)
    fast = daemons(config, hostname="worker-fast", env_extra=clock_ahead_env())
    fast.wait_for("daemon started", timeout=30)
    store = StateStore(pg_url)
    try:
        joined = store.clock()

        def since_joined():
            return [r for r in project.runs() if r["started_at"] >= joined]

        wait_until(lambda: all(sum(r["key"] == k and r["finished_at"] is not None for r in since_joined())
                               >= SLOTS for k in KEYS), 60, f"{SLOTS} runs of every audience", exact, fast)
        now = store.clock()
    finally:
        store.close()
    runs = [r for r in since_joined() if r["finished_at"] is not None]
    logs = "".join(f"\n--- {d.pid} ---\n{d.output()[-3000:]}" for d in (exact, fast))
    assert all(r["started_at"] <= now for r in runs), f"a run recorded as started in the future: {runs}"
    for key in KEYS:
        slots = sorted(int(r["started_at"] // PERIOD_S) for r in runs if r["key"] == key)
        assert len(set(slots)) == len(slots), f"{key}: a slot ran twice: {slots}{logs}"
        assert slots == list(range(slots[0], slots[-1] + 1)), f"{key}: a slot was skipped: {slots}{logs}"
    assert fast.finished_runs() and exact.finished_runs(), f"the workers did not share the slots{logs}"
