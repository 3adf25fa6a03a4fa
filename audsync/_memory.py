"""Giving memory that was freed back to the system, where the C library would keep it.

glibc's malloc keeps the pages of freed blocks inside its heaps, for reuse. A long-running server
whose threads allocate and free many mid-sized blocks (request bodies, the messages of a claim,
the database driver's results) leaves free pages between blocks still in use, which malloc never
returns on its own: its resident memory then climbs for as long as it runs, though the memory in
use does not (bench/RESULTS.md, issue 16's soak). malloc_trim(0) returns every whole free page of
every heap.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (AttributeError, OSError):  # not glibc (musl, macOS): nothing to call, nothing kept
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def release_free_memory() -> bool:
    """Returns the C heap's free pages to the system; False where the C library has no way to."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


class FreeMemoryReleaser:
    """Calls release_free_memory every `every_s` seconds on a thread of its own, while the
    context it is entered in lasts."""

    def __init__(self, every_s: float):
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="release free memory", daemon=True)

    def __enter__(self) -> "FreeMemoryReleaser":
        if _TRIM is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            release_free_memory()
