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
    """Feeds items of the given encoded sizes like the deliverer does; returns the requests."""
    requests = []
    for n, size in enumerate(sizes):
        if not batcher.fits(size):
            requests.append(batcher.take())
        batcher.add(n, size)
        if batcher.full:
            requests.append(batcher.take())
    if batcher.items:
        requests.append(batcher.take())
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


def test_item_too_big_alone_is_detected_before_sending():
    batcher = Batcher(limit_for("event", False))
    assert batcher.too_big_alone(MB)
    assert not batcher.too_big_alone(MB - 1 - ENVELOPE_BYTES)
    assert not Batcher(limit_for("event", True)).too_big_alone(MB)


def test_lowered_cap_after_413_limits_later_requests():
    batcher = Batcher(limit_for("event", False))
    batcher.cap = 300
    assert [len(r) for r in _fill(batcher, [10] * 700)] == [300, 300, 100]


def test_take_resets_the_measured_size():
    batcher = Batcher(Limit(10, ENVELOPE_BYTES + 100))
    batcher.add("a", 90)
    assert not batcher.fits(20)
    assert batcher.take() == ["a"]
    assert batcher.fits(20) and batcher.items == []


def test_push_closes_the_request_an_item_does_not_fit_in():
    batcher = Batcher(Limit(3, ENVELOPE_BYTES + 100))
    assert batcher.push("a", 40) is None and batcher.push("b", 40) is None
    assert batcher.push("c", 40) == ["a", "b"]  # 3 * 41 bytes would pass the byte limit
    assert batcher.items == ["c"]
    assert batcher.push("d", 1) is None and batcher.push("e", 1) is None
    assert batcher.full and batcher.push("f", 1) == ["c", "d", "e"]  # the count cap
