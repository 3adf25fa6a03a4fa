"""Times as the status page shows them: UTC, and relative to the page's clock ("3 min ago"),
computed on the server so that the page needs no script and tests can freeze the clock."""

from __future__ import annotations

import time

from ..status_report import _when as utc  # noqa: F401 (the text report's form, reused)


def iso(ts: float) -> str:
    """For <time datetime>: machine-readable, seconds precision."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def relative(ts: float, now: float) -> str:
    """'just now', '42 s ago', '3 min ago', '5 h ago', '2 days ago', or 'in 3 min' for the future."""
    delta = now - ts
    span = _span(abs(delta))
    if span is None:
        return "just now"
    return f"{span} ago" if delta > 0 else f"in {span}"


def _span(seconds: float) -> str | None:
    whole = int(seconds)
    if whole < 1:
        return None
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min"
    if whole < 2 * 86400:
        return f"{whole // 3600} h"
    return f"{whole // 86400} days"


def duration(seconds: float) -> str:
    """'0.04 s', '4.52 s', '12.0 s', '3 min 5 s', '2 h 4 min'."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"
