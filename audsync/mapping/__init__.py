"""The pure mapping core: one Segment-spec message -> Amplitude operations.

`translate(message, settings)` implements section 17 of the mapping reference. Operations are
`{"api": "event" | "identify" | "groupidentify" | "usermap", "body": {...}}` (DESIGN.md section
3). It does no I/O and reads no clock: a message without a timestamp gets no `time`. A message
the settings (or its `integrations`) filter out gives []; every problem with a message is a
ValidationError whose message starts with the field it is about, and no input, however
malformed, raises anything else.

Modules: `_common` (validation, ids, time, options), `_props` (null / nested-array hygiene,
user-property operations), `_context` (context fields, UTM, referrer, gclid), `_tables`
(per-settings lookups), `events` (what track / page / screen events share), `track`, `revenue`,
`page`, `identify`, `group`, `alias`.
"""

from __future__ import annotations

from typing import Any

from ..config import AmplitudeSettings
from ..errors import ValidationError
from ._common import amplitude_options, identity, invalid, object_field, shown, text_field, time_ms, type_name
from ._tables import tables_for
from .alias import alias
from .events import EventBase
from .group import group
from .identify import identify
from .page import page
from .track import track

__all__ = ["translate", "CALL_TYPES"]

CALL_TYPES = ("identify", "track", "page", "screen", "group", "alias")
_KINDS = frozenset(CALL_TYPES)


def translate(message: Any, settings: AmplitudeSettings) -> list[dict]:
    """The Amplitude operations for one Segment message, in the order they must be sent."""
    try:
        return _translate(message, settings)
    except ValidationError:
        raise
    except RecursionError:
        raise ValidationError("message: nested too deeply to translate", field="message") from None
    except (ValueError, OverflowError) as exc:  # numbers beyond what Python converts, and the like
        raise ValidationError(f"message: holds a value that cannot be translated ({exc})", field="message") from None


def _kind(message: dict) -> str:
    kind = message.get("type")
    if kind.__class__ is str and kind in _KINDS:
        return kind
    if kind is None:
        raise invalid("type", "the message has no type")
    if isinstance(kind, str) and kind.lower() in _KINDS:
        return kind.lower()
    raise invalid("type", f"{shown(kind) if isinstance(kind, str) else type_name(kind)} is not one of "
                          f"{', '.join(CALL_TYPES)}")


def _translate(message: Any, settings: AmplitudeSettings) -> list[dict]:
    if not isinstance(message, dict):
        raise invalid("message", f"must be a JSON object, not {type_name(message)}")
    kind = _kind(message)
    tables = tables_for(settings)
    get = message.get
    context = get("context")
    if context.__class__ is not dict:
        context = object_field(message, "context")
    integrations = get("integrations")
    if integrations.__class__ is not dict:
        integrations = object_field(message, "integrations")
    properties = get("properties")
    if properties.__class__ is not dict:
        properties = object_field(message, "properties")
    traits = get("traits")
    if traits.__class__ is not dict:
        traits = object_field(message, "traits")
    for field in ("event", "name", "category"):
        value = get(field)
        if value is not None and value.__class__ is not str:
            text_field(value, field)
    insert_id = get("messageId")
    if insert_id.__class__ is not str:
        insert_id = text_field(insert_id, "messageId")
    elif not insert_id:
        insert_id = None
    time = time_ms(message)
    options = amplitude_options(integrations)
    if options is None:
        return []  # Segment would never deliver it to Amplitude
    if kind == "alias":
        return alias(message, options, tables)
    ids = identity(message, context, tables.min_length, tables.prefer_anonymous)
    if kind == "track":
        return track(message, properties, context, EventBase(context, options, ids, time, insert_id, tables),
                     tables)
    if kind == "identify":
        return identify(traits, context, options, ids, tables)
    if kind == "group":
        return group(message, traits, context, options, ids, tables)
    return page(message, kind, properties, context,
                lambda referrer: EventBase(context, options, ids, time, insert_id, tables, referrer), tables)
