"""DESIGN.md section 3's exit codes, through the real console script: 2 for what the user must
fix, 3 for temporary trouble (retry later), and one JSON object per stderr line with
--log-format json."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

AUDSYNC = str(Path(sys.executable).with_name("audsync"))
COMMANDS = (["run"], ["backfill", "--audience", "Members"], ["status"], ["db", "upgrade"])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp_path: Path, state_url: str, endpoint: str = "file:sink.jsonl") -> Path:
    (tmp_path / "members.csv").write_text("user_id\nuser00001\nuser00002\n")
    path = tmp_path / "audsync.toml"
    path.write_text(textwrap.dedent(f'''
        [state]
        url = "{state_url}"
        [amplitude]
        api_key = "test-api-key-123"
        endpoint = "{endpoint}"
        [[audiences]]
        name = "Members"
        source = {{ type = "file", path = "members.csv" }}
    '''))
    return path


def audsync(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([AUDSYNC, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_an_unreachable_state_database_exits_3_retry_later_naming_it(tmp_path, command):
    port = closed_port()
    config = write_config(tmp_path, f"postgresql+psycopg://audsync:hunter2@127.0.0.1:{port}/state")
    result = audsync(*command, "--config", str(config), cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr and "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_state_database_not_created_yet_exits_3(tmp_path, pg_url):
    absent = pg_url.rsplit("/", 1)[0] + f"/audsync_absent_{uuid.uuid4().hex[:12]}"
    result = audsync("run", "--config", str(write_config(tmp_path, absent)), cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_a_state_url_to_fix_and_a_bad_config_exit_2(tmp_path):
    wrong = audsync("run", "--config", str(write_config(tmp_path, "mysql://127.0.0.1/state")), cwd=tmp_path)
    assert wrong.returncode == 2 and "SQLite or PostgreSQL" in wrong.stderr
    (tmp_path / "bad.toml").write_text("[amplitude]\napi_kee = 'x'\n")
    bad = audsync("run", "--config", str(tmp_path / "bad.toml"), cwd=tmp_path)
    assert bad.returncode == 2 and "api_kee" in bad.stderr and "Traceback" not in bad.stderr


def test_help_lists_every_exit_code():
    text = audsync("--help").stdout
    assert "exit codes:" in text
    for line in ("  0   done", "  1   ", "  2   something to fix", "  3   temporary trouble", "  70  "):
        assert line in text


def stderr_objects(result: subprocess.CompletedProcess) -> list[dict]:
    lines = result.stderr.splitlines()
    assert lines, "nothing on stderr"
    return [json.loads(line) for line in lines]  # raises on any line that is not JSON


def test_with_log_format_json_every_stderr_line_is_json(tmp_path, sqlite_url):
    config = str(write_config(tmp_path, sqlite_url))
    first = audsync("run", "--config", config, "--log-format", "json", cwd=tmp_path)  # applies migrations
    assert first.returncode == 0
    assert any("applied migration" in o["message"] for o in stderr_objects(first))
    upgrade = audsync("db", "upgrade", "--config", config, "--log-format", "json", cwd=tmp_path)
    assert [o["message"] for o in stderr_objects(upgrade)] == ["state database: already up to date"]

    usage = audsync("run", "--config", config, "--log-format", "json", "--nonsense", cwd=tmp_path)
    (error,) = stderr_objects(usage)
    assert usage.returncode == 2 and "--nonsense" in error["message"]

    (tmp_path / "bad.toml").write_text("[amplitude]\napi_kee = 'x'\n")
    bad = audsync("status", "--config", str(tmp_path / "bad.toml"), "--log-format", "json", cwd=tmp_path)
    (error,) = stderr_objects(bad)
    assert bad.returncode == 2 and error["level"] == "error" and "api_kee" in error["message"]

    unreachable = write_config(tmp_path, f"postgresql+psycopg://127.0.0.1:{closed_port()}/state")
    down = audsync("run", "--config", str(unreachable), "--log-format", "json", cwd=tmp_path)
    assert down.returncode == 3 and all(o["level"] == "error" for o in stderr_objects(down))

    messages = "".join(json.dumps({"type": "track", "userId": f"user{i:05d}", "event": "E"}) + "\n"
                       for i in range(3))
    send = subprocess.run([AUDSYNC, "send", "--config", config, "--log-format", "json"], input=messages + "{oops\n",
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert send.returncode == 1
    stderr_objects(send)


def test_the_systemd_unit_restarts_on_3_and_on_a_crash_but_not_on_2():
    unit = dict(line.split("=", 1) for line in (Path(__file__).parents[1] / "deploy" / "audsync.service")
                .read_text().splitlines() if "=" in line and not line.startswith("#"))
    assert unit["Restart"] == "on-failure"  # every non-zero exit (3 and 70 included) restarts...
    assert "3" in unit["RestartForceExitStatus"].split()
    assert unit["RestartPreventExitStatus"].split() == ["2"]  # ...except what a person must fix


def test_amplitude_unreachable_after_every_retry_exits_3_naming_the_endpoint_and_keeps_the_work_pending(
        tmp_path, sqlite_url):
    port = closed_port()
    config = write_config(tmp_path, sqlite_url, endpoint=f"http://127.0.0.1:{port}")
    with open(config, "a") as f:
        f.write("[delivery]\nmax_attempts = 3\nbackoff_initial_s = 0.01\nbackoff_max_s = 0.02\n")
    result = audsync("run", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert f"network error on http://127.0.0.1:{port}/identify" in result.stderr
    assert "test-api-key-123" not in result.stderr + result.stdout
    assert "0 delivered, 0 rejected, 2 pending" in result.stdout
