"""Python sources: a function of the user's gives the members, or audsync.sync_dataframe hands them over.

`{ type = "python", callable = "module:function" }` imports `module` when a run reads the source
(the config file's directory is searched first, as Python searches a script's own directory) and
calls `function()`, with no arguments, at every run. It returns one of:

- a pandas DataFrame with a `user_id` and/or `anonymous_id` column and, for a computed trait,
  `value`: the file source's column conventions (other columns and the index are ignored; a
  column named twice is an error);
- an iterable of such DataFrames, read one after the other, so that an audience larger than
  memory streams (`pd.read_sql(query, conn, chunksize=100_000)`, or a generator);
- an iterable of rows, each a dict (or any mapping) with those keys, as a JSON-lines file has them.
  Tuples are refused: without names, whether a row's second field is an anonymous_id or a value
  would hang on its position.

Ids and values follow the file sources (sources/hygiene.py): whole numbers are ids in their decimal
form; values keep their types (numbers, booleans, strings, lists and dicts; timestamps as ISO 8601
text); NaN, None, pd.NA and NaT are no id, no value. A DataFrame goes to Arrow a chunk of a column
at a time and through the same column-wise hygiene as a Parquet file; per-row Python runs only for
an object column that mixes types (which is also how a bad row is found and named).

Every problem is a SourceError naming the audience and the callable (or sync_dataframe): a module
that cannot be imported, a missing attribute, a function that raises (its exception, with the
line of the user's code that raised it), a wrong return type, a malformed row. DataFrame rows are
named by their index label (`index 41`, `chunk 2, index 41`), dict rows by their position from 1.
"""

from __future__ import annotations

import importlib
import os
import sys
import sysconfig
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa

from ..config import AudienceConfig, PythonSource as PythonSourceConfig
from ..errors import SourceError
from .._redact import redact
from .file import ID_COLUMNS, check_record_keys, record_columns, wanted_columns
from .hygiene import (Hygiene, Where, ids_from_arrow, ids_from_python, quoted, values_from_arrow,
                      values_from_python)

RETURNS = ("a pandas DataFrame, an iterable of DataFrames, or an iterable of rows "
           "(dicts with user_id and/or anonymous_id)")
# What pyarrow raises for a column it cannot take as one type (an object column mixing types).
_ARROW_REFUSED = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)
# Frames of these files are not the user's: an error names the user's line, not pandas' or ours.
_NOT_USER_CODE = tuple({os.path.join(folder, "") for folder in (
    *(sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")),
    str(Path(__file__).resolve().parents[1]))})


@dataclass(frozen=True)
class FrameSource:
    """An audience's source replaced, for one call, by data in hand (audsync.sync_dataframe):
    anything a python source's function may return."""

    data: Any = field(compare=False, repr=False)
    type: str = "dataframe"


Row = tuple[str | None, str | None, Any]


class PythonSource:
    def __init__(self, audience: AudienceConfig, spec: PythonSourceConfig | FrameSource, min_id_length: int,
                 chunk_rows: int):
        self.audience = audience
        self.spec = spec
        self.chunk_rows = chunk_rows
        self.computed = audience.kind == "computed_trait"
        self.hygiene = Hygiene(min_id_length, self.computed)
        self.skipped = self.hygiene.skipped
        self.rows_read = 0
        self._from_callable = isinstance(spec, PythonSourceConfig)
        origin = f"callable {quoted(spec.callable)}" if self._from_callable else "sync_dataframe"
        self._prefix = f"audience {quoted(audience.name)}: {origin}"

    def __repr__(self) -> str:
        what = self.spec.callable if self._from_callable else "DataFrame"
        return f"PythonSource({self.audience.name!r}, {what!r})"

    def _fail(self, message: str) -> SourceError:
        # The user's exception text may echo a connection URL with its password.
        return SourceError(redact(f"{self._prefix}: {message}"))

    def chunks(self) -> Iterator[list[Row]]:
        import pandas as pd

        data = self._produce()
        if isinstance(data, pd.DataFrame):
            yield from self._frame(data, None)
            return
        items = self._iterate(data, pd)
        head = self._take(items, 1)
        if not head:
            return
        if isinstance(head[0], pd.DataFrame):
            yield from self._frames(head[0], items, pd)
        else:
            yield from self._rows(head, items, pd)

    # What the function gives -----------------------------------------------------------------

    def _produce(self) -> Any:
        if not self._from_callable:
            return self.spec.data
        function = load_callable(self.spec.callable, self.spec.base, self._fail)
        try:
            return function()
        except (Exception, SystemExit) as exc:
            raise self._fail(f"raised {_described(exc)}") from None

    def _iterate(self, data: Any, pd: Any) -> Iterator[Any]:
        returned = "returned" if self._from_callable else "was given"
        needs = "it must return" if self._from_callable else "it takes"
        if data is None:
            hint = " (does the function end without a return statement?)" if self._from_callable else ""
            raise self._fail(f"{returned} None; {needs} {RETURNS}{hint}")
        if isinstance(data, pd.Series):
            raise self._fail(f"{returned} a Series; {needs} a DataFrame (series.reset_index() makes one of "
                             "a Series indexed by user_id)")
        if isinstance(data, (str, bytes, Mapping)) or not hasattr(data, "__iter__"):
            raise self._fail(f"{returned} {_kind(data)}; {needs} {RETURNS}")
        try:
            return iter(data)
        except (Exception, SystemExit) as exc:
            raise self._fail(f"{returned} {_kind(data)}, which cannot be iterated ({_described(exc)})") from None

    def _take(self, items: Iterator[Any], n: int, held: int = 0) -> list[Any]:
        """The next n items of the user's iterable (fewer at its end); its own errors are theirs,
        told with the rows it gave before (`held`: rows taken and not yet read)."""
        taken: list[Any] = []
        try:
            taken.extend(islice(items, n))
        except (Exception, SystemExit) as exc:
            given = self.rows_read + held + len(taken)
            raise self._fail(f"raised {_described(exc)} after {given:,} row{'' if given == 1 else 's'}") from None
        return taken

    def _emit(self, users: pa.Array | None, anons: pa.Array | None, values: list | None,
              size: int) -> Iterator[list[Row]]:
        self.rows_read += size
        kept = self.hygiene.rows(users, anons, values, size)
        if kept:
            yield kept

    # Rows (dicts) ----------------------------------------------------------------------------

    def _rows(self, block: list[Any], items: Iterator[Any], pd: Any) -> Iterator[list[Row]]:
        block += self._take(items, self.chunk_rows - 1, held=len(block))
        checked = False
        while block:
            first = self.rows_read + 1

            def where(i: int, first: int = first) -> str:
                return f"{self._prefix}: row {first + i}"

            if set(map(type, block)) != {dict}:
                block = self._records(block, where, pd)
            if not checked:
                check_record_keys(block, self.computed, self._fail)
                checked = True
            yield from self._emit(*record_columns(block, self.computed, where), len(block))
            block = self._take(items, self.chunk_rows)

    def _records(self, block: list[Any], where: Where, pd: Any) -> list[dict]:
        records = []
        for i, row in enumerate(block):
            if isinstance(row, Mapping):
                records.append(row if type(row) is dict else dict(row))
            elif isinstance(row, pd.DataFrame):
                raise SourceError(f"{where(i)}: a DataFrame among rows; give either rows or DataFrames")
            else:
                raise SourceError(f"{where(i)}: {_kind(row)}, not a row: each row is a dict with user_id "
                                  "and/or anonymous_id (and value for a computed trait)")
        return records

    # DataFrames ------------------------------------------------------------------------------

    def _frames(self, frame: Any, items: Iterator[Any], pd: Any) -> Iterator[list[Row]]:
        number = 1
        while True:
            if not isinstance(frame, pd.DataFrame):
                raise self._fail(f"chunk {number} is {_kind(frame)}, not a DataFrame; give either DataFrames "
                                 "or rows")
            yield from self._frame(frame, number)
            following = self._take(items, 1)
            if not following:
                return
            frame, number = following[0], number + 1

    def _frame(self, frame: Any, chunk: int | None) -> Iterator[list[Row]]:
        place = "" if chunk is None else f"chunk {chunk}, "

        def fail(message: str) -> SourceError:
            held = [name for name in frame.index.names if name in (*ID_COLUMNS, "value")]
            if held:
                message += (f" (the index holds {' and '.join(held)}: "
                            f"frame.reset_index() makes {'it a column' if len(held) == 1 else 'them columns'})")
            return self._fail(message if chunk is None else f"chunk {chunk}: {message}")

        wanted = wanted_columns(list(frame.columns), self.computed, fail)
        columns = {name: frame[name] for name in wanted}
        index = frame.index
        size = len(frame)
        for start in range(0, size, self.chunk_rows):
            part = {name: column.iloc[start:start + self.chunk_rows] for name, column in columns.items()}

            def where(i: int, start: int = start) -> str:
                return f"{self._prefix}: {place}index {_label(index[start + i])}"

            users = _ids(part["user_id"], "user_id", where) if "user_id" in part else None
            anons = _ids(part["anonymous_id"], "anonymous_id", where) if "anonymous_id" in part else None
            values = _values(part["value"], where) if self.computed else None
            yield from self._emit(users, anons, values, min(self.chunk_rows, size - start))


def _ids(column: Any, name: str, where: Where) -> pa.Array:
    """A DataFrame's id column, one chunk, as Arrow strings; odd types fail naming the row."""
    try:
        if column.dtype == object:  # text, as pandas before 3 holds it: straight to Arrow strings
            return pa.array(column.to_numpy(), type=pa.string(), from_pandas=True)
        array = _arrow(column)
    except _ARROW_REFUSED:  # an object column mixing types: Python spells (or refuses) each id
        return ids_from_python(_objects(column), name, where)
    return ids_from_arrow(array, name, where)


def _values(column: Any, where: Where) -> list[Any]:
    """A computed trait's value column, one chunk; an object column stays Python objects (Arrow
    would turn dicts with different keys into one struct, adding the keys each lacks)."""
    if column.dtype != object:
        try:
            return values_from_arrow(_arrow(column), where)
        except _ARROW_REFUSED:
            pass
    return values_from_python(_objects(column), where)


def _arrow(column: Any) -> pa.Array:
    # A column pandas keeps in Arrow comes back in the pieces it was built from (pd.concat).
    array = pa.Array.from_pandas(column)
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _objects(column: Any) -> list[Any]:
    """A column as Python objects, pandas' missing markers (NaN, None, pd.NA, NaT) as None."""
    values = column.tolist()
    missing = column.isna().to_numpy()
    if missing.any():
        for i in missing.nonzero()[0].tolist():
            values[i] = None
    return values


def _label(label: Any) -> str:
    if hasattr(label, "item") and not hasattr(label, "__len__"):  # a numpy scalar
        label = label.item()
    return repr(label) if isinstance(label, str) else str(label)


def load_callable(target: str, base: Path, fail: Callable[[str], SourceError]) -> Callable[[], Any]:
    """The function "module:function" names, its module imported with `base` searched first."""
    module_name, _, attribute = target.partition(":")
    folder = str(base)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    importlib.invalidate_caches()  # a module written since this process started is found too
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name + ".").startswith(exc.name + "."):
            raise fail(f"no module named {exc.name} (looked in {base} and the installed packages)") from None
        raise fail(f"importing {module_name} failed: {_described(exc)}") from None
    except (Exception, SystemExit) as exc:
        raise fail(f"importing {module_name} failed: {_described(exc)}") from None
    found: Any = module
    owner = module_name
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise fail(f"{owner} has no attribute {part}") from None
        except (Exception, SystemExit) as exc:
            raise fail(f"reading {part} from {owner} failed: {_described(exc)}") from None
        owner = f"{owner}:{part}" if owner == module_name else f"{owner}.{part}"
    if not callable(found):
        raise fail(f"{target} is {_kind(found)}, not a function")
    return found


def _kind(value: Any) -> str:
    if value is None:
        return "None"
    name = type(value).__name__
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def _described(exc: BaseException) -> str:
    """An exception of the user's code in one line: its type, its message, and where it was raised."""
    text = str(exc).strip()
    line = f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("<") and not f.filename.startswith(_NOT_USER_CODE)]
    if frames:
        line += f" (at {frames[-1].filename}:{frames[-1].lineno})"
    return line
