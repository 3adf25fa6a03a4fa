"""Settling: Amplitude's answers become the synced state.

An acknowledged user's outbox row leaves the outbox and sets (a value) or ends (none) the user's
synced state, and an earlier rejection of the user goes; a rejected user is recorded with the
reason and their outbox row is closed as "rejected" (it stays the planned state, see
audsync.diff). A Settlement does this for one audience run, in batches, committed in order on a
helper thread; it decides by itself how each batch is settled (key ranges or ids).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import sqlalchemy as sa

from .. import diff
from .._background import Writer
from .base import StoreBase
from .leases import Fence, Leases
from .records import Rejected

SETTLE_ROWS = 20_000     # acknowledgements committed together
SETTLE_SECONDS = 1.0     # ... or at least this often

# The delivery's outcome statuses (audsync.delivery), worst last.
DELIVERED, REJECTED, UNDELIVERED = "delivered", "rejected", "undelivered"
_RANK = {DELIVERED: 0, REJECTED: 1, UNDELIVERED: 2}


@dataclass
class _Batch:
    """Answers committed in one transaction. `spanned` are acknowledged users known to be exactly
    the pending rows of `run_id` in the key ranges `spans` (first, last); `gone=False` is known
    when no acknowledged user is leaving (an exit or $unset), `rejections=False` when none has an
    earlier rejection: the statements that would find nothing are then skipped."""

    audience_id: int
    run_id: int
    delivered: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    spans: list[tuple[str, str]] = field(default_factory=list)
    spanned: list[str] = field(default_factory=list)
    gone: bool = True
    rejections: bool = True
    fence: Fence | None = None

    def __len__(self) -> int:
        return len(self.delivered) + len(self.spanned) + len(self.rejected)


class _NotExactly(Exception):
    """Key ranges that did not hold exactly the acknowledged rows: rolled back, settled by id."""


class Settling(Leases, StoreBase):
    def settle(self, audience_id: int, run_id: int, delivered: Sequence[str], rejected: Sequence[Rejected], *,
               fence: Fence | None = None) -> None:
        """Records these answers (acknowledged ids, rejections) in one transaction; with a
        `fence`, nothing is recorded unless its holder still holds the lease (hold_fence)."""
        self._settle_batch(_Batch(audience_id, run_id, list(delivered), list(rejected), fence=fence))

    def settlement(self, audience_id: int, run_id: int, fence: Fence | None, *, plan: Counter[str] | None = None,
                   on_answered: Callable[[int], None] = lambda n: None) -> "Settlement":
        """Settles the answers to one delivery of an audience's pending rows, while `fence` holds.
        `plan`: the pages are run `run_id`'s own plan (pending_pages(run_id=...)), whose counts
        these are; else (rows left by earlier runs) every answer is settled by id."""
        return Settlement(self, audience_id, run_id, fence, plan=plan, on_answered=on_answered)

    def has_rejections(self, audience_id: int) -> bool:
        with self._conn(write=False) as conn:
            return conn.execute(sa.text("SELECT 1 FROM rejections WHERE audience_id = :a LIMIT 1"),
                                {"a": audience_id}).first() is not None

    def _settle_batch(self, batch: _Batch) -> None:
        if not batch:
            return
        with self._conn() as conn:
            self.dialect.begin_settle(conn)
            delivered = batch.delivered
            if batch.spanned and not self._settle_ranges(conn, batch):
                delivered = [*delivered, *batch.spanned]
            if delivered:
                self.dialect.settle_ids(conn, batch.audience_id, delivered, gone=batch.gone,
                                        rejections=batch.rejections)
            if batch.rejected:
                now = time.time()
                params_list = [{"a": batch.audience_id, "i": r.identity, "api": r.api, "reason": r.reason[:2000],
                                "run": batch.run_id, "now": now} for r in batch.rejected]
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
            self.hold_fence(conn, batch.fence)

    def _settle_ranges(self, conn: Any, batch: _Batch) -> bool:
        """Settles `batch.spanned` by its key ranges, cheaper than an index probe per user, when
        the ranges hold exactly as many pending rows of the run; else changes nothing and
        answers False (the ids are then settled one by one)."""
        try:
            with conn.begin_nested():
                settled = self.dialect.settle_ranges(conn, batch.audience_id, batch.run_id, batch.spans,
                                                     gone=batch.gone, rejections=batch.rejections)
                if settled != len(batch.spanned):
                    raise _NotExactly()
        except _NotExactly:
            return False
        return True


class Settlement:
    """Turns the delivery outcomes of one audience run into committed state, in batches of
    SETTLE_ROWS (or every SETTLE_SECONDS), committed in order on a helper thread while the
    caller's thread goes on delivering.

    Fed with `add(outcomes)` (audsync.delivery.Outcomes) and `answer(identity, status)` for
    users answered without a request. A user whose change needs several operations (identify +
    track event, see `expect`) is settled once all of them are answered: undelivered if any is,
    else rejected if any is, else delivered.

    A request the Deliverer found to be a consecutive run of this run's pending rows in key
    order (Outcomes.span) is settled as a key range, when the pages are this run's plan
    (`by_range`, which the Deliverer must be told with report_spans); anything else by id.
    """

    def __init__(self, store: Settling, audience_id: int, run_id: int, fence: Fence | None, *,
                 plan: Counter[str] | None, on_answered: Callable[[int], None]):
        self.store = store
        self.by_range = plan is not None
        self.on_answered = on_answered
        self.delivered = 0          # users answered so far, by outcome
        self.rejected = 0
        # Whether some user may be leaving, and whether some may have an earlier rejection:
        # without either, each batch skips statements that would find nothing.
        gone = plan is None or bool(plan.get(diff.EXIT) or plan.get(diff.UNSET))
        self._template = dict(audience_id=audience_id, run_id=run_id, gone=gone,
                              rejections=store.has_rejections(audience_id), fence=fence)
        self._batch = _Batch(**self._template)
        self._positions: list[tuple[int, int]] = []   # of the batch's spans, in the input
        self._expected: dict[str, int] = {}
        self._worst: dict[str, tuple[str, str, str]] = {}
        self._last_flush = time.monotonic()
        self._writer = Writer(name="settle")

    def __enter__(self) -> "Settlement":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def expect(self, identity: str, operations: int) -> None:
        """A user whose change needs several operations: settled once all of them are answered."""
        self._expected[identity] = operations

    def answer(self, identity: str, status: str, api: str = "", reason: str = "") -> None:
        """One user's answer, settled as it is (no request, or its last operation answered)."""
        if status == DELIVERED:
            self._batch.delivered.append(identity)
            self.delivered += 1
        elif status == REJECTED:
            self._batch.rejected.append(Rejected(identity, api, reason))
            self.rejected += 1
        self.on_answered(1)

    def add(self, outcomes: Any) -> None:
        """The outcomes of one request (audsync.delivery.Outcomes)."""
        status, api, reason = outcomes.status, outcomes.api, outcomes.reason or ""
        if not self._expected and status == DELIVERED:  # the common case, in bulk
            if outcomes.span is not None and self.by_range:
                self._positions.append(outcomes.positions)
                self._batch.spans.append(outcomes.span)
                self._batch.spanned.extend(outcomes.refs)
            else:
                self._batch.delivered.extend(outcomes.refs)
            self.delivered += len(outcomes.refs)
            self.on_answered(len(outcomes.refs))
        else:
            for ref in outcomes.refs:
                remaining = self._expected.get(ref)
                if remaining is None:
                    self.answer(ref, status, api, reason)
                    continue
                worst = self._worst.get(ref)
                if worst is None or _RANK[status] > _RANK[worst[0]]:
                    self._worst[ref] = (status, api, reason)
                if remaining > 1:
                    self._expected[ref] = remaining - 1
                else:
                    del self._expected[ref]
                    self.answer(ref, *self._worst.pop(ref))
        if len(self._batch) >= SETTLE_ROWS or time.monotonic() - self._last_flush >= SETTLE_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Hands the answers gathered so far to the writer thread (committed in order)."""
        batch = self._batch
        if batch:
            batch.spans = joined_spans(list(zip(self._positions, batch.spans)))
            self._writer.submit(self.store._settle_batch, batch)
            self._batch, self._positions = _Batch(**self._template), []
        self._last_flush = time.monotonic()

    def close(self) -> None:
        """Commits what is left and waits until every answer is committed; raises what a commit
        raised (BusyError once the lease is lost, a StateError)."""
        try:
            self.flush()
        finally:
            self._writer.close()


def joined_spans(spans: list[tuple[tuple[int, int], tuple[str, str]]]) -> list[tuple[str, str]]:
    """Key ranges (first, last) of runs given with their positions in the input, runs that
    follow each other joined: SQLite runs a statement per range, and each one waits for the
    interpreter's lock when it is done (the requests of one batch come back as a few runs)."""
    joined: list[list] = []
    for (start, end), (first, last) in sorted(spans, key=lambda span: span[0][0]):
        if joined and joined[-1][1] + 1 == start:
            joined[-1][1], joined[-1][3] = end, last
        else:
            joined.append([start, end, first, last])
    return [(first, last) for _, _, first, last in joined]
