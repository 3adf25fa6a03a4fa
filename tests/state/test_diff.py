"""The diff as the store runs it (audsync.diff's SQL), on SQLite and PostgreSQL."""

import random

from audsync.delivery import Outcomes
from audsync.state import PendingRow, Rejected
from audsync.state.settle import joined_spans


def _sync(store, audience, rows, *, kind="audience", chunk=3):
    run = store.start_run(audience.id, "run")
    with store.work(audience.id) as work:
        work.load((rows[i:i + chunk] for i in range(0, len(rows), chunk)), computed=kind == "computed_trait")
        work.build_current(computed=kind == "computed_trait")
        plan = work.plan(run, kind)
        counts = work.counts()
    pending = [PendingRow(*row) for page in store.pending_pages(audience.id) for row in page]
    return run, counts, plan, pending


def _ack_all(store, audience, run, pending):
    store.settle(audience.id, run, [row.identity for row in pending], [])


def test_duplicate_users_are_folded_into_one_and_counted(store):
    aud = store.ensure_audience("d", "k", "K", "audience")
    rows = [("u0001", None, None), ("u0001", None, None), ("u0002", "dev02", None), ("u0002", "dev01", None)]
    _, counts, plan, pending = _sync(store, aud, rows)
    assert counts.users == 2 and counts.duplicate_rows == 2
    assert plan == {"enter": 2}
    assert {(r.user_id, r.anonymous_id) for r in pending} == {("u0001", None), ("u0002", "dev01")}


def test_conflicting_values_skip_the_user_and_keep_its_synced_state(store):
    aud = store.ensure_audience("d", "k", "K", "computed_trait")
    run, _, _, pending = _sync(store, aud, [("u0001", None, 1), ("u0002", None, 2)], kind="computed_trait")
    _ack_all(store, aud, run, pending)
    _, counts, plan, pending = _sync(store, aud, [("u0001", None, 5), ("u0001", None, 6), ("u0002", None, 2)],
                                     kind="computed_trait")
    assert counts.conflicting_users == 1 and counts.conflicting_rows == 2 and counts.duplicate_rows == 0
    assert plan == {} and pending == []
    assert store.members(aud.id)["uu0001"][2] == "1"


def test_ids_differing_only_in_case_or_accents_are_different_users(store):
    aud = store.ensure_audience("d", "k", "K", "audience")
    rows = [("user-A", None, None), ("user-a", None, None), ("usér-a", None, None), ("user-a ", None, None)]
    _, counts, plan, _ = _sync(store, aud, rows)
    assert counts.users == 4 and plan == {"enter": 4}


def test_the_diff_does_not_depend_on_source_order(store):
    aud = store.ensure_audience("d", "k", "K", "audience")
    ids = [f"user{i:04d}" for i in range(60)]
    run, _, _, pending = _sync(store, aud, [(u, None, None) for u in ids])
    _ack_all(store, aud, run, pending)
    now = ids[10:] + [f"new{i:04d}" for i in range(7)]
    random.Random(4).shuffle(now)
    _, _, plan, pending = _sync(store, aud, [(u, None, None) for u in now], chunk=4)
    assert plan == {"enter": 7, "exit": 10}
    assert {r.user_id for r in pending if r.change == "exit"} == set(ids[:10])


def test_ids_are_staged_exactly_whatever_characters_they_hold(store):
    # Chunks of user ids only take PostgreSQL's bulk COPY text; an id its format would need
    # escaped, or a chunk holding an anonymous id, goes row by row: every id must land as given.
    aud = store.ensure_audience("d", "k", "K", "audience")
    odd = ["tab\there", "back\\slash", "new\nline", "carriage\rret", "\\N", "\\.", "quote'\"", "ünï ✓"]
    plain = [f"user{i:04d}" for i in range(12)]
    chunks = ([[(u, None, None) for u in plain[:4]], [(odd[0], None, None), (None, "dev-1", None)]]
              + [[(plain[4 + i], None, None), (u, None, None)] for i, u in enumerate(odd[1:])]
              + [[(u, None, None) for u in plain[4 + len(odd) - 1:]]])
    run = store.start_run(aud.id, "run")
    with store.work(aud.id) as work:
        work.load(iter(chunks), computed=False)
        work.build_current(computed=False)
        plan = work.plan(run, "audience")
    pending = [PendingRow(*row) for page in store.pending_pages(aud.id) for row in page]
    assert plan == {"enter": len(plain) + len(odd) + 1}
    assert sorted((r.user_id, r.anonymous_id) for r in pending if r.user_id) == sorted((u, None) for u in plain + odd)
    assert [r.anonymous_id for r in pending if r.user_id is None] == ["dev-1"]


def test_a_user_id_and_an_anonymous_id_with_the_same_text_are_different_profiles(store):
    aud = store.ensure_audience("d", "k", "K", "audience")
    _, counts, plan, _ = _sync(store, aud, [("same1", None, None), (None, "same1", None)])
    assert counts.users == 2 and plan == {"enter": 2}


def test_a_newer_plan_replaces_an_undelivered_older_one(store):
    aud = store.ensure_audience("d", "k", "K", "computed_trait")
    _sync(store, aud, [("u0001", None, 1)], kind="computed_trait")  # never acknowledged
    _, _, plan, pending = _sync(store, aud, [("u0001", None, 2)], kind="computed_trait")
    assert plan == {"change": 1}
    assert [(r.value, r.change) for r in pending] == [("2", "change")]


def test_an_undelivered_plan_is_not_planned_again_when_nothing_changed(store):
    aud = store.ensure_audience("d", "k", "K", "audience")
    first, _, _, _ = _sync(store, aud, [("u0001", None, None)])
    _, _, plan, pending = _sync(store, aud, [("u0001", None, None)])
    assert plan == {}
    assert [(r.change, r.run_id) for r in pending] == [("enter", first)]


def test_a_rejected_value_is_not_resent_until_it_changes(store):
    aud = store.ensure_audience("d", "k", "K", "computed_trait")
    run, _, _, pending = _sync(store, aud, [("u0001", None, "x")], kind="computed_trait")
    store.settle(aud.id, run, [], [Rejected("uu0001", "identify", "invalid user_properties")])
    assert store.audience_counts(aud.id) == {"members": 0, "pending": 0, "rejected": 1}
    _, _, plan, _ = _sync(store, aud, [("u0001", None, "x")], kind="computed_trait")
    assert plan == {}
    _, _, plan, pending = _sync(store, aud, [("u0001", None, "y")], kind="computed_trait")
    assert plan == {"change": 1} and pending[0].value == '"y"'
    assert store.top_rejection_reasons(aud.id) == [("invalid user_properties", 1)]


def test_an_acknowledged_later_value_clears_the_users_rejection(store):
    aud = store.ensure_audience("d", "k", "K", "computed_trait")
    run, _, _, _ = _sync(store, aud, [("u0001", None, "x"), ("u0002", None, "x")], kind="computed_trait")
    store.settle(aud.id, run, [], [Rejected("uu0001", "identify", "invalid user_properties"),
                                   Rejected("uu0002", "identify", "invalid user_properties")])
    run, _, plan, pending = _sync(store, aud, [("u0001", None, "y"), ("u0002", None, "x")], kind="computed_trait")
    assert plan == {"change": 1}
    _ack_all(store, aud, run, pending)
    assert [r["identity"] for r in store.rejections(aud.id)] == ["uu0002"]
    assert store.audience_counts(aud.id) == {"members": 1, "pending": 0, "rejected": 1}
    assert store.members(aud.id)["uu0001"][2] == '"y"'


def _request(pending, i, j, *, span=True):
    """The outcome of a delivered request that carried pending rows i..j, a consecutive run of
    the input (the Deliverer then reports its first and last key and positions)."""
    refs = [r.identity for r in pending[i:j + 1]]
    return Outcomes(refs, "delivered", "identify", None, (refs[0], refs[-1]) if span else None,
                    (i, j) if span else None)


def _rejected(*identities):
    return Outcomes(list(identities), "rejected", "identify", "invalid user_properties")


def test_users_acknowledged_as_key_ranges_are_settled_like_their_ids(store):
    aud = store.ensure_audience("d", "k", "K", "audience")
    run, _, plan, pending = _sync(store, aud, [(f"u{i:04d}", None, None) for i in range(10)])
    first_old = _sync(store, store.ensure_audience("d", "other", "O", "audience"), [("u0003x", None, None)])
    assert first_old[2] == {"enter": 1}  # another audience's row between them in key order
    with store.settlement(aud.id, run, None, plan=plan) as settlement:
        assert settlement.by_range
        for outcomes in (_request(pending, 6, 8), _request(pending, 0, 3), _request(pending, 9, 9, span=False)):
            settlement.add(outcomes)
    assert settlement.delivered == 8 and settlement.rejected == 0
    assert set(store.members(aud.id)) == {r.identity for r in pending[0:4] + pending[6:10]}
    left = [PendingRow(*row) for page in store.pending_pages(aud.id) for row in page]
    assert [r.identity for r in left] == ["uu0004", "uu0005"]


def test_key_ranges_holding_a_row_not_acknowledged_are_settled_by_id_instead(store):
    aud = store.ensure_audience("d", "k", "K", "audience")
    run, _, plan, pending = _sync(store, aud, [(f"u{i:04d}", None, None) for i in range(6)])
    # uu0002 was not acknowledged (rejected, say), yet a range reported covers it
    spanned = [r.identity for r in pending if r.identity != "uu0002"]
    with store.settlement(aud.id, run, None, plan=plan) as settlement:
        settlement.add(Outcomes(spanned, "delivered", "identify", None, ("uu0000", "uu0005"), (0, 5)))
        settlement.add(_rejected("uu0002"))
    assert set(store.members(aud.id)) == set(spanned)
    assert [r["identity"] for r in store.rejections(aud.id)] == ["uu0002"]
    assert store.audience_counts(aud.id) == {"members": 5, "pending": 0, "rejected": 1}


def test_key_ranges_only_settle_the_given_runs_rows(store):
    aud = store.ensure_audience("d", "k", "K", "audience")
    _sync(store, aud, [("u0001", None, None), ("u0003", None, None)])
    run, _, plan, pending = _sync(store, aud, [("u0001", None, None), ("u0002", None, None),
                                               ("u0003", None, None), ("u0004", None, None)])
    assert plan == {"enter": 2}  # uu0002 and uu0004; uu0001 and uu0003 are still pending from the first run
    mine = [r.identity for r in pending if r.run_id == run]
    with store.settlement(aud.id, run, None, plan=plan) as settlement:
        settlement.add(Outcomes(mine, "delivered", "identify", None, ("uu0001", "uu0004"), (0, 1)))
    assert set(store.members(aud.id)) == {"uu0002", "uu0004"}
    assert {PendingRow(*row).identity for page in store.pending_pages(aud.id) for row in page} == {"uu0001", "uu0003"}


def test_rows_left_by_earlier_runs_are_settled_by_id_whatever_range_is_reported(store):
    aud = store.ensure_audience("d", "k", "K", "audience")
    _sync(store, aud, [("u0001", None, None), ("u0003", None, None)])
    run, _, _, pending = _sync(store, aud, [("u0001", None, None), ("u0002", None, None),
                                            ("u0003", None, None), ("u0004", None, None)])
    earlier = [r for r in pending if r.run_id != run]
    # Without the run's plan the pages mix runs: a range of the later run would miss these rows.
    with store.settlement(aud.id, run, None) as settlement:
        assert not settlement.by_range
        settlement.add(_request(earlier, 0, 1))
    assert set(store.members(aud.id)) == {"uu0001", "uu0003"}
    assert store.audience_counts(aud.id) == {"members": 2, "pending": 2, "rejected": 0}


def test_a_key_range_settles_new_values_unsets_and_earlier_rejections_like_ids(store):
    aud = store.ensure_audience("d", "k", "K", "computed_trait")
    users = [(f"u000{i}", None, f"v{i}") for i in range(1, 5)]
    run, _, _, pending = _sync(store, aud, users, kind="computed_trait")
    store.settle(aud.id, run, [r.identity for r in pending if r.identity != "uu0002"],
                 [Rejected("uu0002", "identify", "invalid user_properties")])
    run, _, plan, pending = _sync(store, aud, [("u0001", None, "w1"), ("u0002", None, "w2"), ("u0004", None, "v4")],
                                  kind="computed_trait")
    assert plan == {"change": 2, "unset": 1} and [r.identity for r in pending] == ["uu0001", "uu0002", "uu0003"]
    with store.settlement(aud.id, run, None, plan=plan) as settlement:
        settlement.add(_request(pending, 0, 2))
    assert store.members(aud.id) == {"uu0001": ("u0001", None, '"w1"'), "uu0002": ("u0002", None, '"w2"'),
                                     "uu0004": ("u0004", None, '"v4"')}
    assert store.audience_counts(aud.id) == {"members": 3, "pending": 0, "rejected": 0}
    assert store.rejections(aud.id) == []


def test_a_user_with_several_operations_is_settled_by_the_worst_answer_once_all_are_in(store):
    aud = store.ensure_audience("d", "k", "K", "audience")
    run, _, plan, pending = _sync(store, aud, [("u0001", None, None), ("u0002", None, None), ("u0003", None, None)])
    answered = []
    with store.settlement(aud.id, run, None, plan=plan, on_answered=answered.append) as settlement:
        for user in ("uu0001", "uu0002", "uu0003"):
            settlement.expect(user, 2)  # an identify and an event each
        settlement.add(Outcomes(["uu0001", "uu0002", "uu0003"], "delivered", "identify", None))
        assert sum(answered) == 0  # nobody is answered with one operation of two
        settlement.add(Outcomes(["uu0001"], "delivered", "event", None))
        settlement.add(Outcomes(["uu0002"], "rejected", "event", "invalid event"))
        settlement.add(Outcomes(["uu0003"], "undelivered", "event", "timed out"))
    assert (settlement.delivered, settlement.rejected, sum(answered)) == (1, 1, 3)
    assert set(store.members(aud.id)) == {"uu0001"}
    assert [(r["identity"], r["api"], r["reason"]) for r in store.rejections(aud.id)] == \
        [("uu0002", "event", "invalid event")]
    assert store.audience_counts(aud.id) == {"members": 1, "pending": 1, "rejected": 1}


def test_key_ranges_of_runs_that_follow_each_other_in_the_input_are_joined():
    # requests answered out of order: (positions in the input, (first key, last key))
    spans = [((2000, 2999), ("k2000", "k2999")), ((0, 999), ("k0000", "k0999")),
             ((1000, 1999), ("k1000", "k1999")), ((4000, 4999), ("k4000", "k4999"))]
    assert joined_spans(spans) == [("k0000", "k2999"), ("k4000", "k4999")]  # 3000-3999 still in flight
    assert joined_spans([]) == []


def test_a_user_back_before_their_exit_was_acknowledged_is_settled_beside_new_users(store):
    aud = store.ensure_audience("d", "k", "K", "audience")
    run, _, _, pending = _sync(store, aud, [("u0001", None, None), ("u0002", None, None)])
    _ack_all(store, aud, run, pending)
    _sync(store, aud, [("u0002", None, None)])  # u0001's exit is planned, never acknowledged
    run, _, plan, pending = _sync(store, aud, [("u0001", "dev9", None), ("u0002", None, None),
                                               ("u0003", None, None)])
    assert plan == {"enter": 2}  # u0001 enters again: its planned state was the exit
    _ack_all(store, aud, run, pending)
    assert store.members(aud.id) == {"uu0001": ("u0001", "dev9", "true"), "uu0002": ("u0002", None, "true"),
                                     "uu0003": ("u0003", None, "true")}
    assert store.audience_counts(aud.id) == {"members": 3, "pending": 0, "rejected": 0}


def test_acknowledged_exits_leave_the_synced_state(store):
    aud = store.ensure_audience("d", "k", "K", "audience")
    run, _, _, pending = _sync(store, aud, [("u0001", None, None), ("u0002", None, None)])
    _ack_all(store, aud, run, pending)
    run, _, plan, pending = _sync(store, aud, [("u0002", None, None)])
    assert plan == {"exit": 1}
    assert set(store.members(aud.id)) == {"uu0001", "uu0002"}  # not acknowledged yet
    _ack_all(store, aud, run, pending)
    assert set(store.members(aud.id)) == {"uu0002"}


def test_computed_trait_values_compare_canonically(store):
    aud = store.ensure_audience("d", "k", "K", "computed_trait")
    values = [{"b": 1, "a": [1, 2]}, 1.5, "text é", True, 10**12]
    rows = [(f"user{i}", None, v) for i, v in enumerate(values)]
    run, _, _, pending = _sync(store, aud, rows, kind="computed_trait")
    _ack_all(store, aud, run, pending)
    reordered = [(f"user{i}", None, {"a": [1, 2], "b": 1} if i == 0 else v) for i, v in enumerate(values)]
    _, _, plan, _ = _sync(store, aud, reordered, kind="computed_trait")
    assert plan == {}


def test_a_plan_is_all_or_nothing(store, monkeypatch):
    aud = store.ensure_audience("d", "k", "K", "audience")
    run = store.start_run(aud.id, "run")
    with store.work(aud.id) as work:
        work.load([[("u0001", None, None), ("u0002", None, None)]], computed=False)
        work.build_current(computed=False)
        original = work._change_selects

        def broken(*args, **kwargs):
            return original(*args, **kwargs) + ["SELECT no_such_column FROM members"]

        monkeypatch.setattr(work, "_change_selects", broken)
        try:
            work.plan(run, "audience")
        except Exception:
            pass
        else:
            raise AssertionError("the broken plan should fail")
    assert store.pending_count(aud.id) == 0
    assert store.find_audience("d", "k").first_synced_at is None


def test_every_kind_of_change_of_a_computed_trait_in_one_plan(store):
    aud = store.ensure_audience("d", "k", "K", "computed_trait")
    first = [("keep", None, 1), ("grow", None, 2), ("gone", None, 3), ("anon-only", None, 4),
             (None, "device-9", 5), ("split", None, 6)]
    run, _, _, pending = _sync(store, aud, first, kind="computed_trait")
    _ack_all(store, aud, run, pending)
    assert store.pending_count(aud.id) == 0  # no open outbox rows: PostgreSQL takes its full-join form
    now = [("keep", None, 1), ("grow", None, 20), ("anon-only", None, 4), ("new", "dev-n", 7),
           ("split", None, 6), ("split", None, 60)]
    _, counts, plan, pending = _sync(store, aud, now, kind="computed_trait")
    assert plan == {"enter": 1, "change": 1, "unset": 2}
    assert counts.conflicting_users == 1  # "split" is neither sent nor treated as gone
    got = {(r.user_id, r.anonymous_id, r.change, r.value) for r in pending}
    assert got == {("new", "dev-n", "enter", "7"), ("grow", None, "change", "20"),
                   ("gone", None, "unset", None), (None, "device-9", "unset", None)}


def test_a_backfill_plan_resends_every_current_member_and_still_exits_the_gone(store):
    aud = store.ensure_audience("d", "k", "K", "audience")
    run, _, _, pending = _sync(store, aud, [("u0001", None, None), ("u0002", None, None)])
    _ack_all(store, aud, run, pending)
    run = store.start_run(aud.id, "backfill")
    with store.work(aud.id) as work:
        work.load([[("u0002", None, None), ("u0003", None, None)]], computed=False)
        work.build_current(computed=False)
        plan = work.plan(run, "audience", backfill=True)
    assert plan == {"resend": 1, "enter": 1, "exit": 1}


def test_changed_users_given_several_times_are_planned_once_beside_a_conflict(store):
    """Only the users that changed are folded (on PostgreSQL after the join with the members):
    duplicates of a changed user still make one operation with the smallest ids, and a user with
    conflicting values is left out whether or not earlier plans are still open."""
    for acknowledged in (True, False):
        aud = store.ensure_audience("d", f"k{acknowledged}", "K", "computed_trait")
        run, _, _, pending = _sync(store, aud, [("u1", None, 1), ("u2", None, 2), ("u3", None, 3), ("u5", None, 5)],
                                   kind="computed_trait")
        if acknowledged:
            _ack_all(store, aud, run, pending)
        rows = [("u1", "dev9", 10), ("u1", "dev1", 10), ("u2", None, 20), ("u2", None, 21), ("u3", None, 3),
                ("u3", "dev3", 3), ("u4", "dev8", 4), ("u4", "dev4", 4)]
        _, counts, plan, pending = _sync(store, aud, rows, kind="computed_trait", chunk=2)
        assert counts.users == 3 and counts.conflicting_users == 1 and counts.duplicate_rows == 3
        assert plan == {"change": 1, "enter": 1, "unset": 1}
        assert sorted((r.user_id, r.anonymous_id, r.value, r.change) for r in pending if r.run_id != run) == [
            ("u1", "dev1", "10", "change"), ("u4", "dev4", "4", "enter"), ("u5", None, None, "unset")]


def test_a_first_sync_plans_every_user_once_and_leaves_out_conflicts(store):
    aud = store.ensure_audience("d", "k", "K", "computed_trait")
    rows = [("u3", None, 3), ("u1", "dev2", 1), ("u2", None, 2), ("u2", None, 7), ("u1", "dev1", 1), (None, "d4", 4)]
    _, counts, plan, pending = _sync(store, aud, rows, kind="computed_trait", chunk=2)
    assert (counts.users, counts.duplicate_rows, counts.conflicting_users, counts.conflicting_rows) == (3, 1, 1, 2)
    assert plan == {"enter": 3}
    assert [(r.identity, r.anonymous_id, r.value) for r in pending] == [
        ("ad4", "d4", "4"), ("uu1", "dev1", "1"), ("uu3", None, "3")]


def test_an_incremental_sync_counts_the_source_users_and_duplicates(store):
    """The users in the source and the duplicate rows, whichever way the diff ran: a plan, a
    dry run's preview or a backfill; with every earlier change acknowledged or still open."""
    rows = [(f"u{i:02d}", None, None) for i in range(2, 13)] + [("u05", "dev", None), ("u11", None, None)]
    random.Random(7).shuffle(rows)
    for acknowledged in (True, False):
        aud = store.ensure_audience("d", f"k{acknowledged}", "K", "audience")
        run, _, _, pending = _sync(store, aud, [(f"u{i:02d}", None, None) for i in range(10)])
        if acknowledged:
            _ack_all(store, aud, run, pending)
        for step in ("preview", "backfill", "plan"):
            with store.work(aud.id) as work:
                work.load([rows], computed=False)
                work.build_current(computed=False)
                if step == "preview":
                    plan, _ = work.preview("audience")
                else:
                    plan = work.plan(store.start_run(aud.id, "run"), "audience", backfill=step == "backfill")
                counts = work.counts()
            assert (counts.users, counts.duplicate_rows) == (11, 2), (acknowledged, step)
            if step == "preview":
                assert plan == {"enter": 3, "exit": 2}
