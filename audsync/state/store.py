"""The state store: audiences per destination, the synced members, the outbox, rejections, run
history and leases, on SQLite or PostgreSQL.

Heavy work is set-based SQL (see audsync.diff): the source is bulk-loaded into a temporary table
(SQLite executemany straight from the source's tuples; PostgreSQL COPY), folded into one row per
user, then diffed against the state by primary key. Python touches each source row once, on the
way in, and afterwards only the changes.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import diff
from ..errors import BusyError, StateError
from ..redact import redact
from .db import make_engine, transaction, translate_db_error


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"a value of type {type(value).__name__} cannot be sent to Amplitude")


def canonical_json(value: Any) -> str:
    """One text per value (sorted keys), so that equal values compare equal in SQL."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=_json_default).decode()


def _copy_text_of_user_ids(chunk: list[tuple]) -> str | None:
    """COPY's text format for a chunk whose rows hold a user id and nothing else (an audience's
    usual source), made in one join: written row by row, it held the GIL for 0.27 s per million
    rows, time the thread reading the source could not use. None when a row holds more, or an id
    holds a character the text format would need escaped (it then goes row by row)."""
    if not chunk:
        return None
    users, anons, _ = zip(*chunk)
    if anons.count(None) != len(anons) or None in users:
        return None
    try:
        text = "\n".join(users)
    except TypeError:  # an id that is not text: write_row adapts it
        return None
    if text.count("\n") != len(users) - 1 or "\\" in text or "\t" in text or "\r" in text:
        return None
    row_end = "\t\\N\t\\N\n"  # no anonymous id, no value
    return text.replace("\n", row_end) + row_end


@dataclass(frozen=True)
class LeaseInfo:
    name: str
    holder: str
    host: str
    pid: int
    acquired_at: float
    expires_at: float


class Fence(NamedTuple):
    """A run's lease, which its writes depend on: they commit only while `holder` still holds the
    lease `name` (it has not expired and nobody took it over). `what` names it to the user."""

    name: str
    holder: str
    what: str


@dataclass(frozen=True)
class AudienceRow:
    id: int
    destination: str
    key: str
    name: str
    kind: str
    first_synced_at: float | None


def _settle_postgresql_sql(*, entering_are_new: bool, by_spans: bool = False) -> str:
    """Settling acknowledged users on PostgreSQL: their outbox rows leave the outbox and set (a
    value) or end (none) the users' synced state; their rejections go. The users are the ids of
    the JSON array :ids, or (by_spans) every pending row of run :run in the key ranges of the
    JSON array :spans ([first, last] pairs); then the statement answers how many rows that was."""
    upsert = ("ON CONFLICT (audience_id, identity) DO UPDATE SET user_id = excluded.user_id, "
              "anonymous_id = excluded.anonymous_id, value = excluded.value")
    insert = ("INSERT INTO members (audience_id, identity, user_id, anonymous_id, value) "
              "SELECT :a, identity, user_id, anonymous_id, value FROM acked WHERE value IS NOT NULL")
    if entering_are_new:
        inserts = (f"entered AS ({insert} AND change = '{diff.ENTER}'), "
                   f"upserted AS ({insert} AND change <> '{diff.ENTER}' {upsert}), ")
    else:
        inserts = f"upserted AS ({insert} {upsert}), "
    returning = "RETURNING o.identity, o.user_id, o.anonymous_id, o.value, o.change"
    if by_spans:
        # A range scan per span: probing the index once per id cost twice as much.
        acked = (
            "WITH spans AS MATERIALIZED (SELECT x ->> 0 AS lo, x ->> 1 AS hi "
            "FROM json_array_elements(CAST(:spans AS json)) x), "
            "acked AS (DELETE FROM outbox o USING spans s WHERE o.audience_id = :a "
            'AND o.identity >= s.lo COLLATE "C" AND o.identity <= s.hi COLLATE "C" '
            f"AND o.run_id = :run AND o.status = 'pending' {returning}), ")
        ids = "SELECT identity FROM acked"
    else:
        acked = (
            "WITH ids AS MATERIALIZED (SELECT json_array_elements_text(CAST(:ids AS json)) AS id), "
            "acked AS (DELETE FROM outbox o WHERE o.audience_id = :a "
            f"AND o.identity = ANY(ARRAY(SELECT id FROM ids)) {returning}), ")
        ids = "SELECT id FROM ids"
    return (
        f"{acked}{inserts}"
        "gone AS (DELETE FROM members m WHERE m.audience_id = :a "
        "AND m.identity = ANY(ARRAY(SELECT identity FROM acked WHERE value IS NULL))), "
        f"unrejected AS (DELETE FROM rejections r WHERE r.audience_id = :a AND r.identity = ANY(ARRAY({ids}))) "
        "SELECT count(*) FROM acked"
    )


class _NotExactly(Exception):
    """Key ranges that did not hold exactly the acknowledged rows: rolled back, settled by id."""


class PendingRow(NamedTuple):
    # A tuple, not a dataclass: ten million of them are built on the delivery path. Its fields
    # are OperationBuilder.build's arguments, in that order (sync._deliver passes *row).
    identity: str
    user_id: str | None
    anonymous_id: str | None
    value: str | None  # canonical JSON; None: exit / $unset
    change: str
    run_id: int


@dataclass(frozen=True)
class CurrentCounts:
    """The source after folding duplicates: users kept, and rows skipped with a reason."""

    users: int
    duplicate_rows: int
    conflicting_rows: int
    conflicting_users: int


@dataclass(frozen=True)
class Rejected:
    identity: str
    api: str
    reason: str


_RUN_COUNTS = ("rows_read", "entered", "exited", "changed", "unset", "resent", "delivered", "rejected", "pending")


INTERRUPTED = ("ended without recording its end: its process was killed, or the state database "
               "refused the last write (a full disk?); what it left planned goes first in the next run")


class StateStore:
    """One state database. Thread-safe: every method takes its own pooled connection."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "StateStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StateStore({redact(self.url)!r})"

    @contextlib.contextmanager
    def _conn(self, *, write: bool = True) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                with transaction(conn, write=write):
                    yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise translate_db_error(exc, self.url) from None

    def check_schema(self) -> None:
        """Fail with a clear message when migrations were never applied."""
        from . import migrate

        if migrate.current(self.url) != migrate.head():
            raise StateError(f"state database {redact(self.url)} is not at the current schema; "
                             "run `audsync db upgrade`")

    # ---------------------------------------------------------------- leases (database clock)

    @property
    def _now(self) -> str:
        if self.dialect == "sqlite":
            return "((julianday('now') - 2440587.5) * 86400.0)"
        return "CAST(extract(epoch FROM clock_timestamp()) AS double precision)"

    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take the lease when nobody holds it, it expired, or `holder` already holds it."""
        sql = sa.text(
            "INSERT INTO leases (name, holder, host, pid, acquired_at, expires_at) "
            f"VALUES (:name, :holder, :host, :pid, {self._now}, {self._now} + :ttl) "
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, host = excluded.host, "
            "pid = excluded.pid, expires_at = excluded.expires_at, acquired_at = CASE "
            "WHEN leases.holder = excluded.holder THEN leases.acquired_at ELSE excluded.acquired_at END "
            "WHERE leases.expires_at < excluded.acquired_at OR leases.holder = excluded.holder "
            "RETURNING holder"
        )
        params = {"name": name, "holder": holder, "host": socket.gethostname(), "pid": os.getpid(),
                  "ttl": float(ttl_s)}
        with self._conn() as conn:
            return conn.execute(sql, params).first() is not None

    def renew_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Extend a lease `holder` still holds; False when it was lost (expired and taken)."""
        sql = sa.text(f"UPDATE leases SET expires_at = {self._now} + :ttl WHERE name = :name AND holder = :holder")
        with self._conn() as conn:
            return conn.execute(sql, {"name": name, "holder": holder, "ttl": float(ttl_s)}).rowcount == 1

    def release_lease(self, name: str, holder: str) -> None:
        with self._conn() as conn:
            conn.execute(sa.text("DELETE FROM leases WHERE name = :name AND holder = :holder"),
                         {"name": name, "holder": holder})

    def break_lease(self, name: str, holder: str) -> bool:
        """Expire `holder`'s lease now (its process is known to be dead); False when it moved on."""
        with self._conn() as conn:
            return conn.execute(sa.text(
                f"UPDATE leases SET expires_at = {self._now} - 1 WHERE name = :name AND holder = :holder"),
                {"name": name, "holder": holder}).rowcount == 1

    def hold_fence(self, conn: Connection, fence: Fence | None) -> None:
        """Refuses the transaction on `conn` unless `fence`'s holder still holds its lease: a run
        that was paused (or cut off) longer than its lease lasts must not overwrite what the run
        that took over wrote. Called last in the transaction: on PostgreSQL the lease row then
        stays share-locked only until the commit, which a takeover (an UPDATE of that row) has
        to wait for; a SQLite write transaction holds the database's write lock already.
        `fence` None: the caller serialises its writes some other way (tools, tests of the diff)."""
        if fence is None:
            return
        lock = " FOR SHARE" if self.dialect == "postgresql" else ""
        held = conn.execute(sa.text(
            f"SELECT expires_at > {self._now} FROM leases WHERE name = :name AND holder = :holder{lock}"),
            {"name": fence.name, "holder": fence.holder}).scalar()
        if not held:
            raise BusyError(
                f"{fence.what}: this run lost its lease (it was not renewed within daemon.lease_ttl_s, for "
                "instance while the process was paused, and another run may have taken over): it stopped "
                "without recording anything more; the next run delivers what it left pending")

    def clock(self) -> float:
        """The database's clock (Unix seconds), which every worker shares: lease expiry, run
        times and schedule slots are read on it, whatever the workers' own clocks say."""
        with self._conn(write=False) as conn:
            return float(conn.execute(sa.text(f"SELECT {self._now}")).scalar_one())

    def lease_info(self, name: str) -> LeaseInfo | None:
        with self._conn(write=False) as conn:
            row = conn.execute(sa.text(
                "SELECT name, holder, host, pid, acquired_at, expires_at FROM leases WHERE name = :name"),
                {"name": name}).first()
        return LeaseInfo(*row) if row else None

    # ---------------------------------------------------------------- audiences and runs

    def find_audience(self, destination: str, key: str) -> AudienceRow | None:
        with self._conn(write=False) as conn:
            row = conn.execute(sa.text(
                "SELECT id, destination, key, name, kind, first_synced_at FROM audiences "
                "WHERE destination = :d AND key = :k"), {"d": destination, "k": key}).first()
        return AudienceRow(*row) if row else None

    def ensure_audience(self, destination: str, key: str, name: str, kind: str) -> AudienceRow:
        with self._conn() as conn:
            conn.execute(sa.text(
                "INSERT INTO audiences (destination, key, name, kind, created_at) "
                "VALUES (:d, :k, :n, :kind, :now) ON CONFLICT (destination, key) DO UPDATE "
                "SET name = excluded.name, kind = excluded.kind"),
                {"d": destination, "k": key, "n": name, "kind": kind, "now": time.time()})
        found = self.find_audience(destination, key)
        assert found is not None
        return found

    def start_run(self, audience_id: int, mode: str) -> int:
        """A new run row; runs still marked running for this audience died (we hold its lease)."""
        with self._conn() as conn:
            conn.execute(sa.text("UPDATE runs SET status = 'interrupted', error = COALESCE(error, :why) "
                                 "WHERE audience_id = :a AND status = 'running'"),
                         {"a": audience_id, "why": INTERRUPTED})
            row = conn.execute(sa.text(
                "INSERT INTO runs (audience_id, mode, status, started_at, rows_read, skipped, entered, exited, "
                "changed, unset, resent, delivered, rejected, pending) "
                f"VALUES (:a, :mode, 'running', {self._now}, 0, '{{}}', 0, 0, 0, 0, 0, 0, 0, 0) RETURNING id"),
                {"a": audience_id, "mode": mode}).first()
        assert row is not None
        return int(row[0])

    def finish_run(self, run_id: int, status: str, *, skipped: dict[str, int] | None = None,
                   error: str | None = None, **counts: int) -> None:
        unknown = set(counts) - set(_RUN_COUNTS)
        assert not unknown, unknown
        sets = ", ".join(f"{name} = :{name}" for name in counts)
        params: dict[str, Any] = dict(counts, id=run_id, status=status,
                                      skipped=canonical_json(dict(skipped or {})),
                                      error=redact(error) if error else error)
        with self._conn() as conn:
            conn.execute(sa.text(
                f"UPDATE runs SET status = :status, finished_at = {self._now}, skipped = :skipped, error = :error"
                f"{', ' + sets if sets else ''} WHERE id = :id"), params)

    def record_counts(self, run_id: int, **counts: int) -> None:
        """The counts a run has reached (its plan): what status shows if it never records its end."""
        assert set(counts) <= set(_RUN_COUNTS), counts
        sets = ", ".join(f"{name} = :{name}" for name in counts)
        with self._conn() as conn:
            conn.execute(sa.text(f"UPDATE runs SET {sets} WHERE id = :id"), dict(counts, id=run_id))

    def last_runs(self, audience_id: int, limit: int = 5) -> list[dict[str, Any]]:
        with self._conn(write=False) as conn:
            rows = conn.execute(sa.text(
                "SELECT id, mode, status, started_at, finished_at, skipped, error, "
                + ", ".join(_RUN_COUNTS) +
                " FROM runs WHERE audience_id = :a ORDER BY started_at DESC, id DESC LIMIT :n"),
                {"a": audience_id, "n": limit}).mappings().all()
        result = []
        for row in rows:
            entry = dict(row)
            entry["skipped"] = orjson.loads(entry["skipped"] or "{}")
            result.append(entry)
        return result

    # ---------------------------------------------------------------- the outbox

    def pending_count(self, audience_id: int) -> int:
        with self._conn(write=False) as conn:
            return int(conn.execute(sa.text(
                "SELECT count(*) FROM outbox WHERE audience_id = :a AND status = 'pending'"),
                {"a": audience_id}).scalar_one())

    def pending_run_ids(self, audience_id: int) -> list[int]:
        with self._conn(write=False) as conn:
            return [int(r) for r in conn.execute(sa.text(
                "SELECT DISTINCT run_id FROM outbox WHERE audience_id = :a AND status = 'pending' ORDER BY run_id"),
                {"a": audience_id}).scalars()]

    def pending_pages(self, audience_id: int, *, run_id: int | None = None, before_run: int | None = None,
                      page_rows: int = 5000) -> Iterator[list[Sequence]]:
        """Pending outbox rows in pages, walking the primary key (keyset pagination), each page
        read in its own short transaction so outcomes can be committed between pages. A row is a
        tuple or list in PendingRow's field order (PendingRows cost as much as reading the rows,
        under the GIL that the delivery loop needs).

        SQLite hands each page over as one JSON text, parsed by orjson: row by row, its reader
        took the GIL back after every row (it releases it around each step) and built six
        objects under it, which slowed the delivery loop more than anything else on this path.
        psycopg builds a page's rows without letting go of the GIL, and PostgreSQL builds JSON
        slowly (2M rows: 6.0 s against 2.3 s), so PostgreSQL's pages stay rows."""
        cond = ""
        params: dict[str, Any] = {"a": audience_id, "n": page_rows}
        if run_id is not None:
            cond += " AND run_id = :run"
            params["run"] = run_id
        if before_run is not None:
            cond += " AND run_id < :before"
            params["before"] = before_run
        columns = "identity, user_id, anonymous_id, value, change, run_id"
        page = (f"SELECT {columns} FROM outbox WHERE audience_id = :a AND status = 'pending'{cond} "
                "AND identity > :after ORDER BY identity LIMIT :n")
        as_json = self.dialect == "sqlite"
        # The keyset's next start comes apart: it must not rely on the aggregate's order.
        sql = sa.text(f"SELECT json_group_array(json_array({columns})), max(identity) FROM ({page})"
                      if as_json else page)
        # Compiled once and run on the driver's cursor: SQLAlchemy's row processing cost as much
        # as everything else on this path at ten million rows.
        compiled = sql.compile(dialect=self.engine.dialect)
        positional = self.engine.dialect.positional
        after = ""
        while True:
            values = dict(params, after=after)
            args: Any = (tuple(values[name] for name in compiled.positiontup) if positional
                         else compiled.construct_params(values))
            with self._conn(write=False) as conn:
                cursor = conn.connection.driver_connection.cursor()
                try:
                    cursor.execute(str(compiled), args)
                    if as_json:
                        text, last = cursor.fetchone()
                        rows = orjson.loads(text)
                    else:
                        rows = cursor.fetchall()
                        last = rows[-1][0] if rows else None
                except self.engine.dialect.dbapi.Error as exc:
                    raise translate_db_error(exc, self.url) from None
                finally:
                    cursor.close()
            if not rows:
                return
            yield rows
            if len(rows) < page_rows:
                return
            after = last

    @staticmethod
    def _sqlite_in_ids(column: str) -> str:
        """`column` among the ids bound to :ids as one JSON array."""
        return f"{column} IN (SELECT value FROM json_each(:ids))"

    def has_rejections(self, audience_id: int) -> bool:
        with self._conn(write=False) as conn:
            return conn.execute(sa.text("SELECT 1 FROM rejections WHERE audience_id = :a LIMIT 1"),
                                {"a": audience_id}).first() is not None

    def settle(self, audience_id: int, run_id: int, delivered: Sequence[str], rejected: Sequence[Rejected], *,
               spans: Sequence[tuple[str, str]] = (), spanned: Sequence[str] = (),
               gone: bool = True, rejections: bool = True, fence: Fence | None = None) -> None:
        """Record Amplitude's answers in one transaction: acknowledged users advance their synced
        state and leave the outbox; rejected ones are recorded with the reason and their outbox
        row is closed as "rejected" (it stays the planned state, see audsync.diff).

        Acknowledged users are `delivered`, and `spanned`: those the caller knows to be exactly
        the pending rows of run `run_id` in the key ranges `spans` (first, last). Those are
        settled by range, cheaper than an index probe per user (PostgreSQL a third, 1M: 3.4 s
        against 5.2 s; SQLite half, 1M: 2.2-2.5 s of CPU against 4.8 s); when the ranges do not
        hold exactly as many rows, the ids are used instead.

        The caller may promise that no delivered user is leaving (an exit or $unset: `gone=False`)
        and that none has an earlier rejection (`rejections=False`); SQLite then skips the
        statements that would find nothing, two fifths of a first sync's settling.

        With a `fence`, nothing is recorded unless its holder still holds the lease (hold_fence)."""
        if not delivered and not rejected and not spanned:
            return
        with self._conn() as conn:
            if self.dialect == "postgresql":
                # Losing the last acknowledgements in an OS crash only means resending absolute
                # operations: not worth waiting for a WAL flush at every batch.
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            if spanned and not self._settle_spans(conn, audience_id, run_id, spans, len(spanned), gone,
                                                  rejections):
                delivered = [*delivered, *spanned]
            if delivered and self.dialect == "postgresql":
                self._settle_delivered_postgresql(conn, audience_id, delivered)
            elif delivered:
                in_ids, plain_in = self._sqlite_in_ids("o.identity"), self._sqlite_in_ids("identity")
                params = {"a": audience_id, "ids": orjson.dumps(list(delivered)).decode()}
                conn.execute(sa.text(
                    "INSERT INTO members (audience_id, identity, user_id, anonymous_id, value) "
                    "SELECT o.audience_id, o.identity, o.user_id, o.anonymous_id, o.value FROM outbox o "
                    f"WHERE o.audience_id = :a AND {in_ids} AND o.value IS NOT NULL "
                    "ON CONFLICT (audience_id, identity) DO UPDATE SET user_id = excluded.user_id, "
                    "anonymous_id = excluded.anonymous_id, value = excluded.value"), params)
                if gone:
                    conn.execute(sa.text(
                        "DELETE FROM members WHERE audience_id = :a AND identity IN (SELECT o.identity "
                        f"FROM outbox o WHERE o.audience_id = :a AND {in_ids} AND o.value IS NULL)"), params)
                if rejections:
                    conn.execute(sa.text(f"DELETE FROM rejections WHERE audience_id = :a AND {plain_in}"), params)
                conn.execute(sa.text(f"DELETE FROM outbox WHERE audience_id = :a AND {plain_in}"), params)
            if rejected:
                now = time.time()
                params_list = [{"a": audience_id, "i": r.identity, "api": r.api, "reason": r.reason[:2000],
                                "run": run_id, "now": now} for r in rejected]
                conn.execute(sa.text(
                    "INSERT INTO rejections (audience_id, identity, user_id, anonymous_id, value, change, api, "
                    "reason, run_id, rejected_at) SELECT o.audience_id, o.identity, o.user_id, o.anonymous_id, "
                    "o.value, o.change, :api, :reason, :run, :now FROM outbox o "
                    "WHERE o.audience_id = :a AND o.identity = :i "
                    "ON CONFLICT (audience_id, identity) DO UPDATE SET user_id = excluded.user_id, "
                    "anonymous_id = excluded.anonymous_id, value = excluded.value, change = excluded.change, "
                    "api = excluded.api, reason = excluded.reason, run_id = excluded.run_id, "
                    "rejected_at = excluded.rejected_at"), params_list)
                conn.execute(sa.text(
                    "UPDATE outbox SET status = 'rejected' WHERE audience_id = :a AND identity = :i"), params_list)
            self.hold_fence(conn, fence)

    def _settle_delivered_postgresql(self, conn: Connection, audience_id: int, delivered: Sequence[str]) -> None:
        # One round trip: the acknowledged outbox rows are deleted and returned, and feed the
        # members insert (a value) or delete (an exit or $unset). Each id is an index probe.
        # The ids travel as one JSON text: psycopg's text[] adapter spent 1.2 s of Python, under
        # the GIL the delivery loop needs, per million acknowledgements; orjson 0.1 s.
        self._settle_postgresql(conn, {"a": audience_id, "ids": orjson.dumps(list(delivered)).decode()},
                                by_spans=False)

    def _settle_postgresql(self, conn: Connection, params: dict[str, Any], *, by_spans: bool) -> int:
        # The planner, misjudging a fresh outbox, otherwise chose sequential scans of the whole
        # outbox per batch (0.4 s per 20,000 acknowledgements at 1M pending instead of 0.13 s).
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        conn.exec_driver_sql("SET LOCAL enable_hashjoin = off")
        conn.exec_driver_sql("SET LOCAL enable_mergejoin = off")
        # Not knowing how many rows a span holds, the planner's estimate passes jit_above_cost,
        # and compiling the statement took 0.3 s per batch, many times its work.
        conn.exec_driver_sql("SET LOCAL jit = off")
        # An entering user is almost never a member yet, and a plain insert costs PostgreSQL a
        # third less than an upsert's speculative insertion (2 us of 6 per user, a first sync's
        # every user). The exception, a user back before their exit was acknowledged, makes
        # the insert fail; then the batch is settled again with upserts only.
        try:
            with conn.begin_nested():
                return int(conn.execute(sa.text(_settle_postgresql_sql(
                    entering_are_new=True, by_spans=by_spans)), params).scalar_one())
        except sa.exc.IntegrityError as exc:
            if getattr(exc.orig, "sqlstate", None) != "23505":  # not a unique violation
                raise
            return int(conn.execute(sa.text(_settle_postgresql_sql(
                entering_are_new=False, by_spans=by_spans)), params).scalar_one())

    def _settle_spans(self, conn: Connection, audience_id: int, run_id: int, spans: Sequence[tuple[str, str]],
                      expected: int, gone: bool, rejections: bool) -> bool:
        """Settle the pending rows of run `run_id` in the key ranges `spans` (first, last), when
        they are `expected` rows; else change nothing and answer False."""
        try:
            with conn.begin_nested():
                if self.dialect == "postgresql":
                    params = {"a": audience_id, "run": run_id, "spans": orjson.dumps(list(spans)).decode()}
                    settled = self._settle_postgresql(conn, params, by_spans=True)
                else:
                    settled = self._settle_spans_sqlite(conn, audience_id, run_id, spans, gone, rejections)
                if settled != expected:
                    raise _NotExactly()
        except _NotExactly:
            return False
        return True

    @staticmethod
    def _settle_spans_sqlite(conn: Connection, audience_id: int, run_id: int, spans: Sequence[tuple[str, str]],
                             gone: bool, rejections: bool) -> int:
        # A range scan per span and statement, each statement run once for all the spans.
        params = [{"a": audience_id, "run": run_id, "lo": lo, "hi": hi} for lo, hi in spans]
        rows = ("FROM outbox o WHERE o.audience_id = :a AND o.identity >= :lo AND o.identity <= :hi "
                "AND o.run_id = :run AND o.status = 'pending'")
        conn.execute(sa.text(
            "INSERT INTO members (audience_id, identity, user_id, anonymous_id, value) "
            f"SELECT o.audience_id, o.identity, o.user_id, o.anonymous_id, o.value {rows} AND o.value IS NOT NULL "
            "ON CONFLICT (audience_id, identity) DO UPDATE SET user_id = excluded.user_id, "
            "anonymous_id = excluded.anonymous_id, value = excluded.value"), params)
        if gone:
            conn.execute(sa.text("DELETE FROM members WHERE audience_id = :a AND identity IN "
                                 f"(SELECT o.identity {rows} AND o.value IS NULL)"), params)
        if rejections:
            conn.execute(sa.text(f"DELETE FROM rejections WHERE audience_id = :a AND identity IN "
                                 f"(SELECT o.identity {rows})"), params)
        return conn.execute(sa.text(
            "DELETE FROM outbox WHERE audience_id = :a AND identity >= :lo AND identity <= :hi "
            "AND run_id = :run AND status = 'pending'"), params).rowcount

    # ---------------------------------------------------------------- status

    def audience_counts(self, audience_id: int) -> dict[str, int]:
        with self._conn(write=False) as conn:
            members = conn.execute(sa.text("SELECT count(*) FROM members WHERE audience_id = :a"),
                                   {"a": audience_id}).scalar_one()
            by_status = dict(conn.execute(sa.text(
                "SELECT status, count(*) FROM outbox WHERE audience_id = :a GROUP BY status"),
                {"a": audience_id}).all())
        return {"members": int(members), "pending": int(by_status.get("pending", 0)),
                "rejected": int(by_status.get("rejected", 0))}

    def top_rejection_reasons(self, audience_id: int, limit: int = 5) -> list[tuple[str, int]]:
        with self._conn(write=False) as conn:
            rows = conn.execute(sa.text(
                "SELECT reason, count(*) AS n FROM rejections WHERE audience_id = :a "
                "GROUP BY reason ORDER BY n DESC, reason LIMIT :n"), {"a": audience_id, "n": limit}).all()
        return [(str(reason), int(n)) for reason, n in rows]

    def rejections(self, audience_id: int, limit: int = 100) -> list[dict[str, Any]]:
        with self._conn(write=False) as conn:
            return [dict(r) for r in conn.execute(sa.text(
                "SELECT identity, user_id, anonymous_id, value, change, api, reason, run_id, rejected_at "
                "FROM rejections WHERE audience_id = :a ORDER BY rejected_at DESC, identity LIMIT :n"),
                {"a": audience_id, "n": limit}).mappings()]

    def members(self, audience_id: int) -> dict[str, tuple[str | None, str | None, str]]:
        """Every synced member (identity -> user_id, anonymous_id, value): for tests and tools on
        small audiences only."""
        with self._conn(write=False) as conn:
            return {r[0]: (r[1], r[2], r[3]) for r in conn.execute(sa.text(
                "SELECT identity, user_id, anonymous_id, value FROM members WHERE audience_id = :a"),
                {"a": audience_id})}

    # ---------------------------------------------------------------- one audience's diff

    @contextlib.contextmanager
    def work(self, audience_id: int | None) -> Iterator["AudienceWork"]:
        """A connection holding this run's temporary tables (gone with the session, so a crash
        leaves no staging garbage behind).

        The connection is closed afterwards instead of going back to the pool: the temporary
        tables go with it. Dropping them first walked every page of them (SQLite: 2.5 s at ten
        million rows, between the plan and its delivery); closing discards them whole."""
        try:
            with self.engine.connect() as conn:
                work = AudienceWork(self, conn, audience_id)
                try:
                    yield work
                finally:
                    conn.invalidate()
        except sa.exc.SQLAlchemyError as exc:
            raise translate_db_error(exc, self.url) from None


Guard = Callable[[Counter[str], Callable[..., int]], None]


class AudienceWork:
    """Load the source, fold it, diff it and write the plan, on one connection."""

    def __init__(self, store: StateStore, conn: Connection, audience_id: int | None):
        self.store = store
        self.conn = conn
        self.dialect = store.dialect
        # None: the audience has no state yet (a dry run never creates it); -1 matches nothing.
        self.aid = audience_id if audience_id is not None else -1
        self.loaded = 0
        self.has_conflicts = False
        # No members and no outbox rows: everyone enters (PostgreSQL writes `cur` in key order then)
        self.fresh = False
        self._counts: CurrentCounts | None = None

    def load(self, chunks: Iterable[list[tuple]], *, computed: bool,
             should_stop: Callable[[], bool] = lambda: False,
             on_rows: Callable[[int], None] = lambda n: None) -> int:
        """Stage every (user_id, anonymous_id, value) row; values as canonical JSON text."""
        with transaction(self.conn, write=False):
            try:
                if self.dialect == "sqlite":
                    self._load_sqlite(chunks, computed, should_stop, on_rows)
                else:
                    self._load_postgresql(chunks, computed, should_stop, on_rows)
            except self.conn.dialect.loaded_dbapi.Error as exc:
                # Written through the driver's own cursor, so SQLAlchemy does not wrap what the
                # database refuses (PostgreSQL: the server going away mid-COPY).
                raise translate_db_error(exc, self.store.url) from None
        return self.loaded

    def _load_sqlite(self, chunks, computed, should_stop, on_rows) -> None:  # noqa: ANN001
        # One JSON document per chunk, unpacked by json_each inside SQLite: binding three
        # parameters per row through executemany costs twice as much at ten million rows.
        self.conn.exec_driver_sql(
            "CREATE TEMP TABLE stage (identity TEXT, user_id TEXT, anonymous_id TEXT, value TEXT)")
        raw = self.conn.connection.driver_connection
        cursor = raw.cursor()
        has_arrow = _sqlite_version() >= (3, 38, 0)
        only_users = ("INSERT INTO stage (identity, user_id) SELECT 'u' || value, value FROM json_each(?)")
        full = (f"INSERT INTO stage SELECT {diff.identity_sql('(value ->> 0)', '(value ->> 1)')}, "
                f"value ->> 0, value ->> 1, {'value -> 2' if computed else 'NULL'} FROM json_each(?)")
        for chunk in chunks:
            if not has_arrow:
                cursor.executemany(
                    f"INSERT INTO stage VALUES ({diff.identity_sql('?1', '?2')}, ?1, ?2, ?3)",
                    [(u, a, canonical_json(v)) for u, a, v in chunk] if computed else chunk)
            elif not computed and all(row[1] is None for row in chunk):
                cursor.execute(only_users, (orjson.dumps([row[0] for row in chunk]).decode(),))
            else:
                # SQLite renders the value (`-> 2`) from orjson's sorted-keys text: canonical.
                text = orjson.dumps(chunk, option=orjson.OPT_SORT_KEYS, default=_json_default).decode()
                cursor.execute(full, (text,))
            self.loaded += len(chunk)
            on_rows(len(chunk))
            if should_stop():
                break
        cursor.close()

    def _load_postgresql(self, chunks, computed, should_stop, on_rows) -> None:  # noqa: ANN001
        self.conn.exec_driver_sql(
            'CREATE TEMP TABLE stage_rows (user_id text COLLATE "C", anonymous_id text COLLATE "C", value text)')
        # The identity is computed where it is read: a stored (generated) column made COPY slower
        # by more than its reads cost.
        self.conn.exec_driver_sql(
            f"CREATE TEMP VIEW stage AS SELECT {diff.identity_sql()} AS identity, user_id, anonymous_id, value "
            "FROM stage_rows")
        raw = self.conn.connection.driver_connection
        with raw.cursor() as cursor:
            with cursor.copy("COPY stage_rows (user_id, anonymous_id, value) FROM STDIN") as copy:
                for chunk in chunks:
                    if computed:
                        for u, a, v in chunk:
                            copy.write_row((u, a, canonical_json(v)))
                    elif (text := _copy_text_of_user_ids(chunk)) is not None:
                        copy.write(text)
                    else:
                        for row in chunk:
                            copy.write_row(row)
                    self.loaded += len(chunk)
                    on_rows(len(chunk))
                    if should_stop():
                        break

    def build_current(self, *, computed: bool) -> None:
        """Index the staged rows by identity (`cur`: one row per identity) and count duplicates
        and conflicting values (see counts())."""
        with transaction(self.conn, write=False):
            if self.dialect == "sqlite":
                # Index after loading: building it once is far faster than keeping it sorted
                # while inserting; it covers every column, so the diff never reads the table.
                self.conn.exec_driver_sql("PRAGMA threads = 2")
                self.conn.exec_driver_sql(
                    "CREATE INDEX temp.stage_identity ON stage (identity, value, user_id, anonymous_id)")
                self.conn.exec_driver_sql(f"CREATE TEMP VIEW cur AS {diff.current_view_sql('sqlite')}")
                self.conn.exec_driver_sql(
                    "CREATE TEMP TABLE conflicts (identity TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID")
                self.fresh = not self._has_rows("members") and not self._has_rows("outbox")
                if not computed:
                    # As on PostgreSQL, an audience's count of users comes with the plan: counting
                    # them here was a pass over the whole index (2M users: 0.5 s).
                    return
                users = self.conn.exec_driver_sql(
                    "SELECT count(*) FROM (SELECT 1 FROM stage GROUP BY identity)").scalar_one()
                self.conn.exec_driver_sql(
                    "INSERT INTO conflicts SELECT identity, count(*) FROM stage GROUP BY identity "
                    "HAVING min(value) IS NOT max(value)")
                conflict_users, conflict_rows = self.conn.exec_driver_sql(
                    "SELECT count(*), coalesce(sum(n), 0) FROM conflicts").one()
            else:
                self.conn.exec_driver_sql(
                    'CREATE TEMP TABLE conflicts (identity text COLLATE "C" PRIMARY KEY, n integer NOT NULL)')
                self.conn.exec_driver_sql("ANALYZE stage_rows")  # what the planner needs for the joins
                self.fresh = not self._has_rows("members") and not self._has_rows("outbox")
                fold = diff.current_view_sql("postgresql")
                if self.fresh:
                    # Nothing to diff against (a first sync): every user is planned, so the fold
                    # is written once, sorted, and the plan inserts it in that order with no sort
                    # of its own (10M on a slow day: 72-91 s instead of 99 s folding inside the plan).
                    self.conn.exec_driver_sql("SET LOCAL enable_hashagg = off")
                    users = self.conn.exec_driver_sql(
                        f"CREATE TEMP TABLE cur_rows AS {fold} ORDER BY identity").rowcount
                    self.conn.exec_driver_sql("CREATE TEMP VIEW cur AS SELECT * FROM cur_rows")
                else:
                    # No table for `cur`: writing 10M folded rows cost as much as the diff, which
                    # folds only the staged users that changed (diff.staged_and_gone_sql).
                    self.conn.exec_driver_sql(f"CREATE TEMP VIEW cur AS {fold}")
                if computed:
                    users, conflict_users, conflict_rows = self.conn.exec_driver_sql(
                        "SELECT count(*), count(*) FILTER (WHERE conflict = 1), "
                        "coalesce(sum(n) FILTER (WHERE conflict = 1), 0) FROM cur").one()
                    if conflict_users:  # a second pass only when there are conflicts to list
                        self.conn.exec_driver_sql(
                            "INSERT INTO conflicts SELECT identity, n FROM cur WHERE conflict = 1")
                elif self.fresh:
                    conflict_users = conflict_rows = 0
                else:
                    # An audience has no conflicts, and its count of users comes with the plan
                    # (plan() or preview()); counting them here took a third of an incremental sync.
                    return
            self.has_conflicts = bool(conflict_users)
        self._set_counts(int(users), int(conflict_users), int(conflict_rows))

    def _set_counts(self, users: int, conflict_users: int = 0, conflict_rows: int = 0) -> None:
        duplicates = self.loaded - users - conflict_rows + conflict_users
        self._counts = CurrentCounts(users=users - conflict_users, duplicate_rows=duplicates,
                                     conflicting_rows=conflict_rows, conflicting_users=conflict_users)

    def counts(self) -> CurrentCounts:
        """The source's users after folding duplicates, and the rows skipped: known after
        build_current(), or for a PostgreSQL audience after plan() or preview(); counted here when
        neither gave them (a run stopped before planning, or a plan that had open outbox rows)."""
        if self._counts is None:
            with transaction(self.conn, write=False):
                users = self.conn.exec_driver_sql(
                    "SELECT count(*) FROM (SELECT 1 FROM stage GROUP BY identity) g").scalar_one()
            self._set_counts(int(users))
        assert self._counts is not None
        return self._counts

    def _count_from_plan(self, kind: str, planned: Counter[str], members_before: int) -> None:
        """Users in the source, from one full join's plan (no open outbox rows, no conflicts):
        the members still current plus those who entered."""
        self._set_counts(members_before - planned.get(diff.gone_change(kind), 0) + planned.get(diff.ENTER, 0))

    def _members_before_plan(self, with_outbox: bool) -> int | None:
        """The members before the plan, when the plan is the one full join that counts the users
        (see counts()): their count is still open and no outbox rows are."""
        if self._counts is not None or with_outbox:
            return None
        return self._members()

    def _members(self, limit: int | None = None) -> int:
        """The synced members, counted up to `limit` when one is given."""
        if limit is None:
            return int(self.conn.execute(sa.text("SELECT count(*) FROM members WHERE audience_id = :aid"),
                                         {"aid": self.aid}).scalar_one())
        return int(self.conn.execute(sa.text(
            "SELECT count(*) FROM (SELECT 1 FROM members WHERE audience_id = :aid LIMIT :limit) m"),
            {"aid": self.aid, "limit": limit}).scalar_one())

    def _has_rows(self, table: str) -> bool:
        return self.conn.execute(sa.text(f"SELECT 1 FROM {table} WHERE audience_id = :aid LIMIT 1"),
                                 {"aid": self.aid}).first() is not None

    def _everyone_enters(self, with_outbox: bool) -> bool:
        """A first sync: no members and no plan, so the diff is `cur` itself."""
        return self.fresh and not with_outbox

    def _change_selects(self, kind: str, backfill: bool, with_outbox: bool) -> list[str]:
        if self._everyone_enters(with_outbox):
            return [diff.all_entered_sql()]
        if self.dialect == "postgresql" and not with_outbox:
            return [diff.staged_and_gone_sql(kind, backfill=backfill, skip_conflicts=self.has_conflicts)]
        selects = [diff.staged_changes_sql(self.dialect, with_outbox=with_outbox, backfill=backfill,
                                           skip_conflicts=self.has_conflicts),
                   diff.gone_members_sql(kind, with_outbox=with_outbox)]
        if with_outbox:
            selects.append(diff.gone_planned_sql(kind))
        return selects

    def _refresh_statistics(self) -> None:
        """PostgreSQL: the planner must know how many members and open outbox rows there are. Right
        after a large sync autovacuum has not caught up, and stale counts (thousands instead of
        ten million) made it diff by nested loops: 35 s instead of 10 s at 10M members. A short
        transaction of its own, so the lock ANALYZE takes is not held through the plan."""
        if self.dialect == "postgresql":
            with transaction(self.conn, write=False):
                self.conn.exec_driver_sql("ANALYZE members, outbox")

    def plan(self, run_id: int, kind: str, *, backfill: bool = False, guard: Guard | None = None,
             fence: Fence | None = None) -> Counter[str]:
        """Write this run's plan into the outbox, in one transaction (a crash leaves all or none),
        committed only while `fence`'s holder holds the lease (StateStore.hold_fence).

        `guard(counts, members)` sees the plan's counts before they are committed (`members(limit)`
        counts the synced members, up to limit); what it raises rolls the whole plan back."""
        self._refresh_statistics()
        with transaction(self.conn, write=True):
            with_outbox = self._has_rows("outbox")
            members_before = self._members_before_plan(with_outbox)
            params = {"aid": self.aid, "run_id": run_id}
            postgresql = self.dialect == "postgresql"
            counts: Counter[str] = Counter()
            everyone_enters = self._everyone_enters(with_outbox)
            for select in self._change_selects(kind, backfill, with_outbox):
                # On PostgreSQL the statement counts what it writes (reading 10M planned rows back
                # took seconds). Where everyone enters, its row count is the count, on both
                # dialects: RETURNING every row into a count cost PostgreSQL 0.8-1.1 s more per 3M
                # rows, and SQLite's count by change read the whole plan back.
                counted = postgresql and not everyone_enters
                result = self.conn.execute(sa.text(diff.plan_sql(
                    select, upsert=with_outbox, ordered=postgresql and not self.fresh, counted=counted)), params)
                if counted:
                    counts.update({str(change): int(n) for change, n in result})
                elif everyone_enters and result.rowcount:
                    counts[diff.ENTER] += int(result.rowcount)
            if not postgresql and not everyone_enters:  # SQLite has no INSERT inside WITH
                counts = Counter({str(change): int(n) for change, n in self.conn.execute(sa.text(
                    "SELECT change, count(*) FROM outbox WHERE audience_id = :aid AND run_id = :run_id "
                    "AND status = 'pending' GROUP BY change"), params)})
            if guard is not None:
                guard(counts, self._members if members_before is None else lambda limit=None: members_before)
            if members_before is not None:
                self._count_from_plan(kind, counts, members_before)
            if postgresql and sum(counts.values()) >= 10_000:
                # Without fresh statistics the planner reads each page of the plan by scanning
                # the whole outbox (18 s instead of 1.6 s to page through 1M rows).
                self.conn.exec_driver_sql("ANALYZE outbox")
            self.conn.execute(sa.text(
                "UPDATE audiences SET first_synced_at = :now WHERE id = :aid AND first_synced_at IS NULL"),
                {"aid": self.aid, "now": time.time()})
            self.store.hold_fence(self.conn, fence)
        return counts

    def preview(self, kind: str, *, backfill: bool = False, sample: int = 10,
                guard: Guard | None = None) -> tuple[Counter[str], list[PendingRow]]:
        """What plan() would write, without writing it (dry run); `guard` as in plan()."""
        self._refresh_statistics()
        with transaction(self.conn, write=False):
            with_outbox = self._has_rows("outbox")
            members_before = self._members_before_plan(with_outbox)
            union = " UNION ALL ".join(self._change_selects(kind, backfill, with_outbox))
            params = {"aid": self.aid}
            counts = Counter({str(change): int(n) for change, n in self.conn.execute(sa.text(
                f"SELECT d.change, count(*) FROM ({union}) d GROUP BY d.change"), params)})
            if guard is not None:
                guard(counts, self._members if members_before is None else lambda limit=None: members_before)
            if members_before is not None:
                self._count_from_plan(kind, counts, members_before)
            rows = self.conn.execute(sa.text(
                f"SELECT d.identity, d.user_id, d.anonymous_id, d.value, d.change FROM ({union}) d "
                "ORDER BY d.identity LIMIT :n"), dict(params, n=sample)).all()
        return counts, [PendingRow(*row, run_id=0) for row in rows]

    def record_as_synced(self, *, fence: Fence | None = None) -> int:
        """--skip-backfill: the current members become the synced state without being sent (while
        `fence`'s holder holds the lease)."""
        with transaction(self.conn, write=True):
            n = self.conn.execute(sa.text(
                "INSERT INTO members (audience_id, identity, user_id, anonymous_id, value) "
                "SELECT :aid, identity, user_id, anonymous_id, value FROM cur WHERE conflict = 0 "
                "ORDER BY identity"),  # key order: far faster into the B-tree (see diff.plan_sql)
                {"aid": self.aid}).rowcount
            self.conn.execute(sa.text(
                "UPDATE audiences SET first_synced_at = :now WHERE id = :aid AND first_synced_at IS NULL"),
                {"aid": self.aid, "now": time.time()})
            self.store.hold_fence(self.conn, fence)
        return int(n)


class LeaseKeeper:
    """Holds a lease for the duration of a `with` block, renewing it from a background thread.

    `lost` is set when a renewal finds the lease gone (it expired and someone else took it): the
    holder must then stop taking new work.
    """

    def __init__(self, store: StateStore, name: str, ttl_s: float, *, wait_s: float = 0.0,
                 what: str | None = None, poll_s: float = 0.5):
        self.store = store
        self.name = name
        self.ttl_s = ttl_s
        self.wait_s = wait_s
        self.what = what or name
        self.poll_s = poll_s
        # A PID names a process only within its PID namespace: containers sharing a hostname
        # each have their own PID 1. The holder says which namespace its PID belongs to.
        self.pid_namespace = _pid_namespace()
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{self.pid_namespace}:{os.urandom(4).hex()}"
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "LeaseKeeper":
        deadline = time.monotonic() + self.wait_s
        while not self.store.acquire_lease(self.name, self.holder, self.ttl_s):
            if self._break_if_holder_died():
                continue
            if time.monotonic() >= deadline:
                raise BusyError(self._busy_message())
            time.sleep(min(self.poll_s, max(0.0, deadline - time.monotonic())))
        self._thread = threading.Thread(target=self._renew, name=f"lease {self.name}", daemon=True)
        self._thread.start()
        return self

    @property
    def fence(self) -> Fence:
        return Fence(self.name, self.holder, self.what)

    def _break_if_holder_died(self) -> bool:
        """A run killed on this host (SIGKILL, OOM, power cut of a container) cannot release its
        lease; waiting out its TTL would block the rerun that must deliver what it left pending.
        Only a holder on this host and in this PID namespace can be checked: others (another
        machine, another container with the same hostname) keep their lease until it expires."""
        info = self.store.lease_info(self.name)
        here = f"{socket.gethostname()}:{info.pid}:{self.pid_namespace}:" if info else ""
        if (info is None or not self.pid_namespace or not info.holder.startswith(here)
                or info.pid == os.getpid() or _alive(info.pid)):
            return False
        return self.store.break_lease(self.name, info.holder)

    def _busy_message(self) -> str:
        info = self.store.lease_info(self.name)
        if info is None:
            who = "another run"
        else:
            since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info.acquired_at))
            who = f"another run (host {info.host}, pid {info.pid}, since {since})"
        waited = f" after waiting {self.wait_s:g} s" if self.wait_s else ""
        return f"{self.what}: {who} is already syncing it; not started{waited} (state.lock_wait_s)"

    def _renew(self) -> None:
        while not self._done.wait(self.ttl_s / 3):
            try:
                if not self.store.renew_lease(self.name, self.holder, self.ttl_s):
                    self.lost.set()
                    return
            except StateError:
                continue  # a transient database error: try again before the lease runs out

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(StateError):
            self.store.release_lease(self.name, self.holder)


def _pid_namespace() -> str:
    """This process's PID namespace on this boot (the boot id and the namespace's inode); empty
    where there is no /proc to tell (not Linux): no holder's PID is then checked."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _sqlite_version() -> tuple[int, ...]:
    import sqlite3

    return sqlite3.sqlite_version_info


def open_store(url: str) -> StateStore:
    return StateStore(url)
