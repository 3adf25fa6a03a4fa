"""`audsync translate` as other tools drive it: the installed console script in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

AUDSYNC = shutil.which("audsync", path=str(Path(sys.executable).parent)) or "audsync"

IDENTIFY = {"type": "identify", "userId": "user-00001", "messageId": "m-1",
            "timestamp": "2026-01-02T03:04:05.678Z", "traits": {"order_completed_last_30days": True}}
TRACK = {"type": "track", "userId": "user-00002", "event": "Signed Up", "messageId": "m-2",
         "properties": {"plan": "pro"}}


def run(args, stdin: str | None = None, cwd: Path | None = None):
    return subprocess.run([AUDSYNC, *args], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text("[amplitude]\napi_key = 'test-key'\n")
    return path


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_each_message_becomes_operation_lines_on_stdout(tmp_path, config):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(IDENTIFY) + "\n" + json.dumps(TRACK) + "\n")
    result = run(["translate", "--config", str(config), str(source)])
    assert result.returncode == 0, result.stderr
    ops = lines(result.stdout)
    assert [op["api"] for op in ops] == ["identify", "event"]
    assert ops[0]["body"]["user_id"] == "user-00001"
    assert ops[0]["body"]["user_properties"] in ({"order_completed_last_30days": True},
                                                 {"$set": {"order_completed_last_30days": True}})
    assert ops[1]["body"]["event_type"] == "Signed Up" and ops[1]["body"]["insert_id"] == "m-2"
    assert result.stderr == ""


def test_reads_stdin_when_input_is_absent_or_dash(config):
    for args in (["translate", "--config", str(config)], ["translate", "--config", str(config), "-"]):
        result = run(args, stdin=json.dumps(TRACK) + "\n")
        assert result.returncode == 0 and lines(result.stdout)[0]["api"] == "event"


def test_rejected_line_is_reported_with_its_number_and_the_stream_goes_on(config):
    bad = {"type": "track", "userId": "user-00003"}  # no event name
    stdin = "\n".join([json.dumps(TRACK), "{not json", json.dumps(bad), json.dumps(IDENTIFY)]) + "\n"
    result = run(["translate", "--config", str(config)], stdin=stdin)
    assert result.returncode == 1
    assert [op["api"] for op in lines(result.stdout)] == ["event", "identify"]
    errors = lines(result.stderr)
    assert [e["line"] for e in errors] == [2, 3]
    assert "JSON" in errors[0]["error"] and "event" in errors[1]["error"]


def test_blank_lines_are_skipped_not_rejected(config):
    result = run(["translate", "--config", str(config)], stdin="\n  \n" + json.dumps(TRACK) + "\n\n")
    assert result.returncode == 0 and len(lines(result.stdout)) == 1 and result.stderr == ""


def test_message_dropped_by_settings_gives_no_output_and_exit_0(config):
    dropped = dict(TRACK, integrations={"Amplitude": False})
    result = run(["translate", "--config", str(config)], stdin=json.dumps(dropped) + "\n")
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""


def test_config_error_exits_2_with_a_message_and_no_traceback(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[amplitude]\ntrack_name_pages = true\n")
    result = run(["translate", "--config", str(config)], stdin="")
    assert result.returncode == 2
    assert "amplitude.track_name_pages: unknown setting (did you mean track_named_pages?)" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_input_file_exits_2(tmp_path, config):
    result = run(["translate", "--config", str(config), str(tmp_path / "absent.jsonl")])
    assert result.returncode == 2 and "absent.jsonl" in result.stderr and "Traceback" not in result.stderr


def test_usage_error_exits_2(config):
    result = run(["translate"])
    assert result.returncode == 2 and "--config" in result.stderr


def _peak_rss_kib(config: Path, path: Path) -> int:
    """Peak RSS of one child run; ru_maxrss of RUSAGE_CHILDREN is the max over waited children, so
    each measurement runs in its own interpreter."""
    probe = (
        "import resource, subprocess, sys;"
        "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", probe, AUDSYNC, "translate", "--config", str(config), str(path)],
                         capture_output=True, text=True, check=True, timeout=300)
    return int(out.stdout)


def test_memory_does_not_grow_with_the_input_length(tmp_path, config):
    line = (json.dumps(TRACK) + "\n").encode()
    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    small.write_bytes(line * 2_000)
    large.write_bytes(line * 60_000)
    grown = _peak_rss_kib(config, large) - _peak_rss_kib(config, small)
    assert grown < 8_000, f"peak RSS grew by {grown} KiB for 30x the input"


def _nested(levels: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def test_a_line_nested_deeper_than_amplitude_accepts_is_rejected_and_the_stream_goes_on(config):
    deep_traits = {"type": "identify", "userId": "user-00004", "traits": {"x": _nested(40)}}  # 41 levels
    hostile = {"type": "track", "userId": "user-00005", "event": "E", "properties": _nested(300)}
    stdin = "\n".join(json.dumps(m) for m in (TRACK, deep_traits, hostile, IDENTIFY)) + "\n"
    result = run(["translate", "--config", str(config)], stdin=stdin)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert [op["body"]["user_id"] for op in lines(result.stdout)] == ["user-00002", "user-00001"]
    errors = lines(result.stderr)
    assert [e["line"] for e in errors] == [2, 3]
    assert all("nested more than 40 levels" in e["error"] for e in errors)
