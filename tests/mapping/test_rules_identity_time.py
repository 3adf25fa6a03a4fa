"""Section 17.1: user_id / device_id, time in ms, insert_id."""

from __future__ import annotations

import pytest

from .helpers import ABSENT, ANON, DEVICE, MID, TS_MS, USER, message, only, run

CALLS = ["track", "page", "screen", "identify", "group"]


@pytest.mark.parametrize("kind", CALLS)
@pytest.mark.parametrize("prefer, anonymous_id, device, expected", [
    (False, ANON, DEVICE, DEVICE),
    (False, ANON, ABSENT, ANON),
    (False, ABSENT, DEVICE, DEVICE),
    (True, ANON, DEVICE, ANON),
    (True, ABSENT, DEVICE, DEVICE),
    (True, ANON, ABSENT, ANON),
])
def test_device_id_prefers_anonymous_id_when_setting_is_on(kind, prefer, anonymous_id, device, expected):
    context = {"device": {"id": device}} if device is not ABSENT else {}
    b = run(message(kind, name="Home", anonymousId=anonymous_id, context=context),
            prefer_anonymous_id_for_device_id=prefer)[0]["body"]
    assert b["device_id"] == expected
    assert b["user_id"] == USER


@pytest.mark.parametrize("kind", CALLS)
def test_user_id_is_the_user_id_and_absent_without_one(kind):
    b = run(message(kind, name="Home", userId=ABSENT))[0]["body"]
    assert "user_id" not in b and b["device_id"] == ANON
    b = run(message(kind, name="Home", anonymousId=ABSENT))[0]["body"]
    assert b["user_id"] == USER and "device_id" not in b


@pytest.mark.parametrize("timestamp, expected", [
    ("2024-05-01T10:20:30.456Z", TS_MS),
    ("2024-05-01T10:20:30.456+00:00", TS_MS),
    ("2024-05-01T12:20:30.456+02:00", TS_MS),
    ("2024-05-01T05:50:30.456-04:30", TS_MS),
    ("2024-05-01T10:20:30Z", TS_MS - 456),
    ("2024-05-01T10:20:30.456789Z", TS_MS),
    ("1970-01-01T00:00:00Z", 0),
    ("1969-12-31T23:59:59.999Z", -1),
    ("2024-05-01T12:20:30.456+0200", TS_MS),
    ("2024-05-01T12:20:30.456+02", TS_MS),
    ("2024-05-01t10:20:30.456z", TS_MS),
    ("2024-05-01 10:20:30.456Z", TS_MS),
    ("2024-05-01T10:20:30.4567891Z", TS_MS),
    ("2024-05-01T10:20:30.456", TS_MS),  # no offset means UTC
    ("2024-05-01", TS_MS - (10 * 3600 + 20 * 60 + 30) * 1000 - 456),
])
def test_time_is_the_timestamp_in_integer_ms_whatever_its_offset(timestamp, expected):
    b = only(message("track", timestamp=timestamp))
    assert b["time"] == expected and type(b["time"]) is int


def test_time_falls_back_to_original_timestamp():
    assert only(message("track", timestamp=ABSENT, originalTimestamp="2024-05-01T10:20:30.456Z"))["time"] == TS_MS


def test_time_prefers_timestamp_over_original_timestamp():
    b = only(message("track", originalTimestamp="2020-01-01T00:00:00Z"))
    assert b["time"] == TS_MS


@pytest.mark.parametrize("kind", ["track", "page", "screen"])
def test_no_timestamp_gives_no_time(kind):
    b = run(message(kind, name="Home", timestamp=ABSENT))[0]["body"]
    assert "time" not in b


@pytest.mark.parametrize("kind", ["track", "page", "screen"])
def test_insert_id_is_the_bare_message_id_on_single_events(kind):
    assert run(message(kind, name="Home"))[0]["body"]["insert_id"] == MID


def test_insert_id_is_the_bare_message_id_on_order_completed_and_message_id_n_on_product_purchased():
    products = [{"productId": f"p{i}", "price": 1} for i in range(3)]
    out = run(message("track", event="Order Completed", properties={"revenue": 3, "products": products}))
    assert [o["body"]["insert_id"] for o in out] == [MID, f"{MID}-1", f"{MID}-2", f"{MID}-3"]


@pytest.mark.parametrize("kind", ["page", "screen"])
def test_insert_ids_are_distinct_on_multi_page_events_and_the_first_is_the_message_id(kind):
    out = run(message(kind, name="Signup", category="Docs"), track_all_pages=True, track_all_screens=True)
    ids = [o["body"]["insert_id"] for o in out]
    assert len(out) == 3 and ids[0] == MID and len(set(ids)) == 3
    # Deterministic: the same message gives the same ids again (Amplitude's dedup relies on it).
    again = run(message(kind, name="Signup", category="Docs"), track_all_pages=True, track_all_screens=True)
    assert [o["body"]["insert_id"] for o in again] == ids


def test_no_message_id_gives_no_insert_id():
    assert "insert_id" not in only(message("track", messageId=ABSENT))


@pytest.mark.parametrize("kind", ["identify", "group"])
def test_identifications_carry_no_insert_id_or_time_fields_of_events(kind):
    b = run(message(kind))[0]["body"]
    assert "insert_id" not in b and "event_type" not in b and "session_id" not in b
