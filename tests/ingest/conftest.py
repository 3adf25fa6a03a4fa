"""`audsync serve` in a subprocess over loopback, on a real SQLite file or PostgreSQL database."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from processes import JsonLogProcess  # tests/processes.py

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


class ServeProc(JsonLogProcess):
    """`audsync serve --port 0 --log-format json`; its port read from its log."""

    name = "serve"

    def __init__(self, config: Path, env_extra: dict[str, str] | None = None, args: tuple[str, ...] = ()):
        env = dict(os.environ)
        env.pop("AUDSYNC_WRITE_KEYS", None)
        env.update(env_extra or {})
        super().__init__([AUDSYNC, "serve", "--config", str(config), "--log-format", "json", "--port", "0", *args],
                         env=env, cwd=config.parent)
        self._port: int | None = None

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

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(30)


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
