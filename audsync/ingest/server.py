"""`audsync serve`: the ingest app on uvicorn (httptools), with the group committer behind it.

Stopping: the first SIGTERM/SIGINT closes the listening socket, answers the requests in flight
(each after its messages are committed), then closes the committer, which commits what was
submitted, and the command returns 0. A second signal exits at once: what was answered 200 is
already committed, and an unanswered client sends again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from typing import Iterator

import uvicorn

from ..config import Config
from ..errors import ConfigError
from .app import IngestApp

log = logging.getLogger("audsync.ingest")

# Requests still unanswered this long after a stop signal are dropped (their clients send them
# again); the whole stop stays within the 30 s a service manager usually allows.
GRACEFUL_STOP_S = 25


class _Server(uvicorn.Server):
    """uvicorn's server with audsync's signal handling (see `serve`): uvicorn's own re-raises the
    signal once it has stopped, which would end a clean stop with the signal instead of exit 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # the name older uvicorn releases call
        return


def check_startable(config: Config) -> None:
    """What must hold before serve opens anything: write keys, and no forwarding asked of this
    version."""
    ingest = config.ingest
    if not ingest.write_keys:
        raise ConfigError(f"{config.path}: ingest.write_keys: `audsync serve` needs at least one write key "
                          "(the keys Segment libraries send); set ingest.write_keys or the environment "
                          "variable AUDSYNC_WRITE_KEYS (comma-separated)")
    if ingest.forward:
        raise ConfigError(f"{config.path}: ingest.forward: forwarding accepted messages to Amplitude is not "
                          "available yet in this version of `audsync serve`; set forward = false in [ingest] "
                          "to accept and store messages only")


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

    check_startable(config)
    ingest = config.ingest
    host = ingest.host if host is None else host
    port = ingest.port if port is None else port
    setting = "--host/--port" if (host, port) != (ingest.host, ingest.port) else f"{config.path}: ingest.host/port"
    sock = bind(host, port, setting)
    try:
        for revision in migrate.upgrade(config.state.url):
            log.info("state database: applied migration %s", revision)
        store = StateStore(config.state.url)
    except BaseException:
        sock.close()
        raise
    try:
        ingest_log = IngestLog(store, keep_events_days=ingest.keep_events_days)
        committer = GroupCommitter(ingest_log)
        try:
            app = IngestApp(ingest, config.amplitude, committer, ingest_log)
            server = _Server(uvicorn.Config(
                app.asgi, http="httptools", loop="asyncio", lifespan="off", log_config=None, access_log=False,
                server_header=False, timeout_graceful_shutdown=GRACEFUL_STOP_S,
            ))
            _route_uvicorn_logs()
            _stop_on_signals(server)
            log.info("serving the Segment tracking API on http://%s:%d (state: %s)", host,
                     sock.getsockname()[1], store.dialect.name,
                     extra={"host": host, "port": sock.getsockname()[1]})
            asyncio.run(server.serve(sockets=[sock]))
        finally:
            committer.close()
    finally:
        sock.close()
        store.close()
    log.info("stopped cleanly")
    return 0


def _stop_on_signals(server: uvicorn.Server) -> None:
    def on_signal(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if server.should_exit:
            log.warning("%s again: exiting at once; unanswered clients send their messages again", name)
            for handler in logging.getLogger("audsync").handlers:
                handler.flush()
            os._exit(128 + signum)
        log.info("%s: stopping: no new connections, answering the requests in flight "
                 "(a second signal exits at once)", name)
        server.should_exit = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def _route_uvicorn_logs() -> None:
    """uvicorn's own warnings and errors go out through audsync's handler, in its format."""
    ours = logging.getLogger("audsync")
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = list(ours.handlers)
        logger.setLevel(logging.WARNING)
        logger.propagate = False
