"""What track, page and screen events share: the common body, event-level
`integrations.Amplitude` options, and event-property rules (17.1-17.3)."""

from __future__ import annotations

from typing import Any

from ._common import invalid, iso_ms, resolve_path, shown, text_field, type_name
from ._context import campaign_properties, context_fields, page_search, referrer_properties
from ._props import UserProperties, clean_props, clean_value
from ._tables import Tables

_OPTION = "integrations.Amplitude."
_LONG = 2**63  # Amplitude's session_id and event_id are 64-bit integers


def _long(value: int, field: str) -> int:
    if -_LONG <= value < _LONG:
        return value
    raise invalid(field, f"{shown(value)} is out of the 64-bit integer range")


def session_id(options: dict) -> int | None:
    """outOfSession -> -1 (Amplitude's out-of-session marker); session_id / sessionId as an
    integer: numbers pass through, numeric strings are converted, ISO date-times become ms."""
    if options.get("outOfSession") is True:
        return -1
    for key in ("session_id", "sessionId"):
        value = options.get(key)
        if value is None:
            continue
        field = _OPTION + key
        if isinstance(value, bool):
            raise invalid(field, "must be a number (Unix time in ms), not a boolean")
        if isinstance(value, int):
            return _long(value, field)
        if isinstance(value, float):
            if value.is_integer():
                return _long(int(value), field)
            raise invalid(field, f"{shown(value)} is not a whole number")
        if isinstance(value, str):
            stripped = value.strip()
            digits = stripped[1:] if stripped[:1] == "-" else stripped
            if digits.isdigit() and digits.isascii() and len(digits) < 20:
                return _long(int(stripped), field)
            ms = iso_ms(stripped)
            if ms is not None:
                return ms
            raise invalid(field, f"{shown(value)} is neither a Unix time in ms nor an ISO 8601 date-time")
        raise invalid(field, f"must be a number (Unix time in ms), not {type_name(value)}")
    return None


def event_id(options: dict) -> int | None:
    for key in ("event_id", "eventId"):
        value = options.get(key)
        if value is None:
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            return _long(value, _OPTION + key)
        if isinstance(value, float) and value.is_integer():
            return _long(int(value), _OPTION + key)
        if isinstance(value, str) and value.isdigit() and value.isascii() and len(value) < 20:
            return _long(int(value), _OPTION + key)
        raise invalid(_OPTION + key, f"must be a whole number, not {shown(value)}")
    return None


def groups_option(options: dict) -> dict | None:
    """integrations.Amplitude.groups: {group type: value or list of values}."""
    groups = options.get("groups")
    if groups is None:
        return None
    if not isinstance(groups, dict):
        raise invalid(_OPTION + "groups", f"must be an object, not {type_name(groups)}")
    for name, value in groups.items():
        if value is None:
            continue
        if isinstance(value, list):
            for item in value:
                if item is not None:
                    text_field(item, f"{_OPTION}groups.{name}")
        else:
            text_field(value, f"{_OPTION}groups.{name}")
    return clean_props(groups) or None


class EventBase:
    """What every event of one message shares; `make` stamps out each event operation.

    Events of one message share their nested user_properties / groups dicts: operations are
    read-only data."""

    __slots__ = ("common", "insert_id", "user_properties")

    def __init__(self, context: dict, options: dict, ids: tuple[str | None, str | None],
                 time: int | None, insert_id: str | None, tables: Tables, referrer: bool = False):
        common: dict[str, Any] = {}
        if ids[0] is not None:
            common["user_id"] = ids[0]
        if ids[1] is not None:
            common["device_id"] = ids[1]
        if time is not None:
            common["time"] = time
        context_fields(common, context, None, tables)
        if options:
            value = session_id(options)
            if value is not None:
                common["session_id"] = value
            value = event_id(options)
            if value is not None:
                common["event_id"] = value
            # Event-level groups apply to this event only; they do not persist on the user (doc).
            groups = groups_option(options)
            if groups:
                common["groups"] = groups
        props = UserProperties()
        traits = context.get("traits")
        if traits.__class__ is dict and traits:
            props.add_plain(traits, skip="address")
        campaign_properties(context, props, tables)
        if referrer:
            referrer_properties(context, props)
        if tables.query_to_user:
            search = page_search(context)
            if search is not None:
                for name in tables.query_to_user:
                    props.add("$set", name, search)
        self.user_properties = props.render()
        self.common = common
        self.insert_id = insert_id

    def make(self, event_type: str, event_properties: dict | None, insert_suffix: str | None = None,
             revenue: dict | None = None) -> dict:
        body = {"event_type": event_type}
        body.update(self.common)
        if event_properties:
            body["event_properties"] = event_properties
        if self.user_properties:
            body["user_properties"] = self.user_properties
        if revenue:
            body.update(revenue)
        if self.insert_id is not None:
            body["insert_id"] = self.insert_id if insert_suffix is None else f"{self.insert_id}-{insert_suffix}"
        return {"api": "event", "body": body}


def event_properties(message: dict, properties: dict, context: dict, tables: Tables) -> dict:
    """Properties minus event_id / amplitude_event_type (and language / country unless
    send_custom_language_and_country), plus map_query_params (event side) and
    append_fields_to_event_properties; a path that does not resolve adds nothing."""
    props = clean_props(properties) if properties else {}
    if props:
        for key in tables.dropped_properties:
            if key in props:
                del props[key]
    if tables.query_to_event:
        search = page_search(context)
        if search is not None:
            for name in tables.query_to_event:
                props[name] = search
    for parts, name in tables.appended:
        value = resolve_path(message, parts)
        if value is not None:
            value = clean_value(value)
            if value is not None:
                props[name] = value
    return props
