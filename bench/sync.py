"""Benchmark: audience sync at 1M / 10M members, first sync then a 1% churn incremental sync.

What it measures: `audsync run` as a real subprocess per phase, against a lean loopback fake
Amplitude in its own process (`python -m audsync.testing.fake_amplitude --lean --port P`), for
every combination of
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

Commands (from the repository root, after `.venv/bin/pip install -e '.[bench]'`):
  .venv/bin/python bench/sync.py                                   # 1M, all 4 combinations
  .venv/bin/python bench/sync.py --sizes 10000000                  # README's Scale table
  .venv/bin/python bench/sync.py --sizes 10000000 --sources file --states sqlite
  .venv/bin/python bench/sync.py --repeat 3                        # medians of 3 runs

Prints one line per (size, source, state, phase) as it goes, then a table:
  size  source  state  phase  wall_s  peak_rss_mb  sent  items/s
and, per row, where the time went: each progress phase's seconds and peak RSS, and the time
outside them (starting Python, migrations, leases, committing the run).
`sent` is the number of items the fake Amplitude accepted during the phase. With --repeat > 1
wall_s and peak_rss_mb are medians. The yardstick printed next to the first sync is the
official Amplitude SDK's ~15,000 identifies/s (reference/performance-notes.md): its time for the
same number of identifies and our speed-up against it.

Results, dated, with the machine and the code they were measured on: bench/RESULTS.md.
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
