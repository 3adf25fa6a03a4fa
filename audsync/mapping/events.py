"""Event operations shared by track, page and screen: the common body and event-level options."""

from __future__ import annotations

from typing import Any

from ..config import AmplitudeSettings
from ..errors import ValidationError
from ._common import (
    UserProperties, campaign_properties, clean_props, context_fields, context_traits,
    page_search, resolve_path, text_field, type_name,
)

# Removed from every event's properties (BY `clean`); language/country unless the setting keeps them.
_ALWAYS_DROPPED = ("event_id", "amplitude_event_type")
_LOCALE_KEYS = ("language", "country")


def _session_id(options: dict) -> int | None:
    if options.get("outOfSession") is True:
        return -1
    for field in ("session_id", "sessionId"):
        value = options.get(field)
        if value is None:
            continue
        name = f"integrations.Amplitude.{field}"
        if isinstance(value, bool):
            raise ValidationError(f"{name}: must be a number, not a boolean", field=name)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value.strip())
        raise ValidationError(f"{name}: {str(value)[:40]!r} is not a Unix time in ms", field=name)
    return None


def _event_id(options: dict) -> int | None:
    value = options.get("event_id", options.get("eventId"))
    if value is None:
        return None
    name = "integrations.Amplitude.event_id"
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ValidationError(f"{name}: must be a whole number, not {type_name(value)}", field=name)


def event_properties(properties: dict, settings: AmplitudeSettings) -> dict:
    props = clean_props(properties)
    for key in _ALWAYS_DROPPED:
        props.pop(key, None)
    if not settings.send_custom_language_and_country:
        for key in _LOCALE_KEYS:
            props.pop(key, None)
    return props


class EventBase:
    """What every event of one message shares; `make` stamps out each event body."""

    __slots__ = ("common", "insert_id", "user_properties")

    def __init__(self, message: dict, context: dict, options: dict, ids: tuple[str | None, str | None],
                 time: int | None, insert_id: str | None, settings: AmplitudeSettings,
                 extra_user_properties=None):
        user_id, device_id = ids
        common: dict[str, Any] = {}
        if user_id is not None:
            common["user_id"] = user_id
        if device_id is not None:
            common["device_id"] = device_id
        if time is not None:
            common["time"] = time
        common.update(context_fields(message, context, {}, settings))
        session = _session_id(options)
        if session is not None:
            common["session_id"] = session
        event_id = _event_id(options)
        if event_id is not None:
            common["event_id"] = event_id
        groups = options.get("groups")
        if groups is not None:
            if not isinstance(groups, dict):
                raise ValidationError("integrations.Amplitude.groups: must be an object", field="integrations.Amplitude.groups")
            groups = clean_props(groups)
            if groups:
                common["groups"] = groups
        props = UserProperties()
        context_traits(context, props)
        campaign_properties(context, props, settings)
        if extra_user_properties is not None:
            extra_user_properties(props)
        for name, side in settings.map_query_params.items():
            if side == "user_properties":
                search = page_search(context)
                if search is not None:
                    props.add("$set", name, search)
        self.user_properties = props.render()
        self.common = common
        self.insert_id = insert_id

    def make(self, event_type: str, event_props: dict, insert_suffix: str | None = None,
             revenue: dict | None = None) -> dict:
        body = {"event_type": event_type, **self.common}
        if event_props:
            body["event_properties"] = event_props
        if self.user_properties:
            body["user_properties"] = self.user_properties
        if revenue:
            body.update(revenue)
        if self.insert_id is not None:
            body["insert_id"] = self.insert_id if insert_suffix is None else f"{self.insert_id}-{insert_suffix}"
        return {"api": "event", "body": body}


def add_message_fields(message: dict, context: dict, props: dict, settings: AmplitudeSettings) -> dict:
    """map_query_params (event side) and append_fields_to_event_properties."""
    for name, side in settings.map_query_params.items():
        if side == "event_properties":
            search = page_search(context)
            if search is not None:
                props[name] = search
    for path, name in settings.append_fields_to_event_properties.items():
        value = resolve_path(message, path)
        if value is not None:
            props[name] = clean_props({name: value})[name] if isinstance(value, (dict, list)) else value
    return props


def event_name(message: dict, field: str = "event") -> str:
    name = text_field(message.get(field), field)
    if name is None or not name.strip():
        raise ValidationError(f"{field}: a track call needs an event name", field=field)
    return name
