"""The loopback fake Amplitude refuses what Amplitude documents it refuses, with Amplitude's
status and body, so that end-to-end tests see what a real project would refuse."""

from __future__ import annotations

import json

import httpx
import pytest

API_KEY = "test-api-key-123"


def _deep(levels: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def _event(i: int, **props) -> dict:
    return {"event_type": "Played", "user_id": f"user-{i:04d}", **props}


@pytest.mark.parametrize("refused", [
    {"event_properties": {"grid": [[1, 2], [3]]}},
    {"event_properties": {"deep": {"list": [1, [2]]}}},
    {"user_properties": {"$set": {"grid": [[1]]}}},
    {"event_properties": _deep(41)},
])
def test_an_event_with_properties_amplitude_refuses_is_answered_400_invalid_fields(amplitude, refused):
    body = {"api_key": API_KEY, "events": [_event(1), _event(2, **refused)]}
    answer = httpx.post(amplitude.url + "/2/httpapi", json=body)
    (field,) = refused
    assert answer.status_code == 400
    assert answer.json() == {"code": 400, "error": "Invalid field values on some events",
                             "events_with_invalid_fields": {field: [1]}}
    assert amplitude.events == []


def test_properties_amplitude_accepts_are_ingested(amplitude):
    accepted = {"event_properties": {"list": [1, "a", {"b": [2]}], "deep": _deep(39)}}  # 40 levels
    answer = httpx.post(amplitude.url + "/2/httpapi", json={"api_key": API_KEY, "events": [_event(1, **accepted)]})
    assert answer.status_code == 200 and len(amplitude.events) == 1


def test_an_identification_holding_an_array_of_arrays_is_refused_and_a_null_is_ignored(amplitude):
    def identify(props: dict) -> httpx.Response:
        form = {"api_key": API_KEY, "identification": json.dumps([{"user_id": "user-0001", "user_properties": props}])}
        return httpx.post(amplitude.url + "/identify", data=form)

    refused = identify({"grid": [[1, 2]]})
    assert refused.status_code == 400
    assert refused.json()["events_with_invalid_fields"] == {"user_properties": [0]}
    assert identify({"plan": "gold"}).status_code == 200
    assert identify({"plan": None, "tier": 2}).status_code == 200
    assert amplitude.properties["user-0001"] == {"plan": "gold", "tier": 2}
