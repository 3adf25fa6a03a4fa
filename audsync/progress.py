"""Progress on stderr: a redrawn bar on a terminal, a plain line every few seconds otherwise."""

from __future__ import annotations

import logging
import time
from typing import IO, Callable, Protocol


class ProgressPhase(Protocol):
    """One phase of the work: `advance(n)` as units are done, `close()` (or the end of a `with`
    block) when it ends."""

    def advance(self, n: int = 1) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> "ProgressPhase": ...

    def __exit__(self, *exc: object) -> None: ...


class ProgressReporter(Protocol):
    """Where the work reports its phases: Progress on a terminal or in the logs, NO_PROGRESS
    when nobody watches."""

    def phase(self, label: str, total: int | None = None, counted: bool = True) -> ProgressPhase: ...


class _NullPhase:
    def advance(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "_NullPhase":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class NullProgress:
    """Reports nothing."""

    _phase = _NullPhase()

    def phase(self, label: str, total: int | None = None, counted: bool = True) -> ProgressPhase:
        return self._phase


NO_PROGRESS = NullProgress()


class Phase:
    """`counted=False`: a phase with nothing to count (work inside a database) shows its label
    while it lasts and its duration when it ends. On a terminal every phase shows at once, so the
    screen never sits blank while a first chunk loads."""

    def __init__(self, owner: "Progress", label: str, total: int | None, counted: bool = True):
        self.owner = owner
        self.label = label
        self.total = total
        self.counted = counted
        self.done = 0
        self.started = owner.clock()
        self.last_draw = 0.0
        if owner.tty or not counted:
            owner.draw(self, final=False)

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = self.owner.clock()
        if now - self.last_draw >= self.owner.interval:
            self.last_draw = now
            self.owner.draw(self, final=False)

    def close(self) -> None:
        self.owner.draw(self, final=True)

    def __enter__(self) -> "Phase":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def text(self) -> str:
        elapsed = max(self.owner.clock() - self.started, 1e-9)
        if not self.counted:
            return f"{self.label} ({elapsed:.1f} s)"
        rate = self.done / elapsed
        if self.total:
            share = min(1.0, self.done / self.total)
            width = 24
            bar = "#" * int(share * width) + "-" * (width - int(share * width))
            return f"{self.label} [{bar}] {self.done:,}/{self.total:,} ({rate:,.0f}/s)"
        return f"{self.label}: {self.done:,} ({rate:,.0f}/s, {elapsed:.0f} s)"


class Progress:
    """`phase(label, total)` starts a phase; its `advance(n)` and `close()` report on `stream`."""

    def __init__(self, stream: IO[str], tty: bool | None = None, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic, log: logging.Logger | None = None):
        self.stream = stream
        self.log = log  # periodic lines go to this logger instead (--log-format json)
        self.tty = stream.isatty() if tty is None else tty
        self.interval = interval if interval is not None else (0.2 if self.tty else 10.0)
        self.clock = clock

    def phase(self, label: str, total: int | None = None, counted: bool = True) -> Phase:
        return Phase(self, label, total, counted)

    def draw(self, phase: Phase, final: bool) -> None:
        text = phase.text()
        if self.log is not None:
            if not final:
                self.log.info("%s", text, extra={"phase": phase.label, "done": phase.done, "total": phase.total})
            return
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        elif not final:
            self.stream.write(text + "\n")
        self.stream.flush()
