"""A state made by real syncs for the status page: four audiences (file, computed trait, SQL and
rule sources) run three times against the loopback fake Amplitude, which rejects one user; and
an ingest with messages stored, forwarded, refused by Amplitude and rejected at validation over
the last minutes, through the ingest log's own methods. User data is hostile where it reaches
the page: an audience name, a rule's event name, a rejected user id."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from audsync.config import Config, load
from audsync.testing.fake_amplitude import FakeAmplitude
from sync.conftest import API_KEY, Project  # tests/sync/conftest.py

SECRET_KEY = "page-secret-key-5150"
WRITE_KEY = "wk-page-secret-7788"
HOSTILE_NAME = "<script>alert(1)</script> Buyers"
HOSTILE_KEY = "script_alert_1_script_buyers"
HOSTILE_EVENT = "<img src=x onerror=alert(2)>"
HOSTILE_USER = "<b>bold</b><script>alert(3)</script>"
PG_PASSWORD = "hunter2-page-pw"
RUNS = 3


@dataclass
class StatusState:
    path: Path
    config: Config
    state_url: str
    now: float                 # the clock the page is given: a little after everything was made
    keys: list[str]


def _write_members(directory: Path, name: str, rows: list[dict]) -> None:
    with open(directory / f"{name}.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def with_password(url: str) -> str:
    """A PostgreSQL URL with PG_PASSWORD in it (the test server trusts loopback: it is not
    checked, only carried where the page must not show it); a SQLite URL as it is."""
    if url.startswith("postgresql"):
        return url.replace("://postgres@", f"://postgres:{PG_PASSWORD}@", 1)
    return url


def _warehouse(directory: Path, state_url: str, user_ids: list[str]) -> str:
    """The SQL source's table: in a SQLite file, or in the PostgreSQL database of the state (its
    URL with a password, which the page shows masked)."""
    if state_url.startswith("postgresql"):
        import sqlalchemy as sa

        engine = sa.create_engine(state_url)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("DROP TABLE IF EXISTS subscribers")
                conn.exec_driver_sql("CREATE TABLE subscribers (user_id TEXT)")
                conn.execute(sa.text("INSERT INTO subscribers VALUES (:u)"), [{"u": u} for u in user_ids])
        finally:
            engine.dispose()
        return state_url
    path = directory / "warehouse.db"
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE IF EXISTS subscribers")
        conn.execute("CREATE TABLE subscribers (user_id TEXT)")
        conn.executemany("INSERT INTO subscribers VALUES (?)", [(u,) for u in user_ids])
    return f"sqlite:///{path}"


FORWARD_LAGS = [0.5, 1.5, 2.5]  # seconds, of the three messages forwarded


def _ingest(config: Config, now: float) -> None:
    """Messages over the last minutes: stored, some forwarded, one refused by Amplitude, and
    requests with invalid messages rejected at validation. The track events feed the rule audience."""
    from audsync.state import StateStore
    from audsync.state.ingest import IngestLog

    store = StateStore(config.state.url)
    try:
        log = IngestLog(store)
        for minutes_ago, users in ((12, ["user-0001", "user-0002", "user-0003"]), (3, ["user-0004", "user-0005"])):
            at = datetime.fromtimestamp(now - minutes_ago * 60, timezone.utc).isoformat()
            log.append([[{"messageId": uuid.uuid4().hex, "type": "track", "event": HOSTILE_EVENT, "userId": u,
                          "receivedAt": at, "timestamp": at, "properties": {}} for u in users]], ["wk-src"])
        claimed = log.claim("page-test", 10, 60)
        # the three of 12 minutes ago forwarded, one of 3 minutes ago refused, one still pending
        first = [m for m in claimed if m.received_at < now - 600]
        later = [m for m in claimed if m.received_at >= now - 600]
        # forwarded two minutes ago, with their lags
        log.settle("page-test", first, [(later[0], "invalid user_properties")], released=later[1:],
                   lags=FORWARD_LAGS, now=now - 120)
        log.record_rejections([{"index": 0, "reason": "userId or anonymousId is required", "example": {}},
                               {"index": 1, "reason": "type must be one of track, page", "example": {}}], "wk-src")
    finally:
        store.close()


def build_state(directory: Path, state_url: str, amplitude: FakeAmplitude) -> StatusState:
    state_url = with_password(state_url)
    buyers = [f"user-{i:04d}" for i in range(1, 9)]
    _write_members(directory, "buyers", [{"user_id": u} for u in buyers + [HOSTILE_USER]])
    _write_members(directory, "ltv", [{"user_id": u, "value": 10 * i} for i, u in enumerate(buyers[:5], 1)])
    warehouse = _warehouse(directory, state_url, buyers[:4])
    project = Project(directory, state_url, amplitude)  # tests/sync/conftest.py: state, Amplitude, delivery
    path = project.write(f'''
        [[audiences]]
        name = "{HOSTILE_NAME}"
        schedule = "every 1h"
        source = {{ type = "file", path = "buyers.jsonl" }}
        [[audiences]]
        name = "Lifetime Value"
        kind = "computed_trait"
        schedule = "every 6h"
        source = {{ type = "file", path = "ltv.jsonl" }}
        [[audiences]]
        name = "Newsletter"
        source = {{ type = "sql", url = "{warehouse}", query = "SELECT user_id FROM subscribers" }}
        [[audiences]]
        name = "Event Seen"
        source = {{ type = "rule", rule = "event('{HOSTILE_EVENT}').count() >= 1" }}
    ''', extra=f'''
        [ingest]
        write_keys = ["{WRITE_KEY}"]
    ''')
    config = load(path, environ={"AMPLITUDE_SECRET_KEY": SECRET_KEY})
    from audsync.state import migrate
    from audsync.sync import run_once

    migrate.upgrade(state_url)
    _ingest(config, time.time())
    amplitude.reject.add(HOSTILE_USER)
    run_once(config)
    # second run: two buyers leave, one joins; a value changes; a subscriber joins
    _write_members(directory, "buyers", [{"user_id": u} for u in buyers[2:] + ["user-0009", HOSTILE_USER]])
    _write_members(directory, "ltv", [{"user_id": u, "value": 10 * i + (5 if i == 2 else 0)}
                                      for i, u in enumerate(buyers[:5], 1)])
    _warehouse(directory, state_url, buyers[:5])
    run_once(config)
    # third run: nothing changes but one buyer leaves
    _write_members(directory, "buyers", [{"user_id": u} for u in buyers[3:] + ["user-0009", HOSTILE_USER]])
    run_once(config)
    return StatusState(path, config, state_url, time.time() + 5, [a.key for a in config.audiences])


@pytest.fixture
def status_state(tmp_path, state_url, amplitude) -> StatusState:
    return build_state(tmp_path, state_url, amplitude)


@pytest.fixture
def sqlite_status_state(tmp_path, sqlite_url, amplitude) -> StatusState:
    return build_state(tmp_path, sqlite_url, amplitude)
