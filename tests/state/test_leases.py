import multiprocessing
import os
import socket
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


def _hold_and_exit(url, name, pid_namespace, ttl_s):
    """Takes the lease as a process in `pid_namespace` (None: this one, as LeaseKeeper does) and
    exits without releasing it, as a killed process would."""
    store = open_store(url)
    if pid_namespace is None:
        LeaseKeeper(store, name, ttl_s).__enter__()
    else:
        assert store.acquire_lease(name, f"{socket.gethostname()}:{os.getpid()}:{pid_namespace}:0000", ttl_s)
    os._exit(0)


def _leave_lease_behind(url, name, pid_namespace, ttl_s):
    proc = multiprocessing.get_context("spawn").Process(target=_hold_and_exit, args=(url, name, pid_namespace, ttl_s))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    return proc.pid


def test_a_lease_whose_holder_died_in_this_pid_namespace_is_taken_at_once(store, state_url):
    dead = _leave_lease_behind(state_url, "audience:x", None, 600)
    assert store.lease_info("audience:x").pid == dead
    with LeaseKeeper(store, "audience:x", 30) as keeper:
        assert store.lease_info("audience:x").holder == keeper.holder


def test_a_lease_held_in_another_container_with_this_hostname_is_not_broken_but_waits_for_expiry(
        store, state_url):
    # Another container: the same hostname, its own PID namespace, where the holder is alive
    # even though no process here has its PID.
    other = "0b5e55ed-0000-4000-8000-000000000000/4026531999"
    holder_pid = _leave_lease_behind(state_url, "audience:x", other, 2)
    with pytest.raises(StateError, match="already syncing"):
        with LeaseKeeper(store, "audience:x", 30, wait_s=0.3, poll_s=0.05):
            pass
    assert store.lease_info("audience:x").pid == holder_pid
    with LeaseKeeper(store, "audience:x", 30, wait_s=30, poll_s=0.05) as keeper:  # once it expired
        assert store.lease_info("audience:x").holder == keeper.holder
