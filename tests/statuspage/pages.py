"""Serving the status page in tests: the daemon's real metrics server over loopback, on a frozen clock."""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request
from email.message import Message
from typing import Any, Callable, Iterator

from audsync.config import Config
from audsync.daemon.metrics import Metrics, MetricsServer
from audsync.statuspage import StatusPage


@contextlib.contextmanager
def page_server(config: Config, clock: Callable[[], float], **options: Any) -> Iterator[str]:
    """The base URL of a metrics server carrying the page of `config`'s state."""
    page = StatusPage(config, clock=clock, **options)
    server = MetricsServer(Metrics(), 0, lambda: True, page=page).start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()
        page.close()


def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, Message, str]:
    """Status, headers (looked up in any case) and body."""
    request = urllib.request.Request(url, method=method, data=b"x" if method in ("POST", "PUT") else None,
                                     headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.headers, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()
