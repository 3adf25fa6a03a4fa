"""minute_counts: the ingest per minute over the last hour, on SQLite and PostgreSQL, from the
tables as IngestLog's own methods leave them (settle records what was forwarded per minute)."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

from audsync.state import StateStore, migrate
from audsync.state.ingest import IngestLog, minute_counts


def _messages(received_at: float, users: list[str]) -> list[dict]:
    at = datetime.fromtimestamp(received_at, timezone.utc).isoformat()
    return [{"messageId": uuid.uuid4().hex, "type": "track", "event": "Seen", "userId": u, "receivedAt": at}
            for u in users]


def test_minute_counts_of_the_last_hour(state_url):
    migrate.upgrade(state_url)
    store = StateStore(state_url)
    try:
        log = IngestLog(store)
        now = time.time()
        at = {"a": now - 55 * 60, "b": now - 20 * 60, "c": now - 1}
        # Before the window: many (the binary search has ground to cover), forwarded since, not counted.
        log.append([_messages(now - 7200, [f"old-{i:03d}" for i in range(120)])])
        first = _messages(at["a"], ["user-a", "user-b", "user-c"])
        log.append([first])
        log.append([_messages(at["b"], ["user-d", "user-e"])])
        log.append([_messages(at["c"], ["user-f"])])
        log.append([first[:1]])  # a resend of a stored messageId is acknowledged, not stored again
        claimed = {m.message["userId"]: m for m in log.claim("w", 1000, 60)}
        forwarded = [i for u, i in claimed.items() if u.startswith("old-") or u in ("user-a", "user-b", "user-d")]
        # Settled in three minutes of the window (by the time of Amplitude's answer, not of arrival);
        # the old messages two hours ago, before it.
        log.settle("w", forwarded[:120], skipped=20, lags=[1.0] * 100, now=now - 7100)
        log.settle("w", forwarded[120:122], lags=[2.0, 4.0], now=at["b"])
        log.settle("w", forwarded[122:], [(claimed["user-e"], "invalid user_properties")], skipped=1, now=at["c"])
        log.release("w", [claimed["user-c"], claimed["user-f"]])
        before = time.time()
        log.record_rejections([{"index": 0, "reason": "no userId"}, {"index": 1, "reason": "no userId"},
                               {"index": 2, "reason": "bad type"}])
        after = time.time()
        counts = minute_counts(store, after)
    finally:
        store.close()
    start = counts["start"]
    assert counts["minutes"] == 60 and start % 60 == 0 and start <= after - 59 * 60 < start + 60

    def minute(ts: float) -> int:
        return int((ts - start) // 60)

    def only(*pairs: tuple[float, int]) -> list[int]:
        values = [0] * 60
        for ts, n in pairs:
            values[minute(ts)] += n
        return values

    assert counts["accepted"] == only((at["a"], 3), (at["b"], 2), (at["c"], 1))
    # Skipped messages (the settings send nothing for them) are not counted as forwarded.
    assert counts["forwarded"] == only((at["b"], 2))
    assert counts["refused"] == only((at["c"], 1))
    assert counts["lag_avg"][minute(at["b"])] == 3.0 and counts["lag_max"][minute(at["b"])] == 4.0
    assert [i for i, lag in enumerate(counts["lag_avg"]) if lag is not None] == [minute(at["b"])]
    assert set(counts["rejected"]) == {"no userId", "bad type"}
    assert sum(counts["rejected"]["no userId"]) == 2 and sum(counts["rejected"]["bad type"]) == 1
    assert {i for i, n in enumerate(counts["rejected"]["no userId"]) if n} <= {minute(before), minute(after)}


def test_minute_counts_of_an_unused_ingest_are_zeros(state_url):
    migrate.upgrade(state_url)
    store = StateStore(state_url)
    try:
        counts = minute_counts(store, time.time(), minutes=15)
    finally:
        store.close()
    assert counts["accepted"] == counts["forwarded"] == counts["refused"] == [0] * 15
    assert counts["lag_avg"] == counts["lag_max"] == [None] * 15
    assert counts["rejected"] == {}
