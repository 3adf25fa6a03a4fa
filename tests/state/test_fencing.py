"""Fencing: a run whose lease expired and was taken over (its renewals stalled: a paused process,
a cut-off network) can no longer plan or settle; what it tries changes nothing. On SQLite and
PostgreSQL."""

import time
from collections import Counter

import pytest

from audsync.delivery import Outcomes
from audsync.errors import StateError
from audsync.state import Fence

LEASE = "audience:d:k"


def _plan(store, aud, run, users, fence):
    with store.work(aud.id) as work:
        work.load(iter([[(u, None, None) for u in users]]), computed=False)
        work.build_current(computed=False)
        return work.plan(run, "audience", fence=fence)


def _state(store, aud):
    """Everything a run writes for its audience."""
    pending = sorted(tuple(row) for page in store.pending_pages(aud.id) for row in page)
    return store.members(aud.id), pending, store.rejections(aud.id), store.audience_counts(aud.id)


def _taken_over_after_a_stall(store, a):
    """A's last renewal gives it a short while; then it stalls, and B takes the lease once it expired."""
    assert store.acquire_lease(LEASE, a.holder, 0.3)
    while not store.acquire_lease(LEASE, "B", 30):
        time.sleep(0.05)


def test_a_run_that_lost_its_lease_cannot_settle_and_changes_nothing(store):
    aud = store.ensure_audience("d", "k", "K", "audience")
    a = Fence(LEASE, "A", "audience 'K'")
    assert store.acquire_lease(LEASE, a.holder, 30)
    run_a = store.start_run(aud.id, "run")
    assert _plan(store, aud, run_a, [f"user{i:04d}" for i in range(6)], a) == {"enter": 6}
    store.settle(aud.id, run_a, ["uuser0000"], [], fence=a)  # while A holds the lease
    _taken_over_after_a_stall(store, a)
    # B plans the audience as it now is: three users left it.
    run_b = store.start_run(aud.id, "run")
    assert _plan(store, aud, run_b, ["user0003", "user0004", "user0005"], Fence(LEASE, "B", "audience 'K'"))
    before = _state(store, aud)
    with pytest.raises(StateError, match="audience 'K': this run lost its lease"):
        store.settle(aud.id, run_a, [f"uuser{i:04d}" for i in range(1, 6)], [], fence=a)
    assert _state(store, aud) == before
    with pytest.raises(StateError, match="lost its lease"):
        with store.settlement(aud.id, run_a, a, plan=Counter(enter=6)) as settlement:
            settlement.add(Outcomes([f"uuser{i:04d}" for i in range(1, 6)], "delivered", "identify", None,
                                    ("uuser0001", "uuser0005"), (1, 5)))
    assert _state(store, aud) == before


def test_a_run_that_lost_its_lease_cannot_plan_and_changes_nothing(store):
    aud = store.ensure_audience("d", "k", "K", "audience")
    a = Fence(LEASE, "A", "audience 'K'")
    assert store.acquire_lease(LEASE, a.holder, 30)
    run_a = store.start_run(aud.id, "run")
    _taken_over_after_a_stall(store, a)
    before = _state(store, aud)
    with pytest.raises(StateError, match="audience 'K': this run lost its lease"):
        _plan(store, aud, run_a, ["user0001", "user0002"], a)
    assert _state(store, aud) == before
    assert store.find_audience("d", "k").first_synced_at is None


def test_an_expired_lease_fences_its_holder_even_before_anyone_takes_it(store):
    aud = store.ensure_audience("d", "k", "K", "audience")
    a = Fence(LEASE, "A", "audience 'K'")
    assert store.acquire_lease(LEASE, a.holder, 30)
    run_a = store.start_run(aud.id, "run")
    _plan(store, aud, run_a, ["user0001"], a)
    assert store.break_lease(LEASE, a.holder)  # expired now, on the database's clock
    before = _state(store, aud)
    with pytest.raises(StateError, match="lost its lease"):
        store.settle(aud.id, run_a, ["uuser0001"], [], fence=a)
    assert _state(store, aud) == before
