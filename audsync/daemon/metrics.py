"""Prometheus metrics and /healthz for the daemon (`--metrics-port`)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest


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
    """Serves /metrics and /healthz on `host` (loopback by default) in a background thread."""

    def __init__(self, metrics: Metrics, port: int, healthy: Callable[[], bool], host: str = LOOPBACK):
        self.metrics = metrics
        self.healthy = healthy
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.split("?")[0] == "/metrics":
                    self._answer(200, outer.metrics.render(), CONTENT_TYPE_LATEST)
                elif self.path.split("?")[0] == "/healthz":
                    ok = outer.healthy()
                    self._answer(200 if ok else 503, b"ok\n" if ok else b"stopping\n", "text/plain")
                else:
                    self._answer(404, b"not found\n", "text/plain")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
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
