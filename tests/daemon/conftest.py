"""Daemon test fixtures: real `audsync daemon` subprocesses against a loopback fake Amplitude
(audsync.testing.fake_amplitude, in this process) and a real SQLite file or PostgreSQL database."""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

from audsync.testing.fake_amplitude import FakeAmplitude

from processes import JsonLogProcess  # tests/processes.py

API_KEY = "test-api-key-123"
FAKEHOST = Path(__file__).parent / "fakehost"
# The installed console script, run outside the checkout so that the installed package is tested.
AUDSYNC = shutil.which("audsync", path=str(Path(sys.executable).parent)) or "audsync"


class Project:
    """A config with JSON-lines audience sources under tmp_path, pointed at the fake Amplitude."""

    def __init__(self, tmp_path: Path, state_url: str, amplitude: FakeAmplitude):
        self.dir = tmp_path
        self.state_url = state_url
        self.amplitude = amplitude
        self.truth: dict[str, set[str]] = {}

    def members(self, key: str, user_ids) -> None:
        """(Re)write the members of audience `key`; the rewrite is atomic so a run never reads half a file."""
        self.truth[key] = set(user_ids)
        tmp = self.dir / f"{key}.jsonl.tmp"
        with open(tmp, "w") as f:
            for uid in sorted(self.truth[key]):
                f.write(json.dumps({"user_id": uid}) + "\n")
        os.replace(tmp, self.dir / f"{key}.jsonl")

    def write(self, audiences: dict[str, str | None], daemon: str = "", delivery: str = "") -> Path:
        """audiences: key -> schedule (None: the default schedule)."""
        blocks = []
        for key, schedule in audiences.items():
            if key not in self.truth:
                self.members(key, [])
            blocks.append(f'[[audiences]]\nname = "{key}"\n'
                          + (f'schedule = "{schedule}"\n' if schedule else "")
                          + f'source = {{ type = "file", path = "{key}.jsonl" }}\n')
        path = self.dir / "audsync.toml"
        path.write_text(textwrap.dedent(f'''
            [state]
            url = "{self.state_url}"
            [amplitude]
            api_key = "{API_KEY}"
            endpoint = "{self.amplitude.url}"
            [delivery]
            max_attempts = 3
            backoff_initial_s = 0.05
            backoff_max_s = 0.1
            timeout_s = 5
        ''') + textwrap.dedent(delivery) + "\n[daemon]\n" + textwrap.dedent(daemon) + "\n" + "\n".join(blocks))
        self.config_path = path
        return path

    def synced_properly(self) -> bool:
        """Every user's property in the fake equals the truth: members true, others false or absent."""
        with self.amplitude.lock:
            props = {who: dict(p) for who, p in self.amplitude.properties.items()}
        for key, members in self.truth.items():
            for uid in members:
                if props.get(uid, {}).get(key) is not True:
                    return False
            for uid, p in props.items():
                if uid not in members and p.get(key) not in (None, False):
                    return False
        return True

    def runs(self) -> list[dict]:
        engine = sa.create_engine(self.state_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text(
                    "SELECT r.id, a.key, r.status, r.started_at, r.finished_at, r.delivered, r.pending "
                    "FROM runs r JOIN audiences a ON a.id = r.audience_id ORDER BY r.started_at")).mappings().all()
        except sa.exc.OperationalError:
            return []  # not migrated yet
        finally:
            engine.dispose()
        return [dict(r) for r in rows]

    def pending(self) -> int:
        engine = sa.create_engine(self.state_url)
        try:
            with engine.connect() as conn:
                return int(conn.execute(sa.text("SELECT count(*) FROM outbox WHERE status = 'pending'")).scalar_one())
        finally:
            engine.dispose()


@pytest.fixture
def make_project(tmp_path, amplitude):
    def make(state_url: str) -> Project:
        return Project(tmp_path, state_url, amplitude)
    return make


class DaemonProc(JsonLogProcess):
    """`audsync daemon` in a subprocess with JSON logs, collected from its stderr."""

    name = "daemon"

    def __init__(self, config: Path, *, metrics: bool = True, hostname: str | None = None,
                 args: tuple[str, ...] = (), env_extra: dict[str, str] | None = None):
        env = dict(os.environ, **(env_extra or {}))
        if hostname:
            env["AUDSYNC_TEST_HOSTNAME"] = hostname
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAKEHOST), env.get("PYTHONPATH")]))
        cmd = [AUDSYNC, "daemon", "--config", str(config), "--log-format", "json"]
        if metrics:
            cmd += ["--metrics-port", "0"]
        super().__init__(cmd + list(args), env=env, cwd=config.parent)

    @property
    def metrics_port(self) -> int:
        return int(self.wait_for("metrics on port")["metrics_port"])

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def finished_runs(self) -> list[dict]:
        return [r for r in self.records if r.get("message") == "run finished"]


@pytest.fixture
def daemons():
    """Starts daemons; kills whatever is still running at the end of the test."""
    started: list[DaemonProc] = []

    def start(config: Path, **kwargs) -> DaemonProc:
        d = DaemonProc(config, **kwargs)
        started.append(d)
        return d

    yield start
    for d in started:
        d.kill()


def wait_until(predicate, timeout: float, what: str, *daemons: DaemonProc, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for d in daemons:
            if d.proc.poll() is not None:
                raise AssertionError(f"daemon {d.pid} exited {d.proc.returncode} while waiting for {what}:\n"
                                     + d.output()[-4000:])
        time.sleep(interval)
    logs = "".join(f"\n--- daemon {d.pid} ---\n{d.output()[-4000:]}" for d in daemons)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}{logs}")


def get_url(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
