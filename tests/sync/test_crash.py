"""A bug inside one audience's run (an exception audsync did not raise on purpose): the run is
recorded as failed with its reason, the other audiences still run, and the command exits 70
(a crash), never 1, keeping the traceback. No input is known to cause such a bug, so one is
planted in the operation builder for the first audience only."""

from __future__ import annotations

import pytest

from audsync._audience_ops import OperationBuilder
from audsync.cli import main
from audsync.status_report import format_status, status

from .test_sync import audience

BROKEN, FINE = "Broken Members", "Fine Members"


@pytest.fixture
def planted_bug(monkeypatch):
    original = OperationBuilder.encode_page

    def encode_page(self, page):
        if self.audience.name == BROKEN:
            raise KeyError("planted")
        return original(self, page)

    monkeypatch.setattr(OperationBuilder, "encode_page", encode_page)


def test_a_crashed_audience_run_is_recorded_failed_with_its_reason_the_others_run_and_run_exits_70(
        project, amplitude, planted_bug, capsys):
    rows = [(f"user{i:04d}", None) for i in range(20)]
    config = project.write(audience(project, rows, name=BROKEN) + audience(project, rows, name=FINE))
    assert main(["run", "--config", str(config)]) == 70
    out, err = capsys.readouterr()
    assert "Traceback" in err and "KeyError: 'planted'" in err
    assert "broken_members: failed: crashed (a bug in audsync" in out
    assert "fine_members: 20 read, +20 entered" in out
    assert all(amplitude.properties[u] == {"fine_members": True} for u, _ in rows)

    broken, fine = status(project.config(audience(project, rows, name=BROKEN) + audience(project, rows, name=FINE)))
    run = broken["last_runs"][0]
    assert run["status"] == "failed" and "KeyError: 'planted'" in run["error"] and run["entered"] == 20
    assert run["pending"] == 20 and broken["pending"] == 20  # planned, not lost: the next run sends it
    assert fine["last_runs"][0]["status"] == "ok"
    assert "failed (" in format_status([broken]) and "error: crashed (a bug in audsync" in format_status([broken])


def test_a_crash_in_any_command_exits_70_with_its_traceback_as_json_with_log_format_json(
        project, amplitude, monkeypatch, capsys):
    import json

    def broken_status(config, **kwargs):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr("audsync.status_report.status", broken_status)
    config = str(project.write(audience(project, [("user0001", None)])))
    assert main(["status", "--config", config]) == 70
    assert "Traceback" in capsys.readouterr().err
    assert main(["status", "--config", config, "--log-format", "json"]) == 70
    (line,) = capsys.readouterr().err.splitlines()
    record = json.loads(line)
    assert record["level"] == "critical" and "a bug in audsync" in record["message"]
    assert "ZeroDivisionError: planted" in record["exception"]
