"""`audsync db upgrade` and `audsync status` through the CLI entry point (no source or delivery needed)."""

from __future__ import annotations

import json
import textwrap

from audsync.cli import main

SECRET = "very-secret-api-key-987"


def _config(tmp_path, state_url):
    path = tmp_path / "audsync.toml"
    path.write_text(textwrap.dedent(f'''
        [state]
        url = "{state_url}"
        [amplitude]
        api_key = "{SECRET}"
        [[audiences]]
        name = "Order Completed Last 30days"
        schedule = "every 2h"
        source = {{ type = "file", path = "members.csv" }}
        [[audiences]]
        name = "LTV"
        kind = "computed_trait"
        source = {{ type = "file", path = "ltv.csv" }}
    '''))
    return str(path)


def test_db_upgrade_applies_migrations_and_says_so(tmp_path, state_url, capsys):
    config = _config(tmp_path, state_url)
    assert main(["db", "upgrade", "--config", config]) == 0
    assert "state database: applied migration 0001" in capsys.readouterr().err
    assert main(["db", "upgrade", "--config", config]) == 0
    assert "already up to date" in capsys.readouterr().err


def test_status_json_lists_every_audience_with_next_run_and_no_secret(tmp_path, state_url, capsys):
    config = _config(tmp_path, state_url)
    assert main(["status", "--config", config, "--json"]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out
    entries = json.loads(out)["audiences"]
    assert [e["key"] for e in entries] == ["order_completed_last_30days", "ltv"]
    assert entries[0]["schedule"] == "every 2h" and entries[1]["schedule"] == "every 1h"
    assert all(e["members"] == 0 and e["last_runs"] == [] and e["next_run"] > 0 for e in entries)


def test_status_text_says_an_audience_never_ran(tmp_path, state_url, capsys):
    config = _config(tmp_path, state_url)
    main(["db", "upgrade", "--config", config])
    assert main(["status", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "never run against this destination" in out and SECRET not in out


def test_unknown_audience_is_a_usage_error(tmp_path, state_url, capsys):
    config = _config(tmp_path, state_url)
    assert main(["backfill", "--config", config, "--audience", "Nope"]) == 2
    assert "no audience named 'Nope'" in capsys.readouterr().err
