"""The mass-exit guard (DESIGN.md section 3, `max_exit_fraction`): a source with no rows, or a run
removing more than max_exit_fraction of an audience of 100 or more members, plans nothing and
changes no state until `--allow-mass-exit`. Real runs on SQLite and PostgreSQL against the fake
Amplitude; the CLI through the installed console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from audsync.state import StateStore
from audsync.status_report import status
from audsync.sync import backfill, run_once

from .test_sync import AUD, KEY, audience, members_of

AUDSYNC = shutil.which("audsync", path=str(Path(sys.executable).parent)) or "audsync"
USERS = [f"user-{i:04d}" for i in range(100)]


def rows(users, value=None):
    return [(u, None) if value is None else (u, None, value) for u in users]


def synced(project, users, **kw):
    """A first sync of `users`; returns the config."""
    cfg = project.config(audience(project, rows(users), **kw))
    assert run_once(cfg).exit_code == 0
    return cfg


def outbox_rows(cfg):
    with StateStore(cfg.state.url) as store:
        row = store.find_audience(cfg.amplitude.destination_id, KEY)
        return store.audience_counts(row.id)["pending"]


def test_a_run_removing_more_than_max_exit_fraction_plans_nothing_until_allowed(project, amplitude):
    synced(project, USERS)
    amplitude.clear()
    cfg = project.config(audience(project, rows(USERS[:49])))  # 51 of 100 would leave: more than half
    for _ in range(2):  # the next run without the flag is guarded again
        report = run_once(cfg)
        (entry,) = report.audiences
        assert report.exit_code == 2 and entry.guarded
        assert entry.error == (
            f'audience "{AUD}": this run would remove 51 of its 100 members (51%), more than '
            "max_exit_fraction = 0.5; nothing was planned and its synced state is unchanged. If that is "
            f'intended, run once: audsync run --allow-mass-exit --audience "{AUD}"')
        assert (entry.exited, entry.delivered) == (0, 0) and amplitude.identifies == []
        assert len(members_of(cfg)) == 100 and outbox_rows(cfg) == 0
    runs = status(cfg)[0]["last_runs"]
    assert [r["status"] for r in runs] == ["guarded", "guarded", "ok"]
    assert runs[0]["error"] == entry.error and runs[0]["exited"] == 0

    (entry,) = run_once(cfg, allow_mass_exit=True).audiences
    assert (entry.exited, entry.delivered, entry.error) == (51, 51, None)
    assert len(members_of(cfg)) == 49 and amplitude.properties[USERS[99]] == {KEY: False}


def test_exactly_max_exit_fraction_or_an_audience_under_100_members_is_not_guarded(project, amplitude):
    cfg = synced(project, USERS)
    cfg = project.config(audience(project, rows(USERS[:50])))  # exactly half leaves
    (entry,) = run_once(cfg).audiences
    assert (entry.exited, entry.error) == (50, None)
    # 50 members left: an audience this small is not guarded by the fraction.
    cfg = project.config(audience(project, rows(USERS[:1])))
    (entry,) = run_once(cfg).audiences
    assert (entry.exited, entry.error) == (49, None)


def test_an_empty_source_is_guarded_whenever_the_audience_has_members(project, amplitude):
    cfg = project.config(audience(project, []))
    (entry,) = run_once(cfg).audiences  # no members yet: nothing to protect
    assert entry.error is None and entry.entered == 0
    synced(project, USERS[:3])
    cfg = project.config(audience(project, []))
    report = run_once(cfg)
    (entry,) = report.audiences
    assert report.exit_code == 2 and entry.guarded
    assert "its source returned no rows, so this run would remove all 3 of its members" in entry.error
    assert len(members_of(cfg)) == 3
    # Rows that are all skipped leave the source as empty: said so, with the count read.
    cfg = project.config(audience(project, [("null", None), ("abc", None)]))
    (entry,) = run_once(cfg).audiences
    assert entry.guarded and "no usable rows (2 read, all skipped)" in entry.error
    (entry,) = run_once(cfg, allow_mass_exit=True).audiences
    assert (entry.exited, entry.error) == (3, None) and members_of(cfg) == {}


def test_a_computed_trait_whose_values_would_mostly_be_unset_is_guarded(project, amplitude):
    cfg = project.config(audience(project, rows(USERS, 7), name="LTV", kind="computed_trait"))
    assert run_once(cfg).exit_code == 0
    cfg = project.config(audience(project, rows(USERS[:30], 7), name="LTV", kind="computed_trait"))
    (entry,) = run_once(cfg).audiences
    assert entry.guarded and entry.unset == 0
    assert "this run would unset the value of 70 of its 100 members (70%)" in entry.error
    assert len(members_of(cfg, "ltv")) == 100


def test_max_exit_fraction_per_audience_overrides_sync_and_a_guarded_audience_does_not_stop_the_others(
        project, amplitude):
    def config(n):
        return project.config(audience(project, rows(USERS[:n]), name="Strict")
                              + audience(project, rows(USERS[:n]), name="Loose", extra="max_exit_fraction = 0.9"),
                              extra="[sync]\nmax_exit_fraction = 0.2")

    assert run_once(config(100)).exit_code == 0
    report = run_once(config(70))  # 30% leave each audience
    strict, loose = report.audiences
    assert report.exit_code == 2
    assert strict.guarded and "more than max_exit_fraction = 0.2" in strict.error
    assert (loose.error, loose.exited, loose.delivered) == (None, 30, 30)


def test_dry_run_and_backfill_show_the_guards_numbers(project, amplitude):
    synced(project, USERS)
    cfg = project.config(audience(project, rows(USERS[:10])))
    report = run_once(cfg, dry_run=True)
    (entry,) = report.audiences
    assert entry.exited == 90 and report.exit_code == 0
    assert entry.notes == ["a run would be guarded: this run would remove 90 of its 100 members (90%), more "
                           "than max_exit_fraction = 0.5; it would plan nothing without --allow-mass-exit"]
    (entry,) = run_once(cfg, dry_run=True, allow_mass_exit=True).audiences
    assert entry.notes == []
    report = backfill(cfg, AUD)
    (entry,) = report.audiences
    assert report.exit_code == 2 and entry.guarded and "remove 90 of its 100 members" in entry.error
    assert len(members_of(cfg)) == 100 and outbox_rows(cfg) == 0


def test_the_cli_exits_2_naming_the_way_through_and_status_shows_the_guarded_run(project, amplitude):
    synced(project, USERS)
    path = str(project.write(audience(project, rows(USERS[:40]))))

    def cli(*args):
        return subprocess.run([AUDSYNC, *args, "--config", path], capture_output=True, text=True, timeout=120)

    guarded = cli("run")
    assert guarded.returncode == 2, guarded.stderr
    assert f"{KEY}: guarded: audience \"{AUD}\": this run would remove 60 of its 100 members" in guarded.stdout
    assert f'audsync run --allow-mass-exit --audience "{AUD}"' in guarded.stderr
    assert "Traceback" not in guarded.stderr
    shown = cli("status")
    assert " run guarded (" in shown.stdout and "error: audience" in shown.stdout
    last = json.loads(cli("status", "--json").stdout)["audiences"][0]["last_runs"][0]
    assert last["status"] == "guarded" and last["exited"] == 0
    allowed = cli("run", "--allow-mass-exit", "--audience", AUD)
    assert allowed.returncode == 0, allowed.stderr + allowed.stdout
    assert "-60 exited" in allowed.stdout and len(members_of(project.config(""))) == 40
