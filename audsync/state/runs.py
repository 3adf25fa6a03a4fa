"""Audiences per destination and their run history."""

from __future__ import annotations

import time
from typing import Any

import orjson
import sqlalchemy as sa

from .._redact import redact
from .base import StoreBase
from .records import AudienceRow, canonical_json

RUN_COUNTS = ("rows_read", "entered", "exited", "changed", "unset", "resent", "delivered", "rejected", "pending")

INTERRUPTED = ("ended without recording its end: its process was killed, or the state database "
               "refused the last write (a full disk?); what it left planned goes first in the next run")


class Runs(StoreBase):
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
                f"VALUES (:a, :mode, 'running', {self.dialect.now}, 0, '{{}}', 0, 0, 0, 0, 0, 0, 0, 0) RETURNING id"),
                {"a": audience_id, "mode": str(mode)}).first()
        assert row is not None
        return int(row[0])

    def finish_run(self, run_id: int, status: str, *, skipped: dict[str, int] | None = None,
                   error: str | None = None, **counts: int) -> None:
        unknown = set(counts) - set(RUN_COUNTS)
        assert not unknown, unknown
        sets = ", ".join(f"{name} = :{name}" for name in counts)
        params: dict[str, Any] = dict(counts, id=run_id, status=status,
                                      skipped=canonical_json(dict(skipped or {})),
                                      error=redact(error) if error else error)
        with self._conn() as conn:
            conn.execute(sa.text(
                f"UPDATE runs SET status = :status, finished_at = {self.dialect.now}, skipped = :skipped, "
                f"error = :error{', ' + sets if sets else ''} WHERE id = :id"), params)

    def record_counts(self, run_id: int, **counts: int) -> None:
        """The counts a run has reached (its plan): what status shows if it never records its end."""
        assert set(counts) <= set(RUN_COUNTS), counts
        sets = ", ".join(f"{name} = :{name}" for name in counts)
        with self._conn() as conn:
            conn.execute(sa.text(f"UPDATE runs SET {sets} WHERE id = :id"), dict(counts, id=run_id))

    def last_runs(self, audience_id: int, limit: int = 5) -> list[dict[str, Any]]:
        with self._conn(write=False) as conn:
            rows = conn.execute(sa.text(
                "SELECT id, mode, status, started_at, finished_at, skipped, error, "
                + ", ".join(RUN_COUNTS) +
                " FROM runs WHERE audience_id = :a ORDER BY started_at DESC, id DESC LIMIT :n"),
                {"a": audience_id, "n": limit}).mappings().all()
        result = []
        for row in rows:
            entry = dict(row)
            entry["skipped"] = orjson.loads(entry["skipped"] or "{}")
            result.append(entry)
        return result
