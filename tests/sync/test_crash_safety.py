"""DESIGN.md section 4, crash safety: a real `audsync run` process is SIGKILLed at a chosen point
of a large run (while loading a source, while planning, mid-delivery with a request received but
not answered, right after Amplitude acknowledged a request but before the run could commit it),
the sources move on to a second generation of values, the run is killed at the same point again,
and then rerun to completion. The fake Amplitude (real loopback HTTP) must then hold exactly the
source's truth for every user, no user may have received an older generation after a newer one,
and nothing may be left pending."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from audsync.config import load
from audsync.status_report import status
from audsync.testing.fake_amplitude import FakeAmplitude

pytestmark = pytest.mark.slow

AUDSYNC = str(Path(sys.executable).with_name("audsync"))
PLAIN, PLAIN_KEY = "Crash Members", "crash_members"
TRAIT, TRAIT_KEY = "Crash Score", "crash_score"
PLAIN_USERS = 24_000
TRAIT_USERS = 16_000
GEN = 1_000_000  # a computed value's generation is value // GEN


def uid(i: int) -> str:
    return f"user{i:06d}"


def plain_truth(gen: int) -> set[str]:
    if gen == 1:
        return {uid(i) for i in range(PLAIN_USERS)}
    # Every 7th member leaves, 2,000 new ones enter.
    return {uid(i) for i in range(PLAIN_USERS + 2_000) if i >= PLAIN_USERS or i % 7}


def trait_truth(gen: int) -> dict[str, int]:
    if gen == 1:
        return {uid(i): GEN + i for i in range(TRAIT_USERS)}
    values = {}
    for i in range(TRAIT_USERS + 1_000):
        if i < TRAIT_USERS and i % 10 == 3:
            continue                             # loses its value: $unset
        if i < TRAIT_USERS and i % 2:
            values[uid(i)] = GEN + i             # unchanged: nothing to send
        else:
            values[uid(i)] = 2 * GEN + i         # changed, or new
    return values


def write_sources(tmp_path: Path, gen: int) -> None:
    # Written beside and renamed, so a run never reads half a file.
    plain = tmp_path / "plain.csv.tmp"
    plain.write_text("user_id\n" + "\n".join(sorted(plain_truth(gen), reverse=gen == 2)) + "\n")
    plain.rename(tmp_path / "plain.csv")
    trait = tmp_path / "trait.jsonl.tmp"
    trait.write_text("".join(f'{{"user_id": "{u}", "value": {v}}}\n' for u, v in trait_truth(gen).items()))
    trait.rename(tmp_path / "trait.jsonl")


def write_config(tmp_path: Path, state_url: str, amplitude_url: str) -> Path:
    path = tmp_path / "audsync.toml"
    path.write_text(textwrap.dedent(f'''
        [state]
        url = "{state_url}"
        [amplitude]
        api_key = "test-api-key-123"
        endpoint = "{amplitude_url}"
        [delivery]
        timeout_s = 10
        [[audiences]]
        name = "{PLAIN}"
        source = {{ type = "file", path = "plain.csv" }}
        [[audiences]]
        name = "{TRAIT}"
        kind = "computed_trait"
        source = {{ type = "file", path = "trait.jsonl" }}
    '''))
    return path


def open_files(pid: int) -> set[str]:
    found = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                found.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                continue
    except OSError:
        pass
    return found


class Runner:
    """Starts `audsync run` and kills it with SIGKILL at the scenario's point."""

    def __init__(self, tmp_path: Path, config: Path, amplitude: FakeAmplitude):
        self.tmp_path = tmp_path
        self.config = config
        self.amplitude = amplitude
        self.proc: subprocess.Popen | None = None
        self.requests = 0
        self.kill_at_request: int | None = None
        self.lock = threading.Lock()
        amplitude.on_receive = lambda path, raw: self._on_request("received")
        amplitude.on_request = lambda path, items, status: self._on_request("answered", status)
        self.kill_on: str | None = None

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)

    def _on_request(self, when: str, status: int = 200) -> None:
        if when != self.kill_on or (when == "answered" and status != 200):
            return
        with self.lock:
            self.requests += 1
            if self.requests == self.kill_at_request:
                self._kill()

    def run(self, point: str | None, nth: int = 3) -> int:
        self.requests, self.kill_on, self.kill_at_request = 0, None, None
        if point == "mid-delivery":
            self.kill_on, self.kill_at_request = "received", nth
        elif point == "after-ack":
            self.kill_on, self.kill_at_request = "answered", nth
        self.proc = subprocess.Popen([AUDSYNC, "run", "--config", str(self.config)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        if point in ("loading", "planning"):
            self._kill_around_source(str(self.tmp_path / "plain.csv"), point)
        out, _ = self.proc.communicate(timeout=120)
        self.kill_on = None
        if point is not None:
            assert self.proc.returncode == -signal.SIGKILL, f"the run ended before the {point} kill:\n{out}"
        else:
            assert "Traceback" not in out, out
        return self.proc.returncode

    def _kill_around_source(self, source: str, point: str) -> None:
        """loading: kill while the process has the source open; planning: kill as soon as it
        has closed it again (folding, diffing and writing the plan, before any request)."""
        assert self.proc is not None
        seen = False
        deadline = time.monotonic() + 60
        while self.proc.poll() is None and time.monotonic() < deadline:
            is_open = source in open_files(self.proc.pid)
            if is_open and point == "loading":
                self._kill()
                return
            if seen and not is_open:
                self._kill()
                return
            seen = seen or is_open
            time.sleep(0.001)


def generation_of(value, truths: list[dict]) -> int:
    """The first generation whose truth for this user was `value` (None: absent or false)."""
    for gen, truth in enumerate(truths, start=1):
        if truth == value:
            return gen
    raise AssertionError(f"a value no generation of the source ever had: {value!r}")


def arrived_value(item: dict, key: str):
    props = item["user_properties"]
    if "$unset" in props and key in props["$unset"]:
        return None
    return props.get("$set", props).get(key, "absent")


def check(amplitude: FakeAmplitude, cfg) -> None:
    plain = [plain_truth(1), plain_truth(2)]
    trait = [trait_truth(1), trait_truth(2)]
    users = set().union(*plain, *trait)
    wrong, backwards = [], []
    for user in sorted(users):
        expected = {}
        if user in plain[1]:
            expected[PLAIN_KEY] = True
        elif any(arrived_value(i, PLAIN_KEY) != "absent" for i in amplitude.arrivals.get(user, [])):
            # An ex-member Amplitude ever heard of must end false; one whose first sync never
            # reached it (killed before) is rightly sent nothing.
            expected[PLAIN_KEY] = False
        if user in trait[1]:
            expected[TRAIT_KEY] = trait[1][user]
        if amplitude.properties.get(user, {}) != expected:
            wrong.append((user, amplitude.properties.get(user), expected))
        for key, truths in ((PLAIN_KEY, [user in g or (None if i == 0 else False) for i, g in enumerate(plain)]),
                            (TRAIT_KEY, [g.get(user) for g in trait])):
            values = [arrived_value(i, key) for i in amplitude.arrivals.get(user, [])]
            gens = [generation_of(v, truths) for v in values if v != "absent"]
            if gens != sorted(gens):
                backwards.append((user, key, values))
    assert not wrong, f"{len(wrong)} users differ from the source, e.g. {wrong[:3]}"
    assert not backwards, f"{len(backwards)} users got an older value after a newer one, e.g. {backwards[:3]}"
    for entry in status(cfg):
        assert (entry["pending"], entry["rejected"]) == (0, 0), entry


def scenario(tmp_path: Path, state_url: str, point: str) -> None:
    amplitude = FakeAmplitude()
    try:
        config = write_config(tmp_path, state_url, amplitude.url)
        runner = Runner(tmp_path, config, amplitude)
        write_sources(tmp_path, 1)
        runner.run(point, nth=4)
        if point in ("mid-delivery", "after-ack"):
            pending = sum(e["pending"] for e in status(load(config, environ={})))
            assert pending > 0, "the kill must leave planned changes undelivered (else nothing is proved)"
        write_sources(tmp_path, 2)
        runner.run(point, nth=2)
        assert runner.run(None) == 0
        before = amplitude.items_received
        assert runner.run(None) == 0
        assert amplitude.items_received == before, "a rerun after a complete run must send nothing"
        check(amplitude, load(config, environ={}))
    finally:
        amplitude.close()


@pytest.mark.parametrize("point", ["loading", "planning", "mid-delivery", "after-ack"])
def test_sigkill_then_rerun_delivers_the_truth_in_order_on_sqlite(tmp_path, sqlite_url, point):
    scenario(tmp_path, sqlite_url, point)


@pytest.mark.parametrize("point", ["mid-delivery", "after-ack"])
def test_sigkill_then_rerun_delivers_the_truth_in_order_on_postgresql(tmp_path, pg_url, point):
    scenario(tmp_path, pg_url, point)
