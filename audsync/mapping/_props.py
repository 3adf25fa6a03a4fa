"""Property hygiene and user-property operations.

Amplitude must never receive a null property value (the Identify API ignores it, the SDKs strip
it) nor an array holding arrays (seed page, Troubleshooting): nulls are dropped at every depth and
such an array travels as its compact JSON string, so the call still arrives and nothing is lost.
Properties nested deeper than Amplitude accepts (40 levels) make the message invalid.
"""

from __future__ import annotations

import json
from typing import Any

from ._common import invalid

INT_MIN = -(2**63)  # JSON encoders (orjson) and Amplitude's store take 64-bit integers only
INT_MAX = 2**64 - 1
MAX_DEPTH = 40  # levels of nesting Amplitude accepts in a properties object (amplitude-api.md 2.2, 6.1)


def _big_int(value: int) -> float | str:
    """An integer beyond 64 bits: as a float (Amplitude stores numbers as doubles), or as its
    text when it is beyond a float too."""
    try:
        return float(value)
    except OverflowError:
        return str(value)


def _needs_cleaning(values) -> bool:
    """Whether any value is null, a container, a non-finite float or a too-large integer."""
    for value in values:
        kind = value.__class__
        if kind is str or kind is bool:
            continue
        if kind is int:
            if INT_MIN <= value <= INT_MAX:
                continue
            return True
        if kind is float:
            if value - value == 0.0:  # finite
                continue
            return True
        return True
    return False


def sent_unchanged(value: Any) -> bool:
    """Whether translate sends this property value exactly as given: a string, a boolean, a
    64-bit integer or a finite float (containers, nulls and the rest are transformed)."""
    kind = value.__class__
    if kind is str or kind is bool:
        return True
    if kind is int:
        return INT_MIN <= value <= INT_MAX
    return kind is float and value - value == 0.0


def clean_value(value: Any, depth: int = 2) -> Any:
    """A value fit to send, or None when it must not be sent (null, NaN, infinity). `depth` is
    the level a container value sits at: 2 right under a properties object."""
    kind = value.__class__
    if kind is str or kind is bool:
        return value
    if isinstance(value, (dict, list, tuple)):
        if depth > MAX_DEPTH:
            raise invalid("properties", f"a value is nested more than {MAX_DEPTH} levels deep, deeper than "
                                        "Amplitude accepts")
        return clean_props(value, depth) if isinstance(value, dict) else clean_list(value, depth)
    if isinstance(value, int) and not isinstance(value, bool):
        return value if INT_MIN <= value <= INT_MAX else _big_int(value)
    if isinstance(value, float):
        return value if value - value == 0.0 else None
    return value


def clean_props(props: dict, depth: int = 1) -> dict:
    """A new dict without null values, nested values cleaned; the input is never mutated."""
    if not _needs_cleaning(props.values()):
        return props.copy()
    out = {}
    for key, value in props.items():
        kind = value.__class__
        if kind is str or kind is bool:
            out[key] = value
        elif value is not None:
            value = clean_value(value, depth + 1)
            if value is not None:
                out[key] = value
    return out


def clean_list(items: list | tuple, depth: int = 2) -> list | str:
    for item in items:
        if isinstance(item, (list, tuple)):
            return json.dumps(items, separators=(",", ":"), ensure_ascii=False, default=str, skipkeys=True)
    if not _needs_cleaning(items):
        return list(items)
    out = []
    for item in items:
        kind = item.__class__
        if kind is str or kind is bool:
            out.append(item)
        elif item is not None:
            item = clean_value(item, depth + 1)
            if item is not None:
                out.append(item)
    return out


class UserProperties:
    """Collects user-property writes. A property goes under one operation only, the first that
    claims it (as Amplitude's SDKs do); the result is a plain dict when everything is `$set`,
    otherwise operations only, plain values under `$set`, never a mix (Identify API rule)."""

    __slots__ = ("ops",)

    def __init__(self) -> None:
        self.ops: dict[str, dict] = {}

    def add(self, op: str, key: str, value: Any) -> None:
        if value is None:
            return
        ops = self.ops
        for claimed in ops.values():
            if key in claimed:
                return
        if value.__class__ is not str:
            value = clean_value(value)
            if value is None:
                return
        target = ops.get(op)
        if target is None:
            ops[op] = {key: value}
        else:
            target[key] = value

    def add_plain(self, values: dict, skip: str | None = None) -> None:
        """Every non-null entry of `values` under $set, except the key `skip`."""
        if not self.ops:
            plain = clean_props(values)
            if skip is not None and skip in plain:
                del plain[skip]
            if plain:
                self.ops["$set"] = plain
            return
        for key, value in values.items():
            if key != skip:
                self.add("$set", key, value)

    def render(self) -> dict | None:
        ops = self.ops
        if not ops:
            return None
        if len(ops) == 1:
            plain = ops.get("$set")
            if plain is not None:
                for key in plain:
                    if key[:1] == "$":  # a trait named like an operation: plain form would be read as one
                        return ops
                return plain
        return ops
