"""audsync.sync_dataframe keeps every promise of `audsync run` (DESIGN.md section 4), end to end:
real state databases (SQLite and PostgreSQL), the fake Amplitude over loopback HTTP."""

from __future__ import annotations

import threading

import pandas as pd
import pytest

from audsync.dataframe import sync_dataframe
from audsync.errors import ConfigError
from audsync.state import LeaseKeeper, StateStore
from audsync.status_report import status
from audsync.sync import lease_name, run_once

from .test_sync import FakeWho, members_of

AUD = "High Value Users"
KEY = "high_value_users"
LTV = "Lifetime Value"


def configured(project, extra_audience: str = "", extra: str = ""):
    """A config with an audience and a computed trait whose configured sources hold nobody:
    sync_dataframe's DataFrame takes their place."""
    empty = project.members("nobody", [])
    return project.config(f'''
[[audiences]]
name = "{AUD}"
{extra_audience}
source = {empty}

[[audiences]]
name = "{LTV}"
kind = "computed_trait"
source = {empty}
''', extra)


def users(*ids, **columns):
    return pd.DataFrame({"user_id": list(ids), **columns})


def test_the_first_sync_sends_every_member_and_the_next_only_the_changes_with_exits_false(project, amplitude):
    cfg = configured(project)
    report = sync_dataframe(cfg, AUD, users("user-0001", "user-0002", None, anonymous_id=[None, None, "device-3"]))
    (entry,) = report.audiences
    assert report.exit_code == 0 and entry.error is None
    assert (entry.key, entry.first_sync, entry.entered, entry.delivered, entry.pending) == (KEY, True, 3, 3, 0)
    assert amplitude.properties == {"user-0001": {KEY: True}, "user-0002": {KEY: True}, "device-3": {KEY: True}}
    amplitude.clear()
    (entry,) = sync_dataframe(cfg, AUD, users("user-0002", "user-0004", None,
                                              anonymous_id=[None, None, "device-3"])).audiences
    assert (entry.first_sync, entry.entered, entry.exited, entry.changed) == (False, 1, 1, 0)
    assert sorted((FakeWho(i), i["user_properties"]) for i in amplitude.identifies) == [
        ("user-0001", {KEY: False}), ("user-0004", {KEY: True})]
    assert set(members_of(cfg, KEY)) == {"uuser-0002", "uuser-0004", "adevice-3"}
    # The state is the audience's, whoever reads its source: the CLI's configured source now
    # empties it (mass exit, allowed here), and the next DataFrame starts from that.
    amplitude.clear()
    (entry,) = run_once(cfg, audiences=[AUD], allow_mass_exit=True).audiences
    assert entry.exited == 3
    (entry,) = sync_dataframe(cfg, KEY, users("user-0004")).audiences
    assert (entry.entered, entry.exited) == (1, 0) and amplitude.properties["user-0004"] == {KEY: True}


def test_computed_trait_values_go_out_changed_values_follow_and_lost_values_are_unset(project, amplitude):
    cfg = configured(project)
    first = pd.DataFrame({"user_id": ["user-0001", "user-0002", "user-0003"],
                          "value": pd.Series([1200.0, 87.5, 40.0])})
    (entry,) = sync_dataframe(cfg, LTV, first).audiences
    assert entry.entered == 3 and entry.error is None
    assert amplitude.properties == {"user-0001": {"lifetime_value": 1200}, "user-0002": {"lifetime_value": 87.5},
                                    "user-0003": {"lifetime_value": 40}}
    amplitude.clear()
    second = pd.DataFrame({"user_id": ["user-0001", "user-0002", "user-0003"],
                           "value": pd.Series([1200.0, 90.0, float("nan")])})
    (entry,) = sync_dataframe(cfg, LTV, second).audiences
    assert (entry.changed, entry.unset, entry.entered, entry.skipped) == (1, 1, 0, {"no value": 1})
    assert sorted(FakeWho(i) for i in amplitude.identifies) == ["user-0002", "user-0003"]
    assert amplitude.properties["user-0002"] == {"lifetime_value": 90}
    assert amplitude.sent_to("user-0003")[-1]["user_properties"] == {"$unset": {"lifetime_value": "-"}}


def test_bad_rows_are_skipped_with_their_reasons_and_never_sent(project, amplitude):
    cfg = configured(project)
    df = users(" user-0001 ", "abc", "undefined", None, "user-0001", "user-0006", "user\x00-7",
               anonymous_id=[None, None, None, None, None, None, None])
    report = sync_dataframe(cfg, AUD, df)
    (entry,) = report.audiences
    assert report.exit_code == 0
    assert entry.skipped == {"id shorter than min_id_length": 1, "blocked id": 1, "no id": 1, "duplicate user": 1,
                             "id holds a NUL character": 1}
    assert (entry.rows_read, entry.members_in_source, entry.delivered) == (7, 2, 2)
    assert set(amplitude.properties) == {"user-0001", "user-0006"}
    assert "skipped 1 blocked id" in entry.summary_line()


def test_a_malformed_row_fails_the_sync_naming_its_index_label_and_changes_nothing(project, amplitude):
    cfg = configured(project)
    sync_dataframe(cfg, AUD, users("user-0001"))
    amplitude.clear()
    report = sync_dataframe(cfg, AUD, pd.DataFrame({"user_id": ["user-0002", True]}, index=["a", "b"]))
    (entry,) = report.audiences
    assert report.exit_code == 2
    assert entry.error == f'audience "{AUD}": sync_dataframe: index \'b\': user_id is a boolean, not an id'
    assert amplitude.identifies == [] and set(members_of(cfg, KEY)) == {"uuser-0001"}
    (st, _) = status(cfg)
    assert st["last_runs"][0]["status"] == "failed" and "index 'b'" in st["last_runs"][0]["error"]
    (entry,) = sync_dataframe(cfg, AUD, pd.DataFrame({"email": ["a@example.com"]})).audiences
    assert entry.error == f'audience "{AUD}": sync_dataframe: no user_id or anonymous_id column (columns: email)'


def test_the_mass_exit_guard_holds_and_says_how_to_let_this_call_through(project, amplitude):
    cfg = configured(project)
    everyone = [f"user-{i:04d}" for i in range(100)]
    assert sync_dataframe(cfg, AUD, users(*everyone)).exit_code == 0
    amplitude.clear()
    report = sync_dataframe(cfg, AUD, users(*everyone[:40]))
    (entry,) = report.audiences
    assert report.exit_code == 2 and entry.guarded
    assert entry.error == (f'audience "{AUD}": this run would remove 60 of its 100 members (60%), more than '
                           "max_exit_fraction = 0.5; nothing was planned and its synced state is unchanged. "
                           "If that is intended, call sync_dataframe again with allow_mass_exit=True")
    assert amplitude.identifies == [] and len(members_of(cfg, KEY)) == 100
    (entry,) = sync_dataframe(cfg, AUD, users(*everyone[:40]), allow_mass_exit=True).audiences
    assert entry.exited == 60 and len(members_of(cfg, KEY)) == 40
    # An empty DataFrame is a source with no rows: guarded too.
    report = sync_dataframe(cfg, AUD, users())
    assert report.exit_code == 2 and "its source returned no rows" in report.audiences[0].error


def test_the_audiences_own_max_exit_fraction_applies(project, amplitude):
    cfg = configured(project, extra_audience="max_exit_fraction = 0.7")
    everyone = [f"user-{i:04d}" for i in range(100)]
    sync_dataframe(cfg, AUD, users(*everyone))
    (entry,) = sync_dataframe(cfg, AUD, users(*everyone[:40])).audiences
    assert entry.error is None and entry.exited == 60


def test_a_run_of_the_same_audience_holding_its_lease_makes_the_call_exit_3_retry_later(project, amplitude):
    cfg = configured(project)
    sync_dataframe(cfg, AUD, users("user-0001"))  # creates the schema
    audience = cfg.audience(AUD)
    with StateStore(cfg.state.url) as store:
        with LeaseKeeper(store, lease_name(cfg, audience), 30):
            report = sync_dataframe(cfg, AUD, users("user-0001", "user-0002"))
    (entry,) = report.audiences
    assert report.exit_code == 3 and "already syncing" in entry.error and AUD in entry.error
    assert "user-0002" not in amplitude.properties
    (entry,) = sync_dataframe(cfg, AUD, users("user-0001", "user-0002")).audiences
    assert entry.entered == 1 and amplitude.properties["user-0002"] == {KEY: True}


def test_rejected_users_and_amplitude_out_of_reach_give_run_exit_codes_1_and_3(project, amplitude):
    cfg = configured(project)
    amplitude.reject.add("user-0002")
    report = sync_dataframe(cfg, AUD, users("user-0001", "user-0002"))
    assert report.exit_code == 1 and (report.audiences[0].delivered, report.audiences[0].rejected) == (1, 1)
    amplitude.unavailable.add("user-0003")
    report = sync_dataframe(cfg, AUD, users("user-0001", "user-0002", "user-0003"))
    (entry,) = report.audiences
    assert report.exit_code == 3 and entry.pending == 1
    amplitude.unavailable.clear()
    (entry,) = sync_dataframe(cfg, AUD, users("user-0001", "user-0002", "user-0003")).audiences
    assert (entry.earlier_pending, entry.delivered, entry.pending) == (1, 1, 0)
    assert amplitude.properties["user-0003"] == {KEY: True}


def test_a_stop_mid_delivery_leaves_the_rest_pending_for_the_next_call(project, held_amplitude):
    project.amplitude_url = held_amplitude.url
    cfg = configured(project, extra="concurrency = 1")
    everyone = [f"user-{i:05d}" for i in range(3000)]  # three identify requests, one at a time

    class Observed(threading.Event):
        """Tells the test once the run has read the stop (it then stops the deliverer)."""

        def __init__(self):
            super().__init__()
            self.seen = threading.Event()

        def is_set(self):
            asked = super().is_set()
            if asked:
                self.seen.set()
            return asked

    stop = Observed()
    result = {}
    runner = threading.Thread(target=lambda: result.update(report=sync_dataframe(cfg, AUD, users(*everyone),
                                                                                 stop_event=stop)))
    runner.start()
    assert held_amplitude.received.wait(60)
    stop.set()
    # The first request stays held until the run has read the stop, so the two after it are not
    # sent (no assert: should the run come to wait on the event instead, this only takes longer).
    stop.seen.wait(10)
    held_amplitude.release.set()
    runner.join(120)
    (entry,) = result["report"].audiences
    assert entry.stopped and result["report"].exit_code == 1
    assert 0 < entry.delivered < 3000 and entry.pending == 3000 - entry.delivered
    left = entry.pending
    (entry,) = sync_dataframe(cfg, AUD, users(*everyone)).audiences
    assert (entry.earlier_pending, entry.delivered, entry.entered, entry.pending) == (left, left, 0, 0)
    assert held_amplitude.properties == {user: {KEY: True} for user in everyone}


def test_a_dry_run_sends_nothing_and_a_config_path_is_taken_too(project, amplitude):
    cfg = configured(project)
    path = str(project.dir / "audsync.toml")
    (entry,) = sync_dataframe(path, AUD, users("user-0001", "user-0002"), dry_run=True).audiences
    assert (entry.mode, entry.entered, len(entry.sample)) == ("dry-run", 2, 2)
    assert amplitude.identifies == [] and members_of(cfg, KEY) == {}
    (entry,) = sync_dataframe(path, AUD, users("user-0001", "user-0002")).audiences
    assert entry.delivered == 2


def test_an_audience_the_config_does_not_name_is_a_config_error(project, amplitude):
    cfg = configured(project)
    with pytest.raises(ConfigError, match=r"no audience named 'High Value' \(known: High Value Users, "
                                          r"Lifetime Value\)"):
        sync_dataframe(cfg, "High Value", users("user-0001"))


def test_only_the_named_audience_runs_and_the_others_keep_their_state(project, amplitude):
    cfg = configured(project)
    report = sync_dataframe(cfg, AUD, users("user-0001"))
    assert [a.key for a in report.audiences] == [KEY]
    assert [e["last_runs"] for e in status(cfg) if e["key"] == "lifetime_value"] == [[]]
