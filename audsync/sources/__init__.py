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
from datetime import datetime
from typing import Any, Iterator, Protocol

from ..config import (AudienceConfig, Config, FileSource as FileSourceConfig, PythonSource as PythonSourceConfig,
                      RuleSource as RuleSourceConfig, SqlSource as SqlSourceConfig)
from .file import FileSource
from .hygiene import BLOCKED_ID, NO_ID, NO_VALUE, NUL_ID, REASONS, SHORT_ID
from .python import FrameSource, PythonSource
from .rule import RuleSource
from .sql import SqlSource

__all__ = ["Source", "open_source", "FileSource", "FrameSource", "PythonSource", "RuleSource", "SqlSource",
           "NO_ID", "SHORT_ID", "BLOCKED_ID", "NUL_ID", "NO_VALUE", "REASONS"]

Row = tuple[str | None, str | None, Any]


class Source(Protocol):
    skipped: Counter[str]
    rows_read: int

    def chunks(self) -> Iterator[list[Row]]: ...


def open_source(audience: AudienceConfig, *, min_id_length: int = 5, chunk_rows: int = 100_000,
                config: Config | None = None, as_of: datetime | None = None) -> Source:
    """A rule source also needs the whole `config` (the audiences its rule reads, the state
    database) and the instant its windows are measured back from (`as_of`, aware)."""
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    spec = audience.source
    if isinstance(spec, FileSourceConfig):
        return FileSource(audience, spec.path, min_id_length, chunk_rows)
    if isinstance(spec, SqlSourceConfig):
        return SqlSource(audience, spec.url, spec.query, min_id_length, chunk_rows)
    if isinstance(spec, (PythonSourceConfig, FrameSource)):
        return PythonSource(audience, spec, min_id_length, chunk_rows)
    if isinstance(spec, RuleSourceConfig):
        if config is None or as_of is None or as_of.tzinfo is None:
            raise ValueError("a rule source needs the config and an aware as_of datetime")
        return RuleSource(audience, config, as_of, min_id_length, chunk_rows)
    raise TypeError(f"unknown source {spec!r}")
