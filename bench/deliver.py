"""Delivery throughput: audsync against the official Amplitude SDK and a minimal hand-written loop.

Command (from the repository root, after `.venv/bin/pip install -e '.[bench]'`; about 3 minutes
with the defaults):

    .venv/bin/python bench/deliver.py [--count 1000000] [--sdk-count 100000] [--runs 3]
                                      [--only fake,sdk,loop,deliverer,send]

A lean fake Amplitude (`python -m audsync.testing.fake_amplitude --lean --port P`) runs in its own
process; every measurement runs in a fresh child process, and the time of one run is from its
first item until the fake has received the last one (read from the fake's /_stats). It prints one
row per method: the items sent, the median seconds and items/s over the runs (each run's rate in
brackets), the ratio to the SDK's default configuration, the child's peak RSS (VmHWM, or
ru_maxrss for `audsync send`), and the fake's CPU use during the run (100% = one core busy; the
fake is one Python process, so well under 100% means it was not the bottleneck). Then the goals:
Deliverer >= 20x the SDK and >= 300,000 identifies/s with peak RSS < 300 MB; `audsync send` >= 5x.

Methods:
  fake-batch / fake-identify  the fake alone: 4 client threads re-posting one pre-encoded
                              2000-item /batch body (or 1000-item multipart /identify body)
  sdk-default                 amplitude-analytics: Amplitude(Config(server_url=.../2/httpapi)),
                              client.identify(Identify().set(...), EventOptions(user_id=...))
  sdk-best                    the same with use_batch=True, flush_queue_size=2000 to /batch, logging off
  loop-batch                  httpx + orjson, $identify events, 2000 per request to /batch, 1 in flight
  deliverer                   audsync.delivery.Deliverer on identify operations (-> /identify),
                              default DeliverySettings (4 in flight)
  send                        `audsync send --config F INPUT` on a JSON-lines file of Segment identifies

Results, dated: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

API_KEY = "test-api-key-123"
PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent


# -- the fake in its own process -----------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeProcess:
    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([PY, "-m", "audsync.testing.fake_amplitude", "--lean", "--port", str(self.port)],
                                     stdout=subprocess.DEVNULL, cwd=ROOT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.stats()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the fake did not start")

    def stats(self) -> dict:
        import urllib.request
        with urllib.request.urlopen(self.url + "/_stats", timeout=5) as response:
            return json.loads(response.read())

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_for(fake_url: str, target: int, timeout: float = 600) -> None:
    """Polls the fake until it has received `target` items in total."""
    import urllib.request
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(fake_url + "/_stats", timeout=5) as response:
            if json.loads(response.read())["items_received"] >= target:
                return
        time.sleep(0.005)
    raise RuntimeError("the fake never received every item")


# -- children: each prints one JSON line {"elapsed": s} ---------------------------------------------
def child_fake(url: str, count: int, base: int, api: str) -> float:
    import httpx
    import orjson
    if api == "batch":
        per = 2000
        events = [{"event_type": "$identify", "user_id": f"user-{i:07d}",
                   "user_properties": {"$set": {"audience_key": True}}} for i in range(per)]
        body, headers, path = orjson.dumps({"api_key": API_KEY, "events": events}), \
            {"Content-Type": "application/json"}, "/batch"
    else:
        per = 1000
        items = [{"user_id": f"user-{i:07d}", "user_properties": {"$set": {"audience_key": True}}} for i in range(per)]
        boundary = "benchboundary0123456789"
        body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                        + value + b"\r\n" for name, value in (("api_key", API_KEY.encode()),
                                                               ("identification", orjson.dumps(items))))
        body += f"--{boundary}--\r\n".encode()
        headers, path = {"Content-Type": f"multipart/form-data; boundary={boundary}"}, "/identify"
    requests = -(-count // per)
    left = [requests]
    lock = threading.Lock()

    def worker():
        with httpx.Client() as client:
            while True:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                client.post(url + path, content=body, headers=headers).raise_for_status()

    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for(url, base + requests * per)
    return time.monotonic() - start


def child_sdk(url: str, count: int, base: int, best: bool) -> float:
    import logging

    from amplitude import Amplitude, Config, EventOptions, Identify
    if best:
        logger = logging.getLogger("amplitude-bench-quiet")
        logger.disabled = True
        config = Config(server_url=url + "/batch", use_batch=True, flush_queue_size=2000, logger=logger)
    else:
        config = Config(server_url=url + "/2/httpapi")
    client = Amplitude(API_KEY, config)
    start = time.monotonic()
    for i in range(count):
        client.identify(Identify().set("audience_key", True), EventOptions(user_id=f"user-{i:07d}"))
    client.flush()
    wait_for(url, base + count)
    elapsed = time.monotonic() - start
    threading.Thread(target=client.shutdown, daemon=True).start()  # it can linger for seconds
    return elapsed


def child_loop(url: str, count: int, base: int) -> float:
    import httpx
    import orjson
    start = time.monotonic()
    with httpx.Client() as client:
        for first in range(0, count, 2000):
            events = [{"event_type": "$identify", "user_id": f"user-{i:07d}",
                       "user_properties": {"$set": {"audience_key": True}}}
                      for i in range(first, min(count, first + 2000))]
            body = orjson.dumps({"api_key": API_KEY, "events": events})
            client.post(url + "/batch", content=body, headers={"Content-Type": "application/json"}).raise_for_status()
    wait_for(url, base + count)
    return time.monotonic() - start


def child_deliverer(url: str, count: int, base: int) -> float:
    from audsync.config import AmplitudeSettings, DeliverySettings
    from audsync.delivery import Deliverer

    def operations():
        for i in range(count):
            yield i, {"api": "identify", "body": {"user_id": f"user-{i:07d}",
                                                  "user_properties": {"$set": {"audience_key": True}}}}

    seen = [0]

    def on_outcomes(outcomes):
        seen[0] += len(outcomes.refs)

    start = time.monotonic()
    with Deliverer(AmplitudeSettings(api_key=API_KEY, endpoint=url), DeliverySettings()) as deliverer:
        stats = deliverer.deliver(operations(), on_outcomes)
    wait_for(url, base + count)
    elapsed = time.monotonic() - start
    assert seen[0] == count and stats.total_delivered == count, (seen[0], stats)
    return elapsed


def run_child(name: str, url: str, count: int, base: int) -> dict:
    out = subprocess.run([PY, __file__, "--child", name, "--url", url, "--count", str(count), "--base", str(base)],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- `audsync send` end to end -------------------------------------------------------------------
def segment_file(count: int) -> Path:
    path = Path(tempfile.gettempdir()) / f"audsync-bench-identifies-{count}.jsonl"
    if not path.exists() or sum(1 for _ in path.open("rb")) != count:
        with path.open("w") as f:
            for i in range(count):
                f.write(json.dumps({"type": "identify", "messageId": f"m-{i}", "userId": f"user-{i:07d}",
                                    "timestamp": "2024-05-01T12:00:00Z",
                                    "traits": {"plan": "pro", "audience_key": True}}) + "\n")
    return path


def run_send(url: str, count: int, base: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="audsync-bench-"))
    config = folder / "audsync.toml"
    config.write_text(f'[amplitude]\napi_key = "{API_KEY}"\nendpoint = "{url}"\n')
    audsync = str(Path(PY).parent / "audsync")
    script = ("import resource, subprocess, sys, time, json\n"
              "start = time.monotonic()\n"
              "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode\n"
              "elapsed = time.monotonic() - start\n"
              "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
              "print(json.dumps({'elapsed': elapsed, 'rss_mb': rss, 'rc': rc}))\n")
    out = subprocess.run([PY, "-c", script, audsync, "send", "--config", str(config), str(segment_file(count))],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    if result["rc"] != 0:
        raise RuntimeError(f"audsync send exited {result['rc']}")
    return result


# -- the parent ----------------------------------------------------------------------------------
def measure(fake: FakeProcess, name: str, count: int, runs: int) -> dict:
    rates, times, rss, cpu = [], [], [], []
    for _ in range(runs):
        base = fake.stats()["items_received"]
        cpu_before, wall_before = fake.cpu_s(), time.monotonic()
        result = run_send(fake.url, count, base) if name == "send" else run_child(name, fake.url, count, base)
        wall = time.monotonic() - wall_before
        received = fake.stats()["items_received"] - base
        if received < count:
            raise RuntimeError(f"{name}: the fake received {received} of {count}")
        times.append(result["elapsed"])
        rates.append(count / result["elapsed"])
        rss.append(result.get("rss_mb", 0.0))
        cpu.append((fake.cpu_s() - cpu_before) / wall * 100)
    return {"name": name, "count": count, "s": statistics.median(times), "rate": statistics.median(rates),
            "rates": rates, "rss": max(rss), "cpu": statistics.median(cpu)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--sdk-count", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="fake,sdk,loop,deliverer,send")
    parser.add_argument("--child")
    parser.add_argument("--url")
    parser.add_argument("--base", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        if args.child == "deliverer":
            from audsync._runtime import tune_gc_for_streaming

            tune_gc_for_streaming()  # as every audsync command runs
        runners = {"fake-batch": lambda: child_fake(args.url, args.count, args.base, "batch"),
                   "fake-identify": lambda: child_fake(args.url, args.count, args.base, "identify"),
                   "sdk-default": lambda: child_sdk(args.url, args.count, args.base, False),
                   "sdk-best": lambda: child_sdk(args.url, args.count, args.base, True),
                   "loop-batch": lambda: child_loop(args.url, args.count, args.base),
                   "deliverer": lambda: child_deliverer(args.url, args.count, args.base)}
        elapsed = runners[args.child]()
        print(json.dumps({"elapsed": elapsed, "rss_mb": peak_rss_mb()}), flush=True)
        os._exit(0)  # the SDK's threads may linger
    only = set(args.only.split(","))
    plan = []
    if "fake" in only:
        plan += [("fake-batch", args.count), ("fake-identify", args.count)]
    if "sdk" in only:
        plan += [("sdk-default", args.sdk_count), ("sdk-best", args.sdk_count)]
    if "loop" in only:
        plan += [("loop-batch", args.count)]
    if "deliverer" in only:
        plan += [("deliverer", args.count)]
    if "send" in only:
        plan += [("send", args.count)]
    if "send" in only:
        segment_file(args.count)  # written once, outside the timings
    fake = FakeProcess()
    rows = []
    try:
        for name, count in plan:
            row = measure(fake, name, count, args.runs)
            rows.append(row)
            print(f"  measured {name}: {row['rate']:,.0f}/s", file=sys.stderr, flush=True)
    finally:
        fake.close()
    sdk = next((r["rate"] for r in rows if r["name"] == "sdk-default"), None)
    print(f"{'method':<14} {'items':>9} {'median s':>9} {'median items/s':>15} {'x SDK':>7} {'peak RSS':>9} "
          f"{'fake CPU':>8}  runs (items/s)")
    for r in rows:
        ratio = f"{r['rate'] / sdk:.1f}x" if sdk else "-"
        rss = f"{r['rss']:.0f} MB" if r["rss"] else "-"
        runs = ", ".join(f"{x:,.0f}" for x in r["rates"])
        print(f"{r['name']:<14} {r['count']:>9,} {r['s']:>9.2f} {r['rate']:>15,.0f} {ratio:>7} {rss:>9} "
              f"{r['cpu']:>7.0f}%  [{runs}]")
    by = {r["name"]: r for r in rows}
    if sdk and "deliverer" in by:
        d = by["deliverer"]
        ok = d["rate"] >= 20 * sdk and d["rate"] >= 300_000 and d["rss"] < 300
        print(f"goal deliverer >= 20x SDK, >= 300,000/s, RSS < 300 MB: {d['rate'] / sdk:.1f}x, {d['rate']:,.0f}/s, "
              f"{d['rss']:.0f} MB -> {'met' if ok else 'NOT met'}")
    if sdk and "send" in by:
        s = by["send"]
        print(f"goal audsync send >= 5x SDK: {s['rate'] / sdk:.1f}x -> {'met' if s['rate'] >= 5 * sdk else 'NOT met'}")


if __name__ == "__main__":
    main()
