"""Validation (17.1): every invalid message raises ValidationError whose message names the field."""

from __future__ import annotations

import pytest

from .helpers import ABSENT, message, only, rejected


def assert_names(exc, field: str) -> None:
    assert exc.field == field, (exc.field, str(exc))
    assert field in str(exc), str(exc)


@pytest.mark.parametrize("message", [None, 1, "track", [{"type": "track"}], True, 1.5])
def test_a_message_that_is_not_an_object_is_rejected(message):
    assert_names(rejected(message), "message")


def test_a_message_without_type_is_rejected():
    assert_names(rejected(message("track", type=ABSENT)), "type")


@pytest.mark.parametrize("kind", ["purchase", "", 3, ["track"], {"t": 1}])
def test_an_unknown_type_is_rejected(kind):
    assert_names(rejected(message("track", type=kind)), "type")


@pytest.mark.parametrize("kind", ["track", "page", "screen", "identify", "group"])
def test_a_message_without_a_usable_id_is_rejected(kind):
    exc = rejected(message(kind, name="Home", userId=ABSENT, anonymousId=ABSENT))
    assert "userId" in str(exc) and "anonymousId" in str(exc)


@pytest.mark.parametrize("kind", ["track", "page", "screen", "identify", "group"])
def test_empty_and_null_ids_count_as_missing(kind):
    rejected(message(kind, name="Home", userId="", anonymousId=None, context={"device": {"id": ""}}))


@pytest.mark.parametrize("event", [ABSENT, None, "", "   "])
def test_track_without_event_is_rejected(event):
    assert_names(rejected(message("track", event=event)), "event")


@pytest.mark.parametrize("group_id", [ABSENT, None, ""])
def test_group_without_group_id_is_rejected(group_id):
    assert_names(rejected(message("group", groupId=group_id)), "groupId")


@pytest.mark.parametrize("field", ["properties", "traits", "context", "integrations"])
@pytest.mark.parametrize("value", ["x", 1, [1], True])
def test_non_object_properties_traits_context_or_integrations_are_rejected(field, value):
    assert_names(rejected(message("track", **{field: value})), field)


@pytest.mark.parametrize("field", ["event", "name", "category", "userId", "anonymousId", "messageId"])
@pytest.mark.parametrize("value", [{"a": 1}, ["x"], True])
def test_wrong_typed_event_name_category_or_ids_are_rejected(field, value):
    kind = "page" if field in ("name", "category") else "track"
    assert_names(rejected(message(kind, **{field: value})), field)


@pytest.mark.parametrize("field", ["timestamp", "originalTimestamp"])
@pytest.mark.parametrize("value", ["yesterday", "2024-13-01T00:00:00Z", "01/05/2024", 1714558830, ""])
def test_a_non_iso_timestamp_is_rejected(field, value):
    fields = {field: value}
    if field == "originalTimestamp":
        fields["timestamp"] = ABSENT
    assert_names(rejected(message("track", **fields)), field)


@pytest.mark.parametrize("field", ["userId", "anonymousId"])
def test_ids_shorter_than_min_id_length_are_rejected(field):
    assert_names(rejected(message("identify", **{field: "abcd"})), field)
    assert_names(rejected(message("identify", **{field: "abcdefg"}), min_id_length=8), field)


def test_ids_as_long_as_min_id_length_are_accepted():
    assert only(message("identify", userId="ab", anonymousId=ABSENT), min_id_length=2)["user_id"] == "ab"


def test_a_short_device_id_is_rejected_naming_context_device_id():
    assert_names(rejected(message("track", context={"device": {"id": "abc"}})), "context.device.id")


@pytest.mark.parametrize("value", ["null", "NULL", "Undefined", "anonymous", "NONE", "n/a", "unknown", "nil",
                                   "00000000-0000-0000-0000-000000000000", "LMY47D", "0", "-1", -1, 0])
@pytest.mark.parametrize("field", ["userId", "anonymousId"])
def test_blocked_ids_are_rejected_case_insensitively(field, value):
    assert_names(rejected(message("track", **{field: value}), min_id_length=1), field)


def test_alias_without_enable_alias_is_rejected_even_with_unmap():
    rejected(message("alias", integrations={"Amplitude": {"unmap": "previous-0001"}}))
    rejected(message("alias"))


def test_alias_without_previous_id_or_unmap_is_rejected_naming_previous_id():
    assert_names(rejected(message("alias", previousId=ABSENT), enable_alias=True), "previousId")
