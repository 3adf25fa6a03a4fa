"""`audsync serve` in a subprocess over loopback, on a real SQLite file or PostgreSQL database."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

# The installed console script, run outside the checkout so that the installed package is tested.
AUDSYNC = shutil.which("audsync", path=str(Path(sys.executable).parent)) or "audsync"
WRITE_KEY = "wk-test-0001"


def write_config(directory: Path, state_url: str, ingest: str = "", amplitude: str = "") -> Path:
    path = directory / "audsync.toml"
    path.write_text(textwrap.dedent(f'''
        [state]
        url = "{state_url}"
        [amplitude]
        api_key = "test-api-key-123"
    ''') + textwrap.dedent(amplitude) + "\n[ingest]\n" + textwrap.dedent(ingest or f'''
        write_keys = ["{WRITE_KEY}"]
        forward = false
    '''))
    return path


class ServeProc:
    """`audsync serve --port 0 --log-format json`; its port read from its log."""

    def __init__(self, config: Path, env_extra: dict[str, str] | None = None, args: tuple[str, ...] = ()):
        env = dict(os.environ)
        env.pop("AUDSYNC_WRITE_KEYS", None)
        env.update(env_extra or {})
        self.proc = subprocess.Popen([AUDSYNC, "serve", "--config", str(config), "--log-format", "json",
                                      "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                     cwd=config.parent)
        self.lines: list[str] = []
        self.records: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._port: int | None = None

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            try:
                self.records.append(json.loads(line))
            except ValueError:
                pass

    def wait_for(self, message: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in list(self.records):
                if message in record.get("message", ""):
                    return record
            if self.proc.poll() is not None:
                self._reader.join(2)
                raise AssertionError(f"serve exited {self.proc.returncode}: {self.output()}")
            time.sleep(0.02)
        raise AssertionError(f"no {message!r} in serve's log within {timeout} s: {self.output()}")

    @property
    def port(self) -> int:
        if self._port is None:
            self._port = int(self.wait_for("serving the Segment tracking API")["port"])
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def servers():
    """Starts `audsync serve` processes; kills whatever still runs at the end of the test."""
    started: list[ServeProc] = []

    def start(config: Path, **kwargs) -> ServeProc:
        proc = ServeProc(config, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


def _rows(state_url: str, sql: str) -> list[dict]:
    engine = sa.create_engine(state_url)
    try:
        with engine.connect() as conn:
            return [dict(row) for row in conn.execute(sa.text(sql)).mappings()]
    finally:
        engine.dispose()


def stored_messages(state_url: str) -> list[dict]:
    """The messages the ingest log holds, in the order they were stored."""
    return [json.loads(row["body"]) for row in _rows(state_url, "SELECT body FROM ingest_log ORDER BY id")]


def stored_rejections(state_url: str) -> list[dict]:
    return _rows(state_url, "SELECT source, reason, message_index, message_id, example FROM ingest_rejections "
                            "ORDER BY id")
