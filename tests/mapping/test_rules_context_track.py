"""Sections 17.1-17.3: context fields, track cleanup, UTM / referrer / gclid, query params,
appended fields, nested arrays and nulls."""

from __future__ import annotations

import json

import pytest

from .helpers import ABSENT, as_ops, message, only, run

MOBILE = {
    "app": {"version": "3.2.1"}, "os": {"name": "iOS", "version": "17.2"},
    "device": {"id": "device-0001", "model": "iPhone14,2", "brand": "Apple", "manufacturer": "Apple",
               "type": "ios", "advertisingId": "ad-0001"},
    "network": {"carrier": "T-Mobile"}, "ip": "203.0.113.9",
    "location": {"latitude": 52.5, "longitude": 13.4, "city": "Berlin", "country": "Germany", "region": "BE"},
    "locale": "fr-FR",
}


def test_context_fields_map_to_amplitude_event_fields():
    b = only(message("track", context=MOBILE))
    assert {k: b[k] for k in ("app_version", "os_name", "os_version", "device_model", "device_brand",
                              "device_manufacturer", "carrier", "ip", "location_lat", "location_lng", "city",
                              "country", "region", "platform", "idfa", "language", "library")} == {
        "app_version": "3.2.1", "os_name": "iOS", "os_version": "17.2", "device_model": "iPhone14,2",
        "device_brand": "Apple", "device_manufacturer": "Apple", "carrier": "T-Mobile", "ip": "203.0.113.9",
        "location_lat": 52.5, "location_lng": 13.4, "city": "Berlin", "country": "Germany", "region": "BE",
        "platform": "iOS", "idfa": "ad-0001", "language": "French", "library": "segment"}
    assert "adid" not in b


@pytest.mark.parametrize("locale, language, country", [
    ("en-US", "English", "United States"),
    ("de-DE", "German", "Germany"),
    ("pt_BR", "Portuguese", "Brazil"),
    ("ja", "Japanese", None),
    ("xx-YY", "xx-YY", None),
])
def test_language_and_country_come_from_the_locale(locale, language, country):
    b = only(message("track", context={"locale": locale}))
    assert b["language"] == language
    assert b.get("country") == country


def test_country_from_locale_yields_to_the_location_country():
    b = only(message("track", context={"locale": "en-US", "location": {"country": "Canada"}}))
    assert b["country"] == "Canada" and b["language"] == "English"


@pytest.mark.parametrize("device_type, library, platform", [
    ("ios", ABSENT, "iOS"), ("IOS", ABSENT, "iOS"), ("android", ABSENT, "Android"), ("ANDROID", ABSENT, "Android"),
    ("web", ABSENT, "Web"), (ABSENT, "analytics.js", "Web"), ("android", "analytics.js", "Android"),
    ("tvos", ABSENT, "tvos"),
])
def test_platform_casing_is_ios_android_web_and_web_for_analytics_js(device_type, library, platform):
    context = {}
    if device_type is not ABSENT:
        context["device"] = {"type": device_type}
    if library is not ABSENT:
        context["library"] = {"name": library}
    assert only(message("track", context=context))["platform"] == platform


@pytest.mark.parametrize("os_name, device, field", [
    ("iOS", {"advertisingId": "ad-1"}, "idfa"),
    ("Android", {"advertisingId": "ad-1"}, "adid"),
    ("iOS", {"idfa": "ad-1"}, "idfa"),
    ("Android", {"idfa": "ad-1"}, "adid"),
    ("Android", {"advertisingId": "ad-1", "idfa": "other"}, "adid"),
])
def test_idfa_on_ios_and_adid_on_android_never_both(os_name, device, field):
    b = only(message("track", context={"os": {"name": os_name}, "device": device}))
    assert b[field] == "ad-1"
    assert ({"idfa", "adid"} - {field}).isdisjoint(b)


def test_app_version_from_context_wins_over_version_name_which_is_the_fallback():
    assert only(message("track", context={"app": {"version": "2.0"}}), version_name="9.9")["app_version"] == "2.0"
    assert only(message("track"), version_name="9.9")["app_version"] == "9.9"
    assert "app_version" not in only(message("track"))


@pytest.mark.parametrize("setting", [{"endpoint": "eu"}, {"send_to_batch_endpoint": True},
                                     {"secret_key": "s3cret", "api_key": "k"}, {"endpoint": "file:/tmp/x"}])
def test_endpoint_batch_and_secret_settings_do_not_change_bodies(setting):
    sent = message("track", context=MOBILE, properties={"a": 1})
    assert run(sent, **setting) == run(sent)


def test_track_event_type_is_the_event():
    assert only(message("track", event="Song Played"))["event_type"] == "Song Played"


def test_track_cleanup_drops_event_id_amplitude_event_type_language_and_country():
    props = {"event_id": 7, "amplitude_event_type": "x", "language": "fr", "country": "FR", "keep": 1}
    assert only(message("track", properties=props))["event_properties"] == {"keep": 1}


def test_track_keeps_language_and_country_with_send_custom_language_and_country():
    props = {"event_id": 7, "amplitude_event_type": "x", "language": "fr", "country": "FR", "keep": 1}
    assert only(message("track", properties=props), send_custom_language_and_country=True)["event_properties"] == {
        "language": "fr", "country": "FR", "keep": 1}


def test_null_values_are_dropped_at_every_depth():
    props = {"a": None, "b": {"c": None, "d": 1}, "e": [1, None, {"f": None}], "g": False, "h": 0}
    assert only(message("track", properties=props))["event_properties"] == {
        "b": {"d": 1}, "e": [1, {}], "g": False, "h": 0}


@pytest.mark.parametrize("where", ["event_properties", "user_properties"])
def test_arrays_holding_arrays_become_compact_json_strings(where):
    nested = {"grid": [[1, 2], ["a", {"b": 3}]], "deep": {"m": [1, [2, 3]]}, "flat": [1, 2]}
    if where == "event_properties":
        got = only(message("track", properties=nested))["event_properties"]
    else:
        got = only(message("identify", traits=nested))["user_properties"]
    assert got["grid"] == '[[1,2],["a",{"b":3}]]' and json.loads(got["grid"]) == nested["grid"]
    assert got["deep"] == {"m": "[1,[2,3]]"}
    assert got["flat"] == [1, 2]


def test_group_properties_holding_arrays_of_arrays_become_json_strings():
    out = run(message("group", traits={"kind": "team", "name": "Red", "m": [[1]]}),
              group_type_trait="kind", group_value_trait="name")
    assert out[1]["body"]["group_properties"]["m"] == "[[1]]"


CAMPAIGN = {"source": "news", "medium": "email", "name": "spring", "term": "shoes", "content": "hero"}
UTM_SET = {"utm_source": "news", "utm_medium": "email", "utm_campaign": "spring", "utm_term": "shoes",
           "utm_content": "hero"}


@pytest.mark.parametrize("kind", ["track", "identify"])
def test_utm_properties_are_set_and_initial_set_once_when_track_utm_properties_is_on(kind):
    up = as_ops(only(message(kind, context={"campaign": CAMPAIGN}))["user_properties"])
    assert up["$set"] == UTM_SET
    assert up["$setOnce"] == {f"initial_{k}": v for k, v in UTM_SET.items()}


def test_utm_properties_are_not_sent_with_track_utm_properties_off():
    assert "user_properties" not in only(message("track", context={"campaign": CAMPAIGN}), track_utm_properties=False)


def test_referrer_on_page_is_set_and_initial_set_once():
    page_context = {"page": {"referrer": "https://www.google.com/search"}}
    up = as_ops(only(message("page", name="Home", context=page_context))["user_properties"])
    assert up["$set"]["referrer"] == "https://www.google.com/search"
    assert up["$setOnce"]["initial_referrer"] == "https://www.google.com/search"
    assert "user_properties" not in only(message("page", name="Home", context=page_context), track_referrer=False)
    assert "user_properties" not in only(message("track", context=page_context))


@pytest.mark.parametrize("page", [{"search": "?a=1&gclid=G-1"}, {"url": "https://x.example/p?gclid=G-1&b=2"}])
def test_gclid_is_set_and_initial_set_once_only_with_track_gclid(page):
    up = as_ops(only(message("track", context={"page": page}), track_gclid=True)["user_properties"])
    assert up["$set"] == {"gclid": "G-1"} and up["$setOnce"] == {"initial_gclid": "G-1"}
    assert "user_properties" not in only(message("track", context={"page": page}))


def test_map_query_params_writes_the_raw_search_on_the_chosen_side_for_every_entry():
    page = {"page": {"search": "?q=shoes&x=1"}}
    settings = {"map_query_params": {"qe": "event_properties", "qu": "user_properties", "qe2": "event_properties"}}
    b = only(message("track", context=page, properties={"a": 1}), **settings)
    assert b["event_properties"] == {"a": 1, "qe": "?q=shoes&x=1", "qe2": "?q=shoes&x=1"}
    assert as_ops(b["user_properties"])["$set"] == {"qu": "?q=shoes&x=1"}


def test_map_query_params_on_identify_always_writes_user_properties():
    b = only(message("identify", context={"page": {"search": "?q=1"}}, traits={"plan": "pro"}),
             map_query_params={"qe": "event_properties", "qu": "user_properties"})
    assert b["user_properties"] == {"plan": "pro", "qe": "?q=1", "qu": "?q=1"}


def test_map_query_params_without_a_search_adds_nothing():
    assert "event_properties" not in only(message("track"), map_query_params={"qe": "event_properties"})


def test_append_fields_to_event_properties_copies_message_paths_and_a_missing_path_adds_nothing():
    sent = message("track", context={"page": {"path": "/shop"}}, properties={"a": 1})
    b = only(sent, append_fields_to_event_properties={"context.page.path": "page_path",
                                                      "context.page.title": "title", "messageId": "mid",
                                                      "properties.a": "a_copy"})
    assert b["event_properties"] == {"a": 1, "page_path": "/shop", "mid": "mid-0001", "a_copy": 1}


def test_context_traits_ride_on_events_as_set_without_the_address():
    b = only(message("track", context={"traits": {"email": "a@b.c", "address": {"city": "Oslo"}}}))
    assert b["user_properties"] == {"email": "a@b.c"}
