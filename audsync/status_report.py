"""`audsync status`: per configured audience, its members, last runs, next run, pending and
rejected users and the top rejection reasons, as data (status) and as text (format_status)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from .config import Config
from .state import StateStore, migrate
from .state.runs import INTERRUPTED
from .sync import lease_name


def status(config: Config, *, runs: int = 3, now: float | None = None) -> list[dict[str, Any]]:
    """Per configured audience: members, last runs with counts, next run, pending and rejected
    users and the top rejection reasons. Shows no secret: the destination is a hash."""
    from .daemon.schedules import next_run

    now = time.time() if now is None else now
    destination = config.amplitude.destination_id
    initialised = migrate.current(config.state.url) is not None
    store = StateStore(config.state.url) if initialised else None
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
            row = store.find_audience(destination, audience.key) if store else None
            if row is not None:
                entry["synced"] = row.first_synced_at is not None
                entry.update(store.audience_counts(row.id))
                entry["top_rejection_reasons"] = [
                    {"reason": reason, "users": n} for reason, n in store.top_rejection_reasons(row.id)]
                entry["last_runs"] = [_run_entry(r) for r in store.last_runs(row.id, runs)]
                _show_dead_run(store, lease_name(config, audience), entry["last_runs"], now)
            result.append(entry)
    finally:
        if store is not None:
            store.close()
    return result


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


def format_status(entries: list[dict[str, Any]]) -> str:
    def when(ts: float | None) -> str:
        return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))

    lines = []
    for e in entries:
        lines.append(f"{e['name']} ({e['key']}, {e['kind']})")
        if e.get("rule"):
            rule_lines = e["rule"].strip().splitlines()
            lines.append(f"  rule: {rule_lines[0]}")
            lines += [f"        {line}" for line in rule_lines[1:]]
        lines.append(f"  members {e['members']:,}, pending {e['pending']:,}, rejected {e['rejected']:,}; "
                     f"next run {when(e['next_run'])} ({e['schedule']})")
        if not e["last_runs"]:
            lines.append("  never run against this destination")
        for r in e["last_runs"]:
            duration = (f"{r['duration_s']:.1f} s" if r["duration_s"] is not None
                        else "running" if r["status"] == "running" else "no end recorded")
            lines.append(
                f"  {when(r['started_at'])} {r['mode']} {r['status']} ({duration}): {r['rows_read']:,} read, "
                f"+{r['entered']:,} -{r['exited']:,} ~{r['changed']:,} unset {r['unset']:,}; "
                f"{r['delivered']:,} delivered, {r['rejected']:,} rejected, {r['pending']:,} pending"
                + (f"; error: {r['error']}" if r["error"] else ""))
        for reason in e["top_rejection_reasons"]:
            lines.append(f"  rejected {reason['users']:,}: {reason['reason']}")
    return "\n".join(lines)
