"""`audsync daemon`: every audience on its schedule, until SIGTERM/SIGINT (DESIGN.md section 3).

Any number of daemons may share one PostgreSQL state. Every worker fires an audience at the same
instants (schedules are aligned to the epoch) on the state database's clock, whatever its own
clock says; each attempt first takes a short-lived per-audience *gate* lease (without waiting),
then skips the slot when a run already started at or after it (run times are the database's too).
Because the check happens under the gate, a slot runs once however many workers fire it. The run
itself still takes the audience lease (sync.py), which is what guarantees that two runs of one
audience never overlap, also against a manual `audsync run`.

Both leases are renewed while the run lasts and expire when its worker dies. A sweeper job then
finds runs left `running` (their worker died) or `stopped` with pending rows, and resumes them on
whichever worker gets the gate first; pending rows from earlier runs are always delivered first.

Stopping: the first SIGTERM/SIGINT stops scheduling and sets the stop event every run watches
(delivery finishes its in-flight batches, acknowledgements are settled, the run is recorded as
stopped), then exits 0. A run still going after daemon.stop_timeout_s is abandoned and the
daemon exits 1, the code of `audsync run` stopped with work pending: it did not stop cleanly, and
a service manager or an operator should see that. A second signal exits at once: the plan is
already in the outbox, so the next start (or another worker) delivers it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import signal
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from apscheduler.triggers.base import BaseTrigger

from ..config import AudienceConfig, Config
from ..errors import StateError, StateUnavailableError
from .metrics import LOOPBACK, Metrics, MetricsServer
from .schedules import current_slot, trigger_for

log = logging.getLogger("audsync.daemon")

DAEMON_LEASE = "daemon:sqlite"
MAX_PARALLEL_AUDIENCES = 4
JITTER_S = 0.25          # spreads simultaneous attempts so audiences land on different workers
BUSY_PENALTY_S = 0.3     # a worker already running k audiences tries k * this later
TAKEOVER_LOCK_WAIT_S = 2.0  # the dead worker's audience lease may outlive its gate by a renewal
STATE_RETRY_FIRST_S = 1.0   # an unreachable state database at start: tried again after 1, 2, 4 ... s
STATE_RETRY_MAX_S = 30.0
CLOCK_NOISE_S = 0.1      # a measured clock offset this close to the one in use is the same offset


def gate_name(audience_lease: str) -> str:
    return f"daemon:{audience_lease}"


def result_of(report: Any) -> str:
    """The `result` label of one audience run: ok | partial | stopped | guarded | failed | not_started."""
    if report.guarded:
        return "guarded"
    if report.error:
        return "not_started" if report.run_id is None else "failed"
    if report.stopped:
        return "stopped"
    if report.pending or report.rejected:
        return "partial"
    return "ok"


class DatabaseClock:
    """The state database's clock as seen from this worker: schedule slots are instants on it, so
    that workers whose own clocks disagree still fire, and agree on, the same slots."""

    def __init__(self) -> None:
        self.offset_s = 0.0  # the database's clock minus this machine's

    def measure(self, store: Any) -> None:
        before = time.time()
        offset = store.clock() - (before + time.time()) / 2
        # Changed only when it really moved: a new offset shifts the next fire times, and a fire
        # time moved back by jitter would come twice (or name the slot before its own).
        if abs(offset - self.offset_s) > CLOCK_NOISE_S:
            self.offset_s = offset

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=self.offset_s)


class OnDatabaseClock(BaseTrigger):
    """`trigger`'s fire times, read on the database's clock: APScheduler waits on this machine's."""

    def __init__(self, trigger: BaseTrigger, clock: DatabaseClock):
        self.trigger = trigger
        self.clock = clock

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        shift = timedelta(seconds=self.clock.offset_s)
        # Asked from an instant, not from the previous fire time: an interval would add itself to
        # a fire time shifted by an older offset, off the epoch-aligned instants for good.
        after = now if previous_fire_time is None else previous_fire_time + timedelta(microseconds=1)
        fire = self.trigger.get_next_fire_time(None, after + shift)
        return None if fire is None else fire - shift

    def __str__(self) -> str:
        return str(self.trigger)


class Daemon:
    """One worker. `run()` blocks until a stop is requested and returns the exit code."""

    def __init__(self, config: Config, *, metrics_port: int | None = None, metrics_host: str = LOOPBACK):
        self.config = config
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        # Another holder of an audience lease means someone else is syncing it: do not queue behind.
        self.run_config = dataclasses.replace(
            config, state=dataclasses.replace(config.state, lock_wait_s=min(config.state.lock_wait_s,
                                                                             TAKEOVER_LOCK_WAIT_S)))
        self.metrics = Metrics()
        self.clock = DatabaseClock()
        self.metrics_port = metrics_port
        self.metrics_host = metrics_host
        self.metrics_server: MetricsServer | None = None
        self.stop_event = threading.Event()    # watched by every run_once
        self.stopping = False
        # Reentrant: the signal handler (main thread) may interrupt the main thread while it holds it.
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._running: set[str] = set()
        self._signals = 0
        self.store: Any = None
        self.scheduler: Any = None
        self._daemon_lease: Any = None

    # ------------------------------------------------------------------ lifecycle

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            log.info("%s: stopping; no new runs, running ones finish their current batch", name,
                     extra={"worker": self.worker})
            self.request_stop()
            return
        # The plan of any run in progress is already in the outbox: nothing planned is lost.
        log.warning("%s again: exiting at once; unfinished runs resume on the next start", name,
                    extra={"worker": self.worker})
        for handler in logging.getLogger("audsync").handlers:
            handler.flush()
        os._exit(128 + signum)

    def request_stop(self) -> None:
        with self._lock:
            self.stopping = True
            self.stop_event.set()
            self._idle.notify_all()
        self.metrics.up.set(0)

    def healthy(self) -> bool:
        return not self.stopping

    def run(self) -> int:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        from ..state import StateStore

        applied = self._upgrade_when_reachable()
        if applied is None:
            log.info("daemon stopped before the state database could be reached", extra={"worker": self.worker})
            return 0
        for revision in applied:
            log.info("state database: applied migration %s", revision)
        self.store = StateStore(self.config.state.url)
        try:
            if self.store.dialect.name == "sqlite":
                self._take_daemon_lease()
            try:
                self._load_metrics()
                if self.metrics_port is not None:
                    from ..statuspage import StatusPage

                    self.metrics_server = MetricsServer(self.metrics, self.metrics_port, self.healthy,
                                                        host=self.metrics_host,
                                                        page=StatusPage(self.config, store=self.store)).start()
                    host, port = self.metrics_server.server.server_address[:2]
                    log.info("metrics on port %d of %s (/metrics, /healthz, the status page at /)", port, host,
                             extra={"worker": self.worker, "metrics_host": host, "metrics_port": port})
                daemon_settings = self.config.daemon
                parallel = max(1, min(len(self.config.audiences), MAX_PARALLEL_AUDIENCES))
                self.scheduler = BackgroundScheduler(
                    timezone=timezone.utc,
                    executors={"default": ThreadPoolExecutor(parallel), "sweep": ThreadPoolExecutor(1)},
                    job_defaults={"coalesce": True, "max_instances": 1,
                                  "misfire_grace_time": max(1, int(daemon_settings.misfire_grace_s))},
                )
                _route_apscheduler_logs()
                self.clock.measure(self.store)
                for audience in self.config.audiences:
                    schedule = self.schedule_of(audience)
                    self.scheduler.add_job(self._scheduled, OnDatabaseClock(trigger_for(schedule), self.clock),
                                           args=[audience],
                                           id=f"audience:{audience.key}", name=f"{audience.key} ({schedule})")
                # The first sweep runs at once: it resumes what a crashed or stopped run left pending.
                self.scheduler.add_job(self._sweep, "interval", seconds=max(1.0, daemon_settings.lease_ttl_s / 2),
                                       kwargs={"initial": False}, id="sweep", executor="sweep")
                self.scheduler.add_job(self._sweep, "date", run_date=datetime.now(timezone.utc),
                                       kwargs={"initial": True}, id="resume", executor="sweep")
                self.metrics.up.set(0 if self.stopping else 1)
                if not self.stopping:
                    self.scheduler.start()
                    log.info("daemon started: %d audiences", len(self.config.audiences),
                             extra={"worker": self.worker, "state": self.store.dialect.name})
                return self._wait_for_stop()
            finally:
                if self._daemon_lease is not None:
                    self._daemon_lease.__exit__(None, None, None)
        finally:
            if self.metrics_server is not None:
                self.metrics_server.stop()
            self.store.close()

    def _upgrade_when_reachable(self) -> list[str] | None:
        """Applies pending migrations once the state database answers: at boot it may come up
        after the daemon, and a daemon that exited would stay down. None when stopped first."""
        from ..state import migrate

        delay, attempt = STATE_RETRY_FIRST_S, 1
        while True:
            try:
                return migrate.upgrade(self.config.state.url)
            except StateUnavailableError as exc:
                log.warning("%s; attempt %d failed, trying again at %s", exc, attempt,
                            time.strftime("%H:%M:%S UTC", time.gmtime(time.time() + delay)),
                            extra={"worker": self.worker, "attempt": attempt, "retry_in_s": delay})
            if self.stop_event.wait(delay):
                return None
            delay, attempt = min(delay * 2, STATE_RETRY_MAX_S), attempt + 1

    def _wait_for_stop(self) -> int:
        while not self.stopping:
            with self._lock:
                self._idle.wait(0.5)
            if self._daemon_lease is not None and self._daemon_lease.lost.is_set():
                log.error("lost the daemon lease on the SQLite state (this process was paused longer than "
                          "daemon.lease_ttl_s and another daemon started): stopping")
                self.request_stop()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + self.config.daemon.stop_timeout_s
        with self._lock:
            while self._running and time.monotonic() < deadline:
                self._idle.wait(max(0.0, min(0.5, deadline - time.monotonic())))
            left = sorted(self._running)
        if left:
            log.error("stop timeout (%g s, daemon.stop_timeout_s): abandoning runs of %s; their planned work "
                      "stays pending and is resumed by the next start or another worker",
                      self.config.daemon.stop_timeout_s, ", ".join(left), extra={"worker": self.worker})
            for handler in logging.getLogger("audsync").handlers:
                handler.flush()
            os._exit(1)  # the run threads cannot be interrupted; their leases expire on their own
        log.info("daemon stopped", extra={"worker": self.worker})
        return 0

    def _take_daemon_lease(self) -> None:
        """SQLite has no way to share the state between workers safely: one daemon per file."""
        from ..state import LeaseKeeper
        from .._redact import redact

        # LeaseKeeper takes over at once a lease whose holder died on this host.
        keeper = LeaseKeeper(self.store, DAEMON_LEASE, self.config.daemon.lease_ttl_s, what="daemon")
        try:
            keeper.__enter__()
        except StateError:
            info = self.store.lease_info(DAEMON_LEASE)
            who = "another audsync daemon" if info is None else (
                f"another audsync daemon (host {info.host}, pid {info.pid}, since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(info.acquired_at))})")
            raise StateError(
                f"state.url {redact(self.config.state.url)}: {who} already runs on this SQLite state; "
                "a SQLite state supports one daemon. Stop that one, or move the state to PostgreSQL "
                "to run several workers.") from None
        self._daemon_lease = keeper

    # ------------------------------------------------------------------ jobs

    def schedule_of(self, audience: AudienceConfig) -> str:
        return audience.schedule or self.config.daemon.default_schedule

    def _scheduled(self, audience: AudienceConfig) -> None:
        slot = current_slot(self.schedule_of(audience), self.clock.now(), self.config.daemon.misfire_grace_s)
        self.attempt(audience, slot=slot)

    def _sweep(self, initial: bool) -> None:
        """Resume audiences whose last run died (`running` with an expired lease) or was stopped
        with work pending; at start, also any audience with pending rows. Measures the database's
        clock again first: this machine's may have been set or drifted since."""
        destination = self.config.amplitude.destination_id
        try:
            self.clock.measure(self.store)
        except StateError as exc:
            log.warning("sweep: %s", exc, extra={"worker": self.worker})
        for audience in self.config.audiences:
            if self.stopping:
                return
            with self._lock:
                if audience.key in self._running:
                    continue
            try:
                row = self.store.find_audience(destination, audience.key)
                if row is not None and self._needs_resume(row.id, initial):
                    threading.Thread(target=self.attempt, args=(audience,), kwargs={"resume": True},
                                     name=f"resume {audience.key}", daemon=True).start()
            except StateError as exc:
                log.warning("sweep: %s", exc, extra={"audience": audience.key, "worker": self.worker})

    def _needs_resume(self, audience_id: int, initial: bool) -> bool:
        last = self.store.last_runs(audience_id, 1)
        status = last[0]["status"] if last else None
        if status == "running":
            return True
        if initial or status == "stopped":
            return self.store.pending_count(audience_id) > 0
        return False

    def attempt(self, audience: AudienceConfig, *, slot: datetime | None = None, resume: bool = False) -> None:
        """One try at running `audience`: for a schedule slot nobody has run yet, or to resume."""
        from ..state import LeaseKeeper
        from ..sync import lease_name

        with self._lock:
            if self.stopping or audience.key in self._running:
                return
            busy = len(self._running)
            self._running.add(audience.key)
        try:
            if self.stop_event.wait(random.uniform(0, JITTER_S) + BUSY_PENALTY_S * busy):
                return
            gate = LeaseKeeper(self.store, gate_name(lease_name(self.config, audience)),
                               self.config.daemon.lease_ttl_s, what=f"audience {audience.name!r}")
            try:
                gate.__enter__()
            except StateError:
                log.debug("another worker is on it", extra={"audience": audience.key, "worker": self.worker})
                return
            try:
                if not self._should_run(audience, slot, resume):
                    return
                self._run_one(audience, "resume" if resume else "schedule")
            finally:
                gate.__exit__(None, None, None)
        except StateError as exc:
            log.error("%s", exc, extra={"audience": audience.key, "worker": self.worker})
        except Exception:  # a bug outside the run itself (run_once records its own crashes): count it too
            self.metrics.runs.labels(audience=audience.key, result="failed").inc()
            log.exception("audience run crashed", extra={"audience": audience.key, "worker": self.worker})
        finally:
            with self._lock:
                self._running.discard(audience.key)
                self._idle.notify_all()

    def _should_run(self, audience: AudienceConfig, slot: datetime | None, resume: bool) -> bool:
        if slot is not None:
            # Fired early by as much as the measured offset is off: the run must start within
            # its slot on the database's clock, where the other workers look for it.
            early = slot.timestamp() - self.store.clock()
            if early > 0 and self.stop_event.wait(early):
                return False
        row = self.store.find_audience(self.config.amplitude.destination_id, audience.key)
        if row is None:
            return not resume
        if resume:
            return self._needs_resume(row.id, initial=True)
        last = self.store.last_runs(row.id, 1)
        if slot is not None and last and last[0]["started_at"] >= slot.timestamp():
            log.debug("slot %s already run", slot.isoformat(), extra={"audience": audience.key})
            return False
        return True

    def _run_one(self, audience: AudienceConfig, why: str) -> None:
        from ..sync import run_once

        if self.stopping:
            return
        log.info("run starting", extra={"audience": audience.key, "worker": self.worker, "why": why})
        report = run_once(self.run_config, audiences=[audience.name], stop_event=self.stop_event,
                          apply_migrations=False, on_response=self.metrics.on_response)
        for entry in report.audiences:
            self.record(entry)

    def record(self, entry: Any) -> None:
        """Metrics and one structured log line for one finished audience run."""
        result = result_of(entry)
        m, key = self.metrics, entry.key
        m.runs.labels(audience=key, result=result).inc()
        if result != "not_started":
            m.run_seconds.labels(audience=key).observe(entry.duration_s)
            for kind in ("entered", "exited", "changed", "unset", "resent", "delivered", "rejected"):
                m.users.labels(audience=key, kind=kind).inc(getattr(entry, kind))
            m.pending.labels(audience=key).set(entry.pending)
        if result == "ok":
            m.last_success.labels(audience=key).set(time.time())
        fields = {"audience": key, "worker": self.worker, "run_id": entry.run_id, "result": result,
                  "duration_s": round(entry.duration_s, 3), "entered": entry.entered, "exited": entry.exited,
                  "changed": entry.changed, "delivered": entry.delivered, "rejected": entry.rejected,
                  "pending": entry.pending}
        if result == "not_started":
            log.info("run not started: %s", entry.error, extra=fields)
        elif result == "failed":
            log.error("run failed: %s", entry.error, extra=fields)
        elif result == "guarded":  # the daemon never allows it: an operator runs it once by hand
            log.warning("run guarded: %s", entry.error, extra=fields)
        else:
            log.info("run finished", extra=fields)

    def _load_metrics(self) -> None:
        """Pending users and the last success per audience, as the state database knows them."""
        destination = self.config.amplitude.destination_id
        for audience in self.config.audiences:
            row = self.store.find_audience(destination, audience.key)
            if row is None:
                continue
            self.metrics.pending.labels(audience=audience.key).set(self.store.pending_count(row.id))
            for run in self.store.last_runs(row.id, 20):
                if run["status"] == "ok" and run["finished_at"]:
                    self.metrics.last_success.labels(audience=audience.key).set(run["finished_at"])
                    break


def _route_apscheduler_logs() -> None:
    """APScheduler's own warnings (missed or coalesced runs) in our log format."""
    ours = logging.getLogger("audsync")
    theirs = logging.getLogger("apscheduler")
    theirs.handlers[:] = list(ours.handlers)
    theirs.setLevel(logging.WARNING)
    theirs.propagate = False


def run_daemon(config: Config, *, metrics_port: int | None = None, metrics_host: str = LOOPBACK) -> int:
    """The `audsync daemon` command: blocks until SIGTERM/SIGINT; 0 after a clean stop."""
    config.require_api_key("daemon")
    daemon = Daemon(config, metrics_port=metrics_port, metrics_host=metrics_host)
    daemon.install_signal_handlers()
    return daemon.run()
