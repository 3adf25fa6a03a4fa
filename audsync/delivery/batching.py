"""Amplitude's per-request limits, measured on encoded bytes (amplitude-api.md section 3.1). Pure."""

from __future__ import annotations

from dataclasses import dataclass

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
    """Groups encoded items into requests that respect one limit; `cap` lowers the item count
    after a 413 so later requests stay under what Amplitude accepted."""

    __slots__ = ("limit", "cap", "items", "size", "alone_max")

    def __init__(self, limit: Limit):
        self.limit = limit
        self.cap = limit.max_items
        self.items: list = []
        self.size = ENVELOPE_BYTES
        self.alone_max = limit.max_bytes - ENVELOPE_BYTES  # the largest item a request can carry

    def fits(self, encoded_len: int) -> bool:
        # +1 for the comma between items
        return len(self.items) < self.cap and self.size + encoded_len + 1 <= self.limit.max_bytes

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

    def too_big_alone(self, encoded_len: int) -> bool:
        return encoded_len > self.alone_max

    def add(self, item, encoded_len: int) -> None:
        self.items.append(item)
        self.size += encoded_len + 1

    def take(self) -> list:
        items, self.items, self.size = self.items, [], ENVELOPE_BYTES
        return items

    @property
    def full(self) -> bool:
        return len(self.items) >= self.cap
