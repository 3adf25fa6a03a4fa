"""What every call type shares: field validation, ids, time, integrations options.

Pure: no I/O, no clock, no environment. Every problem is a ValidationError whose message starts
with the field it is about.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..errors import ValidationError

# Amplitude answers 400 for these ids (amplitude-api.md section 2.3); compared case-insensitively.
BLOCKED_IDS = frozenset({
    "anonymous", "nil", "none", "null", "n/a", "na", "undefined", "unknown", '""',
    "00000000-0000-0000-0000-000000000000", "{}", "lmy47d", "0", "-1",
})
_LONGEST_BLOCKED = max(map(len, BLOCKED_IDS))

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NUMBERS = (int, float)
EMPTY: dict = {}  # shared read-only stand-in for an absent object; never mutated


def invalid(field: str, text: str) -> ValidationError:
    return ValidationError(f"{field}: {text}", field=field)


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, _NUMBERS):
        return "a number"
    if value is None:
        return "null"
    return type(value).__name__


def shown(value: Any) -> str:
    """A short, safe rendering of a user's value for an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def object_field(message: dict, name: str) -> dict:
    """A top-level object (properties, traits, context, integrations): absent or null is empty;
    anything but an object is an error."""
    value = message.get(name)
    if value is None:
        return EMPTY
    if value.__class__ is dict or isinstance(value, dict):
        return value
    raise invalid(name, f"must be an object, not {type_name(value)}")


def sub(parent: dict, key: str) -> dict:
    """A nested context part; one of the wrong shape carries nothing usable, so it counts as absent."""
    value = parent.get(key)
    return value if value.__class__ is dict else EMPTY


def text_field(value: Any, field: str) -> str | None:
    """An event, name, category or id: a string or a number (as its text); None when absent or
    empty. Anything else is an error."""
    if value is None:
        return None
    if value.__class__ is str:
        return value or None
    if isinstance(value, bool) or not isinstance(value, _NUMBERS):
        if isinstance(value, str):
            return str(value) or None
        raise invalid(field, f"must be a string or a number, not {type_name(value)}")
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise invalid(field, "must be a finite number")
        if value.is_integer():
            return str(int(value))
    return str(value)


def text(value: Any) -> str | None:
    """A context value as text when it is a non-empty string or a number; None otherwise (nested
    context parts of the wrong type are treated as absent, never as errors)."""
    if value.__class__ is str:
        return value or None
    if isinstance(value, _NUMBERS) and not isinstance(value, bool):
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)
    return None


def check_id(value: Any, field: str, min_length: int) -> str | None:
    """An id Amplitude will accept, or None when absent. Refused ids are errors, never dropped:
    a silently dropped id would attribute the data to someone else."""
    if value.__class__ is str:
        id_text = value
        if not id_text:
            return None
    else:
        id_text = text_field(value, field)
        if id_text is None:
            return None
    size = len(id_text)
    if size <= _LONGEST_BLOCKED and id_text.lower() in BLOCKED_IDS:  # the more telling reason first
        raise invalid(field, f"{shown(id_text)} is a value Amplitude refuses as an id")
    if size < min_length:
        raise invalid(field, f"{shown(id_text)} is shorter than min_id_length ({min_length})")
    return id_text


def identity(message: dict, context: dict, min_length: int, prefer_anonymous: bool) -> tuple[str | None, str | None]:
    """(user_id, device_id). device_id is context.device.id, else anonymousId; the other way round
    with prefer_anonymous_id_for_device_id. Every id the message carries must be one Amplitude
    accepts, and at least one of user_id / device_id must exist."""
    user_id = message.get("userId")
    if user_id is not None:
        user_id = check_id(user_id, "userId", min_length)
    anonymous_id = message.get("anonymousId")
    if anonymous_id is not None:
        anonymous_id = check_id(anonymous_id, "anonymousId", min_length)
    device = context.get("device")
    device_key = device.get("id") if device.__class__ is dict else None
    if device_key is not None:
        device_key = check_id(device_key, "context.device.id", min_length)
    if prefer_anonymous:
        device_id = anonymous_id or device_key
    else:
        device_id = device_key or anonymous_id
    if user_id is None and device_id is None:
        raise invalid("userId", "the message has no userId, anonymousId or context.device.id")
    return user_id, device_id


def iso_ms(value: str) -> int | None:
    """An ISO 8601 date-time (any offset; none means UTC) as integer ms since the epoch, or None."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value.upper())  # a lower-case 't' or 'z'
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        delta = moment - _EPOCH
    except OverflowError:
        return None
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def time_ms(message: dict) -> int | None:
    """`timestamp`, else `originalTimestamp`, as integer ms. No timestamp gives no time: the core
    reads no clock, and Amplitude then uses the upload time."""
    for field in ("timestamp", "originalTimestamp"):
        value = message.get(field)
        if value is None:
            continue
        if value.__class__ is not str:
            raise invalid(field, f"must be an ISO 8601 date-time string, not {type_name(value)}")
        ms = iso_ms(value)
        if ms is None:
            raise invalid(field, f"{shown(value)} is not an ISO 8601 date-time")
        return ms
    return None


def amplitude_options(integrations: dict) -> dict | None:
    """integrations.Amplitude as a dict of options; None when Segment would never deliver the
    message to Amplitude (`Amplitude: false`, or `All: false` without Amplitude enabled)."""
    if not integrations:
        return EMPTY
    setting = integrations.get("Amplitude")
    if setting is False:
        return None
    if integrations.get("All") is False and setting is not True and setting.__class__ is not dict:
        return None
    return setting if setting.__class__ is dict else EMPTY


def resolve_path(message: dict, parts: tuple[str, ...]) -> Any:
    node: Any = message
    for part in parts:
        if node.__class__ is not dict:
            return None
        node = node.get(part)
        if node is None:
            return None
    return node
