"""Benchmark: reading an audience source through `open_source`, 10,000,000 members by default.

What it measures (the sync must load 10,000,000 members in a few seconds):
rows/s and peak RSS of iterating `open_source(audience).chunks()` to the end, hygiene included,
for each format, each read in a fresh subprocess (peak RSS is that process's VmHWM, so the
interpreter and pyarrow/pandas imports are in it; `import_mb` is that floor alone). Imports are done before the
clock starts. Next to it, the same run times a baseline that produces the same Python tuples the plainest way, without
hygiene:
  csv      pandas.read_csv(chunksize, dtype=str) -> tuples   (the textbook chunked reader)
  parquet  ParquetFile.iter_batches -> to_pylist -> tuples
  jsonl    orjson.loads per line -> tuples
  sqlite   sqlite3 cursor.fetchmany -> tuples                 (the driver alone, no SQLAlchemy)
`ratio` is baseline time / our time (above 1: we are faster than the baseline despite hygiene).

Data: one shuffled column of ids "user-000000000"; one row in 1,000 is "null" (blocked) and one
in 1,000 is empty (no id), so the skip paths run. Generated once under --workdir (default
/tmp/audsync-bench-sources): members_<N>.csv / .parquet / .jsonl and members_<N>.db (table
members). Delete the directory to regenerate.

Commands (from the repository root, after `.venv/bin/pip install -e '.[bench]'`):
  .venv/bin/python bench/sources.py                        # 10M rows, every format, 3 runs each
  .venv/bin/python bench/sources.py --rows 1000000 --formats csv,parquet --repeat 5

Prints one line per run as it goes, then a table of medians:
  format  rows  ours_s  cpu_s  rows/s  peak_rss_mb  import_mb  baseline_s  base_cpu  ratio
Wall times suffer when other work shares the machine; cpu_s (process CPU time, every thread) is
steadier. pyarrow's CSV reader parses on a second thread, so its cpu_s can exceed its wall time.

Peak RSS does not grow with the row count; the CSV reader's plateau is pyarrow's read-ahead.
Results, dated: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

FORMATS = ("csv", "parquet", "jsonl", "sqlite")


def ids_column(n: int):
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    order = np.random.default_rng(42).permutation(n)
    text = pc.binary_join_element_wise("user-", pc.utf8_lpad(pa.array(order).cast(pa.string()), 9, "0"), "")
    ids = np.array(text.to_pylist(), dtype=object)
    ids[::1000] = "null"
    ids[1::1000] = ""
    return pa.array(ids.tolist(), pa.string())


def generate(workdir: Path, n: int, formats: list[str]) -> dict[str, Path]:
    import orjson
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    workdir.mkdir(parents=True, exist_ok=True)
    paths = {f: workdir / f"members_{n}.{'db' if f == 'sqlite' else f}" for f in formats}
    missing = [f for f, p in paths.items() if not p.exists()]
    if not missing:
        return paths
    started = time.perf_counter()
    ids = ids_column(n)
    for fmt in missing:
        path = paths[fmt]
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.unlink(missing_ok=True)
        if fmt == "csv":
            pa_csv.write_csv(pa.table({"user_id": ids}), tmp, pa_csv.WriteOptions(quoting_style="needed"))
        elif fmt == "parquet":
            pq.write_table(pa.table({"user_id": ids}), tmp)
        elif fmt == "jsonl":
            with open(tmp, "wb") as out:
                for start in range(0, n, 1_000_000):
                    part = ids.slice(start, 1_000_000).to_pylist()
                    out.write(b"".join(orjson.dumps({"user_id": u}) + b"\n" for u in part))
        else:
            db = sqlite3.connect(tmp)
            db.execute("CREATE TABLE members (user_id TEXT)")
            for start in range(0, n, 1_000_000):
                db.executemany("INSERT INTO members VALUES (?)", ((u,) for u in ids.slice(start, 1_000_000).to_pylist()))
            db.commit()
            db.close()
        tmp.rename(path)
    print(f"# generated {', '.join(missing)} for {n:,} rows in {time.perf_counter() - started:.1f} s under {workdir}",
          flush=True)
    return paths


# One measurement, in a child process -------------------------------------------------------------

def child(fmt: str, mode: str, path: str, chunk_rows: int) -> dict:
    # Imports happen before the clock starts, the same for both modes; `import` mode stops here.
    import orjson  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.csv  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import sqlalchemy  # noqa: F401

    from audsync.config import AudienceConfig, FileSource, SqlSource
    from audsync.sources import open_source

    if mode == "import":
        return {"rows": 0, "kept": 0, "seconds": 0.0, "cpu_s": 0.0}
    started, cpu_started = time.perf_counter(), time.process_time()
    rows = kept = 0
    if mode == "ours":
        source_spec = SqlSource(url=f"sqlite:///{path}", query="SELECT user_id FROM members") if fmt == "sqlite" \
            else FileSource(Path(path))
        audience = AudienceConfig(name="Bench", key="bench", kind="audience", schedule=None,
                                  send_track_events=False, source=source_spec)
        source = open_source(audience, chunk_rows=chunk_rows)
        for chunk in source.chunks():
            kept += len(chunk)
        rows = source.rows_read
    else:
        for chunk in baseline(fmt, path, chunk_rows):
            rows += len(chunk)
        kept = rows
    return {"rows": rows, "kept": kept, "seconds": time.perf_counter() - started,
            "cpu_s": time.process_time() - cpu_started}


def baseline(fmt: str, path: str, chunk_rows: int):
    if fmt == "csv":
        import pandas as pd

        for frame in pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=chunk_rows):
            yield [(u, None, None) for u in frame["user_id"].tolist()]
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=["user_id"]):
            yield [(u, None, None) for u in batch.column(0).to_pylist()]
    elif fmt == "jsonl":
        from itertools import islice

        import orjson

        with open(path, "rb") as handle:
            while block := list(islice(handle, chunk_rows)):
                yield [(r.get("user_id"), None, None) for r in map(orjson.loads, block)]
    else:
        db = sqlite3.connect(path)
        cursor = db.execute("SELECT user_id FROM members")
        while rows := cursor.fetchmany(chunk_rows):
            yield [(r[0], None, None) for r in rows]


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a
    child would inherit its parent's peak (the data generation's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(fmt: str, mode: str, path: Path, chunk_rows: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", fmt, mode, str(path), str(chunk_rows)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/audsync-bench-sources"))
    parser.add_argument("--no-baseline", action="store_true", help="time only open_source")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        fmt, mode, path, chunk_rows = args.child
        result = child(fmt, mode, path, int(chunk_rows))
        result["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = set(formats) - set(FORMATS)
    if unknown:
        parser.error(f"unknown formats {sorted(unknown)}; choose from {', '.join(FORMATS)}")
    paths = generate(args.workdir, args.rows, formats)
    import_mb = statistics.median(measure("csv", "import", paths[formats[0]], 1)["peak_rss_mb"] for _ in range(3))
    print(f"# python {sys.version.split()[0]}, {os.cpu_count()} cpus, chunk_rows {args.chunk_rows:,}, "
          f"import floor {import_mb:.0f} MB", flush=True)
    table = []
    for fmt in formats:
        ours, base = [], []
        for run in range(args.repeat):
            result = measure(fmt, "ours", paths[fmt], args.chunk_rows)
            ours.append(result)
            line = (f"{fmt:8} run {run + 1}: ours {result['seconds']:.2f} s (cpu {result['cpu_s']:.2f} s), "
                    f"{result['rows']:,} rows "
                    f"({result['kept']:,} kept), peak {result['peak_rss_mb']:.0f} MB")
            if not args.no_baseline:
                base.append(measure(fmt, "baseline", paths[fmt], args.chunk_rows))
                line += (f"; baseline {base[-1]['seconds']:.2f} s (cpu {base[-1]['cpu_s']:.2f} s), "
                         f"peak {base[-1]['peak_rss_mb']:.0f} MB")
            print(line, flush=True)
        seconds = statistics.median(r["seconds"] for r in ours)
        base_s = statistics.median(r["seconds"] for r in base) if base else None
        cpu = statistics.median(r["cpu_s"] for r in ours)
        base_cpu = statistics.median(r["cpu_s"] for r in base) if base else float("nan")
        table.append((fmt, ours[0]["rows"], seconds, cpu, ours[0]["rows"] / seconds,
                      statistics.median(r["peak_rss_mb"] for r in ours), import_mb,
                      base_s if base_s is not None else float("nan"), base_cpu,
                      base_s / seconds if base_s else float("nan")))
    print(f"\n{'format':8} {'rows':>12} {'ours_s':>7} {'cpu_s':>6} {'rows/s':>12} {'peak_rss_mb':>11} "
          f"{'import_mb':>9} {'baseline_s':>10} {'base_cpu':>8} {'ratio':>6}")
    for fmt, rows, seconds, cpu, rate, rss, imp, base_s, base_cpu, ratio in table:
        print(f"{fmt:8} {rows:>12,} {seconds:>7.2f} {cpu:>6.2f} {rate:>12,.0f} {rss:>11.0f} {imp:>9.0f} "
              f"{base_s:>10.2f} {base_cpu:>8.2f} {ratio:>6.2f}")


if __name__ == "__main__":
    main()
