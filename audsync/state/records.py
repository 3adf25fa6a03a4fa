"""The rows the state layer hands out, and the one text of a value (canonical JSON)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

import orjson


def json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"a value of type {type(value).__name__} cannot be sent to Amplitude")


def canonical_json(value: Any) -> str:
    """One text per value (sorted keys), so that equal values compare equal in SQL."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=json_default).decode()


@dataclass(frozen=True)
class AudienceRow:
    id: int
    destination: str
    key: str
    name: str
    kind: str
    first_synced_at: float | None


class PendingRow(NamedTuple):
    # A tuple, not a dataclass: ten million of them are built on the delivery path. Its fields
    # are OperationBuilder.build's arguments, in that order (the delivery passes *row).
    identity: str
    user_id: str | None
    anonymous_id: str | None
    value: str | None  # canonical JSON; None: exit / $unset
    change: str
    run_id: int


@dataclass(frozen=True)
class CurrentCounts:
    """The source after folding duplicates: users kept, and rows skipped with a reason."""

    users: int
    duplicate_rows: int
    conflicting_rows: int
    conflicting_users: int


@dataclass(frozen=True)
class Rejected:
    identity: str
    api: str
    reason: str
