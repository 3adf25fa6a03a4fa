import multiprocessing
import time

import pytest

from audsync.errors import StateError
from audsync.state import LeaseKeeper, migrate, open_store


def test_a_held_lease_is_refused_to_another_holder(store):
    assert store.acquire_lease("a", "one", 30)
    assert not store.acquire_lease("a", "two", 30)
    assert store.acquire_lease("a", "one", 30)  # re-entrant for its holder
    info = store.lease_info("a")
    assert info.holder == "one" and info.pid > 0 and info.expires_at > info.acquired_at


def test_an_expired_lease_can_be_taken_and_the_old_holder_cannot_renew_it(store):
    assert store.acquire_lease("a", "one", 0.05)
    time.sleep(0.3)
    assert store.acquire_lease("a", "two", 30)
    assert not store.renew_lease("a", "one", 30)
    assert store.renew_lease("a", "two", 30)


def test_a_released_lease_is_free(store):
    assert store.acquire_lease("a", "one", 30)
    store.release_lease("a", "two")  # not its holder: no effect
    assert not store.acquire_lease("a", "two", 30)
    store.release_lease("a", "one")
    assert store.acquire_lease("a", "two", 30)


def test_lease_keeper_refuses_a_second_run_with_holder_host_pid_and_since(store):
    with LeaseKeeper(store, "audience:x", 30, what="audience 'X'"):
        with pytest.raises(StateError) as err:
            with LeaseKeeper(store, "audience:x", 30, wait_s=0.2, what="audience 'X'", poll_s=0.05):
                pass
    message = str(err.value)
    assert "audience 'X'" in message and "pid" in message and "since" in message and "host" in message
    with LeaseKeeper(store, "audience:x", 30):  # released on exit
        pass


def test_lease_keeper_renews_in_the_background(store):
    with LeaseKeeper(store, "r", 0.3) as keeper:
        time.sleep(0.8)
        assert not keeper.lost.is_set()
        assert not store.acquire_lease("r", "other", 30)


def _try(url, name, queue):
    store = open_store(url)
    queue.put(store.acquire_lease(name, f"proc-{multiprocessing.current_process().pid}", 30))
    store.close()


def test_exactly_one_of_several_processes_gets_the_lease(state_url):
    migrate.upgrade(state_url)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_try, args=(state_url, "shared", queue)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert sorted(queue.get(timeout=5) for _ in procs) == [False, False, True]
