"""Parts every call type shares: ids, time, context fields, property hygiene, campaign data.

Pure: no I/O, no clock, no environment. Every problem is a ValidationError naming the field.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..config import AmplitudeSettings
from ..errors import ValidationError
from ._locales import COUNTRIES, LANGUAGES

# Amplitude answers 400 for these ids (amplitude-api.md section 2.3); compared case-insensitively.
BLOCKED_IDS = frozenset({
    "anonymous", "nil", "none", "null", "n/a", "na", "undefined", "unknown", '""',
    "00000000-0000-0000-0000-000000000000", "{}", "lmy47d", "0", "-1",
})

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def as_dict(value: Any) -> dict:
    """Nested context parts of the wrong shape carry nothing we can use: treat them as absent."""
    return value if isinstance(value, dict) else {}


def object_field(message: dict, name: str) -> dict:
    """A top-level object (properties, traits, context, integrations): absent/null is empty,
    anything but an object is an error."""
    value = message.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(f"{name}: must be an object, not {type_name(value)}", field=name)
    return value


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    return {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number",
            type(None): "null"}.get(type(value), type(value).__name__)


def text_field(value: Any, field: str) -> str | None:
    """A name, event, category or id: a string or a number; None when absent or empty."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{field}: must be a string or a number, not {type_name(value)}", field=field)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"{field}: must be a finite number", field=field)
        if value.is_integer():
            return str(int(value))
    return str(value)


def check_id(value: Any, field: str, settings: AmplitudeSettings) -> str | None:
    """An id Amplitude will accept, or None when absent; refused ids are errors, never dropped."""
    text = text_field(value, field)
    if text is None:
        return None
    if len(text) < settings.min_id_length:
        raise ValidationError(
            f"{field}: {text!r} is shorter than min_id_length ({settings.min_id_length})", field=field)
    if text.lower() in BLOCKED_IDS:
        raise ValidationError(f"{field}: {text!r} is a value Amplitude refuses as an id", field=field)
    return text


def identity(message: dict, context: dict, settings: AmplitudeSettings) -> tuple[str | None, str | None]:
    """(user_id, device_id): device from context.device.id, else anonymousId; flipped by
    prefer_anonymous_id_for_device_id. At least one must exist."""
    user_id = check_id(message.get("userId"), "userId", settings)
    device = as_dict(context.get("device"))
    device_key = "context.device.id"
    if settings.prefer_anonymous_id_for_device_id:
        order = (("anonymousId", message.get("anonymousId")), (device_key, device.get("id")))
    else:
        order = ((device_key, device.get("id")), ("anonymousId", message.get("anonymousId")))
    device_id = None
    for field, value in order:
        device_id = check_id(value, field, settings)
        if device_id is not None:
            break
    if user_id is None and device_id is None:
        raise ValidationError("userId: the message has no userId, anonymousId or context.device.id", field="userId")
    return user_id, device_id


def time_ms(message: dict) -> int | None:
    """`timestamp` (else `originalTimestamp`), ISO 8601 with any offset, as integer ms."""
    for field in ("timestamp", "originalTimestamp"):
        value = message.get(field)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValidationError(f"{field}: must be an ISO 8601 string, not {type_name(value)}", field=field)
        try:
            moment = datetime.fromisoformat(value.replace("z", "Z"))
        except ValueError:
            raise ValidationError(f"{field}: {value[:64]!r} is not an ISO 8601 timestamp", field=field) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        try:
            delta = moment - _EPOCH
        except OverflowError:
            raise ValidationError(f"{field}: {value[:64]!r} is out of range", field=field) from None
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    return None


def message_id(message: dict) -> str | None:
    return text_field(message.get("messageId"), "messageId")


def amplitude_options(message: dict) -> dict | None:
    """integrations.Amplitude as a dict of options; None when the message must not reach
    Amplitude (`Amplitude: false`, or `All: false` without Amplitude enabled)."""
    integrations = object_field(message, "integrations")
    setting = integrations.get("Amplitude")
    if setting is False:
        return None
    if integrations.get("All") is False and not setting:
        return None
    return setting if isinstance(setting, dict) else {}


def clean_value(value: Any) -> Any:
    """Drops nulls at any depth and turns a list holding lists into its compact JSON string,
    which Amplitude cannot store otherwise (seed page, Troubleshooting)."""
    if isinstance(value, dict):
        return clean_props(value)
    if isinstance(value, list):
        if any(isinstance(item, list) for item in value):
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        return [clean_value(item) for item in value if item is not None]
    return value


def clean_props(props: dict) -> dict:
    out = {}
    for key, value in props.items():
        if value is None:
            continue
        if isinstance(value, (dict, list)):
            value = clean_value(value)
        out[key] = value
    return out


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _platform(context: dict, device: dict) -> str | None:
    kind = _text(device.get("type"))
    if kind:
        return {"ios": "iOS", "android": "Android", "web": "Web"}.get(kind.lower(), kind)
    if as_dict(context.get("library")).get("name") == "analytics.js":
        return "Web"
    return None


def _language(locale: str) -> tuple[str, str | None]:
    """'en-US' -> ('English', 'United States'); unknown codes keep the raw locale."""
    parts = locale.replace("_", "-").split("-")
    language = LANGUAGES.get(parts[0].lower(), locale)
    country = COUNTRIES.get(parts[1].upper()) if len(parts) > 1 else None
    return language, country


def context_fields(message: dict, context: dict, traits: dict, settings: AmplitudeSettings) -> dict:
    """Device, app, location and locale fields of an event or identification (section 17.1)."""
    fields: dict[str, Any] = {}
    app = as_dict(context.get("app"))
    os_info = as_dict(context.get("os"))
    device = as_dict(context.get("device"))
    location = as_dict(context.get("location"))
    app_version = _text(app.get("version")) or settings.version_name or None
    for name, value in (
        ("app_version", app_version),
        ("os_name", _text(os_info.get("name"))),
        ("os_version", _text(os_info.get("version"))),
        ("device_model", _text(device.get("model"))),
        ("device_brand", _text(device.get("brand"))),
        ("device_manufacturer", _text(device.get("manufacturer"))),
        ("carrier", _text(as_dict(context.get("network")).get("carrier"))),
        ("ip", _text(context.get("ip"))),
        ("platform", _platform(context, device)),
    ):
        if value is not None:
            fields[name] = value
    for name, key in (("location_lat", "latitude"), ("location_lng", "longitude")):
        number = _number(location.get(key))
        if number is not None:
            fields[name] = number
    address = as_dict(traits.get("address")) or as_dict(as_dict(context.get("traits")).get("address"))
    for name in ("city", "country", "region"):
        value = _text(location.get(name)) or _text(address.get(name))
        if value is not None:
            fields[name] = value
    locale = _text(context.get("locale"))
    if locale:
        language, country = _language(locale)
        fields["language"] = language
        if country and "country" not in fields:
            fields["country"] = country
    advertising = _text(device.get("advertisingId")) or _text(device.get("idfa"))
    if advertising:
        os_name = (fields.get("os_name") or "").lower()
        if os_name in ("ios", "iphone os", "ipados"):
            fields["idfa"] = advertising
        elif os_name == "android":
            fields["adid"] = advertising
    fields["library"] = "segment"
    return fields


class UserProperties:
    """Collects user property writes; renders a plain dict when only $set is used, otherwise
    operations only (plain values under $set), never a mix (Identify API rule)."""

    __slots__ = ("ops",)

    def __init__(self) -> None:
        self.ops: dict[str, dict] = {}

    def add(self, op: str, key: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, (dict, list)):
            value = clean_value(value)
        for existing in self.ops.values():  # a property goes under one operation only
            if key in existing:
                return
        self.ops.setdefault(op, {})[key] = value

    def render(self) -> dict:
        if not self.ops:
            return {}
        if len(self.ops) == 1 and "$set" in self.ops:
            return self.ops["$set"]
        return self.ops


def page_search(context: dict) -> str | None:
    return _text(as_dict(context.get("page")).get("search"))


def campaign_properties(context: dict, props: UserProperties, settings: AmplitudeSettings) -> None:
    """UTM from context.campaign and gclid from the page query string."""
    if settings.track_utm_properties:
        campaign = as_dict(context.get("campaign"))
        for source, name in (("source", "utm_source"), ("medium", "utm_medium"), ("name", "utm_campaign"),
                             ("term", "utm_term"), ("content", "utm_content")):
            value = _text(campaign.get(source))
            if value is not None:
                props.add("$set", name, value)
                props.add("$setOnce", "initial_" + name, value)
    if settings.track_gclid:
        gclid = _gclid(as_dict(context.get("page")))
        if gclid:
            props.add("$set", "gclid", gclid)
            props.add("$setOnce", "initial_gclid", gclid)


def _gclid(page: dict) -> str | None:
    search = _text(page.get("search"))
    url = _text(page.get("url"))
    for query in (search.lstrip("?") if search else None, urlsplit(url).query if url else None):
        if query:
            values = parse_qs(query).get("gclid")
            if values and values[0]:
                return values[0]
    return None


def referrer_properties(context: dict, props: UserProperties) -> None:
    referrer = _text(as_dict(context.get("page")).get("referrer"))
    if not referrer:
        return
    props.add("$set", "referrer", referrer)
    props.add("$setOnce", "initial_referrer", referrer)
    domain = urlsplit(referrer).hostname
    if domain:
        props.add("$set", "referring_domain", domain)
        props.add("$setOnce", "initial_referring_domain", domain)


def context_traits(context: dict, props: UserProperties) -> None:
    for key, value in as_dict(context.get("traits")).items():
        if key != "address":
            props.add("$set", key, value)


def resolve_path(message: dict, path: str) -> Any:
    node: Any = message
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
