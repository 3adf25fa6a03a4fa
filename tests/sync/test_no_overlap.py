"""DESIGN.md section 4: two runs of one audience never overlap. Two real `audsync run` processes
on one audience and one state database (SQLite file or PostgreSQL), with the fake Amplitude
holding the first run's request until the second one has decided; and a run that lost its lease
while paused (fencing)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

AUDSYNC = str(Path(sys.executable).with_name("audsync"))
NAME = "Overlap Members"
KEY = "overlap_members"


def write_config(tmp_path: Path, state_url: str, amplitude_url: str, lock_wait_s: float = 0) -> Path:
    with open(tmp_path / "members.jsonl", "w") as f:
        for i in range(500):
            f.write(f'{{"user_id": "user{i:05d}"}}\n')
    path = tmp_path / "audsync.toml"
    path.write_text(textwrap.dedent(f'''
        [state]
        url = "{state_url}"
        lock_wait_s = {lock_wait_s}
        [amplitude]
        api_key = "test-api-key-123"
        endpoint = "{amplitude_url}"
        [delivery]
        timeout_s = 30
        [[audiences]]
        name = "{NAME}"
        source = {{ type = "file", path = "members.jsonl" }}
    '''))
    return path


def start(config: Path) -> subprocess.Popen:
    return subprocess.Popen([AUDSYNC, "run", "--config", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_second_run_of_a_busy_audience_exits_3_retry_later_naming_the_audience_and_the_holder(tmp_path, state_url,
                                                                                  held_amplitude):
    config = write_config(tmp_path, state_url, held_amplitude.url)
    first = start(config)
    try:
        assert held_amplitude.received.wait(30), "the first run never reached Amplitude"
        second = start(config)
        out, err = second.communicate(timeout=60)
        assert second.returncode == 3, (out, err)
        message = out + err
        assert f"audience {NAME!r}" in message
        assert f"pid {first.pid}" in message and "already syncing it" in message
        assert "Traceback" not in message
        assert first.poll() is None, "the first run must still be running while the second gives up"
    finally:
        held_amplitude.release.set()
        first_out, first_err = first.communicate(timeout=60)
    assert first.returncode == 0, (first_out, first_err)
    assert all(held_amplitude.properties[f"user{i:05d}"] == {KEY: True} for i in range(500))
    # The second run sent nothing: every member arrived exactly once.
    assert sum(len(v) for v in held_amplitude.arrivals.values()) == 500


def test_second_run_with_lock_wait_waits_for_the_first_then_succeeds(tmp_path, state_url, held_amplitude):
    config = write_config(tmp_path, state_url, held_amplitude.url, lock_wait_s=60)
    first = start(config)
    try:
        assert held_amplitude.received.wait(30), "the first run never reached Amplitude"
        second = start(config)
        time.sleep(2.0)
        assert second.poll() is None, "the second run must wait while the first holds the audience"
        assert first.poll() is None
    finally:
        held_amplitude.release.set()
        first_out, first_err = first.communicate(timeout=60)
    out, err = second.communicate(timeout=60)
    assert first.returncode == 0, (first_out, first_err)
    assert second.returncode == 0, (out, err)
    assert "already syncing" not in out + err
    # It ran after the first had finished: nothing left to change, nothing resent.
    assert "+0 entered" in out and "0 delivered" in out
    assert sum(len(v) for v in held_amplitude.arrivals.values()) == 500


def test_a_run_killed_on_this_host_does_not_block_the_next_one_until_its_lease_expires(tmp_path, state_url,
                                                                                      held_amplitude):
    config = write_config(tmp_path, state_url, held_amplitude.url)
    first = start(config)
    assert held_amplitude.received.wait(30), "the first run never reached Amplitude"
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    held_amplitude.release.set()
    started = time.monotonic()
    second = start(config)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, (out, err)
    assert time.monotonic() - started < 30, "it must not wait out the dead run's 60 s lease"
    assert all(held_amplitude.properties[f"user{i:05d}"] == {KEY: True} for i in range(500))


def _outcome_tables(url: str) -> dict:
    """What runs record per user: synced members, the outbox, rejections."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {table: sorted(tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {table}")))
                    for table in ("members", "outbox", "rejections")}
    finally:
        engine.dispose()


def test_a_paused_run_that_lost_its_lease_records_nothing_when_it_wakes_and_nothing_is_lost(
        tmp_path, pg_url, held_amplitude):
    """Run A is paused (SIGSTOP) mid-delivery longer than its lease lasts; run B takes the
    audience over, plans the users who left since, and cannot deliver yet. When A wakes, its
    in-flight request is acknowledged, but A may not settle it: it would delete B's planned exits
    (they would never be sent). The next run then brings Amplitude to the source's truth."""
    users = [f"user{i:05d}" for i in range(100)]
    config = write_config(tmp_path, pg_url, held_amplitude.url, lock_wait_s=30)
    config.write_text(config.read_text().replace("[delivery]", "[daemon]\nlease_ttl_s = 1\n[delivery]\nmax_attempts = 1"))
    (tmp_path / "members.jsonl").write_text("".join(f'{{"user_id": "{u}"}}\n' for u in users))
    first_request = threading.Lock()

    def hold_the_first_request(path, raw):
        if first_request.acquire(blocking=False):
            held_amplitude.received.set()
            held_amplitude.release.wait(60)

    held_amplitude.on_receive = hold_the_first_request
    a = start(config)
    try:
        assert held_amplitude.received.wait(30), "run A never reached Amplitude"
        a.send_signal(signal.SIGSTOP)
        (tmp_path / "members.jsonl").write_text("".join(f'{{"user_id": "{u}"}}\n' for u in users[50:]))
        held_amplitude.unavailable = set(users)  # B plans, but cannot deliver: exit 3, retry later
        b = start(config)
        out, err = b.communicate(timeout=60)
        assert b.returncode == 3 and "-50 exited" in out, (out, err)
        before = _outcome_tables(pg_url)
        held_amplitude.unavailable = set()
        held_amplitude.release.set()  # A's request is acknowledged: A reads it when it wakes
    finally:
        a.send_signal(signal.SIGCONT)
    out, err = a.communicate(timeout=60)
    assert a.returncode == 3 and "this run lost its lease" in out + err, (out, err)
    assert "Traceback" not in out + err
    assert _outcome_tables(pg_url) == before, "the run that lost its lease changed the state"

    c = start(config)
    out, err = c.communicate(timeout=60)
    assert c.returncode == 0, (out, err)
    assert {u: held_amplitude.properties[u].get(KEY) for u in users} == {
        u: u in users[50:] for u in users}
