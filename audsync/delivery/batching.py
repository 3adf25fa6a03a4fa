"""Amplitude's per-request limits, measured on encoded bytes (amplitude-api.md section 3.1). Pure."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate
from typing import Iterator, Sequence

MB = 1_000_000


@dataclass(frozen=True)
class Limit:
    max_items: int
    max_bytes: int  # of the whole request body, envelope included


# The envelope (api_key, options, form framing) is bounded by ENVELOPE_BYTES; items get the rest.
ENVELOPE_BYTES = 1_024

LIMITS = {
    "event": Limit(2_000, MB - 1),            # /2/httpapi: at most 2000 events and under 1 MB
    "batch": Limit(2_000, 20 * MB),           # /batch: 2000 events, 20 MB
    "identify": Limit(1_000, MB - 1),         # /identify: no documented cap; stay modest and under 1 MB
    "groupidentify": Limit(1_024, MB - 1),    # /groupidentify: 1024 per request and 1 MB
    "usermap": Limit(2_000, MB - 1),          # /usermap: 2000 mappings and 1 MB
}


def limit_for(api: str, batch_endpoint: bool) -> Limit:
    return LIMITS["batch" if api == "event" and batch_endpoint else api]


class Batcher:
    """Groups encoded items into requests that respect one limit: the Deliverer's one measure of
    a request. An item is counted as its encoded length plus one (the comma between items), under
    what the envelope leaves of the limit. `cap` lowers the item count after a 413 so later
    requests stay under what Amplitude accepted."""

    __slots__ = ("limit", "cap", "items", "size", "alone_max")

    def __init__(self, limit: Limit):
        self.limit = limit
        self.cap = limit.max_items
        self.items: list = []
        self.size = ENVELOPE_BYTES
        # The largest item a request can carry: a longer one can never be sent (the Deliverer's
        # per-item loop compares with it directly).
        self.alone_max = limit.max_bytes - ENVELOPE_BYTES

    def push(self, item, encoded_len: int) -> list | None:
        """Adds the item, first closing the current request when the item does not fit in it;
        returns that closed request (one call per item: this is the deliverer's hot path)."""
        items = self.items
        closed = None
        if len(items) >= self.cap or self.size + encoded_len + 1 > self.limit.max_bytes:
            closed = items
            self.items = items = []
            self.size = ENVELOPE_BYTES
        items.append(item)
        self.size += encoded_len + 1
        return closed

    def take(self) -> list:
        items, self.items, self.size = self.items, [], ENVELOPE_BYTES
        return items

    @property
    def full(self) -> bool:
        return len(self.items) >= self.cap

    def cuts(self, lengths: Sequence[int]) -> Iterator[tuple[int, int]]:
        """(start, end) of each request that a run of items of these encoded lengths fills on its
        own, in order: the requests `push` would close for them, found by bisection instead of
        one call per item (a Bundle: a page of an audience's outbox). Every item must fit alone."""
        room = self.limit.max_bytes - ENVELOPE_BYTES
        ends = list(accumulate((length + 1 for length in lengths), initial=0))  # ends[i]: bytes of the first i
        n, start = len(lengths), 0
        while start < n:
            end = max(start + 1, min(n, start + self.cap, bisect_right(ends, ends[start] + room, lo=start) - 1))
            yield start, end
            start = end
