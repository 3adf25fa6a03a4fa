"""Read-only questions about one audience's state: counts, rejections, members."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from .base import StoreBase


class StatusQueries(StoreBase):
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
