"""The pure mapping core: one Segment-spec message -> Amplitude operations.

`translate(message, settings)` implements section 17 of the mapping reference. It does no I/O
and reads no clock: a message without a timestamp gets no `time`. Every problem with the message
is a ValidationError naming the field; a message the settings filter out gives [].
"""

from __future__ import annotations

from typing import Any

from ..config import AmplitudeSettings
from ..errors import ValidationError
from ._common import amplitude_options, identity, message_id, object_field, referrer_properties, time_ms, type_name
from .events import EventBase
from .identify import alias, group, identify
from .page import page
from .track import track

__all__ = ["translate", "CALL_TYPES"]

CALL_TYPES = ("identify", "track", "page", "screen", "group", "alias")


def translate(message: Any, settings: AmplitudeSettings) -> list[dict]:
    try:
        return _translate(message, settings)
    except ValidationError:
        raise
    except RecursionError:
        raise ValidationError("the message is nested too deeply") from None


def _translate(message: Any, settings: AmplitudeSettings) -> list[dict]:
    if not isinstance(message, dict):
        raise ValidationError(f"a message must be a JSON object, not {type_name(message)}")
    kind = message.get("type")
    if kind is None:
        raise ValidationError("type: the message has no type", field="type")
    if not isinstance(kind, str) or kind.lower() not in CALL_TYPES:
        shown = kind if isinstance(kind, str) else type_name(kind)
        raise ValidationError(f"type: {str(shown)[:40]!r} is not one of {', '.join(CALL_TYPES)}", field="type")
    kind = kind.lower()
    context = object_field(message, "context")
    options = amplitude_options(message)
    if options is None:
        return []
    if kind == "alias":
        return alias(message, options, settings)
    ids = identity(message, context, settings)
    if kind == "identify":
        return identify(message, context, object_field(message, "traits"), options, ids, settings)
    if kind == "group":
        return group(message, context, object_field(message, "traits"), options, ids, settings)

    properties = object_field(message, "properties")
    extra = referrer_properties_for(context) if kind == "page" and settings.track_referrer else None
    base = EventBase(message, context, options, ids, time_ms(message), message_id(message), settings, extra)
    if kind == "track":
        return track(message, base, properties, settings)
    return page(message, kind, context, base, properties, settings)


def referrer_properties_for(context: dict):
    return lambda props: referrer_properties(context, props)
