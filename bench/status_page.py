"""Benchmark: the status page's time on a big state (issue 18): a million members and 10,000 runs.

What it builds, on SQLite (a file under --workdir) and on PostgreSQL (a database
audsync_bench_page_<random> on 127.0.0.1:5432, user postgres, dropped after), through the real
migrations and then bulk SQL:
  audiences  5 (one of --members members, four of --members / 20), --runs runs each (default
             2,000: 10,000 in all),
             each audience with 1% of its size pending and 0.5% rejected (with their rejections)
  ingest     --messages messages stored over the last 24 hours (ingest_dedup; 15% of them in the
             last hour), 2% of the last hour still pending and 0.1% refused by Amplitude in the
             log (with 20,000 older refused rows), what the forwarders settled per minute
             over the day, and 50,000 validation rejections over 30 days (5% in the last hour,
             five reasons)
What it measures, in-process with the daemon's StatusPage (the same object serve and the daemon
use, its store opened once, as they do): the wall time of GET / and of GET /audiences/{key} for
the big audience, the first (cold: a fresh connection pool and, on PostgreSQL, cold plans) and
the median of --repeat more; and the parts of the whole page: `audsync status`'s data for every
audience (status_report.status, 90 runs each), its ingest section (ingest_status), and
minute_counts.

Commands (from the repository root):
  .venv/bin/python bench/status_page.py                       # both states, 1M members
  .venv/bin/python bench/status_page.py --states sqlite --repeat 10
  .venv/bin/python bench/status_page.py --runs 20             # 100 runs in all: what history costs

Results, dated, in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import textwrap
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
AUDIENCES = ["Big Audience", "Second", "Third", "Fourth", "Fifth"]
REASONS = ["userId or anonymousId is required", "type must be one of track, page, screen, identify, group, alias",
           "the message is not a JSON object", "timestamp is not an ISO 8601 time", "event must be a string"]


def series(dialect: str, n: int) -> tuple[str, str]:
    """A WITH prefix and a FROM item giving i = 1..n."""
    if dialect == "postgresql":
        return "", f"generate_series(1, {n}) AS s(i)"
    return f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) ", "s"


def build(url: str, config_path: Path, members: int, messages: int, runs: int) -> None:
    from audsync.config import load
    from audsync.state import migrate
    from audsync.state.db import make_engine

    migrate.upgrade(url)
    config = load(config_path, environ={})
    destination = config.amplitude.destination_id
    now = time.time()
    engine = make_engine(url)
    dialect = engine.dialect.name
    try:
        with engine.begin() as conn:
            def insert(sql: str, rows: int, **params: object) -> None:
                prefix, source = series(dialect, rows)
                conn.execute(sa.text(prefix + sql.replace("{s}", source)), params)

            for number, audience in enumerate(config.audiences, 1):
                size = members if number == 1 else members // 20
                conn.execute(sa.text("INSERT INTO audiences (id, destination, key, name, kind, created_at, "
                                     "first_synced_at) VALUES (:id, :d, :k, :n, 'audience', :t, :t)"),
                             {"id": number, "d": destination, "k": audience.key, "n": audience.name, "t": now - 86400 * 30})
                insert("INSERT INTO members (audience_id, identity, user_id, anonymous_id, value) "
                       "SELECT :a, 'u' || i, '' || i, NULL, 'true' FROM {s}", size, a=number)
                pending, rejected = size // 100, size // 200
                insert("INSERT INTO outbox (audience_id, identity, user_id, anonymous_id, value, change, run_id, status) "
                       "SELECT :a, 'u' || (i + :size), '' || (i + :size), NULL, 'true', 'enter', 1, "
                       "CASE WHEN i <= :p THEN 'pending' ELSE 'rejected' END FROM {s}",
                       pending + rejected, a=number, size=size, p=pending)
                insert("INSERT INTO rejections (audience_id, identity, user_id, anonymous_id, value, change, api, "
                       "reason, run_id, rejected_at) SELECT :a, 'u' || (i + :size + :p), '' || (i + :size + :p), NULL, "
                       "'true', 'enter', 'identify', 'invalid field: user_properties (reason ' || (i % 3) || ')', 1, "
                       ":t - i FROM {s}", rejected, a=number, size=size, p=pending, t=now)
                # one run an hour back from now, oldest first
                insert("INSERT INTO runs (audience_id, mode, status, started_at, finished_at, rows_read, skipped, "
                       "entered, exited, changed, unset, resent, delivered, rejected, pending, error) "
                       "SELECT :a, 'run', CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'ok' END, :t - 3600 * (:n - i), "
                       ":t - 3600 * (:n - i) + 12.5, :size + i % 100, '{}', i % 37, i % 23, 0, 0, 0, "
                       "i % 37 + i % 23, i % 3, 0, CASE WHEN i % 50 = 0 THEN 'source: timed out' END FROM {s}",
                       runs, a=number, t=now, n=runs, size=size)
            # ingest: 85% of the messages spread over the 23 hours before the last one, 15% in it
            last_hour = messages * 15 // 100
            older = messages - last_hour
            insert("INSERT INTO ingest_dedup (message_id, received_at) "
                   "SELECT 'm' || i, :t - 86400 + 82800.0 * i / :n FROM {s}", older, t=now, n=older)
            insert("INSERT INTO ingest_dedup (message_id, received_at) "
                   "SELECT 'h' || i, :t - 3600 + 3600.0 * i / :n FROM {s}", last_hour, t=now, n=last_hour)
            insert("INSERT INTO ingest_log (message_id, source, type, user_id, anonymous_id, partition_key, "
                   "received_at, body, status, attempts, reason, settled_at) "
                   "SELECT 'r' || i, 'wk-x', 'track', '' || i, NULL, 'u' || i, :t - 86400 * 20 + i, '{}', "
                   "'rejected', 1, 'invalid user_properties', :t - 86400 * 20 + i FROM {s}", 20_000, t=now)
            kept = last_hour * 2 // 100
            insert("INSERT INTO ingest_log (message_id, source, type, user_id, anonymous_id, partition_key, "
                   "received_at, body, status, attempts, reason, settled_at) "
                   "SELECT 'h' || (i * 50), 'wk-x', 'track', '' || i, NULL, 'u' || i, :t - 3600 + 3600.0 * i / :n, "
                   "'{}', CASE WHEN i % 20 = 0 THEN 'rejected' ELSE 'pending' END, 1, "
                   "CASE WHEN i % 20 = 0 THEN 'invalid user_properties' END, "
                   "CASE WHEN i % 20 = 0 THEN :t END FROM {s}", kept, t=now, n=kept)
            # what the forwarders settled: a row per minute of the day, as they leave it
            insert("INSERT INTO ingest_forward_minutes (minute, forwarded, skipped, refused, lag_sum, lag_max) "
                   "SELECT :m - 60 * i, :per, 0, i % 2, :per * 0.4, 1.5 FROM {s}", 1440,
                   m=int(now // 60) * 60, per=messages // 1440)
            reasons = " ".join(f"WHEN {k} THEN '{r}'" for k, r in enumerate(REASONS))
            insert("INSERT INTO ingest_rejections (received_at, source, reason, message_index, message_id, example) "
                   f"SELECT :t - 86400 * 30 + (86400.0 * 30 - 3600) * i / 47500, 'wk-x', CASE i % 5 {reasons} END, "
                   "0, NULL, '{}' FROM {s}", 47_500, t=now)
            insert("INSERT INTO ingest_rejections (received_at, source, reason, message_index, message_id, example) "
                   f"SELECT :t - 3600 + 3600.0 * i / 2500, 'wk-x', CASE i % 5 {reasons} END, 0, NULL, '{{}}' "
                   "FROM {s}", 2_500, t=now)
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(config_path: Path, repeat: int) -> dict[str, tuple[float, float]]:
    from audsync.config import load
    from audsync.state.ingest import minute_counts
    from audsync.statuspage import StatusPage
    from audsync.status_report import ingest_status, status

    config = load(config_path, environ={})
    page = StatusPage(config)
    big = config.audiences[0].key
    results = {}
    try:
        parts = {
            "GET /": lambda: page.respond("GET", "/"),
            f"GET /audiences/{big}": lambda: page.respond("GET", f"/audiences/{big}"),
            "  status (90 runs each)": lambda: status(config, runs=90),
            "  ingest_status": lambda: ingest_status(config),
            "  minute_counts": lambda: minute_counts(page.store, time.time()),
        }
        for path in ("/", f"/audiences/{big}"):
            answer = page.respond("GET", path)
            assert answer.status == 200, answer.body[:2000]
            print(f"GET {path}: {len(answer.body) / 1024:.0f} KB of HTML", file=sys.stderr)
        for name, fn in parts.items():
            first = timed(fn)
            rest = [timed(fn) for _ in range(repeat)]
            results[name] = (first, statistics.median(rest))
    finally:
        page.close()
    return results


def write_config(directory: Path, url: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "members.csv").write_text("user_id\n")
    blocks = "".join(f'[[audiences]]\nname = "{name}"\nsource = {{ type = "file", path = "members.csv" }}\n'
                     for name in AUDIENCES)
    path = directory / "audsync.toml"
    path.write_text(textwrap.dedent(f'''
        [state]
        url = "{url}"
        [amplitude]
        api_key = "bench-api-key"
        [ingest]
        write_keys = ["bench-write-key"]
    ''') + blocks)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--states", default="sqlite,postgresql")
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=2000, help="runs per audience (5 audiences)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workdir", default="bench/data/status_page")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    table = []
    for state in args.states.split(","):
        if state == "sqlite":
            db = workdir / "state.db"
            workdir.mkdir(parents=True, exist_ok=True)
            db.unlink(missing_ok=True)
            url, drop = f"sqlite:///{db.resolve()}", None
        else:
            name = f"audsync_bench_page_{uuid.uuid4().hex[:8]}"
            admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            url, drop = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", name
        try:
            config_path = write_config(workdir / state, url)
            built = timed(lambda: build(url, config_path, args.members, args.messages, args.runs))
            print(f"{state}: built in {built:.1f} s", file=sys.stderr)
            for name, (first, median) in measure(config_path, args.repeat).items():
                table.append((state, name, first, median))
                print(f"{state:<11} {name:<34} first {first:6.3f} s   median of {args.repeat} {median:6.3f} s",
                      flush=True)
        finally:
            if drop is not None:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{drop}" WITH (FORCE)')
                admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
