"""Audience sources: current members as (user_id, anonymous_id, value) tuples, in chunks.

`open_source(audience)` gives a Source whose `chunks()` streams hygienic rows; `skipped` counts
rows left out per reason and `rows_read` the rows seen. Duplicates and conflicting values are
found later, globally, in the state database.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterator, Protocol

from ..config import AudienceConfig, FileSource as FileSourceConfig
from .file import FileSource
from .sql import SqlSource

__all__ = ["Source", "open_source"]


class Source(Protocol):
    skipped: Counter[str]
    rows_read: int

    def chunks(self) -> Iterator[list[tuple]]: ...


def open_source(audience: AudienceConfig, *, min_id_length: int = 5, chunk_rows: int = 100_000) -> Source:
    spec = audience.source
    if isinstance(spec, FileSourceConfig):
        return FileSource(audience, spec.path, min_id_length, chunk_rows)
    return SqlSource(audience, spec.url, spec.query, min_id_length, chunk_rows)
