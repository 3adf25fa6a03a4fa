"""Property tests: no input makes translate raise anything but ValidationError, and whatever it
produces obeys Amplitude's field rules (rules_support.check_operations)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from audsync.config import AmplitudeSettings
from audsync.errors import ValidationError
from audsync.mapping import translate

from .helpers import check_operations

# Values the core reads specially: blocked ids, money strings, numbers at float's edge, ISO times.
TRICKY = st.sampled_from(["0", "-1", "null", "NULL", "$1,000.50", " 12 ", "1e400", "-1e308", "", " ", "NaN",
                          "Infinity", "99999999999999999999999", "2024-01-01T00:00:00+05:30", "2024-13-01",
                          "order completed", "Completed_Order", "Product Purchased", "web", "IOS", "en_gb",
                          "?gclid=&q", "http://[::1", 1e308, -1e308, 2**64, -(2**64), 0, 0.0, -0.5, True])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12) | TRICKY,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
KEYS = ["type", "userId", "anonymousId", "messageId", "timestamp", "originalTimestamp", "event", "name",
        "category", "groupId", "previousId", "properties", "traits", "context", "integrations"]

SETTINGS = [
    AmplitudeSettings(),
    AmplitudeSettings(
        track_all_pages=True, track_all_screens=True, prefer_anonymous_id_for_device_id=True,
        traits_to_increment=("logins", "n"), traits_to_set_once=("first", "n"), traits_to_append=("tags",),
        traits_to_prepend=("recent",), group_type_trait="kind", group_value_trait="name", enable_alias=True,
        track_revenue_per_product=True, track_products_once=True, use_log_revenue_v2=False, track_gclid=True,
        map_query_params={"q": "user_properties", "qe": "event_properties"},
        append_fields_to_event_properties={"context.page.path": "path", "properties.a.b": "ab"},
        version_name="1.0", send_custom_language_and_country=True, min_id_length=1,
    ),
    AmplitudeSettings(track_revenue_per_product=True, track_named_pages=False, min_id_length=8),
]
SETTING = st.sampled_from(SETTINGS)


def _translate_or_reject(message, amplitude: AmplitudeSettings) -> None:
    try:
        operations = translate(message, amplitude)
    except ValidationError as exc:
        assert str(exc).split(":")[0], exc  # the message names a field first
        return
    check_operations(operations, amplitude)


def _skeletons() -> list[dict]:
    context = {
        "device": {"id": "device-0001", "type": "ios", "advertisingId": "ad-1", "model": "x"},
        "os": {"name": "iOS", "version": "17"}, "locale": "en-US", "ip": "1.2.3.4",
        "app": {"version": "3.1"}, "campaign": {"source": "s", "medium": "m", "name": "n"},
        "page": {"search": "?q=1&gclid=abc", "referrer": "https://ref.example/x", "path": "/p",
                 "url": "https://e.example/p?gclid=abc"},
        "traits": {"email": "a@b.c", "address": {"city": "Berlin"}},
        "location": {"city": "Paris", "latitude": 1.5, "longitude": "2.5"},
    }
    common = {"userId": "user-0001", "anonymousId": "anon-0001", "messageId": "mid-0001",
              "timestamp": "2024-01-01T00:00:00Z", "context": context,
              "integrations": {"Amplitude": {"session_id": "123", "groups": {"org": "o-1"}}}}
    return [
        {"type": "track", "event": "Song Played", "properties": {"revenue": "$10", "price": 2, "n": [[1]]}, **common},
        {"type": "track", "event": "Order Completed",
         "properties": {"total": 30, "products": [{"price": 10, "quantity": 2, "productId": "p1"},
                                                  {"name": "free"}]}, **common},
        {"type": "page", "name": "Home", "category": "Docs", "properties": {"path": "/"}, **common},
        {"type": "screen", "name": "Home", "category": "App", "properties": {}, **common},
        {"type": "identify", "traits": {"logins": 1, "first": "x", "tags": ["a"], "recent": "r", "n": 0,
                                        "address": {"country": "DE"}, "kind": "team"}, **common},
        {"type": "group", "groupId": "group-0001", "traits": {"kind": "team", "name": "Red", "size": 3}, **common},
        {"type": "alias", "previousId": "previous-01", **common},
    ]


SKELETONS = _skeletons()


def _replace(skeleton: dict, path: list[str], value):
    """A copy of `skeleton` with the value at `path` (top-level or nested) replaced."""
    copy = dict(skeleton)
    node = copy
    for key in path[:-1]:
        child = node.get(key)
        child = dict(child) if isinstance(child, dict) else {}
        node[key] = child
        node = child
    node[path[-1]] = value
    return copy


PATHS = [[k] for k in KEYS] + [
    ["context", k] for k in ("device", "os", "locale", "app", "campaign", "page", "traits", "location",
                             "library", "ip", "network")
] + [
    ["context", "device", k] for k in ("id", "type", "advertisingId")
] + [
    ["context", "page", k] for k in ("search", "referrer", "url", "path")
] + [
    ["integrations", k] for k in ("Amplitude", "All")
] + [
    ["integrations", "Amplitude", k] for k in ("session_id", "sessionId", "outOfSession", "event_id", "groups",
                                               "unmap", "paying", "start_version")
] + [
    ["properties", k] for k in ("revenue", "total", "price", "quantity", "products", "productId", "revenueType",
                                "name", "category")
] + [
    ["traits", k] for k in ("kind", "name", "logins", "address", "tags")
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=JSON, amplitude=SETTING)
def test_translate_of_any_json_value_raises_only_validation_errors(value, amplitude):
    _translate_or_reject(value, amplitude)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.dictionaries(st.sampled_from(KEYS), JSON, max_size=8), kind=st.sampled_from(
    ["track", "page", "screen", "identify", "group", "alias"]), amplitude=SETTING)
def test_translate_of_any_object_with_a_valid_type_raises_only_validation_errors(value, kind, amplitude):
    _translate_or_reject({**value, "type": kind}, amplitude)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(skeleton=st.sampled_from(SKELETONS), edits=st.lists(st.tuples(st.sampled_from(PATHS), JSON), max_size=3),
       amplitude=SETTING)
def test_near_valid_messages_give_operations_obeying_amplitude_rules_or_a_validation_error(skeleton, edits,
                                                                                            amplitude):
    message = skeleton
    for path, value in edits:
        message = _replace(message, path, value)
    _translate_or_reject(message, amplitude)


def test_valid_skeletons_translate_under_every_fuzzing_setting():
    # Guards the fuzzing above against testing only rejections: every skeleton is valid as written.
    for amplitude in SETTINGS:
        for skeleton in SKELETONS:
            if skeleton["type"] == "alias" and not amplitude.enable_alias:
                continue
            operations = translate(skeleton, amplitude)
            check_operations(operations, amplitude)
            if skeleton["type"] not in ("page", "screen"):
                assert operations, skeleton


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(skeleton=st.sampled_from(SKELETONS), edits=st.lists(st.tuples(st.sampled_from(PATHS), JSON), max_size=3),
       amplitude=SETTING)
def test_translate_never_mutates_its_input_and_gives_the_same_output_twice(skeleton, edits, amplitude):
    message = skeleton
    for path, value in edits:
        message = _replace(message, path, value)
    before = copy.deepcopy(message)
    try:
        first = translate(message, amplitude)
    except ValidationError as exc:
        assert message == before
        with pytest.raises(ValidationError) as again:
            translate(message, amplitude)
        assert str(again.value) == str(exc)
        return
    assert message == before
    assert translate(message, amplitude) == first


def _nested(levels: int, leaf=1):
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


@pytest.mark.parametrize("message", [
    lambda v: {"type": "identify", "userId": "user-12345", "traits": {"x": v}},
    lambda v: {"type": "track", "userId": "user-12345", "event": "E", "properties": {"x": v}},
    lambda v: {"type": "track", "userId": "user-12345", "event": "E", "properties": {"x": [v]}},
    lambda v: {"type": "group", "userId": "user-12345", "groupId": "g1", "traits": {"t": "a", "v": "b", "x": v}},
])
def test_properties_nested_up_to_40_levels_pass_and_deeper_ones_make_the_message_invalid(message):
    settings = AmplitudeSettings(group_type_trait="t", group_value_trait="v")
    assert translate(message(_nested(30)), settings)
    for levels in (40, 300):  # the property object itself is the first level
        with pytest.raises(ValidationError, match="nested more than 40 levels deep"):
            translate(message(_nested(levels)), settings)
