"""File sources: CSV, Parquet and JSON lines, read in chunks so memory does not grow with size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from ..config import AudienceConfig
from ..errors import SourceError
from .hygiene import SourceBase

ID_COLUMNS = ("user_id", "anonymous_id")


class FileSource(SourceBase):
    def __init__(self, audience: AudienceConfig, path: Path, min_id_length: int, chunk_rows: int):
        super().__init__(audience, min_id_length, chunk_rows)
        self.path = path

    def _fail(self, message: str) -> SourceError:
        return SourceError(f"audience {self.audience.name!r}: {self.path}: {message}")

    def _check_columns(self, columns: list[str]) -> None:
        if not any(c in columns for c in ID_COLUMNS):
            raise self._fail(f"no user_id or anonymous_id column (columns: {', '.join(map(str, columns)) or 'none'})")
        if self.computed and "value" not in columns:
            raise self._fail(f"a computed trait needs a value column (columns: {', '.join(map(str, columns))})")

    def chunks(self) -> Iterator[list[tuple]]:
        if not self.path.exists():
            raise SourceError(f"audience {self.audience.name!r}: {self.path}: no such file")
        suffix = self.path.suffix.lower()
        reader = {".csv": self._csv, ".parquet": self._parquet, ".jsonl": self._jsonl}[suffix]
        try:
            yield from reader()
        except SourceError:
            raise
        except (OSError, ValueError) as exc:
            raise self._fail(f"cannot be read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None

    def _rows(self, columns: dict[str, list], first_line: int, line_step: int = 1) -> list[tuple]:
        """Columnar lists -> hygienic tuples; `first_line` numbers the rows for error messages."""
        size = len(next(iter(columns.values())))
        users = columns.get("user_id") or [None] * size
        anons = columns.get("anonymous_id") or [None] * size
        values = columns.get("value") if self.computed else None
        values = values or [None] * size
        out = []
        row = self.hygiene.row
        path = self.path
        place = str(path)
        for i, (u, a, v) in enumerate(zip(users, anons, values)):
            kept = row(u, a, v, place, first_line + i * line_step)
            if kept is not None:
                out.append(kept)
        self.rows_read += size
        return out

    def _csv(self) -> Iterator[list[tuple]]:
        import pandas as pd

        try:
            header = pd.read_csv(self.path, nrows=0).columns.tolist()
        except pd.errors.EmptyDataError:
            raise self._fail("the file is empty (it needs a header line)") from None
        self._check_columns(header)
        wanted = [c for c in (*ID_COLUMNS, "value") if c in header and (c != "value" or self.computed)]
        # Ids stay strings ("00123" keeps its zeros); CSV has no types, so values stay strings too.
        line = 2
        try:
            for frame in pd.read_csv(self.path, usecols=wanted, dtype=str, keep_default_na=False,
                                     na_values=[""], chunksize=self.chunk_rows, engine="c"):
                columns = {c: frame[c].astype(object).where(frame[c].notna(), None).tolist() for c in wanted}
                yield self._rows(columns, line)
                line += len(frame)
        except pd.errors.ParserError as exc:
            raise self._fail(f"not valid CSV ({exc})") from None

    def _parquet(self) -> Iterator[list[tuple]]:
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise self._fail(f"not a readable Parquet file ({exc})") from None
        names = parquet.schema_arrow.names
        self._check_columns(names)
        wanted = [c for c in (*ID_COLUMNS, "value") if c in names and (c != "value" or self.computed)]
        row_number = 1
        for batch in parquet.iter_batches(batch_size=self.chunk_rows, columns=wanted):
            columns = {c: batch.column(c).to_pylist() for c in wanted}
            yield self._rows(columns, row_number)
            row_number += batch.num_rows

    def _jsonl(self) -> Iterator[list[tuple]]:
        import orjson

        chunk: list[tuple] = []
        checked = False
        row = self.hygiene.row
        path = self.path
        with open(self.path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    record: Any = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    raise SourceError(f"{path}:{number}: not valid JSON ({exc})") from None
                if not isinstance(record, dict):
                    raise SourceError(f"{path}:{number}: each line must be a JSON object")
                if not checked:
                    self._check_columns(list(record))
                    checked = True
                if self.computed and "value" not in record:
                    raise SourceError(f"{path}:{number}: no value field")
                self.rows_read += 1
                kept = row(record.get("user_id"), record.get("anonymous_id"), record.get("value"),
                           str(path), number)
                if kept is not None:
                    if self.computed and isinstance(kept[2], (dict, list)):
                        json.dumps(kept[2])  # nested values must be JSON-able as read
                    chunk.append(kept)
                if len(chunk) >= self.chunk_rows:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk
