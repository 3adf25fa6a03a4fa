"""integrations.Amplitude options and integrations filtering (sections 17.3, 17.10)."""

from __future__ import annotations

import pytest

from audsync.errors import ValidationError

from .helpers import message, only, run, track


def amplitude(**options) -> dict:
    return {"Amplitude": options}


@pytest.mark.parametrize("options, expected", [
    ({"session_id": 1577871000000}, 1577871000000),
    ({"session_id": "1577871000000"}, 1577871000000),
    ({"session_id": " 1577871000 "}, 1577871000),
    ({"sessionId": 1577871000000}, 1577871000000),
    ({"session_id": 1577871000000.0}, 1577871000000),
    ({"session_id": "2020-01-01T09:30:00Z"}, 1577871000000),
    ({"session_id": 1577871000000, "outOfSession": True}, -1),
    ({"outOfSession": True}, -1),
    ({"outOfSession": False}, None),
    ({}, None),
])
def test_session_id_option_is_an_integer_and_out_of_session_is_minus_one(options, expected):
    assert only(track(integrations=amplitude(**options))).get("session_id") == expected


@pytest.mark.parametrize("value", ["soon", True, 1.5, {"id": 1}, ["1"]])
def test_session_id_option_that_is_no_time_is_rejected_naming_the_option(value):
    with pytest.raises(ValidationError, match=r"^integrations\.Amplitude\.session_id: ") as info:
        run(track(integrations=amplitude(session_id=value)))
    assert info.value.field == "integrations.Amplitude.session_id"


@pytest.mark.parametrize("kind, fields", [("page", {"name": "Home"}), ("screen", {"name": "Home"})])
def test_session_id_option_applies_to_page_and_screen_events(kind, fields):
    operations = run(message(kind, integrations=amplitude(session_id=42), **fields))
    assert operations[0]["body"]["session_id"] == 42


@pytest.mark.parametrize("options, expected", [
    ({"event_id": 7}, 7), ({"event_id": "7"}, 7), ({"eventId": 8}, 8), ({}, None),
])
def test_event_id_option_becomes_the_event_id(options, expected):
    assert only(track(integrations=amplitude(**options))).get("event_id") == expected


@pytest.mark.parametrize("value", ["seven", True, 1.5, [1]])
def test_event_id_option_that_is_not_a_whole_number_is_rejected(value):
    with pytest.raises(ValidationError, match=r"^integrations\.Amplitude\.event_id: "):
        run(track(integrations=amplitude(event_id=value)))


def test_event_type_option_does_not_rename_the_event():
    assert only(track("Played", integrations=amplitude(event_type="Other")))["event_type"] == "Played"


def test_groups_option_sets_event_groups_and_not_user_properties():
    body = only(track(integrations=amplitude(groups={"company": "acme", "team": ["a", "b"], "none": None})))
    assert body["groups"] == {"company": "acme", "team": ["a", "b"]}
    assert "user_properties" not in body


@pytest.mark.parametrize("groups, field", [
    ("acme", "integrations.Amplitude.groups"),
    ({"company": {"id": 1}}, "integrations.Amplitude.groups.company"),
])
def test_groups_option_of_the_wrong_shape_is_rejected(groups, field):
    with pytest.raises(ValidationError) as info:
        run(track(integrations=amplitude(groups=groups)))
    assert info.value.field == field


@pytest.mark.parametrize("integrations", [
    {"Amplitude": False},
    {"All": False},
    {"All": False, "Amplitude": False},
    {"All": False, "Mixpanel": True},
])
@pytest.mark.parametrize("kind", ["track", "identify", "page", "group"])
def test_messages_not_meant_for_amplitude_are_dropped(integrations, kind):
    assert run(message(kind, event="E", name="N", groupId="g-1", integrations=integrations)) == []


@pytest.mark.parametrize("integrations", [
    {"All": False, "Amplitude": True},
    {"All": False, "Amplitude": {}},
    {"All": False, "Amplitude": {"session_id": 5}},
    {"All": True},
    {"Amplitude": True},
    {"Mixpanel": False},
    {},
])
def test_messages_enabled_for_amplitude_are_sent(integrations):
    assert len(run(track(integrations=integrations))) == 1
