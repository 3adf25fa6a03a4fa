"""Track calls (section 17.3): event name, property cleanup, user properties from the context."""

from __future__ import annotations

import pytest

from .helpers import ANON, MID, TS_MS, USER, only, run, track


def test_track_is_one_event_named_after_the_event_with_ids_time_and_insert_id():
    body = only(track("Song Played", properties={"genre": "jazz"}))
    assert body["event_type"] == "Song Played"
    assert body["user_id"] == USER
    assert body["device_id"] == ANON
    assert body["time"] == TS_MS
    assert body["insert_id"] == MID
    assert body["event_properties"] == {"genre": "jazz"}
    assert body["library"] == "segment"


def test_track_operation_is_an_event_api_operation():
    assert [op["api"] for op in run(track())] == ["event"]


def test_track_without_message_id_has_no_insert_id():
    assert "insert_id" not in only(track(messageId=...))


def test_track_with_a_numeric_event_name_uses_its_text():
    assert only(track(7))["event_type"] == "7"


@pytest.mark.parametrize("key", ["event_id", "amplitude_event_type"])
def test_track_properties_never_carry_event_id_or_amplitude_event_type(key):
    body = only(track(properties={key: 12, "kept": 1}))
    assert body["event_properties"] == {"kept": 1}


@pytest.mark.parametrize("send_custom, expected", [
    (False, {"kept": 1}),
    (True, {"kept": 1, "language": "fr", "country": "FR"}),
])
def test_track_language_and_country_properties_ride_only_with_send_custom_language_and_country(send_custom, expected):
    body = only(track(properties={"kept": 1, "language": "fr", "country": "FR"}),
                send_custom_language_and_country=send_custom)
    assert body["event_properties"] == expected


def test_track_false_and_zero_properties_are_values_and_are_kept():
    body = only(track(properties={"a": False, "b": 0, "c": "", "d": 0.0}))
    assert body["event_properties"] == {"a": False, "b": 0, "c": "", "d": 0.0}


def test_track_null_properties_are_dropped_at_every_depth():
    body = only(track(properties={"a": None, "b": {"c": None, "d": 1}, "e": [1, None, {"f": None}]}))
    assert body["event_properties"] == {"b": {"d": 1}, "e": [1, {}]}


@pytest.mark.parametrize("value, sent", [
    ([[1, 2], [3]], "[[1,2],[3]]"),
    ([{"k": "v"}, ["x", None]], '[{"k":"v"},["x",null]]'),
    (["é", ["ü"]], '["é",["ü"]]'),
])
def test_track_array_holding_arrays_is_sent_as_its_compact_json_string(value, sent):
    body = only(track(properties={"matrix": value, "deep": {"inner": value}}))
    assert body["event_properties"] == {"matrix": sent, "deep": {"inner": sent}}


def test_track_flat_arrays_stay_arrays():
    assert only(track(properties={"tags": ["a", "b"]}))["event_properties"] == {"tags": ["a", "b"]}


def test_track_does_not_mutate_the_message():
    properties = {"a": None, "event_id": 3, "nested": {"x": None}}
    message = track(properties=properties)
    run(message)
    assert properties == {"a": None, "event_id": 3, "nested": {"x": None}}


def test_track_without_properties_has_no_event_properties():
    assert "event_properties" not in only(track())


def test_track_carries_context_traits_as_set_without_address():
    body = only(track(context={"traits": {"email": "a@b.co", "address": {"city": "Oslo"}, "gone": None}}))
    assert body["user_properties"] == {"email": "a@b.co"}


def test_track_carries_utm_campaign_as_set_and_initial_set_once():
    body = only(track(context={"campaign": {"source": "news", "medium": "email", "name": "spring",
                                            "term": "shoes", "content": "banner"}}))
    assert body["user_properties"] == {
        "$set": {"utm_source": "news", "utm_medium": "email", "utm_campaign": "spring",
                 "utm_term": "shoes", "utm_content": "banner"},
        "$setOnce": {"initial_utm_source": "news", "initial_utm_medium": "email",
                     "initial_utm_campaign": "spring", "initial_utm_term": "shoes",
                     "initial_utm_content": "banner"},
    }


def test_track_utm_is_not_sent_with_track_utm_properties_off():
    body = only(track(context={"campaign": {"source": "news"}}), track_utm_properties=False)
    assert "user_properties" not in body


def test_track_context_traits_go_under_set_when_utm_operations_are_present():
    body = only(track(context={"traits": {"plan": "pro"}, "campaign": {"source": "news"}}))
    assert body["user_properties"] == {"$set": {"plan": "pro", "utm_source": "news"},
                                       "$setOnce": {"initial_utm_source": "news"}}


@pytest.mark.parametrize("page, expected", [
    ({"search": "?gclid=abc123&x=1"}, "abc123"),
    ({"url": "https://shop.example/?gclid=fromurl"}, "fromurl"),
    ({"search": "?x=1"}, None),
])
def test_track_gclid_from_the_page_query_with_track_gclid(page, expected):
    body = only(track(context={"page": page}), track_gclid=True)
    if expected is None:
        assert "user_properties" not in body
    else:
        assert body["user_properties"] == {"$set": {"gclid": expected}, "$setOnce": {"initial_gclid": expected}}


def test_track_gclid_is_ignored_with_track_gclid_off():
    assert "user_properties" not in only(track(context={"page": {"search": "?gclid=abc"}}))


def test_track_map_query_params_writes_every_entry_on_its_side():
    body = only(track(context={"page": {"search": "?q=shoes"}}),
                map_query_params={"qp_event": "event_properties", "qp_user": "user_properties",
                                  "qp_event2": "event_properties"})
    assert body["event_properties"] == {"qp_event": "?q=shoes", "qp_event2": "?q=shoes"}
    assert body["user_properties"] == {"qp_user": "?q=shoes"}


def test_track_map_query_params_without_a_query_string_adds_nothing():
    body = only(track(), map_query_params={"qp": "event_properties", "qu": "user_properties"})
    assert "event_properties" not in body and "user_properties" not in body


@pytest.mark.parametrize("path, name, expected", [
    ("context.page.path", "page_path", {"page_path": "/docs"}),
    ("context.app.build", "build", {"build": 0}),
    ("context.missing.path", "nothing", {}),
    ("context.page.path.deeper", "nothing", {}),
    ("userId", "uid", {"uid": USER}),
    ("context.flag", "flag", {"flag": False}),
])
def test_track_append_fields_to_event_properties_follows_the_dotted_path(path, name, expected):
    body = only(track(context={"page": {"path": "/docs"}, "app": {"build": 0}, "flag": False}),
                append_fields_to_event_properties={path: name})
    assert body.get("event_properties", {}) == expected


def test_track_event_level_fields_are_not_user_properties():
    body = only(track(properties={"a": 1}))
    assert "user_properties" not in body


def test_track_numbers_json_cannot_carry_are_made_sendable():
    body = only(track(properties={"big": 2**70, "huge": 10**400, "nan": float("nan"), "inf": float("inf"),
                                  "ok": 2**63, "list": [float("nan"), 1]}))
    assert body["event_properties"] == {"big": float(2**70), "huge": str(10**400), "ok": 2**63, "list": [1]}
