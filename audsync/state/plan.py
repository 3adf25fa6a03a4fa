"""Staging and planning: the source is loaded into the state database, folded and diffed there,
and the plan written into the outbox.

Heavy work is set-based SQL (see audsync.diff): the source is bulk-loaded into a temporary table
(how: the dialect's), folded into one row per user, then diffed against the state by primary
key. Python touches each source row once, on the way in, and afterwards only the changes.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from typing import Callable, Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import diff
from .base import StoreBase
from .db import db_errors, transaction
from .leases import Fence, Leases
from .records import CurrentCounts, PendingRow

Guard = Callable[[Counter[str], Callable[..., int]], None]


class Planning(Leases, StoreBase):
    @contextlib.contextmanager
    def work(self, audience_id: int | None) -> Iterator["AudienceWork"]:
        """A connection holding this run's temporary tables (gone with the session, so a crash
        leaves no staging garbage behind).

        The connection is closed afterwards instead of going back to the pool: the temporary
        tables go with it. Dropping them first would walk every page of them (seconds at ten
        million rows, between the plan and its delivery); closing discards them whole."""
        with db_errors(self.url), self.engine.connect() as conn:
            work = AudienceWork(self, conn, audience_id)
            try:
                yield work
            finally:
                conn.invalidate()


class AudienceWork:
    """Load the source, fold it, diff it and write the plan, on one connection."""

    def __init__(self, store: Planning, conn: Connection, audience_id: int | None):
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
        # Written through the driver's own cursor; what the database refuses there (PostgreSQL:
        # the server going away mid-COPY) is translated at work()'s edge like the rest.
        with transaction(self.conn, write=False):
            self.loaded += self.dialect.load(self.conn, chunks, computed=computed, should_stop=should_stop,
                                             on_rows=on_rows)
        return self.loaded

    def build_current(self, *, computed: bool) -> None:
        """Index the staged rows by identity (`cur`: one row per identity) and count duplicates
        and conflicting values (see counts())."""
        with transaction(self.conn, write=False):
            counted = self.dialect.build_current(self, computed=computed)
        if counted is not None:
            users, conflict_users, conflict_rows = counted
            self.has_conflicts = bool(conflict_users)
            self._set_counts(users, conflict_users, conflict_rows)

    def has_rows(self, table: str) -> bool:
        return self.conn.execute(sa.text(f"SELECT 1 FROM {table} WHERE audience_id = :aid LIMIT 1"),
                                 {"aid": self.aid}).first() is not None

    def _set_counts(self, users: int, conflict_users: int = 0, conflict_rows: int = 0) -> None:
        duplicates = self.loaded - users - conflict_rows + conflict_users
        self._counts = CurrentCounts(users=users - conflict_users, duplicate_rows=duplicates,
                                     conflicting_rows=conflict_rows, conflicting_users=conflict_users)

    def counts(self) -> CurrentCounts:
        """The source's users after folding duplicates, and the rows skipped: known after
        build_current(), or for an audience after plan() or preview(); counted here when
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

    def _everyone_enters(self, with_outbox: bool) -> bool:
        """A first sync: no members and no plan, so the diff is `cur` itself."""
        return self.fresh and not with_outbox

    def _change_selects(self, kind: str, backfill: bool, with_outbox: bool) -> list[str]:
        if self._everyone_enters(with_outbox):
            return [diff.all_entered_sql()]
        return self.dialect.change_selects(kind, backfill=backfill, with_outbox=with_outbox,
                                           skip_conflicts=self.has_conflicts)

    def plan(self, run_id: int, kind: str, *, backfill: bool = False, guard: Guard | None = None,
             fence: Fence | None = None) -> Counter[str]:
        """Write this run's plan into the outbox, in one transaction (a crash leaves all or none),
        committed only while `fence`'s holder holds the lease (StateStore.hold_fence).

        `guard(counts, members)` sees the plan's counts before they are committed (`members(limit)`
        counts the synced members, up to limit); what it raises rolls the whole plan back."""
        self.dialect.refresh_statistics(self.conn)
        with transaction(self.conn, write=True):
            with_outbox = self.has_rows("outbox")
            members_before = self._members_before_plan(with_outbox)
            counts = self.dialect.write_plan(
                self.conn, self._change_selects(kind, backfill, with_outbox), {"aid": self.aid, "run_id": run_id},
                with_outbox=with_outbox, fresh=self.fresh, everyone_enters=self._everyone_enters(with_outbox))
            if guard is not None:
                guard(counts, self._members if members_before is None else lambda limit=None: members_before)
            if members_before is not None:
                self._count_from_plan(kind, counts, members_before)
            self.dialect.after_plan(self.conn, counts)
            self.conn.execute(sa.text(
                "UPDATE audiences SET first_synced_at = :now WHERE id = :aid AND first_synced_at IS NULL"),
                {"aid": self.aid, "now": time.time()})
            self.store.hold_fence(self.conn, fence)
        return counts

    def preview(self, kind: str, *, backfill: bool = False, sample: int = 10,
                guard: Guard | None = None) -> tuple[Counter[str], list[PendingRow]]:
        """What plan() would write, without writing it (dry run); `guard` as in plan()."""
        self.dialect.refresh_statistics(self.conn)
        with transaction(self.conn, write=False):
            with_outbox = self.has_rows("outbox")
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
