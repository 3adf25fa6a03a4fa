"""Property tests: no input raises anything but ValidationError, and every operation produced
satisfies Amplitude's field rules (amplitude-api.md sections 2 and 6)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
from hypothesis import HealthCheck, given, settings, strategies as st

from audsync.config import AmplitudeSettings
from audsync.errors import ValidationError
from audsync.mapping import translate
from audsync.mapping._common import BLOCKED_IDS

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=12)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)

NAMES = ["$set", "$add", "plan", "logins", "email", "address", "kind", "org", "revenue", "price", "quantity", "total",
         "products", "productId", "revenueType", "event_id", "language", "country", "name", "category", "tags"]
ids = st.sampled_from(["user-12345", "anon-67890", "device-abcde", "abc", "x", "", "NULL", "none", "-1", "0",
                       "00000000-0000-0000-0000-000000000000", "user-2"]) | st.integers(-5, 10**8) \
    | st.text(min_size=1, max_size=10) | json_values
small_json = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=5), inner, max_size=3),
                          max_leaves=8)
products = st.lists(st.dictionaries(st.sampled_from(["price", "quantity", "productId", "product_id", "sku", "name",
                                                     "revenueType", "category"]),
                                    st.integers(-3, 100) | st.text(max_size=5) | st.none() | st.floats(-10, 100)),
                    max_size=4)
properties = st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=6), small_json, max_size=6) \
    | st.fixed_dictionaries({"revenue": st.integers(-5, 500) | st.text(max_size=6), "products": products})
timestamps = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                          timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=5, minutes=30)),
                                                     timezone(timedelta(hours=-8))])).map(lambda d: d.isoformat()) \
    | st.sampled_from(["2024-03-01T12:00:00Z", "not a time", "", "2024-02-30T00:00:00Z"]) | json_values
page = st.fixed_dictionaries({}, optional={
    "search": st.sampled_from(["?q=1", "?gclid=abc&x=1", "", "gclid"]) | json_values,
    "referrer": st.sampled_from(["https://a.example/x", "http://[bad", "not a url"]) | json_values,
    "url": st.sampled_from(["https://b.example/?gclid=u1", "http://[::1"]) | json_values,
    "path": st.text(max_size=5) | json_values})
context = st.fixed_dictionaries({}, optional={
    "app": st.fixed_dictionaries({}, optional={"version": json_scalars}) | json_values,
    "os": st.fixed_dictionaries({}, optional={"name": st.sampled_from(["iOS", "Android", "Mac"]) | json_scalars,
                                              "version": json_scalars}),
    "device": st.fixed_dictionaries({}, optional={"id": ids, "type": json_scalars | st.sampled_from(["ios", "web"]),
                                                  "advertisingId": json_scalars, "model": json_scalars}) | json_values,
    "locale": st.sampled_from(["en-US", "de", "xx-YY", "zh-Hant-TW", "", "-"]) | json_values,
    "campaign": st.dictionaries(st.sampled_from(["source", "medium", "name", "term", "content"]), json_scalars)
    | json_values,
    "page": page | json_values,
    "traits": st.dictionaries(st.sampled_from(NAMES), small_json, max_size=4) | json_values,
    "location": st.fixed_dictionaries({}, optional={"latitude": json_scalars, "longitude": json_scalars,
                                                    "country": json_scalars, "city": json_scalars}),
    "library": st.fixed_dictionaries({"name": st.sampled_from(["analytics.js", "analytics-ios"]) | json_scalars}),
    "ip": json_scalars,
}) | json_values
options = st.fixed_dictionaries({}, optional={
    "session_id": st.integers(-1, 2**40) | st.sampled_from(["123", "2024-01-01T00:00:00Z", "x"]) | json_values,
    "sessionId": json_scalars, "outOfSession": st.booleans() | json_scalars,
    "event_id": st.integers(0, 99) | json_values, "groups": st.dictionaries(st.text(max_size=4), json_values)
    | json_values, "unmap": ids | st.booleans(), "paying": json_scalars, "start_version": json_scalars})
integrations = st.one_of(st.just({}), st.fixed_dictionaries({"Amplitude": options}),
                         st.fixed_dictionaries({}, optional={"All": st.booleans(), "Amplitude": st.booleans() | options}),
                         json_values)
messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["track", "page", "screen", "identify", "group", "alias", "Track", "purchase"])},
    optional={
        "userId": ids, "anonymousId": ids, "previousId": ids, "messageId": st.text(max_size=8) | json_scalars,
        "event": st.sampled_from(["Order Completed", "Completed Order", "Product Purchased", "Played", ""])
        | json_scalars,
        "name": st.text(max_size=6) | json_scalars, "category": st.text(max_size=6) | json_scalars,
        "groupId": ids, "timestamp": timestamps, "originalTimestamp": timestamps,
        "properties": properties | json_values, "traits": st.dictionaries(st.sampled_from(NAMES), small_json,
                                                                          max_size=5) | json_values,
        "context": context, "integrations": integrations,
    })

trait_lists = st.lists(st.sampled_from(NAMES), max_size=3).map(tuple)
amplitude_settings = st.builds(
    AmplitudeSettings,
    track_named_pages=st.booleans(), track_categorized_pages=st.booleans(), track_all_pages=st.booleans(),
    track_all_screens=st.booleans(), prefer_anonymous_id_for_device_id=st.booleans(),
    traits_to_increment=trait_lists, traits_to_set_once=trait_lists, traits_to_append=trait_lists,
    traits_to_prepend=trait_lists, group_type_trait=st.sampled_from(["", "kind"]),
    group_value_trait=st.sampled_from(["", "org"]), enable_alias=st.booleans(),
    track_revenue_per_product=st.booleans(), track_products_once=st.booleans(), use_log_revenue_v2=st.booleans(),
    track_utm_properties=st.booleans(), track_referrer=st.booleans(), track_gclid=st.booleans(),
    map_query_params=st.dictionaries(st.sampled_from(["qa", "qb", "plan"]),
                                     st.sampled_from(["user_properties", "event_properties"]), max_size=2),
    append_fields_to_event_properties=st.dictionaries(
        st.sampled_from(["context.page.path", "context.app.version", "userId", "properties", "context.nope.x"]),
        st.sampled_from(["p1", "p2", "plan"]), max_size=2),
    version_name=st.sampled_from(["", "1.0"]), send_custom_language_and_country=st.booleans(),
    min_id_length=st.integers(1, 6))


def _translate_or_reject(message, amplitude: AmplitudeSettings):
    try:
        return translate(message, amplitude)
    except ValidationError as exc:
        assert str(exc)
        return None


@FAST
@given(json_values, amplitude_settings)
def test_arbitrary_json_values_never_raise_anything_but_validation_error(value, amplitude):
    _translate_or_reject(value, amplitude)


@FAST
@given(messages, amplitude_settings)
def test_near_valid_messages_never_raise_anything_but_validation_error(message, amplitude):
    _translate_or_reject(message, amplitude)


def _no_null_no_nested_arrays(value, where: str) -> None:
    assert value is not None, f"null in {where}"
    if isinstance(value, dict):
        for key, item in value.items():
            _no_null_no_nested_arrays(item, f"{where}.{key}")
    elif isinstance(value, list):
        for item in value:
            assert not isinstance(item, list), f"array holding an array in {where}"
            _no_null_no_nested_arrays(item, f"{where}[]")


def _valid_id(value, minimum: int) -> None:
    assert isinstance(value, str) and len(value) >= minimum and value.lower() not in BLOCKED_IDS, value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages, amplitude_settings)
def test_every_operation_satisfies_amplitudes_field_rules(message, amplitude):
    operations = _translate_or_reject(message, amplitude)
    if not operations:
        return
    orjson.dumps(operations)  # what `audsync translate` writes must serialize
    insert_ids = []
    for operation in operations:
        assert set(operation) == {"api", "body"}
        api, body = operation["api"], operation["body"]
        assert api in ("event", "identify", "groupidentify", "usermap")
        if api in ("event", "identify"):
            assert "user_id" in body or "device_id" in body
            for field in ("user_id", "device_id"):
                if field in body:
                    _valid_id(body[field], amplitude.min_id_length)
        if api == "event":
            assert isinstance(body["event_type"], str) and body["event_type"].strip()
            if "time" in body:
                assert type(body["time"]) is int
            for field in ("session_id", "event_id", "quantity"):
                if field in body:
                    assert type(body[field]) is int
            for field in ("revenue", "price"):
                if field in body:
                    assert type(body[field]) is float
            if "insert_id" in body:
                insert_ids.append(body["insert_id"])
        if api == "usermap":
            _valid_id(body["user_id"], amplitude.min_id_length)
            if "global_user_id" in body:
                _valid_id(body["global_user_id"], amplitude.min_id_length)
        if api == "groupidentify":
            assert isinstance(body["group_type"], str) and body["group_type"]
            assert isinstance(body["group_value"], str) and body["group_value"]
        for field in ("event_properties", "user_properties", "group_properties", "groups"):
            if field in body:
                assert isinstance(body[field], dict)
                _no_null_no_nested_arrays(body[field], field)
        user_properties = body.get("user_properties")
        if user_properties:
            operators = [key.startswith("$") for key in user_properties]
            assert all(operators) or not any(operators), user_properties
            if all(operators):
                claimed = [key for op in user_properties.values() for key in op]
                assert len(claimed) == len(set(claimed)), user_properties
        for value in body.values():
            assert value is not None
    assert len(insert_ids) == len(set(insert_ids))
