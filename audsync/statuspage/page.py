"""The status page (DESIGN.md section 8): GET / and GET /audiences/{key}, one HTML document
each, rendered on the server from the state database by Jinja2 templates with autoescaping.

Shared by the daemon's metrics server (http.server) and `audsync serve` (Starlette): respond()
takes a method and a path and answers an Answer, whichever server carries it. Read-only: no
form, no action, GET (and HEAD) only; every other method is answered 405. The page carries no
script, and its Content-Security-Policy allows none, nor anything from the network: its one
stylesheet is inline, by hash."""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any, Callable
from urllib.parse import unquote

from jinja2 import Environment, PackageLoader, StrictUndefined, pass_context
from markupsafe import Markup

from .._redact import redact
from ..config import Config
from ..errors import AudsyncError
from ..state import StateStore
from . import charts
from .data import overview, run_duration
from .timefmt import duration, iso, relative, utc

log = logging.getLogger("audsync.statuspage")

REFRESH_S = 30
AUDIENCE_PREFIX = "/audiences/"
# In words first; the symbol is decoration (aria-hidden), the colour (CSS) too.
RESULTS = {
    "ok": ("✓", "ok"),
    "partial": ("◐", "partial: some users pending or rejected"),
    "failed": ("✗", "failed"),
    "interrupted": ("✗", "interrupted"),
    "stopped": ("■", "stopped"),
    "guarded": ("!", "guarded: held by the mass-exit guard"),
    "running": ("…", "running"),
}


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def is_page_path(path: str) -> bool:
    return path == "/" or path.startswith(AUDIENCE_PREFIX)


def _shown(value: Any) -> Any:
    """Every value a template prints, before it is escaped: credentials masked (redact knows the
    configured keys and any URL's password). Markup is the templates' own output, already shown."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return redact(value)
    return value


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("audsync.statuspage", "templates"), autoescape=True,
                      finalize=_shown, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(utc=utc, iso=iso, duration=duration, run_duration=run_duration,
                       num=lambda n: f"{n:,}", messages=lambda n: f"{n:,} message" + ("" if n == 1 else "s"),
                       result_words=lambda s: RESULTS.get(s, ("?", str(s))))
    env.filters["ago"] = pass_context(lambda ctx, ts: relative(ts, ctx["now"]))
    env.globals.update(chart_width=charts.WIDTH, point_r=charts.POINT_R)
    return env


class StatusPage:
    """The page over one config's state database. `store`: the caller's StateStore, or one is
    opened at the first request (and closed by close()). `clock`: Unix time now (tests freeze it).
    `refresh_s`: how often the browser reloads it."""

    def __init__(self, config: Config, *, store: StateStore | None = None, clock: Callable[[], float] = time.time,
                 refresh_s: int = REFRESH_S):
        self.config = config
        self.clock = clock
        self.refresh_s = refresh_s
        self._store = store
        self._own_store = store is None
        self._env = _environment()
        css = (files("audsync.statuspage") / "style.css").read_text(encoding="utf-8")
        self._css = Markup(css)  # our own file, inline: the page loads nothing
        digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
        self._headers = {
            "Content-Security-Policy": (f"default-src 'none'; style-src 'sha256-{digest}'; base-uri 'none'; "
                                        "form-action 'none'; frame-ancestors 'none'"),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",  # it shows user ids
        }

    @property
    def store(self) -> StateStore:
        if self._store is None:
            self._store = StateStore(self.config.state.url)
        return self._store

    def close(self) -> None:
        if self._own_store and self._store is not None:
            self._store.close()
            self._store = None

    def respond(self, method: str, path: str) -> Answer:
        """The answer to `method` on `path` (without its query string), one of is_page_path()."""
        if method not in ("GET", "HEAD"):
            return Answer(405, b"method not allowed: the status page is read-only\n", "text/plain; charset=utf-8",
                          {"Allow": "GET, HEAD"})
        now = self.clock()
        try:
            if path == "/":
                return self._page("index.html", overview(self.config, self.store, now), now)
            key = unquote(path[len(AUDIENCE_PREFIX):])
            audience = next((a for a in self.config.audiences if a.key == key), None)
            if audience is None:
                return self._message(404, "No such audience",
                                     f"No audience with the key {key!r} is configured.", now, "../")
            return self._page("audience.html", overview(self.config, self.store, now, only=audience), now)
        except AudsyncError as exc:  # the state database unreachable, say: said on the page, not a traceback
            log.warning("status page: %s", exc)
            return self._message(503, "State database unavailable", f"The page could not be read: {exc}", now,
                                 "./" if path == "/" else "../")

    def _page(self, template: str, view: Any, now: float) -> Answer:
        html = self._env.get_template(template).render(view=view, now=now, css=self._css, refresh_s=self.refresh_s)
        return Answer(200, html.encode(), headers=dict(self._headers))

    def _message(self, status: int, title: str, text: str, now: float, home: str) -> Answer:
        html = self._env.get_template("message.html").render(title=title, text=text, home=home, now=now,
                                                             css=self._css, refresh_s=self.refresh_s)
        return Answer(status, html.encode(), headers=dict(self._headers))
