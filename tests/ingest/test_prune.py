"""`audsync serve` prunes the ingest tables when it starts (then every hour): events past
keep_events_days and messageIds past the 24 h dedup window go; newer ones stay."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from audsync.state import IngestLog, StateStore, migrate

from .conftest import _rows, write_config


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def track(mid: str, received: float) -> dict:
    return {"messageId": mid, "type": "track", "event": "Clicked", "userId": "user-0001",
            "receivedAt": iso(received), "timestamp": iso(received)}


def test_serve_prunes_old_events_and_old_message_ids_when_it_starts(tmp_path, state_url, servers):
    migrate.upgrade(state_url)
    store = StateStore(state_url)
    try:
        now = time.time()
        IngestLog(store, keep_events_days=30).append([[track("old-event", now - 31 * 86400),
                                                      track("day-old", now - 2 * 86400),
                                                      track("recent", now - 60)]])
    finally:
        store.close()
    proc = servers(write_config(tmp_path, state_url, ingest='write_keys = ["wk-test-0001"]\nforward = false\n'
                                                           "keep_events_days = 30\n"))
    record = proc.wait_for("pruned the ingest tables")
    assert record["deleted"] == {"events": 1, "ingest_dedup": 2}
    assert proc.stop() == 0, proc.output()
    assert [r["message_id"] for r in _rows(state_url, "SELECT message_id FROM events ORDER BY id")] == \
        ["day-old", "recent"]
    assert [r["message_id"] for r in _rows(state_url, "SELECT message_id FROM ingest_dedup")] == ["recent"]
