"""Computed-trait values end to end: the `audsync` console script in a subprocess, the state
database (SQLite and PostgreSQL) and the loopback fake Amplitude, which refuses what Amplitude
refuses."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

AUDSYNC = shutil.which("audsync", path=str(Path(sys.executable).parent)) or "audsync"


def run_cli(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([AUDSYNC, "run", "--config", str(config)], capture_output=True, text=True, timeout=120)


def test_every_user_of_a_computed_trait_gets_what_translate_gives_not_the_raw_value(project, amplitude):
    rows = [(f"user000{i}", None, {"a": i}) for i in range(1, 4)]  # the shape's first users
    rows += [("user0004", None, {"a": None, "b": [[1, 2]]}), ("user0005", None, [[1], [2, 3]]),
             ("user0006", None, [None, "x"])]
    source = project.members("ltv", rows)
    config = project.write(f'[[audiences]]\nname = "LTV"\nkind = "computed_trait"\nsource = {source}\n')
    result = run_cli(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 delivered, 0 rejected" in result.stdout
    assert amplitude.properties["user0003"] == {"ltv": {"a": 3}}
    assert amplitude.properties["user0004"] == {"ltv": {"b": "[[1,2]]"}}
    assert amplitude.properties["user0005"] == {"ltv": "[[1],[2,3]]"}
    assert amplitude.properties["user0006"] == {"ltv": ["x"]}


def _nested(levels: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def test_a_value_too_deep_or_beyond_64_bit_integers_skips_its_user_with_the_reason_and_the_run_goes_on(
        project, amplitude, pg_url):
    values = {"user0001": 2**64, "user0002": {"n": -(2**63) - 1}, "user0003": _nested(260),
              "user0004": _nested(40), "user0005": 5, "user0006": _nested(39)}
    # jsonb values reach Python through json.loads: integers of any size, any depth
    query = " UNION ALL ".join(f"SELECT '{user}' AS user_id, '{json.dumps(value)}'::jsonb AS value"
                               for user, value in values.items())
    members = project.members("members", [("user0001", None), ("user0003", None)])
    config = project.write(f"""
[[audiences]]
name = "LTV"
kind = "computed_trait"
source = {{ type = "sql", url = "{pg_url}", query = '''{query}''' }}
[[audiences]]
name = "Members"
source = {members}
""")
    result = run_cli(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "skipped 2 value holding an integer beyond 64 bits, 2 value nested more than 40 levels" in result.stdout
    assert amplitude.properties["user0005"] == {"ltv": 5}
    assert amplitude.properties["user0006"] == {"ltv": _nested(39)}  # with user_properties, 40 levels
    assert amplitude.properties["user0001"] == amplitude.properties["user0003"] == {"members": True}
    assert {"user0002", "user0004"}.isdisjoint(amplitude.properties)
