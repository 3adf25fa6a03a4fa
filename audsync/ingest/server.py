"""`audsync serve`: the ingest app on uvicorn (httptools), with the group committer behind it
and, with `[ingest] forward = true`, the forwarder (audsync.ingest.forward) sending what is stored
to Amplitude. GET /metrics on the same port answers Prometheus (audsync.ingest.metrics).

Stopping: the first SIGTERM/SIGINT closes the listening socket, answers the requests in flight
(each after its messages are committed), then closes the committer, which commits what was
submitted. At the same signal the forwarder starts no new round and settles the one in flight
(what Amplitude has not acknowledged by FORWARD_DRAIN_S goes back to pending, first in line for
the next start), and the command returns 0 within STOP_WITHIN_S. A second signal exits at once:
what was answered 200 is already committed, and an unanswered client sends again.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import threading
from typing import TYPE_CHECKING, Iterator

import uvicorn

from .._memory import FreeMemoryReleaser
from ..config import Config
from ..errors import AudsyncError, BusyError, ConfigError
from .app import IngestApp

if TYPE_CHECKING:
    from ..state.ingest import IngestLog
    from ..state.store import StateStore
    from .forward import Forwarder

log = logging.getLogger("audsync.ingest")

# Requests still unanswered this long after a stop signal are dropped (their clients send them
# again); the whole stop stays within the 30 s a service manager usually allows.
GRACEFUL_STOP_S = 25
# The forwarder's round in flight has this long after the signal to be acknowledged and settled;
# the rest goes back to pending. The whole stop returns within STOP_WITHIN_S, a request hanging
# until its timeout included (its messages are then released by the stopping thread).
FORWARD_DRAIN_S = 15
STOP_WITHIN_S = 27
# A SQLite state has one writer: one serve process holds this lease on it (PostgreSQL: any number).
SQLITE_SERVE_LEASE = "audsync serve"
SQLITE_SERVE_LEASE_TTL_S = 60
# serve's SQLite connections write at the ends of its tables and at scattered places of a few
# indexes; the operating system's file cache serves the rest. A small cache per pooled connection
# keeps serve's memory flat as the events store grows (the sync's large caches grew with it).
SQLITE_CACHE_MB = 8
RELEASE_FREE_MEMORY_S = 30  # freed C-heap pages go back to the system this often (audsync._memory)
# Every request and claim makes thousands of short-lived dicts; with the collector's default first
# threshold (700) it would run every few messages, and its full passes walk every object the
# process keeps. Objects alive once serve has started are left out of its passes (gc.freeze).
GC_THRESHOLDS = (20_000, 50, 100)
PRUNE_EVERY_S = 3600  # events past keep_events_days, messageIds past the 24 h dedup window, ...


class _Server(uvicorn.Server):
    """uvicorn's server with audsync's signal handling (see `serve`): uvicorn's own re-raises the
    signal once it has stopped, which would end a clean stop with the signal instead of exit 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # the name older uvicorn releases call
        return


def check_startable(config: Config) -> None:
    """What must hold before serve opens anything: write keys, and an Amplitude API key when it
    forwards."""
    ingest = config.ingest
    if not ingest.write_keys:
        raise ConfigError(f"{config.path}: ingest.write_keys: `audsync serve` needs at least one write key "
                          "(the keys Segment libraries send); set ingest.write_keys or the environment "
                          "variable AUDSYNC_WRITE_KEYS (comma-separated)")
    if ingest.forward:
        config.require_api_key("serve")


@contextlib.contextmanager
def _sole_server_on_sqlite(store: "StateStore", config: Config) -> Iterator[None]:
    """On a SQLite state, the only `audsync serve`: a second one is refused, naming the first (a
    first one that was killed on this host is noticed at once, as a run's lease is)."""
    from ..state import LeaseKeeper

    if store.dialect.name != "sqlite":
        yield
        return
    keeper = LeaseKeeper(store, SQLITE_SERVE_LEASE, SQLITE_SERVE_LEASE_TTL_S, what="audsync serve")
    try:
        keeper.__enter__()
    except BusyError:
        info = store.lease_info(SQLITE_SERVE_LEASE)
        first = f" (host {info.host}, pid {info.pid})" if info is not None else ""
        raise ConfigError(f"{config.path}: state.url: another `audsync serve`{first} already serves this SQLite "
                          "state database, and a SQLite state serves one process: stop that one, or give "
                          "several servers a PostgreSQL state") from None
    try:
        yield
    finally:
        keeper.__exit__(None, None, None)


@contextlib.contextmanager
def _pruning(ingest_log: "IngestLog") -> Iterator[None]:
    """Prunes the ingest tables at start, then every PRUNE_EVERY_S, in a thread of its own (each
    prune deletes in small transactions, so requests and the forwarder never wait long for it)."""
    stop = threading.Event()

    def prune_now_and_then() -> None:
        while True:
            try:
                deleted = {table: n for table, n in ingest_log.prune().items() if n}
                if deleted:
                    log.info("pruned the ingest tables: %s", ", ".join(f"{n:,} from {t}" for t, n in deleted.items()),
                             extra={"deleted": deleted})
            except AudsyncError as exc:
                log.warning("pruning the ingest tables failed (trying again in %d s): %s", PRUNE_EVERY_S, exc)
            if stop.wait(PRUNE_EVERY_S):
                return

    thread = threading.Thread(target=prune_now_and_then, name="ingest-prune", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def bind(host: str, port: int, setting: str) -> socket.socket:
    """The listening socket, bound before anything starts so that a taken port is a clear error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"{setting}: cannot resolve the address {host!r} ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"{setting}: cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.set_inheritable(True)
    return sock


def serve(config: Config, *, host: str | None = None, port: int | None = None) -> int:
    """The `audsync serve` command: blocks until SIGTERM/SIGINT; 0 after a clean stop."""
    from ..state import migrate
    from ..state.ingest import GroupCommitter, IngestLog
    from ..state.store import StateStore
    from ..statuspage import StatusPage
    from .forward import Forwarder
    from .metrics import IngestMetrics

    check_startable(config)
    ingest = config.ingest
    host = ingest.host if host is None else host
    port = ingest.port if port is None else port
    setting = "--host/--port" if (host, port) != (ingest.host, ingest.port) else f"{config.path}: ingest.host/port"
    sock = bind(host, port, setting)
    # From here on a stop signal stops serve cleanly, even one that arrives while it is starting.
    signals = _StopSignals()
    try:
        for revision in migrate.upgrade(config.state.url):
            log.info("state database: applied migration %s", revision)
        store = StateStore(config.state.url, sqlite_cache_mb=SQLITE_CACHE_MB)
    except BaseException:
        sock.close()
        raise
    holding = contextlib.ExitStack()
    try:
        holding.enter_context(_sole_server_on_sqlite(store, config))
        ingest_log = IngestLog(store, keep_events_days=ingest.keep_events_days)
        committer = GroupCommitter(ingest_log)
        holding.enter_context(_pruning(ingest_log))
        holding.enter_context(FreeMemoryReleaser(RELEASE_FREE_MEMORY_S))
        metrics = IngestMetrics(ingest_log)
        forwarder = Forwarder(ingest_log, config, metrics=metrics) if ingest.forward else None
        try:
            app = IngestApp(ingest, config.amplitude, committer, ingest_log, metrics,
                            page=StatusPage(config, store=store))
            server = _Server(uvicorn.Config(
                app.asgi, interface="asgi3", http="httptools", loop="asyncio", lifespan="off", log_config=None,
                access_log=False, server_header=False, timeout_graceful_shutdown=GRACEFUL_STOP_S,
            ))
            _route_uvicorn_logs()
            signals.attach(server, forwarder)
            if forwarder is not None:
                forwarder.start()
            else:
                log.info("forward = false: accepted messages are stored, not forwarded to Amplitude")
            log.info("serving the Segment tracking API on http://%s:%d (state: %s)", host,
                     sock.getsockname()[1], store.dialect.name,
                     extra={"host": host, "port": sock.getsockname()[1]})
            gc.collect()
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
            asyncio.run(server.serve(sockets=[sock]))
        finally:
            try:
                committer.close()
            finally:
                finished = (forwarder is None or not forwarder.started
                            or forwarder.stop(FORWARD_DRAIN_S, STOP_WITHIN_S))
    finally:
        holding.close()
        sock.close()
        store.close()
    log.info("stopped cleanly")
    if not finished:
        # The forwarder's thread still waits for an answer (released messages go again); the
        # interpreter's exit would wait for its request's timeout, past what a stop may take.
        for handler in logging.getLogger("audsync").handlers:
            handler.flush()
        os._exit(0)
    return 0


class _StopSignals:
    """SIGTERM and SIGINT: the first stops serve cleanly (see `serve`), a second exits at once. A
    signal that arrives before the server and forwarder exist (serve is still starting) stops them
    as soon as they are attached."""

    def __init__(self) -> None:
        self.server: uvicorn.Server | None = None
        self.forwarder: "Forwarder | None" = None
        self.requested = False
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def attach(self, server: uvicorn.Server, forwarder: "Forwarder | None") -> None:
        self.server, self.forwarder = server, forwarder
        if self.requested:
            self._stop()

    def _on_signal(self, signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if self.requested:
            log.warning("%s again: exiting at once; unanswered clients send their messages again", name)
            for handler in logging.getLogger("audsync").handlers:
                handler.flush()
            os._exit(128 + signum)
        log.info("%s: stopping: no new connections, answering the requests in flight "
                 "(a second signal exits at once)", name)
        self.requested = True
        self._stop()

    def _stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.forwarder is not None:
            self.forwarder.begin_stop(FORWARD_DRAIN_S, STOP_WITHIN_S)


def _route_uvicorn_logs() -> None:
    """uvicorn's own warnings and errors go out through audsync's handler, in its format."""
    ours = logging.getLogger("audsync")
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = list(ours.handlers)
        logger.setLevel(logging.WARNING)
        logger.propagate = False
