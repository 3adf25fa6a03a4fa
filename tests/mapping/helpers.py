"""Message builders and small accessors shared by the mapping tests."""

from __future__ import annotations

from typing import Any

from audsync.config import AmplitudeSettings
from audsync.mapping import translate

USER = "user-12345"
ANON = "anon-67890"
DEVICE = "device-abcde"
MID = "msg-0001"
TS = "2024-03-01T12:00:00.000Z"
TS_MS = 1709294400000


def run(message: dict, **settings: Any) -> list[dict]:
    return translate(message, AmplitudeSettings(**settings))


def only(message: dict, **settings: Any) -> dict:
    """The body of the single operation a message must produce."""
    operations = run(message, **settings)
    assert len(operations) == 1, operations
    return operations[0]["body"]


def message(kind: str, **fields: Any) -> dict:
    base: dict[str, Any] = {"type": kind, "userId": USER, "anonymousId": ANON, "messageId": MID, "timestamp": TS}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def track(event: str = "Song Played", **fields: Any) -> dict:
    return message("track", event=event, **fields)


def as_ops(user_properties: dict | None) -> dict:
    """A plain user_properties dict means $set (DESIGN.md section 3)."""
    if not user_properties:
        return {}
    if any(key.startswith("$") for key in user_properties):
        return user_properties
    return {"$set": user_properties}
