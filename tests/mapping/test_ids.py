"""user_id / device_id rules (section 17.1) and ids Amplitude would refuse."""

from __future__ import annotations

import pytest

from audsync.errors import ValidationError

from .helpers import ANON, DEVICE, USER, only, track


@pytest.mark.parametrize("prefer, user, anon, device, expected", [
    (False, USER, ANON, DEVICE, (USER, DEVICE)),
    (False, USER, ANON, None, (USER, ANON)),
    (False, None, None, DEVICE, (None, DEVICE)),
    (False, USER, None, None, (USER, None)),
    (True, USER, ANON, DEVICE, (USER, ANON)),
    (True, USER, None, DEVICE, (USER, DEVICE)),
    (True, None, ANON, None, (None, ANON)),
])
def test_device_id_is_context_device_id_else_anonymous_id_flipped_by_prefer_anonymous(prefer, user, anon, device,
                                                                                      expected):
    message = track(userId=user if user else ..., anonymousId=anon if anon else ...)
    if device:
        message["context"] = {"device": {"id": device}}
    body = only(message, prefer_anonymous_id_for_device_id=prefer)
    assert (body.get("user_id"), body.get("device_id")) == expected


def test_numeric_ids_are_sent_as_their_text():
    body = only(track(userId=1234567, anonymousId=98765.0))
    assert (body["user_id"], body["device_id"]) == ("1234567", "98765")


@pytest.mark.parametrize("min_length, user_id, accepted", [
    (5, "abcde", True), (5, "abcd", False), (1, "a", True), (3, "ab", False), (8, "abcdefg", False),
])
def test_ids_shorter_than_min_id_length_are_rejected(min_length, user_id, accepted):
    message = track(userId=user_id, anonymousId=...)
    if accepted:
        assert only(message, min_id_length=min_length)["user_id"] == user_id
    else:
        with pytest.raises(ValidationError, match=r"^userId: .* shorter than min_id_length") as info:
            only(message, min_id_length=min_length)
        assert info.value.field == "userId"


BLOCKED = ["anonymous", "nil", "none", "null", "n/a", "na", "undefined", "unknown", '""',
           "00000000-0000-0000-0000-000000000000", "{}", "lmy47d", "0", "-1"]


@pytest.mark.parametrize("value", BLOCKED + ["NULL", "Undefined", "LMY47D", "Anonymous"])
@pytest.mark.parametrize("field", ["userId", "anonymousId", "context.device.id"])
def test_ids_amplitude_refuses_are_rejected_case_insensitively(value, field):
    message = track()
    if field == "context.device.id":
        message["context"] = {"device": {"id": value}}
    else:
        message[field] = value
    with pytest.raises(ValidationError) as info:
        only(message, min_id_length=1)
    assert info.value.field == field
    assert str(info.value) == f"{field}: {value!r} is a value Amplitude refuses as an id"


@pytest.mark.parametrize("value", [0, -1])
def test_numeric_ids_amplitude_refuses_are_rejected(value):
    with pytest.raises(ValidationError, match="refuses"):
        only(track(userId=value), min_id_length=1)


def test_blocked_values_inside_longer_ids_are_fine():
    assert only(track(userId="null-user-1"))["user_id"] == "null-user-1"


@pytest.mark.parametrize("kind", ["track", "page", "screen", "identify", "group"])
def test_messages_without_any_id_are_rejected(kind):
    message = {"type": kind, "event": "E", "name": "N", "groupId": "g-1", "userId": "", "anonymousId": None}
    with pytest.raises(ValidationError, match=r"^userId: the message has no userId, anonymousId or context.device.id"):
        only(message)
