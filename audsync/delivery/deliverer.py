"""The Deliverer: batches operations, sends them concurrently, carries out the response policy
and reports one outcome per item to the caller's thread.

Per-user order: an item is admitted only when no earlier item sharing its user_id or its
device_id (group for groupidentify) is unsettled; later ones wait in the lane of each id they
share. Both ids count because Amplitude orders per device: an anonymous event (device only) and
the identify that names its user (user and device) must not overtake each other. The window of
items read ahead is bounded (give or take one Bundle), so memory does not depend on the input's
size.
"""

from __future__ import annotations

import heapq
import logging
import random
import threading
import time
from bisect import bisect_right
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import accumulate, chain
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import orjson

from ..config import AmplitudeSettings, DeliverySettings
from ..errors import FatalDeliveryError
from . import policy
from .batching import ENVELOPE_BYTES, Batcher, limit_for
from .transport import Answer, Transport

log = logging.getLogger("audsync.delivery")

DELIVERED, REJECTED, UNDELIVERED = "delivered", "rejected", "undelivered"
APIS = ("event", "identify", "groupidentify", "usermap")
# During an outage each request fails again after its backoff: one summary line per this many
# seconds instead of a warning per request (hundreds in a long outage).
OUTAGE_SUMMARY_S = 30.0


class Outcome(NamedTuple):
    ref: Any
    status: str
    api: str
    reason: str | None


class Outcomes:
    """Items that ended alike (one status, api and reason), reported in one callback: a tuple per
    item was a measurable share of the per-item cost at hundreds of thousands of items a second.

    `span` is (first ref, last ref) when the items were exactly the consecutive run of the input
    between those two (in any order), else None: a caller whose input is in key order can then
    settle them as one key range. `positions` is then that run's (first, last) positions in the
    input (counted in items), so that runs that follow each other can be joined."""

    __slots__ = ("refs", "status", "api", "reason", "span", "positions")

    def __init__(self, refs: list, status: str, api: str, reason: str | None, span: tuple | None = None,
                 positions: tuple[int, int] | None = None):
        self.refs, self.status, self.api, self.reason, self.span = refs, status, api, reason, span
        self.positions = positions

    def __len__(self) -> int:
        return len(self.refs)

    def each(self) -> list[Outcome]:
        return [Outcome(ref, self.status, self.api, self.reason) for ref in self.refs]

    def __repr__(self) -> str:
        return f"Outcomes({len(self.refs)} {self.status} on {self.api}, reason={self.reason!r})"


# An operation its caller encoded ahead: (api, encoded body, lane key, second lane key or None),
# see lanes_of. `deliver` takes it beside the {"api", "body"} dict it would otherwise encode
# itself: a caller that builds ten million alike operations from one template encodes them for
# less than orjson over a dict. A plain tuple: a NamedTuple cost 0.4 us more per operation.
Encoded = tuple


def lanes_of(api: str, body: dict) -> tuple[Any, Any]:
    """The lanes an operation waits in (module docstring): its user, else its device, else its
    group; and its device too when it has both a user and a device."""
    if api == "groupidentify":
        return ("g", body.get("group_type"), body.get("group_value")), None
    key = body.get("user_id")
    device = body.get("device_id")
    if key is None:
        return ("d", device), None
    return key, (("d", device) if device is not None else None)


def encode(operation: dict) -> Encoded:
    api, body = operation["api"], operation["body"]
    key, key2 = lanes_of(api, body)
    return (api, orjson.dumps(body), key, key2)


def _second_lanes(keys2: list | None, keys: list) -> list:
    """Second lanes one per operation: a bundle's or chunk's keys2, where None means none has one."""
    return keys2 if keys2 is not None else [None] * len(keys)


class Bundle:
    """Operations of one api that the caller encoded together, consecutive in its input, one per
    ref (a page of an audience's outbox). The Deliverer admits a bundle whole when no unsettled
    item holds any of its lanes and no two of its operations share one: it goes out in requests
    of its own, and only a request Amplitude did not accept becomes items, one by one. Any other
    bundle is taken operation by operation, like pairs. keys2: the second lanes, or None when no
    operation has one."""

    __slots__ = ("refs", "api", "datas", "keys", "keys2")

    def __init__(self, refs: list, api: str, datas: list[bytes], keys: list, keys2: list | None = None):
        self.refs, self.api, self.datas, self.keys, self.keys2 = refs, api, datas, keys, keys2

    def pairs(self) -> Iterator[tuple[Any, Encoded]]:
        api = self.api
        return ((ref, (api, data, key, key2))
                for ref, data, key, key2 in zip(self.refs, self.datas, self.keys, _second_lanes(self.keys2, self.keys)))

    def __repr__(self) -> str:
        return f"Bundle({len(self.refs)} on {self.api})"


@dataclass
class DeliveryStats:
    delivered: Counter = field(default_factory=Counter)     # api -> items
    rejected: Counter = field(default_factory=Counter)
    undelivered: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)       # reason -> items (rejected and undelivered)
    statuses: Counter = field(default_factory=Counter)      # HTTP status -> requests (0: no answer)
    requests: int = 0

    @property
    def total_delivered(self) -> int:
        return sum(self.delivered.values())


class _Item:
    # no `body`: the encoded `data` is enough, and not holding every body dict of the read-ahead
    # window keeps the garbage collector's work (a third of the per-item cost) down
    # key: the user (else device, else group) lane; key2: the device lane of an item that has a
    # user too; waits: how many lanes still hold an earlier item of this one
    # seq: the item's position in the input
    __slots__ = ("ref", "api", "data", "key", "key2", "seq", "waits", "attempts", "first_try")

    def __init__(self, ref: Any, api: str, data: bytes, key: Any, key2: Any, seq: int):
        self.ref, self.api, self.data, self.key, self.key2, self.seq = ref, api, data, key, key2, seq
        self.waits = 0
        self.attempts = 0
        self.first_try = 0.0

    def __lt__(self, other: "_Item") -> bool:  # heap order when due times tie
        return id(self) < id(other)


class _Chunk:
    """One request's share of an admitted Bundle: consecutive in the input from position `seq`."""

    __slots__ = ("refs", "datas", "keys", "keys2", "seq")

    def __init__(self, refs: list, datas: list[bytes], keys: list, keys2: list | None, seq: int):
        self.refs, self.datas, self.keys, self.keys2, self.seq = refs, datas, keys, keys2, seq

    def __len__(self) -> int:
        return len(self.refs)

    def items(self, api: str) -> list[_Item]:
        lanes = zip(self.refs, self.datas, self.keys, _second_lanes(self.keys2, self.keys))
        return [_Item(ref, api, data, key, key2, self.seq + i) for i, (ref, data, key, key2) in enumerate(lanes)]


class Deliverer:
    def __init__(self, amplitude: AmplitudeSettings, delivery: DeliverySettings, *,
                 on_response: Callable[[str, int, int], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random, transport: Transport | None = None,
                 report_spans: bool = False):
        self.amplitude = amplitude
        self.report_spans = report_spans  # Outcomes.span for delivered requests (else None)
        self.delivery = delivery
        self.on_response = on_response
        self.clock = clock
        self.rng = rng
        self.transport = transport or Transport(amplitude, delivery)
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=delivery.concurrency, thread_name_prefix="amplitude")
        batch = amplitude.send_to_batch_endpoint
        self._limits = {api: limit_for(api, batch) for api in APIS}

    def __enter__(self) -> "Deliverer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.transport.close()

    def __repr__(self) -> str:
        return f"Deliverer(endpoint={self.amplitude.endpoint!r})"

    def request_stop(self) -> None:
        """Stop taking new items; in-flight requests finish and are reported; `deliver` returns."""
        if not self._stop.is_set():
            log.info("stopping delivery: no new requests; those in flight finish and are recorded")
        self._stop.set()

    # -- the loop ---------------------------------------------------------------------------
    def deliver(self, items: Iterable[tuple[Any, dict | Encoded] | Bundle],
                on_outcomes: Callable[[Outcomes], None], *,
                should_stop: Callable[[], bool] | None = None) -> DeliveryStats:
        """Delivers `(ref, operation)` pairs, an operation being an {"api", "body"} dict or an
        Encoded one, and Bundles of encoded operations; every item's outcome reaches
        `on_outcomes`, in this thread, exactly once (unless a stop or a fatal answer leaves it
        unacknowledged). `should_stop()` is asked at every turn of the loop (a quarter of a second
        apart at most, waits included): once it says yes, it is as if request_stop() was called."""
        run = _Run(self, iter(items), on_outcomes, should_stop)
        return run.loop()


class _Outage:
    """Requests that got no answer or a 5xx: the first one of an outage is logged in full, the
    next ones are counted and summarised every OUTAGE_SUMMARY_S, and its end says how many failed."""

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.total = 0          # failed requests since the outage began
        self.unreported = 0     # ... not yet in a line
        self.last_error = ""
        self.reported_at = 0.0

    def failure(self, error: str, next_retry_s: float | None) -> bool:
        """Counts one failed request; True when it is the outage's first, to be logged in full."""
        self.total += 1
        self.last_error = error
        if self.total == 1:
            self.reported_at = self.clock()
            return True
        self.unreported += 1
        if self.clock() - self.reported_at >= OUTAGE_SUMMARY_S:
            self.summarise(next_retry_s)
        return False

    def summarise(self, next_retry_s: float | None = None) -> None:
        if self.unreported:
            retry = "" if next_retry_s is None else f"; next retry in {max(0.0, next_retry_s):.1f} s"
            log.warning("amplitude still failing: %d more requests failed in %.0f s (%d since the first); "
                        "last error: %s%s", self.unreported, self.clock() - self.reported_at, self.total,
                        self.last_error, retry, extra={"failed_requests": self.total, "error": self.last_error})
        self.unreported = 0
        self.reported_at = self.clock()

    def answered(self) -> None:
        self.summarise()
        log.info("amplitude answers again after %d failed requests", self.total,
                 extra={"failed_requests": self.total})
        self.total = 0


class _Run:
    """State of one `deliver` call; lives in the caller's thread only."""

    def __init__(self, owner: Deliverer, source: Iterator[tuple[Any, dict | Encoded] | Bundle],
                 on_outcomes: Callable[[Outcomes], None], should_stop: Callable[[], bool] | None):
        self.o = owner
        self.should_stop = should_stop
        self.settings = owner.delivery
        self.input = source
        self.source = source
        self.exhausted = False
        self.on_outcomes = on_outcomes
        self.stats = DeliveryStats()
        self.batchers = {api: Batcher(limit) for api, limit in owner._limits.items()}
        self.to_send: deque[tuple[str, list[_Item] | _Chunk]] = deque()
        self.retry: list[tuple[float, _Item]] = []
        self.held: set = set()
        self.lanes: dict[Any, deque[_Item]] = {}
        self.outstanding = 0
        self.seq = 0
        self.in_flight: dict[Future, tuple[str, list[_Item] | _Chunk, float]] = {}
        # enough for `concurrency` full requests in flight and as many ready behind them
        self.window = max(10_000, owner.delivery.concurrency * 2 * 2_000)
        self.fatal: str | None = None
        self.outage = _Outage(owner.clock)

    @property
    def stopping(self) -> bool:
        return self.fatal is not None or self.o._stop.is_set()

    def loop(self) -> DeliveryStats:
        while True:
            if self.should_stop is not None and not self.o._stop.is_set() and self.should_stop():
                self.o.request_stop()
            if not self.stopping:
                self.fill()
                self.release_due()
                self.submit()
            if not self.in_flight:
                if self.stopping or (self.exhausted and self.outstanding == 0):
                    break
                if not self.to_send and not self.any_partial():
                    # only retries are left: sleep until the first is due (or a stop is asked)
                    delay = max(0.0, self.retry[0][0] - self.o.clock()) if self.retry else 0.05
                    self.o._stop.wait(min(delay, 0.25)) if delay > 0 else None
                continue
            timeout = None
            if self.retry:
                timeout = max(0.0, self.retry[0][0] - self.o.clock())
            if self.stopping:
                timeout = None
            done, _ = wait(list(self.in_flight), timeout=min(timeout, 0.25) if timeout is not None else 0.25,
                           return_when=FIRST_COMPLETED)
            for future in done:
                api, batch, sent = self.in_flight.pop(future)
                self.handle(api, batch, future.result(), sent)
        self.outage.summarise()
        if self.fatal is not None:
            raise FatalDeliveryError(self.fatal)
        return self.stats

    def _limits_max(self, api: str) -> int:
        return self.batchers[api].limit.max_items

    def any_partial(self) -> bool:
        return any(b.items for b in self.batchers.values())

    def fill(self) -> None:
        while self._fill():
            pass

    def _fill(self) -> bool:
        """Reads the input into batches until the window is full; True when it put a bundle back
        as pairs (Bundle) and must read again."""
        # the per-item hot path: locals and inlined lane keys keep it at a few microseconds per item
        if self.exhausted or self.outstanding >= self.window:
            return False
        held, lanes, batchers, to_send = self.held, self.lanes, self.batchers, self.to_send
        window, enough = self.window, self.o.delivery.concurrency * 2
        outstanding = self.outstanding
        dumps = orjson.dumps
        for entry in self.source:
            if type(entry) is Bundle:
                self.outstanding = outstanding
                if not self.admit(entry):
                    # the pairs before the rest of the input (nothing of an earlier bundle is left
                    # in self.source by now: this never nests)
                    self.source = chain(entry.pairs(), self.input)
                    return True
                outstanding = self.outstanding
                if outstanding >= window or len(to_send) >= enough:
                    return False
                continue
            ref, operation = entry
            if type(operation) is tuple:
                api, data, key, key2 = operation
            else:  # encode(), inlined: `audsync send` gives dicts
                api, body = operation["api"], operation["body"]
                data = dumps(body)
                key, key2 = lanes_of(api, body)
            item = _Item(ref, api, data, key, key2, self.seq)
            self.seq += 1
            outstanding += 1
            batcher = batchers[api]
            size = len(data)
            if size > batcher.alone_max:  # Batcher.too_big_alone, inlined
                self.outstanding = outstanding
                self.settle([item], REJECTED, "the item is larger than Amplitude accepts in one request", release=False)
                outstanding = self.outstanding
            elif key2 is not None:
                self.hold_two(item)
            elif key in held:
                lane = lanes.get(key)
                if lane is None:
                    lanes[key] = lane = deque()
                item.waits = 1
                lane.append(item)
            else:
                held.add(key)
                closed = batcher.push(item, size)
                if closed:
                    to_send.append((api, closed))
                if len(batcher.items) >= batcher.cap:
                    to_send.append((api, batcher.take()))
            if outstanding >= window or len(to_send) >= enough:
                self.outstanding = outstanding
                return False
        self.outstanding = outstanding
        self.exhausted = True
        return False

    def admit(self, bundle: Bundle) -> bool:
        """Takes a bundle whole, in requests of its own that respect its api's limits; False when
        it must go operation by operation (Bundle)."""
        n = len(bundle.refs)
        if not n:
            return True
        keys = bundle.keys if bundle.keys2 is None else bundle.keys + [k for k in bundle.keys2 if k is not None]
        batcher = self.batchers[bundle.api]
        sizes = [len(data) + 1 for data in bundle.datas]  # +1: the comma between items
        if (max(sizes) - 1 > batcher.alone_max or len(set(keys)) != len(keys)
                or not self.held.isdisjoint(keys)):
            return False
        self.held.update(keys)
        room = batcher.limit.max_bytes - ENVELOPE_BYTES
        ends = list(accumulate(sizes, initial=0))  # ends[i]: the bytes of the first i items
        refs, datas, keys1, keys2 = bundle.refs, bundle.datas, bundle.keys, bundle.keys2
        start = 0
        while start < n:
            end = max(start + 1, min(n, start + batcher.cap, bisect_right(ends, ends[start] + room, lo=start) - 1))
            self.to_send.append((bundle.api, _Chunk(refs[start:end], datas[start:end], keys1[start:end],
                                                    None if keys2 is None else keys2[start:end], self.seq + start)))
            start = end
        self.seq += n
        self.outstanding += n
        return True

    def hold_two(self, item: _Item) -> None:
        """Holds both lanes of an item with a user and a device; it waits behind each one that
        an earlier unsettled item holds (input order makes this free of deadlocks)."""
        held, lanes = self.held, self.lanes
        for key in (item.key, item.key2):
            if key in held:
                lane = lanes.get(key)
                if lane is None:
                    lanes[key] = lane = deque()
                lane.append(item)
                item.waits += 1
            else:
                held.add(key)
        if item.waits == 0:
            self.queue(item)

    def release(self, key: Any) -> None:
        """Passes a lane to the next item waiting in it, which is sent once no lane holds it back."""
        lane = self.lanes.get(key)
        if lane:
            item = lane.popleft()
            if not lane:
                del self.lanes[key]
            item.waits -= 1
            if item.waits == 0:
                self.queue(item)
        else:
            self.held.discard(key)

    def queue(self, item: _Item) -> None:
        batcher = self.batchers[item.api]
        closed = batcher.push(item, len(item.data))
        if closed:
            self.to_send.append((item.api, closed))
        if batcher.full:
            self.to_send.append((item.api, batcher.take()))

    def release_due(self) -> None:
        now = self.o.clock()
        while self.retry and self.retry[0][0] <= now:
            _, item = heapq.heappop(self.retry)
            self.queue(item)

    def submit(self) -> None:
        limit = self.o.delivery.concurrency
        if not self.to_send and len(self.in_flight) < limit and (self.exhausted or self.outstanding >= self.window
                                                                 or not self.in_flight):
            for api, batcher in self.batchers.items():
                if batcher.items:
                    self.to_send.append((api, batcher.take()))
        while self.to_send and len(self.in_flight) < limit:
            api, batch = self.to_send.popleft()
            datas = batch.datas if type(batch) is _Chunk else [item.data for item in batch]
            future = self.o._pool.submit(self.o.transport.send, api, datas)
            self.in_flight[future] = (api, batch, self.o.clock())

    # -- outcomes -----------------------------------------------------------------------------
    def settle(self, items: list[_Item], status: str, reason: str | None, release: bool = True) -> None:
        if not items:
            return
        api = items[0].api
        counter = {DELIVERED: self.stats.delivered, REJECTED: self.stats.rejected,
                   UNDELIVERED: self.stats.undelivered}[status]
        counter[api] += len(items)
        if reason:
            self.stats.reasons[reason] += len(items)
        self.outstanding -= len(items)
        if release:
            self.release_all([item.key for item in items], [item.key2 for item in items])
        span = positions = None
        if status == DELIVERED and self.o.report_spans:
            seqs = [item.seq for item in items]
            low, high = min(seqs), max(seqs)
            if high - low + 1 == len(items):  # no item twice, so exactly the run low..high
                span, positions = (items[seqs.index(low)].ref, items[seqs.index(high)].ref), (low, high)
        self.on_outcomes(Outcomes([item.ref for item in items], status, api, reason, span, positions))

    def settle_chunk(self, api: str, chunk: _Chunk) -> None:
        """A delivered chunk of a bundle: settle() without making its items."""
        self.stats.delivered[api] += len(chunk.refs)
        self.outstanding -= len(chunk.refs)
        self.release_all(chunk.keys, chunk.keys2)
        span = positions = None
        if self.o.report_spans:  # a chunk is a run
            span, positions = (chunk.refs[0], chunk.refs[-1]), (chunk.seq, chunk.seq + len(chunk.refs) - 1)
        self.on_outcomes(Outcomes(chunk.refs, DELIVERED, api, None, span, positions))

    def release_all(self, keys: list, keys2: list | None) -> None:
        """Releases the lanes of settled operations; keys2 may hold None (no second lane)."""
        if not self.lanes:  # nobody waits behind these operations
            self.held.difference_update(keys)
            if keys2 is not None:
                self.held.difference_update([key for key in keys2 if key is not None])
            return
        free = self.release
        for key, key2 in zip(keys, _second_lanes(keys2, keys)):
            free(key)
            if key2 is not None:
                free(key2)

    def settle_each(self, pairs: list[tuple[_Item, str]], status: str) -> None:
        by_reason: dict[str, list[_Item]] = {}
        for item, reason in pairs:
            by_reason.setdefault(reason, []).append(item)
        for reason, items in by_reason.items():
            self.settle(items, status, reason)

    def later(self, item: _Item, now: float, delay: float, reason: str) -> bool:
        """Schedules a resend `delay` after `now`; False (and the item ends undelivered) past the
        deadline. The caller reads the clock once per answer: the items of one request then fall
        due together and go out again as one request."""
        due = now + delay
        if due - item.first_try > self.settings.deadline_s:
            self.settle([item], UNDELIVERED, f"{reason}; gave up after {self.settings.deadline_s:g} s")
            return False
        heapq.heappush(self.retry, (due, item))
        return True

    def handle(self, api: str, batch: list[_Item] | _Chunk, answer: Answer, sent: float) -> None:
        self.stats.requests += 1
        self.stats.statuses[answer.status] += 1
        if self.o.on_response is not None:
            self.o.on_response(api, answer.status, len(batch))
        if self.outage.total and 0 < answer.status < 500:
            self.outage.answered()
        if answer.status == 200:
            if type(batch) is _Chunk:
                self.settle_chunk(api, batch)
            else:
                self.settle(batch, DELIVERED, None)
            return
        if type(batch) is _Chunk:  # off the happy path, a chunk's operations go on as items
            batch = batch.items(api)
        for item in batch:  # the deadline counts from an item's first send (set here, off the happy path)
            if item.first_try == 0.0:
                item.first_try = sent
        bodies = [orjson.loads(item.data) for item in batch]  # off the happy path
        decision = policy.classify(api, answer.status, answer.body if answer.body is not None else answer.error,
                                   answer.headers, bodies, self.settings.throttle_pause_s,
                                   self.o.amplitude.send_to_batch_endpoint,
                                   self.o.amplitude.key_setting("api_key"))
        self._log(api, batch, answer, decision)
        if decision.action == policy.FATAL:
            self.fatal = decision.reason
            return
        if self.stopping:
            return  # items not settled stay with the caller as not acknowledged
        if decision.action == policy.REJECT:
            rejected = [(batch[i], reason) for i, reason in decision.rejected.items()]
            self.settle_each(rejected, REJECTED)
            if answer.status == 413:
                # one item too big alone caused the 413s that split its way down: the count was never
                # the problem, so the cap goes back (otherwise every later request carries one item)
                self.batchers[api].cap = self._limits_max(api)
            for i, item in enumerate(batch):
                if i not in decision.rejected:
                    self.queue(item)
        elif decision.action == policy.SPLIT:
            batcher = self.batchers[api]
            half = max(1, len(batch) // 2)
            if answer.status == 413:  # later requests stay under what was too big; a 400 says nothing of size
                batcher.cap = min(batcher.cap, half)
            self.to_send.appendleft((api, batch[half:]))
            self.to_send.appendleft((api, batch[:half]))
        elif decision.action == policy.THROTTLE:
            parked = [(batch[i], reason) for i, reason in decision.parked.items()]
            self.settle_each(parked, UNDELIVERED)
            paused, now = set(decision.paused), self.o.clock()
            for i, item in enumerate(batch):
                if i in decision.parked:
                    continue
                if i in paused:
                    self.later(item, now, decision.pause_s, f"throttled: {decision.reason}")
                else:
                    self.queue(item)
        else:  # RETRY
            # one jitter draw per answer keeps the batch together: per-item draws scattered it
            # into many small requests
            jitter, now = self.o.rng(), self.o.clock()
            for item in batch:
                item.attempts += 1
                if item.attempts >= self.settings.max_attempts:
                    self.settle([item], UNDELIVERED, f"{decision.reason} (after {item.attempts} attempts)")
                    continue
                delay = max(decision.pause_s, policy.backoff(item.attempts, self.settings.backoff_initial_s,
                                                             self.settings.backoff_max_s, jitter))
                self.later(item, now, delay, decision.reason)

    def _log(self, api: str, batch: list[_Item], answer: Answer, decision: policy.Decision) -> None:
        body = answer.body if isinstance(answer.body, dict) else {}
        fields = {k: body[k] for k in ("error", "missing_field", "events_with_invalid_fields",
                                       "events_with_missing_fields", "events_with_invalid_id_lengths",
                                       "eps_threshold", "throttled_users", "throttled_devices",
                                       "throttled_events", "exceeded_daily_quota_users",
                                       "exceeded_daily_quota_devices", "silenced_events") if k in body}
        if not fields.get("error") and isinstance(answer.body, str):
            fields["error"] = answer.body[:200]
        if answer.error:
            fields["error"] = answer.error
        key = self.o.amplitude.api_key
        if key and key in str(fields.get("error", "")):  # Amplitude's "Invalid API key: <key>" echoes it
            fields["error"] = str(fields["error"]).replace(key, "***")
        if decision.action == policy.RETRY and (answer.status == 0 or answer.status >= 500):
            next_retry = self.retry[0][0] - self.o.clock() if self.retry else None
            if not self.outage.failure(str(fields.get("error", answer.status)), next_retry):
                return
        log.warning("amplitude answered %s on %s (%d items): %s", answer.status or "nothing", api, len(batch),
                    decision.action, extra={"status": answer.status, "api": api, "batch_size": len(batch),
                                            "action": decision.action, **fields})
