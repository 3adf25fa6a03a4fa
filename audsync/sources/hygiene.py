"""Row hygiene shared by every source (DESIGN.md section 4), applied column-wise over Arrow arrays.

Ids become strings (numbers keep their decimal form, surrounding whitespace goes, empty means
missing). Rows whose id Amplitude would refuse, rows with an id holding a NUL character, rows
without any id and computed-trait rows without a value are skipped and counted per reason. A
malformed row (an id that is a list, an object, a boolean...) is an error naming its place, never
a skip: skipping a member would make the sync think they left the audience. Duplicates and
conflicting values are found later, globally, in the state database.

Ten million members must load in seconds, so every check runs over whole chunks (Arrow compute
kernels, C-level `map`/`set` passes); per-row Python runs only on the slow paths (mixed or odd
types), which also find the exact row to name in an error.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections import Counter
from decimal import Decimal
from itertools import repeat
from typing import Any, Callable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import SourceError
from ..mapping._common import BLOCKED_IDS
from ..mapping._props import INT_MAX, INT_MIN, MAX_DEPTH

NO_ID = "no id"
SHORT_ID = "id shorter than min_id_length"
BLOCKED_ID = "blocked id"
NUL_ID = "id holds a NUL character"
NO_VALUE = "no value"
TOO_DEEP = f"value nested more than {MAX_DEPTH} levels"
BIG_INTEGER = "value holding an integer beyond 64 bits"
REASONS = (NO_ID, SHORT_ID, BLOCKED_ID, NUL_ID, NO_VALUE, TOO_DEEP, BIG_INTEGER)

Where = Callable[[int], str]
"""Index of a row in the chunk -> its place for messages ("members.jsonl:17", "... query row 3")."""

# Every blocked id is ASCII, so lowering ASCII letters only is as good as full case folding here.
_BLOCKED = pa.array(sorted(BLOCKED_IDS), pa.string())
_NONE = type(None)
_MAX_EXACT_FLOAT = 2**53
_NULL_TEXT = pa.scalar(None, pa.string())


def quoted(name: str) -> str:
    """An audience name in messages, in double quotes as users write it in the config."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (bytes, bytearray)):
        return "bytes"
    if isinstance(value, float):
        return f"the number {value!r}"
    return f"a {type(value).__name__}"


def id_text(value: Any, column: str, where: Where, index: int) -> str | None:
    """One id as text (whitespace is trimmed later, column-wise); None when missing."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise SourceError(f"{where(index)}: {column} is a boolean, not an id")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    elif isinstance(value, Decimal):
        if value.is_nan():
            return None
        if value == value.to_integral_value():
            return str(int(value))
        return _refuse_id(value, column, where, index)
    elif isinstance(value, uuid.UUID):
        return str(value)
    elif hasattr(value, "item") and not hasattr(value, "__len__"):  # a numpy scalar
        return id_text(value.item(), column, where, index)
    return _refuse_id(value, column, where, index)


def _refuse_id(value: Any, column: str, where: Where, index: int) -> str:
    if isinstance(value, (float, Decimal)):
        raise SourceError(f"{where(index)}: {column} is the number {value}, which has a fraction; not an id")
    raise SourceError(f"{where(index)}: {column} is {_kind(value)}, not an id")


def ids_from_python(values: list[Any], column: str, where: Where) -> pa.Array:
    """Python values of one id column (SQL rows, JSON lines) -> an Arrow string array.

    The kept ids later come back out of Arrow as new strings rather than as the source's own
    objects: reusing those costs less per chunk but, at ten million rows, leaves CPython's
    allocator so fragmented that the whole load runs up to three times slower."""
    types = set(map(type, values))
    types.discard(_NONE)
    if types <= {str}:
        return pa.array(values, pa.string())
    if types == {int}:
        try:
            return pa.array(values, pa.int64()).cast(pa.string())
        except (OverflowError, pa.ArrowInvalid):
            pass  # beyond 64 bits: Python spells it
    return pa.array([id_text(v, column, where, i) for i, v in enumerate(values)], pa.string())


def ids_from_arrow(array: pa.Array, column: str, where: Where) -> pa.Array:
    """An Arrow id column (Parquet, CSV) -> an Arrow string array; odd types fail naming the row."""
    kind = array.type
    if pa.types.is_dictionary(kind):
        array = array.dictionary_decode()
        kind = array.type
    if pa.types.is_string(kind):
        return array
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind) or pa.types.is_integer(kind):
        return array.cast(pa.string())
    if pa.types.is_null(kind):
        return pa.nulls(len(array), pa.string())
    if pa.types.is_floating(kind):
        whole = pc.and_(pc.is_finite(array), pc.equal(array, pc.floor(array)))
        if pc.all(pc.or_kleene(whole, pc.is_nan(array))).as_py() is not False:
            ints = pc.if_else(pc.is_nan(array), pa.scalar(None, kind), array)
            try:
                return ints.cast(pa.int64()).cast(pa.string())
            except pa.ArrowInvalid:
                pass  # beyond 64 bits: let Python spell (or refuse) it
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        try:
            return array.cast(pa.string())
        except pa.ArrowInvalid:
            for i, raw in enumerate(array.to_pylist()):
                if raw is not None:
                    try:
                        raw.decode("utf-8")
                    except UnicodeDecodeError:
                        raise SourceError(f"{where(i)}: {column} is not UTF-8 text") from None
            raise
    return ids_from_python(array.to_pylist(), column, where)


def json_value(value: Any, where: Where, index: int) -> Any:
    """A computed trait's value as JSON-able Python; None when the user has no value.

    Whole floats become ints (2.0 -> 2) so that a column switching between REAL and INTEGER does
    not look like a change of every user's value.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return _number(value, where, index)
    if isinstance(value, Decimal):
        if value.is_nan():
            return None
        return _number(float(value), where, index) if value != value.to_integral_value() else int(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_nested(v, where, index) for v in value]
    if isinstance(value, dict):
        return {str(k): _nested(v, where, index) for k, v in value.items()}
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return json_value(value.tolist(), where, index)
    raise SourceError(f"{where(index)}: value is {_kind(value)}, which has no JSON form")


def _nested(value: Any, where: Where, index: int) -> Any:
    # Inside a list or object, a missing number is JSON null, not "no value".
    if isinstance(value, float) and math.isnan(value):
        return None
    return json_value(value, where, index)


def _number(value: float, where: Where, index: int) -> float | int | None:
    if value != value:
        return None
    if value.is_integer():
        return int(value) if abs(value) < _MAX_EXACT_FLOAT else value
    if math.isinf(value):
        raise SourceError(f"{where(index)}: value is {value}, which JSON cannot carry")
    return value


def values_from_python(values: Sequence[Any], where: Where) -> list[Any]:
    types = set(map(type, values))
    if types <= {str, int, bool, _NONE}:
        return values if isinstance(values, list) else list(values)
    if types <= {str, int, bool, float, _NONE}:
        number = _number
        return [number(v, where, i) if type(v) is float else v for i, v in enumerate(values)]
    return [_json_value(v, where, i) for i, v in enumerate(values)]


def _json_value(value: Any, where: Where, index: int) -> Any:
    try:
        return json_value(value, where, index)
    except RecursionError:
        return value  # as read: far too deep, Hygiene.rows skips it (TOO_DEEP)


_CHECKED = {int, dict, list}


def _refused(value: Any, depth: int = 2) -> str | None:
    """Why a value cannot be stored and sent: nested deeper than Amplitude accepts (the
    user-properties object being the first level), or holding an integer beyond 64 bits (the
    state database's values are written by orjson, which stops there)."""
    kind = value.__class__
    if kind is int:
        return None if INT_MIN <= value <= INT_MAX else BIG_INTEGER
    if depth > MAX_DEPTH:
        return TOO_DEEP
    for child in value.values() if kind is dict else value:
        if child.__class__ in _CHECKED:
            reason = _refused(child, depth + 1)
            if reason is not None:
                return reason
    return None


def _refusals(values: list[Any]) -> list[str | None] | None:
    """Per value why it is refused (see _refused); None when none is."""
    types = set(map(type, values))
    if not types & _CHECKED or (types == {int} and INT_MIN <= min(values) and max(values) <= INT_MAX):
        return None
    reasons = [_refused(v) if v.__class__ in _CHECKED else None for v in values]
    return reasons if any(reasons) else None


def values_from_arrow(array: pa.Array, where: Where) -> list[Any]:
    if pa.types.is_floating(array.type):
        array = pc.if_else(pc.is_nan(array), pa.scalar(None, array.type), array)
    return values_from_python(array.to_pylist(), where)


class Hygiene:
    """Applies section 4's row rules to a chunk of columns and counts what it skips."""

    def __init__(self, min_id_length: int, computed: bool):
        self.min_id_length = min_id_length
        self.computed = computed
        self.skipped: Counter[str] = Counter()

    def rows(self, users: pa.Array | None, anons: pa.Array | None, values: list[Any] | None,
             size: int) -> list[tuple[str | None, str | None, Any]]:
        """The id columns as Arrow strings (None when the source has no such column) and, for a computed trait,
        the values (None meaning no value) -> the kept (user_id, anonymous_id, value) tuples."""
        user = _Ids(users, size, self.min_id_length)
        anon = _Ids(anons, size, self.min_id_length)
        # SQLite would cut such an id short at the NUL (another user's id) and PostgreSQL cannot
        # store it: the row goes whichever id holds it, counted under that reason only.
        nul = user.nul if anon.nul is None else anon.nul if user.nul is None else pc.or_(user.nul, anon.nul)
        clean = None
        if nul is not None and pc.any(nul).as_py():
            clean = pc.invert(nul)
            self._count(NUL_ID, nul)

        def count(reason: str, mask: pa.Array) -> None:
            self._count(reason, mask if clean is None else pc.and_(mask, clean))

        # A refused user_id would put the row on another profile: the whole row goes.
        count(BLOCKED_ID, pc.or_(user.blocked, pc.and_(user.absent, anon.blocked)))
        count(SHORT_ID, pc.or_(user.short, pc.and_(user.absent, anon.short)))
        count(NO_ID, pc.and_(user.absent, anon.absent))
        keep = pc.or_(user.good, pc.and_(user.absent, anon.good))
        if clean is not None:
            keep = pc.and_(keep, clean)
        if self.computed:
            assert values is not None
            if None in values:
                has_value = pa.array([v is not None for v in values], pa.bool_())
                count(NO_VALUE, pc.and_(keep, pc.invert(has_value)))
                keep = pc.and_(keep, has_value)
            refused = _refusals(values)
            if refused is not None:
                for reason in (TOO_DEEP, BIG_INTEGER):
                    count(reason, pc.and_(keep, pa.array([r == reason for r in refused], pa.bool_())))
                keep = pc.and_(keep, pa.array([r is None for r in refused], pa.bool_()))
        else:
            values = None
        kept = _Kept(keep)
        user_ids = user.texts(user.present, kept)
        # A refused anonymous_id next to a good user_id is only left out, with nothing counted.
        anon_ids = anon.texts(anon.good, kept)
        if values is not None:
            values = kept.python(values)
        n = kept.count
        return list(zip(user_ids if user_ids is not None else repeat(None, n),
                        anon_ids if anon_ids is not None else repeat(None, n),
                        values if values is not None else repeat(None, n)))

    def _count(self, reason: str, mask: pa.Array) -> None:
        n = pc.sum(mask).as_py()
        if n:
            self.skipped[reason] += n


class _Kept:
    """Which rows of a chunk stay, as Arrow and (lazily) NumPy masks."""

    def __init__(self, keep: pa.Array):
        self.arrow = keep
        self.everything = pc.all(keep).as_py() is not False
        self.count = len(keep) if self.everything else pc.sum(keep).as_py() or 0
        self._numpy = None

    @property
    def numpy(self):
        if self._numpy is None:
            self._numpy = self.arrow.to_numpy(zero_copy_only=False)
        return self._numpy

    def python(self, values: list[Any]) -> list[Any]:
        if self.everything:
            return values
        return _objects(values)[self.numpy].tolist()


def _objects(values: list[Any]):
    import numpy as np

    array = np.empty(len(values), dtype=object)
    array[:] = values  # element by element: lists and dicts stay single objects
    return array


class _Ids:
    """One id column's masks: present (non-empty after trimming), blocked, short, good; nul (or None)."""

    def __init__(self, array: pa.Array | None, size: int, min_length: int):
        if array is None:
            self.text = None
            no = pa.repeat(False, size)
            self.present = self.blocked = self.short = self.good = no
            self.nul = None
            self.absent = pc.invert(no)
            return
        text = pc.utf8_trim_whitespace(array)
        length = pc.utf8_length(text)
        self.text = text
        self.present = pc.fill_null(pc.greater(length, 0), False)
        self.absent = pc.invert(self.present)
        self.blocked = pc.and_(self.present, pc.is_in(pc.ascii_lower(text), value_set=_BLOCKED))
        self.short = pc.and_(pc.and_(self.present, pc.invert(self.blocked)),
                             pc.fill_null(pc.less(length, min_length), False))
        self.good = pc.and_(self.present, pc.invert(pc.or_(self.blocked, self.short)))
        # Which rows hold a NUL; None when none does. One C-level scan of the chunk's bytes spares the
        # usual chunk the per-row check (a tenth of this pass): a NUL outside the rows only costs that check.
        data = text.buffers()[2]
        self.nul = (pc.fill_null(pc.match_substring(text, "\x00"), False)
                    if data is not None and data.to_pybytes().find(b"\x00") >= 0 else None)

    def texts(self, use: pa.Array, kept: _Kept) -> list[str | None] | None:
        """The kept rows' ids as Python strings; None where `use` is false (missing, left out)."""
        if self.text is None:
            return None
        text = self.text if pc.all(use).as_py() is not False else pc.if_else(use, self.text, _NULL_TEXT)
        if not kept.everything:
            text = text.filter(kept.arrow)
        return text.to_numpy(zero_copy_only=False).tolist()
