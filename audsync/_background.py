"""State-database round trips taken off the delivery loop's thread.

The loop that feeds the Deliverer needs the interpreter's lock; reading the next page of the
outbox and committing acknowledgements are database work that releases it, so doing them on
helper threads lets them overlap with delivery on a second core. Both helpers keep
at most `depth` pages or batches in hand, so memory stays bounded.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")

_ITEM, _END, _ERROR = 0, 1, 2


class Prefetched(Generic[T]):
    """Iterates `source` on a helper thread, `depth` items ahead of the consumer. An exception
    in the source is raised in the consumer's thread; `close()` stops the helper."""

    def __init__(self, source: Iterable[T], depth: int = 2, name: str = "prefetch"):
        self._queue: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(iter(source),), name=name, daemon=True)
        self._thread.start()

    def _put(self, entry: tuple[int, Any]) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, source: Iterator[T]) -> None:
        try:
            for item in source:
                if not self._put((_ITEM, item)):
                    return
            self._put((_END, None))
        except BaseException as exc:  # handed to the consumer, whose thread reports it
            self._put((_ERROR, exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Iterator[T]:
        while True:
            kind, value = self._queue.get()
            if kind == _ITEM:
                yield value
            elif kind == _END:
                return
            else:
                raise value

    def close(self) -> None:
        self._closed.set()
        self._thread.join()


class Writer:
    """Runs submitted calls in order on one helper thread, at most `depth` waiting. After a call
    fails, later ones are skipped and every later `submit`, and `close`, raise its error."""

    def __init__(self, depth: int = 2, name: str = "writer"):
        self._queue: queue.Queue[tuple[Callable[..., Any], tuple] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if self._error is None:
                fn, args = job
                try:
                    fn(*args)
                except BaseException as exc:
                    self._error = exc

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((fn, args))

    def close(self) -> None:
        """Waits for every submitted call; raises the first failure."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error
