"""Benchmark: audience sync at 1M / 10M members, first sync then a 1% churn incremental sync.

What it measures (DESIGN.md section 4, issue 4 point 12): `audsync run` as a real subprocess per
phase, against a lean loopback fake Amplitude in its own process
(`python -m audsync.testing.fake_amplitude --lean --port P`), for every combination of
  size      --sizes (default 1000000)
  source    file (CSV) | sql (a SQLite table)                       --sources file,sql
  state     sqlite (a file under the work dir) | postgresql         --states sqlite,postgresql
            (a database audsync_bench_<random> on 127.0.0.1:5432, user postgres, dropped after)
and two phases per combination, on a fresh state database:
  first        every member is sent `{key: true}`
  incremental  0.5% of the members left, as many new ones entered (1% churn): only those are sent
Wall time is measured around the subprocess; peak RSS is its ru_maxrss from os.wait4 in a small
wrapper process (the fake Amplitude and the PostgreSQL server are not included). The wrapper also
gives audsync a pseudo-terminal for stderr, so that it draws its progress phases (loading, indexing,
diffing and planning, delivering), and samples its VmRSS every 20 ms: each phase's wall time and
peak RSS come from those.

Sources are generated once, in shuffled order, under --workdir (default /tmp/audsync-bench) and
reused by later invocations: members_<N>.csv / members_<N>_churn.csv and src_<N>.db with tables
members and members_churn.

Commands:
  /work/venv/bin/python bench/sync.py                                   # 1M, all 4 combinations
  /work/venv/bin/python bench/sync.py --sizes 10000000 --sources file --states sqlite
  /work/venv/bin/python bench/sync.py --repeat 3                        # medians of 3 runs

Prints one line per (size, source, state, phase) as it goes, then a table:
  size  source  state  phase  wall_s  peak_rss_mb  sent  items/s
and, per row, where the time went: each progress phase's seconds and peak RSS, and the time
outside them (starting Python, migrations, leases, committing the run).
`sent` is the number of items the fake Amplitude accepted during the phase. With --repeat > 1
wall_s and peak_rss_mb are medians. The yardstick printed next to the first sync is the
official Amplitude SDK's ~15,000 identifies/s (reference/performance-notes.md): its time for the
same number of identifies and our speed-up against it.

Runs on the 2-cpu development machine. 1M: medians of 3 (2026-11-29, first session):
      size  source state      phase        wall_s peak_rss_mb  vs SDK (~15,000/s)
 1,000,000  file   sqlite     first          10.6         455  6.3x
 1,000,000  file   sqlite     incremental     3.0         316
 1,000,000  file   postgresql first          11.7         383  5.7x
 1,000,000  file   postgresql incremental     3.2         272
 1,000,000  sql    sqlite     first          10.8         410  6.2x
 1,000,000  sql    sqlite     incremental     3.4         273
 1,000,000  sql    postgresql first          12.2         338  5.5x
 1,000,000  sql    postgresql incremental     3.5         232
10M (2026-11-29, second session, on a day when bench/mapping.py ran 5% slower than the first):
each run listed; PostgreSQL file 4 runs (the 4th with a 120 s pause between first and
incremental, which changed nothing), sql 2 runs, SQLite 1 run.
10,000,000  file   sqlite     first         110.7         513  6.0x
10,000,000  file   sqlite     incremental    24.9         454
10,000,000  file   postgresql first         127.5 119.8 119.1 113.6   520-532  5.2x-5.9x
10,000,000  file   postgresql incremental    29.3  29.4  29.5  29.5    379-387
10,000,000  sql    sqlite     first         108.0         469  6.2x
10,000,000  sql    sqlite     incremental    26.0         397
10,000,000  sql    postgresql first         121.6 124.5         429-432  5.4x-5.5x
10,000,000  sql    postgresql incremental    33.2  29.9         262-264
(The first session's single 10M runs: 101-104 s / 22-24 s on SQLite, 112 s / 27-28 s on PostgreSQL.)
Where the time went at 10M (seconds, peak RSS in MB):
  file sqlite first      loading 3.2 (380), indexing 8.0 (413), diffing and planning 14.6 (477),
                         delivering 80.0 (514), outside the phases 5.0
  file sqlite incr.      loading 3.6 (393), indexing 8.0 (455), diffing and planning 8.7 (315),
                         delivering 1.4 (449), outside 3.2
  file postgresql first  loading 3.0 (389), indexing 8.0 (277), diffing and planning 23.3 (279),
                         delivering 83.9 (532), outside 1.6
  file postgresql incr.  loading 2.9 (379), indexing 12.0 (281), diffing and planning 10.8 (278),
                         delivering 2.4 (344), outside 1.3
  sql  postgresql incr.  loading 5.7 (214), indexing 11.0 (214), diffing and planning 9.6 (201),
                         delivering 2.4 (264), outside 1.2
2026-11-29, third session: this machine ran 2.5-3x slower all day (bench/mapping.py 29,145 msg/s
against 88,734 the day before; `python3 -c "sum(range(10**8))"` 2.0-3.1 s), so only comparisons
made the same day mean anything. PostgreSQL no longer folds the whole source into a table of
its own before the diff: the diff joins the staged rows with the members and folds only the
users that changed, an audience's user count comes from the plan, a first sync writes the fold
once in key order and inserts it without a sort, and the plan counts its rows as it writes them.
file/PostgreSQL at 10M, same day, before (35bc648) -> after:
  first        382.4 -> 332.7 s   indexing 26.6 -> 25.9 s, diffing and planning 75.8 -> 47.2 s,
                                  delivering 265.3 -> 246.8 s
  incremental   79.9 ->  46.8 s   indexing 28.4 -> 0.7 s, diffing and planning 33.5 -> 27.0 s
file/SQLite the same day: first 278.3 s (diffing and planning 28.9 s, delivering 215.2 s),
incremental 54.3 s. sql/PostgreSQL after the change, same day: first 302.3 s, incremental 39.2 s
(loading 12.3 s, indexing 0.4 s, diffing and planning 18.1 s, delivering 5.6 s).
2026-11-29, fourth session (bench/mapping.py 80,000-84,000 msg/s, 5-10% under its usual speed,
yet this benchmark's unchanged code ran 24-46% slower than in the second session). Before the
day's changes (6d22f92), file: PostgreSQL first 194.0 s (indexing 20.7, diffing and planning
33.3, delivering 133.3), incremental 28.3 s; SQLite first 154.1 s, incremental 32.9 s. The PostgreSQL
settle now sends its ids as one JSON text and inserts entering users without an upsert, and the
delivery loop builds a user's identify without hashing message ids it does not carry. 10M first
sync, file/PostgreSQL, old and new code alternated: 230.9 / 174.6 s and 195.5 / 160.4 s; audsync's
own CPU 157.6 / 102.4 s and 133.2 / 91.0 s; PostgreSQL's 147.4 / 139.5 s and 127.3 / 127.9 s.
After, the whole matrix in one invocation:
10,000,000  file   postgresql first         151.4         472  4.4x
10,000,000  file   postgresql incremental    29.4         377
10,000,000  file   sqlite     first         147.5         527  4.5x
10,000,000  file   sqlite     incremental    32.8         464
10,000,000  sql    postgresql first         139.7         436  4.8x
10,000,000  sql    postgresql incremental    30.9         255
10,000,000  sql    sqlite     first         137.5         473  4.8x
10,000,000  sql    sqlite     incremental    37.7         401
  file postgresql first  loading 4.5, indexing 14.4, diffing and planning 29.9, delivering 100.2, outside 2.5
  file sqlite first      loading 5.3, indexing 10.9, diffing and planning 18.5, delivering 108.4, outside 4.4
  file postgresql incr.  loading 4.5, indexing 0.4, diffing and planning 18.7, delivering 4.0, outside 1.8
Then, with a first sync's plan counted by the insert's row count instead of RETURNING (file only;
bench/mapping.py 81,594 msg/s just before):
10,000,000  file   postgresql first         140.1         505  4.8x
10,000,000  file   postgresql incremental    27.2         387
10,000,000  file   sqlite     first         149.7         546  4.5x
10,000,000  file   sqlite     incremental    36.4         435
  file postgresql first  loading 4.0, indexing 14.6, diffing and planning 25.9, delivering 93.1, outside 2.5
2026-11-29, fifth session (bench/mapping.py 66,800-70,000 msg/s against its usual 88,700). Before
the session's changes (b4afc0e), file: SQLite first 138.2 s (delivering 95.8), incremental 35.6 s;
PostgreSQL first 150.4 s (delivering 94.5), incremental 27.1 s. Identifies are now encoded from
byte templates, SQLite hands outbox pages over as one JSON text, PostgreSQL settles acknowledged
key ranges instead of ids (jit off), a SQLite first sync counts its plan by row count and closes
its work connection instead of dropping the staged tables, and a diff without open outbox rows
does not look members up there. After, the whole matrix in one invocation:
10,000,000  file   postgresql first         119.9         445  5.6x
10,000,000  file   postgresql incremental    27.5         388
10,000,000  file   sqlite     first         109.8         598  6.1x
10,000,000  file   sqlite     incremental    31.7         570
10,000,000  sql    postgresql first         135.1         381  4.9x
10,000,000  sql    postgresql incremental    32.8         215
10,000,000  sql    sqlite     first         112.6         535  5.9x
10,000,000  sql    sqlite     incremental    33.9         531
  file postgresql first  loading 4.9, indexing 18.1, diffing and planning 22.3, delivering 72.1, outside 2.4
  file sqlite first      loading 5.9, indexing 9.3, diffing and planning 19.0, delivering 74.0, outside 1.6
  file sqlite incr.      loading 6.1, indexing 9.7, diffing and planning 12.1, delivering 2.3, outside 1.5
  sql  postgresql first  loading 10.2, indexing 20.2, diffing and planning 25.9, delivering 76.2, outside 2.5
The same matrix again half an hour later (12:37-12:47, bench/mapping.py 69,500 msg/s before and after):
10,000,000  file   postgresql first         115.3         449  5.8x
10,000,000  file   postgresql incremental    28.2         385
10,000,000  file   sqlite     first         101.8         589  6.5x
10,000,000  file   sqlite     incremental    29.2         565
10,000,000  sql    postgresql first         117.9         381  5.7x
10,000,000  sql    postgresql incremental    29.0         215
10,000,000  sql    sqlite     first         107.3         560  6.2x
10,000,000  sql    sqlite     incremental    32.7         531
  sql  sqlite incr.      loading 9.7, indexing 8.4, diffing and planning 11.3, delivering 1.9, outside 1.4
Then, with the source read on a helper thread while its chunks are written (sql/SQLite only):
10,000,000  sql    sqlite     first         111.3         538  6.0x
10,000,000  sql    sqlite     incremental    30.9         539
  sql  sqlite incr.      loading 6.9, indexing 8.8, diffing and planning 11.9, delivering 2.0, outside 1.4
2026-11-29, sixth session (bench/mapping.py 81,300-86,500 msg/s). The fifth session's final code
(6388911), the whole matrix in one invocation, 13:23-13:36, right after the machine started:
10,000,000  file   postgresql first         125.2         441  5.3x
10,000,000  file   postgresql incremental    28.6         413
10,000,000  file   sqlite     first         117.7         621  5.7x
10,000,000  file   sqlite     incremental    29.4         613
10,000,000  sql    postgresql first         146.1         395  4.6x
10,000,000  sql    postgresql incremental    40.7         223
10,000,000  sql    sqlite     first         125.8         549  5.3x
10,000,000  sql    sqlite     incremental    27.9         544
  file postgresql first  loading 4.7, indexing 17.2, diffing and planning 28.3, delivering 72.6, outside 2.5
  sql  postgresql first  loading 12.4, indexing 17.2, diffing and planning 26.4, delivering 87.0, outside 3.1
  sql  postgresql incr.  loading 12.7, indexing 0.5, diffing and planning 20.0, delivering 5.1, outside 2.3
Then PostgreSQL's COPY took chunks of user ids as one text instead of row by row (PostgreSQL only):
10,000,000  file   postgresql first         122.0         464  5.5x
10,000,000  file   postgresql incremental    30.9         434
10,000,000  sql    postgresql first         142.2         391  4.7x
10,000,000  sql    postgresql incremental    35.8         227
  sql  postgresql incr.  loading 11.1, indexing 0.4, diffing and planning 17.1, delivering 5.1, outside 2.2
And the whole matrix again, 14:26-14:38, bench/mapping.py 83,571 msg/s just before:
10,000,000  file   postgresql first         139.9         453  4.8x
10,000,000  file   postgresql incremental    27.0         426
10,000,000  file   sqlite     first         121.9         619  5.5x
10,000,000  file   sqlite     incremental    25.7         592
10,000,000  sql    postgresql first         148.6         400  4.5x
10,000,000  sql    postgresql incremental    34.8         227
10,000,000  sql    sqlite     first         125.6         543  5.3x
10,000,000  sql    sqlite     incremental    30.5         533
  file postgresql first  loading 5.4, indexing 16.3, diffing and planning 20.7, delivering 94.2, outside 3.2
  file sqlite first      loading 4.2, indexing 9.1, diffing and planning 16.0, delivering 90.8, outside 1.8
  sql  postgresql incr.  loading 10.6, indexing 0.5, diffing and planning 16.2, delivering 5.7, outside 1.7
  sql  sqlite incr.      loading 7.6, indexing 9.6, diffing and planning 9.7, delivering 2.1, outside 1.6
Delivering the same ten million identifies took 72.6-94.2 s within the hour, with the same code.
PostgreSQL's statement log (log_min_duration_statement, set for the run and reset after) for the
file/PostgreSQL pair: first sync COPY 4.0 s, the sorted fold into a temporary table 14.0 s, the plan's
insert of 10M rows into the outbox 20.7 s; incremental COPY 5.4 s, the plan (one hash join) 16.7 s,
the outbox probe and the members count 1.0 s and 0.6 s (the outbox holds ten million dead rows
until autovacuum has passed).
PostgreSQL 15 with its default settings (shared_buffers 128 MB, work_mem 4 MB; a larger work_mem
made the fold and the plan's sort slower here, not faster). No autovacuum worker ran during the
third file/PostgreSQL run (pg_stat_activity polled every second).
2026-12-05, seventh session, a slow day (bench/mapping.py 23,000 msg/s against its usual 88,700;
unchanged code ran file/SQLite 1.6x slower than on 2026-11-29). Outbox pages now go to the
Deliverer as Bundles, SQLite settles key ranges, and the Settler joins the ranges of requests
that follow each other. The sixth session's final code (e6d3002), file/SQLite only:
10,000,000  file   sqlite     first         194.7         578  3.4x
10,000,000  file   sqlite     incremental    53.9         540
  file sqlite first      loading 9.4, indexing 12.7, diffing and planning 45.7, delivering 122.1, outside 4.8
After, the whole matrix in one invocation (20:01-20:22):
10,000,000  file   sqlite     first         158.5         589  4.2x
10,000,000  file   sqlite     incremental    52.3         574
10,000,000  file   postgresql first         187.9         456  3.5x
10,000,000  file   postgresql incremental    42.2         405
10,000,000  sql    sqlite     first         150.3         547  4.4x
10,000,000  sql    sqlite     incremental    58.5         538
10,000,000  sql    postgresql first         199.0         401  3.3x
10,000,000  sql    postgresql incremental    53.5         228
  file sqlite first      loading 10.2, indexing 14.9, diffing and planning 48.3, delivering 81.9, outside 3.2
  file postgresql first  loading 7.6, indexing 31.1, diffing and planning 48.2, delivering 97.7, outside 3.4
  sql  postgresql incr.  loading 18.3, indexing 0.6, diffing and planning 24.4, delivering 7.1, outside 3.1
(The "vs SDK" column still divides by the SDK's speed measured on a usual day; the SDK was not
measured on this slow day.)
2026-12-05, eighth session, in the evening, a usual-speed day (bench/mapping.py 87,500 msg/s).
No code change; the seventh session's final code (80a2aed), the whole matrix twice, one invocation
each (about 20:55 and 21:35):
10,000,000  file   sqlite     first          52.9   56.3   604-619  12.6x 11.8x
10,000,000  file   sqlite     incremental    19.4   21.8   610-613
10,000,000  file   postgresql first          69.3   72.7   456-497   9.6x  9.2x
10,000,000  file   postgresql incremental    18.7   19.2   408-425
10,000,000  sql    sqlite     first          51.8   55.3   537-539  12.9x 12.1x
10,000,000  sql    sqlite     incremental    20.2   22.4   536-538
10,000,000  sql    postgresql first          68.9   70.8   400-403   9.7x  9.4x
10,000,000  sql    postgresql incremental    22.6   23.4   228-230
  file sqlite first      loading 2.9, indexing 7.6, diffing and planning 15.0, delivering 26.4, outside 1.0
  file sqlite incr.      loading 2.9, indexing 6.8, diffing and planning 7.6, delivering 1.3, outside 0.9
  file postgresql first  loading 2.9, indexing 12.2, diffing and planning 18.8, delivering 34.1, outside 1.4
  file postgresql incr.  loading 3.0, indexing 0.2, diffing and planning 11.5, delivering 2.9, outside 1.2
  sql  postgresql first  loading 6.1, indexing 11.2, diffing and planning 16.9, delivering 33.4, outside 1.4
  sql  postgresql incr.  loading 6.5, indexing 0.2, diffing and planning 11.8, delivering 2.9, outside 1.1
The sixth session's code (e6d3002) against 80a2aed, file/SQLite, alternated 2x the same evening:
  first        61.4 62.3 -> 48.7 50.8 s   delivering 37.5 38.7 -> 25.2 27.3 s
  incremental  18.0 18.8 -> 19.0 19.2 s
1M, medians of 3, the same evening: first 6.4 (file/SQLite), 7.7 (file/PostgreSQL), 6.6
(sql/SQLite), 7.9 s (sql/PostgreSQL); incremental 3.0, 2.5, 3.0, 2.7 s; peak RSS 227-430 MB.
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from pathlib import Path

SDK_IDENTIFIES_PER_S = 15_000
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
AUDIENCE = "Bench Members"
AUDIENCE_KEY = "bench_members"


def ids_for(n: int) -> tuple[list[str], list[str]]:
    """The first and the churned member lists, both shuffled (sources are rarely sorted)."""
    import numpy as np

    rng = np.random.default_rng(42)
    base = np.arange(n, dtype=np.int64)
    keep = base[base % 200 != 0]                   # 0.5% exit
    entered = np.arange(n, n + n // 200, dtype=np.int64)  # 0.5% enter
    churn = np.concatenate([keep, entered])
    rng.shuffle(base)
    rng.shuffle(churn)
    return [f"user{i:010d}" for i in base.tolist()], [f"user{i:010d}" for i in churn.tolist()]


def generate(workdir: Path, n: int) -> None:
    csv_first, csv_churn = workdir / f"members_{n}.csv", workdir / f"members_{n}_churn.csv"
    db = workdir / f"src_{n}.db"
    if csv_first.exists() and csv_churn.exists() and db.exists():
        return
    started = time.monotonic()
    first, churn = ids_for(n)
    for path, ids in ((csv_first, first), (csv_churn, churn)):
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write("user_id\n")
            for i in range(0, len(ids), 100_000):
                f.write("\n".join(ids[i:i + 100_000]))
                f.write("\n")
        tmp.rename(path)
    tmp_db = db.with_suffix(".tmp")
    tmp_db.unlink(missing_ok=True)
    con = sqlite3.connect(tmp_db)
    con.execute("PRAGMA journal_mode = OFF")
    con.execute("PRAGMA synchronous = OFF")
    for table, ids in (("members", first), ("members_churn", churn)):
        con.execute(f"CREATE TABLE {table} (user_id TEXT NOT NULL)")
        for i in range(0, len(ids), 100_000):
            con.executemany(f"INSERT INTO {table} VALUES (?)", ((u,) for u in ids[i:i + 100_000]))
    con.commit()
    con.close()
    tmp_db.rename(db)
    print(f"# generated sources for {n:,} members in {time.monotonic() - started:.1f} s", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LeanFake:
    """The fake Amplitude in its own process; its GET /_stats (not Amplitude's) counts what arrived."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "audsync.testing.fake_amplitude", "--lean", "--port", str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        if not self.proc.stdout.readline():  # "fake Amplitude on ..." once it listens
            raise SystemExit(f"the fake Amplitude did not start:\n{self.proc.stderr.read()}")
        self.url = f"http://127.0.0.1:{self.port}"

    def items(self) -> int:
        with urllib.request.urlopen(f"{self.url}/_stats", timeout=10) as answer:
            import json

            return int(json.loads(answer.read())["items_received"])

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def pg_create() -> str:
    import sqlalchemy as sa

    name = f"audsync_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def pg_drop(url: str) -> None:
    import sqlalchemy as sa

    name = url.rsplit("/", 1)[1]
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def write_config(run_dir: Path, state_url: str, fake_url: str, source: str, n: int, churn: bool,
                 workdir: Path) -> Path:
    suffix = "_churn" if churn else ""
    if source == "file":
        src = f'{{ type = "file", path = "{workdir / f"members_{n}{suffix}.csv"}" }}'
    else:
        src = (f'{{ type = "sql", url = "sqlite:///{workdir / f"src_{n}.db"}", '
               f'query = "SELECT user_id FROM members{suffix}" }}')
    path = run_dir / "audsync.toml"
    path.write_text(textwrap.dedent(f'''
        [state]
        url = "{state_url}"
        [amplitude]
        api_key = "test-api-key-123"
        endpoint = "{fake_url}"
        [[audiences]]
        name = "{AUDIENCE}"
        source = {src}
    '''))
    return path


# A progress frame's label: "key: loading [###--] 1/2 (..)", "key: loading: 1,000 (..)" or
# "key: diffing and planning (12.3 s)".
_LABEL = r"^(?P<label>.+?)(?: \[|: \d[\d,]* \(| \(\d)"


def measure(argv: list[str]) -> None:
    """Run argv with its stderr on a pseudo-terminal, so that audsync draws its progress phases;
    print one JSON line: exit code, ru_maxrss, and each phase's span and peak RSS (VmRSS sampled
    every 20 ms). Runs in its own process: Linux carries the forking process's RSS high-water mark
    into the child's ru_maxrss, and the benchmark's process held every generated id."""
    import json
    import pty
    import re
    import threading

    master, slave = pty.openpty()
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=sys.stderr.fileno(), stderr=slave)  # its output to the log
    os.close(slave)
    samples: list[tuple[float, int]] = []
    frames: list[tuple[float, str, bool]] = []   # (time, label, final)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                with open(f"/proc/{proc.pid}/status") as status:
                    for line in status:
                        if line.startswith("VmRSS:"):
                            samples.append((time.monotonic(), int(line.split()[1])))
            except OSError:
                return
            done.wait(0.02)

    def read() -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:      # EIO once the child has closed its end
                return
            if not chunk:
                return
            now = time.monotonic()
            parts = (pending + chunk).split(b"\r\x1b[2K")
            # Frames are flushed whole and end with ")" (or ")\n" when final): a part that does
            # not is the start of a frame still arriving.
            pending = parts.pop() if not parts[-1].rstrip().endswith(b")") else b""
            for part in parts:
                text = part.decode(errors="replace").replace("\r", "")
                match = re.match(_LABEL, text.strip())
                if match:
                    frames.append((now, match["label"], ")\n" in text))

    threads = [threading.Thread(target=sample, daemon=True), threading.Thread(target=read, daemon=True)]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    ended = time.monotonic()
    done.set()
    for t in threads:
        t.join(5)
    phases: list[dict] = []
    for when, label, final in frames:
        if not phases or phases[-1]["label"] != label or phases[-1].get("closed"):
            phases.append({"label": label, "start": when})
        phases[-1]["end"] = when
        phases[-1]["closed"] = final
    for phase in phases:
        inside = [kb for t, kb in samples if phase["start"] - 0.02 <= t <= phase["end"] + 0.02]
        phase["peak_rss_kb"] = max(inside, default=0)
        phase["start"] -= started
        phase["end"] -= started
    print(json.dumps({"exit": os.waitstatus_to_exitcode(status), "maxrss_kb": usage.ru_maxrss,
                      "wall_s": ended - started, "phases": phases}))


def run_phase(config: Path, log: Path) -> tuple[float, float, int, list[dict]]:
    """(wall seconds, peak RSS MB, exit code, progress phases) of one `audsync run` subprocess."""
    import json

    audsync = Path(sys.executable).with_name("audsync")
    started = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.run([sys.executable, __file__, "_measure", str(audsync), "run", "--config", str(config)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=out, text=True)
    wall = time.monotonic() - started
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    return wall, measured["maxrss_kb"] / 1024, measured["exit"], measured["phases"]


def phase_text(phases: list[dict], prefix: str, wall: float) -> str:
    """'loading 9.1 s 402 MB, indexing ...; outside them 1.2 s' for the phases of one audience
    (outside: starting Python, migrations, leases, committing the run)."""
    mine = [p for p in phases if p["label"].startswith(prefix)]
    inside = sum(p["end"] - p["start"] for p in mine)
    return (", ".join(f"{p['label'][len(prefix):]} {p['end'] - p['start']:.1f} s {p['peak_rss_kb'] / 1024:.0f} MB"
                      for p in mine) + f"; outside them {wall - inside:.1f} s")


def bench_combo(n: int, source: str, state: str, workdir: Path, fake: LeanFake) -> list[dict]:
    run_dir = workdir / f"run_{n}_{source}_{state}_{uuid.uuid4().hex[:6]}"
    run_dir.mkdir()
    state_url = f"sqlite:///{run_dir / 'state.db'}" if state == "sqlite" else pg_create()
    results = []
    try:
        for phase, churn in (("first", False), ("incremental", True)):
            config = write_config(run_dir, state_url, fake.url, source, n, churn, workdir)
            before = fake.items()
            wall, rss, code, steps = run_phase(config, run_dir / "audsync.log")
            sent = fake.items() - before
            row = {"size": n, "source": source, "state": state, "phase": phase, "wall_s": wall,
                   "rss_mb": rss, "sent": sent, "exit": code, "steps": phase_text(steps, AUDIENCE_KEY + ": ", wall)}
            if code != 0:
                print(f"# audsync run exited {code}; see {run_dir / 'audsync.log'}", flush=True)
            print(f"# {n:>10,} {source:4} {state:10} {phase:11} {wall:7.1f} s {rss:7.0f} MB "
                  f"{sent:>10,} sent (exit {code})\n#   {row['steps']}", flush=True)
            results.append(row)
    finally:
        if state == "postgresql":
            pg_drop(state_url)
    (run_dir / "state.db").unlink(missing_ok=True)
    return results


def main() -> None:
    if sys.argv[1:2] == ["_measure"]:
        measure(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000")
    parser.add_argument("--sources", default="file,sql")
    parser.add_argument("--states", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--workdir", default="/tmp/audsync-bench")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    for n in sizes:
        generate(workdir, n)
    fake = LeanFake()
    table: list[dict] = []
    try:
        for n in sizes:
            for source in args.sources.split(","):
                for state in args.states.split(","):
                    runs = [bench_combo(n, source, state, workdir, fake) for _ in range(args.repeat)]
                    for i, phase_row in enumerate(runs[0]):
                        row = dict(phase_row)
                        row["wall_s"] = statistics.median(r[i]["wall_s"] for r in runs)
                        row["rss_mb"] = statistics.median(r[i]["rss_mb"] for r in runs)
                        table.append(row)
    finally:
        fake.close()
    print()
    print(f"{'size':>10}  {'source':6} {'state':10} {'phase':11} {'wall_s':>7} {'peak_rss_mb':>11} "
          f"{'sent':>10} {'items/s':>9}  vs SDK")
    for r in table:
        rate = r["sent"] / r["wall_s"] if r["wall_s"] else 0
        versus = ""
        if r["phase"] == "first":
            sdk = r["sent"] / SDK_IDENTIFIES_PER_S
            versus = f"SDK alone ~{sdk:.0f} s: {sdk / r['wall_s']:.1f}x faster"
        print(f"{r['size']:>10,}  {r['source']:6} {r['state']:10} {r['phase']:11} {r['wall_s']:7.1f} "
              f"{r['rss_mb']:11.0f} {r['sent']:>10,} {rate:9,.0f}  {versus}"
              + (f"  (exit {r['exit']})" if r["exit"] else ""))
    print("\nwhere the time went (the first run of each; a phase's peak RSS is the highest VmRSS sampled in it):")
    for r in table:
        print(f"{r['size']:>10,}  {r['source']:6} {r['state']:10} {r['phase']:11}  {r['steps']}")


if __name__ == "__main__":
    main()
