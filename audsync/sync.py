"""run_once and backfill: the only wiring of the audience sync (DESIGN.md sections 1 and 4).

Per audience, under its lease:
  1. deliver what earlier runs left pending (they go first);
  2. load the source into the state database and diff it there (audsync.diff);
  3. write the plan to the outbox in one transaction, before anything is sent;
  4. deliver it; each acknowledgement advances that user's synced state, in batches.
A crash at any point leaves either no plan or a complete one; pending rows are delivered by the
next run, and a resend of an absolute $set/$unset (or of an event with its deterministic
insert_id) is harmless.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, Callable, Iterable, Iterator, Sequence

from . import diff
from ._audience_ops import OperationBuilder
from ._background import Prefetched
from .config import AudienceConfig, Config
from .errors import CRASHED, TEMPORARY, AudsyncError, FatalDeliveryError, MassExitError, UsageError, ValidationError
from .progress import NO_PROGRESS, ProgressReporter
from .state import AudienceWork, CurrentCounts, Fence, LeaseKeeper, PendingRow, StateStore

log = logging.getLogger("audsync.sync")

SAMPLE_SIZE = 10
SKIP_DUPLICATE = "duplicate user"
SKIP_CONFLICT = "conflicting values"
MASS_EXIT_MIN_MEMBERS = 100  # max_exit_fraction guards audiences of at least this many members

OnResponse = Callable[[str, int, int], None]


class RunMode(StrEnum):
    """What a run does (the runs table's `mode`, the report's)."""

    RUN = "run"
    BACKFILL = "backfill"    # resends every current member's value
    DRY_RUN = "dry-run"      # counts and a sample; sends and records nothing


@dataclass
class AudienceReport:
    name: str
    key: str
    kind: str
    mode: RunMode
    rows_read: int = 0
    members_in_source: int = 0
    skipped: Counter = field(default_factory=Counter)
    entered: int = 0
    exited: int = 0
    changed: int = 0
    unset: int = 0
    resent: int = 0
    recorded: int = 0          # --skip-backfill: members recorded as synced without sending
    earlier_pending: int = 0   # pending rows from earlier runs, delivered first
    delivered: int = 0
    rejected: int = 0
    pending: int = 0
    duration_s: float = 0.0
    run_id: int | None = None
    first_sync: bool = False
    stopped: bool = False
    guarded: bool = False      # nothing planned: see _mass_exit_guard
    error: str | None = None
    error_exit_code: int = 0
    notes: list[str] = field(default_factory=list)
    sample: list[dict[str, Any]] = field(default_factory=list)

    def add_plan(self, counts: Counter) -> None:
        self.entered += counts.get(diff.ENTER, 0)
        self.exited += counts.get(diff.EXIT, 0)
        self.changed += counts.get(diff.CHANGE, 0)
        self.unset += counts.get(diff.UNSET, 0)
        self.resent += counts.get(diff.RESEND, 0)

    def summary_line(self) -> str:
        if self.error:
            return f"{self.key}: {'guarded' if self.guarded else 'failed'}: {self.error}"
        parts = [f"{self.rows_read:,} read", f"+{self.entered:,} entered", f"-{self.exited:,} exited",
                 f"{self.changed:,} changed"]
        if self.kind == diff.COMPUTED_TRAIT:
            parts.append(f"{self.unset:,} unset")
        if self.resent:
            parts.append(f"{self.resent:,} resent")
        line = f"{self.key}: " + ", ".join(parts)
        if self.mode == RunMode.DRY_RUN:
            line += f"; dry run: nothing sent ({self.pending:,} pending from earlier runs)"
        elif self.recorded:
            line += f"; {self.recorded:,} recorded as synced without sending (--skip-backfill)"
        else:
            line += f"; {self.delivered:,} delivered, {self.rejected:,} rejected, {self.pending:,} pending"
            if self.earlier_pending:
                line += f" ({self.earlier_pending:,} left by earlier runs went first)"
        if self.skipped:
            line += "; skipped " + ", ".join(f"{n:,} {reason}" for reason, n in sorted(self.skipped.items()))
        if self.stopped:
            line += "; stopped early"
        return f"{line} ({self.duration_s:.1f} s)"

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items()}
        data["skipped"] = dict(self.skipped)
        return data


@dataclass
class RunReport:
    audiences: list[AudienceReport] = field(default_factory=list)
    migrations: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """DESIGN.md section 3, the most pressing first: a crash (a bug), 2 something to fix
        (config, source, state, API key), 3 temporary trouble (retrying will do: the state
        database or Amplitude unreachable, the audience busy), 1 some rejected or stopped with
        work pending, 0 everything delivered."""
        codes = {a.error_exit_code for a in self.audiences if a.error}
        ran = [a for a in self.audiences if a.mode != RunMode.DRY_RUN]
        # Pending work that no stop explains: Amplitude stayed unreachable past every retry.
        if any(a.pending and not a.stopped for a in ran):
            codes.add(TEMPORARY)
        if any(a.rejected or a.stopped for a in ran):
            codes.add(1)
        return next((code for code in (CRASHED, 2, TEMPORARY, 1) if code in codes), 0)


class _Stop:
    """Why a run stops taking new work: the caller's stop request, or a lost lease."""

    def __init__(self, request: threading.Event | None):
        self.request = request
        self.lease: LeaseKeeper | None = None

    def __call__(self) -> bool:
        return bool((self.request and self.request.is_set()) or (self.lease and self.lease.lost.is_set()))



@dataclass
class AudienceRun:
    """One audience's run under its lease: what a delivery of its pending rows needs."""

    config: Config
    store: StateStore
    builder: OperationBuilder
    audience_id: int
    run_id: int
    fence: Fence
    report: "AudienceReport"
    stop: _Stop
    progress: ProgressReporter
    on_response: OnResponse | None = None


def _deliver(run: AudienceRun, pages: Iterable[list[Sequence]], label: str, total: int, *,
             plan: Counter | None = None) -> None:
    """Delivers the pending rows of `pages`, settling them while the run's lease holds; `plan`
    when the pages are the run's own plan (those counts), None for rows earlier runs left."""
    from .delivery import Bundle, Deliverer

    report = run.report
    phase = run.progress.phase(label, total=total)
    settlement = run.store.settlement(run.audience_id, run.run_id, run.fence, plan=plan, on_answered=phase.advance)
    ahead = Prefetched(pages, name="outbox-pages")
    stop = run.stop

    def items() -> Iterator[tuple[str, tuple] | Bundle]:  # (identity, encoded operation) or a page
        # A page whose rows all make one operation of one shape goes as one Bundle; other rows
        # are built one by one, ten million times at most: a pending row holds build's
        # arguments, in order (PendingRow's fields).
        # A stop is checked per page here, and by the deliverer at every turn of its loop.
        build, expect, encode_page = run.builder.build_encoded, settlement.expect, run.builder.encode_page
        for page in ahead:
            if stop():
                return
            bundle = encode_page(page)
            if bundle is not None:
                yield bundle
                continue
            for row in page:
                identity = row[0]
                try:
                    ops = build(*row)
                except ValidationError as exc:
                    settlement.answer(identity, "rejected", "identify", f"invalid: {exc}")
                    continue
                if not ops:  # the settings drop it: nothing to send, nothing left to do
                    settlement.answer(identity, "delivered")
                    continue
                if len(ops) > 1:
                    expect(identity, len(ops))
                for op in ops:
                    yield identity, op

    try:
        with Deliverer(run.config.amplitude, run.config.delivery, on_response=run.on_response,
                       report_spans=settlement.by_range) as deliverer:
            deliverer.deliver(items(), settlement.add, should_stop=stop)
    finally:
        try:
            ahead.close()
            settlement.close()
        finally:
            report.delivered += settlement.delivered
            report.rejected += settlement.rejected
            phase.close()


def _skipped(source_skipped: Counter, counts: CurrentCounts) -> Counter:
    skipped = Counter(source_skipped)
    if counts.duplicate_rows:
        skipped[SKIP_DUPLICATE] += counts.duplicate_rows
    if counts.conflicting_rows:
        skipped[SKIP_CONFLICT] += counts.conflicting_rows
    return skipped


def crash_reason(exc: BaseException) -> str:
    return f"crashed (a bug in audsync, please report it): {type(exc).__name__}: {exc}"


def lease_name(config: Config, audience: AudienceConfig) -> str:
    """The lease serialising runs of one audience's state (per destination)."""
    return f"audience:{config.amplitude.destination_id}:{audience.key}"


def _load(config: Config, audience: AudienceConfig, work: AudienceWork, report: AudienceReport, stop: _Stop,
          progress: ProgressReporter, as_of: datetime) -> Counter:
    """Load and index the source; returns the source's own skipped rows by reason (the folding's
    counts come from _count, once the diff knows them). A rule is evaluated as of `as_of`."""
    from .sources import open_source

    source = open_source(audience, min_id_length=config.amplitude.min_id_length, config=config, as_of=as_of)
    # The source is read on a helper thread while this one writes the chunks into the state
    # database: reading and writing each release the GIL for most of their work.
    chunks = Prefetched(source.chunks(), name="source")
    try:
        with progress.phase(f"{audience.key}: loading") as phase:
            work.load(chunks, computed=audience.kind == diff.COMPUTED_TRAIT, should_stop=stop,
                      on_rows=phase.advance)
    finally:
        chunks.close()
    report.rows_read = source.rows_read
    # Deduplicating and indexing what was loaded takes seconds at millions of rows: shown as its
    # own phase, so that a terminal never sits on a finished loading bar.
    with progress.phase(f"{audience.key}: indexing", counted=False):
        work.build_current(computed=audience.kind == diff.COMPUTED_TRAIT)
    return Counter(source.skipped)


def _count(work: AudienceWork, report: AudienceReport, source_skipped: Counter) -> None:
    counts = work.counts()
    report.members_in_source = counts.users
    report.skipped = _skipped(source_skipped, counts)


def _mass_exit(audience: AudienceConfig, report: AudienceReport, loaded: int, counts: Counter,
               members: Callable[..., int]) -> str | None:
    """Why a plan would empty the audience by mistake, None when it would not: its source gave no
    rows while it has members, or more than max_exit_fraction of its members (at least
    MASS_EXIT_MIN_MEMBERS of them) would leave (an audience) or lose their value (a computed trait)."""
    removed = counts.get(diff.gone_change(audience.kind), 0)
    if not removed:
        return None
    verb = "unset the value of" if audience.kind == diff.COMPUTED_TRAIT else "remove"
    if loaded == 0:
        n = members()
        rows = "no rows" if report.rows_read == 0 else f"no usable rows ({report.rows_read:,} read, all skipped)"
        everyone = "its only member" if n == 1 else f"all {n:,} of its members"
        return f"its source returned {rows}, so this run would {verb} {everyone}"
    fraction = audience.max_exit_fraction
    # Past removed / fraction members the plan is allowed whatever their number: counting stops
    # there, so that a run unsetting a few values does not read every member of a large audience.
    n = members(max(MASS_EXIT_MIN_MEMBERS, int(removed / fraction) + 1))
    if n >= MASS_EXIT_MIN_MEMBERS and removed > fraction * n:
        return (f"this run would {verb} {removed:,} of its {n:,} members ({removed / n:.0%}), "
                f"more than max_exit_fraction = {fraction:g}")
    return None


def _mass_exit_guard(audience: AudienceConfig, report: AudienceReport, work: AudienceWork):  # noqa: ANN201
    """plan()'s guard: a mass exit raises, and the plan rolls back (nothing planned, no state changed)."""
    from .sources.hygiene import quoted

    def guard(counts: Counter, members: Callable[..., int]) -> None:
        why = _mass_exit(audience, report, work.loaded, counts, members)
        if why is not None:
            name = quoted(audience.name)
            # A CLI run would read the configured source, not the DataFrame in hand.
            way = ("call sync_dataframe again with allow_mass_exit=True" if audience.source.type == "dataframe"
                   else f"run once: audsync run --allow-mass-exit --audience {name}")
            raise MassExitError(
                f"audience {name}: {why}; nothing was planned and its synced state is unchanged. "
                f"If that is intended, {way}")
    return guard


def _sample(builder: OperationBuilder, rows: list[PendingRow]) -> list[dict[str, Any]]:
    sample = []
    for row in rows:
        entry: dict[str, Any] = {"change": row.change, "user_id": row.user_id, "anonymous_id": row.anonymous_id,
                                 "value": builder.value_of(row.value, row.change)}
        try:
            entry["operations"] = builder.translated(row.identity, row.user_id, row.anonymous_id, row.value,
                                                     row.change, row.run_id)
        except ValidationError as exc:
            entry["error"] = str(exc)
        sample.append(entry)
    return sample


def _dry_run(config: Config, store: StateStore, audience: AudienceConfig, report: AudienceReport,
             mode: RunMode, skip_backfill: bool, allow_mass_exit: bool, progress: ProgressReporter,
             as_of: datetime) -> None:
    """Counts and a sample of what a run would send; writes nothing to the state."""

    def guard(counts: Counter, members: Callable[..., int]) -> None:
        why = _mass_exit(audience, report, work.loaded, counts, members)
        if why is not None:
            report.notes.append(f"a run would be guarded: {why}; it would plan nothing without --allow-mass-exit")

    destination = config.amplitude.destination_id
    row = store.find_audience(destination, audience.key)
    report.first_sync = row is None or row.first_synced_at is None
    report.pending = store.pending_count(row.id) if row else 0
    builder = OperationBuilder(audience, config.amplitude, destination)
    stop = _Stop(None)
    with store.work(row.id if row else None) as work:
        source_skipped = _load(config, audience, work, report, stop, progress, as_of)
        if skip_backfill and report.first_sync:
            _count(work, report, source_skipped)
            report.notes.append(f"would record {report.members_in_source:,} members as synced without sending")
            return
        with progress.phase(f"{audience.key}: diffing", counted=False):
            counts, rows = work.preview(audience.kind, backfill=mode == RunMode.BACKFILL, sample=SAMPLE_SIZE,
                                        guard=None if allow_mass_exit else guard)
        _count(work, report, source_skipped)
    report.add_plan(counts)
    report.sample = _sample(builder, rows)


def _sync_audience(config: Config, store: StateStore, audience: AudienceConfig, report: AudienceReport,
                   mode: RunMode, skip_backfill: bool, allow_mass_exit: bool, stop: _Stop,
                   progress: ProgressReporter, as_of: datetime, on_response: OnResponse | None = None) -> None:
    destination = config.amplitude.destination_id
    builder = OperationBuilder(audience, config.amplitude, destination)
    with LeaseKeeper(store, lease_name(config, audience), config.daemon.lease_ttl_s,
                     wait_s=config.state.lock_wait_s, what=f"audience {audience.name!r}") as lease:
        stop.lease = lease
        row = store.ensure_audience(destination, audience.key, audience.name, audience.kind)
        report.first_sync = row.first_synced_at is None
        run_id = report.run_id = store.start_run(row.id, mode)
        run = AudienceRun(config, store, builder, row.id, run_id, lease.fence, report, stop, progress, on_response)
        run_status, error = "failed", None
        plan: Counter | None = None
        try:
            # 1. What earlier runs left pending goes first.
            earlier = store.pending_count(row.id)
            if earlier:
                report.earlier_pending = earlier
                _deliver(run, store.pending_pages(row.id, before_run=run_id),
                         f"{audience.key}: delivering earlier pending", earlier)
            if not stop():
                # 2-3. Load, diff, plan (one transaction).
                with store.work(row.id) as work:
                    source_skipped = _load(config, audience, work, report, stop, progress, as_of)
                    if not stop():
                        if skip_backfill and report.first_sync:
                            with progress.phase(f"{audience.key}: recording members", counted=False):
                                report.recorded = work.record_as_synced(fence=lease.fence)
                        else:
                            if skip_backfill:
                                report.notes.append("--skip-backfill ignored: this audience was synced before")
                            with progress.phase(f"{audience.key}: diffing and planning", counted=False):
                                guard = None if allow_mass_exit else _mass_exit_guard(audience, report, work)
                                plan = work.plan(run_id, audience.kind, backfill=mode == RunMode.BACKFILL,
                                                 guard=guard, fence=lease.fence)
                                report.add_plan(plan)
                    _count(work, report, source_skipped)
                planned = report.entered + report.exited + report.changed + report.unset + report.resent
                store.record_counts(run_id, rows_read=report.rows_read, entered=report.entered,
                                    exited=report.exited, changed=report.changed, unset=report.unset,
                                    resent=report.resent, pending=planned)
                # 4. Deliver this run's plan.
                if planned and not stop():
                    _deliver(run, store.pending_pages(row.id, run_id=run_id), f"{audience.key}: delivering",
                             planned, plan=plan)
            report.stopped = stop()
            report.pending = store.pending_count(row.id)
            run_status = "stopped" if report.stopped else "partial" if (report.pending or report.rejected) else "ok"
        except AudsyncError as exc:
            error = str(exc)
            if isinstance(exc, MassExitError):
                run_status = "guarded"
                report.guarded = True
            raise
        except Exception as exc:
            error = crash_reason(exc)
            raise
        finally:
            with contextlib.suppress(AudsyncError):
                if error is not None:
                    report.pending = store.pending_count(row.id)
                store.finish_run(
                    run_id, run_status, skipped=dict(report.skipped), error=error, rows_read=report.rows_read,
                    entered=report.entered, exited=report.exited, changed=report.changed, unset=report.unset,
                    resent=report.resent, delivered=report.delivered, rejected=report.rejected,
                    pending=report.pending)


def _run(config: Config, names: list[str] | None, mode: RunMode, *, dry_run: bool, skip_backfill: bool,
         allow_mass_exit: bool, progress: ProgressReporter | None, stop_event: threading.Event | None,
         apply_migrations: bool, on_response: OnResponse | None = None, as_of: datetime | None = None) -> RunReport:
    from .state import migrate

    if as_of is not None and not dry_run:
        # A run records what it sent as the current state: evaluated at another instant, it would
        # send users out of their windows and back.
        raise UsageError("as_of (--as-of) evaluates rules at another instant in a dry run only (--dry-run)")
    if as_of is not None and as_of.tzinfo is None:
        raise UsageError("as_of (--as-of) needs a time zone, as in 2026-12-01T00:00:00Z")
    # One instant for every audience of the run: a rule's windows are measured back from it, and
    # an audience that reads another sees it evaluated at the same time.
    as_of = as_of or datetime.now(timezone.utc)
    # Audiences whose rules read others run after them, so that those members are current.
    selected = config.in_run_order([config.audience(n) for n in names] if names else config.audiences)
    if not dry_run:
        config.require_api_key(mode)
    report = RunReport()
    if apply_migrations:
        report.migrations = migrate.upgrade(config.state.url)
    store = StateStore(config.state.url)
    stop = _Stop(stop_event)
    progress = progress or NO_PROGRESS
    fatal: AudsyncError | None = None
    try:
        for audience in selected:
            entry = AudienceReport(audience.name, audience.key, audience.kind, RunMode.DRY_RUN if dry_run else mode)
            report.audiences.append(entry)
            started = time.monotonic()
            if fatal is not None:
                entry.error, entry.error_exit_code = f"not run: {fatal}", fatal.exit_code
                continue
            if stop():
                entry.stopped = True
                entry.notes.append("not started: stop requested")
                continue
            try:
                if dry_run:
                    _dry_run(config, store, audience, entry, mode, skip_backfill, allow_mass_exit, progress, as_of)
                else:
                    _sync_audience(config, store, audience, entry, mode, skip_backfill, allow_mass_exit, stop,
                                   progress, as_of, on_response)
            except FatalDeliveryError as exc:
                entry.error, entry.error_exit_code = str(exc), exc.exit_code
                fatal = exc  # an invalid API key fails every audience alike
            except AudsyncError as exc:
                entry.error, entry.error_exit_code = str(exc), exc.exit_code
                log.error("%s", exc)
            except Exception as exc:  # a bug, in this audience only: the others still run
                entry.error, entry.error_exit_code = crash_reason(exc), CRASHED
                log.exception("%s: %s; the other audiences go on", audience.key, entry.error,
                              extra={"audience": audience.key})
            finally:
                entry.duration_s = time.monotonic() - started
                stop.lease = None
            for note in entry.notes:
                log.info("%s: %s", audience.key, note)
    finally:
        store.close()
    return report


def run_once(config: Config, *, audiences: list[str] | None = None, dry_run: bool = False,
             skip_backfill: bool = False, allow_mass_exit: bool = False, progress: ProgressReporter | None = None,
             stop_event: threading.Event | None = None, apply_migrations: bool = True,
             on_response: OnResponse | None = None, as_of: datetime | None = None) -> RunReport:
    """One sync pass over every configured audience (or the named ones). `on_response(api, status,
    items)` sees every Amplitude answer (the daemon's metrics). `allow_mass_exit` lets a plan remove
    more than max_exit_fraction of an audience, or follow a source with no rows. `stop_event`, once
    set, stops the run within a quarter of a second: requests in flight are answered and recorded,
    the rest stays pending for the next run. Rules are evaluated as of the run's start, or as of
    `as_of` (an aware datetime) in a dry run."""
    return _run(config, audiences, RunMode.RUN, dry_run=dry_run, skip_backfill=skip_backfill,
                allow_mass_exit=allow_mass_exit, progress=progress, stop_event=stop_event,
                apply_migrations=apply_migrations, on_response=on_response, as_of=as_of)


def backfill(config: Config, audience_name: str, *, dry_run: bool = False, progress: ProgressReporter | None = None,
             stop_event: threading.Event | None = None, apply_migrations: bool = True) -> RunReport:
    """Resend the current value to every current member of one audience (changes and exits are
    planned as in a run)."""
    return _run(config, [audience_name], RunMode.BACKFILL, dry_run=dry_run, skip_backfill=False, allow_mass_exit=False,
                progress=progress, stop_event=stop_event, apply_migrations=apply_migrations)
