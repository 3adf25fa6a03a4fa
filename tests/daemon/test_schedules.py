"""Schedules: epoch-aligned intervals (every worker fires at the same instants), UTC crons, and the
slot a late run belongs to."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from audsync.config import AudienceConfig, Config, DaemonSettings, FileSource
from audsync.daemon.scheduler import Daemon, DatabaseClock, OnDatabaseClock, result_of
from audsync.daemon.schedules import current_slot, next_run, trigger_for
from audsync.sync import AudienceReport

UTC = timezone.utc
NOW = datetime(2026, 3, 14, 15, 9, 26, 535000, tzinfo=UTC)


@pytest.mark.parametrize("schedule,seconds", [("every 2s", 2), ("every 7m", 420), ("every 5h", 18000),
                                              ("every 3d", 259200)])
def test_every_n_fires_on_multiples_of_n_since_the_epoch_whatever_the_start(schedule, seconds):
    for start in (NOW, NOW + timedelta(seconds=1.7), NOW + timedelta(hours=5, seconds=13)):
        fire = next_run(schedule, start)
        assert fire > start
        assert fire.timestamp() % seconds == 0
        assert fire - start <= timedelta(seconds=seconds)


def test_two_workers_started_at_different_times_share_the_same_fire_instants():
    trigger = trigger_for("every 10m")
    a = trigger.get_next_fire_time(None, NOW)
    b = trigger_for("every 10m").get_next_fire_time(None, NOW + timedelta(seconds=30))
    assert a == b == datetime(2026, 3, 14, 15, 10, tzinfo=UTC)


def test_cron_expressions_run_in_utc():
    assert next_run("30 2 * * *", NOW) == datetime(2026, 3, 15, 2, 30, tzinfo=UTC)
    assert next_run("*/15 * * * *", NOW) == datetime(2026, 3, 14, 15, 15, tzinfo=UTC)


def test_a_late_run_belongs_to_the_latest_fire_time_within_the_grace_period():
    assert current_slot("every 2s", NOW, 300) == datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
    assert current_slot("every 1h", NOW, 3600) == datetime(2026, 3, 14, 15, 0, tzinfo=UTC)
    assert current_slot("*/5 * * * *", NOW, 600) == datetime(2026, 3, 14, 15, 5, tzinfo=UTC)
    assert current_slot("0 * * * *", NOW, 900) == datetime(2026, 3, 14, 15, 0, tzinfo=UTC)


def test_a_run_with_no_fire_time_within_the_grace_period_is_its_own_slot():
    assert current_slot("every 1h", NOW, 300) == NOW
    assert current_slot("0 * * * *", NOW, 60) == NOW


def test_a_worker_fires_at_the_schedules_instants_on_the_database_clock_even_after_its_offset_moved():
    clock = DatabaseClock()
    clock.offset_s = -30.5  # this machine's clock is 30.5 s ahead of the database's
    trigger = OnDatabaseClock(trigger_for("every 4s"), clock)
    fire = trigger.get_next_fire_time(None, NOW)
    assert (fire.timestamp() + clock.offset_s) % 4 == 0 and fire > NOW
    clock.offset_s = -29.25  # this machine's clock was set closer
    later = trigger.get_next_fire_time(fire, fire)
    assert (later.timestamp() + clock.offset_s) % 4 == 0 and later > fire


def test_an_audience_without_a_schedule_runs_on_the_daemon_default():
    audience = AudienceConfig(name="a", key="a", kind="audience", schedule=None, send_track_events=False,
                              source=FileSource(path=Path("a.csv")))
    timed = AudienceConfig(name="b", key="b", kind="audience", schedule="every 5m", send_track_events=False,
                           source=FileSource(path=Path("b.csv")))
    config = Config(path=Path("audsync.toml"), daemon=DaemonSettings(default_schedule="*/10 * * * *"),
                    audiences=(audience, timed))
    daemon = Daemon(config)
    assert daemon.schedule_of(audience) == "*/10 * * * *"
    assert daemon.schedule_of(timed) == "every 5m"


@pytest.mark.parametrize("fields,result", [
    ({"run_id": None, "error": "audience 'a': another run is already syncing it"}, "not_started"),
    ({"run_id": 3, "error": "source missing"}, "failed"),
    ({"run_id": 3, "stopped": True, "pending": 10}, "stopped"),
    ({"run_id": 3, "pending": 1}, "partial"),
    ({"run_id": 3, "rejected": 1}, "partial"),
    ({"run_id": 3, "delivered": 5}, "ok"),
])
def test_the_run_result_label_says_whether_the_audience_is_fully_synced(fields, result):
    report = AudienceReport("a", "a", "audience", "run")
    for name, value in fields.items():
        setattr(report, name, value)
    assert result_of(report) == result
