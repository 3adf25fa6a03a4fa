"""Audience sources: current members as (user_id, anonymous_id, value) tuples, in chunks.

`open_source(audience)` gives a Source whose `chunks()` streams rows that passed section 4's
hygiene, at most `chunk_rows` per chunk; `skipped` counts the rows left out per reason (see
`hygiene.REASONS`) and `rows_read` every row read, both filled while reading. Nothing is read
before `chunks()` is iterated; every problem is a SourceError naming the audience and the place
(file and line, Parquet row, query row, DataFrame index, python row). Duplicates and conflicting
values are found later, globally, in the state database.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterator, Protocol

from ..config import (AudienceConfig, FileSource as FileSourceConfig, PythonSource as PythonSourceConfig,
                      SqlSource as SqlSourceConfig)
from .file import FileSource
from .hygiene import BLOCKED_ID, NO_ID, NO_VALUE, NUL_ID, REASONS, SHORT_ID
from .python import FrameSource, PythonSource
from .sql import SqlSource

__all__ = ["Source", "open_source", "FileSource", "FrameSource", "PythonSource", "SqlSource",
           "NO_ID", "SHORT_ID", "BLOCKED_ID", "NUL_ID", "NO_VALUE", "REASONS"]

Row = tuple[str | None, str | None, Any]


class Source(Protocol):
    skipped: Counter[str]
    rows_read: int

    def chunks(self) -> Iterator[list[Row]]: ...


def open_source(audience: AudienceConfig, *, min_id_length: int = 5, chunk_rows: int = 100_000) -> Source:
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    spec = audience.source
    if isinstance(spec, FileSourceConfig):
        return FileSource(audience, spec.path, min_id_length, chunk_rows)
    if isinstance(spec, SqlSourceConfig):
        return SqlSource(audience, spec.url, spec.query, min_id_length, chunk_rows)
    if isinstance(spec, (PythonSourceConfig, FrameSource)):
        return PythonSource(audience, spec, min_id_length, chunk_rows)
    raise TypeError(f"unknown source {spec!r}")
