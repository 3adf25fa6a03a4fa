"""The durable side of `audsync serve`: the ingest log, the events store, rejections, claims.

A request is answered 200 only once its messages are committed. Committing each request on its
own would cost one fsync per request, so a GroupCommitter gathers the messages of many requests
and commits them in one transaction (IngestLog.commit), resolving each request's future only
after that commit.

Forwarders take messages with claim(): a user's messages (their partition key) are handed to one
forwarder at a time, under a lease on the database clock kept in ingest_partitions, so that
several servers sharing one PostgreSQL keep each user's order; a lease that expires (its server
died or stalled) lets another forwarder take the user's messages, oldest first. A SQLite state
has a single writer: the same statements then simply run one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import orjson
import sqlalchemy as sa

from ..errors import StateError, ValidationError
from .base import StoreBase

DEDUP_WINDOW_S = 24 * 3600       # a messageId seen this recently is acknowledged, not stored again
KEEP_REJECTIONS_S = 30 * 86400   # how long rejections stay visible in status
EXAMPLE_MAX_CHARS = 2048         # a rejected message's example, as stored
FORWARD_MINUTES_KEPT_S = 86400  # what forwarders settled per minute (the status page shows the last hour)
PRUNE_BATCH = 5000               # rows deleted per transaction: no lock is held for long
EVENT_TYPES = frozenset({"track", "page", "screen", "identify", "group", "alias"})

PENDING, REJECTED = "pending", "rejected"

_LOG_COLUMNS = ("message_id", "source", "type", "user_id", "anonymous_id", "partition_key", "received_at", "body",
                "status")
_REJECTION_COLUMNS = ("received_at", "source", "reason", "message_index", "message_id", "example")
_EVENT_COLUMNS = ("message_id", "source", "type", "event", "user_id", "anonymous_id", "group_id", "previous_id",
                  "timestamp", "received_at", "properties", "traits", "context")


class ClaimedMessage(NamedTuple):
    """A message handed to a forwarder: settle or release it by `id`."""

    id: int
    message_id: str
    partition_key: str
    source: str | None
    received_at: float
    message: dict[str, Any]


@dataclass(frozen=True)
class IngestStatus:
    """What `audsync status` and the metrics show of the ingest."""

    pending: int                       # stored, not yet forwarded
    in_flight: int                     # of those, held by a forwarder under a live lease
    oldest_pending_at: float | None    # received_at of the oldest pending message
    rejected: dict[str, int]           # messages refused by validation, by reason: the most frequent reasons
    forward_rejected: dict[str, int]   # messages Amplitude refused for good, by reason: the most frequent
    examples: list[dict[str, Any]]     # the latest validation rejections, newest first
    rejected_total: int = 0            # messages refused by validation (last KEEP_REJECTIONS_S), every reason
    forward_rejected_total: int = 0    # messages refused for good when forwarded (last KEEP_REJECTIONS_S)
    stored_last_day: int = 0           # messages stored in the last DEDUP_WINDOW_S (duplicates not counted)

    @property
    def used(self) -> bool:
        """Whether the tables hold any trace of ingest (within the windows rows are kept)."""
        return bool(self.pending or self.rejected_total or self.forward_rejected_total or self.stored_last_day)


class Prepared(NamedTuple):
    """One request's messages, turned into rows (IngestLog.prepare)."""

    message_ids: list[str]
    received_at: list[float]
    log_rows: list[tuple]
    event_rows: list[tuple | None]


def partition_key(user_id: str | None, anonymous_id: str | None) -> str:
    """The key a user's messages are ordered under, as identities elsewhere in the state."""
    return f"u{user_id}" if user_id else f"a{anonymous_id}"


class IngestLog:
    """The ingest tables of one state store (`store`: a StateStore, or any StoreBase)."""

    def __init__(self, store: StoreBase, *, keep_events_days: float = 400):
        self.store = store
        self.keep_events_days = keep_events_days

    # ------------------------------------------------------------------ storing
    def prepare(self, messages: Sequence[dict[str, Any]], source: str | None = None) -> Prepared:
        """Rows for the messages of one request (validated and normalised by the caller: each has
        its messageId, type, userId or anonymousId, and the server's receivedAt). A message that
        lacks them is the caller's bug, refused here with a ValidationError before anything of the
        group it would have joined is written."""
        ids, received, log_rows, event_rows = [], [], [], []
        keep_events = self.keep_events_days > 0
        for index, msg in enumerate(messages):
            message_id, kind = msg.get("messageId"), msg.get("type")
            user_id, anonymous_id = _text(msg.get("userId")), _text(msg.get("anonymousId"))
            received_at = _seconds(msg.get("receivedAt"))
            if not isinstance(message_id, str) or not message_id or not isinstance(kind, str) \
                    or not (user_id or anonymous_id) or received_at is None:
                raise ValidationError(f"ingest: message {index} of the request has no messageId, type, "
                                      "userId or anonymousId, or receivedAt: it was not validated before storing")
            try:
                body = orjson.dumps(msg).decode()
                event = (_event_row(msg, message_id, source, kind, user_id, anonymous_id, received_at)
                         if keep_events and kind in EVENT_TYPES else None)
            except TypeError as exc:  # orjson's JSONEncodeError: an integer past 64 bits, say
                raise ValidationError(
                    f"ingest: message {index} of the request cannot be stored as JSON ({exc})") from None
            ids.append(message_id)
            received.append(received_at)
            log_rows.append((message_id, source, kind, user_id, anonymous_id, partition_key(user_id, anonymous_id),
                             received_at, body, PENDING))
            event_rows.append(event)
        return Prepared(ids, received, log_rows, event_rows)

    def append(self, batches: Sequence[Sequence[dict[str, Any]]],
               sources: Sequence[str | None] | None = None) -> list[list[bool]]:
        """Stores the messages of several requests in one transaction; per message, whether it was
        stored (False: its messageId was seen in the last 24 hours, or earlier in `batches`)."""
        sources = sources if sources is not None else [None] * len(batches)
        return self.commit([self.prepare(batch, source) for batch, source in zip(batches, sources)])

    def commit(self, group: Sequence[Prepared]) -> list[list[bool]]:
        """Commits prepared requests together (see append)."""
        flags = [[False] * len(p.message_ids) for p in group]
        first: dict[str, tuple[int, int]] = {}
        received: dict[str, float] = {}
        for b, prepared in enumerate(group):
            for i, message_id in enumerate(prepared.message_ids):
                if message_id not in first:
                    first[message_id] = (b, i)
                    received[message_id] = prepared.received_at[i]
        if not first:
            return flags
        # Sorted: concurrent servers then lock the messageIds they share in the same order, and
        # never wait for each other in a cycle.
        seen_rows = orjson.dumps(sorted(received.items())).decode()
        dialect = self.store.dialect
        with self.store._conn() as conn:
            # A messageId is stored when it is new, or when the one seen is older than the window
            # (pruning may not have removed it yet): the upsert answers exactly those.
            fresh = set(conn.execute(sa.text(
                f"INSERT INTO ingest_dedup (message_id, received_at) {dialect.json_rows(('text', 'float'))} "
                "WHERE true ON CONFLICT (message_id) DO UPDATE SET received_at = excluded.received_at "
                f"WHERE ingest_dedup.received_at < excluded.received_at - {DEDUP_WINDOW_S}"
                " RETURNING message_id"), {"rows": seen_rows}).scalars())
            log_rows, event_rows = [], []
            for message_id, (b, i) in first.items():  # in request order: the log's ids keep it
                if message_id in fresh:
                    flags[b][i] = True
                    log_rows.append(group[b].log_rows[i])
                    event = group[b].event_rows[i]
                    if event is not None:
                        event_rows.append(event)
            if log_rows:
                dialect.insert_many(conn, "ingest_log", _LOG_COLUMNS, log_rows)
            if event_rows:
                dialect.insert_many(conn, "events", _EVENT_COLUMNS, event_rows)
        return flags

    def record_rejections(self, rows: Iterable[dict[str, Any]], source: str | None = None) -> int:
        """Records the invalid messages of a request: each row has `reason`, `index` (in the
        request), and optionally `example` (the message, or its text: truncated when stored) and
        `messageId`. Answers how many were recorded."""
        now = time.time()
        values = [(now, source, str(row["reason"]), int(row["index"]), _text(row.get("messageId")),
                   _example(row.get("example"))) for row in rows]
        if values:
            with self.store._conn() as conn:
                self.store.dialect.insert_many(conn, "ingest_rejections", _REJECTION_COLUMNS, values)
        return len(values)

    # ------------------------------------------------------------------ forwarding
    def claim(self, worker: str, limit: int, lease_s: float) -> list[ClaimedMessage]:
        """Hands `worker` the first `limit` pending messages, oldest first, of users no other
        forwarder holds; it holds those users for `lease_s` seconds (renew() extends them) until
        it settles or releases what it was handed. A user whose lease expired is taken over with
        their messages. Another claim by the same worker skips the users it holds, so a user's
        messages are in at most one batch at a time.

        Nothing is written to the messages: each user's lease records the claim, with the last id
        it read (handed_upto), and every pending message of the user up to it was handed out."""
        dialect = self.store.dialect
        with self._bookkeeping() as conn:
            dialect.begin_claim(conn)
            now = float(conn.execute(sa.text(f"SELECT {dialect.now}")).scalar_one())
            rows = conn.execute(sa.text(
                "SELECT l.id, l.message_id, l.partition_key, l.source, l.received_at, l.body FROM ingest_log l "
                "WHERE l.status = 'pending' AND NOT EXISTS (SELECT 1 FROM ingest_partitions p "
                "WHERE p.partition_key = l.partition_key AND p.expires_at >= :now) ORDER BY l.id LIMIT :n"),
                {"now": now, "n": limit}).all()
            if not rows:
                return []
            # Sorted, so that two claims lock the users they both want in the same order. A user
            # another claim took since this one read the log is not answered (their lease is
            # live): their messages are not handed out.
            held = set(conn.execute(sa.text(
                "INSERT INTO ingest_partitions (partition_key, claimed_by, expires_at, handed_upto) "
                f"SELECT c0, :w, :now + :lease, :upto FROM ({dialect.json_rows(('text',))}) j WHERE true "
                "ON CONFLICT (partition_key) DO UPDATE SET claimed_by = excluded.claimed_by, "
                "expires_at = excluded.expires_at, handed_upto = excluded.handed_upto "
                "WHERE ingest_partitions.expires_at < :now RETURNING partition_key"),
                {"rows": _rows(sorted({row[2] for row in rows})), "w": worker, "now": now,
                 "lease": float(lease_s), "upto": int(rows[-1][0])}).scalars())
        return [ClaimedMessage(int(r[0]), r[1], r[2], r[3], float(r[4]), orjson.loads(r[5]))
                for r in rows if r[2] in held]

    def renew(self, worker: str, lease_s: float) -> int:
        """Extends the leases `worker` still holds (a forwarder waiting out an Amplitude outage
        must not lose its users to another); answers how many users it holds."""
        now = self.store.dialect.now
        with self._bookkeeping() as conn:
            return int(conn.execute(sa.text(
                f"UPDATE ingest_partitions SET expires_at = {now} + :lease WHERE claimed_by = :w "
                f"AND expires_at >= {now}"), {"w": worker, "lease": float(lease_s)}).rowcount)

    def settle(self, worker: str, forwarded: Sequence[ClaimedMessage],
               rejected: Sequence[tuple[ClaimedMessage, str]] = (), *, released: Sequence[ClaimedMessage] = (),
               skipped: int = 0, lags: Sequence[float] = (), now: float | None = None) -> None:
        """The end of `worker`'s batch, in one transaction: Amplitude's answers, and the users of
        every message in it freed for other forwarders. Forwarded messages leave the log (the
        events store keeps them); rejected ones stay as "rejected" with the reason; released ones
        (sent nothing, or not acknowledged) stay pending, first in line. An acknowledgement is
        settled whoever holds the message now (it is a fact even from a forwarder whose lease ran
        out); only the worker's own leases end.

        `skipped` of the forwarded ones were sent nothing (the settings filter them out); `lags`
        are the others' forward lags in seconds. Both go to the minute of `now` in
        ingest_forward_minutes."""
        users = sorted({m.partition_key for m in (*forwarded, *released)} | {m.partition_key for m, _ in rejected})
        if not users:
            return
        now = time.time() if now is None else now
        dialect = self.store.dialect
        with self._bookkeeping() as conn:
            dialect.begin_claim(conn)  # the leases by their primary key, as claims lock them
            if forwarded or rejected:
                conn.execute(sa.text(
                    "INSERT INTO ingest_forward_minutes (minute, forwarded, skipped, refused, lag_sum, lag_max) "
                    "VALUES (:minute, :forwarded, :skipped, :refused, :lag_sum, :lag_max) "
                    "ON CONFLICT (minute) DO UPDATE "
                    "SET forwarded = ingest_forward_minutes.forwarded + excluded.forwarded, "
                    "skipped = ingest_forward_minutes.skipped + excluded.skipped, "
                    "refused = ingest_forward_minutes.refused + excluded.refused, "
                    "lag_sum = ingest_forward_minutes.lag_sum + excluded.lag_sum, "
                    "lag_max = CASE WHEN excluded.lag_max > ingest_forward_minutes.lag_max THEN excluded.lag_max "
                    "ELSE ingest_forward_minutes.lag_max END"),
                    {"minute": int(now // 60) * 60, "forwarded": len(forwarded) - skipped, "skipped": skipped,
                     "refused": len(rejected), "lag_sum": float(sum(lags)), "lag_max": float(max(lags, default=0.0))})
            if forwarded:
                conn.execute(sa.text(f"DELETE FROM ingest_log WHERE {dialect.in_rows('id', 'int')}"),
                             {"rows": _rows([m.id for m in forwarded])})
            if rejected:
                conn.execute(sa.text(
                    "UPDATE ingest_log SET status = 'rejected', reason = j.c1, "
                    f"settled_at = :now FROM ({dialect.json_rows(('int', 'text'))}) j "
                    "WHERE ingest_log.id = j.c0 AND ingest_log.status = 'pending'"),
                    {"rows": orjson.dumps([[m.id, str(reason)] for m, reason in rejected]).decode(),
                     "now": time.time()})
            conn.execute(sa.text(
                f"DELETE FROM ingest_partitions WHERE claimed_by = :w AND {dialect.in_rows('partition_key')}"),
                {"w": worker, "rows": _rows(users)})

    def release(self, worker: str, messages: Sequence[ClaimedMessage]) -> None:
        """Messages `worker` was handed and did not send (it is stopping): their users are free
        for any forwarder, and the messages, still pending, first in line."""
        self.settle(worker, (), released=messages)

    def lease_holders(self) -> list[str]:
        """The forwarders holding users now, live leases or not."""
        with self.store._conn(write=False) as conn:
            return sorted(conn.execute(sa.text("SELECT DISTINCT claimed_by FROM ingest_partitions")).scalars())

    def abandon(self, worker: str) -> int:
        """Frees everything `worker` holds, for a forwarder known to be dead (its process is gone):
        its messages are pending for anyone at once rather than when its leases run out. Answers
        how many users it held."""
        with self._bookkeeping() as conn:
            return int(conn.execute(sa.text("DELETE FROM ingest_partitions WHERE claimed_by = :w"),
                                    {"w": worker}).rowcount)

    @contextlib.contextmanager
    def _bookkeeping(self) -> Iterator[sa.Connection]:
        """A transaction of the forwarder's (see Dialect.begin_forwarder_bookkeeping)."""
        with self.store._conn() as conn:
            self.store.dialect.begin_forwarder_bookkeeping(conn)
            yield conn

    # ------------------------------------------------------------------ pruning and status
    def prune(self, now: float | None = None, *, batch: int = PRUNE_BATCH) -> dict[str, int]:
        """Deletes events older than keep_events_days (by received_at; all of them when it is 0),
        messageIds seen more than 24 hours ago, rejections older than KEEP_REJECTIONS_S and
        leases that ran out, `batch` rows per transaction; answers how many rows per table."""
        now = time.time() if now is None else now
        events_cutoff = now - self.keep_events_days * 86400
        rejections_cutoff = now - KEEP_REJECTIONS_S
        # The events and rejections tables are in received_at order by id, give or take the
        # seconds between servers: their oldest rows are deleted from the front of the primary
        # key, without an index on received_at to maintain at every insert. A row a little out
        # of order waits for the next prune.
        steps = {
            "events": ("DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT :n) "
                       "AND received_at < :cutoff", events_cutoff),
            "ingest_dedup": ("DELETE FROM ingest_dedup WHERE message_id IN (SELECT message_id FROM ingest_dedup "
                             "WHERE received_at < :cutoff ORDER BY received_at LIMIT :n)", now - DEDUP_WINDOW_S),
            "ingest_rejections": ("DELETE FROM ingest_rejections WHERE id IN (SELECT id FROM ingest_rejections "
                                  "ORDER BY id LIMIT :n) AND received_at < :cutoff", rejections_cutoff),
            "ingest_log": ("DELETE FROM ingest_log WHERE id IN (SELECT id FROM ingest_log WHERE status = 'rejected' "
                           "AND settled_at < :cutoff ORDER BY id LIMIT :n)", rejections_cutoff),
            "ingest_forward_minutes": ("DELETE FROM ingest_forward_minutes WHERE minute IN (SELECT minute FROM "
                                       "ingest_forward_minutes WHERE minute < :cutoff ORDER BY minute LIMIT :n)",
                                       now - FORWARD_MINUTES_KEPT_S),
            "ingest_partitions": ("DELETE FROM ingest_partitions WHERE partition_key IN (SELECT partition_key "
                                  f"FROM ingest_partitions WHERE expires_at < {self.store.dialect.now} LIMIT :n)",
                                  None),
        }
        deleted = {}
        for table, (sql, cutoff) in steps.items():
            total = 0
            while True:
                with self.store._conn() as conn:
                    n = conn.execute(sa.text(sql), {"n": batch, "cutoff": cutoff}).rowcount
                total += n
                if n < 1:
                    break
            deleted[table] = total
        return deleted

    def backlog(self) -> tuple[int, float | None]:
        """Pending messages and the received_at of the oldest, from the (status, id) index: the
        oldest by id, which is received_at order give or take the seconds between servers (a
        message released by a forwarder keeps its id, and its place at the front)."""
        with self.store._conn(write=False) as conn:
            pending = conn.execute(sa.text("SELECT count(*) FROM ingest_log WHERE status = 'pending'")).scalar_one()
            oldest = conn.execute(sa.text(
                "SELECT received_at FROM ingest_log WHERE status = 'pending' ORDER BY id LIMIT 1")).scalar()
        return int(pending), float(oldest) if oldest is not None else None

    def status(self, examples: int = 5, reasons: int = 10, now: float | None = None) -> IngestStatus:
        """The ingest at a glance. Cost on a big log: the backlog counts the (status, id) index
        range of pending messages (about 0.1 s for 2 million on SQLite); rejections are counted on the
        (reason, id) index; messages in flight are found from the leases (a few forwarders'
        claims); the day's count ranges over ingest_dedup's received_at index. Only the most
        frequent `reasons` of each kind are named."""
        now = time.time() if now is None else now
        dialect = self.store.dialect
        pending, oldest = self.backlog()
        with self.store._conn(write=False) as conn:
            # From the leases (a few forwarders' users), each user's pending messages up to what
            # the claim read, on the (partition_key, status, id) index: a join lets SQLite's
            # planner scan the whole log.
            in_flight = conn.execute(sa.text(
                "SELECT coalesce(sum((SELECT count(*) FROM ingest_log l WHERE l.partition_key = p.partition_key "
                "AND l.status = 'pending' AND l.id <= p.handed_upto)), 0) FROM ingest_partitions p "
                f"WHERE p.expires_at >= {dialect.now}")).scalar_one()
            rejected = conn.execute(sa.text(
                "SELECT reason, count(*) AS n FROM ingest_rejections GROUP BY reason ORDER BY n DESC, reason "
                "LIMIT :n"), {"n": reasons}).all()
            rejected_total = conn.execute(sa.text("SELECT count(*) FROM ingest_rejections")).scalar_one()
            # The few rejected rows by the (status, id) index, whatever the planner's statistics
            # say of a column nearly all 'pending'.
            forward_rejected = conn.execute(sa.text(
                "SELECT reason, count(*) AS n FROM ingest_log WHERE id IN "
                "(SELECT id FROM ingest_log WHERE status = 'rejected') "
                "GROUP BY reason ORDER BY n DESC, reason LIMIT :n"), {"n": reasons}).all()
            forward_rejected_total = conn.execute(sa.text(
                "SELECT count(*) FROM ingest_log WHERE status = 'rejected'")).scalar_one()
            latest = [dict(r) for r in conn.execute(sa.text(
                "SELECT received_at, source, reason, message_index, message_id, example FROM ingest_rejections "
                "ORDER BY id DESC LIMIT :n"), {"n": examples}).mappings()]
            stored = conn.execute(sa.text("SELECT count(*) FROM ingest_dedup WHERE received_at >= :cutoff"),
                                  {"cutoff": now - DEDUP_WINDOW_S}).scalar_one()
        return IngestStatus(
            pending, int(in_flight), oldest,
            {str(k): int(v) for k, v in rejected}, {str(k): int(v) for k, v in forward_rejected}, latest,
            rejected_total=int(rejected_total), forward_rejected_total=int(forward_rejected_total),
            stored_last_day=int(stored))


class GroupCommitter:
    """Commits the messages of many requests together, on a thread of its own.

    submit() answers a Future at once; it resolves, with the request's per-message stored flags
    (IngestLog.commit), only once the transaction holding them has committed, or fails with the
    commit's error (a StateError): a server answers 200 only on the result. A group is committed
    as soon as it holds `max_messages`, or `max_wait_s` after its first request arrived; requests
    arriving while a commit runs form the next group, so that under load each commit carries
    many requests for one fsync.
    """

    def __init__(self, log: IngestLog, max_wait_s: float = 0.005, max_messages: int = 5000):
        self.log = log
        self.max_wait_s = max_wait_s
        self.max_messages = max_messages
        self._queue: queue.SimpleQueue[tuple[Prepared, Future | asyncio.Future] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ingest group commit", daemon=True)
        self._thread.start()

    def __enter__(self) -> "GroupCommitter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, messages: Sequence[dict[str, Any]], source: str | None = None, *,
               loop: asyncio.AbstractEventLoop | None = None) -> "Future[list[bool]] | asyncio.Future[list[bool]]":
        """Queues one request's messages (see IngestLog.prepare, whose ValidationError is raised
        here, to the one caller). Raises StateError once close() was called.

        Called on an event loop's thread with `loop`, it answers a future of that loop: the
        futures of one commit are then resolved in one call into the loop, which wakes once per
        group rather than once per request."""
        prepared = self.log.prepare(messages, source)
        future: Future[list[bool]] | asyncio.Future[list[bool]] = loop.create_future() if loop else Future()
        with self._lock:
            if self._closed:
                raise StateError("ingest: the server is stopping and no longer stores messages")
            self._queue.put((prepared, future))
        return future

    def close(self) -> None:
        """Commits what was submitted, then ends the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is None:
                return
            group = [item]
            size = len(item[0].message_ids)
            deadline = time.monotonic() + self.max_wait_s
            while size < self.max_messages:
                wait = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                group.append(item)
                size += len(item[0].message_ids)
            self._commit(group)

    def _commit(self, group: list[tuple[Prepared, Future | asyncio.Future]]) -> None:
        try:
            flags = self.log.commit([prepared for prepared, _ in group])
        except BaseException as exc:  # every request of the group learns it; the thread goes on
            _resolve_all([(future, None, exc) for _, future in group])
            if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit
                raise
            return
        _resolve_all([(future, stored, None) for (_, future), stored in zip(group, flags)])


def _resolve_all(answers: list[tuple[Future | asyncio.Future, Any, BaseException | None]]) -> None:
    """Resolves futures from the committer's thread: an event loop's futures in one call into it."""
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for future, result, exc in answers:
        if isinstance(future, asyncio.Future):
            by_loop.setdefault(future.get_loop(), []).append((future, result, exc))
        else:
            _resolve(future, result, exc)
    for loop, loop_answers in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve_each, loop_answers)
        except RuntimeError:  # the loop is closed: no one waits for these
            pass


def _resolve_each(answers: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
    for answer in answers:
        _resolve(*answer)


def _resolve(future: Future | asyncio.Future, result: Any, exc: BaseException | None) -> None:
    # A request whose client went away may have cancelled its future: what it sent is stored all
    # the same (it was never acknowledged, and its resend is deduplicated).
    if future.done():
        return
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
    except (InvalidStateError, asyncio.InvalidStateError):  # cancelled in between, on another thread
        pass


def _event_row(msg: dict[str, Any], message_id: str, source: str | None, kind: str, user_id: str | None,
               anonymous_id: str | None, received_at: float) -> tuple:
    properties = msg.get("properties")
    if kind == "track":
        event = _text(msg.get("event"))
    elif kind in ("page", "screen"):
        event = _text(msg.get("name")) or (_text(properties.get("name")) if isinstance(properties, dict) else None)
    else:
        event = None
    timestamp = _seconds(msg.get("timestamp"))
    return (message_id, source, kind, event, user_id, anonymous_id, _text(msg.get("groupId")),
            _text(msg.get("previousId")), received_at if timestamp is None else timestamp, received_at,
            _json(properties), _json(msg.get("traits")), _json(msg.get("context")))


def _rows(values: Iterable[Any]) -> str:
    """One-column rows for Dialect.json_rows."""
    return orjson.dumps([[value] for value in values]).decode()


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return str(value)  # an id sent as a number is its text, as the mapping core reads it


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, default=str).decode()


def _seconds(value: Any) -> float | None:
    """Unix seconds of an ISO 8601 time (Segment's) or of a number of seconds; None when neither."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _example(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return text if len(text) <= EXAMPLE_MAX_CHARS else text[:EXAMPLE_MAX_CHARS - 1] + "…"


def minute_counts(store: StoreBase, now: float, minutes: int = 60) -> dict[str, Any]:
    """The ingest per whole UTC minute over the last `minutes`, oldest first, the minute of `now`
    last (so far): `accepted`, messages stored (a resend deduplicated is not counted again);
    `rejected`, reason -> messages refused by validation; and what the forwarders settled in each
    minute (ingest_forward_minutes): `forwarded` to Amplitude, `refused` by it for good, and the
    forwarded messages' lag in seconds, `lag_avg` and `lag_max` (None in a minute that forwarded
    nothing). `start` is the first minute's Unix time. For the status page.

    Read by index: stored messages on ingest_dedup's received_at index, settled ones by the
    minutes' primary key. The rejections have no index on received_at (none to maintain at every
    insert), but their ids follow received_at, give or take the seconds between servers: the
    window's first id is found by a binary search on the primary key, from a few minutes before
    it, and the rows from there on are read once."""
    end = (int(now // 60) + 1) * 60
    start = end - minutes * 60
    slack_s = 300  # ids out of received_at order by less than this are still counted
    bucket = ("floor((received_at - :start) / 60)" if store.dialect.name == "postgresql"
              else "CAST((received_at - :start) / 60 AS INTEGER)")
    window = {"start": float(start), "end": float(end)}

    def first_id(conn: sa.Connection, table: str) -> int | None:
        """The smallest id from which every row was received at start - slack_s or later."""
        lo, hi = conn.execute(sa.text(f"SELECT min(id), max(id) FROM {table}")).one()
        if hi is None:
            return None
        at = start - slack_s
        probe = sa.text(f"SELECT received_at FROM {table} WHERE id >= :id ORDER BY id LIMIT 1")
        if conn.execute(probe, {"id": hi}).scalar_one() < at:
            return None
        while lo < hi:
            mid = (lo + hi) // 2
            if conn.execute(probe, {"id": mid}).scalar_one() >= at:
                hi = mid
            else:
                lo = mid + 1
        return int(lo)

    def per_minute() -> list:
        return [0] * minutes

    accepted, forwarded, refused, rejected = per_minute(), per_minute(), per_minute(), {}
    lag_avg: list[float | None] = [None] * minutes
    lag_max: list[float | None] = [None] * minutes
    with store._conn(write=False) as conn:
        for m, n in conn.execute(sa.text(
                f"SELECT {bucket} AS m, count(*) FROM ingest_dedup WHERE received_at >= :start "
                "AND received_at < :end GROUP BY m"), window):
            accepted[int(m)] = int(n)
        for minute, sent, refusals, total_lag, worst_lag in conn.execute(sa.text(
                "SELECT minute, forwarded, refused, lag_sum, lag_max FROM ingest_forward_minutes "
                "WHERE minute >= :start AND minute < :end"), window):
            i = (int(minute) - start) // 60
            forwarded[i], refused[i] = int(sent), int(refusals)
            if sent:
                lag_avg[i], lag_max[i] = float(total_lag) / int(sent), float(worst_lag)
        if (first := first_id(conn, "ingest_rejections")) is not None:
            for m, reason, n in conn.execute(sa.text(
                    f"SELECT {bucket} AS m, reason, count(*) FROM ingest_rejections WHERE id >= :first "
                    "AND received_at >= :start AND received_at < :end GROUP BY m, reason"),
                    dict(window, first=first)):
                rejected.setdefault(str(reason), per_minute())[int(m)] += int(n)
    return {"start": float(start), "minutes": minutes, "accepted": accepted, "forwarded": forwarded,
            "refused": refused, "lag_avg": lag_avg, "lag_max": lag_max, "rejected": rejected}
