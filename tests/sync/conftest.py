"""Sync test fixtures: a project directory pointed at the loopback fake Amplitude
(audsync.testing.fake_amplitude), which keeps each user's resulting user properties."""

from __future__ import annotations

import json
import textwrap
import threading
from pathlib import Path

import pytest

from audsync.testing.fake_amplitude import FakeAmplitude

API_KEY = "test-api-key-123"
OTHER_KEY = "another-project-key-456"


class Project:
    """A config file with CSV sources under tmp_path, pointed at the fake Amplitude."""

    def __init__(self, tmp_path: Path, state_url: str, amplitude: FakeAmplitude):
        self.dir = tmp_path
        self.state_url = state_url
        self.amplitude_url = amplitude.url
        self.api_key = API_KEY

    def members(self, name: str, rows: list[tuple]) -> str:
        """Write (user_id, anonymous_id[, value]) rows as a JSON-lines source; returns its TOML."""
        with open(self.dir / f"{name}.jsonl", "w") as f:
            for row in rows:
                record = {"user_id": row[0], "anonymous_id": row[1]}
                if len(row) > 2:
                    record["value"] = row[2]
                f.write(json.dumps({k: v for k, v in record.items() if v is not None}) + "\n")
        return f'{{ type = "file", path = "{name}.jsonl" }}'

    def write(self, audiences: str, extra: str = "") -> Path:
        path = self.dir / "audsync.toml"
        path.write_text(textwrap.dedent(f'''
            [state]
            url = "{self.state_url}"
            [amplitude]
            api_key = "{self.api_key}"
            endpoint = "{self.amplitude_url}"
            [delivery]
            max_attempts = 2
            backoff_initial_s = 0.01
            backoff_max_s = 0.02
            timeout_s = 5
            deadline_s = 10
            {textwrap.dedent(extra)}
        ''') + textwrap.dedent(audiences))
        return path

    def config(self, audiences: str, extra: str = ""):
        from audsync.config import load

        return load(self.write(audiences, extra), environ={})


@pytest.fixture
def project(tmp_path, state_url, amplitude):
    return Project(tmp_path, state_url, amplitude)


@pytest.fixture
def held_amplitude():
    """A fake Amplitude that holds every request until `release` is set; `received` is set when
    the first one arrives (the run sending it is then mid-delivery, holding its lease)."""
    fake = FakeAmplitude()
    fake.received = threading.Event()
    fake.release = threading.Event()

    def hold(path, raw):
        fake.received.set()
        fake.release.wait(30)

    fake.on_receive = hold
    yield fake
    fake.release.set()
    fake.close()
