"""One way to ask running work to stop: a StopRequest.

A StopRequest is a threading.Event (is_set, wait) that is set once, by a signal handler, the
daemon stopping, or a lost lease. Work that must react at once rather than at its next check
(the Deliverer, which may be waiting between retries) registers a callback with `when_set`: it
runs in the thread that sets the request, so nothing polls for it.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator


class StopRequest(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        # Reentrant: a signal handler may set the request while its own thread is registering.
        self._lock = threading.RLock()
        self._callbacks: list[Callable[[], None]] = []

    def set(self) -> None:
        with self._lock:
            first = not self.is_set()
            super().set()
            callbacks = list(self._callbacks) if first else []
        for callback in callbacks:
            callback()

    @contextlib.contextmanager
    def when_set(self, callback: Callable[[], None]) -> Iterator[None]:
        """Calls `callback` once if the request is made during the block (at once if it was
        made already)."""
        with self._lock:
            already = self.is_set()
            if not already:
                self._callbacks.append(callback)
        if already:
            callback()
        try:
            yield
        finally:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)


@contextlib.contextmanager
def when_stopped(events: "list[threading.Event | None]", callback: Callable[[], None]) -> Iterator[None]:
    """`callback` as soon as any StopRequest among `events` is set during the block. A plain
    threading.Event (a caller of the Python API) calls nothing: it is seen where the work checks
    it (between pages, between messages)."""
    with contextlib.ExitStack() as stack:
        for event in events:
            if isinstance(event, StopRequest):
                stack.enter_context(event.when_set(callback))
        yield
