"""Credentials never leave audsync (DESIGN.md section 5): the real console script runs the commands
that meet them, with known secrets, and every channel it writes to is searched for them: stdout,
stderr (plain and JSON logs), the --rejects file, the file: sink and every row of the state database."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import sqlalchemy as sa

from audsync.testing.fake_amplitude import FakeAmplitude

AUDSYNC = shutil.which("audsync", path=str(Path(sys.executable).parent)) or "audsync"
GOOD_KEY = "good-api-key-Hq27Lm"
BAD_KEY = "bad-api-key-Zq81Wv"
SECRET_KEY = "secret-key-Pw55Tx"
WRONG_SECRET = "wrong-secret-Jk09Rb"
USERINFO_PASSWORD = "userinfo-pw-Ab12"
QUERY_PASSWORD = "query-pw-Cd34"
STATE_PASSWORD = "state-pw-Ef56"
SECRETS = [GOOD_KEY, BAD_KEY, SECRET_KEY, WRONG_SECRET, USERINFO_PASSWORD, QUERY_PASSWORD, STATE_PASSWORD,
           *(base64.b64encode(f"{GOOD_KEY}:{s}".encode()).decode() for s in (SECRET_KEY, WRONG_SECRET))]
USERINFO_URL = f"postgresql+psycopg://reader:{USERINFO_PASSWORD}@127.0.0.1:1/wh?sslmode=disable"
QUERY_URL = f"postgresql+psycopg://reader@127.0.0.1:1/wh?PassWord={QUERY_PASSWORD}"
ENV = {k: v for k, v in os.environ.items() if not k.startswith("AMPLITUDE_")}


def write_config(tmp_path: Path, state_url: str, endpoint: str, name: str = "audsync.toml") -> Path:
    (tmp_path / "members.jsonl").write_text('{"user_id": "user-00001"}\n{"user_id": "user-00002"}\n')
    path = tmp_path / name
    path.write_text(textwrap.dedent(f'''
        [state]
        url = "{state_url}?password={STATE_PASSWORD}"
        [amplitude]
        endpoint = "{endpoint}"
        [delivery]
        max_attempts = 1
        timeout_s = 5
        [daemon]
        default_schedule = "every 1s"
        [[audiences]]
        name = "Warehouse Users"
        source = {{ type = "sql", query = "SELECT 1 AS user_id", url = "{USERINFO_URL}" }}
        [[audiences]]
        name = "Warehouse Buyers"
        source = {{ type = "sql", query = "SELECT 1 AS user_id", url = "{QUERY_URL}" }}
        [[audiences]]
        name = "Buyers"
        source = {{ type = "file", path = "members.jsonl" }}
    '''))
    return path


def state_rows(state_url: str) -> str:
    engine = sa.create_engine(state_url)
    try:
        with engine.connect() as conn:
            return "\n".join(str(row) for table in sa.inspect(conn).get_table_names()
                             for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')))
    finally:
        engine.dispose()


def daemon_output(config: Path, env: dict[str, str], tmp_path: Path) -> str:
    """A daemon with JSON logs until a run of each of the three audiences failed, then stopped with SIGTERM."""
    log_path = tmp_path / "daemon.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([AUDSYNC, "daemon", "--config", str(config), "--log-format", "json",
                                 "--metrics-port", "0"], stdout=log, stderr=log, env=env)
        try:
            deadline = time.monotonic() + 30
            while (log_path.read_text().count("run failed") < 3 and proc.poll() is None
                   and time.monotonic() < deadline):
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return log_path.read_text()


def test_no_credential_reaches_any_output_channel(tmp_path, state_url):
    fake = FakeAmplitude(api_keys=(GOOD_KEY,), secret_key=SECRET_KEY)
    try:
        config = write_config(tmp_path, state_url, fake.url)
        (tmp_path / "in.jsonl").write_text('{"type": "identify", "userId": "user-00001", "traits": {"a": 1}}\n')
        bad_key = dict(ENV, AMPLITUDE_API_KEY=BAD_KEY)
        commands = [
            (["run", "--log-format", "json"], bad_key),
            (["run"], bad_key),
            (["status", "--json"], bad_key),
            (["status"], bad_key),
            (["send", str(tmp_path / "in.jsonl"), "--rejects", str(tmp_path / "rejects.jsonl")], bad_key),
            (["send", str(tmp_path / "in.jsonl"), "--log-format", "json"], bad_key),
            (["delete-users", "user-00001"], dict(ENV, AMPLITUDE_API_KEY=GOOD_KEY, AMPLITUDE_SECRET_KEY=SECRET_KEY)),
            (["delete-users", "user-00001", "--log-format", "json"],
             dict(ENV, AMPLITUDE_API_KEY=GOOD_KEY, AMPLITUDE_SECRET_KEY=WRONG_SECRET)),
        ]
        outputs = []
        for args, env in commands:
            result = subprocess.run([AUDSYNC, args[0], "--config", str(config), *args[1:]], capture_output=True,
                                    text=True, timeout=60, env=env)
            outputs.append(f"$ audsync {' '.join(args)}\n{result.stdout}{result.stderr}")
        outputs.append(daemon_output(config, bad_key, tmp_path))
        down = write_config(tmp_path, "postgresql+psycopg://postgres@127.0.0.1:1/state", fake.url, name="down.toml")
        result = subprocess.run([AUDSYNC, "status", "--config", str(down)], capture_output=True, text=True,
                                timeout=60, env=ENV)
        outputs.append(result.stdout + result.stderr)
        sink_config = write_config(tmp_path, state_url, "file:sink.jsonl", name="sink.toml")
        result = subprocess.run([AUDSYNC, "send", "--config", str(sink_config), str(tmp_path / "in.jsonl")],
                                capture_output=True, text=True, timeout=60,
                                env=dict(ENV, AMPLITUDE_API_KEY=GOOD_KEY, AMPLITUDE_SECRET_KEY=SECRET_KEY))
        outputs.append(result.stdout + result.stderr)
    finally:
        fake.close()

    channels = {
        "output": "\n".join(outputs),
        "rejects file": (tmp_path / "rejects.jsonl").read_text(),
        "file sink": (tmp_path / "sink.jsonl").read_text(),
        "state rows": state_rows(state_url),
    }
    if state_url.startswith("sqlite"):
        channels["state files"] = "".join(p.read_bytes().decode("latin-1") for p in tmp_path.glob("state.db*"))
    for channel, text in channels.items():
        leaked = [secret for secret in SECRETS if secret in text]
        assert not leaked, f"{channel} shows {leaked}:\n{text}"
    # The failures that carried the credentials were all met, and said what they had to say.
    output, rows = channels["output"], channels["state rows"]
    assert "reader:***@127.0.0.1:1/wh" in output and "PassWord=***" in output
    assert '"error": "audience \\"Warehouse Buyers\\": cannot connect to postgresql+psycopg://reader@127.0.0.1:1/wh?' \
           'PassWord=***' in output  # status --json
    assert "state database postgresql+psycopg://postgres@127.0.0.1:1/state?password=***" in output
    assert "reader:***@127.0.0.1:1/wh" in rows and "PassWord=***" in rows
    assert "Amplitude refused the API key (from AMPLITUDE_API_KEY" in output
    assert "Invalid API key: ***" in output
    assert "Amplitude refused the credentials for deletions (401)" in output
    assert output.count('"message": "run failed') >= 3
    assert channels["file sink"]
