"""Computed-trait values end to end: the `audsync` console script in a subprocess, the state
database (SQLite and PostgreSQL) and the loopback fake Amplitude, which refuses what Amplitude
refuses."""

from __future__ import annotations

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
