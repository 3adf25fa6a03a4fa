"""Benchmark: the mapping core in process, and `audsync translate` end to end.

The input is a deterministic realistic mix (seeded; the same bytes every run):
  60% track with 5 to 10 properties (mobile and web contexts, some with UTM campaign and
      context.traits, some revenue events)
  20% page (named and categorized, web context with referrer and query string)
  15% identify (6 to 12 traits, some Engage-style {"audience_key": true} identifies)
   5% Order Completed with 3 products
under the default settings plus traits_to_increment / traits_to_set_once, map_query_params and
append_fields_to_event_properties, so the optional paths run too.

It measures
  (a) `audsync.mapping.translate` in process on one core: messages already parsed, median of
      --runs runs (default 3) over --messages messages (default 200,000), against a baseline
      measured in the same run: a bare loop that only copies each message's properties dict
      (`dict(properties)`), the floor any mapping pays;
  (b) `audsync translate --config CFG FILE > /dev/null` on --lines JSON lines (default
      1,000,000; the file is written once to --workdir and reused), one run by default
      (--cli-runs N for a median), against `python -c` reading the same file line by line and
      parsing each line with orjson (the I/O + parse floor).

Commands (from the repository root, after `.venv/bin/pip install -e '.[bench]'`):
  .venv/bin/python bench/mapping.py                      # (a) and (b)
  .venv/bin/python bench/mapping.py --skip-cli           # (a) only
  .venv/bin/python bench/mapping.py --skip-in-process    # (b) only
  .venv/bin/python bench/mapping.py --lines 200000 --cli-runs 3

Prints:
  mix: N messages -> M operations (per type counts)
  in-process: runs [r1, r2, r3] msg/s, median R msg/s wall, C msg/s of CPU time (goal 50,000);
              baseline copy loop B msg/s
(wall and CPU time differ when other processes share the cores: CPU time is what one core gives.)
  cli: L lines in S s = R lines/s wall, C lines/s of CPU time (goal 30,000); floor (read +
       orjson.loads) F lines/s
Goals: >= 50,000 messages/s in process, >= 30,000 lines/s through the CLI.
Results, dated: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson

from audsync.config import AmplitudeSettings
from audsync.mapping import translate

SETTINGS = AmplitudeSettings(
    traits_to_increment=("logins",),
    traits_to_set_once=("first_seen",),
    map_query_params={"query": "event_properties"},
    append_fields_to_event_properties={"context.page.path": "page_path"},
)
CONFIG_TOML = """[amplitude]
api_key = "bench"
traits_to_increment = ["logins"]
traits_to_set_once = ["first_seen"]
map_query_params = { query = "event_properties" }
append_fields_to_event_properties = { "context.page.path" = "page_path" }
"""

EVENTS = ["Button Clicked", "Product Viewed", "Song Played", "Signed In", "Search Performed",
          "Video Watched", "Cart Viewed", "Checkout Started", "Item Shared", "Settings Changed"]
PROPERTY_POOL = [
    ("plan", lambda r: r.choice(["free", "pro", "team"])),
    ("price", lambda r: round(r.uniform(1, 200), 2)),
    ("quantity", lambda r: r.randint(1, 5)),
    ("category", lambda r: r.choice(["shoes", "books", "music", "games"])),
    ("label", lambda r: f"label-{r.randint(1, 999)}"),
    ("value", lambda r: r.random()),
    ("is_new", lambda r: r.random() < 0.5),
    ("tags", lambda r: r.sample(["a", "b", "c", "d", "e"], 3)),
    ("position", lambda r: r.randint(0, 50)),
    ("source", lambda r: r.choice(["home", "search", "email", "push"])),
    ("duration_ms", lambda r: r.randint(100, 100_000)),
    ("details", lambda r: {"color": r.choice(["red", "blue"]), "size": r.randint(36, 46), "note": None}),
    ("query", lambda r: r.choice(["shoes", "red dress", None])),
]
LOCALES = ["en-US", "de-DE", "fr-FR", "en-GB", "es-ES", "pt-BR", "ja-JP"]


def _ts(r: random.Random) -> str:
    return (f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:"
            f"{r.randint(0, 59):02d}:{r.randint(0, 59):02d}.{r.randint(0, 999):03d}Z")


def _uuid(r: random.Random) -> str:
    return "%08x-%04x-%04x-%04x-%012x" % (r.getrandbits(32), r.getrandbits(16), r.getrandbits(16),
                                          r.getrandbits(16), r.getrandbits(48))


def _context(r: random.Random, web: bool) -> dict:
    if web:
        context = {
            "library": {"name": "analytics.js", "version": "4.1.0"},
            "ip": f"203.0.{r.randint(0, 255)}.{r.randint(1, 254)}",
            "locale": r.choice(LOCALES),
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 Chrome/120.0",
            "page": {"path": "/shop/item", "url": "https://example.com/shop/item?q=1",
                     "search": "?q=1", "title": "Item", "referrer": "https://www.google.com/"},
            "timezone": "Europe/Berlin",
        }
        if r.random() < 0.3:
            context["campaign"] = {"source": "newsletter", "medium": "email", "name": "spring"}
    else:
        ios = r.random() < 0.5
        context = {
            "app": {"name": "Shop", "version": f"3.{r.randint(0, 9)}.{r.randint(0, 9)}", "build": "412"},
            "device": {"id": _uuid(r), "manufacturer": "Apple" if ios else "Samsung",
                       "model": "iPhone14,2" if ios else "SM-G991B", "type": "ios" if ios else "android",
                       "advertisingId": _uuid(r)},
            "os": {"name": "iOS" if ios else "Android", "version": "17.2" if ios else "14"},
            "library": {"name": "analytics-ios" if ios else "analytics-android", "version": "4.1.5"},
            "network": {"carrier": "T-Mobile", "wifi": True},
            "screen": {"width": 390, "height": 844},
            "locale": r.choice(LOCALES),
            "ip": f"198.51.{r.randint(0, 255)}.{r.randint(1, 254)}",
            "timezone": "America/New_York",
        }
    if r.random() < 0.2:
        context["traits"] = {"email": f"user{r.randint(1, 10**6)}@example.com", "plan": "pro"}
    return context


def _base(r: random.Random, kind: str, web: bool) -> dict:
    message = {"type": kind, "messageId": _uuid(r), "timestamp": _ts(r), "anonymousId": _uuid(r),
               "context": _context(r, web), "integrations": {}}
    if r.random() < 0.8:
        message["userId"] = f"user-{r.randint(1, 10**6):07d}"
    return message


def make_message(r: random.Random) -> dict:
    roll = r.random()
    if roll < 0.60:
        message = _base(r, "track", web=r.random() < 0.5)
        message["event"] = r.choice(EVENTS)
        message["properties"] = {k: make(r) for k, make in r.sample(PROPERTY_POOL, r.randint(5, 10))}
        if r.random() < 0.1:
            message["properties"]["revenue"] = round(r.uniform(1, 500), 2)
        if r.random() < 0.1:
            message["integrations"] = {"Amplitude": {"session_id": 1714567890000 + r.randint(0, 10**6)}}
        return message
    if roll < 0.80:
        message = _base(r, "page", web=True)
        message["name"] = r.choice(["Home", "Item", "Checkout", "Search"])
        if r.random() < 0.7:
            message["category"] = r.choice(["Shop", "Docs"])
        message["properties"] = {"path": "/shop/item", "url": "https://example.com/shop/item?q=1",
                                 "title": "Item", "referrer": "https://www.google.com/", "search": "?q=1"}
        return message
    if roll < 0.95:
        message = _base(r, "identify", web=r.random() < 0.5)
        if r.random() < 0.3:  # Engage audience membership
            message["traits"] = {"order_completed_last_30days": r.random() < 0.7}
            message["integrations"] = {"All": False, "Amplitude": True}
        else:
            traits = {"email": f"user{r.randint(1, 10**6)}@example.com", "name": "Ada Lovelace",
                      "plan": r.choice(["free", "pro"]), "logins": 1, "first_seen": _ts(r),
                      "age": r.randint(18, 80), "address": {"city": "Berlin", "country": "Germany"}}
            for i in range(r.randint(0, 5)):
                traits[f"custom_{i}"] = r.choice([True, False, 3, "x", None])
            message["traits"] = traits
        return message
    message = _base(r, "track", web=r.random() < 0.5)
    message["event"] = "Order Completed"
    products = [{"product_id": f"sku-{r.randint(1, 999)}", "sku": f"SKU{r.randint(1, 999)}",
                 "name": r.choice(["Shoe", "Book", "Hat"]), "price": round(r.uniform(5, 100), 2),
                 "quantity": r.randint(1, 3), "category": "shop"} for _ in range(3)]
    message["properties"] = {"order_id": f"o-{r.randint(1, 10**7)}", "total": 120.5, "revenue": 100.0,
                             "shipping": 5.0, "tax": 15.5, "currency": "USD", "products": products}
    return message


def make_mix(count: int, seed: int = 7) -> list[dict]:
    r = random.Random(seed)
    return [make_message(r) for _ in range(count)]


def in_process(messages: list[dict], runs: int) -> tuple[list[float], list[float], float]:
    rates, cpu_rates = [], []
    for _ in range(runs):
        start, cpu = time.perf_counter(), time.process_time()
        for message in messages:
            translate(message, SETTINGS)
        cpu_rates.append(len(messages) / (time.process_time() - cpu))
        rates.append(len(messages) / (time.perf_counter() - start))
    start = time.perf_counter()
    for message in messages:
        dict(message.get("properties") or ())
    baseline = len(messages) / (time.perf_counter() - start)
    return rates, cpu_rates, baseline


def write_lines(path: Path, lines: int) -> None:
    if path.exists() and path.stat().st_size > 0:
        return
    r = random.Random(11)
    with open(path, "wb") as out:
        for _ in range(lines):
            out.write(orjson.dumps(make_message(r)) + b"\n")


def cli(workdir: Path, lines: int, runs: int) -> tuple[list[float], float]:
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / f"mix_{lines}.jsonl"
    write_lines(data, lines)
    config = workdir / "bench.toml"
    config.write_text(CONFIG_TOML)
    audsync = Path(sys.executable).with_name("audsync")
    rates, cpu_rates = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        with open(os.devnull, "wb") as null:
            subprocess.run([str(audsync), "translate", "--config", str(config), str(data)],
                           stdout=null, check=True)
        rates.append(lines / (time.perf_counter() - start))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_rates.append(lines / (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime))
    floor_code = ("import orjson,sys\nfor line in open(sys.argv[1],'rb'):\n    orjson.loads(line)\n")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", floor_code, str(data)], check=True)
    floor = lines / (time.perf_counter() - start)
    return rates, cpu_rates, floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--cli-runs", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/audsync-bench-mapping"))
    parser.add_argument("--skip-cli", action="store_true")
    parser.add_argument("--skip-in-process", action="store_true")
    args = parser.parse_args()

    if not args.skip_in_process:
        run_in_process(args)
    if not args.skip_cli:
        rates, cpu_rates, floor = cli(args.workdir, args.lines, args.cli_runs)
        seconds = args.lines / statistics.median(rates)
        print(f"cli: {args.lines:,} lines in {seconds:.1f} s = {statistics.median(rates):,.0f} lines/s wall, "
              f"{statistics.median(cpu_rates):,.0f} lines/s of CPU time (goal 30,000); "
              f"floor (read + orjson.loads) {floor:,.0f} lines/s")


def run_in_process(args: argparse.Namespace) -> None:
    messages = make_mix(args.messages)
    counts: dict[str, int] = {}
    operations = 0
    for message in messages:
        key = message["event"] if message.get("event") == "Order Completed" else message["type"]
        counts[key] = counts.get(key, 0) + 1
        operations += len(translate(message, SETTINGS))
    print(f"mix: {len(messages)} messages -> {operations} operations ({counts})")
    rates, cpu_rates, baseline = in_process(messages, args.runs)
    print(f"in-process: runs [{', '.join(f'{r:,.0f}' for r in rates)}] msg/s, "
          f"median {statistics.median(rates):,.0f} msg/s wall, {statistics.median(cpu_rates):,.0f} msg/s of CPU "
          f"time (goal 50,000); baseline copy loop {baseline:,.0f} msg/s")


if __name__ == "__main__":
    main()
