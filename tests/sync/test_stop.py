"""DESIGN.md section 3: `audsync run` stopped by SIGTERM keeps its word. A real `audsync run`
process, the fake Amplitude (real loopback HTTP) holding its first request; the run is signalled
while that request is in flight, then the request is answered."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from audsync.config import load
from audsync.status_report import status

AUDSYNC = str(Path(sys.executable).with_name("audsync"))
NAME, KEY = "Stop Members", "stop_members"
USERS = 3_000  # three identify requests of 1,000, sent one at a time (concurrency = 1)


def write_config(tmp_path: Path, state_url: str, amplitude_url: str) -> Path:
    (tmp_path / "members.csv").write_text("user_id\n" + "".join(f"user{i:05d}\n" for i in range(USERS)))
    path = tmp_path / "audsync.toml"
    path.write_text(textwrap.dedent(f'''
        [state]
        url = "{state_url}"
        [amplitude]
        api_key = "test-api-key-123"
        endpoint = "{amplitude_url}"
        [delivery]
        concurrency = 1
        timeout_s = 60
        [[audiences]]
        name = "{NAME}"
        source = {{ type = "file", path = "members.csv" }}
    '''))
    return path


def read_until(stream, needle: str) -> str:
    seen = []
    for line in stream:
        seen.append(line)
        if needle in line:
            return "".join(seen)
    raise AssertionError(f"never logged {needle!r}:\n{''.join(seen)}")


def test_sigterm_finishes_the_in_flight_batch_records_it_marks_the_run_stopped_and_exits_1(
        tmp_path, state_url, held_amplitude):
    config = write_config(tmp_path, state_url, held_amplitude.url)
    run = subprocess.Popen([AUDSYNC, "run", "--config", str(config)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        assert held_amplitude.received.wait(60), "the run never reached Amplitude"
        run.send_signal(signal.SIGTERM)
        # Released only once the delivery has stopped taking new requests: the held one is the
        # only one in flight.
        err = read_until(run.stderr, "stopping delivery")
        held_amplitude.release.set()
        out, rest = run.communicate(timeout=60)
    finally:
        held_amplitude.release.set()
        if run.poll() is None:
            run.kill()
    err += rest
    assert run.returncode == 1, (out, err)
    assert "Traceback" not in err and "1,000 delivered" in out and "stopped early" in out

    cfg = load(config)
    (entry,) = status(cfg)
    last = entry["last_runs"][0]
    assert (last["status"], last["delivered"], last["pending"]) == ("stopped", 1_000, USERS - 1_000)
    assert (entry["members"], entry["pending"]) == (1_000, USERS - 1_000)
    assert len(held_amplitude.properties) == 1_000

    rerun = subprocess.run([AUDSYNC, "run", "--config", str(config)], capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    (entry,) = status(cfg)
    assert (entry["members"], entry["pending"], entry["last_runs"][0]["status"]) == (USERS, 0, "ok")
    assert held_amplitude.properties == {f"user{i:05d}": {KEY: True} for i in range(USERS)}


def test_a_second_sigterm_exits_at_once_and_the_next_run_delivers_everything(tmp_path, sqlite_url,
                                                                             held_amplitude):
    config = write_config(tmp_path, sqlite_url, held_amplitude.url)
    run = subprocess.Popen([AUDSYNC, "run", "--config", str(config)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        assert held_amplitude.received.wait(60), "the run never reached Amplitude"
        run.send_signal(signal.SIGTERM)
        read_until(run.stderr, "stopping delivery")
        run.send_signal(signal.SIGTERM)  # the request is still held: only a second signal ends it
        run.communicate(timeout=60)
    finally:
        held_amplitude.release.set()
        if run.poll() is None:
            run.kill()
    assert run.returncode == 128 + signal.SIGTERM

    rerun = subprocess.run([AUDSYNC, "run", "--config", str(config), "--log-format", "json"],
                           capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    cfg = load(config)
    (entry,) = status(cfg)
    assert (entry["members"], entry["pending"]) == (USERS, 0)
    killed = entry["last_runs"][1]
    assert killed["status"] == "interrupted" and "killed" in killed["error"]
    assert (killed["rows_read"], killed["entered"], killed["pending"]) == (USERS, USERS, USERS)  # its plan
    assert held_amplitude.properties == {f"user{i:05d}": {KEY: True} for i in range(USERS)}
    status_text = subprocess.run([AUDSYNC, "status", "--config", str(config)], capture_output=True,
                                 text=True, timeout=60).stdout
    assert "interrupted (no end recorded)" in status_text and "error: ended without recording its end" in status_text
    assert all(json.loads(line) for line in rerun.stderr.splitlines())


def test_a_killed_run_shows_in_status_as_interrupted_with_its_reason_and_plan_once_its_lease_expired(
        tmp_path, state_url, held_amplitude):
    config = write_config(tmp_path, state_url, held_amplitude.url)
    with open(config, "a") as f:
        f.write("[daemon]\nlease_ttl_s = 1\n")
    run = subprocess.Popen([AUDSYNC, "run", "--config", str(config)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        assert held_amplitude.received.wait(60), "the run never reached Amplitude"
    finally:
        run.kill()
        run.wait(30)
    cfg = load(config)

    def last_run():
        return status(cfg)[0]["last_runs"][0]

    for _ in range(200):  # the lease outlives its holder by up to lease_ttl_s
        if last_run()["status"] != "running":
            break
        time.sleep(0.05)
    last = last_run()
    assert last["status"] == "interrupted" and "ended without recording its end" in last["error"]
    assert (last["rows_read"], last["entered"]) == (USERS, USERS)
    shown = subprocess.run([AUDSYNC, "status", "--config", str(config), "--json"], capture_output=True,
                           text=True, timeout=60)
    assert json.loads(shown.stdout)["audiences"][0]["last_runs"][0]["status"] == "interrupted"
