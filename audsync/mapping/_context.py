"""Segment `context` -> Amplitude device, app, location and locale fields, and the user
properties a context implies (UTM campaign, referrer, gclid, context.traits), section 17.1-17.2."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._common import EMPTY, sub, text
from ._locales import COUNTRIES, LANGUAGES
from ._props import UserProperties
from ._tables import Tables

_PLATFORM_CASE = {"ios": "iOS", "android": "Android", "web": "Web"}
# BY's library table: the Segment library that sent the call names the platform.
_LIBRARY_PLATFORM = {"analytics.js": "Web", "analytics-ios": "iOS", "analytics-android": "Android"}
_IOS_NAMES = frozenset({"ios", "iphone os", "ipados", "ipad os"})
_CAMPAIGN = (("source", "utm_source"), ("medium", "utm_medium"), ("name", "utm_campaign"),
             ("term", "utm_term"), ("content", "utm_content"))
_CAMPAIGN_ONCE = {name: "initial_" + name for _, name in _CAMPAIGN}

_LOCALE_CACHE: dict[str, tuple[str, str | None]] = {}


def _coordinate(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def locale_names(locale: str) -> tuple[str, str | None]:
    """'en-US' -> ('English', 'United States'), as Amplitude's SDKs record it; an unknown
    language keeps the raw locale, an unknown region gives no country."""
    names = _LOCALE_CACHE.get(locale)
    if names is None:
        parts = locale.replace("_", "-").split("-")
        language = LANGUAGES.get(parts[0].lower(), locale)
        country = None
        for part in parts[1:]:
            if len(part) == 2:
                country = COUNTRIES.get(part.upper())
                break
        names = (language, country)
        if len(_LOCALE_CACHE) < 4096:
            _LOCALE_CACHE[locale] = names
    return names


_DEVICE_FIELDS = (("device_model", "model"), ("device_brand", "brand"), ("device_manufacturer", "manufacturer"))


def context_fields(body: dict, context: dict, traits: dict | None, tables: Tables) -> None:
    """Writes the context fields into an event or identification body. Nested parts of the wrong
    type count as absent. Strings are the common case and take the short path."""
    get = context.get
    app = get("app")
    value = app.get("version") if app.__class__ is dict else None
    if value.__class__ is not str:
        value = text(value)
    if value:
        body["app_version"] = value
    elif tables.version_name:
        body["app_version"] = tables.version_name
    os_name = None
    os_info = get("os")
    if os_info.__class__ is dict:
        os_name = os_info.get("name")
        if os_name.__class__ is not str:
            os_name = text(os_name)
        if os_name:
            body["os_name"] = os_name
        value = os_info.get("version")
        if value.__class__ is not str:
            value = text(value)
        if value:
            body["os_version"] = value
    device = get("device")
    if device.__class__ is not dict:
        device = EMPTY
    elif device:
        for field, key in _DEVICE_FIELDS:
            value = device.get(key)
            if value is not None:
                if value.__class__ is not str:
                    value = text(value)
                if value:
                    body[field] = value
    network = get("network")
    if network.__class__ is dict:
        value = text(network.get("carrier"))
        if value:
            body["carrier"] = value
    value = get("ip")
    if value is not None:
        if value.__class__ is not str:
            value = text(value)
        if value:
            body["ip"] = value
    platform = device.get("type") if device else None
    if platform is not None:
        platform = text(platform)
    if platform:
        body["platform"] = _PLATFORM_CASE.get(platform.lower(), platform)
    else:
        library = get("library")
        name = library.get("name") if library.__class__ is dict else None
        if name.__class__ is str and name in _LIBRARY_PLATFORM:
            body["platform"] = _LIBRARY_PLATFORM[name]

    location = get("location")
    if location.__class__ is not dict:
        location = EMPTY
    elif location:
        lat = _coordinate(location.get("latitude"))
        if lat is not None:
            body["location_lat"] = lat
        lng = _coordinate(location.get("longitude"))
        if lng is not None:
            body["location_lng"] = lng
    address = traits.get("address") if traits else None
    if address.__class__ is not dict:
        context_traits = get("traits")
        address = context_traits.get("address") if context_traits.__class__ is dict else None
        if address.__class__ is not dict:
            address = EMPTY
    if location or address:
        for field in ("city", "country", "region"):
            value = text(location.get(field)) or text(address.get(field))
            if value:
                body[field] = value
    locale = get("locale")
    if locale.__class__ is str and locale:
        language, country = locale_names(locale)
        body["language"] = language
        if country and "country" not in body:
            body["country"] = country

    if device:
        advertising = text(device.get("advertisingId")) or text(device.get("idfa"))
        if advertising:
            family = (os_name or text(device.get("type")) or "").lower()
            if family in _IOS_NAMES:
                body["idfa"] = advertising
            elif family == "android":
                body["adid"] = advertising
    body["library"] = "segment"


def campaign_properties(context: dict, props: UserProperties, tables: Tables) -> None:
    """UTM parameters from context.campaign ($set utm_*, $setOnce initial_utm_*) and the gclid
    of the page's query string ($set gclid, $setOnce initial_gclid)."""
    if tables.utm:
        campaign = context.get("campaign")
        if campaign.__class__ is dict and campaign:
            for key, name in _CAMPAIGN:
                value = text(campaign.get(key))
                if value is not None:
                    props.add("$set", name, value)
                    props.add("$setOnce", _CAMPAIGN_ONCE[name], value)
    if tables.gclid:
        gclid = _gclid(sub(context, "page"))
        if gclid:
            props.add("$set", "gclid", gclid)
            props.add("$setOnce", "initial_gclid", gclid)


def _gclid(page: dict) -> str | None:
    search = text(page.get("search"))
    if search and "gclid" in search:
        values = parse_qs(search.lstrip("?")).get("gclid")
        if values and values[0]:
            return values[0]
    url = text(page.get("url"))
    if url and "gclid" in url:
        try:
            query = urlsplit(url).query
        except ValueError:
            return None
        values = parse_qs(query).get("gclid")
        if values and values[0]:
            return values[0]
    return None


def referrer_properties(context: dict, props: UserProperties) -> None:
    """Page calls: $set referrer / referring_domain, $setOnce their initial_ values (AJS)."""
    referrer = text(sub(context, "page").get("referrer"))
    if not referrer:
        return
    props.add("$set", "referrer", referrer)
    props.add("$setOnce", "initial_referrer", referrer)
    domain = _referring_domain(referrer)
    if domain:
        props.add("$set", "referring_domain", domain)
        props.add("$setOnce", "initial_referring_domain", domain)


_DOMAINS: dict[str, str | None] = {}


def _referring_domain(referrer: str) -> str | None:
    domain = _DOMAINS.get(referrer, False)
    if domain is False:
        try:
            domain = urlsplit(referrer).hostname
        except ValueError:
            domain = None
        if len(_DOMAINS) >= 4096:  # a bounded memo: referrers repeat, but not without end
            _DOMAINS.clear()
        _DOMAINS[referrer] = domain
    return domain


def page_search(context: dict) -> str | None:
    """The raw query string map_query_params writes (the whole string, as the doc says)."""
    return text(sub(context, "page").get("search"))
