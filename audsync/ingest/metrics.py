"""Prometheus metrics of `audsync serve`, answered at /metrics on the serve port.

The counters and the forward lag are this process's, since it started: several servers sharing a
PostgreSQL state are summed by Prometheus (sum without(instance)). The backlog is read from the
state database at each scrape, so every server shows the shared one.

Labels are bounded: a rejection's reason is free text naming the values at fault, so its label is
a short code (reason_code, forward_reason_code), never the text; the text is in `audsync status`.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..errors import AudsyncError

if TYPE_CHECKING:
    from ..state.ingest import IngestLog

log = logging.getLogger("audsync.ingest")

CONTENT_TYPE = CONTENT_TYPE_LATEST

# From a live round (50 ms polls, a request to Amplitude) to the drain after an outage.
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)

# The top-level fields a validation reason can start with (the mapping core's and the server's
# checks name the field at fault first: "userId: ...", "properties.products[2]: ...").
_FIELDS = frozenset({
    "message", "type", "userId", "anonymousId", "messageId", "event", "name", "category", "groupId", "previousId",
    "timestamp", "originalTimestamp", "sentAt", "receivedAt", "properties", "traits", "context", "integrations",
})
_FIELD = re.compile(r"[A-Za-z]+")
_PER_PROCESS = " (this process, since it started)"


def reason_code(reason: str) -> str:
    """The label of a validation rejection: the top-level field its reason starts with, or
    "other" (a bounded set whatever clients send)."""
    head = _FIELD.match(reason)
    field = head.group(0) if head else ""
    return field if field in _FIELDS and reason[len(field):len(field) + 1] in (":", ".", "[") else "other"


def forward_reason_code(reason: str) -> str:
    """The label of a message refused for good while forwarding (audsync.delivery.policy's and
    the forwarder's reasons)."""
    text = reason.lower()
    for prefix, code in (("invalid: ", "invalid_message"), ("invalid field", "invalid_field"),
                         ("missing field", "missing_field"), ("invalid id length", "invalid_id_length"),
                         ("device silenced", "silenced"), ("413", "too_large"),
                         ("the item is larger", "too_large"), ("400", "bad_request")):
        if text.startswith(prefix):
            return code
    return "other"


class IngestMetrics:
    """One registry per server (tests run several in one process)."""

    def __init__(self, ingest_log: "IngestLog | None" = None) -> None:
        self.ingest_log = ingest_log
        self.registry = r = CollectorRegistry()
        self.requests = Counter("audsync_ingest_requests", "HTTP requests answered, by status code (/metrics and /healthz not counted)"
                                + _PER_PROCESS,
                                ["code"], registry=r)
        self.accepted = Counter("audsync_ingest_messages_accepted",
                                "Messages stored, by call type (a messageId seen in the last 24 hours is not "
                                "stored again: see duplicates)" + _PER_PROCESS, ["type"], registry=r)
        self.duplicates = Counter("audsync_ingest_messages_duplicate",
                                  "Valid messages acknowledged without being stored: their messageId was stored "
                                  "in the last 24 hours" + _PER_PROCESS, registry=r)
        self.rejected = Counter("audsync_ingest_messages_rejected",
                                "Messages refused at validation, by the field at fault (`audsync status` has the "
                                "reasons in full)" + _PER_PROCESS, ["reason"], registry=r)
        self.forwarded = Counter("audsync_ingest_messages_forwarded",
                                 "Messages acknowledged by Amplitude" + _PER_PROCESS, registry=r)
        self.skipped = Counter("audsync_ingest_messages_skipped",
                               "Messages with nothing to send to Amplitude (their integrations or the [amplitude] "
                               "settings leave nothing), done without a request" + _PER_PROCESS, registry=r)
        self.forward_rejected = Counter("audsync_ingest_forward_rejected",
                                        "Messages refused for good while forwarding (by Amplitude, or the mapping "
                                        "core), by kind" + _PER_PROCESS, ["reason"], registry=r)
        self.lag = Histogram("audsync_ingest_forward_lag_seconds",
                             "Seconds from a message's arrival (its receivedAt, set just before the commit that "
                             "precedes the 200) to Amplitude's acknowledgement of it" + _PER_PROCESS,
                             buckets=LAG_BUCKETS, registry=r)
        self.backlog = Gauge("audsync_ingest_backlog_messages",
                             "Messages stored and not yet forwarded, in the state database (shared by every "
                             "server on it), read at the scrape", registry=r)
        self.oldest = Gauge("audsync_ingest_oldest_pending_age_seconds",
                            "Age of the oldest message not yet forwarded (0 when none), read at the scrape",
                            registry=r)
        self.backlog_read = Gauge("audsync_ingest_backlog_read",
                                  "1 when the backlog gauges were read from the state database at this scrape, "
                                  "0 when it did not answer (they then hold their last values)", registry=r)

    # -- what the app and the forwarder report ------------------------------------------------
    def on_stored(self, messages: list[dict], stored: list[bool]) -> None:
        duplicates = 0
        by_type: dict[str, int] = {}
        for message, new in zip(messages, stored):
            if new:
                kind = message["type"]
                by_type[kind] = by_type.get(kind, 0) + 1
            else:
                duplicates += 1
        for kind, n in by_type.items():
            self.accepted.labels(type=kind).inc(n)
        if duplicates:
            self.duplicates.inc(duplicates)

    def on_rejected(self, reasons: list[str]) -> None:
        for reason in reasons:
            self.rejected.labels(reason=reason_code(reason)).inc()

    def on_forwarded(self, lags: list[float], skipped: int) -> None:
        """`lags`: per message acknowledged by Amplitude, seconds from its arrival."""
        for lag in lags:
            self.lag.observe(max(0.0, lag))  # another server's clock may run a little ahead
        if lags:
            self.forwarded.inc(len(lags))
        if skipped:
            self.skipped.inc(skipped)

    def on_forward_rejected(self, reasons: list[str]) -> None:
        for reason in reasons:
            self.forward_rejected.labels(reason=forward_reason_code(reason)).inc()

    # -- the scrape --------------------------------------------------------------------------
    def render(self) -> bytes:
        """The text exposition, the backlog read now (blocking: called in a thread)."""
        if self.ingest_log is not None:
            try:
                pending, oldest = self.ingest_log.backlog()
            except AudsyncError as exc:
                self.backlog_read.set(0)
                log.warning("/metrics: could not read the backlog from the state database: %s", exc)
            else:
                self.backlog.set(pending)
                self.oldest.set(0.0 if oldest is None else max(0.0, time.time() - oldest))
                self.backlog_read.set(1)
        return generate_latest(self.registry)
