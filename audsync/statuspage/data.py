"""What the status page shows, read from the state database: `audsync status`'s own data
(audsync.status_report), each audience's latest rejections, and the ingest per minute
(audsync.state.ingest.minute_counts). Shaped here for the templates; no query of its own."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from ..config import AudienceConfig, Config
from ..state import StateStore
from ..state.ingest import minute_counts
from ..status_report import ingest_status, status
from . import charts
from .timefmt import duration, utc

HISTORY_RUNS = 90        # runs charted and tabled per audience: the history shown stays bounded
EXAMPLES = 10            # latest rejected users shown per audience
INGEST_MINUTES = 60
INGEST_REASONS = 5       # rejection reasons charted one by one; the others together
# Runs that read their source: their rows read are the audience's size then (a run that failed or
# stopped before reading has none, and gets no point rather than a false zero).
_READ_SOURCE = frozenset({"ok", "partial", "guarded"})
SOURCE_KINDS = {"sql": "SQL", "file": "file", "rule": "rule", "python": "Python"}


@dataclass(frozen=True)
class Source:
    kind: str                 # in words: "SQL", "file", "rule", "Python"
    text: str                 # the query, the path, the rule as written, the callable
    where: str | None = None  # the SQL source's database URL (shown redacted) or a rule's layout


@dataclass
class AudienceView:
    entry: dict[str, Any]               # as `audsync status --json` has it, with `last_runs` up to HISTORY_RUNS
    source: Source
    examples: list[dict[str, Any]]      # latest rejected users, newest first
    charts: list[charts.Chart] = field(default_factory=list)

    @property
    def last_run(self) -> dict[str, Any] | None:
        return self.entry["last_runs"][0] if self.entry["last_runs"] else None

    @property
    def runs(self) -> list[dict[str, Any]]:
        return self.entry["last_runs"]


@dataclass
class Overview:
    now: float
    audiences: list[AudienceView]
    ingest: dict[str, Any] | None       # as `audsync status --json` has it; None when ingest is not in use
    minutes: dict[str, Any] | None      # minute_counts, when ingest is in use
    ingest_charts: list[charts.Chart] = field(default_factory=list)
    forward_lag: dict[str, float] | None = None   # forward_lag of the minutes
    rejected_last_hour: list[tuple[str, int]] = field(default_factory=list)


def source_of(audience: AudienceConfig) -> Source:
    src = audience.source
    if src.type == "sql":
        return Source(SOURCE_KINDS["sql"], src.query.strip(), src.url)
    if src.type == "file":
        return Source(SOURCE_KINDS["file"], str(src.path))
    if src.type == "rule":
        return Source(SOURCE_KINDS["rule"], src.rule.strip(), f"{src.layout} layout")
    return Source(SOURCE_KINDS.get(src.type, src.type), str(getattr(src, "callable", "")))


def overview(config: Config, store: StateStore, now: float, *, only: AudienceConfig | None = None) -> Overview:
    """Every configured audience (or `only` that one) and, on the whole page, the ingest."""
    chosen = config if only is None else dataclasses.replace(config, audiences=(only,))
    entries = status(chosen, runs=HISTORY_RUNS, now=now, store=store)
    destination = config.amplitude.destination_id
    views = []
    for audience, entry in zip(chosen.audiences, entries):
        row = store.find_audience(destination, audience.key) if entry["last_runs"] or entry["synced"] else None
        examples = store.rejections(row.id, EXAMPLES) if row is not None and entry["rejected"] else []
        views.append(AudienceView(entry, source_of(audience), examples, run_charts(entry["last_runs"])))
    result = Overview(now, views, None, None)
    if only is None:
        result.ingest = ingest_status(config, now=now, store=store)
        if result.ingest is not None and _has_ingest_tables(store):
            result.minutes = minute_counts(store, now, INGEST_MINUTES)
            result.ingest_charts, result.rejected_last_hour = ingest_charts(result.minutes)
            result.forward_lag = forward_lag(result.minutes)
    return result


def _has_ingest_tables(store: StateStore) -> bool:
    """ingest_status answers for a configured ingest before the first `audsync serve` made its
    tables (with zeros); the minutes need the tables."""
    with store._conn(write=False) as conn:
        return sa.inspect(conn).has_table("ingest_forward_minutes")


def run_charts(runs_newest_first: list[dict[str, Any]]) -> list[charts.Chart]:
    """Members per run, then entered / exited / changed / rejected per run, oldest run first."""
    runs = list(reversed(runs_newest_first))
    if not runs:
        return []
    # Short: one title per mark, up to 90 marks a chart (the run history table has the rest).
    when = [f"{utc(r['started_at'])[:16]} UTC, {r['status']}" for r in runs]
    members = [r["rows_read"] - sum(r["skipped"].values()) if r["rows_read"] or r["status"] in _READ_SOURCE
               else None for r in runs]
    result = [charts.line("members", members, [f"{w}: {m:,} members" if m is not None else w
                                               for w, m in zip(when, members)])]
    for name in ("entered", "exited", "changed", "rejected"):
        values = [int(r[name]) for r in runs]
        result.append(charts.bars(name, values, [f"{w}: {v:,} {name}" for w, v in zip(when, values)]))
    return result


def forward_lag(minutes: dict[str, Any]) -> dict[str, float] | None:
    """The forward lag over the window, of the messages forwarded in it: `avg` and `max` seconds;
    None when nothing was forwarded."""
    sent = sum(minutes["forwarded"])
    if not sent:
        return None
    total = sum(avg * n for avg, n in zip(minutes["lag_avg"], minutes["forwarded"]) if avg is not None)
    return {"avg": total / sent, "max": max(lag for lag in minutes["lag_max"] if lag is not None)}


def ingest_charts(minutes: dict[str, Any]) -> tuple[list[charts.Chart], list[tuple[str, int]]]:
    """Accepted, forwarded, and rejected by reason (the most frequent one by one) per minute; and
    the last hour's rejections by reason, most frequent first."""
    start, count = minutes["start"], minutes["minutes"]
    labels = [utc(start + 60 * i)[11:16] for i in range(count)]

    def series(name: str, values: list[int], what: str) -> charts.Chart:
        return charts.bars(name, values, [f"{label} UTC: {v:,} {what}" for label, v in zip(labels, values)])

    result = [series("accepted", minutes["accepted"], "messages stored"),
              series("forwarded", minutes["forwarded"], "messages forwarded to Amplitude")]
    worst = [None if lag is None else round(lag, 2) for lag in minutes["lag_max"]]
    result.append(charts.line("forward lag, slowest message (s)", worst,
                              [f"{label} UTC: " + ("nothing forwarded" if lag is None else f"{lag:,} s at most")
                               for label, lag in zip(labels, worst)], height=60))
    by_reason = sorted(((reason, sum(values)) for reason, values in minutes["rejected"].items()),
                       key=lambda item: (-item[1], item[0]))
    for reason, _ in by_reason[:INGEST_REASONS]:
        result.append(series(f"rejected: {reason}", minutes["rejected"][reason], "rejected"))
    if len(by_reason) > INGEST_REASONS:
        others = [sum(minutes["rejected"][r][i] for r, _ in by_reason[INGEST_REASONS:]) for i in range(count)]
        result.append(series("rejected: other reasons", others, "rejected"))
    return result, by_reason


def run_duration(run: dict[str, Any]) -> str:
    if run["duration_s"] is not None:
        return duration(run["duration_s"])
    return "running" if run["status"] == "running" else "no end recorded"
