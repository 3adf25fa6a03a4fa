"""What `audsync serve` accepts: request bodies -> normalised Segment messages and rejections.

Pure: no I/O and no clock (the caller passes the arrival time), so every rule here is tested
without a server. Request-level problems (a body that is not JSON, over a size limit, a batch that
is not a list) are RequestErrors: 400 and nothing stored. Problems with one message of a batch are
rejections with the message's index and reason; the other messages are still accepted
(DESIGN.md section 6).
"""

from __future__ import annotations

import dataclasses
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from ..config import AmplitudeSettings
from ..errors import ValidationError
from ..mapping import CALL_TYPES, translate
from ..mapping._common import iso_ms, shown, type_name

# Segment's documented limits (reference section 4): per message, and per request once decompressed.
MAX_MESSAGE_BYTES = 32 * 1024
MAX_REQUEST_BYTES = 500 * 1024

# Path segment -> call type; None for the batch endpoints.
ENDPOINTS: dict[str, str | None] = {
    **{name: name for name in CALL_TYPES},
    **{name[0]: name for name in CALL_TYPES},  # analytics.js: /v1/t, /v1/p...
    "batch": None, "b": None, "import": None,
}


class RequestError(Exception):
    """The whole request is refused: `status` with the body {"code", "message"}."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Rejection:
    index: int
    reason: str
    message: Any  # what was sent, kept for `audsync status`'s examples

    def answer(self) -> dict:
        return {"index": self.index, "reason": self.reason}


@dataclass
class Accepted:
    """A request's messages: the valid ones normalised, in request order, and the rejected."""

    messages: list[dict]
    rejected: list[Rejection]


def decompress(raw: bytes, encoding: str | None) -> bytes:
    """The body as sent, gunzipped when Content-Encoding says gzip; never more than the request
    limit is inflated, so a small gzip bomb costs nothing."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        data = raw
    elif encoding in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            data = inflater.decompress(raw, MAX_REQUEST_BYTES + 1)
        except zlib.error as exc:
            raise RequestError(400, "invalid_gzip", f"the body is not valid gzip ({exc})") from None
        if len(data) <= MAX_REQUEST_BYTES and not inflater.eof:
            raise RequestError(400, "invalid_gzip", "the gzip body is truncated")
    else:
        raise RequestError(415, "unsupported_encoding",
                           f"Content-Encoding {encoding!r} is not supported (send identity or gzip)")
    if len(data) > MAX_REQUEST_BYTES:
        raise RequestError(400, "request_too_large",
                           f"the request is over {MAX_REQUEST_BYTES // 1024} KB (Exceed payload limit)")
    return data


def parse(data: bytes) -> dict:
    """The JSON object of a request body (sent as application/json or text/plain alike)."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, "invalid_json", f"the body is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise RequestError(400, "invalid_json", f"the body must be a JSON object, not {type_name(body)}")
    return body


def body_write_key(body: dict) -> str | None:
    key = body.get("writeKey")
    return key if isinstance(key, str) and key else None


def accept(body: dict, endpoint: str, received_at: datetime, settings: AmplitudeSettings,
           client_ip: str | None = None) -> Accepted:
    """Split one request's messages into normalised valid ones and rejections.

    `endpoint` is the path's last segment (a key of ENDPOINTS); `received_at` the arrival time
    (timezone-aware). Raises RequestError for what refuses the whole request."""
    kind = ENDPOINTS[endpoint]
    if kind is None:
        items = body.get("batch")
        if not isinstance(items, list):
            raise RequestError(400, "invalid_batch",
                               f"batch: must be a list of messages, not {type_name(items)}")
        shared = {name: body.get(name) for name in ("context", "integrations")
                  if isinstance(body.get(name), dict)}
        sent_at = body.get("sentAt")
    else:
        items, shared, sent_at = [body], {}, None
    for index, item in enumerate(items):
        if len(orjson.dumps(item)) > MAX_MESSAGE_BYTES:
            where = f"batch[{index}]" if kind is None else "the message"
            raise RequestError(400, "message_too_large",
                               f"{where} is over {MAX_MESSAGE_BYTES // 1024} KB (Exceed payload limit)")
    received = _iso(received_at)
    # Read once: every message of the batch without a sentAt of its own shares it.
    batch_sent_ms = iso_ms(sent_at) if isinstance(sent_at, str) else None
    checked = _translatable(settings)
    messages: list[dict] = []
    rejected: list[Rejection] = []
    for index, item in enumerate(items):
        try:
            messages.append(normalise(item, kind, shared, sent_at, received_at, received, checked, client_ip,
                                      batch_sent_ms))
        except ValidationError as exc:
            rejected.append(Rejection(index, str(exc), item))
    return Accepted(messages, rejected)


# settings -> its translatable copy, by id; the settings object is held so its id is not reused.
_TRANSLATABLE: dict[int, tuple[AmplitudeSettings, AmplitudeSettings]] = {}


def _translatable(settings: AmplitudeSettings) -> AmplitudeSettings:
    """The settings messages are checked with. An alias is a valid Segment call whether or not
    Amplitude gets it: with enable_alias off the forwarder sends nothing for it, but it is still
    accepted and kept, so its shape is checked as if the setting were on.

    The copy is kept: serve passes the same settings with every request, and a copy per request
    (dataclasses.replace re-runs the settings' __init__) would also make the mapping core rebuild
    its per-settings tables for every request, a cost a one-message request feels."""
    if settings.enable_alias:
        return settings
    held = _TRANSLATABLE.get(id(settings))
    if held is not None and held[0] is settings:
        return held[1]
    if len(_TRANSLATABLE) >= 16:  # many short-lived settings objects (tests): forget the old ones
        _TRANSLATABLE.clear()
    checked = dataclasses.replace(settings, enable_alias=True)
    _TRANSLATABLE[id(settings)] = (settings, checked)
    return checked


def normalise(item: Any, kind: str | None, shared: dict, sent_at: Any, received_at: datetime, received: str,
              settings: AmplitudeSettings, client_ip: str | None = None, batch_sent_ms: int | None = None) -> dict:
    """One message as it is stored: its type set, the batch's context and integrations merged
    under its own, `writeKey` removed, `messageId` given when missing, `receivedAt` and
    `originalTimestamp` set and `timestamp` corrected for the client's clock skew. Raises
    ValidationError, starting with the field at fault, for a message that cannot be accepted.
    `batch_sent_ms` is `sent_at` already read, when it is a valid date-time."""
    if not isinstance(item, dict):
        raise ValidationError(f"message: must be a JSON object, not {type_name(item)}", field="message")
    message = dict(item)
    message.pop("writeKey", None)
    if kind is None:
        kind = message.get("type")
        if kind is None:
            raise ValidationError("type: the message has no type", field="type")
        if not isinstance(kind, str) or kind.lower() not in CALL_TYPES:
            raise ValidationError(f"type: {shown(kind) if isinstance(kind, str) else type_name(kind)} is not "
                                  f"one of {', '.join(CALL_TYPES)}", field="type")
        kind = kind.lower()
    message["type"] = kind
    for name, value in shared.items():
        own = message.get(name)
        message[name] = {**value, **own} if isinstance(own, dict) else (value if own is None else own)
    if not (_present(message.get("userId")) or _present(message.get("anonymousId"))):
        raise ValidationError("userId: the message has neither a userId nor an anonymousId", field="userId")
    if kind == "track" and not _present(message.get("event")):
        raise ValidationError("event: a track call needs an event name", field="event")
    message_id = message.get("messageId")
    if not _present(message_id):
        # As RudderStack's gateway does; a resend of a message without one cannot be recognised.
        message["messageId"] = str(uuid.uuid4())
    elif not isinstance(message_id, str):
        if isinstance(message_id, bool) or not isinstance(message_id, (int, float)):
            raise ValidationError(f"messageId: must be a string, not {type_name(message_id)}", field="messageId")
        message["messageId"] = str(message_id)
    _set_times(message, sent_at, received_at, received, batch_sent_ms)
    _fill_ip(message, client_ip)
    # What the mapping core refuses would never reach Amplitude. A message its integrations keep
    # from Amplitude is translated to nothing before its ids are read: those are checked anyway,
    # as they are what the events store and the rule audiences key on.
    if not translate(message, settings) and message.get("integrations"):
        translate({**message, "integrations": {}}, settings)
    return message


def _present(value: Any) -> bool:
    return value is not None and value != ""


def _set_times(message: dict, batch_sent_at: Any, received_at: datetime, received: str,
               batch_sent_ms: int | None = None) -> None:
    """Segment's four timestamps (reference section 5): the client's `timestamp` becomes
    `originalTimestamp`, and `timestamp = receivedAt - (sentAt - originalTimestamp)`."""
    original_text = message.get("timestamp")
    if original_text is None:
        original_text = message.get("originalTimestamp")
    sent_text = message.get("sentAt")
    own_sent = sent_text is not None
    if not own_sent:
        sent_text = batch_sent_at
    original = _ms(original_text, "timestamp" if "timestamp" in message else "originalTimestamp")
    sent = _ms(sent_text, "sentAt") if own_sent or batch_sent_ms is None else batch_sent_ms
    message["receivedAt"] = received
    if original is None:
        message["timestamp"] = received  # "Segment servers will timestamp the requests"
        return
    message["originalTimestamp"] = original_text
    if sent is not None:
        message["sentAt"] = sent_text
        try:
            corrected = received_at - timedelta(milliseconds=sent - original)
        except OverflowError:
            raise ValidationError(f"sentAt: {shown(sent_text)} and the timestamp are too far apart to correct "
                                  "for clock skew", field="sentAt") from None
        message["timestamp"] = _iso(corrected)
    else:
        message["timestamp"] = original_text  # no send time: the skew cannot be known


def _ms(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{field}: must be an ISO 8601 date-time string, not {type_name(value)}", field=field)
    ms = iso_ms(value)
    if ms is None:
        raise ValidationError(f"{field}: {shown(value)} is not an ISO 8601 date-time", field=field)
    return ms


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fill_ip(message: dict, client_ip: str | None) -> None:
    """Segment fills `context.ip` for client-side events (reference section 4): those of the
    browser library, or any message asking with `context.direct`."""
    if not client_ip:
        return
    context = message.get("context")
    if not isinstance(context, dict) or context.get("ip"):
        return
    library = context.get("library")
    name = library.get("name") if isinstance(library, dict) else None
    if context.get("direct") is True or name == "analytics.js":
        message["context"] = {**context, "ip": client_ip}
