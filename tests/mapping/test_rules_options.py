"""integrations options (17.3, 17.10): session_id, outOfSession, event_id, groups, and the
Amplitude / All switches."""

from __future__ import annotations

import pytest

from audsync.errors import ValidationError

from .helpers import message, only, rejected, run


def amp(**options) -> dict:
    return {"Amplitude": options}


@pytest.mark.parametrize("options, expected", [
    ({"session_id": 1714558830456}, 1714558830456),
    ({"session_id": "1714558830456"}, 1714558830456),
    ({"sessionId": 1714558830456}, 1714558830456),
    ({"sessionId": "1714558830456"}, 1714558830456),
    ({"session_id": " 42 "}, 42),
    ({"session_id": 1714558830456.0}, 1714558830456),
    ({"session_id": "2024-05-01T10:20:30.456Z"}, 1714558830456),
    ({"outOfSession": True}, -1),
    ({"outOfSession": True, "session_id": 5}, -1),
])
@pytest.mark.parametrize("kind", ["track", "page", "screen"])
def test_session_id_option_is_an_integer_and_out_of_session_is_minus_one(kind, options, expected):
    b = run(message(kind, name="Home", integrations=amp(**options)))[0]["body"]
    assert b["session_id"] == expected and type(b["session_id"]) is int


@pytest.mark.parametrize("value", ["soon", True, {"a": 1}, [1], 1.5])
def test_session_id_that_is_not_a_time_is_rejected_naming_the_option(value):
    exc = rejected(message("track", integrations=amp(session_id=value)))
    assert exc.field == "integrations.Amplitude.session_id"
    assert str(exc).startswith("integrations.Amplitude.session_id")


def test_out_of_session_false_leaves_no_session_id():
    assert "session_id" not in only(message("track", integrations=amp(outOfSession=False)))


@pytest.mark.parametrize("value, expected", [(7, 7), ("7", 7), (7.0, 7)])
def test_event_id_option_becomes_the_event_id(value, expected):
    assert only(message("track", integrations=amp(event_id=value)))["event_id"] == expected


def test_event_id_option_that_is_not_a_whole_number_is_rejected():
    assert rejected(message("track", integrations=amp(event_id="seven"))).field == "integrations.Amplitude.event_id"


def test_groups_option_goes_on_events_and_not_into_their_user_properties():
    b = only(message("track", integrations=amp(groups={"org": "acme", "team": ["a", "b"]})))
    assert b["groups"] == {"org": "acme", "team": ["a", "b"]}
    assert "user_properties" not in b


def test_identify_does_not_get_session_or_event_id_options():
    b = only(message("identify", traits={"a": 1}, integrations=amp(session_id=5, event_id=6, groups={"org": "acme"})))
    assert "session_id" not in b and "event_id" not in b
    assert b["groups"] == {"org": "acme"}


@pytest.mark.parametrize("integrations", [
    {"Amplitude": False},
    {"All": False},
    {"All": False, "Segment.io": True},
    {"All": False, "Amplitude": False},
])
@pytest.mark.parametrize("kind", ["track", "page", "identify", "group"])
def test_amplitude_false_or_all_false_drops_the_message(kind, integrations):
    assert run(message(kind, name="Home", integrations=integrations)) == []


@pytest.mark.parametrize("integrations", [
    {"All": False, "Amplitude": True},
    {"All": False, "Amplitude": {"session_id": 5}},
    {"Amplitude": True},
    {"All": True},
    {},
])
@pytest.mark.parametrize("kind", ["track", "identify"])
def test_all_false_with_amplitude_true_still_sends(kind, integrations):
    assert len(run(message(kind, integrations=integrations))) == 1


def test_engage_identify_with_all_false_and_amplitude_true_sends_the_audience_trait():
    b = only(message("identify", traits={"order_completed_last_30days": True},
                 integrations={"All": False, "Amplitude": True}))
    assert b["user_properties"] == {"order_completed_last_30days": True}


def test_options_errors_are_validation_errors():
    assert isinstance(rejected(message("track", integrations=amp(groups="org"))), ValidationError)


def test_event_type_option_does_not_rename_the_event():
    b = only(message("track", event="Song Played", integrations=amp(event_type="Other", eventType="Other")))
    assert b["event_type"] == "Song Played" and "amplitude_event_type" not in b


def test_page_events_get_options_appended_fields_and_event_side_query_params():
    sent = message("page", name="Home", context={"page": {"path": "/home", "search": "?q=1"}},
                   integrations=amp(session_id=9))
    b = only(sent, append_fields_to_event_properties={"context.page.path": "page_path"},
             map_query_params={"q": "event_properties"})
    assert b["session_id"] == 9
    assert b["event_properties"] == {"page_path": "/home", "q": "?q=1", "name": "Home"}
