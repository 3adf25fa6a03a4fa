"""Batching by Amplitude's per-request limits, measured on encoded bytes (issue 3 point 2)."""

from __future__ import annotations

import pytest

from audsync.delivery.batching import ENVELOPE_BYTES, LIMITS, MB, Batcher, Limit, limit_for

# (rule, api, batch_endpoint, max_items, max_bytes)
LIMIT_CASES = [
    ("httpapi_at_most_2000_events_and_under_1_mb", "event", False, 2000, MB - 1),
    ("batch_endpoint_2000_events_and_20_mb", "event", True, 2000, 20 * MB),
    ("groupidentify_at_most_1024", "groupidentify", False, 1024, MB - 1),
    ("usermap_at_most_2000", "usermap", False, 2000, MB - 1),
    ("identify_conservative_count_and_under_1_mb", "identify", False, 1000, MB - 1),
    ("batch_switch_changes_only_events", "identify", True, 1000, MB - 1),
    ("batch_switch_leaves_groupidentify", "groupidentify", True, 1024, MB - 1),
]


@pytest.mark.parametrize("rule,api,batch,max_items,max_bytes", LIMIT_CASES, ids=[c[0] for c in LIMIT_CASES])
def test_limit_per_api(rule, api, batch, max_items, max_bytes):
    limit = limit_for(api, batch)
    assert (limit.max_items, limit.max_bytes) == (max_items, max_bytes)


def test_identify_limit_is_byte_bounded_and_modest():
    assert LIMITS["identify"].max_items <= 2000 and LIMITS["identify"].max_bytes < MB


def _fill(batcher: Batcher, sizes: list[int]) -> list[list[int]]:
    """Feeds items of the given encoded sizes as the deliverer does item by item; returns the
    requests (item numbers). Each case is checked against `cuts`, the deliverer's measure of a
    Bundle's requests: both must cut alike."""
    cap = batcher.cap
    requests = []
    for n, size in enumerate(sizes):
        closed = batcher.push(n, size)
        if closed:
            requests.append(closed)
        if batcher.full:
            requests.append(batcher.take())
    if batcher.items:
        requests.append(batcher.take())
    bundled = Batcher(batcher.limit)
    bundled.cap = cap
    assert [list(range(start, end)) for start, end in bundled.cuts(sizes)] == requests
    return requests


def _body_bytes(count: int, size: int) -> int:
    # '[' + items joined by ',' + ']' inside an envelope of at most ENVELOPE_BYTES
    return ENVELOPE_BYTES + count * size + count


def test_count_cap_splits_at_2000_events():
    requests = _fill(Batcher(limit_for("event", False)), [100] * 4500)
    assert [len(r) for r in requests] == [2000, 2000, 500]


def test_groupidentify_count_cap_splits_at_1024():
    requests = _fill(Batcher(limit_for("groupidentify", False)), [50] * 2050)
    assert [len(r) for r in requests] == [1024, 1024, 2]


BYTE_CASES = [
    ("httpapi_under_1_mb_by_encoded_bytes", "event", False, 1_000),
    ("httpapi_big_items_under_1_mb", "event", False, 300_000),
    ("identify_under_1_mb", "identify", False, 5_000),
    ("batch_endpoint_allows_20_mb", "event", True, 50_000),
    ("usermap_under_1_mb", "usermap", False, 2_000),
]


@pytest.mark.parametrize("rule,api,batch,size", BYTE_CASES, ids=[c[0] for c in BYTE_CASES])
def test_every_request_stays_under_its_byte_limit(rule, api, batch, size):
    limit = limit_for(api, batch)
    requests = _fill(Batcher(limit), [size] * 3000)
    assert sum(len(r) for r in requests) == 3000
    for request in requests:
        assert len(request) <= limit.max_items
        assert _body_bytes(len(request), size) <= limit.max_bytes
    # requests are filled, not cut early: one more item would have broken a limit
    for request in requests[:-1]:
        assert (len(request) == limit.max_items
                or _body_bytes(len(request) + 1, size) > limit.max_bytes)


def test_batch_endpoint_packs_what_httpapi_must_split():
    sizes = [5_000] * 1000  # 5 MB of items
    assert len(_fill(Batcher(limit_for("event", False)), sizes)) > 1
    assert len(_fill(Batcher(limit_for("event", True)), sizes)) == 1


def test_mixed_sizes_never_exceed_the_byte_limit():
    limit = Limit(2000, 100_000)
    sizes = [(i * 7919) % 9_000 + 10 for i in range(500)]
    batcher = Batcher(limit)
    for request_len in [len(r) for r in _fill(batcher, sizes)]:
        assert request_len >= 1
    batcher = Batcher(limit)
    start = 0
    for request in _fill(batcher, sizes):
        total = ENVELOPE_BYTES + sum(sizes[i] + 1 for i in request)
        assert total <= limit.max_bytes
        assert request == list(range(start, start + len(request)))  # order kept
        start += len(request)
    assert start == len(sizes)


def test_the_largest_item_a_request_can_carry_leaves_room_for_the_envelope():
    # the Deliverer rejects a longer item without sending it (test_deliverer: too big for any request)
    assert Batcher(limit_for("event", False)).alone_max == MB - 1 - ENVELOPE_BYTES
    assert Batcher(limit_for("event", True)).alone_max >= MB
    alone = Batcher(limit_for("identify", False))
    assert [len(r) for r in _fill(alone, [alone.alone_max, alone.alone_max])] == [1, 1]


def test_lowered_cap_after_413_limits_later_requests():
    batcher = Batcher(limit_for("event", False))
    batcher.cap = 300
    assert [len(r) for r in _fill(batcher, [10] * 700)] == [300, 300, 100]


def test_take_resets_the_measured_size():
    batcher = Batcher(Limit(10, ENVELOPE_BYTES + 100))
    assert batcher.push("a", 90) is None
    assert batcher.take() == ["a"] and batcher.items == []
    assert batcher.push("b", 90) is None and batcher.items == ["b"]  # not closed: the size was reset


def test_cuts_a_run_of_items_into_full_requests_within_both_limits():
    batcher = Batcher(Limit(4, ENVELOPE_BYTES + 100))
    # by bytes: 3 items of 30 (+1 each) fill 93 of 100; by count: 4 of 1
    assert list(batcher.cuts([30, 30, 30, 30, 1, 1, 1, 1, 1])) == [(0, 3), (3, 7), (7, 9)]
    assert list(batcher.cuts([])) == []


def test_push_closes_the_request_an_item_does_not_fit_in():
    batcher = Batcher(Limit(3, ENVELOPE_BYTES + 100))
    assert batcher.push("a", 40) is None and batcher.push("b", 40) is None
    assert batcher.push("c", 40) == ["a", "b"]  # 3 * 41 bytes would pass the byte limit
    assert batcher.items == ["c"]
    assert batcher.push("d", 1) is None and batcher.push("e", 1) is None
    assert batcher.full and batcher.push("f", 1) == ["c", "d", "e"]  # the count cap
