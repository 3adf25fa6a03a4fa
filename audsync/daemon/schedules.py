"""Audience schedules -> APScheduler triggers, shared by the daemon and `status` (next run).

"every N{s,m,h,d}" intervals are aligned to the Unix epoch so that every worker sharing one state
database fires an audience at the same instants; the audience lease then picks one of them.
Cron expressions have 5 fields and run in UTC.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from ..config import every_seconds

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Far beyond any real schedule, and far enough from datetime's year 9999 that no fire time overflows.
MAX_INTERVAL_S = 36500 * 86400


def trigger_for(schedule: str) -> BaseTrigger:
    seconds = every_seconds(schedule)
    if seconds is not None:
        return IntervalTrigger(seconds=seconds, start_date=EPOCH, timezone=timezone.utc)
    return CronTrigger.from_crontab(schedule, timezone=timezone.utc)


def next_run(schedule: str, now: datetime) -> datetime:
    """The first fire time strictly after `now`."""
    fire = trigger_for(schedule).get_next_fire_time(None, now + timedelta(microseconds=1))
    assert fire is not None  # intervals and 5-field crons always fire again
    return fire


def current_slot(schedule: str, now: datetime, grace_s: float) -> datetime:
    """The scheduled fire time a run starting at `now` belongs to (the latest one not after now,
    looked for within the misfire grace period); `now` itself when none is that recent."""
    seconds = every_seconds(schedule)
    if seconds is not None:
        fire = EPOCH + timedelta(seconds=(now - EPOCH).total_seconds() // seconds * seconds)
        return fire if (now - fire).total_seconds() <= grace_s else now
    trigger = trigger_for(schedule)
    latest = None
    fire = trigger.get_next_fire_time(None, now - timedelta(seconds=grace_s))
    while fire is not None and fire <= now:  # a cron fires at most once a minute: a short walk
        latest = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
    return latest if latest is not None else now


def unschedulable(schedule: str) -> str | None:
    """Why a well-formed schedule can never be used, or None: checked when the config loads, so
    that neither `status` nor the daemon meets it."""
    seconds = every_seconds(schedule)
    if seconds is not None:
        if seconds > MAX_INTERVAL_S:
            return f"is longer than the longest interval, every {MAX_INTERVAL_S // 86400}d"
        return None
    # The Gregorian calendar repeats every 400 years, weekdays included: a cron expression that
    # never fires from the epoch on never fires at all.
    if trigger_for(schedule).get_next_fire_time(None, EPOCH) is None:
        return "never fires: no date matches it"
    return None
