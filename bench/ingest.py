"""`audsync serve` under load, against the ceiling of its own HTTP stack.

Command (from the repository root, after `.venv/bin/pip install -e '.[bench]'` and
`apt-get install wrk`). A quick check, about 3 minutes:

    .venv/bin/python bench/ingest.py --seconds 5 --soak-seconds 30

The full run, on a quiet machine, about 40 minutes (per state about 17: four scenarios of
--seconds each, the forwarding of the batch backlog, the fixed-rate requests answered late when
serve falls behind 3,000/s, and the soak; the baseline takes the four scenarios once, 5 minutes):

    .venv/bin/python bench/ingest.py --state sqlite,postgresql --seconds 60 --soak-seconds 600

Processes: the target (`audsync serve` on a fresh SQLite file or a fresh PostgreSQL database made
for each scenario, with `[ingest] forward = true`; or bench/ingest_baseline.py), a lean fake
Amplitude (`python -m audsync.testing.fake_amplitude --lean --arrivals`), and the load generator,
each in its own process so that none shares a GIL with another.

Load generators, and why two:
  wrk (Debian's `wrk`, C, one event loop per thread, a Lua script writing each request with
       unique messageIds) drives the closed-loop scenarios at the highest rate the target gives
       (--connections connections over --workers threads): it costs a few percent of a core where
       a Python client would take a core of this 2-core machine away from the target and so
       measure itself. Its latencies are from each request's actual send.
  an open-loop generator in --workers processes (asyncio, keep-alive HTTP/1.1 written here: see
       Connection for why not aiohttp) drives the fixed-rate scenarios: request i is due at
       start + i / rate whatever the answers before it did, and its latency counts from that due
       time (waiting for a free connection included), so a stall of the target shows in every
       request due during it (what wrk, closed-loop, leaves out; wrk2 is not in Debian). It
       records when each request was answered 200, which the forward lag needs.

Scenarios (--scenarios), each against the baseline and against serve with each --state:
  batch   wrk, POST /v1/batch with --batch events a request, for --seconds; then the wait until
          the fake has received every accepted event. accepted/s = events answered 200 / seconds;
          end-to-end/s = those events / the time from the first request until the fake received
          the last of them.
  single  wrk, POST /v1/track one event a request, for --seconds: requests/s, p50 and p99.
  fixed   open loop, /v1/track at --single-rate requests/s (3,000) for --seconds: p50 and p99.
  lag     open loop, /v1/batch at --lag-rate events/s (5,000) in requests of --batch, for --seconds;
          forward lag of an event = when the fake received it (its insert_id is the messageId) -
          when serve answered its request 200. Request p99 is reported too (the baseline's only
          figure here: it forwards nothing).
  soak    the lag load for --soak-seconds (serve only), serve's RSS (VmRSS) sampled every 10 s:
          the mean over the first and over the last minute (a quarter of the soak when that is
          shorter than 4 minutes), and the slope of a straight-line fit over the whole soak.

Messages: Segment track calls of 450-550 bytes (properties, context with library, page, user
agent, ip, locale), userIds spread over 100,000 users, messageIds unique across the whole run.

Output: one row per figure: the baseline's, each state's, and its ratio to the baseline (for a
latency, baseline / serve, so that 1.0 is the ceiling and smaller is worse on every row); then
the goals of issue 16: end-to-end >= 30,000 events/s through /v1/batch with every event forwarded;
>= 3,000 single-event requests/s, and p99 <= 50 ms at a fixed 3,000 requests/s; forward lag
p99 <= 2 s at 5,000 events/s; RSS flat over the soak (last minute within 10% of the first).

Results, dated: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from array import array
from pathlib import Path

API_KEY = "test-api-key-123"
WRITE_KEY = "wk-bench-ingest"
AUTH = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent
USERS = 100_000
RSS_EVERY_S = 10

EVENT = ('{"type":"track","event":"Article Viewed","userId":"user-%06d","messageId":"%s",'
         '"timestamp":"%s","properties":{"article_id":"a-%05d","title":"How to pick a bicycle for the city",'
         '"section":"guides","words":%d,"paywall":false,"referrer_kind":"search"},'
         '"context":{"library":{"name":"analytics-python","version":"2.3.4"},"ip":"203.0.113.%d",'
         '"locale":"en-US","userAgent":"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",'
         '"page":{"path":"/guides/a-%05d","url":"https://news.example.com/guides/a-%05d"}}}')

# wrk's script: the same message as EVENT, with a messageId unique per thread and sequence number.
WRK_LUA = r'''
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  per = tonumber(args[1])
  prefix = args[2] .. "-" .. tid .. "-"
  seq = 0
  math.randomseed(tid * 7919 + os.time())
  path = per == 0 and "/v1/track" or "/v1/batch"
  headers = {["Content-Type"] = "application/json", ["Authorization"] = args[3]}
  stamp = os.date("!%Y-%m-%dT%H:%M:%SZ")
end

local function event()
  seq = seq + 1
  local article = math.random(0, 99999)
  return string.format(EVENT_FORMAT, math.random(0, USERS - 1), prefix .. seq, stamp, article,
                       math.random(300, 3000), math.random(1, 254), article, article)
end

function request()
  local body
  if per == 0 then
    body = event()
  else
    local parts = {}
    for i = 1, per do parts[i] = event() end
    body = '{"batch":[' .. table.concat(parts, ",") .. ']}'
  end
  return wrk.format("POST", path, headers, body)
end
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 30):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children_cpu_s() -> float:
    """CPU of the reaped children: the load generators (the target and the fake are reaped only
    when closed, after the figures are taken)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def percentile(values, q: float) -> float | None:
    import numpy as np
    values = np.asarray(values, dtype=float)
    return float(np.percentile(values, q)) if values.size else None


# -- processes: the fake, the targets -------------------------------------------------------------
class Process:
    """A child process whose output is drained by a thread (its last lines kept for errors)."""

    def __init__(self, cmd: list[str], what: str, **kwargs):
        self.what = what
        self.lines: list[str] = []
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
        self.pid = self.proc.pid
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            del self.lines[:-200]

    def fail(self, why: str) -> RuntimeError:
        return RuntimeError(f"{self.what}: {why}; its last output:\n" + "\n".join(self.lines[-30:]))

    def wait_listening(self, port: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise self.fail(f"exited {self.proc.returncode} at start")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise self.fail("did not start listening")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Fake(Process):
    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__([PY, "-m", "audsync.testing.fake_amplitude", "--lean", "--arrivals", "--port",
                          str(self.port)], "the fake Amplitude", cwd=ROOT)
        self.wait_listening(self.port)

    def received(self) -> int:
        return get_json(self.url + "/_stats")["items_received"]

    def arrivals(self) -> list:
        return get_json(self.url + "/_arrivals")


class Baseline(Process):
    label = "baseline"
    forwards = False

    def __init__(self, folder: Path, fake: Fake):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        super().__init__([PY, str(ROOT / "bench" / "ingest_baseline.py"), "--port", str(port)], "the baseline app")
        self.wait_listening(port)


class Serve(Process):
    forwards = True

    def __init__(self, folder: Path, fake: Fake, state: str, pg_url: str):
        self.label = state
        self.pg_url, self.database = pg_url, None
        if state == "sqlite":
            path = folder / f"state-{time.monotonic_ns()}.db"
            url = f"sqlite:///{path}"
        else:
            import sqlalchemy as sa
            self.database = f"audsync_bench_ingest_{os.getpid()}_{time.monotonic_ns()}"
            admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
            try:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'CREATE DATABASE "{self.database}"'))
            except sa.exc.SQLAlchemyError as exc:
                raise SystemExit(f"--pg-url {pg_url}: cannot create the bench's database there: "
                                 f"{str(exc.orig or exc).strip().splitlines()[0]}") from None
            finally:
                admin.dispose()
            url = pg_url.rsplit("/", 1)[0] + "/" + self.database
        config = folder / f"audsync-{time.monotonic_ns()}.toml"
        config.write_text(f'[state]\nurl = "{url}"\n[amplitude]\napi_key = "{API_KEY}"\nendpoint = "{fake.url}"\n'
                          f'[ingest]\nwrite_keys = ["{WRITE_KEY}"]\nforward = true\n')
        audsync = shutil.which("audsync", path=str(Path(PY).parent)) or "audsync"
        env = dict(os.environ)
        env.pop("AUDSYNC_WRITE_KEYS", None)
        super().__init__([audsync, "serve", "--config", str(config), "--log-format", "json", "--port", "0"],
                         f"audsync serve ({state})", env=env, cwd=folder)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if "serving the Segment tracking API" in line:
                    self.url = f"http://127.0.0.1:{json.loads(line)['port']}"
                    return
            if self.proc.poll() is not None:
                raise self.fail(f"exited {self.proc.returncode} at start")
            time.sleep(0.05)
        raise self.fail("did not start")

    def close(self) -> None:
        super().close()
        if self.database:
            import sqlalchemy as sa
            admin = sa.create_engine(self.pg_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
            admin.dispose()


# -- wrk --------------------------------------------------------------------------------------------
def wrk_script(folder: Path) -> Path:
    path = folder / "ingest.lua"
    fmt = EVENT.replace('"', '\\"')
    path.write_text(f'EVENT_FORMAT = "{fmt}"\nUSERS = {USERS}\n' + WRK_LUA)
    return path


def seconds_of(text: str) -> float:
    for unit, scale in (("us", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0)):
        if text.endswith(unit):
            return float(text[:-len(unit)]) * scale
    return float(text)


def run_wrk(url: str, folder: Path, per: int, prefix: str, seconds: float, workers: int, connections: int) -> dict:
    cmd = ["wrk", "-t", str(workers), "-c", str(max(connections, workers)), "-d", f"{seconds:g}s", "--timeout", "10s",
           "--latency", "-s", str(wrk_script(folder)), url, "--", str(per), prefix, AUTH]
    cpu0, start = children_cpu_s(), time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True)
    generator_cpu = (children_cpu_s() - cpu0) / (time.monotonic() - start) * 100
    if out.returncode != 0:
        raise RuntimeError(f"wrk exited {out.returncode}: {out.stderr[-2000:]}")
    result = {"requests": 0, "non2xx": 0, "errors": 0, "duration": seconds, "percentiles": {},
              "generator cpu": generator_cpu}
    in_distribution = False
    for line in out.stdout.splitlines():
        words = line.split()
        if "Latency Distribution" in line:
            in_distribution = True
            continue
        if in_distribution and len(words) == 2 and words[0].endswith("%"):
            result["percentiles"][float(words[0][:-1])] = seconds_of(words[1])
            continue
        in_distribution = False
        if "requests in" in line:
            result["requests"] = int(words[0])
            result["duration"] = seconds_of(words[3].rstrip(","))
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            result["non2xx"] = int(words[-1])
        elif line.strip().startswith("Socket errors:"):
            result["errors"] = sum(int(w.rstrip(",")) for w in words[3::2])
    result["ok"] = result["requests"] - result["non2xx"]
    result["raw"] = out.stdout
    return result


# -- the open-loop generator (a child process) -------------------------------------------------------
class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time. Written here rather than taken
    from a client library: aiohttp, tried first on the shared 2-core machine, spent so much CPU per
    request that 2 processes fell behind a 3,000 requests/s schedule against the baseline (p50
    220 ms, p99 888 ms from the due time, the baseline at 23% of a core): it measured itself. With
    this one the baseline answers that schedule at p50 1.5 ms, the generator using about a third
    of a core."""

    def __init__(self):
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:head_end]).lower()
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line.startswith(b"content-length:"):
                length = int(line[15:])
        if len(self.buffer) < head_end + 4 + length:
            return
        status = int(head[9:12])
        del self.buffer[:head_end + 4 + length]
        waiter, self.waiter = self.waiter, None
        if not waiter.done():
            waiter.set_result(status)

    def connection_lost(self, exc) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the connection closed before the answer"))

    async def send(self, data: bytes) -> int:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


def child_open(args: argparse.Namespace) -> dict:
    """Requests due at start + (i * workers + worker) / rate, sent over --connections keep-alive
    connections, each taking the next due request when it is free: a request waits for a free
    connection after its due time when all are busy, and its latency counts from the due time."""
    rate, workers, worker, per = args.rate, args.workers, args.worker, args.per
    total = int(rate * args.seconds / workers)
    host, port = args.url.split("//", 1)[1].split(":")
    head = (f"POST {'/v1/batch' if per else '/v1/track'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nAuthorization: {AUTH}\r\n").encode()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    prefix = f"{args.prefix}-{worker}-"
    latency = array("d", [-1.0]) * total
    acked = array("d", [-1.0]) * total
    statuses: dict[str, int] = {}
    rnd = random.Random(worker * 7919 + os.getpid())

    def event(seq: int) -> str:
        article = rnd.randrange(100_000)
        return EVENT % (rnd.randrange(USERS), f"{prefix}{seq}", stamp, article, rnd.randint(300, 3000),
                        rnd.randint(1, 254), article, article)

    def request(i: int) -> bytes:
        if per:
            body = ('{"batch":[' + ",".join(event(i * per + k) for k in range(per)) + "]}").encode()
        else:
            body = event(i).encode()
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body

    next_index = [0]

    async def connection_loop() -> None:
        loop = asyncio.get_running_loop()
        conn: Connection | None = None
        while next_index[0] < total:
            i = next_index[0]
            next_index[0] += 1
            due = args.start_at + (i * workers + worker) / rate
            data = request(i)
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                if conn is None or conn.transport is None:
                    _, conn = await loop.create_connection(Connection, host, int(port))
                status = str(await asyncio.wait_for(conn.send(data), 30))
            except (OSError, asyncio.TimeoutError) as exc:
                status = type(exc).__name__
                if conn is not None and conn.transport is not None:
                    conn.transport.close()
                conn = None
            now = time.monotonic()
            statuses[status] = statuses.get(status, 0) + 1
            if status == "200":
                latency[i] = now - due
                acked[i] = now
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    async def run() -> None:
        await asyncio.gather(*(connection_loop() for _ in range(args.connections)))

    asyncio.run(run())
    return {"total": total, "statuses": statuses, "latency": [x for x in latency if x >= 0],
            "acked": list(acked)}


def run_open(url: str, per: int, prefix: str, rate: float, seconds: float, workers: int, connections: int,
             during=None) -> dict:
    """Runs --workers open-loop children; `during` (called about every second while they run)."""
    cpu0 = children_cpu_s()
    start_at = time.monotonic() + 1.0  # the children start meanwhile
    children = [subprocess.Popen([PY, __file__, "--child", "open", "--url", url, "--per", str(per), "--prefix", prefix,
                                  "--rate", str(rate), "--seconds", str(seconds), "--workers", str(workers),
                                  "--worker", str(w), "--start-at", repr(start_at),
                                  "--connections", str(max(1, connections // workers))],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for w in range(workers)]
    outputs: list = [None] * workers

    def collect(w: int) -> None:
        outputs[w] = children[w].communicate()

    readers = [threading.Thread(target=collect, args=(w,), daemon=True) for w in range(workers)]
    for t in readers:
        t.start()
    while any(t.is_alive() for t in readers):
        if during is not None:
            during()
        for t in readers:
            t.join(1.0)
    results = []
    for w, child in enumerate(children):
        stdout, stderr = outputs[w]
        if child.returncode != 0:
            raise RuntimeError(f"load generator {w} exited {child.returncode}:\n{stderr[-3000:]}")
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    statuses: dict[str, int] = {}
    for r in results:
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    latency = [x for r in results for x in r["latency"]]
    ok = statuses.get("200", 0)
    # over the time until the last answer: a target that falls behind the schedule answers late
    last = max((max(r["acked"]) for r in results if r["acked"]), default=start_at + seconds)
    generator_cpu = (children_cpu_s() - cpu0) / (time.monotonic() - start_at + 1.0) * 100
    return {"start_at": start_at, "statuses": statuses, "ok": ok, "sent": sum(r["total"] for r in results),
            "generator cpu": generator_cpu,
            "rate": ok / max(seconds, last - start_at), "p50": percentile(latency, 50), "p99": percentile(latency, 99),
            "acked": [r["acked"] for r in results]}


# -- forward lag ----------------------------------------------------------------------------------
class Arrivals:
    """The fake's arrival times of the events of one open-loop run, as (worker, seq, time) arrays."""

    def __init__(self, fake: Fake, prefix: str):
        self.fake, self.prefix = fake, prefix + "-"
        self.worker, self.seq, self.time = array("q"), array("q"), array("d")

    def drain(self) -> None:
        cut = len(self.prefix)
        for insert_id, at in self.fake.arrivals():
            if isinstance(insert_id, str) and insert_id.startswith(self.prefix):
                worker, _, seq = insert_id[cut:].partition("-")
                self.worker.append(int(worker))
                self.seq.append(int(seq))
                self.time.append(at)

    def lag(self, acked: list[list[float]], per: int, timeout: float) -> dict:
        """Waits (up to `timeout`) until every event of an acknowledged request has arrived; the
        lag of each event, first arrival counted (a retried batch may come twice)."""
        import numpy as np
        expected = sum(sum(1 for a in worker if a >= 0) for worker in acked) * max(per, 1)
        deadline = time.monotonic() + timeout
        while True:
            self.drain()
            if len(self.time) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        workers, seqs, times = (np.frombuffer(a, dtype=t) if len(a) else np.zeros(0, dtype=t)
                                for a, t in ((self.worker, np.int64), (self.seq, np.int64), (self.time, np.float64)))
        # first arrival per (worker, seq)
        order = np.lexsort((times, seqs, workers))
        workers, seqs, times = workers[order], seqs[order], times[order]
        first = np.ones(len(seqs), dtype=bool)
        first[1:] = (workers[1:] != workers[:-1]) | (seqs[1:] != seqs[:-1])
        workers, seqs, times = workers[first], seqs[first], times[first]
        lags = []
        for w, acks in enumerate(acked):
            acks = np.asarray(acks, dtype=float)
            mine = workers == w
            requests = seqs[mine] // max(per, 1)
            valid = requests < len(acks)
            ack = acks[requests[valid]]
            answered = ack >= 0
            lags.append(times[mine][valid][answered] - ack[answered])
        lags = np.concatenate(lags) if lags else np.zeros(0)
        return {"expected": expected, "arrived": int(lags.size), "p50": percentile(lags, 50),
                "p99": percentile(lags, 99), "max": float(lags.max()) if lags.size else None}


# -- the scenarios --------------------------------------------------------------------------------
def scenario_batch(target, fake: Fake, folder: Path, args, prefix: str) -> dict:
    base = fake.received()
    cpu0, fake_cpu0, start = cpu_s(target.pid), cpu_s(fake.pid), time.monotonic()
    result = run_wrk(target.url, folder, args.batch, prefix, args.seconds, args.workers, args.connections)
    cpu = (cpu_s(target.pid) - cpu0) / (time.monotonic() - start) * 100
    events = result["ok"] * args.batch
    row = {"accepted/s": events / result["duration"], "errors": result["non2xx"] + result["errors"], "cpu": cpu,
           "generator cpu": result["generator cpu"],
           "p99": result["percentiles"].get(99.0)}
    if target.forwards:
        deadline = time.monotonic() + args.forward_timeout
        while fake.received() - base < events and time.monotonic() < deadline:
            time.sleep(0.05)
        done = time.monotonic()
        forwarded = fake.received() - base
        row["forwarded all"] = forwarded >= events
        row["end-to-end/s"] = events / (done - start) if forwarded >= events else forwarded / (done - start)
        row["backlog s"] = done - start - result["duration"]
        # well under 100% (one Python process): the fake did not hold the forwarder back
        row["fake cpu"] = (cpu_s(fake.pid) - fake_cpu0) / (done - start) * 100
    return row


def scenario_single(target, fake: Fake, folder: Path, args, prefix: str) -> dict:
    cpu0, start = cpu_s(target.pid), time.monotonic()
    result = run_wrk(target.url, folder, 0, prefix, args.seconds, args.workers, args.connections)
    cpu = (cpu_s(target.pid) - cpu0) / (time.monotonic() - start) * 100
    return {"requests/s": result["ok"] / result["duration"], "p50": result["percentiles"].get(50.0),
            "p99": result["percentiles"].get(99.0), "errors": result["non2xx"] + result["errors"], "cpu": cpu,
            "generator cpu": result["generator cpu"]}


def scenario_fixed(target, fake: Fake, folder: Path, args, prefix: str) -> dict:
    cpu0, start = cpu_s(target.pid), time.monotonic()
    result = run_open(target.url, 0, prefix, args.single_rate, args.seconds, args.workers, args.connections)
    cpu = (cpu_s(target.pid) - cpu0) / (time.monotonic() - start) * 100
    return {"requests/s": result["rate"], "p50": result["p50"], "p99": result["p99"],
            "errors": result["sent"] - result["ok"], "cpu": cpu, "generator cpu": result["generator cpu"]}


def scenario_lag(target, fake: Fake, folder: Path, args, prefix: str, seconds: float | None = None) -> dict:
    seconds = seconds or args.seconds
    arrivals = Arrivals(fake, prefix)
    fake.arrivals()  # what earlier scenarios left
    rss: list[tuple[float, float]] = []
    last_sample = [0.0]

    def during() -> None:
        arrivals.drain()
        now = time.monotonic()
        if now - last_sample[0] >= RSS_EVERY_S:
            last_sample[0] = now
            rss.append((now, rss_mb(target.pid)))

    cpu0, start = cpu_s(target.pid), time.monotonic()
    result = run_open(target.url, args.batch, prefix, args.lag_rate / args.batch, seconds, args.workers,
                      args.connections, during)
    cpu = (cpu_s(target.pid) - cpu0) / (time.monotonic() - start) * 100
    rss.append((time.monotonic(), rss_mb(target.pid)))
    row = {"events/s": result["rate"] * args.batch, "request p99": result["p99"],
           "errors": result["sent"] - result["ok"], "cpu": cpu, "generator cpu": result["generator cpu"], "rss": rss,
           "start": result["start_at"]}
    if target.forwards:
        lag = arrivals.lag(result["acked"], args.batch, args.forward_timeout)
        row.update({"lag p50": lag["p50"], "lag p99": lag["p99"], "lag max": lag["max"],
                    "forwarded all": lag["arrived"] >= lag["expected"], "missing": lag["expected"] - lag["arrived"]})
    return row


def scenario_soak(target, fake: Fake, folder: Path, args, prefix: str) -> dict:
    import numpy as np
    row = scenario_lag(target, fake, folder, args, prefix, args.soak_seconds)
    # from the first request on (the sample taken before it is the idle server)
    samples = [(t - row["start"], m) for t, m in row["rss"] if t >= row["start"]] or [(0.0, row["rss"][-1][1])]
    times = np.array([t for t, _ in samples])
    sizes = np.array([m for _, m in samples])
    window = min(60.0, max(times.max() / 4, RSS_EVERY_S)) if times.size else 60.0
    first = sizes[times <= window].mean() if (times <= window).any() else sizes[0]
    last = sizes[times >= times.max() - window].mean()
    slope = float(np.polyfit(times / 60, sizes, 1)[0]) if times.size >= 3 else None
    row.update({"rss first": float(first), "rss last": float(last), "rss slope": slope, "window": window})
    # The whole curve, a sample a minute: a climb that levels off reads differently from one that goes on.
    print("  soak: serve RSS (MB) by minute: " + " ".join(f"{m:.0f}" for t, m in samples
                                                        if int(t) % 60 < RSS_EVERY_S), file=sys.stderr, flush=True)
    return row


SCENARIOS = {"batch": scenario_batch, "single": scenario_single, "fixed": scenario_fixed, "lag": scenario_lag,
             "soak": scenario_soak}


# -- report ---------------------------------------------------------------------------------------
def fmt(value, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "ms":
        return f"{value * 1000:,.1f} ms"
    if kind == "s":
        return f"{value:,.2f} s"
    if kind == "MB":
        return f"{value:,.0f} MB"
    if kind == "MB/min":
        return f"{value:+,.2f} MB/min"
    if kind == "bool":
        return "yes" if value else "NO"
    if kind == "%":
        return f"{value:.0f}%"
    return f"{value:,.0f}"


# (scenario, key, label, kind, ratio: "rate" (x / baseline), "latency" (baseline / x) or None)
FIGURES = [
    ("batch", "accepted/s", "batch: events/s accepted", "n", "rate"),
    ("batch", "end-to-end/s", "batch: events/s end to end (x: of baseline accepted)", "n", "rate"),
    ("batch", "forwarded all", "batch: every accepted event forwarded", "bool", None),
    ("batch", "backlog s", "batch: forwarding after the load stopped", "s", None),
    ("batch", "p99", "batch: request p99 (wrk)", "ms", "latency"),
    ("batch", "errors", "batch: requests not answered 200", "n", None),
    ("batch", "cpu", "batch: target CPU (100% = a core)", "%", None),
    ("batch", "generator cpu", "batch: load generator CPU", "%", None),
    ("batch", "fake cpu", "batch: fake Amplitude CPU, to the last forwarded", "%", None),
    ("single", "requests/s", "single: requests/s, max", "n", "rate"),
    ("single", "p50", "single: p50 (wrk)", "ms", "latency"),
    ("single", "p99", "single: p99 (wrk)", "ms", "latency"),
    ("single", "errors", "single: requests not answered 200", "n", None),
    ("single", "cpu", "single: target CPU", "%", None),
    ("single", "generator cpu", "single: load generator CPU", "%", None),
    ("fixed", "requests/s", "fixed: requests/s answered 200 (to the last)", "n", "rate"),
    ("fixed", "p50", "fixed: p50 (open loop)", "ms", "latency"),
    ("fixed", "p99", "fixed: p99 (open loop)", "ms", "latency"),
    ("fixed", "errors", "fixed: requests not answered 200", "n", None),
    ("fixed", "cpu", "fixed: target CPU", "%", None),
    ("fixed", "generator cpu", "fixed: load generator CPU", "%", None),
    ("lag", "events/s", "lag: events/s answered 200", "n", "rate"),
    ("lag", "request p99", "lag: request p99 (open loop)", "ms", "latency"),
    ("lag", "lag p50", "lag: forward lag p50", "s", None),
    ("lag", "lag p99", "lag: forward lag p99", "s", None),
    ("lag", "lag max", "lag: forward lag max", "s", None),
    ("lag", "forwarded all", "lag: every accepted event forwarded", "bool", None),
    ("lag", "cpu", "lag: target CPU", "%", None),
    ("lag", "generator cpu", "lag: load generator CPU", "%", None),
    ("soak", "events/s", "soak: events/s answered 200", "n", None),
    ("soak", "lag p99", "soak: forward lag p99", "s", None),
    ("soak", "forwarded all", "soak: every accepted event forwarded", "bool", None),
    ("soak", "rss first", "soak: serve RSS, first minute (window)", "MB", None),
    ("soak", "rss last", "soak: serve RSS, last minute (window)", "MB", None),
    ("soak", "rss slope", "soak: serve RSS slope", "MB/min", None),
]

# the baseline figure a serve figure is a ratio of, where it has none of the same name (it forwards nothing)
BASE_KEY = {"end-to-end/s": "accepted/s"}


def report(results: dict, labels: list[str], args) -> None:
    width = max(len(f[2]) for f in FIGURES) + 1
    head = f"{'figure':<{width}}" + "".join(f"{label:>16}" for label in labels)
    ratios = "baseline" in labels
    if ratios:
        head += "".join(f"{'x ' + label:>14}" for label in labels if label != "baseline")
    print(head)
    for scenario, key, text, kind, ratio in FIGURES:
        rows = [results.get(label, {}).get(scenario, {}) for label in labels]
        if all(key not in row for row in rows):
            continue
        line = f"{text:<{width}}" + "".join(f"{fmt(row.get(key), kind):>16}" for row in rows)
        base = results.get("baseline", {}).get(scenario, {}).get(BASE_KEY.get(key, key))
        for label, row in zip(labels, rows):
            if label == "baseline" or not ratios:
                continue
            value = row.get(key)
            if ratio and base and value:
                x = value / base if ratio == "rate" else base / value
                line += f"{x:>13.2f}x" if x >= 0.1 else f"{x:>13.3f}x"
            else:
                line += f"{'-':>14}"
        print(line)
    print()
    for label in labels:
        if label == "baseline":
            continue
        r = results.get(label, {})
        goals = []
        if "batch" in r:
            b = r["batch"]
            goals.append((f">= 30,000 events/s end to end through /v1/batch, every one forwarded: "
                          f"{fmt(b.get('end-to-end/s'), 'n')}/s", b.get("forwarded all")
                          and (b.get("end-to-end/s") or 0) >= 30_000))
        if "single" in r:
            goals.append((f">= 3,000 single-event requests/s: {fmt(r['single']['requests/s'], 'n')}/s",
                          r["single"]["requests/s"] >= 3_000))
        if "fixed" in r:
            f = r["fixed"]
            goals.append((f"p99 <= 50 ms at {args.single_rate:,.0f} requests/s: {fmt(f['p99'], 'ms')} "
                           f"({fmt(f['requests/s'], 'n')}/s answered)",
                           f["p99"] is not None and f["p99"] <= 0.050 and f["requests/s"] >= 0.98 * args.single_rate))
        if "lag" in r:
            g = r["lag"]
            goals.append((f"forward lag p99 <= 2 s at {args.lag_rate:,.0f} events/s: {fmt(g.get('lag p99'), 's')}",
                          g.get("lag p99") is not None and g["lag p99"] <= 2 and g.get("forwarded all")))
        if "soak" in r:
            s = r["soak"]
            goals.append((f"RSS flat over the {args.soak_seconds:g} s soak (last {s['window']:.0f} s within 10% of "
                          f"the first): {fmt(s['rss first'], 'MB')} -> {fmt(s['rss last'], 'MB')}, "
                          f"{fmt(s['rss slope'], 'MB/min')}", s["rss last"] <= 1.10 * s["rss first"]))
        for text, met in goals:
            print(f"goal ({label}) {text} -> {'met' if met else 'NOT met'}")


# -- main -----------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--state", default="sqlite,postgresql", help="sqlite, postgresql or both (comma-separated)")
    parser.add_argument("--scenarios", default="batch,single,fixed,lag,soak")
    parser.add_argument("--seconds", type=float, default=5, help="length of each scenario but the soak")
    parser.add_argument("--soak-seconds", type=float, default=30)
    parser.add_argument("--workers", type=int, default=2, help="wrk threads; open-loop generator processes")
    parser.add_argument("--connections", type=int, default=64, help="connections in all (wrk, open loop)")
    parser.add_argument("--batch", type=int, default=100, help="events per /v1/batch request")
    parser.add_argument("--single-rate", type=float, default=3000, help="the fixed scenario's requests/s")
    parser.add_argument("--lag-rate", type=float, default=5000, help="the lag and soak scenarios' events/s")
    parser.add_argument("--forward-timeout", type=float, default=300,
                        help="how long to wait for the fake to receive every accepted event")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                        help="a database to connect to to create and drop the bench's own")
    parser.add_argument("--child")
    parser.add_argument("--url")
    parser.add_argument("--per", type=int, default=0)
    parser.add_argument("--prefix")
    parser.add_argument("--rate", type=float)
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--start-at", type=float)
    args = parser.parse_args()
    if args.child == "open":
        print(json.dumps(child_open(args)), flush=True)
        return
    states = [s for s in args.state.split(",") if s]
    scenarios = [s for s in args.scenarios.split(",") if s]
    for name in scenarios:
        if name not in SCENARIOS:
            parser.error(f"--scenarios: unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    for state in states:
        if state not in ("sqlite", "postgresql"):
            parser.error(f"--state: {state!r} is neither sqlite nor postgresql")
    if not shutil.which("wrk") and {"batch", "single"} & set(scenarios):
        parser.error("the batch and single scenarios need wrk: apt-get install wrk")
    run = f"b{int(time.time())}"
    folder = Path(tempfile.mkdtemp(prefix="audsync-bench-ingest-"))
    targets = ([] if args.no_baseline else [("baseline", None)]) + [(state, state) for state in states]
    results: dict[str, dict] = {}
    fake = Fake()
    try:
        for label, state in targets:
            results[label] = {}
            for name in scenarios:
                if state is None and name == "soak":
                    continue
                # a fresh target (and state database) for each scenario: none inherits another's backlog
                target = Baseline(folder, fake) if state is None else Serve(folder, fake, state, args.pg_url)
                try:
                    print(f"  {label} {name} ...", file=sys.stderr, flush=True)
                    row = SCENARIOS[name](target, fake, folder, args, f"{run}{label[0]}{name}")
                    if target.proc.poll() is not None:
                        raise target.fail(f"exited {target.proc.returncode} during the {name} scenario")
                finally:
                    target.close()
                results[label][name] = row
                shown = {k: v for k, v in row.items() if k not in ("rss", "start")}
                print(f"  {label} {name}: " + ", ".join(f"{k} {v:,.3f}" if isinstance(v, float) else f"{k} {v}"
                                                          for k, v in shown.items()), file=sys.stderr, flush=True)
    finally:
        fake.close()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"ingest bench: --seconds {args.seconds:g} --soak-seconds {args.soak_seconds:g} --workers {args.workers} "
          f"--connections {args.connections} --batch {args.batch}; {os.cpu_count()} CPUs")
    report(results, [label for label, _ in targets], args)


if __name__ == "__main__":
    main()
