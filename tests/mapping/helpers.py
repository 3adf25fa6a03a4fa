"""Message builders, accessors and checks shared by every mapping test (section 17 rules)."""

from __future__ import annotations

import math
from typing import Any

import orjson

from audsync.config import AmplitudeSettings
from audsync.errors import ValidationError
from audsync.mapping import translate
from audsync.mapping._common import BLOCKED_IDS

USER = "user-0001"
ANON = "anon-0001"
DEVICE = "device-0001"
MID = "mid-0001"
TS = "2024-05-01T10:20:30.456Z"
TS_MS = 1714558830456
ABSENT = ...


def run(message: dict, **settings: Any) -> list[dict]:
    """The operations `message` gives with these settings."""
    return translate(message, AmplitudeSettings(**settings))


def only(message: dict, **settings: Any) -> dict:
    """The body of the one operation `message` must give."""
    out = run(message, **settings)
    assert len(out) == 1, out
    return out[0]["body"]


def message(kind: str, **fields: Any) -> dict:
    """A valid message of `kind`; a field given as ABSENT is left out."""
    base: dict[str, Any] = {"type": kind, "userId": USER, "anonymousId": ANON, "messageId": MID,
                            "timestamp": TS}
    if kind == "track":
        base["event"] = "Button Clicked"
    if kind == "group":
        base["groupId"] = "group-0001"
    if kind == "alias":
        base["previousId"] = "previous-0001"
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ABSENT}


def track(event: str = "Button Clicked", **fields: Any) -> dict:
    return message("track", event=event, **fields)


def as_ops(user_properties: dict | None) -> dict:
    """user_properties as operations: a plain dict means $set (DESIGN.md section 3)."""
    if not user_properties:
        return {}
    if any(k.startswith("$") for k in user_properties):
        return user_properties
    return {"$set": user_properties}


def rejected(message: Any, **settings: Any) -> ValidationError:
    try:
        result = translate(message, AmplitudeSettings(**settings))
    except ValidationError as exc:
        return exc
    raise AssertionError(f"accepted: {result}")


def _no_none(value: Any, where: str) -> None:
    assert value is not None, where
    assert not isinstance(value, float) or math.isfinite(value), f"{where} = {value} (JSON has no such number)"
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str), where
            _no_none(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _no_none(v, f"{where}[{i}]")
            assert not isinstance(v, list), f"{where}[{i}] is an array inside an array"


def check_operations(operations: list[dict], settings: AmplitudeSettings) -> None:
    """Amplitude's field rules for every operation of one message's output."""
    assert isinstance(operations, list)
    orjson.dumps(operations)  # the whole output must serialize
    insert_ids = []
    for op in operations:
        assert set(op) == {"api", "body"}, op
        api, b = op["api"], op["body"]
        assert api in {"event", "identify", "groupidentify", "usermap"}, op
        if api in ("event", "identify"):
            assert "user_id" in b or "device_id" in b, op
            for field in ("user_id", "device_id"):
                if field in b:
                    value = b[field]
                    assert isinstance(value, str) and len(value) >= settings.min_id_length, op
                    assert value.lower() not in BLOCKED_IDS, op
        if api == "event":
            assert isinstance(b["event_type"], str) and b["event_type"], op
            if "time" in b:
                assert type(b["time"]) is int, op
            if "insert_id" in b:
                insert_ids.append(b["insert_id"])
        for field in ("event_properties", "user_properties", "group_properties", "groups"):
            if field in b:
                assert isinstance(b[field], dict), op
                _no_none(b[field], field)
        up = b.get("user_properties")
        if up:
            dollar = [k for k in up if k.startswith("$")]
            assert not dollar or len(dollar) == len(up), f"mixed user_properties: {up}"
            for key in dollar:
                assert isinstance(up[key], dict), up
        for key, value in b.items():
            _no_none(value, key) if not isinstance(value, (dict, list)) else None
            assert value is not None, (key, op)
    assert len(insert_ids) == len(set(insert_ids)), insert_ids
