"""Context -> device, app, location and locale fields (section 17.1)."""

from __future__ import annotations

import pytest

from .helpers import only, track

FULL_CONTEXT = {
    "app": {"version": "3.2.1"},
    "os": {"name": "iOS", "version": "17.2"},
    "device": {"model": "iPhone14,2", "brand": "Apple", "manufacturer": "Apple", "type": "ios",
               "advertisingId": "ad-123456"},
    "network": {"carrier": "T-Mobile"},
    "ip": "203.0.113.9",
    "location": {"latitude": 52.5, "longitude": "13.4", "city": "Berlin", "country": "Germany", "region": "BE"},
    "locale": "de-DE",
}


def fields_of(context: dict, **settings) -> dict:
    body = only(track(context=context), **settings)
    return {k: v for k, v in body.items()
            if k not in ("event_type", "user_id", "device_id", "time", "insert_id", "event_properties",
                         "user_properties")}


def test_context_fields_of_a_full_mobile_context():
    assert fields_of(FULL_CONTEXT) == {
        "app_version": "3.2.1", "os_name": "iOS", "os_version": "17.2", "device_model": "iPhone14,2",
        "device_brand": "Apple", "device_manufacturer": "Apple", "carrier": "T-Mobile", "ip": "203.0.113.9",
        "platform": "iOS", "location_lat": 52.5, "location_lng": 13.4, "city": "Berlin", "country": "Germany",
        "region": "BE", "language": "German", "idfa": "ad-123456", "library": "segment",
    }


def test_context_empty_gives_only_the_library():
    assert fields_of({}) == {"library": "segment"}


@pytest.mark.parametrize("context, expected", [
    ({"app": {"version": "2.0"}}, "2.0"),
    ({"app": {"version": 2}}, "2"),
    ({}, "7.7"),
    ({"app": {"version": ""}}, "7.7"),
])
def test_context_app_version_falls_back_to_version_name(context, expected):
    assert fields_of(context, version_name="7.7")["app_version"] == expected


@pytest.mark.parametrize("context, expected", [
    ({"device": {"type": "ios"}}, "iOS"),
    ({"device": {"type": "IOS"}}, "iOS"),
    ({"device": {"type": "android"}}, "Android"),
    ({"device": {"type": "web"}}, "Web"),
    ({"device": {"type": "tvOS"}}, "tvOS"),
    ({"library": {"name": "analytics.js"}}, "Web"),
    ({"library": {"name": "analytics-ios"}}, "iOS"),
    ({"library": {"name": "analytics-android"}}, "Android"),
    ({"library": {"name": "analytics-python"}}, None),
    ({}, None),
])
def test_context_platform_casing(context, expected):
    assert fields_of(context).get("platform") == expected


@pytest.mark.parametrize("os_name, device, expected", [
    ("iOS", {"advertisingId": "ad-1"}, {"idfa": "ad-1"}),
    ("iPhone OS", {"idfa": "legacy-1"}, {"idfa": "legacy-1"}),
    ("Android", {"advertisingId": "ad-2"}, {"adid": "ad-2"}),
    ("Android", {"advertisingId": "ad-2", "idfa": "other"}, {"adid": "ad-2"}),
    ("Windows", {"advertisingId": "ad-3"}, {}),
    (None, {"type": "android", "advertisingId": "ad-4"}, {"adid": "ad-4"}),
])
def test_context_advertising_id_is_idfa_on_ios_or_adid_on_android_never_both(os_name, device, expected):
    context = {"device": device}
    if os_name:
        context["os"] = {"name": os_name}
    got = fields_of(context)
    assert {k: got[k] for k in ("idfa", "adid") if k in got} == expected


@pytest.mark.parametrize("locale, language, country", [
    ("en-US", "English", "United States"),
    ("fr_FR", "French", "France"),
    ("pt-BR", "Portuguese", "Brazil"),
    ("de", "German", None),
    ("xx-YY", "xx-YY", None),
    ("zh-Hant-TW", "Chinese", "Taiwan"),
])
def test_context_language_is_the_display_name_of_the_locale_with_raw_fallback(locale, language, country):
    got = fields_of({"locale": locale})
    assert got["language"] == language
    assert got.get("country") == country


@pytest.mark.parametrize("context, country", [
    ({"locale": "en-US", "location": {"country": "Canada"}}, "Canada"),
    ({"locale": "en-US", "traits": {"address": {"country": "Ireland"}}}, "Ireland"),
    ({"locale": "en-US"}, "United States"),
])
def test_context_country_from_locale_only_without_location_or_address_country(context, country):
    assert fields_of(context)["country"] == country


def test_context_city_country_region_fall_back_to_context_traits_address():
    got = fields_of({"location": {"city": "Paris"},
                     "traits": {"address": {"city": "Nice", "country": "France", "region": "PACA"}}})
    assert (got["city"], got["country"], got["region"]) == ("Paris", "France", "PACA")


@pytest.mark.parametrize("context", [
    {"app": "3.1"}, {"os": ["iOS"]}, {"device": "phone"}, {"location": 5}, {"locale": 12},
    {"network": None}, {"library": {"name": ["x"]}}, {"location": {"latitude": "north", "longitude": True}},
])
def test_context_parts_of_the_wrong_shape_are_ignored(context):
    assert fields_of(context) == {"library": "segment"}


def test_context_fields_do_not_change_with_endpoint_batch_or_secret_settings():
    plain = only(track(context=FULL_CONTEXT))
    assert only(track(context=FULL_CONTEXT), endpoint="eu", send_to_batch_endpoint=True,
                secret_key="s3cret", api_key="k") == plain
