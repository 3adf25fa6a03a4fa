"""Durable before the answer: a server process SIGKILLed with requests submitted to its group
commit but not committed acknowledged none of them, and nothing of them is ever claimed; one
killed after its futures resolved lost none of them."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from audsync.state import IngestLog, migrate, open_store

SERVER = textwrap.dedent("""
    import sys, time
    from audsync.state import GroupCommitter, IngestLog, open_store

    url, wait_for_commit = sys.argv[1], sys.argv[2] == "commit"
    store = open_store(url)
    # Commits only when 10**6 messages are queued or an hour passed: never, unless asked.
    committer = GroupCommitter(IngestLog(store), max_wait_s=0.001 if wait_for_commit else 3600,
                               max_messages=10 if wait_for_commit else 10**6)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    futures = [committer.submit([{"messageId": f"m{r}-{i}", "type": "track", "event": "E", "userId": f"u{i}",
                                  "receivedAt": now} for i in range(10)]) for r in range(20)]
    if wait_for_commit:
        flags = [f.result(timeout=60) for f in futures]
        assert all(all(f) for f in flags)
    print("acknowledged" if wait_for_commit else "submitted", flush=True)
    time.sleep(3600)
""")


def _run_and_kill(url, mode):
    proc = subprocess.Popen([sys.executable, "-c", SERVER, url, mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() in ("acknowledged", "submitted"), proc.stderr.read() if proc.poll() is not None else line
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_killed_before_the_commit_nothing_was_acknowledged_and_nothing_is_claimed(state_url):
    migrate.upgrade(state_url)
    _run_and_kill(state_url, "submit")
    store = open_store(state_url)
    try:
        log = IngestLog(store)
        assert log.claim("after", limit=1000, lease_s=30) == []
        assert log.status().pending == 0
    finally:
        store.close()


@pytest.mark.slow
def test_killed_after_the_commit_every_acknowledged_message_is_there(state_url):
    migrate.upgrade(state_url)
    _run_and_kill(state_url, "commit")
    store = open_store(state_url)
    try:
        claimed = IngestLog(store).claim("after", limit=1000, lease_s=30)
        assert sorted(m.message_id for m in claimed) == sorted(f"m{r}-{i}" for r in range(20) for i in range(10))
    finally:
        store.close()
