"""`audsync status`: per configured audience, its members, last runs, next run, pending and
rejected users and the top rejection reasons, as data (status) and as text (format_status); and
the ingest of `audsync serve`, when it is in use (ingest_status, format_ingest)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from .config import Config
from .state import StateStore, migrate
from .state.ingest import KEEP_REJECTIONS_S, IngestLog
from .state.runs import INTERRUPTED
from .sync import lease_name


def status(config: Config, *, runs: int = 3, now: float | None = None,
           store: StateStore | None = None) -> list[dict[str, Any]]:
    """Per configured audience: members, last runs with counts, next run, pending and rejected
    users and the top rejection reasons. Shows no secret: the destination is a hash. `store`: an
    open store of a migrated state (the status page's, read at every view), else one is opened."""
    from .daemon.schedules import next_run

    now = time.time() if now is None else now
    destination = config.amplitude.destination_id
    own = store is None
    if own:
        store = StateStore(config.state.url) if migrate.current(config.state.url) is not None else None
    reading = store if store is not None and (own or _migrated(store)) else None
    result = []
    try:
        for audience in config.audiences:
            schedule = audience.schedule or config.daemon.default_schedule
            fire = next_run(schedule, datetime.fromtimestamp(now, timezone.utc))
            entry: dict[str, Any] = {
                "name": audience.name, "key": audience.key, "kind": audience.kind, "destination": destination,
                "schedule": schedule, "next_run": fire.timestamp(), "synced": False,
                "members": 0, "pending": 0, "rejected": 0, "top_rejection_reasons": [], "last_runs": [],
                # A rule audience's rule as written (DESIGN.md section 7); None for other sources.
                "rule": audience.source.rule if audience.source.type == "rule" else None,
            }
            row = reading.find_audience(destination, audience.key) if reading else None
            if row is not None:
                entry["synced"] = row.first_synced_at is not None
                entry.update(reading.audience_counts(row.id))
                entry["top_rejection_reasons"] = [
                    {"reason": reason, "users": n} for reason, n in reading.top_rejection_reasons(row.id)]
                entry["last_runs"] = [_run_entry(r) for r in reading.last_runs(row.id, runs)]
                _show_dead_run(reading, lease_name(config, audience), entry["last_runs"], now)
            result.append(entry)
    finally:
        if own and store is not None:
            store.close()
    return result


def _migrated(store: StateStore) -> bool:
    """Whether migrations ever ran on the state (an unmigrated one has no audience to show)."""
    with store._conn(write=False) as conn:
        return sa.inspect(conn).has_table("alembic_version")


def _show_dead_run(store: StateStore, lease: str, runs: list[dict[str, Any]], now: float) -> None:
    """A run still marked running without a live lease on its audience died (killed, or its
    database refused its last writes): shown as interrupted now, not only once the next run
    starts and records it so."""
    if runs and runs[0]["status"] == "running":
        holder = store.lease_info(lease)
        if holder is None or holder.expires_at < now:
            runs[0]["status"], runs[0]["error"] = "interrupted", runs[0]["error"] or INTERRUPTED


def _run_entry(row: dict[str, Any]) -> dict[str, Any]:
    entry = dict(row)
    finished = row.get("finished_at")
    entry["duration_s"] = None if finished is None else round(finished - row["started_at"], 3)
    return entry


def ingest_status(config: Config, *, examples: int = 5, now: float | None = None,
                  store: StateStore | None = None) -> dict[str, Any] | None:
    """The ingest at a glance: backlog, in flight, stored in the last day, rejections by reason
    and the latest examples. None when it is not in use: no write keys configured and no trace
    of ingest in the state database (so that audiences-only setups are not cluttered). Shows no
    secret: a source is a fingerprint of its write key. `store`: as for status()."""
    now = time.time() if now is None else now
    configured = bool(config.ingest.write_keys)
    stats = None
    own = store is None
    if own:
        store = StateStore(config.state.url) if migrate.current(config.state.url) is not None else None
    if store is not None:
        try:
            with store._conn(write=False) as conn:
                migrated = sa.inspect(conn).has_table("ingest_log")
            if migrated:
                stats = IngestLog(store).status(examples=examples, now=now)
        finally:
            if own:
                store.close()
    if not configured and (stats is None or not stats.used):
        return None
    if stats is None:  # configured, never served: the tables come with the first `audsync serve`
        return {"pending": 0, "in_flight": 0, "oldest_pending_at": None, "oldest_pending_age_s": None,
                "stored_last_24h": 0, "rejected": 0, "rejected_by_reason": [], "forward_rejected": 0,
                "forward_rejected_by_reason": [], "latest_rejections": []}
    oldest = stats.oldest_pending_at
    return {
        "pending": stats.pending,
        "in_flight": stats.in_flight,
        "oldest_pending_at": oldest,
        "oldest_pending_age_s": None if oldest is None else round(max(0.0, now - oldest), 3),
        "stored_last_24h": stats.stored_last_day,
        "rejected": stats.rejected_total,
        "rejected_by_reason": [{"reason": r, "messages": n} for r, n in stats.rejected.items()],
        "forward_rejected": stats.forward_rejected_total,
        "forward_rejected_by_reason": [{"reason": r, "messages": n} for r, n in stats.forward_rejected.items()],
        "latest_rejections": [
            {"received_at": e["received_at"], "source": e["source"], "reason": e["reason"],
             "index": e["message_index"], "messageId": e["message_id"], "example": e["example"]}
            for e in stats.examples],
    }


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


EXAMPLE_SHOWN_CHARS = 160  # of a rejected message, per line of the text report (--json has what is stored)


def format_ingest(ingest: dict[str, Any]) -> str:
    """The ingest section of the text report."""
    backlog = f"ingest: {ingest['pending']:,} pending"
    if ingest["oldest_pending_age_s"] is not None:
        backlog += f" (oldest {_age(ingest['oldest_pending_age_s'])} old)"
    lines = [f"{backlog}, {ingest['in_flight']:,} in flight; {ingest['stored_last_24h']:,} stored in the last 24 h",
             f"  rejected at validation: {ingest['rejected']:,}; refused when forwarded: "
             f"{ingest['forward_rejected']:,} (in the last {KEEP_REJECTIONS_S // 86400} days)"]
    for r in ingest["rejected_by_reason"]:
        lines.append(f"  rejected {r['messages']:,}: {r['reason']}")
    for r in ingest["forward_rejected_by_reason"]:
        lines.append(f"  refused by Amplitude {r['messages']:,}: {r['reason']}")
    if ingest["latest_rejections"]:
        lines.append("  latest rejections:")
    for e in ingest["latest_rejections"]:
        example = e["example"] or ""
        if len(example) > EXAMPLE_SHOWN_CHARS:
            example = example[:EXAMPLE_SHOWN_CHARS - 1] + "…"
        lines.append(f"    {_when(e['received_at'])} message {e['index']}"
                     + (f" (messageId {e['messageId']})" if e["messageId"] else "")
                     + (f" from {e['source']}" if e["source"] else "")
                     + f": {e['reason']}")
        if example:
            lines.append(f"      {example}")
    return "\n".join(lines)


def format_status(entries: list[dict[str, Any]]) -> str:
    lines = []
    for e in entries:
        lines.append(f"{e['name']} ({e['key']}, {e['kind']})")
        if e.get("rule"):
            rule_lines = e["rule"].strip().splitlines()
            lines.append(f"  rule: {rule_lines[0]}")
            lines += [f"        {line}" for line in rule_lines[1:]]
        lines.append(f"  members {e['members']:,}, pending {e['pending']:,}, rejected {e['rejected']:,}; "
                     f"next run {_when(e['next_run'])} ({e['schedule']})")
        if not e["last_runs"]:
            lines.append("  never run against this destination")
        for r in e["last_runs"]:
            duration = (f"{r['duration_s']:.1f} s" if r["duration_s"] is not None
                        else "running" if r["status"] == "running" else "no end recorded")
            lines.append(
                f"  {_when(r['started_at'])} {r['mode']} {r['status']} ({duration}): {r['rows_read']:,} read, "
                f"+{r['entered']:,} -{r['exited']:,} ~{r['changed']:,} unset {r['unset']:,}; "
                f"{r['delivered']:,} delivered, {r['rejected']:,} rejected, {r['pending']:,} pending"
                + (f"; error: {r['error']}" if r["error"] else ""))
        for reason in e["top_rejection_reasons"]:
            lines.append(f"  rejected {reason['users']:,}: {reason['reason']}")
    return "\n".join(lines)
