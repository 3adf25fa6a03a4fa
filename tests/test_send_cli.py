"""`audsync send` and `audsync delete-users`: the console script in a subprocess against the
loopback fake Amplitude."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audsync.testing.fake_amplitude import FakeAmplitude

AUDSYNC = shutil.which("audsync", path=str(Path(sys.executable).parent)) or "audsync"
API_KEY = "test-api-key-123"
SECRET = "test-secret-key"


@pytest.fixture
def fake():
    server = FakeAmplitude(api_keys=(API_KEY,), secret_key=SECRET)
    yield server
    server.close()


def config(tmp_path: Path, fake: FakeAmplitude, extra: str = "", api_key: str = API_KEY) -> Path:
    path = tmp_path / "audsync.toml"
    path.write_text(
        f'[amplitude]\napi_key = "{api_key}"\nendpoint = "{fake.url}"\n{extra}\n'
        "[delivery]\nbackoff_initial_s = 0.001\nbackoff_max_s = 0.005\nmax_attempts = 2\n"
        "throttle_pause_s = 0.02\ntimeout_s = 5\n")
    return path


def run(args, stdin: str | None = None, env=None):
    return subprocess.run([AUDSYNC, *args], input=stdin, capture_output=True, text=True, timeout=120, env=env)


def track(user: str, n: int) -> str:
    return json.dumps({"type": "track", "userId": user, "event": "Played", "messageId": f"{user}-{n}",
                       "properties": {"n": n}})


def test_send_delivers_every_message_and_exits_0(tmp_path, fake):
    lines = [track(f"user-{i:04d}", i) for i in range(50)]
    lines.append(json.dumps({"type": "identify", "userId": "user-0001", "traits": {"vip": True}}))
    result = run(["send", "--config", str(config(tmp_path, fake))], stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    assert len(fake.events) == 50 and len(fake.identifies) == 1
    assert fake.properties["user-0001"] == {"vip": True}
    assert "messages read: 51" in result.stdout and "50 event" in result.stdout and "1 identify" in result.stdout


def test_send_keeps_each_users_order(tmp_path, fake):
    lines = [track("user-order", n) for n in range(30)]
    result = run(["send", "--config", str(config(tmp_path, fake))], stdin="\n".join(lines) + "\n")
    assert result.returncode == 0
    assert [e["event_properties"]["n"] for e in fake.arrivals["user-order"]] == list(range(30))


def test_send_writes_rejected_and_invalid_messages_with_reasons_ready_to_resend(tmp_path, fake):
    fake.reject.add("user-bad01")
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join([track("user-good1", 1), track("user-bad01", 2), "{broken",
                                 json.dumps({"type": "track", "userId": "user-x1"})]) + "\n")
    rejects = tmp_path / "rejects.jsonl"
    result = run(["send", "--config", str(config(tmp_path, fake)), str(source), "--rejects", str(rejects)])
    assert result.returncode == 1
    written = [json.loads(line) for line in rejects.read_text().splitlines()]
    by_line = {w["_audsync"]["line"]: w for w in written}
    assert set(by_line) == {2, 3, 4}
    assert by_line[2]["_audsync"]["status"] == "rejected" and "user_properties" in by_line[2]["_audsync"]["reason"]
    assert by_line[2]["userId"] == "user-bad01" and by_line[2]["event"] == "Played"
    assert by_line[3]["_audsync"]["status"] == "invalid" and by_line[3]["raw"] == "{broken"
    assert by_line[4]["_audsync"]["status"] == "invalid" and "event" in by_line[4]["_audsync"]["reason"]
    assert "rejected by Amplitude: 1" in result.stdout and "invalid (not translated): 2" in result.stdout
    # the fixed file goes back through send as it is
    fake.reject.clear()
    again = run(["send", "--config", str(config(tmp_path, fake)), "-"], stdin=json.dumps(by_line[2]) + "\n")
    assert again.returncode == 0 and any(e["user_id"] == "user-bad01" for e in fake.events)


def test_send_reports_undelivered_when_retries_run_out(tmp_path, fake):
    fake.unavailable.add("user-down1")
    rejects = tmp_path / "rejects.jsonl"
    result = run(["send", "--config", str(config(tmp_path, fake)), "--rejects", str(rejects)],
                 stdin=track("user-down1", 1) + "\n")
    assert result.returncode == 1
    assert "undelivered (retries exhausted): 1" in result.stdout and "503" in result.stdout
    written = json.loads(rejects.read_text())
    assert written["_audsync"]["status"] == "undelivered" and written["userId"] == "user-down1"
    assert fake.events == []


def test_send_with_invalid_api_key_exits_2_without_showing_the_key(tmp_path, fake):
    result = run(["send", "--config", str(config(tmp_path, fake, api_key="wrong-key-SECRET"))],
                 stdin=track("user-0001", 1) + "\n")
    assert result.returncode == 2
    assert "API key" in result.stderr and "wrong-key-SECRET" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_send_logs_non_200_answers_as_json_without_the_key(tmp_path, fake):
    fake.fail_next = [503]
    result = run(["send", "--config", str(config(tmp_path, fake)), "--log-format", "json"],
                 stdin=track("user-0001", 1) + "\n")
    assert result.returncode == 0
    logs = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    answer = next(entry for entry in logs if entry.get("status") == 503)
    assert answer["batch_size"] == 1 and answer["api"] == "event"
    assert API_KEY not in result.stderr


def test_send_prints_plain_progress_lines_when_not_on_a_terminal(tmp_path, fake):
    result = run(["send", "--config", str(config(tmp_path, fake))], stdin=track("user-0001", 1) + "\n")
    assert "sending:" in result.stderr and "\r" not in result.stderr


def test_delete_users_sends_100_ids_per_request_at_most_once_a_second(tmp_path, fake):
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(f"user-{i:04d}" for i in range(250)) + "\n\n")
    cfg = config(tmp_path, fake, extra=f'secret_key = "{SECRET}"')
    started = time.monotonic()
    result = run(["delete-users", "--config", str(cfg), "--from-file", str(ids)])
    assert result.returncode == 0, result.stderr
    assert [len(d["body"]["user_ids"]) for d in fake.deletions] == [100, 100, 50]
    gaps = [b["time"] - a["time"] for a, b in zip(fake.deletions, fake.deletions[1:])]
    assert all(gap >= 0.95 for gap in gaps) and time.monotonic() - started >= 1.9
    assert "250 users: 250 accepted" in result.stdout


def test_delete_users_without_secret_key_is_a_clear_config_error(tmp_path, fake):
    result = run(["delete-users", "--config", str(config(tmp_path, fake)), "user-0001"])
    assert result.returncode == 2 and "secret_key" in result.stderr and "Traceback" not in result.stderr
    assert fake.deletions == []


def test_delete_users_with_wrong_secret_exits_2(tmp_path, fake):
    cfg = config(tmp_path, fake, extra='secret_key = "not-the-secret"')
    result = run(["delete-users", "--config", str(cfg), "user-0001"])
    assert result.returncode == 2 and "credentials" in result.stderr and "not-the-secret" not in result.stderr


def test_delete_users_needs_ids(tmp_path, fake):
    result = run(["delete-users", "--config", str(config(tmp_path, fake, extra=f'secret_key = "{SECRET}"'))])
    assert result.returncode == 2 and "USER_ID" in result.stderr


def test_send_rejects_a_message_nested_too_deeply_alone_and_writes_it_to_rejects_as_read(tmp_path, fake):
    deep: dict = {"leaf": 1}
    for _ in range(300):
        deep = {"a": deep}
    hostile = {"type": "track", "userId": "user-deep1", "event": "Played", "properties": deep}
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join([track("user-good1", 1), json.dumps(hostile), track("user-good2", 3)]) + "\n")
    rejects = tmp_path / "rejects.jsonl"
    result = run(["send", "--config", str(config(tmp_path, fake)), str(source), "--rejects", str(rejects)])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert sorted(e["user_id"] for e in fake.events) == ["user-good1", "user-good2"]
    assert "invalid (not translated): 1" in result.stdout
    (written,) = [json.loads(line) for line in rejects.read_text().splitlines()]
    note = written.pop("_audsync")
    assert note["line"] == 2 and note["status"] == "invalid" and "nested more than 40 levels" in note["reason"]
    assert written == hostile  # the message as read: fix it and send it again
