"""Rejected messages (issue 2 point 4): a ValidationError naming the field, nothing else."""

from __future__ import annotations

import pytest

from audsync.errors import ValidationError

from .helpers import run, track

CASES = [
    ("not an object: list", [1, 2], "message"),
    ("not an object: string", "track", "message"),
    ("not an object: null", None, "message"),
    ("no type", {"userId": "user-12345", "event": "E"}, "type"),
    ("unknown type", {"type": "purchase", "userId": "user-12345"}, "type"),
    ("type not a string", {"type": 3, "userId": "user-12345"}, "type"),
    ("track without event", {"type": "track", "userId": "user-12345"}, "event"),
    ("track with empty event", {"type": "track", "userId": "user-12345", "event": "  "}, "event"),
    ("event is an object", {"type": "track", "userId": "user-12345", "event": {"name": "x"}}, "event"),
    ("event is a boolean", {"type": "track", "userId": "user-12345", "event": True}, "event"),
    ("name is a list", {"type": "page", "userId": "user-12345", "name": ["x"]}, "name"),
    ("category is an object", {"type": "page", "userId": "user-12345", "category": {}}, "category"),
    ("properties a list", {"type": "track", "userId": "user-12345", "event": "E", "properties": [1]}, "properties"),
    ("traits a string", {"type": "identify", "userId": "user-12345", "traits": "vip"}, "traits"),
    ("context a number", {"type": "track", "userId": "user-12345", "event": "E", "context": 1}, "context"),
    ("integrations a list", {"type": "track", "userId": "user-12345", "event": "E", "integrations": []},
     "integrations"),
    ("userId an object", {"type": "track", "userId": {"id": 1}, "event": "E"}, "userId"),
    ("anonymousId a list", {"type": "track", "anonymousId": ["a"], "event": "E"}, "anonymousId"),
    ("userId a boolean", {"type": "identify", "userId": True}, "userId"),
    ("messageId an object", {"type": "track", "userId": "user-12345", "event": "E", "messageId": {}}, "messageId"),
    ("timestamp not ISO", {"type": "track", "userId": "user-12345", "event": "E", "timestamp": "yesterday"},
     "timestamp"),
    ("timestamp a number", {"type": "track", "userId": "user-12345", "event": "E", "timestamp": 1700000000},
     "timestamp"),
    ("originalTimestamp not ISO", {"type": "track", "userId": "user-12345", "event": "E",
                                   "originalTimestamp": "2024-13-45"}, "originalTimestamp"),
    ("group without groupId", {"type": "group", "userId": "user-12345"}, "groupId"),
    ("groupId an object", {"type": "group", "userId": "user-12345", "groupId": {}}, "groupId"),
    ("blocked userId", {"type": "identify", "userId": "null"}, "userId"),
    ("short userId", {"type": "identify", "userId": "abc"}, "userId"),
    ("products not a list", {"type": "track", "userId": "user-12345", "event": "Order Completed",
                             "properties": {"products": {"a": 1}}}, "properties.products"),
    ("product not an object", {"type": "track", "userId": "user-12345", "event": "Order Completed",
                               "properties": {"products": ["shoe"]}}, "properties.products[0]"),
    ("no id at all", {"type": "track", "event": "E"}, "userId"),
    ("alias without enable_alias", {"type": "alias", "userId": "user-12345", "previousId": "old-12345"}, "type"),
]


@pytest.mark.parametrize("message, field", [(m, f) for _, m, f in CASES], ids=[c[0] for c in CASES])
def test_invalid_messages_raise_validation_error_naming_the_field(message, field):
    with pytest.raises(ValidationError) as info:
        run(message)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_blocked_user_id_message_says_amplitude_refuses_it():
    with pytest.raises(ValidationError, match=r"^userId: 'null' is a value Amplitude refuses as an id$"):
        run({"type": "identify", "userId": "null"})


@pytest.mark.parametrize("kind", ["Track", "IDENTIFY"])
def test_type_is_matched_case_insensitively(kind):
    assert len(run({"type": kind, "userId": "user-12345", "event": "E"})) == 1


@pytest.mark.parametrize("timestamp, ms", [
    ("2024-03-01T12:00:00Z", 1709294400000),
    ("2024-03-01T12:00:00.123Z", 1709294400123),
    ("2024-03-01T12:00:00.123456789Z", 1709294400123),
    ("2024-03-01T14:00:00+02:00", 1709294400000),
    ("2024-03-01T07:00:00-05:00", 1709294400000),
    ("2024-03-01T12:00:00+0000", 1709294400000),
    ("2024-03-01t12:00:00z", 1709294400000),
    ("2024-03-01T12:00:00", 1709294400000),
    ("1969-12-31T23:59:59.999Z", -1),
])
def test_iso_8601_timestamps_with_any_offset_become_integer_ms(timestamp, ms):
    body = run(track(timestamp=timestamp))[0]["body"]
    assert body["time"] == ms and isinstance(body["time"], int)


def test_original_timestamp_is_the_fallback_and_no_timestamp_means_no_time():
    assert run(track(timestamp=..., originalTimestamp="2024-03-01T12:00:00Z"))[0]["body"]["time"] == 1709294400000
    assert "time" not in run(track(timestamp=...))[0]["body"]


@pytest.mark.parametrize("fields", [{"properties": None}, {"context": None}, {"integrations": None},
                                    {"traits": None}])
def test_null_objects_count_as_absent(fields):
    assert len(run(track(**fields))) == 1


def test_deeply_nested_properties_are_a_validation_error_not_a_crash():
    deep: list = []
    node = deep
    for _ in range(5000):
        node.append([])
        node = node[0]
    nested: dict = {}
    node2 = nested
    for _ in range(5000):
        node2["a"] = {}
        node2 = node2["a"]
    for value in (deep, nested):
        try:
            run(track(properties={"deep": value}))
        except ValidationError as exc:  # objects: Amplitude's 40 levels; arrays of arrays: Python's recursion
            assert exc.field in ("message", "properties")
