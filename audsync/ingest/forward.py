"""The forwarder of `audsync serve`: stored messages, through the mapping core, to Amplitude.

One round: claim pending messages from the ingest log (a user's messages go to one forwarder at a
time, under a lease that a second thread keeps renewed), translate each with every [amplitude]
setting (the mapping core gives events the message's messageId as insert_id, so a resend is
harmless), hand the operations to the Deliverer (batching, the 429 / 413 / 5xx policy, per-user
lanes), and settle from its outcomes:

- every operation of a message acknowledged (or none made: filtered out by the settings): done;
- one refused for good by Amplitude, or the message refused by the mapping core: recorded as
  rejected with the reason, never sent again;
- anything not acknowledged (an outage past the Deliverer's retries, a stop): released, pending
  again and first in line, so an outage loses nothing and the backlog drains once it ends.

A user's next messages are claimed only after this round settled theirs, so their order holds
across rounds as the Deliverer's lanes keep it within one.

Stopping: no new round starts; the round in flight goes on until it is settled or the drain
deadline passes, then the Deliverer stops taking new requests, those in flight finish, and what is
left is released. A forwarder that does not finish by the hard deadline (a request hanging until
its timeout) has its messages released by the stopping thread: at worst they are sent twice, with
the same insert_id.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from ..config import Config
from ..delivery import DELIVERED, REJECTED, Deliverer, Outcomes
from ..errors import AudsyncError, FatalDeliveryError, ValidationError
from ..mapping import translate
from ..state.ingest import ClaimedMessage, IngestLog
from ..state.leases import gone_from_here, process_name
from .metrics import IngestMetrics

log = logging.getLogger("audsync.ingest")

CLAIM_LIMIT = 2000     # messages per round: one request's worth of events at most per lane group
LEASE_S = 30.0         # a dead server's users wait this long at most for another forwarder
IDLE_POLL_S = 0.05     # nothing pending: the next look; forward lag stays well under a second
# A round's bookkeeping (claim, settle) costs nearly as much for one message as for a thousand: a
# round that found few waits this long from its start before the next, so that a stream of
# single-event requests is forwarded in rounds of hundreds, not of one or two, at the cost of
# this much more forward lag at most.
GATHER_S = 0.1
RELEASED_PAUSE_S = 5.0  # a round that gave messages back (an outage): a breath before the next one
FATAL_PAUSE_S = 60.0   # an answer no retry fixes (an API key refused): retried this much later
SETTLE_RETRY_S = 2.0   # the state database refused a settle: tried again after this


def worker_name() -> str:
    """This process's name in the leases (state.leases.process_name and a suffix of its own), so
    that a restart in the same host and PID namespace takes back at once what a killed predecessor
    held instead of waiting for its leases to run out."""
    return f"{process_name()}:{os.urandom(4).hex()}"


class _Message:
    """A claimed message whose operations are in delivery."""

    __slots__ = ("claimed", "left", "status", "reason", "acknowledged_at")

    def __init__(self, claimed: ClaimedMessage, operations: int):
        self.claimed, self.left = claimed, operations
        self.status, self.reason = DELIVERED, None
        self.acknowledged_at = 0.0  # wall clock, as the message's received_at: its forward lag

    def add(self, outcomes: Outcomes) -> None:
        # A message that was not delivered whole goes again; rejected is only final when nothing
        # of it is left undelivered (send's rule: undelivered outranks rejected).
        if outcomes.status != DELIVERED and (self.status == DELIVERED or outcomes.status != REJECTED):
            self.status, self.reason = outcomes.status, outcomes.reason
        self.left -= 1
        if self.left == 0:
            self.acknowledged_at = time.time()


class Forwarder:
    """Forwards the ingest log to Amplitude on a thread of its own (start, stop)."""

    def __init__(self, ingest_log: IngestLog, config: Config, *, worker: str | None = None,
                 claim_limit: int = CLAIM_LIMIT, lease_s: float = LEASE_S, metrics: IngestMetrics | None = None):
        self.log = ingest_log
        self.config = config
        self.worker = worker or worker_name()
        self.claim_limit = claim_limit
        self.lease_s = lease_s
        self.forwarded = 0
        self.rejected = 0
        self.metrics = metrics if metrics is not None else IngestMetrics()
        self._stopping = threading.Event()      # no new round
        self._drain_until: float | None = None  # monotonic: the round in flight stops delivering then
        self._stop_by = 0.0                     # monotonic: stop() returns by then
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._held: list[ClaimedMessage] = []   # the round in flight, not yet settled
        self._thread = threading.Thread(target=self._run, name="ingest forwarder", daemon=True)
        self._renewer = threading.Thread(target=self._renew, name="ingest lease renewal", daemon=True)

    def start(self) -> None:
        self._take_back()
        self._thread.start()
        self._renewer.start()
        log.info("forwarding accepted messages to %s", self.config.amplitude.endpoint,
                 extra={"worker": self.worker})

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def begin_stop(self, drain_s: float, within_s: float) -> None:
        """Starts no new round; the one in flight has `drain_s` seconds to be settled, and stop()
        returns `within_s` seconds from now at the latest. Safe in a signal handler (it only sets
        flags); the first call's figures hold."""
        if self._drain_until is None:
            now = time.monotonic()
            self._drain_until, self._stop_by = now + drain_s, now + within_s
        self._stopping.set()

    def stop(self, drain_s: float = 0.0, within_s: float = 10.0) -> bool:
        """Stops (see begin_stop, unless it was called) and waits for the forwarder; whatever it
        still holds at the deadline is released here. False when it did not finish: its thread
        still waits for Amplitude's answer to a request."""
        self.begin_stop(drain_s, within_s)
        self._thread.join(max(0.0, self._stop_by - time.monotonic()))
        self._done.set()
        self._renewer.join(5)
        if self._thread.is_alive():
            with self._lock:
                held, self._held = self._held, []
            if held:
                log.warning("the forwarder did not finish in time: %d messages go again on the next start",
                            len(held))
                try:
                    self.log.release(self.worker, held)
                except AudsyncError as exc:  # the leases run out instead
                    log.error("could not give back %d claimed messages: %s", len(held), exc)
            return False
        return True

    # -- the rounds ---------------------------------------------------------------------------
    def _take_back(self) -> None:
        """Frees what killed servers of this host held (their pid is gone): a predecessor at start,
        and, at each lease renewal, a peer serving the same state from this host, so that its users
        wait seconds for another forwarder rather than the rest of their leases."""
        try:
            for worker in self.log.lease_holders():
                if worker != self.worker and gone_from_here(worker, same_pid_is_gone=True):
                    freed = self.log.abandon(worker)
                    log.info("took back the users %s held when it stopped (%d)", worker, freed)
        except AudsyncError as exc:  # their leases run out instead
            log.warning("could not take back the claims of earlier servers: %s", exc)

    def _should_stop(self) -> bool:
        return self._drain_until is not None and time.monotonic() >= self._drain_until

    def _run(self) -> None:
        try:
            with Deliverer(self.config.amplitude, self.config.delivery) as deliverer:
                while not self._stopping.is_set():
                    try:
                        pause = self._round(deliverer)
                    except AudsyncError as exc:  # the state database: its error names it
                        log.error("forwarding paused: %s", exc)
                        pause = SETTLE_RETRY_S
                    if pause:
                        self._stopping.wait(pause)
        except BaseException:
            log.exception("the forwarder stopped on an unexpected error; messages stay stored and go "
                          "on the next start")
            raise
        finally:
            self._done.set()

    def _round(self, deliverer: Deliverer) -> float:
        """One claim, delivered and settled; answers how long to wait before the next."""
        started = time.monotonic()
        claimed = self.log.claim(self.worker, self.claim_limit, self.lease_s)
        if not claimed:
            return IDLE_POLL_S
        with self._lock:
            self._held = claimed
        messages: list[_Message] = []
        refused: list[tuple[ClaimedMessage, str]] = []
        forwarded: list[ClaimedMessage] = []
        operations: list[tuple[_Message, dict]] = []
        for claimed_message in claimed:
            try:
                ops = translate(claimed_message.message, self.config.amplitude)
            except ValidationError as exc:
                refused.append((claimed_message, f"invalid: {exc}"))
                continue
            if not ops:  # filtered out by the settings or the message's integrations
                forwarded.append(claimed_message)
                continue
            message = _Message(claimed_message, len(ops))
            messages.append(message)
            operations += [(message, op) for op in ops]

        def on_outcomes(outcomes: Outcomes) -> None:
            for message in outcomes.refs:
                message.add(outcomes)

        fatal = None
        try:
            deliverer.deliver(iter(operations), on_outcomes, should_stop=self._should_stop)
        except FatalDeliveryError as exc:
            fatal = exc
        released = []
        skipped = len(forwarded)
        lags = []
        for message in messages:
            if message.left == 0 and message.status == DELIVERED:
                forwarded.append(message.claimed)
                lags.append(message.acknowledged_at - message.claimed.received_at)
            elif message.left == 0 and message.status == REJECTED:
                refused.append((message.claimed, str(message.reason)))
            else:
                released.append(message.claimed)
        if self._settle(forwarded, refused, released, skipped, lags):
            self.metrics.on_forwarded(lags, skipped)
            self.metrics.on_forward_rejected([reason for _, reason in refused])
        if refused:
            log.warning("%d messages refused for good, by Amplitude or the mapping core (recorded with their "
                        "reasons, not sent again); first: %s",
                        len(refused), refused[0][1], extra={"rejected": len(refused)})
        if fatal is not None:
            log.error("forwarding paused for %.0f s: %s", FATAL_PAUSE_S, fatal)
            return FATAL_PAUSE_S
        if released and not self._stopping.is_set():
            log.warning("%d messages were not acknowledged by Amplitude and go again", len(released),
                        extra={"released": len(released)})
            return RELEASED_PAUSE_S
        if len(claimed) >= self.claim_limit // 4:  # a backlog: the next round at once
            return 0.0
        return max(0.0, GATHER_S - (time.monotonic() - started))

    def _settle(self, forwarded: list[ClaimedMessage], refused: list[tuple[ClaimedMessage, str]],
                released: list[ClaimedMessage], skipped: int, lags: list[float]) -> bool:
        """Records the round; a state database that refuses is asked again until it answers or the
        forwarder stops (then the leases run out and the messages go again: False)."""
        counts = len(forwarded), len(refused)
        while True:
            try:
                self.log.settle(self.worker, forwarded, refused, released=released, skipped=skipped, lags=lags)
                break
            except AudsyncError as exc:
                if self._stopping.is_set():
                    log.error("could not record what was forwarded (%s); those messages go again", exc)
                    return False
                log.error("could not record what was forwarded, trying again: %s", exc)
                time.sleep(SETTLE_RETRY_S)
        self.forwarded += counts[0]
        self.rejected += counts[1]
        with self._lock:
            self._held = []
        return True

    def _renew(self) -> None:
        # A third of the lease: two renewals may fail (a busy database) before it runs out.
        while not self._done.wait(self.lease_s / 3):
            try:
                self.log.renew(self.worker, self.lease_s)
            except AudsyncError as exc:
                log.warning("could not renew the forwarder's claims: %s", exc)
            self._take_back()
