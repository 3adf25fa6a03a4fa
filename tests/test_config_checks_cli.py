"""Mistakes in the config or environment are caught before anything is planned or sent, and say
where to fix them: the console script in a subprocess, against real state databases and the
loopback fake Amplitude."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

AUDSYNC = shutil.which("audsync", path=str(Path(sys.executable).parent)) or "audsync"
# The environment of the tests' own shell must not lend the command a key.
ENV = {k: v for k, v in os.environ.items() if not k.startswith("AMPLITUDE_")}


def audsync(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([AUDSYNC, *args], capture_output=True, text=True, timeout=60, env=env or ENV)


def project(tmp_path: Path, state_url: str, endpoint: str, extra: str = "") -> str:
    (tmp_path / "members.jsonl").write_text('{"user_id": "user-00001"}\n')
    (tmp_path / "in.jsonl").write_text('{"type": "identify", "userId": "user-00001", "traits": {"a": 1}}\n')
    path = tmp_path / "audsync.toml"
    path.write_text(textwrap.dedent(f'''
        [state]
        url = "{state_url}"
        [amplitude]
        endpoint = "{endpoint}"
        [delivery]
        max_attempts = 1
        timeout_s = 5
        {extra}
        [[audiences]]
        name = "Buyers"
        source = {{ type = "file", path = "members.jsonl" }}
    '''))
    return str(path)


def runs_recorded(state_url: str) -> int:
    engine = sa.create_engine(state_url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("runs"):
                return 0
            return conn.execute(sa.text("SELECT count(*) FROM runs")).scalar_one()
    finally:
        engine.dispose()


@pytest.mark.parametrize("command", [
    ["run"], ["backfill", "--audience", "Buyers"], ["send", "{dir}/in.jsonl"], ["daemon"],
])
def test_a_command_that_sends_without_an_api_key_fails_before_planning_or_sending(tmp_path, state_url, amplitude,
                                                                                   command):
    config = project(tmp_path, state_url, amplitude.url)
    result = audsync(*[c.format(dir=tmp_path) for c in command], "--config", config)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f"audsync: {config}: amplitude.api_key: `audsync {command[0]}` sends to Amplitude "
                             "and needs an API key; set amplitude.api_key or the environment variable "
                             "AMPLITUDE_API_KEY\n")
    assert amplitude.request_count == 0
    assert runs_recorded(state_url) == 0


@pytest.mark.parametrize("command", [
    ["translate", "--config", "{config}", "{dir}/in.jsonl"], ["status", "--config", "{config}"],
    ["db", "upgrade", "--config", "{config}"], ["run", "--dry-run", "--config", "{config}"],
])
def test_a_command_that_sends_nothing_needs_no_api_key(tmp_path, sqlite_url, amplitude, command):
    config = project(tmp_path, sqlite_url, amplitude.url)
    result = audsync(*[c.format(dir=tmp_path, config=config) for c in command])
    assert result.returncode == 0, result.stderr
    assert amplitude.request_count == 0


def test_a_file_sink_needs_no_api_key(tmp_path, sqlite_url):
    config = project(tmp_path, sqlite_url, "file:requests.jsonl")
    result = audsync("run", "--config", config)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "requests.jsonl").read_text().splitlines()[0])["url"]


def test_a_refused_api_key_from_the_environment_names_the_variable(tmp_path, sqlite_url, amplitude):
    config = project(tmp_path, sqlite_url, amplitude.url)
    result = audsync("send", "--config", config, str(tmp_path / "in.jsonl"),
                     env=dict(ENV, AMPLITUDE_API_KEY="wrong-key-from-env"))
    assert result.returncode == 2
    assert ("audsync: Amplitude refused the API key (from AMPLITUDE_API_KEY; 400 Invalid API key): "
            "check AMPLITUDE_API_KEY") in result.stderr


def test_a_schedule_that_never_fires_makes_status_exit_2_naming_file_and_key(tmp_path, sqlite_url):
    config = project(tmp_path, sqlite_url, "file:requests.jsonl", extra="[daemon]\ndefault_schedule = '0 0 30 2 *'")
    result = audsync("status", "--config", config)
    assert result.returncode == 2
    assert result.stderr == (f"audsync: {config}: daemon.default_schedule: '0 0 30 2 *' never fires: "
                             "no date matches it\n")


def test_a_sqlite_state_in_a_missing_directory_names_the_directory(tmp_path):
    config = project(tmp_path, f"sqlite:///{tmp_path}/no-such-dir/state.db", "file:requests.jsonl")
    for command in ("status", "run", "db"):
        result = audsync(*(["db", "upgrade"] if command == "db" else [command]), "--config", config)
        assert result.returncode == 2
        assert f"state.url: the directory {tmp_path}/no-such-dir does not exist" in result.stderr
    assert not (tmp_path / "no-such-dir").exists()


def test_a_sqlite_source_in_a_missing_directory_names_the_directory(tmp_path, sqlite_url):
    config = project(tmp_path, sqlite_url, "file:requests.jsonl")
    Path(config).write_text(Path(config).read_text().replace(
        '{ type = "file", path = "members.jsonl" }',
        f'{{ type = "sql", url = "sqlite:///{tmp_path}/warehouse/w.db", query = "SELECT 1 AS user_id" }}'))
    result = audsync("run", "--config", config)
    assert result.returncode == 2
    assert f'audience "Buyers": source.url \'sqlite:///{tmp_path}/warehouse/w.db\': the directory ' \
           f'{tmp_path}/warehouse does not exist' in result.stdout + result.stderr
