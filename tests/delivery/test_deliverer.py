"""The Deliverer end to end over loopback HTTP to the fake Amplitude (issue 3 points 3, 4, 7).

Every branch of the response policy is played by the fake; timings are in milliseconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

import pytest

from audsync.delivery import DELIVERED, REJECTED, UNDELIVERED, Bundle, Deliverer
from audsync.delivery.deliverer import encode
from audsync.errors import FatalDeliveryError

from .conftest import amplitude_settings, fast_delivery


def identify(user: str, n: int = 0) -> dict:
    return {"api": "identify", "body": {"user_id": user, "user_properties": {"$set": {"n": n}}}}


def event(user: str, n: int = 0) -> dict:
    return {"api": "event", "body": {"event_type": "Thing Done", "user_id": user, "insert_id": f"{user}-{n}",
                                     "event_properties": {"n": n}}}


class Result:
    def __init__(self, stats, outcomes, threads):
        self.stats, self.outcomes, self.threads = stats, outcomes, threads
        self.by_ref = {o.ref: o for o in outcomes}

    def status(self, ref):
        return self.by_ref[ref].status

    def refs(self, status):
        return {o.ref for o in self.outcomes if o.status == status}


def deliver(fake, operations, *, amplitude=None, on_response=None, expect_all=True, deliverer_hook=None,
            clock=time.monotonic, **delivery) -> Result:
    outcomes, threads = [], set()

    def on_outcomes(batch):
        threads.add(threading.get_ident())
        outcomes.extend(batch.each())

    settings = amplitude_settings(fake, **(amplitude or {}))
    with Deliverer(settings, fast_delivery(**delivery), on_response=on_response, clock=clock) as deliverer:
        if deliverer_hook:
            deliverer_hook(deliverer)
        stats = deliverer.deliver(enumerate(operations), on_outcomes)
    counts = Counter(o.ref for o in outcomes)
    assert all(c == 1 for c in counts.values()), "an item got more than one outcome"
    if expect_all:
        assert set(counts) == set(range(len(operations))), "an item got no outcome"
    return Result(stats, outcomes, threads)


def test_everything_delivered_once_with_outcomes_in_the_callers_thread(fake):
    ops = [identify(f"user-{u:03d}", n) for n in range(30) for u in range(100)]
    ops += [event(f"user-{u:03d}", 99) for u in range(100)]
    result = deliver(fake, ops)
    assert result.refs(DELIVERED) == set(range(len(ops)))
    assert result.stats.delivered == Counter({"identify": 3000, "event": 100})
    assert result.threads == {threading.get_ident()}
    assert len(fake.identifies) == 3000 and len(fake.events) == 100
    assert all(fake.properties[f"user-{u:03d}"] == {"n": 29} for u in range(100))


def test_400_listed_items_rejected_with_amplitudes_reason_rest_delivered(fake):
    fake.reject = {"bad-user-1"}
    ops = [identify(f"user-{u:02d}") for u in range(20)] + [identify("bad-user-1")] + [identify("abc")]
    ops += [event(f"user-{u:02d}") for u in range(5)] + [event("bad-user-1")]
    result = deliver(fake, ops)
    rejected = {ref: result.by_ref[ref].reason for ref in result.refs(REJECTED)}
    assert set(rejected) == {20, 21, len(ops) - 1}
    assert rejected[20] == "invalid field: user_properties"  # its batch also had an id-length problem
    assert rejected[21] == "invalid id length: user_id"
    assert rejected[len(ops) - 1] == "invalid field: user_properties (Invalid field values on some events)"
    assert result.refs(DELIVERED) == set(range(len(ops))) - set(rejected)
    assert "bad-user-1" not in fake.properties and len(fake.identifies) == 20


def test_400_naming_no_item_splits_and_delivers_the_rest(fake):
    fake.fail_next = [400]
    result = deliver(fake, [identify(f"user-{u:02d}") for u in range(8)])
    assert result.refs(DELIVERED) == set(range(8))
    assert [r["status"] for r in fake.requests] == [400, 200, 200]
    assert [len(r["items"]) for r in fake.requests] == [8, 4, 4]


def test_invalid_api_key_is_fatal_with_a_clear_message_and_no_key(fake, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(FatalDeliveryError) as raised:
        deliver(fake, [identify(f"user-{u:02d}") for u in range(50)], amplitude={"api_key": "wrong-secret-777"},
                expect_all=False)
    message = str(raised.value)
    assert "API key" in message and "amplitude.api_key" in message
    assert raised.value.exit_code == 2
    logged = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    assert "wrong-secret-777" not in message and "wrong-secret-777" not in logged
    assert len(fake.requests) == 1  # no retry can fix it


def test_403_forbidden_is_fatal(fake):
    fake.fail_next = [403]
    with pytest.raises(FatalDeliveryError, match="403"):
        deliver(fake, [identify(f"user-{u:02d}") for u in range(10)], expect_all=False)
    assert len(fake.requests) == 1


def test_413_splits_in_halves_down_to_one_and_rejects_only_the_too_big_one(fake):
    fake.max_bytes = 20_000
    ops = [identify(f"user-{u:03d}", u) for u in range(120)]
    ops.insert(37, {"api": "identify", "body": {"user_id": "big-user", "user_properties": {"$set": {"x": "y" * 30_000}}}})
    result = deliver(fake, ops)
    assert result.refs(REJECTED) == {37}
    assert "413" in result.by_ref[37].reason
    assert result.refs(DELIVERED) == set(range(len(ops))) - {37}
    too_big = [r for r in fake.requests if r["status"] == 413]
    assert len(too_big[0]["items"]) == 121 and any(len(r["items"]) == 1 for r in too_big)
    assert all(len(r["items"]) in (121, 60, 61, 30, 31, 15, 16, 7, 8, 3, 4, 1, 2) for r in too_big)


def test_413_by_count_lowers_the_batch_size_and_delivers_all(fake):
    fake.max_items = 300
    result = deliver(fake, [identify(f"user-{u:04d}") for u in range(2500)])
    assert len(result.refs(DELIVERED)) == 2500
    accepted = [len(r["items"]) for r in fake.requests if r["status"] == 200]
    assert max(accepted) <= 300 and sum(accepted) == 2500


class ManualClock:
    """The deliverer's clock, moved only by the test: a pause is checked by what is sent before and
    after the clock passes its end, whatever a loaded machine does with real time. `reads` counts
    the deliverer's reads (it reads the clock once when it schedules a retry, then at every turn
    of its loop, a quarter of a second apart at most)."""

    def __init__(self):
        self.now, self.reads = 1_000.0, 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now

    def turns(self, n: int = 3) -> None:
        """Waits until the deliverer has read the clock n more times (it has looked at the time)."""
        target = self.reads + n
        wait_for(lambda: self.reads >= target, "the deliverer to read its clock")


def wait_for(condition, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


class Delivering:
    """deliver() in a thread, on a ManualClock; `answered` lists the statuses in answer order."""

    def __init__(self, fake, ops, **delivery):
        self.clock, self.answered, self.result = ManualClock(), [], None
        self.thread = threading.Thread(target=self._run, args=(fake, ops, delivery), daemon=True)
        self.thread.start()

    def _run(self, fake, ops, delivery):
        self.result = deliver(fake, ops, clock=self.clock,
                              on_response=lambda api, status, n: self.answered.append(status), **delivery)

    def throttled(self) -> None:
        """Waits until the 429 is answered and its retry scheduled (the clock read after it)."""
        wait_for(lambda: 429 in self.answered, "the 429")
        self.clock.turns(2)

    def sent_only_at(self, pause: float, fake, before: int) -> None:
        """Nothing more is sent until `pause` after the 429, then the retry goes at once."""
        start = self.clock.now
        self.clock.now = start + pause * 0.99
        self.clock.turns()
        assert len(fake.requests) == before, "the retry went before its pause ended"
        self.clock.now = start + pause
        self.thread.join(30)
        assert not self.thread.is_alive() and self.result is not None


def test_429_pauses_only_throttled_users_while_others_go_on(fake):
    fake.throttled = {"hot-user-1": 1}
    ops = [event("hot-user-1", 0), event("hot-user-1", 1)]
    ops += [event(f"user-{u:02d}", n) for n in range(5) for u in range(30)]
    run = Delivering(fake, ops, throttle_pause_s=1.0)
    run.throttled()
    # with the clock standing still, every other user is delivered; the hot user waits
    wait_for(lambda: sum(len(r["items"]) for r in fake.requests if r["status"] == 200) == len(ops) - 2,
             "the other users' events")
    assert all(i["user_id"] != "hot-user-1" for r in fake.requests if r["status"] == 200 for i in r["items"])
    run.sent_only_at(1.0, fake, before=len(fake.requests))  # /2/httpapi: the full pause
    assert run.result.refs(DELIVERED) == set(range(len(ops)))
    assert [i["insert_id"] for i in fake.arrivals["hot-user-1"]] == ["hot-user-1-0", "hot-user-1-1"]


def test_429_pause_is_half_on_identify(fake):
    fake.throttled = {"hot-user-1": 1}
    run = Delivering(fake, [identify("hot-user-1")], throttle_pause_s=2.0)
    run.throttled()
    run.sent_only_at(1.0, fake, before=1)  # half of 2 s
    assert [r["status"] for r in fake.requests] == [429, 200]


@pytest.mark.parametrize("retry_after,pause,waited", [("0.25", 0.01, 0.25), ("0.02", 30.0, 0.02)],
                         ids=["longer_retry_after_waited", "shorter_retry_after_wins_over_setting"])
def test_429_retry_after_honoured(fake, retry_after, pause, waited):
    fake.throttled = {"hot-user-1": 1}
    fake.retry_after = retry_after
    run = Delivering(fake, [event("hot-user-1")], throttle_pause_s=pause)
    run.throttled()
    run.sent_only_at(waited, fake, before=1)
    assert run.result.status(0) == DELIVERED and [r["status"] for r in fake.requests] == [429, 200]


def test_daily_quota_users_parked_as_undelivered_and_reported(fake):
    fake.quota_exceeded = {"spam-user-1"}
    ops = [event("spam-user-1", 0), event("spam-user-1", 1)] + [event(f"user-{u:02d}") for u in range(10)]
    result = deliver(fake, ops, amplitude={"send_to_batch_endpoint": True})
    assert result.refs(UNDELIVERED) == {0, 1}
    assert all("daily quota" in result.by_ref[ref].reason for ref in (0, 1))
    assert result.refs(DELIVERED) == set(range(2, 12))
    assert result.stats.undelivered["event"] == 2


def test_5xx_burst_then_success(fake):
    fake.fail_next = [503, 500, 502, 504]
    result = deliver(fake, [identify(f"user-{u:02d}") for u in range(10)], max_attempts=5)
    assert result.refs(DELIVERED) == set(range(10))
    assert [r["status"] for r in fake.requests] == [503, 500, 502, 504, 200]
    assert result.stats.statuses[200] == 1 and result.stats.requests == 5


def test_the_items_of_a_failed_request_fall_due_together_and_go_out_again_as_one_request(fake):
    # a clock that moves on at every read, as a loaded machine's does between two items: the
    # resend is due at one time for the whole request, not spread over the items
    ticks = iter(range(10**9))

    def ticking() -> float:
        return time.monotonic() + next(ticks) * 0.01

    fake.fail_next = [503]
    result = deliver(fake, [identify(f"user-{u:02d}") for u in range(10)], clock=ticking,
                     backoff_initial_s=0.05, backoff_max_s=0.05)
    assert result.refs(DELIVERED) == set(range(10))
    assert [r["status"] for r in fake.requests] == [503, 200]


def test_5xx_forever_ends_undelivered_after_max_attempts(fake):
    fake.unavailable = {"down-user-1"}
    result = deliver(fake, [identify("down-user-1", n) for n in range(3)], max_attempts=4)
    assert result.refs(UNDELIVERED) == {0, 1, 2}
    assert all("503" in o.reason and "4 attempts" in o.reason for o in result.outcomes)
    assert len(fake.requests) == 12  # 4 tries for each, one at a time
    assert [o.ref for o in result.outcomes] == [0, 1, 2]


class SteppingClock:
    """A clock that moves on by `step` at every read, whatever the machine's load: the
    Deliverer's deadlines and backoffs then count reads of its clock, not seconds of a busy CPU."""

    def __init__(self, step: float):
        self.step, self.now = step, 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_retries_bounded_by_the_deadline(fake):
    fake.unavailable = {"down-user-1"}
    result = deliver(fake, [identify("down-user-1")], max_attempts=1000, backoff_initial_s=0.02,
                     backoff_max_s=0.02, deadline_s=0.1, clock=SteppingClock(0.002))
    assert result.status(0) == UNDELIVERED and "gave up after 0.1 s" in result.by_ref[0].reason
    # every resend waits a backoff of at least half of 0.02 s on the Deliverer's clock (full
    # jitter), so the deadline allows the first request and at most 0.1 / 0.01 resends
    assert 1 <= len(fake.requests) <= 11


def test_dropped_connections_retried(fake):
    fake.drop_next = 2
    result = deliver(fake, [identify(f"user-{u:02d}") for u in range(10)])
    assert result.refs(DELIVERED) == set(range(10))
    assert result.stats.statuses[0] == 2 and len(fake.identifies) == 10


def test_slow_answer_times_out_and_is_retried(fake):
    fake.delay_s = 0.5

    def on_response(api, status, items):
        if status == 0:
            fake.delay_s = 0.0

    result = deliver(fake, [identify("user-01")], timeout_s=0.1, on_response=on_response)
    assert result.status(0) == DELIVERED
    assert result.stats.statuses[0] == 1 and result.stats.statuses[200] == 1
    time.sleep(0.5)  # let the abandoned slow request finish before the fake closes


@pytest.mark.parametrize("status", [302, 404, 418, 201])
def test_unknown_status_is_never_success(fake, status):
    fake.fail_next = [status] * 3
    result = deliver(fake, [identify("user-01")], max_attempts=3)
    assert result.status(0) == UNDELIVERED and str(status) in result.by_ref[0].reason


def test_item_too_big_for_any_request_rejected_without_sending(fake):
    ops = [{"api": "identify", "body": {"user_id": "big-user", "user_properties": {"$set": {"x": "y" * 1_100_000}}}},
           identify("user-01")]
    result = deliver(fake, ops)
    assert result.status(0) == REJECTED and result.status(1) == DELIVERED
    assert all(i["user_id"] != "big-user" for r in fake.requests for i in r["items"])


def _overlaps(requests, who):
    spans = sorted((r["start"], r["time"]) for r in requests if any(fake_who(i) == who for i in r["items"]))
    return any(b_start < a_end for (_, a_end), (b_start, _) in zip(spans, spans[1:]))


def fake_who(item):
    return item.get("user_id") or item.get("device_id")


def test_per_user_order_kept_and_never_two_items_of_a_user_in_flight(fake):
    fake.delay_s = 0.003
    fake.fail_next = [503, 503]
    fake.throttled = {"user-03": 2, "user-07": 1}
    users = [f"user-{u:02d}" for u in range(12)]
    ops = [identify(u, n) for n in range(25) for u in users]
    ops += [event(u, n) for n in range(100, 105) for u in users[:4]]
    ops += [{"api": "identify", "body": {"device_id": "device-only-1", "user_properties": {"$set": {"n": n}}}}
            for n in range(10)]
    result = deliver(fake, ops, concurrency=4)
    assert result.refs(DELIVERED) == set(range(len(ops)))
    for who in users + ["device-only-1"]:
        arrived = [i.get("user_properties", {}).get("$set", {}).get("n", i.get("event_properties", {}).get("n"))
                   for i in fake.arrivals[who]]
        assert arrived == sorted(arrived) and len(arrived) == len(set(arrived)), who
        assert not _overlaps(fake.requests, who), who
    assert fake.properties["user-03"] == {"n": 24}


def test_concurrency_really_has_several_requests_in_flight(fake):
    fake.delay_s = 0.02
    fake.max_items = 50
    ops = [identify(f"user-{u:04d}") for u in range(1000)]
    deliver(fake, ops, concurrency=4)
    events = sorted([(r["start"], 1) for r in fake.requests] + [(r["time"], -1) for r in fake.requests])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    assert peak >= 3


def test_request_stop_returns_promptly_with_in_flight_outcomes_reported(fake):
    fake.delay_s = 0.2
    ops = [identify(f"user-{u:05d}") for u in range(20_000)]
    answered, first_answer, stopped = [], threading.Event(), threading.Event()

    def on_response(api, status, items):
        answered.append(stopped.is_set())
        first_answer.set()

    def hook(deliverer):
        def stop():  # from another thread, once a request came back
            first_answer.wait(30)
            deliverer.request_stop()
            stopped.set()
        threading.Thread(target=stop, daemon=True).start()

    result = deliver(fake, ops, deliverer_hook=hook, on_response=on_response, expect_all=False, concurrency=2)
    # promptly: no request starts after the stop, only the (at most two) in flight answer after it
    assert stopped.is_set() and answered.count(True) <= 2
    assert len(fake.requests) == len(answered)
    delivered = result.refs(DELIVERED)
    assert 0 < len(delivered) < len(ops)
    received = {i["user_id"] for i in fake.identifies}
    assert received == {ops[ref]["body"]["user_id"] for ref in delivered}
    assert result.refs(REJECTED) == set() and result.refs(UNDELIVERED) == set()


def test_request_stop_from_the_outcome_callback(fake):
    ops = [identify(f"user-{u:05d}") for u in range(10_000)]
    outcomes = []
    with Deliverer(amplitude_settings(fake), fast_delivery(concurrency=2)) as deliverer:
        def on_outcomes(batch):
            outcomes.extend(batch.each())
            deliverer.request_stop()
        deliverer.deliver(enumerate(ops), on_outcomes)
    assert 0 < len(outcomes) < len(ops)
    assert len(fake.identifies) == len(outcomes)


def test_one_item_too_big_alone_does_not_shrink_later_requests(fake):
    fake.max_bytes = 300_000
    ops = [identify(f"user-{u:05d}") for u in range(20_000)]
    ops.insert(5, {"api": "identify", "body": {"user_id": "big-user", "user_properties": {"$set": {"x": "y" * 400_000}}}})
    result = deliver(fake, ops)
    assert result.refs(REJECTED) == {5}
    assert len(result.refs(DELIVERED)) == 20_000
    assert len(fake.requests) < 80  # 20 full requests, ~20 to corner the big one, a few shrunk meanwhile


def test_400_naming_no_item_does_not_shrink_later_requests(fake):
    fake.fail_next = [400]
    result = deliver(fake, [identify(f"user-{u:05d}") for u in range(20_000)])
    assert len(result.refs(DELIVERED)) == 20_000
    assert len(fake.requests) <= 22


def _spanned_outcomes(fake, operations, report_spans=True, **delivery):
    seen = []
    with Deliverer(amplitude_settings(fake), fast_delivery(**delivery), report_spans=report_spans) as deliverer:
        deliverer.deliver(enumerate(operations), seen.append)
    return seen


def test_a_delivered_request_that_was_a_consecutive_run_of_the_input_says_so(fake):
    # Refs are input positions here, so a span (first, last) names exactly range(first, last + 1).
    fake.max_items = 10  # 413s split the first requests into consecutive halves
    fake.throttled = {"user-0012": 1}  # ... and a 429 takes one user out of its request
    seen = _spanned_outcomes(fake, [identify(f"user-{u:04d}") for u in range(40)])
    delivered = [o for o in seen if o.status == DELIVERED]
    assert sorted(ref for o in delivered for ref in o.refs) == list(range(40))
    spanned = [o for o in delivered if o.span is not None]
    assert spanned and any(o.span is None for o in delivered)
    for o in spanned:
        assert sorted(o.refs) == list(range(o.span[0], o.span[1] + 1))
        assert o.positions == o.span  # refs are the input positions here
    for o in delivered:
        if o.span is None:
            assert sorted(o.refs) != list(range(min(o.refs), max(o.refs) + 1))


def test_spans_are_only_reported_when_asked_for(fake):
    seen = _spanned_outcomes(fake, [identify(f"user-{u:04d}") for u in range(20)], report_spans=False)
    assert seen and all(o.span is None for o in seen)


# -- bundles: operations a caller encoded together (a page of an audience's outbox) ---------------

def bundle_of(first_ref: int, operations: list[dict]) -> Bundle:
    encoded = [encode(op) for op in operations]
    keys2 = [e[3] for e in encoded]
    return Bundle(list(range(first_ref, first_ref + len(operations))), encoded[0][0], [e[1] for e in encoded],
                  [e[2] for e in encoded], None if all(k is None for k in keys2) else keys2)


def deliver_entries(fake, entries, count, report_spans=True, **delivery):
    """Delivers pairs and bundles (refs: input positions 0..count-1); checks one outcome each."""
    outcomes = []
    with Deliverer(amplitude_settings(fake), fast_delivery(**delivery), report_spans=report_spans) as deliverer:
        stats = deliverer.deliver(entries, outcomes.append)
    refs = Counter(ref for o in outcomes for ref in o.refs)
    assert set(refs) == set(range(count)) and all(n == 1 for n in refs.values())
    return stats, outcomes


def n_of(item):
    return item["user_properties"]["$set"]["n"]


def test_a_bundle_goes_whole_in_requests_within_the_limits_each_a_consecutive_run(fake):
    ops = [identify(f"user-{u:05d}", u) for u in range(4_500)]
    stats, outcomes = deliver_entries(fake, [bundle_of(0, ops[:2_500]), bundle_of(2_500, ops[2_500:])], 4_500)
    assert stats.total_delivered == 4_500 and {u: p["n"] for u, p in fake.properties.items()} == \
        {f"user-{u:05d}": u for u in range(4_500)}
    assert max(len(r["items"]) for r in fake.requests) == 1_000  # /identify's cap
    for o in outcomes:  # each request was a run of one bundle, and says so
        assert o.status == DELIVERED and o.refs == list(range(o.span[0], o.span[1] + 1))
        assert o.positions == o.span


def test_a_bundle_respects_the_byte_limit(fake):
    # 1,000 items of 2 kB: within /identify's count, twice its 1 MB (the fake answers 413 above it)
    ops = [{"api": "identify", "body": {"user_id": f"user-{u:04d}", "user_properties": {"$set": {"x": "y" * 2_000}}}}
           for u in range(1_000)]
    stats, _ = deliver_entries(fake, [bundle_of(0, ops)], 1_000)
    assert stats.total_delivered == 1_000 and {r["status"] for r in fake.requests} == {200}
    assert len(fake.requests) == 3


def test_a_bundle_waits_behind_an_earlier_item_of_one_of_its_users_and_order_holds(fake):
    fake.delay_s = 0.02
    entries = [(0, identify("user-00003", 0)),                                  # in flight first
               bundle_of(1, [identify(f"user-{u:05d}", 1) for u in range(10)]),  # user-00003 again
               (11, identify("user-00003", 2)), (12, identify("user-00007", 2))]
    deliver_entries(fake, entries, 13)
    assert [n_of(i) for i in fake.arrivals["user-00003"]] == [0, 1, 2]
    assert [n_of(i) for i in fake.arrivals["user-00007"]] == [1, 2]
    assert not _overlaps(fake.requests, "user-00003")


def test_an_item_after_a_bundle_waits_for_its_users_operation_in_the_bundle(fake):
    fake.delay_s = 0.02
    entries = [bundle_of(0, [identify(f"user-{u:05d}", 0) for u in range(3_000)]),
               (3_000, identify("user-02999", 1)), (3_001, identify("user-00000", 1))]
    deliver_entries(fake, entries, 3_002, concurrency=2)
    for who in ("user-02999", "user-00000"):
        assert [n_of(i) for i in fake.arrivals[who]] == [0, 1]
        assert not _overlaps(fake.requests, who)


def test_a_bundle_holding_one_user_twice_goes_item_by_item_in_order(fake):
    ops = [identify("user-00001", 0), identify("user-00002", 0), identify("user-00001", 1)]
    deliver_entries(fake, [bundle_of(0, ops)], 3)
    assert [n_of(i) for i in fake.arrivals["user-00001"]] == [0, 1]


def test_a_bundles_device_lanes_count_too(fake):
    # two users on one device: the second identify waits for the first (Amplitude orders per device)
    ops = [{"api": "identify", "body": {"user_id": f"user-{u}", "device_id": "shared-device",
                                        "user_properties": {"$set": {"n": u}}}} for u in range(2)]
    bundle = bundle_of(0, ops)
    assert bundle.keys2 == [("d", "shared-device")] * 2
    deliver_entries(fake, [bundle], 2)
    assert [i["user_id"] for i in fake.identifies] == ["user-0", "user-1"]
    assert len(fake.requests) == 2  # never both in one request: the second waited for the first


def test_a_bundles_failed_requests_go_on_item_by_item_and_each_item_ends_once(fake):
    fake.max_items = 300                       # 413s split the bundle's requests
    fake.throttled = {"user-00042": 2}         # a 429 pauses one user
    fake.reject = {"user-00500"}               # a 400 names one item
    fake.fail_next = [503]                     # and a whole request is retried
    ops = [identify(f"user-{u:05d}", u) for u in range(2_000)]
    stats, outcomes = deliver_entries(fake, [bundle_of(0, ops)], 2_000)
    rejected = [ref for o in outcomes if o.status == REJECTED for ref in o.refs]
    assert rejected == [500]
    assert stats.total_delivered == 1_999 and fake.properties["user-00042"] == {"n": 42}
    for o in outcomes:
        if o.status == DELIVERED and o.span is not None:
            assert sorted(o.refs) == list(range(o.span[0], o.span[1] + 1))


def test_a_bundle_with_an_item_too_big_for_any_request_goes_item_by_item(fake):
    ops = [identify(f"user-{u:05d}") for u in range(50)]
    ops[7] = {"api": "identify", "body": {"user_id": "big-user", "user_properties": {"$set": {"x": "y" * 1_100_000}}}}
    stats, outcomes = deliver_entries(fake, [bundle_of(0, ops)], 50)
    assert [ref for o in outcomes if o.status == REJECTED for ref in o.refs] == [7]
    assert stats.total_delivered == 49


def test_a_stop_leaves_a_bundles_unanswered_requests_unacknowledged(fake):
    fake.delay_s = 0.2
    ops = [identify(f"user-{u:05d}") for u in range(20_000)]
    bundles, outcomes = [bundle_of(0, ops[:10_000]), bundle_of(10_000, ops[10_000:])], []
    with Deliverer(amplitude_settings(fake), fast_delivery(concurrency=2)) as deliverer:
        threading.Timer(0.05, deliverer.request_stop).start()
        deliverer.deliver(bundles, outcomes.append)
    delivered = {ref for o in outcomes for ref in o.refs}
    assert 0 < len(delivered) < 20_000 and all(o.status == DELIVERED for o in outcomes)
    assert {i["user_id"] for i in fake.identifies} == {ops[ref]["body"]["user_id"] for ref in delivered}


def test_users_of_an_acknowledged_bundle_can_come_again_in_a_later_one(fake):
    # The first bundle fills the read-ahead window, so the second is read once requests of the
    # first were acknowledged: its users' lanes must be free again, or it would wait forever.
    first = [identify(f"user-{u:05d}", 0) for u in range(20_000)]
    again = [identify(f"user-{u:05d}", 1) for u in range(1_000)]
    entries = [bundle_of(0, first), bundle_of(20_000, again)]
    done = {}
    worker = threading.Thread(target=lambda: done.update(result=deliver_entries(fake, entries, 21_000)), daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "the second bundle never went"
    assert all(fake.properties[f"user-{u:05d}"] == {"n": 1} for u in range(1_000))
