"""The ceiling under `audsync serve`: what each stage of an event's way costs on its own.

Command (from the repository root; about 2 minutes with the defaults):

    .venv/bin/python bench/ingest_storage.py [--count 200000] [--group 2000] [--state sqlite,postgresql]

bench/ingest.py measures serve end to end; this takes the stages apart, in one process, without
HTTP, on the messages bench/ingest.py sends (track calls of about 500 bytes, 100,000 users):

  validate          audsync.ingest.validate.accept on request bodies of 100 events (pure CPU: the
                    size check, normalising, the mapping core's check)
  prepare           IngestLog.prepare: the rows of the three tables (pure CPU)
  translate         the mapping core on the stored messages, as the forwarder does (pure CPU)
  store, driver     the prepared rows written with the database driver alone, in groups of
                    --group messages, one transaction each: ingest_dedup, ingest_log and events
                    with the indexes point 7 of issue 16 asks for (sqlite3 executemany; psycopg
                    COPY, and one INSERT of arrays for the deduplicating upsert). The database's
                    own ceiling for durable storage on this machine.
  store, IngestLog  IngestLog.commit on the same groups: what the group committer does
  claim + settle    IngestLog.claim and IngestLog.settle of everything stored, 2,000 a round:
                    the forwarder's bookkeeping without the HTTP
  forget, driver    deleting the log rows by id with the driver, 2,000 a transaction: the least
                    a forwarder must write per forwarded message

Each figure is events per second and microseconds per event. An event that serve accepts and
forwards goes through every stage but "driver" ones once, on one interpreter; so the sum of their
microseconds per event bounds what one serve process can do end to end, before HTTP.

Results, dated: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest import EVENT, USERS  # noqa: E402  (bench/ingest.py: the same messages)

from audsync.config import AmplitudeSettings  # noqa: E402
from audsync.ingest.validate import accept  # noqa: E402
from audsync.mapping import translate  # noqa: E402
from audsync.state.base import StoreBase  # noqa: E402
from audsync.state.ingest import _EVENT_COLUMNS, _LOG_COLUMNS, IngestLog  # noqa: E402
from audsync.state.migrate import upgrade  # noqa: E402

PER_REQUEST = 100
SETTLE_ROUND = 2000


def request_bodies(count: int) -> list[bytes]:
    """Batch request bodies of PER_REQUEST events, as bench/ingest.py's load generators send."""
    stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    bodies = []
    for start in range(0, count, PER_REQUEST):
        events = [EVENT % (n % USERS, uuid.uuid4(), stamp, n % 50000, 300 + n % 900, n % 250, n % 50000, n % 50000)
                  for n in range(start, min(start + PER_REQUEST, count))]
        bodies.append(b'{"batch":[' + ",".join(events).encode() + b'],"sentAt":"' + stamp.encode() + b'"}')
    return bodies


def timed(label: str, count: int, work) -> dict:
    started = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - started
    row = {"stage": label, "events/s": count / seconds, "us/event": seconds / count * 1e6}
    print(f"  {label:<24} {row['events/s']:>12,.0f} events/s {row['us/event']:>8.1f} us/event", flush=True)
    return {"row": row, "result": result}


def fresh_database(state: str, folder: Path, pg_url: str) -> tuple[str, Callable[[], None]]:
    if state == "sqlite":
        url = f"sqlite:///{folder / f'ingest-{uuid.uuid4().hex[:6]}.db'}"
        return url, lambda: None
    import psycopg
    name = f"audsync_bench_storage_{uuid.uuid4().hex[:8]}"
    admin = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return pg_url.rsplit("/", 1)[0] + "/" + name, drop


def store_with_driver(store: StoreBase, groups) -> None:
    with store.engine.connect() as sa_conn:
        raw = sa_conn.connection.driver_connection
        for group in groups:
            seen = [(m, r) for p in group for m, r in zip(p.message_ids, p.received_at)]
            log_rows = [row for p in group for row in p.log_rows]
            event_rows = [row for p in group for row in p.event_rows if row is not None]
            if store.dialect.name == "sqlite":
                raw.execute("BEGIN IMMEDIATE")
                raw.executemany("INSERT INTO ingest_dedup (message_id, received_at) VALUES (?, ?) "
                                "ON CONFLICT (message_id) DO NOTHING", seen)
                raw.executemany(f"INSERT INTO ingest_log ({', '.join(_LOG_COLUMNS)}) "
                                f"VALUES ({', '.join('?' * len(_LOG_COLUMNS))})", log_rows)
                raw.executemany(f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) "
                                f"VALUES ({', '.join('?' * len(_EVENT_COLUMNS))})", event_rows)
                raw.execute("COMMIT")
            else:
                with raw.cursor() as cursor:
                    cursor.execute("INSERT INTO ingest_dedup (message_id, received_at) "
                                   "SELECT * FROM unnest(%s::text[], %s::float8[]) ON CONFLICT DO NOTHING",
                                   ([m for m, _ in seen], [r for _, r in seen]))
                    for table, columns, rows in (("ingest_log", _LOG_COLUMNS, log_rows),
                                                 ("events", _EVENT_COLUMNS, event_rows)):
                        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                            for row in rows:
                                copy.write_row(row)
                raw.commit()


def forget_with_driver(store: StoreBase) -> int:
    with store.engine.connect() as sa_conn:
        raw = sa_conn.connection.driver_connection
        ids = [row[0] for row in raw.execute("SELECT id FROM ingest_log ORDER BY id").fetchall()]
        if store.dialect.name == "postgresql":
            raw.commit()  # the read's transaction (serve's sqlite3 connections are in autocommit)
        for start in range(0, len(ids), SETTLE_ROUND):
            chunk = ids[start:start + SETTLE_ROUND]
            if store.dialect.name == "sqlite":
                raw.execute("BEGIN IMMEDIATE")
                raw.executemany("DELETE FROM ingest_log WHERE id = ?", [(i,) for i in chunk])
                raw.execute("COMMIT")
            else:
                raw.execute("DELETE FROM ingest_log WHERE id = ANY(%s)", (chunk,))
                raw.commit()
    return len(ids)


def claim_and_settle(log: IngestLog) -> int:
    settled = 0
    while claimed := log.claim("bench", SETTLE_ROUND, 60.0):
        log.settle("bench", claimed, lags=[0.0] * len(claimed))
        settled += len(claimed)
    return settled


def run_state(state: str, args, messages: list[list[dict]], folder: Path) -> list[dict]:
    print(f"{state}:", flush=True)
    rows = []
    per_group = max(1, args.group // PER_REQUEST)
    for name, writer in (("store, driver", "driver"), ("store, IngestLog", "log")):
        url, drop = fresh_database(state, folder, args.pg_url)
        try:
            upgrade(url)
            store = StoreBase(url, sqlite_cache_mb=8)  # serve's cache size
            log = IngestLog(store)
            prepared = [log.prepare(batch, "wk-bench") for batch in messages]
            groups = [prepared[i:i + per_group] for i in range(0, len(prepared), per_group)]
            if writer == "driver":
                rows.append(timed(f"{state} {name}", args.count, lambda: store_with_driver(store, groups))["row"])
                rows.append(timed(f"{state} forget, driver", args.count, lambda: forget_with_driver(store))["row"])
            else:
                rows.append(timed(f"{state} {name}", args.count,
                                  lambda: [log.commit(group) for group in groups])["row"])
                rows.append(timed(f"{state} claim + settle", args.count, lambda: claim_and_settle(log))["row"])
            store.close()
        finally:
            drop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200_000, help="events")
    parser.add_argument("--group", type=int, default=2000, help="events per transaction when storing")
    parser.add_argument("--state", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=os.environ.get("AUDSYNC_BENCH_PG_URL",
                                                           "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    settings = AmplitudeSettings(api_key="bench-api-key")
    now = datetime.now(timezone.utc)
    bodies = request_bodies(args.count)
    print(f"ingest storage bench: {args.count:,} events, {args.group:,} per transaction; {os.cpu_count()} CPUs")
    print("pure CPU:", flush=True)
    validated = timed("validate", args.count,
                      lambda: [accept(orjson.loads(body), "batch", now, settings).messages for body in bodies])
    messages = validated["result"]
    assert sum(len(batch) for batch in messages) == args.count, "the bench's messages must all be valid"
    with tempfile.TemporaryDirectory(prefix="audsync-bench-storage-") as folder:
        probe = IngestLog(StoreBase(f"sqlite:///{folder}/probe.db"))  # prepare touches no database
        timed("prepare", args.count, lambda: [probe.prepare(batch, "wk-bench") for batch in messages])
        stored = [orjson.loads(row[7]) for batch in messages for row in probe.prepare(batch, "wk-bench").log_rows]
        timed("translate", args.count, lambda: [translate(message, settings) for message in stored])
        probe.store.close()
        for state in args.state.split(","):
            run_state(state.strip(), args, messages, Path(folder))


if __name__ == "__main__":
    main()
