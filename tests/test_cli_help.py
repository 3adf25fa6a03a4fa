"""`audsync --version`, and every command's --help giving its exit codes and an example."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from audsync.cli import main

AUDSYNC = str(Path(sys.executable).with_name("audsync"))
COMMANDS = ["translate", "send", "delete-users", "run", "backfill", "status", "daemon", "serve", "db upgrade"]


def test_version_prints_the_installed_version():
    result = subprocess.run([AUDSYNC, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"audsync {version('audsync')}\n"
    assert re.fullmatch(r"audsync \d+\.\d+\.\d+\S*\n", result.stdout)


def _help(capsys, *command: str) -> str:
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_gives_exit_codes_and_an_example(capsys, command):
    text = _help(capsys, *command.split())
    codes = text.split("exit codes:\n", 1)[1].split("\n\n", 1)[0]
    listed = re.findall(r"^  (\d+) ", codes, flags=re.MULTILINE)
    assert listed[0] == "0" and listed[-1] == "70", codes
    assert "2" in listed  # every command has something a user can get wrong
    examples = text.split("example:\n", 1)[1]
    assert re.search(rf"^  audsync {command} --config \S+", examples, flags=re.MULTILINE), examples


def test_run_and_daemon_help_tell_the_codes_a_scheduler_acts_on(capsys):
    run = _help(capsys, "run")
    assert "  3   temporary trouble, retry later" in run
    assert "guarded audience" in run
    daemon = _help(capsys, "daemon")
    assert "  1   a run outlasted daemon.stop_timeout_s" in daemon


def test_top_level_help_points_to_each_commands_help(capsys):
    text = _help(capsys)
    assert "`audsync COMMAND --help` gives each command's exit codes and examples." in text
    assert "--version" in text
