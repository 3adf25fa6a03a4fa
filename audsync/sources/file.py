"""File sources: CSV, Parquet and JSON lines, read in chunks so memory does not grow with size.

- CSV (pyarrow's streaming reader): every field is text. Ids keep their zeros ("00123"), and a
  computed trait's values stay strings as written ("42", "true"): CSV has no types, and guessing
  would turn a zip code into a number. An empty field is missing. Every row must have as many
  fields as the header; a row that does not fails the read naming its line (the header is line 1).
- Parquet: read by row groups and batches; values keep their types (numbers, booleans, lists,
  structs as objects, timestamps as ISO 8601 text); NaN is no value. Errors name the row (1-based).
- JSON lines: one object per line, blank lines allowed; values keep their JSON types. A line that
  is not a JSON object fails the read naming the line.
"""

from __future__ import annotations

import csv
import re
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa

from ..config import AudienceConfig
from ..errors import SourceError
from .hygiene import (Hygiene, Where, ids_from_arrow, ids_from_python, quoted, values_from_arrow,
                      values_from_python)

ID_COLUMNS = ("user_id", "anonymous_id")
_CSV_BLOCK_BYTES = 4 << 20
_ORJSON_POSITION = re.compile(r":? ?line \d+ column (\d+) \(char \d+\)$")


class FileSource:
    def __init__(self, audience: AudienceConfig, path: Path, min_id_length: int, chunk_rows: int):
        self.audience = audience
        self.path = Path(path)
        self.chunk_rows = chunk_rows
        self.computed = audience.kind == "computed_trait"
        self.hygiene = Hygiene(min_id_length, self.computed)
        self.skipped = self.hygiene.skipped
        self.rows_read = 0
        self._prefix = f"audience {quoted(audience.name)}: {self.path}"

    def __repr__(self) -> str:
        return f"FileSource({self.audience.name!r}, {str(self.path)!r})"

    def _fail(self, message: str, place: str = "") -> SourceError:
        return SourceError(f"{self._prefix}{place}: {message}")

    def _wanted(self, columns: list[str]) -> list[str]:
        return wanted_columns(columns, self.computed, self._fail)

    def chunks(self) -> Iterator[list[tuple[str | None, str | None, Any]]]:
        if not self.path.is_file():
            what = "is not a file" if self.path.exists() else "no such file"
            raise self._fail(what)
        reader = {".csv": self._csv, ".parquet": self._parquet, ".jsonl": self._jsonl}.get(self.path.suffix.lower())
        if reader is None:
            raise self._fail("only .csv, .parquet and .jsonl files can be read")
        try:
            yield from reader()
        except OSError as exc:
            raise self._fail(f"cannot be read ({exc.strerror or exc})") from None

    def _emit(self, users: pa.Array | None, anons: pa.Array | None, values: list | None,
              size: int) -> Iterator[list[tuple]]:
        self.rows_read += size
        kept = self.hygiene.rows(users, anons, values, size)
        if kept:
            yield kept

    # CSV -------------------------------------------------------------------------------------

    def _csv(self) -> Iterator[list[tuple]]:
        import pyarrow.csv as pa_csv

        header = self._csv_header()
        wanted = self._wanted(header)
        convert = pa_csv.ConvertOptions(
            include_columns=wanted, column_types={c: pa.string() for c in wanted},
            null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=True)
        try:
            reader = pa_csv.open_csv(self.path, read_options=pa_csv.ReadOptions(block_size=_CSV_BLOCK_BYTES),
                                     parse_options=pa_csv.ParseOptions(newlines_in_values=True),
                                     convert_options=convert)
            tables = (pa.Table.from_batches([batch]) for batch in reader)
            line = 2
            for table in _rebatch(tables, self.chunk_rows):
                size = table.num_rows
                first = line

                def where(i: int, first: int = first) -> str:  # lines are exact when no field spans lines
                    return f"{self._prefix}:{first + i}"

                users = ids_from_arrow(table.column("user_id").combine_chunks(), "user_id", where) \
                    if "user_id" in wanted else None
                anons = ids_from_arrow(table.column("anonymous_id").combine_chunks(), "anonymous_id", where) \
                    if "anonymous_id" in wanted else None
                values = table.column("value").to_pylist() if self.computed else None
                line += size
                yield from self._emit(users, anons, values, size)
        except pa.ArrowInvalid as exc:
            raise self._csv_problem(header, str(exc)) from None

    def _csv_header(self) -> list[str]:
        with open(self.path, "rb") as handle:
            try:
                for row in csv.reader(_decoded_lines(handle)):
                    if row:
                        return row
            except _BadLine as bad:
                raise self._fail(bad.message, f":{bad.number}") from None
            except csv.Error as exc:
                raise self._fail(f"not valid CSV ({exc})", ":1") from None
        raise self._fail("the file is empty (it needs a header line naming user_id and/or anonymous_id)")

    def _csv_problem(self, header: list[str], arrow_message: str) -> SourceError:
        """pyarrow refused the file without saying where: find the first bad line with the csv
        module (this runs only on the error path)."""
        with open(self.path, "rb") as handle:
            reader = csv.reader(_decoded_lines(handle))
            try:
                next(reader, None)
                for row in reader:
                    if row and len(row) != len(header):
                        return self._fail(f"{len(row)} fields where the header has {len(header)}",
                                          f":{reader.line_num}")
            except _BadLine as bad:
                return self._fail(bad.message, f":{bad.number}")
            except csv.Error as exc:
                return self._fail(f"not valid CSV ({exc})", f":{reader.line_num}")
        detail = arrow_message.removeprefix("CSV parse error: ").splitlines()[0]
        return self._fail(f"not valid CSV ({detail})")

    # Parquet ---------------------------------------------------------------------------------

    def _parquet(self) -> Iterator[list[tuple]]:
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(self.path)
        except (pa.ArrowException, OSError) as exc:
            raise self._fail(f"not a readable Parquet file ({_first_line(exc)})") from None
        wanted = self._wanted(parquet.schema_arrow.names)
        row = 1
        batches = parquet.iter_batches(batch_size=self.chunk_rows, columns=wanted)
        while True:
            try:
                batch = next(batches, None)
            except (pa.ArrowException, OSError) as exc:
                raise self._fail(f"cannot be read ({_first_line(exc)})", f": row {row} or later") from None
            if batch is None:
                return
            first = row

            def where(i: int, first: int = first) -> str:
                return f"{self._prefix}: row {first + i}"

            users = ids_from_arrow(batch.column("user_id"), "user_id", where) if "user_id" in wanted else None
            anons = ids_from_arrow(batch.column("anonymous_id"), "anonymous_id", where) \
                if "anonymous_id" in wanted else None
            values = values_from_arrow(batch.column("value"), where) if self.computed else None
            row += batch.num_rows
            yield from self._emit(users, anons, values, batch.num_rows)

    # JSON lines ------------------------------------------------------------------------------

    def _jsonl(self) -> Iterator[list[tuple]]:
        import orjson

        loads = orjson.loads
        checked = False
        last = 0
        with open(self.path, "rb") as handle:
            while block := list(islice(handle, self.chunk_rows)):
                first, last = last + 1, last + len(block)
                numbers = None
                try:
                    records = list(map(loads, block))
                except orjson.JSONDecodeError:  # a bad line, or a blank one, which is allowed
                    try:
                        records = [loads(line) for line in block if not line.isspace()]
                    except orjson.JSONDecodeError:
                        raise self._json_problem(block, first) from None
                    numbers = [first + i for i, line in enumerate(block) if not line.isspace()]
                if not records:
                    continue

                def where(i: int, first: int = first, numbers: list[int] | None = numbers) -> str:
                    return f"{self._prefix}:{numbers[i] if numbers else first + i}"

                if set(map(type, records)) != {dict}:
                    bad = next(i for i, r in enumerate(records) if type(r) is not dict)
                    raise SourceError(f"{where(bad)}: not a JSON object (each line must be one)")
                if not checked:
                    check_record_keys(records, self.computed, self._fail)
                    checked = True
                yield from self._emit(*record_columns(records, self.computed, where), len(records))

    def _json_problem(self, block: list[bytes], first: int) -> SourceError:
        import orjson

        for i, line in enumerate(block):
            if line.isspace():
                continue
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                detail = _ORJSON_POSITION.sub(lambda m: f" at column {m.group(1)}", str(exc))
                return self._fail(f"not valid JSON ({detail})", f":{first + i}")
        raise AssertionError("orjson refused a block whose lines all parse")


def wanted_columns(columns: list[Any], computed: bool, fail: Callable[[str], SourceError]) -> list[str]:
    """The columns to read, by the conventions every tabular source shares: at least one id
    column, `value` for a computed trait, none of them twice, any other column ignored."""
    shown = ", ".join(map(str, columns)) or "none"
    if not any(c in columns for c in ID_COLUMNS):
        raise fail(f"no user_id or anonymous_id column (columns: {shown})")
    if computed and "value" not in columns:
        raise fail(f"no value column, which a computed trait needs (columns: {shown})")
    wanted = [c for c in (*ID_COLUMNS, "value") if c in columns and (c != "value" or computed)]
    for column in wanted:
        if columns.count(column) > 1:
            raise fail(f"the column {column} appears {columns.count(column)} times")
    return wanted


def check_record_keys(records: list[dict], computed: bool, fail: Callable[[str], SourceError]) -> None:
    """Records (JSON lines, a python source's dict rows): the first chunk must use the id keys
    (and `value`), since a source whose every row misses them is a mistake in the source, not an
    audience of users without ids."""
    keys: set[str] = set()
    for record in records:
        keys.update(record)
        if ("user_id" in keys or "anonymous_id" in keys) and ("value" in keys or not computed):
            return
    wanted_columns(sorted(keys, key=str), computed, fail)


def record_columns(records: list[dict], computed: bool, where: Where) -> tuple[pa.Array | None, pa.Array | None,
                                                                               list | None]:
    """Records -> the id columns and the values, as Hygiene.rows takes them."""
    users = _record_ids(records, "user_id", where)
    anons = _record_ids(records, "anonymous_id", where)
    values = values_from_python([r.get("value") for r in records], where) if computed else None
    return users, anons, values


def _record_ids(records: list[dict], key: str, where: Where) -> pa.Array | None:
    ids = [r.get(key) for r in records]
    if ids.count(None) == len(ids):
        return None
    return ids_from_python(ids, key, where)


def _rebatch(tables: Iterator[pa.Table], size: int) -> Iterator[pa.Table]:
    """Tables of exactly `size` rows (the last one shorter), whatever the reader's block sizes."""
    pending: list[pa.Table] = []
    held = 0
    for table in tables:
        pending.append(table)
        held += table.num_rows
        while held >= size:
            whole = pa.concat_tables(pending)
            yield whole.slice(0, size)
            rest = whole.slice(size)
            pending, held = [rest], rest.num_rows
    if held:
        yield pa.concat_tables(pending)


class _BadLine(Exception):
    def __init__(self, number: int, message: str):
        super().__init__(message)
        self.number = number
        self.message = message


def _decoded_lines(handle: Any) -> Iterator[str]:
    """Lines as text, failing with the line number on bytes that are not UTF-8."""
    for number, raw in enumerate(handle, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _BadLine(number, f"not UTF-8 text (byte {exc.start + 1} of the line)") from None
        yield text.removeprefix("\ufeff") if number == 1 else text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

