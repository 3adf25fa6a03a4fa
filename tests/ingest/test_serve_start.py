"""What `audsync serve` refuses at start (exit 2, saying what to fix) and where its keys come from."""

from __future__ import annotations

import re
import socket

import pytest

from audsync.cli import main

from .conftest import WRITE_KEY, stored_messages, write_config


def test_no_write_keys_refuses_to_start(tmp_path, sqlite_url, servers):
    proc = servers(write_config(tmp_path, sqlite_url, ingest="forward = false\n"))
    assert proc.wait(30) == 2
    assert "ingest.write_keys" in proc.output() and "AUDSYNC_WRITE_KEYS" in proc.output()


def test_forwarding_without_an_api_key_refuses_to_start(tmp_path, sqlite_url, servers):
    config = write_config(tmp_path, sqlite_url, ingest=f'write_keys = ["{WRITE_KEY}"]\n')
    config.write_text(config.read_text().replace('api_key = "test-api-key-123"', ""))
    proc = servers(config, env_extra={"AMPLITUDE_API_KEY": ""})
    assert proc.wait(30) == 2
    assert "amplitude.api_key" in proc.output() and "audsync serve" in proc.output()
    # storing only needs no key
    config.write_text(config.read_text().replace(f'write_keys = ["{WRITE_KEY}"]', f'write_keys = ["{WRITE_KEY}"]\nforward = false'))
    stores = servers(config, env_extra={"AMPLITUDE_API_KEY": ""})
    assert stores.port and stores.stop() == 0, stores.output()


def test_a_taken_port_refuses_to_start(tmp_path, sqlite_url, servers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = servers(write_config(tmp_path, sqlite_url), args=("--port", str(taken.getsockname()[1])))
        assert proc.wait(30) == 2
    assert "cannot listen on 127.0.0.1:" in proc.output()


def test_write_keys_from_the_environment(tmp_path, sqlite_url, servers):
    proc = servers(write_config(tmp_path, sqlite_url, ingest="forward = false\n"),
                   env_extra={"AUDSYNC_WRITE_KEYS": "wk-env-0001, wk-env-0002"})
    with proc.client() as client:
        for key in ("wk-env-0001", "wk-env-0002"):
            body = {"batch": [{"type": "track", "event": key, "userId": "user-0001"}], "writeKey": key}
            assert client.post("/v1/batch", json=body).json() == {"success": True}
        assert client.post("/v1/batch", json={"batch": [], "writeKey": WRITE_KEY}).status_code == 401
    assert proc.stop() == 0, proc.output()
    assert [m["event"] for m in stored_messages(sqlite_url)] == ["wk-env-0001", "wk-env-0002"]


def test_serve_help_gives_exit_codes_and_an_example(capsys):
    with pytest.raises(SystemExit) as done:
        main(["serve", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    codes = text.split("exit codes:\n", 1)[1].split("\n\n", 1)[0]
    assert re.findall(r"^  (\d+) ", codes, flags=re.MULTILINE) == ["0", "2", "3", "70"]
    assert "forward = false" in codes
    assert re.search(r"^  audsync serve --config \S+", text.split("example:\n", 1)[1], flags=re.MULTILINE)
    assert "--port P" in text and "--host H" in text


def test_a_second_server_on_one_sqlite_state_is_refused_naming_the_first(tmp_path, sqlite_url, servers):
    config = write_config(tmp_path, sqlite_url)
    first = servers(config)
    assert first.port
    second = servers(config)
    assert second.wait(30) == 2
    assert "already serves this SQLite state database" in second.output()
    assert f"pid {first.pid}" in second.output() and "PostgreSQL" in second.output()
    assert first.stop() == 0, first.output()
    third = servers(config)  # the first one stopped: its place is free
    assert third.port and third.stop() == 0, third.output()


def test_several_servers_share_one_postgresql_state(tmp_path, pg_url, servers):
    config = write_config(tmp_path, pg_url)
    first, second = servers(config), servers(config)
    assert first.port and second.port
    assert first.stop() == 0 and second.stop() == 0


def test_a_stop_signal_while_serve_is_starting_stops_it_cleanly(tmp_path, state_url, servers):
    # The first migration's log line comes after serve took the stop signals over and before it
    # serves: a service manager's SIGTERM then must not kill it mid-start with the signal.
    proc = servers(write_config(tmp_path, state_url, ingest=f'write_keys = ["{WRITE_KEY}"]\nforward = true\n'))
    proc.wait_for("state database: applied migration 0001")
    assert proc.stop() == 0, proc.output()
    assert "stopped cleanly" in proc.output()
