"""What SQLite and PostgreSQL do differently, one strategy object per database.

Everything else in audsync.state is written once, for both: it asks its store's `dialect` (a
SqliteDialect or a PostgresDialect) for the clock expression, the lease lock, how a page of the
outbox is read, how the source is staged and folded, how a plan is written and counted, and how
acknowledgements are settled. The SQL of the diff itself lives in audsync.diff.
"""

from __future__ import annotations

import abc
import sqlite3
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .. import diff
from .db import transaction
from .records import canonical_json, json_default

if TYPE_CHECKING:
    from .plan import AudienceWork

_UPSERT_MEMBER = ("ON CONFLICT (audience_id, identity) DO UPDATE SET user_id = excluded.user_id, "
                  "anonymous_id = excluded.anonymous_id, value = excluded.value")

Chunks = Iterable[list[tuple]]


class Dialect(abc.ABC):
    """The shared parts; subclasses say what differs."""

    name = ""
    now = ""          # the database clock, Unix seconds, as an SQL expression
    share_lock = ""   # appended to the fence's SELECT: keeps the lease row from a takeover until commit

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # ---------------------------------------------------------------- outbox pages
    def page_sql(self, columns: str, page: str) -> str:
        """The statement reading one page of the outbox (`page` selects `columns`)."""
        return page

    def read_page(self, cursor: Any) -> tuple[list, Any]:
        """A page's rows, and the identity its next page starts after."""
        rows = cursor.fetchall()
        return rows, (rows[-1][0] if rows else None)

    # ---------------------------------------------------------------- settling
    def begin_settle(self, conn: Connection) -> None:
        """Session settings for one settle transaction."""

    @abc.abstractmethod
    def settle_ids(self, conn: Connection, audience_id: int, ids: Sequence[str], *, gone: bool,
                   rejections: bool) -> None:
        """Settles the acknowledged users `ids` (their outbox rows) one by one."""

    @abc.abstractmethod
    def settle_ranges(self, conn: Connection, audience_id: int, run_id: int, spans: Sequence[tuple[str, str]], *,
                      gone: bool, rejections: bool) -> int:
        """Settles run `run_id`'s pending rows in the key ranges `spans` (first, last); answers
        how many rows that was."""

    # ---------------------------------------------------------------- staging and planning
    @abc.abstractmethod
    def load(self, conn: Connection, chunks: Chunks, *, computed: bool, should_stop: Callable[[], bool],
             on_rows: Callable[[int], None]) -> int:
        """Stages every (user_id, anonymous_id, value) row into `stage`; answers how many."""

    @abc.abstractmethod
    def build_current(self, work: "AudienceWork", *, computed: bool) -> tuple[int, int, int] | None:
        """Folds `stage` into `cur` (work.fresh set on the way): (users, conflicting users,
        conflicting rows), or None when the users are counted by the plan instead."""

    def refresh_statistics(self, conn: Connection) -> None:
        """Before a plan, in a transaction of its own."""

    def change_selects(self, kind: str, *, backfill: bool, with_outbox: bool, skip_conflicts: bool) -> list[str]:
        selects = [diff.staged_changes_sql(self.name, with_outbox=with_outbox, backfill=backfill,
                                           skip_conflicts=skip_conflicts),
                   diff.gone_members_sql(kind, with_outbox=with_outbox)]
        if with_outbox:
            selects.append(diff.gone_planned_sql(kind))
        return selects

    @abc.abstractmethod
    def write_plan(self, conn: Connection, selects: list[str], params: dict[str, Any], *, with_outbox: bool,
                   fresh: bool, everyone_enters: bool) -> Counter[str]:
        """Writes the changes `selects` find into the outbox; answers their counts by change."""

    def after_plan(self, conn: Connection, counts: Counter[str]) -> None:
        """Once the plan passed its guard, in its transaction."""

    # ---------------------------------------------------------------- ingest
    @abc.abstractmethod
    def json_rows(self, types: Sequence[str]) -> str:
        """A SELECT of the rows of the JSON array of arrays bound to :rows, as columns c0, c1...
        of `types` ("text", "float" or "int"): many rows in one parameter."""

    def in_rows(self, column: str, kind: str = "text") -> str:
        """`column` among the one-column JSON rows bound to :rows (see json_rows), of type `kind`."""
        return f"{column} IN (SELECT c0 FROM ({self.json_rows((kind,))}) j)"

    @abc.abstractmethod
    def insert_many(self, conn: Connection, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        """Inserts `rows` (tuples in `columns`' order) into `table`, the fastest way the database has."""

    def begin_claim(self, conn: Connection) -> None:
        """Session settings for a transaction that claims ingest messages or frees their users."""

    def begin_forwarder_bookkeeping(self, conn: Connection) -> None:
        """Session settings for a transaction of the ingest forwarder's bookkeeping (claims,
        leases, what was forwarded): losing its commit in a crash only sends messages again, with
        the same insert_id, so it need not wait for the disk."""

    @staticmethod
    def _insert_everyone(conn: Connection, selects: list[str], params: dict[str, Any], *, upsert: bool,
                         ordered: bool) -> Counter[str]:
        # Where everyone enters, the statement's row count is the count, on both databases:
        # RETURNING every row, or counting the plan by change, would read the whole plan back.
        counts: Counter[str] = Counter()
        for select in selects:
            result = conn.execute(sa.text(diff.plan_sql(select, upsert=upsert, ordered=ordered)), params)
            if result.rowcount:
                counts[diff.ENTER] += int(result.rowcount)
        return counts


class SqliteDialect(Dialect):
    name = "sqlite"
    now = "((julianday('now') - 2440587.5) * 86400.0)"
    # A write transaction holds the database's write lock already.
    share_lock = ""

    def page_sql(self, columns: str, page: str) -> str:
        # A page comes as one JSON text parsed by orjson: read row by row, SQLite's reader takes
        # the interpreter's lock back after every row and builds six objects under it, which
        # slowed the delivery loop more than anything else on this path. The keyset's next start
        # comes apart: it must not rely on the aggregate's order.
        return f"SELECT json_group_array(json_array({columns})), max(identity) FROM ({page})"

    def read_page(self, cursor: Any) -> tuple[list, Any]:
        text, last = cursor.fetchone()
        return orjson.loads(text), last

    @staticmethod
    def _in_ids(column: str) -> str:
        """`column` among the ids bound to :ids as one JSON array."""
        return f"{column} IN (SELECT value FROM json_each(:ids))"

    def settle_ids(self, conn: Connection, audience_id: int, ids: Sequence[str], *, gone: bool,
                   rejections: bool) -> None:
        in_ids, plain_in = self._in_ids("o.identity"), self._in_ids("identity")
        params = {"a": audience_id, "ids": orjson.dumps(list(ids)).decode()}
        conn.execute(sa.text(
            "INSERT INTO members (audience_id, identity, user_id, anonymous_id, value) "
            "SELECT o.audience_id, o.identity, o.user_id, o.anonymous_id, o.value FROM outbox o "
            f"WHERE o.audience_id = :a AND {in_ids} AND o.value IS NOT NULL {_UPSERT_MEMBER}"), params)
        # The promises spare statements that would find nothing: a large share of a first sync's settling.
        if gone:
            conn.execute(sa.text(
                "DELETE FROM members WHERE audience_id = :a AND identity IN (SELECT o.identity "
                f"FROM outbox o WHERE o.audience_id = :a AND {in_ids} AND o.value IS NULL)"), params)
        if rejections:
            conn.execute(sa.text(f"DELETE FROM rejections WHERE audience_id = :a AND {plain_in}"), params)
        conn.execute(sa.text(f"DELETE FROM outbox WHERE audience_id = :a AND {plain_in}"), params)

    def settle_ranges(self, conn: Connection, audience_id: int, run_id: int, spans: Sequence[tuple[str, str]], *,
                      gone: bool, rejections: bool) -> int:
        # A range scan per span and statement, each statement run once for all the spans.
        params = [{"a": audience_id, "run": run_id, "lo": lo, "hi": hi} for lo, hi in spans]
        rows = ("FROM outbox o WHERE o.audience_id = :a AND o.identity >= :lo AND o.identity <= :hi "
                "AND o.run_id = :run AND o.status = 'pending'")
        conn.execute(sa.text(
            "INSERT INTO members (audience_id, identity, user_id, anonymous_id, value) "
            f"SELECT o.audience_id, o.identity, o.user_id, o.anonymous_id, o.value {rows} AND o.value IS NOT NULL "
            f"{_UPSERT_MEMBER}"), params)
        if gone:
            conn.execute(sa.text("DELETE FROM members WHERE audience_id = :a AND identity IN "
                                 f"(SELECT o.identity {rows} AND o.value IS NULL)"), params)
        if rejections:
            conn.execute(sa.text(f"DELETE FROM rejections WHERE audience_id = :a AND identity IN "
                                 f"(SELECT o.identity {rows})"), params)
        return conn.execute(sa.text(
            "DELETE FROM outbox WHERE audience_id = :a AND identity >= :lo AND identity <= :hi "
            "AND run_id = :run AND status = 'pending'"), params).rowcount

    def load(self, conn: Connection, chunks: Chunks, *, computed: bool, should_stop: Callable[[], bool],
             on_rows: Callable[[int], None]) -> int:
        # One JSON document per chunk, unpacked by json_each inside SQLite: binding three
        # parameters per row through executemany costs far more at millions of rows.
        conn.exec_driver_sql("CREATE TEMP TABLE stage (identity TEXT, user_id TEXT, anonymous_id TEXT, value TEXT)")
        cursor = conn.connection.driver_connection.cursor()
        has_arrow = sqlite3.sqlite_version_info >= (3, 38, 0)
        only_users = "INSERT INTO stage (identity, user_id) SELECT 'u' || value, value FROM json_each(?)"
        full = (f"INSERT INTO stage SELECT {diff.identity_sql('(value ->> 0)', '(value ->> 1)')}, "
                f"value ->> 0, value ->> 1, {'value -> 2' if computed else 'NULL'} FROM json_each(?)")
        loaded = 0
        try:
            for chunk in chunks:
                if not has_arrow:
                    cursor.executemany(
                        f"INSERT INTO stage VALUES ({diff.identity_sql('?1', '?2')}, ?1, ?2, ?3)",
                        [(u, a, canonical_json(v)) for u, a, v in chunk] if computed else chunk)
                elif not computed and all(row[1] is None for row in chunk):
                    cursor.execute(only_users, (orjson.dumps([row[0] for row in chunk]).decode(),))
                else:
                    # SQLite renders the value (`-> 2`) from orjson's sorted-keys text: canonical.
                    text = orjson.dumps(chunk, option=orjson.OPT_SORT_KEYS, default=json_default).decode()
                    cursor.execute(full, (text,))
                loaded += len(chunk)
                on_rows(len(chunk))
                if should_stop():
                    break
        finally:
            cursor.close()
        return loaded

    def build_current(self, work: "AudienceWork", *, computed: bool) -> tuple[int, int, int] | None:
        conn = work.conn
        # Index after loading: building it once is far faster than keeping it sorted while
        # inserting; it covers every column, so the diff never reads the table.
        conn.exec_driver_sql("PRAGMA threads = 2")
        conn.exec_driver_sql("CREATE INDEX temp.stage_identity ON stage (identity, value, user_id, anonymous_id)")
        conn.exec_driver_sql(f"CREATE TEMP VIEW cur AS {diff.current_view_sql('sqlite')}")
        conn.exec_driver_sql("CREATE TEMP TABLE conflicts (identity TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID")
        work.fresh = not work.has_rows("members") and not work.has_rows("outbox")
        if not computed:
            # As on PostgreSQL, an audience's count of users comes with the plan: counting them
            # here would be one more pass over the whole index.
            return None
        users = conn.exec_driver_sql("SELECT count(*) FROM (SELECT 1 FROM stage GROUP BY identity)").scalar_one()
        conn.exec_driver_sql("INSERT INTO conflicts SELECT identity, count(*) FROM stage GROUP BY identity "
                             "HAVING min(value) IS NOT max(value)")
        conflict_users, conflict_rows = conn.exec_driver_sql("SELECT count(*), coalesce(sum(n), 0) FROM conflicts").one()
        return int(users), int(conflict_users), int(conflict_rows)

    def write_plan(self, conn: Connection, selects: list[str], params: dict[str, Any], *, with_outbox: bool,
                   fresh: bool, everyone_enters: bool) -> Counter[str]:
        if everyone_enters:
            return self._insert_everyone(conn, selects, params, upsert=with_outbox, ordered=False)
        for select in selects:
            conn.execute(sa.text(diff.plan_sql(select, upsert=with_outbox)), params)
        # SQLite has no INSERT inside WITH: the plan is counted once written.
        return Counter({str(change): int(n) for change, n in conn.execute(sa.text(
            "SELECT change, count(*) FROM outbox WHERE audience_id = :aid AND run_id = :run_id "
            "AND status = 'pending' GROUP BY change"), params)})


    def json_rows(self, types: Sequence[str]) -> str:
        # json_extract gives SQL values of the JSON's own types, so no cast is needed.
        columns = ", ".join(f"json_extract(value, '$[{i}]') AS c{i}" for i in range(len(types)))
        return f"SELECT {columns} FROM json_each(:rows)"

    def insert_many(self, conn: Connection, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        # sqlite3's executemany binds every row in C, without SQLAlchemy's per-row work.
        marks = ", ".join("?" * len(columns))
        cursor = conn.connection.driver_connection.cursor()
        try:
            cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        finally:
            cursor.close()


class PostgresDialect(Dialect):
    name = "postgresql"
    now = "CAST(extract(epoch FROM clock_timestamp()) AS double precision)"
    # Held until the commit, which a takeover (an UPDATE of the lease row) has to wait for.
    share_lock = " FOR SHARE"

    # Pages stay rows: psycopg builds a page's rows without letting go of the interpreter's
    # lock anyway, and PostgreSQL builds JSON more slowly than it sends rows.

    def begin_settle(self, conn: Connection) -> None:
        # Losing the last acknowledgements in an OS crash only means resending absolute
        # operations: not worth waiting for a WAL flush at every batch.
        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")

    def settle_ids(self, conn: Connection, audience_id: int, ids: Sequence[str], *, gone: bool,
                   rejections: bool) -> None:
        # One round trip: the acknowledged outbox rows are deleted and returned, and feed the
        # members insert (a value) or delete (an exit or $unset). Each id is an index probe.
        # The ids travel as one JSON text: psycopg's text[] adapter spends far more Python time,
        # under the interpreter's lock that the delivery loop needs.
        self._settle(conn, {"a": audience_id, "ids": orjson.dumps(list(ids)).decode()}, by_spans=False)

    def settle_ranges(self, conn: Connection, audience_id: int, run_id: int, spans: Sequence[tuple[str, str]], *,
                      gone: bool, rejections: bool) -> int:
        params = {"a": audience_id, "run": run_id, "spans": orjson.dumps(list(spans)).decode()}
        return self._settle(conn, params, by_spans=True)

    def _settle(self, conn: Connection, params: dict[str, Any], *, by_spans: bool) -> int:
        # The planner, misjudging a fresh outbox, otherwise chose sequential scans of the whole
        # outbox per batch, several times slower.
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        conn.exec_driver_sql("SET LOCAL enable_hashjoin = off")
        conn.exec_driver_sql("SET LOCAL enable_mergejoin = off")
        # Not knowing how many rows a span holds, the planner's estimate passes jit_above_cost,
        # and compiling the statement took many times its work per batch.
        conn.exec_driver_sql("SET LOCAL jit = off")
        # An entering user is almost never a member yet, and a plain insert costs PostgreSQL
        # markedly less than an upsert's speculative insertion (a first sync's every user). The
        # exception, a user back before their exit was acknowledged, makes the insert fail;
        # then the batch is settled again with upserts only.
        try:
            with conn.begin_nested():
                return int(conn.execute(sa.text(_settle_sql(entering_are_new=True, by_spans=by_spans)),
                                        params).scalar_one())
        except sa.exc.IntegrityError as exc:
            if getattr(exc.orig, "sqlstate", None) != "23505":  # not a unique violation
                raise
            return int(conn.execute(sa.text(_settle_sql(entering_are_new=False, by_spans=by_spans)),
                                    params).scalar_one())

    def load(self, conn: Connection, chunks: Chunks, *, computed: bool, should_stop: Callable[[], bool],
             on_rows: Callable[[int], None]) -> int:
        conn.exec_driver_sql(
            'CREATE TEMP TABLE stage_rows (user_id text COLLATE "C", anonymous_id text COLLATE "C", value text)')
        # The identity is computed where it is read: a stored (generated) column made COPY slower
        # by more than its reads cost.
        conn.exec_driver_sql(f"CREATE TEMP VIEW stage AS SELECT {diff.identity_sql()} AS identity, user_id, "
                             "anonymous_id, value FROM stage_rows")
        loaded = 0
        with conn.connection.driver_connection.cursor() as cursor:
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
                    loaded += len(chunk)
                    on_rows(len(chunk))
                    if should_stop():
                        break
        return loaded

    def build_current(self, work: "AudienceWork", *, computed: bool) -> tuple[int, int, int] | None:
        conn = work.conn
        conn.exec_driver_sql('CREATE TEMP TABLE conflicts (identity text COLLATE "C" PRIMARY KEY, n integer NOT NULL)')
        conn.exec_driver_sql("ANALYZE stage_rows")  # what the planner needs for the joins
        work.fresh = not work.has_rows("members") and not work.has_rows("outbox")
        fold = diff.current_view_sql("postgresql")
        if work.fresh:
            # Nothing to diff against (a first sync): every user is planned, so the fold is
            # written once, sorted, and the plan inserts it in that order with no sort of its own.
            conn.exec_driver_sql("SET LOCAL enable_hashagg = off")
            users = conn.exec_driver_sql(f"CREATE TEMP TABLE cur_rows AS {fold} ORDER BY identity").rowcount
            conn.exec_driver_sql("CREATE TEMP VIEW cur AS SELECT * FROM cur_rows")
        else:
            # No table for `cur`: writing every folded row cost as much as the diff, which folds
            # only the staged users that changed (diff.staged_and_gone_sql).
            conn.exec_driver_sql(f"CREATE TEMP VIEW cur AS {fold}")
        if computed:
            users, conflict_users, conflict_rows = conn.exec_driver_sql(
                "SELECT count(*), count(*) FILTER (WHERE conflict = 1), "
                "coalesce(sum(n) FILTER (WHERE conflict = 1), 0) FROM cur").one()
            if conflict_users:  # a second pass only when there are conflicts to list
                conn.exec_driver_sql("INSERT INTO conflicts SELECT identity, n FROM cur WHERE conflict = 1")
            return int(users), int(conflict_users), int(conflict_rows)
        if work.fresh:
            return int(users), 0, 0
        # An audience has no conflicts, and its count of users comes with the plan (plan() or
        # preview()): counting them here would take a large share of an incremental sync.
        return None

    def refresh_statistics(self, conn: Connection) -> None:
        # The planner must know how many members and open outbox rows there are. Right after a
        # large sync autovacuum has not caught up, and stale counts (thousands instead of
        # millions) made it diff by nested loops, several times slower. A short transaction of
        # its own, so the lock ANALYZE takes is not held through the plan.
        with transaction(conn, write=False):
            conn.exec_driver_sql("ANALYZE members, outbox")

    def change_selects(self, kind: str, *, backfill: bool, with_outbox: bool, skip_conflicts: bool) -> list[str]:
        if not with_outbox:
            return [diff.staged_and_gone_sql(kind, backfill=backfill, skip_conflicts=skip_conflicts)]
        return super().change_selects(kind, backfill=backfill, with_outbox=with_outbox, skip_conflicts=skip_conflicts)

    def write_plan(self, conn: Connection, selects: list[str], params: dict[str, Any], *, with_outbox: bool,
                   fresh: bool, everyone_enters: bool) -> Counter[str]:
        if everyone_enters:
            counts = self._insert_everyone(conn, selects, params, upsert=with_outbox, ordered=not fresh)
        else:
            # The statement counts what it writes: reading the plan back would take seconds.
            counts = Counter()
            for select in selects:
                result = conn.execute(sa.text(diff.plan_sql(select, upsert=with_outbox, ordered=not fresh,
                                                            counted=True)), params)
                counts.update({str(change): int(n) for change, n in result})
        return counts

    def after_plan(self, conn: Connection, counts: Counter[str]) -> None:
        if sum(counts.values()) >= 10_000:
            # Without fresh statistics the planner reads each page of the plan by scanning the
            # whole outbox.
            conn.exec_driver_sql("ANALYZE outbox")

    _CASTS = {"text": "x ->> {i}", "float": "CAST(x ->> {i} AS double precision)", "int": "CAST(x ->> {i} AS bigint)"}

    def json_rows(self, types: Sequence[str]) -> str:
        columns = ", ".join(self._CASTS[t].format(i=i) + f" AS c{i}" for i, t in enumerate(types))
        return f"SELECT {columns} FROM json_array_elements(CAST(:rows AS json)) x"

    def in_rows(self, column: str, kind: str = "text") -> str:
        # An array computed once, probed through the index: as a join, the planner compared every
        # row of the table with every row of the JSON.
        return f"{column} = ANY(ARRAY(SELECT c0 FROM ({self.json_rows((kind,))}) j))"

    def begin_forwarder_bookkeeping(self, conn: Connection) -> None:
        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")

    def begin_claim(self, conn: Connection) -> None:
        # A claim (or freeing users) reads a few rows from the front of the log's indexes. Before autovacuum has
        # analysed a log that filled quickly (a server's first minutes, a backlog after an
        # outage), the planner chose scans of the whole log instead, tens of times slower.
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
        conn.exec_driver_sql("SET LOCAL enable_hashjoin = off")
        conn.exec_driver_sql("SET LOCAL enable_mergejoin = off")

    def insert_many(self, conn: Connection, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        # COPY: several times faster than an INSERT per row, even pipelined.
        with conn.connection.driver_connection.cursor() as cursor:
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)


def _settle_sql(*, entering_are_new: bool, by_spans: bool = False) -> str:
    """Settling acknowledged users on PostgreSQL: their outbox rows leave the outbox and set (a
    value) or end (none) the users' synced state; their rejections go. The users are the ids of
    the JSON array :ids, or (by_spans) every pending row of run :run in the key ranges of the
    JSON array :spans ([first, last] pairs); then the statement answers how many rows that was."""
    insert = ("INSERT INTO members (audience_id, identity, user_id, anonymous_id, value) "
              "SELECT :a, identity, user_id, anonymous_id, value FROM acked WHERE value IS NOT NULL")
    if entering_are_new:
        inserts = (f"entered AS ({insert} AND change = '{diff.ENTER}'), "
                   f"upserted AS ({insert} AND change <> '{diff.ENTER}' {_UPSERT_MEMBER}), ")
    else:
        inserts = f"upserted AS ({insert} {_UPSERT_MEMBER}), "
    returning = "RETURNING o.identity, o.user_id, o.anonymous_id, o.value, o.change"
    if by_spans:
        # A range scan per span: probing the index once per id costs more.
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


def _copy_text_of_user_ids(chunk: list[tuple]) -> str | None:
    """COPY's text format for a chunk whose rows hold a user id and nothing else (an audience's
    usual source), made in one join: written row by row, it holds the interpreter's lock for
    long enough that the thread reading the source is slowed. None when a row holds more, or an
    id holds a character the text format would need escaped (it then goes row by row)."""
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


def dialect_for(engine: Engine) -> Dialect:
    name = engine.dialect.name
    if name == "sqlite":
        return SqliteDialect()
    if name == "postgresql":
        return PostgresDialect()
    raise ValueError(f"no state dialect for {name!r}")  # make_engine admits only these two
