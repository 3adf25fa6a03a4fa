"""Sync semantics of DESIGN.md section 4, end to end: file sources, the state database (SQLite
and PostgreSQL), the mapping core and the delivery layer over loopback HTTP to a fake Amplitude."""

from __future__ import annotations

import threading

import pytest

from audsync.state import LeaseKeeper, StateStore
from audsync.status_report import status
from audsync.sync import backfill, lease_name, run_once

from .conftest import API_KEY, OTHER_KEY

AUD = "Order Completed Last 30days"
KEY = "order_completed_last_30days"


def audience(project, rows, *, name=AUD, kind="audience", extra=""):
    source = project.members(name.replace(" ", "_"), rows)
    return f'''
[[audiences]]
name = "{name}"
kind = "{kind}"
{extra}
source = {source}
'''


def members_of(cfg, key=KEY):
    with StateStore(cfg.state.url) as store:
        row = store.find_audience(cfg.amplitude.destination_id, key)
        return {} if row is None else store.members(row.id)


def test_first_sync_sends_every_member_true(project, amplitude):
    cfg = project.config(audience(project, [("user0001", None), ("user0002", "device02"), (None, "device03")]))
    report = run_once(cfg)
    assert report.exit_code == 0
    (entry,) = report.audiences
    assert (entry.entered, entry.delivered, entry.pending, entry.first_sync) == (3, 3, 0, True)
    assert amplitude.properties["user0001"] == {KEY: True}
    assert amplitude.properties["user0002"] == {KEY: True}
    assert amplitude.properties["device03"] == {KEY: True}
    assert set(members_of(cfg)) == {"uuser0001", "uuser0002", "adevice03"}


def test_second_sync_sends_only_changes_and_exits_send_false(project, amplitude):
    cfg = project.config(audience(project, [("user0001", None), ("user0002", None), ("user0003", None)]))
    run_once(cfg)
    amplitude.clear()
    cfg = project.config(audience(project, [("user0002", None), ("user0003", None), ("user0004", None)]))
    (entry,) = run_once(cfg).audiences
    assert (entry.entered, entry.exited, entry.changed, entry.delivered) == (1, 1, 0, 2)
    assert sorted((FakeWho(i), i["user_properties"]) for i in amplitude.identifies) == [
        ("user0001", {KEY: False}), ("user0004", {KEY: True})]
    assert amplitude.properties["user0001"] == {KEY: False}
    assert set(members_of(cfg)) == {"uuser0002", "uuser0003", "uuser0004"}


def FakeWho(item):  # noqa: N802 (reads like the fake's own helper)
    return item.get("user_id") or item.get("device_id")


def _props(item):
    props = item["user_properties"]
    return props.get("$set", props) if "$unset" not in props else props


def test_computed_trait_change_sends_the_new_value(project, amplitude):
    cfg = project.config(audience(project, [("user0001", None, 10), ("user0002", None, "gold")], name="LTV",
                                  kind="computed_trait"))
    run_once(cfg)
    assert amplitude.properties["user0001"] == {"ltv": 10}
    assert amplitude.properties["user0002"] == {"ltv": "gold"}
    amplitude.clear()
    cfg = project.config(audience(project, [("user0001", None, 12), ("user0002", None, "gold")], name="LTV",
                                  kind="computed_trait"))
    (entry,) = run_once(cfg).audiences
    assert (entry.changed, entry.entered, entry.unset) == (1, 0, 0)
    assert [FakeWho(i) for i in amplitude.identifies] == ["user0001"]
    assert amplitude.properties["user0001"] == {"ltv": 12}


def test_a_lost_value_sends_unset(project, amplitude):
    cfg = project.config(audience(project, [("user0001", None, 10), ("user0002", None, 5)], name="LTV",
                                  kind="computed_trait"))
    run_once(cfg)
    cfg = project.config(audience(project, [("user0002", None, 5)], name="LTV", kind="computed_trait"))
    (entry,) = run_once(cfg).audiences
    assert entry.unset == 1
    assert amplitude.sent_to("user0001")[-1]["user_properties"] == {"$unset": {"ltv": "-"}}
    assert "ltv" not in amplitude.properties["user0001"]
    assert set(members_of(cfg, "ltv")) == {"uuser0002"}


def test_duplicate_users_are_sent_once_and_counted(project, amplitude):
    cfg = project.config(audience(project, [("user0001", None), ("user0001", None), ("user0002", None)]))
    (entry,) = run_once(cfg).audiences
    assert entry.skipped["duplicate user"] == 1
    assert len(amplitude.sent_to("user0001")) == 1 and entry.delivered == 2


def test_conflicting_values_are_skipped_and_the_synced_state_kept(project, amplitude):
    cfg = project.config(audience(project, [("user0001", None, 1)], name="LTV", kind="computed_trait"))
    run_once(cfg)
    amplitude.clear()
    cfg = project.config(audience(project, [("user0001", None, 2), ("user0001", None, 3)], name="LTV",
                                  kind="computed_trait"))
    (entry,) = run_once(cfg).audiences
    assert entry.skipped["conflicting values"] == 2
    assert (entry.unset, entry.changed) == (0, 0) and amplitude.identifies == []
    assert members_of(cfg, "ltv")["uuser0001"][2] == "1"


def test_a_rejected_user_is_recorded_and_shown_by_status(project, amplitude):
    cfg = project.config(audience(project, [("user0001", None)]))
    run_once(cfg)
    amplitude.reject.add("baduser9")
    cfg = project.config(audience(project, [("user0001", None), ("baduser9", None)]))
    report = run_once(cfg)
    (entry,) = report.audiences
    assert (entry.rejected, entry.pending) == (1, 0) and report.exit_code == 1
    (st,) = status(cfg)
    assert st["rejected"] == 1 and st["members"] == 1
    assert st["top_rejection_reasons"][0]["users"] == 1
    assert "baduser9" not in repr(members_of(cfg))
    # not resent while nothing changes for that user
    (entry,) = run_once(cfg).audiences
    assert (entry.entered, entry.rejected) == (0, 0)


def test_a_rejected_users_next_value_once_delivered_clears_the_rejection(project, amplitude):
    def ltv(rows):
        return project.config(audience(project, rows, name="LTV", kind="computed_trait"))

    amplitude.reject.add("user0002")
    (entry,) = run_once(ltv([("user0001", None, 1), ("user0002", None, 2)])).audiences
    assert (entry.delivered, entry.rejected) == (1, 1)
    amplitude.reject.clear()
    cfg = ltv([("user0001", None, 1), ("user0002", None, 3)])
    (entry,) = run_once(cfg).audiences
    assert (entry.changed, entry.delivered, entry.rejected) == (1, 1, 0)
    (st,) = status(cfg)
    assert (st["rejected"], st["members"], st["top_rejection_reasons"]) == (0, 2, [])
    assert members_of(cfg, "ltv")["uuser0002"][2] == "3"
    assert amplitude.properties["user0002"] == {"ltv": 3}


def test_a_user_amplitude_never_took_stays_pending_goes_first_next_run_and_the_run_exits_3_retry_later(
        project, amplitude):
    cfg = project.config(audience(project, [("user0001", None)]))
    run_once(cfg)
    amplitude.unavailable.add("user0002")
    cfg = project.config(audience(project, [("user0001", None), ("user0002", None)]))
    report = run_once(cfg)
    (entry,) = report.audiences
    assert (entry.entered, entry.delivered, entry.pending) == (1, 0, 1) and report.exit_code == 3
    assert "uuser0002" not in members_of(cfg)
    amplitude.unavailable.clear()
    (entry,) = run_once(cfg).audiences
    assert (entry.earlier_pending, entry.entered, entry.delivered, entry.pending) == (1, 0, 1, 0)
    assert amplitude.properties["user0002"] == {KEY: True}
    assert "uuser0002" in members_of(cfg)


def test_skip_backfill_records_members_without_sending(project, amplitude):
    cfg = project.config(audience(project, [("user0001", None), ("user0002", None)]))
    (entry,) = run_once(cfg, skip_backfill=True).audiences
    assert entry.recorded == 2 and amplitude.identifies == []
    cfg = project.config(audience(project, [("user0002", None), ("user0003", None)]))
    (entry,) = run_once(cfg, skip_backfill=True).audiences  # no longer a first sync: changes go out
    assert (entry.entered, entry.exited) == (1, 1)
    assert {FakeWho(i) for i in amplitude.identifies} == {"user0001", "user0003"}


def test_backfill_resends_current_values_to_every_current_member(project, amplitude):
    cfg = project.config(audience(project, [("user0001", None), ("user0002", None)]))
    run_once(cfg)
    amplitude.clear()
    (entry,) = backfill(cfg, AUD).audiences
    assert entry.resent == 2 and entry.delivered == 2
    assert sorted(FakeWho(i) for i in amplitude.identifies) == ["user0001", "user0002"]


def test_send_track_events_sends_entered_and_exited_with_deterministic_insert_ids(project, amplitude):
    extra = "send_track_events = true"
    cfg = project.config(audience(project, [("user0001", None)], extra=extra))
    run_once(cfg)
    (entered,) = amplitude.events
    assert entered["event_type"] == "Audience Entered"
    # Engage's properties (the audience's key set to whether the user is in it), and its name
    assert entered["event_properties"] == {"audience_key": KEY, KEY: True, "audience_name": AUD}
    cfg = project.config(audience(project, [], extra=extra))
    run_once(cfg, allow_mass_exit=True)  # the source emptied on purpose
    exited = amplitude.events[-1]
    assert exited["event_type"] == "Audience Exited"
    assert exited["event_properties"] == {"audience_key": KEY, KEY: False, "audience_name": AUD}
    assert entered["insert_id"] and exited["insert_id"] and entered["insert_id"] != exited["insert_id"]
    # the same planned change always carries the same insert_id (so Amplitude drops a resend)
    from audsync._audience_ops import OperationBuilder

    builder = OperationBuilder(cfg.audiences[0], cfg.amplitude, cfg.amplitude.destination_id)
    ops1 = builder.translated("uuser0001", "user0001", None, None, "exit", 7)
    ops2 = builder.translated("uuser0001", "user0001", None, None, "exit", 7)
    assert ops1 == ops2 and ops1[-1]["body"]["insert_id"] == ops2[-1]["body"]["insert_id"]


def test_dry_run_sends_nothing_and_changes_no_state(project, amplitude):
    cfg = project.config(audience(project, [("user0001", None), ("user0002", None)]))
    report = run_once(cfg, dry_run=True)
    (entry,) = report.audiences
    assert entry.entered == 2 and len(entry.sample) == 2 and entry.sample[0]["operations"]
    assert amplitude.identifies == [] and members_of(cfg) == {}
    assert status(cfg)[0]["last_runs"] == []
    run_once(cfg)
    cfg = project.config(audience(project, [("user0002", None)]))
    (entry,) = run_once(cfg, dry_run=True).audiences
    assert (entry.exited, entry.entered) == (1, 0)
    assert set(members_of(cfg)) == {"uuser0001", "uuser0002"}


def test_a_second_concurrent_run_is_refused_with_a_clear_message_and_exit_3_retry_later(project, amplitude):
    cfg = project.config(audience(project, [("user0001", None)]))
    run_once(cfg)  # creates the schema
    with StateStore(cfg.state.url) as store:
        with LeaseKeeper(store, lease_name(cfg, cfg.audiences[0]), 30):
            report = run_once(cfg)
    (entry,) = report.audiences
    assert report.exit_code == 3
    assert AUD in entry.error and "already syncing" in entry.error and "pid" in entry.error


def test_state_is_per_destination_so_a_new_api_key_starts_a_first_sync(project, amplitude):
    cfg = project.config(audience(project, [("user0001", None)]))
    run_once(cfg)
    amplitude.clear()
    (entry,) = run_once(cfg).audiences
    assert entry.entered == 0 and amplitude.identifies == []
    project.api_key = OTHER_KEY
    other = project.config(audience(project, [("user0001", None)]))
    assert other.amplitude.destination_id != cfg.amplitude.destination_id
    (entry,) = run_once(other).audiences
    assert entry.first_sync and entry.entered == 1 and len(amplitude.identifies) == 1
    with StateStore(cfg.state.url) as store:
        keys = store.engine.connect().exec_driver_sql("SELECT destination FROM audiences").scalars().all()
    assert OTHER_KEY not in repr(keys) and API_KEY not in repr(keys)


def test_a_stop_event_leaves_the_rest_pending(project, amplitude):
    cfg = project.config(audience(project, [(f"user{i:04d}", None) for i in range(50)]))
    stop = threading.Event()
    stop.set()
    report = run_once(cfg, stop_event=stop)
    (entry,) = report.audiences
    assert entry.stopped and amplitude.identifies == []
    (entry,) = run_once(cfg).audiences
    assert entry.delivered == 50


def test_a_state_database_failure_while_settling_ends_the_run_with_a_clear_error_and_loses_nothing(
        project, amplitude, monkeypatch):
    from audsync.errors import StateError

    rows = [(f"user{i:05d}", None) for i in range(2_500)]
    cfg = project.config(audience(project, rows))
    original = StateStore._settle_batch
    calls = []

    def failing_settle(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise StateError("state database sqlite:///x: disk I/O error")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StateStore, "_settle_batch", failing_settle)
    monkeypatch.setattr("audsync.state.settle.SETTLE_ROWS", 500)  # several commits in one run
    report = run_once(cfg)
    (entry,) = report.audiences
    assert report.exit_code == 2 and "disk I/O error" in entry.error
    assert entry.pending > 0  # unacknowledged in the state: still planned, nothing lost
    monkeypatch.setattr(StateStore, "_settle_batch", original)
    (entry,) = run_once(cfg).audiences
    assert entry.error is None and entry.pending == 0
    assert len(members_of(cfg)) == 2_500
    assert all(amplitude.properties[u] == {KEY: True} for u, _ in rows)


NUL_ROWS = [("user-0001", None), ("u-nul\x00002", None), (None, "anon\x00dev-3"), ("user-0004", "dev\x00ice-4"),
            ("user-0005", "device-05")]


def _nul_source(project, fmt):
    """NUL_ROWS as a source of the given format; returns its TOML."""
    import sqlite3

    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.parquet

    if fmt == "jsonl":
        return project.members("nul", NUL_ROWS)
    table = pa.table({"user_id": [r[0] for r in NUL_ROWS], "anonymous_id": [r[1] for r in NUL_ROWS]})
    if fmt == "csv":
        pa.csv.write_csv(table, project.dir / "nul.csv")
    elif fmt == "parquet":
        pa.parquet.write_table(table, project.dir / "nul.parquet")
    else:
        warehouse = project.dir / "warehouse.db"
        with sqlite3.connect(warehouse) as conn:
            conn.execute("CREATE TABLE people (user_id TEXT, anonymous_id TEXT)")
            conn.executemany("INSERT INTO people VALUES (?, ?)", NUL_ROWS)
        conn.close()
        return (f'{{ type = "sql", url = "sqlite:///{warehouse}", '
                'query = "SELECT user_id, anonymous_id FROM people" }')
    return f'{{ type = "file", path = "nul.{fmt}" }}'


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "sql"])
def test_a_row_whose_id_holds_nul_is_one_skipped_user_and_the_others_sync_on_both_databases(
        project, amplitude, fmt):
    cfg = project.config(f"""
[[audiences]]
name = "{AUD}"
source = {_nul_source(project, fmt)}
""")
    report = run_once(cfg)
    (entry,) = report.audiences
    assert report.exit_code == 0 and entry.error is None
    assert entry.skipped == {"id holds a NUL character": 3}
    assert "skipped 3 id holds a NUL character" in entry.summary_line()
    # Nobody else is sent, least of all "u-nul", the id cut short at the NUL.
    assert set(amplitude.properties) == {"user-0001", "user-0005"}
    assert set(members_of(cfg)) == {"uuser-0001", "uuser-0005"}
    (entry,) = status(cfg)
    assert entry["last_runs"][0]["skipped"] == {"id holds a NUL character": 3}


def test_a_run_on_a_terminal_shows_each_phase_in_order_and_ends_each_line(project, amplitude):
    import io

    from audsync.progress import Progress

    cfg = project.config(audience(project, [("user0001", None), ("user0002", None)]))
    out = io.StringIO()
    run_once(cfg, progress=Progress(out, tty=True))
    finished = [frame.split(" (")[0].split(" [")[0]
                for frame in out.getvalue().split("\r\x1b[2K") if frame.endswith("\n")]
    assert finished == [f"{KEY}: loading: 2", f"{KEY}: indexing", f"{KEY}: diffing and planning",
                        f"{KEY}: delivering"]


