"""What every part of the store shares: the engine, its dialect strategy, and connections whose
database errors are translated at one edge (db.db_errors)."""

from __future__ import annotations

import contextlib
from typing import Iterator

from sqlalchemy.engine import Connection

from .._redact import redact
from .db import SQLITE_CACHE_MB, db_errors, make_engine, transaction
from .dialects import Dialect, dialect_for


class StoreBase:
    """One state database. Thread-safe: every method takes its own pooled connection."""

    def __init__(self, url: str, *, sqlite_cache_mb: int = SQLITE_CACHE_MB):
        self.url = url
        self.engine = make_engine(url, sqlite_cache_mb=sqlite_cache_mb)
        self.dialect: Dialect = dialect_for(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"StateStore({redact(self.url)!r})"

    @contextlib.contextmanager
    def _conn(self, *, write: bool = True) -> Iterator[Connection]:
        """A pooled connection in one transaction (`write=False`: reads only)."""
        with db_errors(self.url), self.engine.connect() as conn, transaction(conn, write=write):
            yield conn
