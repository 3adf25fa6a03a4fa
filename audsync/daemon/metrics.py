"""Prometheus metrics, /healthz and the status page (audsync.statuspage) for the daemon (`--metrics-port`)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from ..statuspage import StatusPage


class Metrics:
    """One registry per daemon, so tests can run several daemons' worth in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs = Counter("audsync_runs", "Audience runs by result", ["audience", "result"], registry=r)
        self.run_seconds = Histogram(
            "audsync_run_duration_seconds", "Duration of audience runs", ["audience"], registry=r,
            buckets=(0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600),
        )
        self.users = Counter("audsync_users", "Users per change and outcome",
                             ["audience", "kind"], registry=r)
        self.pending = Gauge("audsync_pending_users", "Users planned but not yet acknowledged",
                             ["audience"], registry=r)
        self.responses = Counter("audsync_amplitude_responses", "Amplitude answers by API and HTTP status "
                                 "(0: network error)", ["api", "status"], registry=r)
        self.last_success = Gauge("audsync_last_success_timestamp_seconds",
                                  "Unix time of the last run that left nothing pending or rejected",
                                  ["audience"], registry=r)
        self.up = Gauge("audsync_up", "1 while the daemon is running", registry=r)

    def on_response(self, api: str, status: int, items: int) -> None:
        self.responses.labels(api=api, status=str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


LOOPBACK = "127.0.0.1"  # metrics stay on this machine unless --metrics-host widens them


class MetricsServer:
    """Serves /metrics, /healthz and, given a `page`, the status page (GET / and
    /audiences/{key}) on `host` (loopback by default: the page shows user ids) in a background
    thread. Read-only: any method but GET and HEAD is answered 405."""

    def __init__(self, metrics: Metrics, port: int, healthy: Callable[[], bool], host: str = LOOPBACK,
                 page: "StatusPage | None" = None):
        from ..statuspage import is_page_path

        self.metrics = metrics
        self.healthy = healthy
        self.page = page
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path = self.path.split("?")[0]
                if path == "/metrics":
                    self._answer(200, outer.metrics.render(), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok = outer.healthy()
                    self._answer(200 if ok else 503, b"ok\n" if ok else b"stopping\n", "text/plain")
                elif outer.page is not None and is_page_path(path):
                    answer = outer.page.respond(self.command, path)
                    self._answer(answer.status, answer.body, answer.content_type, answer.headers)
                else:
                    self._answer(404, b"not found\n", "text/plain")

            def do_HEAD(self) -> None:  # noqa: N802
                self.do_GET()

            def _refuse(self) -> None:
                self._answer(405, b"method not allowed: this port is read-only\n", "text/plain",
                             {"Allow": "GET, HEAD"})

            do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_TRACE = do_CONNECT = _refuse  # noqa: N815

            def _answer(self, status: int, body: bytes, content_type: str,
                        headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # scrapes are not worth a log line each
                return

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True)

    def start(self) -> "MetricsServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def unix_now() -> float:
    return time.time()
