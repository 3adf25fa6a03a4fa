"""The ingest tables of `audsync serve` (audsync.state.ingest), on SQLite and PostgreSQL: storing
in group commits with dedup, the events store, rejections, claims by user with leases, pruning."""

import asyncio
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime, timezone

import orjson
import pytest
import sqlalchemy as sa

from audsync.errors import StateError, ValidationError
from audsync.state import GroupCommitter, IngestLog, open_store
from audsync.state.ingest import EXAMPLE_MAX_CHARS

DAY = 86400.0


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def msg(mid, user="u1", *, anon=None, kind="track", event="Clicked", received=None, **extra):
    received = time.time() if received is None else received
    m = {"messageId": mid, "type": kind, "receivedAt": iso(received), "timestamp": iso(received - 1.5)}
    if user is not None:
        m["userId"] = user
    if anon is not None:
        m["anonymousId"] = anon
    if kind == "track":
        m["event"] = event
        m["properties"] = {"n": 1}
    m.update(extra)
    return m


def rows(store, sql, **params):
    with store.engine.connect() as conn:
        return conn.execute(sa.text(sql), params).all()


def count(store, table, where="1 = 1"):
    return rows(store, f"SELECT count(*) FROM {table} WHERE {where}")[0][0]


@pytest.fixture
def log(store):
    return IngestLog(store, keep_events_days=400)


# ---------------------------------------------------------------------- storing and dedup

def test_append_stores_every_new_message_once_in_one_transaction(store, log):
    flags = log.append([[msg("m1"), msg("m2", "u2")], [msg("m3"), msg("m1"), msg("m3")]], sources=["web", "api"])
    assert flags == [[True, True], [True, False, False]]
    assert [r[0] for r in rows(store, "SELECT message_id FROM ingest_log ORDER BY id")] == ["m1", "m2", "m3"]
    assert count(store, "events") == 3
    assert rows(store, "SELECT source, partition_key, status FROM ingest_log WHERE message_id = 'm3'") \
        == [("api", "uu1", "pending")]


def test_a_message_id_seen_in_the_last_24_hours_is_acknowledged_not_stored_again(store, log):
    now = time.time()
    assert log.append([[msg("m1", received=now - DAY + 60)]]) == [[True]]
    assert log.append([[msg("m1", received=now)]]) == [[False]]
    assert count(store, "ingest_log") == 1
    # Seen more than 24 hours before: a new message (its old entry not pruned yet).
    assert log.append([[msg("m1", received=now + 120)]]) == [[True]]
    assert count(store, "ingest_log") == 2


def test_the_message_is_stored_with_the_servers_times_and_its_partition(store, log):
    received = 1_790_000_000.25
    m = msg("m1", None, anon="dev-1", received=received, context={"ip": "1.2.3.4"})
    log.append([[m]])
    (body, partition, received_at), = rows(store, "SELECT body, partition_key, received_at FROM ingest_log")
    assert partition == "adev-1" and received_at == pytest.approx(received)
    assert orjson.loads(body) == m


def test_the_events_store_keeps_the_columns_rule_queries_filter_on(store, log):
    t = 1_790_000_000.0
    log.append([[
        msg("t", "u1", received=t, event="Order Completed", properties={"total": 5}),
        msg("p", None, anon="a1", kind="page", received=t, name="Home", properties={"path": "/"}),
        msg("s", "u1", kind="screen", received=t, properties={"name": "Settings"}),
        msg("i", "u1", anon="a1", kind="identify", received=t, traits={"plan": "pro"}),
        msg("g", "u1", kind="group", received=t, groupId="g1", traits={"size": 3}),
        msg("a", "u1", kind="alias", received=t, previousId="a1"),
    ]])
    got = {r[0]: r[1:] for r in rows(store, "SELECT message_id, type, event, user_id, anonymous_id, group_id, "
                                            "previous_id, timestamp, received_at, properties, traits FROM events")}
    assert got["t"] == ("track", "Order Completed", "u1", None, None, None, t - 1.5, t, '{"total":5}', None)
    assert got["p"][:3] == ("page", "Home", None) and got["p"][3] == "a1"
    assert got["s"][1] == "Settings"
    assert got["i"][1] is None and got["i"][9] == '{"plan":"pro"}'
    assert got["g"][4] == "g1" and got["a"][5] == "a1"


def test_keep_events_days_zero_keeps_no_events(store):
    IngestLog(store, keep_events_days=0).append([[msg("m1"), msg("m2")]])
    assert count(store, "ingest_log") == 2 and count(store, "events") == 0


def test_an_unvalidated_message_is_refused_before_anything_is_written(store, log):
    with pytest.raises(ValidationError, match="message 1"):
        log.append([[msg("m1"), {"messageId": "m2", "type": "track", "receivedAt": iso(time.time())}]])
    assert count(store, "ingest_log") == 0


# ---------------------------------------------------------------------- group commit

def _hold_write_lock(store):
    """A second connection holding what every append needs, until the returned callback."""
    conn = store.engine.connect()
    conn.begin()  # on SQLite: BEGIN IMMEDIATE, the database's write lock (audsync.state.db)
    if store.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE ingest_dedup IN EXCLUSIVE MODE")

    def release():
        conn.rollback()
        conn.close()
    return release


def test_group_commit_resolves_futures_only_after_the_commit(state_url, store, log):
    committer = GroupCommitter(log, max_wait_s=0.05)
    release = _hold_write_lock(store)
    try:
        futures = [committer.submit([msg(f"m{i}", f"u{i}"), msg(f"n{i}", f"u{i}")]) for i in range(5)]
        futures.append(committer.submit([msg("m0")]))  # a resend within the group
        with pytest.raises(FutureTimeout):
            futures[0].result(timeout=0.5)  # the commit cannot happen while the lock is held
        assert not any(f.done() for f in futures)
    finally:
        release()
    assert [f.result(timeout=60) for f in futures] == [[True, True]] * 5 + [[False]]
    committer.close()
    other = open_store(state_url)  # a separate engine: what was acknowledged is committed
    try:
        assert count(other, "ingest_log") == 10
    finally:
        other.close()


def test_a_failed_commit_fails_every_request_of_its_group(state_url):
    unmigrated = open_store(state_url)  # no tables: the commit fails
    try:
        committer = GroupCommitter(IngestLog(unmigrated), max_wait_s=0.2)
        futures = [committer.submit([msg("m1")]), committer.submit([msg("m2")])]
        for f in futures:
            with pytest.raises(StateError, match="state database"):
                f.result(timeout=60)
        committer.close()
    finally:
        unmigrated.close()


async def _requests_on_a_loop(committer, sends):
    """serve's way: each request awaits a future of its event loop; the last client goes away."""
    loop = asyncio.get_running_loop()
    futures = [committer.submit(batch, loop=loop) for batch in sends]
    futures[-1].cancel()
    return await asyncio.gather(*futures[:-1], return_exceptions=True)


def test_an_event_loops_requests_are_answered_on_their_loop_after_the_commit(store, log):
    committer = GroupCommitter(log, max_wait_s=0.05)
    release = _hold_write_lock(store)
    timer = threading.Timer(0.5, release)  # the commit waits for the lock meanwhile
    timer.start()
    try:
        started = time.monotonic()
        answers = asyncio.run(_requests_on_a_loop(committer, [[msg("a1"), msg("a2")], [msg("a1")], [msg("a3")]]))
        assert time.monotonic() - started >= 0.4
    finally:
        timer.join()
        committer.close()
    assert answers == [[True, True], [False]]
    assert count(store, "ingest_log") == 3  # the cancelled request's message too: a resend is deduplicated


def test_a_failed_commit_fails_every_request_on_the_loop(state_url):
    unmigrated = open_store(state_url)  # no tables: the commit fails
    try:
        committer = GroupCommitter(IngestLog(unmigrated), max_wait_s=0.05)
        answers = asyncio.run(_requests_on_a_loop(committer, [[msg("b1")], [msg("b2")], [msg("b3")]]))
        committer.close()
    finally:
        unmigrated.close()
    assert len(answers) == 2 and all(isinstance(a, StateError) for a in answers)


def test_close_commits_what_was_submitted_then_refuses_more(store, log):
    committer = GroupCommitter(log, max_wait_s=30)  # would wait long for more; close does not
    future = committer.submit([msg("m1"), msg("m2")])
    committer.close()
    assert future.done() and future.result() == [True, True]
    assert count(store, "ingest_log") == 2
    with pytest.raises(StateError, match="stopping"):
        committer.submit([msg("m3")])


def test_group_commit_with_many_concurrent_submitters(store, log):
    with GroupCommitter(log, max_wait_s=0.002, max_messages=300) as committer:
        results = {}

        def client(c):
            results[c] = [committer.submit([msg(f"{c}-{r}-{i}", f"u{c}") for i in range(10)]).result(timeout=60)
                          for r in range(20)]
        threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert all(flags == [[True] * 10] * 20 for flags in results.values())
    assert count(store, "ingest_log") == 8 * 20 * 10
    # Each client's messages are in the log in the order it sent them.
    for c in range(8):
        ids = [r[0] for r in rows(store, "SELECT message_id FROM ingest_log WHERE partition_key = :p ORDER BY id",
                                  p=f"uu{c}")]
        assert ids == [f"{c}-{r}-{i}" for r in range(20) for i in range(10)]


# ---------------------------------------------------------------------- rejections and status

def test_rejections_are_counted_by_reason_with_the_latest_examples(store, log):
    log.record_rejections([{"index": 0, "reason": "no userId nor anonymousId", "example": {"type": "track"}},
                           {"index": 2, "reason": "track without event", "example": "x" * 10_000,
                            "messageId": "m9"}], source="web")
    log.record_rejections([{"index": 1, "reason": "no userId nor anonymousId", "example": None}])
    status = log.status(examples=2)
    assert status.rejected == {"no userId nor anonymousId": 2, "track without event": 1}
    assert [(e["reason"], e["message_index"]) for e in status.examples] == \
        [("no userId nor anonymousId", 1), ("track without event", 2)]
    long = status.examples[1]
    assert long["message_id"] == "m9" and long["source"] == "web"
    assert len(long["example"]) == EXAMPLE_MAX_CHARS and long["example"].endswith("…")


def test_status_counts_the_backlog_in_flight_and_forwarding_rejections(store, log):
    log.append([[msg("m1", "u1"), msg("m2", "u2"), msg("m3", "u3")]])
    claimed = log.claim("w", limit=2, lease_s=30)
    log.settle("w", [], rejected=[(claimed[0], "invalid user_id")])
    status = log.status()
    assert (status.pending, status.in_flight) == (2, 1)
    assert status.forward_rejected == {"invalid user_id": 1}
    assert status.oldest_pending_at is not None


# ---------------------------------------------------------------------- claims

def _append_interleaved(log, users=5, per_user=4):
    log.append([[msg(f"{u}-{i}", f"u{u}") for i in range(per_user) for u in range(users)]])


def test_a_claim_hands_out_whole_users_oldest_first_to_one_worker(store, log):
    _append_interleaved(log)
    a = log.claim("A", limit=3, lease_s=30)
    users_a = {m.partition_key for m in a}
    assert [m.message_id for m in a] == ["0-0", "1-0", "2-0"]
    assert a[0].message["messageId"] == "0-0" and users_a == {"uu0", "uu1", "uu2"}
    b = log.claim("B", limit=100, lease_s=30)
    assert {m.partition_key for m in b} == {"uu3", "uu4"} and len(b) == 8
    # Another claim by A does not hand out more of the users it has in flight.
    assert log.claim("A", limit=100, lease_s=30) == []
    everything = {m.message_id for m in a + b}
    # A's users' later messages stay until A settles its batch; then they are free.
    log.settle("A", a)
    rest = log.claim("B", limit=100, lease_s=30)
    assert {m.partition_key for m in rest} == users_a
    assert everything.isdisjoint(m.message_id for m in rest)
    for user in users_a:
        ids = [m.message_id for m in a + rest if m.partition_key == user]
        assert ids == [f"{user[2:]}-{i}" for i in range(4)]


def test_released_messages_go_first_to_the_next_claim(store, log):
    _append_interleaved(log, users=2, per_user=2)
    a = log.claim("A", limit=10, lease_s=30)
    log.release("A", a)
    assert log.status().in_flight == 0
    b = log.claim("B", limit=10, lease_s=30)
    assert [m.id for m in b] == [m.id for m in a]


def test_an_expired_lease_lets_another_worker_take_the_user_over(store, log):
    _append_interleaved(log, users=1, per_user=3)
    a = log.claim("A", limit=2, lease_s=0.2)
    assert len(a) == 2
    deadline = time.monotonic() + 30
    while not (b := log.claim("B", limit=10, lease_s=30)):
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.1)
    assert [m.message_id for m in b] == ["0-0", "0-1", "0-2"]  # A's unsettled ones first, in order
    # A's late acknowledgement still counts; B then holds the user until it settles the rest.
    log.settle("A", a)
    assert log.claim("C", limit=10, lease_s=30) == []
    log.settle("B", [b[2]])
    assert log.status().pending == 0


def test_renew_extends_the_leases_a_worker_holds(store, log):
    _append_interleaved(log, users=2, per_user=1)
    log.claim("A", limit=10, lease_s=5)
    assert log.renew("A", 3600) == 2
    assert log.renew("B", 3600) == 0
    clock = store.clock()
    expiries = [r[0] for r in rows(store, "SELECT expires_at FROM ingest_partitions WHERE claimed_by = 'A'")]
    assert len(expiries) == 2 and all(e > clock + 3000 for e in expiries)


def test_two_concurrent_workers_never_hold_a_user_at_once_and_keep_each_users_order(state_url, store, log):
    users, per_user = 12, 40
    log.append([[msg(f"{u}-{i}", f"u{u}") for u in range(users)] for i in range(per_user)])
    in_flight: dict[str, str] = {}
    handed: dict[str, list[int]] = {}
    lock = threading.Lock()
    errors = []

    def worker(name):
        other = open_store(state_url)
        wlog = IngestLog(other)
        try:
            idle = 0
            while idle < 20:
                batch = wlog.claim(name, limit=7, lease_s=60)
                if not batch:
                    idle += 1
                    time.sleep(0.01)
                    continue
                idle = 0
                with lock:
                    for m in batch:
                        if in_flight.get(m.partition_key, name) != name:
                            errors.append(f"{m.partition_key} held by {in_flight[m.partition_key]} and {name}")
                        in_flight[m.partition_key] = name
                        handed.setdefault(m.partition_key, []).append(int(m.message_id.split("-")[1]))
                    for m in batch:  # before settling: the lease ends only after
                        in_flight.pop(m.partition_key, None)
                wlog.settle(name, batch)
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(repr(exc))
        finally:
            other.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("A", "B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert handed == {f"uu{u}": list(range(per_user)) for u in range(users)}
    assert log.status().pending == 0 and count(store, "ingest_partitions") == 0


# ---------------------------------------------------------------------- pruning

def test_prune_deletes_old_events_and_dedup_entries_in_batches(store):
    log = IngestLog(store, keep_events_days=10)
    now = time.time()
    log.append([[msg(f"old{i}", received=now - 11 * DAY + i) for i in range(12)]])
    log.append([[msg(f"day{i}", received=now - 2 * DAY) for i in range(3)]])
    log.append([[msg(f"new{i}", received=now) for i in range(4)]])
    log.record_rejections([{"index": 0, "reason": "r"}])
    deleted = log.prune(now, batch=5)
    assert deleted["events"] == 12 and deleted["ingest_dedup"] == 15
    assert deleted["ingest_rejections"] == 0
    assert count(store, "events") == 7 and count(store, "ingest_dedup") == 4
    assert count(store, "ingest_log") == 19  # the log is the forwarder's: never pruned while pending
    assert log.prune(now + 31 * DAY)["ingest_rejections"] == 1


def test_prune_removes_rejected_messages_and_expired_leases(store):
    log = IngestLog(store)
    log.append([[msg("m1", "u1"), msg("m2", "u2")]])
    first, second = log.claim("A", limit=2, lease_s=0.01)
    log.settle("A", [], rejected=[(first, "bad")])
    time.sleep(0.2)
    deleted = log.prune(time.time() + 31 * DAY)
    assert deleted["ingest_log"] == 1 and deleted["ingest_partitions"] >= 1
    assert count(store, "ingest_log") == 1 and count(store, "ingest_partitions") == 0
