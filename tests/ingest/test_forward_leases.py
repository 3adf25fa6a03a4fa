"""The forwarder in process, on a real state database and the loopback fake Amplitude: its claims
stay renewed through a round longer than the lease, and a restart takes back only what a dead
process of this host held."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from audsync.config import load
from audsync.ingest.forward import GATHER_S, Forwarder, worker_name
from audsync.state import migrate
from audsync.state.ingest import IngestLog
from audsync.state.leases import process_name
from audsync.state.store import StateStore

from .conftest import WRITE_KEY, write_config


def message(user: str, n: int) -> dict:
    return {"type": "track", "event": "Step", "userId": user, "messageId": f"{user}-{n}",
            "properties": {"n": n}, "receivedAt": "2026-03-01T12:00:00Z"}


def opened(tmp_path, state_url, fake):
    migrate.upgrade(state_url)
    config = load(write_config(tmp_path, state_url, ingest=f'write_keys = ["{WRITE_KEY}"]\n',
                               amplitude=f'endpoint = "{fake.url}"\n'))
    store = StateStore(state_url)
    return config, store, IngestLog(store)


def test_claims_stay_renewed_through_a_round_longer_than_the_lease(tmp_path, state_url, amplitude):
    fake = amplitude
    config, store, log = opened(tmp_path, state_url, fake)
    try:
        log.append([[message("user-slow1", n) for n in range(6)]])
        fake.delay_s = 0.5  # one request at a time for one user: the round lasts about 3 s
        forwarder = Forwarder(log, config, worker="test-host/1", lease_s=1.0)
        forwarder.start()
        try:
            deadline = time.monotonic() + 10
            while not fake.requests and time.monotonic() < deadline:
                time.sleep(0.02)
            assert fake.requests
            # past the lease several times over, another forwarder still gets none of the user's messages
            until = time.monotonic() + 2.0
            while time.monotonic() < until:
                assert log.claim("test-host/2", 100, 1.0) == []
                time.sleep(0.1)
            deadline = time.monotonic() + 15
            while len(fake.events) < 6 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert [e["event_properties"]["n"] for e in fake.events] == list(range(6))
        finally:
            forwarder.stop(drain_s=5, within_s=10)
        assert log.status().pending == 0 and forwarder.forwarded == 6
    finally:
        store.close()


def test_a_restart_takes_back_what_a_dead_process_of_this_host_held(tmp_path, state_url, amplitude):
    config, store, log = opened(tmp_path, state_url, amplitude)
    try:
        users = ("user-dead1", "user-prev1", "user-live1", "user-away1", "user-ctnr1")
        log.append([[message(user, 1) for user in users]])
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
        host, pid, namespace = process_name().split(":")
        dead = f"{host}:{gone.stdout.strip()}:{namespace}:0001"   # its process has exited
        previous = f"{process_name()}:0002"                       # this pid, before a restart reused it
        live = f"{host}:{os.getppid()}:{namespace}:0003"          # a running process (pytest's parent)
        away = f"another-host.example:{pid}:{namespace}:0004"      # another host: cannot be checked
        container = f"{host}:{pid}:another-namespace:0005"         # same hostname, another PID namespace
        for worker in (dead, previous, live, away, container):
            claimed = log.claim(worker, 1, 60.0)
            assert len(claimed) == 1
        forwarder = Forwarder(log, config)
        assert forwarder.worker.startswith(process_name() + ":") and forwarder.worker != worker_name()
        forwarder.start()
        try:
            deadline = time.monotonic() + 10
            while len(amplitude.events) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.5)
        finally:
            forwarder.stop(drain_s=5, within_s=10)
        assert sorted(e["user_id"] for e in amplitude.events) == ["user-dead1", "user-prev1"]
        assert log.lease_holders() == sorted([live, away, container])
    finally:
        store.close()


def test_a_trickle_of_messages_is_forwarded_in_rounds_of_several(tmp_path, state_url, amplitude):
    """Single-event requests arrive one by one: the forwarder gathers them into rounds of many
    (each round's claim and settle cost as much for one message as for hundreds)."""
    config, store, log = opened(tmp_path, state_url, amplitude)
    try:
        forwarder = Forwarder(log, config)
        forwarder.start()
        try:
            sent = 120
            started = time.monotonic()
            for n in range(sent):
                log.append([[message(f"user-trickle{n}", n)]])  # one user each: one request a round
                time.sleep(0.005)
            arriving_s = time.monotonic() - started
            deadline = time.monotonic() + 15
            while len(amplitude.events) < sent and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            forwarder.stop(drain_s=5, within_s=10)
        assert sorted(e["event_properties"]["n"] for e in amplitude.events) == list(range(sent))
        # A round every GATHER_S at most (one request each), not one per message.
        assert len(amplitude.requests) <= arriving_s / GATHER_S + 3 < sent / 3, (len(amplitude.requests), arriving_s)
    finally:
        store.close()
