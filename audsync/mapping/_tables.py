"""Per-settings lookups, built once per AmplitudeSettings object instead of once per message."""

from __future__ import annotations

from ..config import AmplitudeSettings

# Removed from every event's properties: BY strips them (`clean`); event_id travels as the
# top-level field, amplitude_event_type is a dead v1 field.
_ALWAYS_DROPPED = ("event_id", "amplitude_event_type")
_LOCALE_KEYS = ("language", "country")


class Tables:
    __slots__ = (
        "settings", "min_length", "prefer_anonymous", "version_name", "dropped_properties",
        "trait_operation", "query_to_user", "query_to_event", "query_names", "appended",
        "utm", "referrer", "gclid", "needs_page",
    )

    def __init__(self, settings: AmplitudeSettings):
        self.settings = settings  # held so id(settings) cannot be reused while cached
        self.min_length = settings.min_id_length
        self.prefer_anonymous = settings.prefer_anonymous_id_for_device_id
        self.version_name = settings.version_name or None
        dropped = list(_ALWAYS_DROPPED)
        if not settings.send_custom_language_and_country:
            dropped += _LOCALE_KEYS
        self.dropped_properties = tuple(dropped)
        # One operation per configured trait: the first list naming it wins (RS order, 17.2).
        operation: dict[str, str] = {}
        for op, names in (("$add", settings.traits_to_increment), ("$setOnce", settings.traits_to_set_once),
                          ("$append", settings.traits_to_append), ("$prepend", settings.traits_to_prepend)):
            for name in names:
                operation.setdefault(name, op)
        self.trait_operation = operation
        self.query_to_user = tuple(n for n, side in settings.map_query_params.items() if side == "user_properties")
        self.query_to_event = tuple(n for n, side in settings.map_query_params.items() if side != "user_properties")
        self.query_names = tuple(settings.map_query_params)
        self.appended = tuple((tuple(path.split(".")), name)
                              for path, name in settings.append_fields_to_event_properties.items())
        self.utm = settings.track_utm_properties
        self.referrer = settings.track_referrer
        self.gclid = settings.track_gclid
        self.needs_page = bool(self.query_to_user or self.gclid)


_CACHE: dict[int, Tables] = {}


def tables_for(settings: AmplitudeSettings) -> Tables:
    tables = _CACHE.get(id(settings))
    if tables is not None and tables.settings is settings:
        return tables
    if len(_CACHE) >= 64:  # many short-lived settings objects (tests): forget the old ones
        _CACHE.clear()
    tables = _CACHE[id(settings)] = Tables(settings)
    return tables
