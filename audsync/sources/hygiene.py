"""Row hygiene shared by every source (DESIGN.md section 4): ids as strings, refused ids and
rows without a value skipped and counted. A malformed row is an error, never a skip: skipping
a member would make the sync think they left the audience."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from ..errors import SourceError
from ..mapping._common import BLOCKED_IDS

NO_ID = "no id"
SHORT_ID = "id shorter than min_id_length"
BLOCKED_ID = "blocked id"
NO_VALUE = "no value"


def id_text(value: Any, where: str, column: str) -> str | None:
    """An id as its string; numbers keep their decimal form; missing, NaN and blanks are None."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, bool):
        raise SourceError(f"{where}: {column} is a boolean, not an id")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
        return repr(value)
    if hasattr(value, "item"):  # numpy / pyarrow scalars
        return id_text(value.item(), where, column)
    raise SourceError(f"{where}: {column} is {type(value).__name__}, not an id")


def plain_value(value: Any) -> Any:
    """JSON-able value of a computed trait; None when the user has none."""
    if value is None:
        return None
    if isinstance(value, float):
        return None if math.isnan(value) else (int(value) if value.is_integer() and abs(value) < 2**53 else value)
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        return plain_value(value.item())
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


class Hygiene:
    """Applies section 4's row rules and counts what it skips."""

    def __init__(self, min_id_length: int, computed: bool):
        self.min_id_length = min_id_length
        self.computed = computed
        self.skipped: Counter[str] = Counter()

    def _refusal(self, text: str) -> str | None:
        if text.lower() in BLOCKED_IDS:
            return BLOCKED_ID
        if len(text) < self.min_id_length:
            return SHORT_ID
        return None

    def row(self, user_id: Any, anonymous_id: Any, value: Any, place: str, line: int) -> tuple | None:
        """`place` and `line` name the row in errors (file:line, or the query's row number)."""
        if (anonymous_id is None and type(user_id) is str and not self.computed
                and len(user_id) >= self.min_id_length and user_id == user_id.strip()
                and user_id.lower() not in BLOCKED_IDS):
            return (user_id, None, None)  # the common case, checked without building anything
        where = f"{place}:{line}"
        user = id_text(user_id, where, "user_id")
        anon = id_text(anonymous_id, where, "anonymous_id")
        if user is not None:
            refusal = self._refusal(user)
            if refusal:  # the row would land on another profile: skip it whole
                self.skipped[refusal] += 1
                return None
        if anon is not None and self._refusal(anon):
            if user is None:
                self.skipped[self._refusal(anon)] += 1
                return None
            anon = None  # a good user_id carries the row; the bad device id is just not sent
        if user is None and anon is None:
            self.skipped[NO_ID] += 1
            return None
        if self.computed:
            value = plain_value(value)
            if value is None:
                self.skipped[NO_VALUE] += 1
                return None
            if isinstance(value, (set, tuple)):
                raise SourceError(f"{where}: value is not JSON")
            return (user, anon, value)
        return (user, anon, None)


class SourceBase:
    """What every source keeps while it reads: its audience, the hygiene rules and the counts."""

    def __init__(self, audience, min_id_length: int, chunk_rows: int):
        self.audience = audience
        self.chunk_rows = chunk_rows
        self.computed = audience.kind == "computed_trait"
        self.hygiene = Hygiene(min_id_length, self.computed)
        self.skipped = self.hygiene.skipped
        self.rows_read = 0
