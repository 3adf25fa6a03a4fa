"""What `audsync serve` accepts, rejects and refuses, without a server (audsync.ingest.validate)."""

from __future__ import annotations

import gzip
import uuid
from datetime import datetime, timezone

import orjson
import pytest

from audsync.config import AmplitudeSettings
from audsync.ingest.validate import (
    MAX_MESSAGE_BYTES, MAX_REQUEST_BYTES, RequestError, accept, body_write_key, decompress, parse,
)

SETTINGS = AmplitudeSettings()
RECEIVED = datetime(2026, 3, 1, 12, 0, 0, 500000, tzinfo=timezone.utc)


def batch(*items, **top):
    return {"batch": list(items), **top}


def one(message, endpoint="track", settings=SETTINGS, client_ip=None):
    return accept(message, endpoint, RECEIVED, settings, client_ip)


def test_server_sets_received_at_and_corrects_timestamp_for_clock_skew():
    # The client's clock runs 10 minutes fast: it says it sent at 12:10, the call was 2 s before.
    body = batch({"type": "track", "event": "Signed Up", "userId": "user-0001",
                  "timestamp": "2026-03-01T12:09:58.000Z"}, sentAt="2026-03-01T12:10:00.000Z")
    [message] = accept(body, "batch", RECEIVED, SETTINGS).messages
    assert message["receivedAt"] == "2026-03-01T12:00:00.500Z"
    assert message["timestamp"] == "2026-03-01T11:59:58.500Z"
    assert message["originalTimestamp"] == "2026-03-01T12:09:58.000Z"
    assert message["sentAt"] == "2026-03-01T12:10:00.000Z"


def test_message_sent_at_wins_over_the_batch_one_and_offsets_are_honoured():
    body = batch({"type": "track", "event": "E", "userId": "user-0001", "timestamp": "2026-03-01T13:00:00+01:00",
                  "sentAt": "2026-03-01T12:00:01Z"}, sentAt="2026-03-01T15:00:00Z")
    [message] = accept(body, "batch", RECEIVED, SETTINGS).messages
    assert message["timestamp"] == "2026-03-01T11:59:59.500Z"


def test_without_timestamp_the_server_time_is_used_and_without_sent_at_the_client_time_kept():
    [bare] = one({"event": "E", "userId": "user-0001"}).messages
    assert bare["timestamp"] == bare["receivedAt"] == "2026-03-01T12:00:00.500Z"
    assert "originalTimestamp" not in bare
    [historical] = one({"event": "E", "userId": "user-0001", "timestamp": "2020-01-01T00:00:00Z"}).messages
    assert historical["timestamp"] == historical["originalTimestamp"] == "2020-01-01T00:00:00Z"


def test_message_id_is_kept_or_given_and_numbers_become_text():
    [kept] = one({"event": "E", "userId": "user-0001", "messageId": "m-1"}).messages
    assert kept["messageId"] == "m-1"
    [given] = one({"event": "E", "userId": "user-0001", "messageId": None}).messages
    assert uuid.UUID(given["messageId"]).version == 4
    [number] = one({"event": "E", "userId": "user-0001", "messageId": 123}).messages
    assert number["messageId"] == "123"


def test_path_gives_the_type_and_short_paths_are_the_browser_library_s():
    [track] = one({"event": "E", "userId": "user-0001", "type": "identify"}, "t").messages
    assert track["type"] == "track"
    [page] = one({"anonymousId": "anon-0001", "name": "Home"}, "p").messages
    assert page["type"] == "page"
    [alias] = one({"userId": "user-0001", "previousId": "anon-0001"}, "alias").messages
    assert alias["type"] == "alias"


def test_batch_rejects_invalid_messages_by_index_and_keeps_the_valid_ones_in_order():
    body = batch(
        {"type": "track", "event": "A", "userId": "user-0001"},
        {"type": "track", "event": "B"},                               # no ids
        {"type": "track", "userId": "user-0001"},                      # no event
        {"type": "purchase", "userId": "user-0001"},                   # unknown type
        {"event": "C", "userId": "user-0001"},                         # no type
        {"type": "identify", "userId": "abc"},                         # shorter than min_id_length
        "not an object",
        {"type": "track", "event": "D", "userId": "user-0001", "timestamp": "yesterday"},
        {"type": "Track", "event": "E", "anonymousId": "anon-0001"},
    )
    accepted = accept(body, "batch", RECEIVED, SETTINGS)
    assert [m["event"] for m in accepted.messages] == ["A", "E"]
    assert accepted.messages[1]["type"] == "track"
    reasons = {r.index: r.reason for r in accepted.rejected}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7]
    assert reasons[1].startswith("userId: ") and "anonymousId" in reasons[1]
    assert reasons[2].startswith("event: ")
    assert reasons[3].startswith("type: ") and "'purchase'" in reasons[3]
    assert reasons[4] == "type: the message has no type"
    assert reasons[5] == "userId: 'abc' is shorter than min_id_length (5)"
    assert reasons[6] == "message: must be a JSON object, not a string"
    assert reasons[7] == "timestamp: 'yesterday' is not an ISO 8601 date-time"
    assert accepted.rejected[0].message == {"type": "track", "event": "B"}
    assert accepted.rejected[0].answer() == {"index": 1, "reason": reasons[1]}


def test_min_id_length_follows_the_amplitude_settings():
    message = {"type": "identify", "userId": "abc"}
    assert one(message, "identify", AmplitudeSettings(min_id_length=3)).messages
    assert one(message, "identify", AmplitudeSettings(min_id_length=5)).rejected


def test_settings_objects_made_one_after_another_are_each_honoured():
    # Short-lived settings objects reuse each other's ids: what is kept per settings must not leak.
    message = {"type": "identify", "userId": "abc"}
    for _ in range(40):
        assert one(message, "identify", AmplitudeSettings(min_id_length=3)).messages
        assert one(message, "identify", AmplitudeSettings(min_id_length=5)).rejected


def test_what_the_mapping_core_refuses_is_rejected():
    [rejected] = one({"event": "Order Completed", "userId": "user-0001",
                      "properties": {"products": "not a list"}}).rejected
    assert rejected.reason.startswith("properties.products: ")
    [blocked] = one({"event": "E", "userId": "undefined"}).rejected
    assert "refuses" in blocked.reason


def test_alias_is_accepted_whether_or_not_amplitude_gets_it_but_its_shape_is_checked():
    assert not SETTINGS.enable_alias
    assert one({"userId": "user-0001", "previousId": "anon-0001"}, "alias").messages
    [bad] = one({"userId": "user-0001"}, "alias").rejected
    assert bad.reason.startswith("previousId: ")


def test_messages_amplitude_would_not_get_are_still_checked_for_ids_and_event():
    off = {"integrations": {"Amplitude": False}}
    assert one({"event": "E", "userId": "user-0001", **off}).messages
    assert one({"event": "E", **off}).rejected
    assert one({"userId": "user-0001", **off}).rejected


def test_batch_context_and_integrations_merge_under_each_message_s_own():
    body = batch({"type": "track", "event": "E", "userId": "user-0001",
                  "context": {"app": {"name": "mine"}}, "integrations": {"All": True}},
                 {"type": "track", "event": "F", "userId": "user-0001"},
                 context={"app": {"name": "shared"}, "locale": "fr-FR"}, integrations={"Amplitude": True})
    first, second = accept(body, "batch", RECEIVED, SETTINGS).messages
    assert first["context"] == {"app": {"name": "mine"}, "locale": "fr-FR"}
    assert first["integrations"] == {"Amplitude": True, "All": True}
    assert second["context"] == {"app": {"name": "shared"}, "locale": "fr-FR"}


def test_write_key_is_read_from_the_body_and_not_stored():
    body = {"event": "E", "userId": "user-0001", "writeKey": "key-1"}
    assert body_write_key(body) == "key-1"
    [message] = one(body).messages
    assert "writeKey" not in message
    assert body_write_key({"writeKey": ""}) is None and body_write_key({"writeKey": 5}) is None


def test_python_library_nulls_are_accepted():
    # segment-analytics-python sends these fields as null (reference section 6).
    message = {"type": "page", "userId": "user-0001", "anonymousId": None, "name": None, "category": None,
               "properties": {}, "context": {"library": {"name": "analytics-python", "version": "2.3.4"}},
               "integrations": {}, "messageId": str(uuid.uuid4()), "timestamp": "2026-03-01T12:00:00.000+00:00"}
    assert accept(batch(message, sentAt="2026-03-01T12:00:00.100+00:00"), "batch", RECEIVED, SETTINGS).messages


def test_client_ip_is_filled_for_browser_and_direct_messages_only():
    browser = {"event": "E", "anonymousId": "anon-0001", "context": {"library": {"name": "analytics.js"}}}
    assert one(browser, client_ip="192.0.2.7").messages[0]["context"]["ip"] == "192.0.2.7"
    direct = {"event": "E", "userId": "user-0001", "context": {"direct": True}}
    assert one(direct, client_ip="192.0.2.7").messages[0]["context"]["ip"] == "192.0.2.7"
    server = {"event": "E", "userId": "user-0001", "context": {"library": {"name": "analytics-python"}}}
    assert "ip" not in one(server, client_ip="192.0.2.7").messages[0]["context"]
    own = {**browser, "context": {"library": {"name": "analytics.js"}, "ip": "198.51.100.1"}}
    assert one(own, client_ip="192.0.2.7").messages[0]["context"]["ip"] == "198.51.100.1"


def test_the_sent_message_is_not_modified():
    item = {"type": "track", "event": "E", "userId": "user-0001", "writeKey": "k"}
    accept(batch(item), "batch", RECEIVED, SETTINGS)
    assert item == {"type": "track", "event": "E", "userId": "user-0001", "writeKey": "k"}


def test_a_message_over_32_kb_refuses_the_whole_request():
    big = {"type": "track", "event": "E", "userId": "user-0001", "properties": {"x": "y" * MAX_MESSAGE_BYTES}}
    with pytest.raises(RequestError) as info:
        accept(batch({"type": "track", "event": "A", "userId": "user-0001"}, big), "batch", RECEIVED, SETTINGS)
    assert (info.value.status, info.value.code) == (400, "message_too_large")
    assert "batch[1]" in info.value.message
    with pytest.raises(RequestError):
        one({k: v for k, v in big.items() if k != "type"})
    just = {"event": "E", "userId": "user-0001", "properties": {"x": ""}}
    just["properties"]["x"] = "y" * (MAX_MESSAGE_BYTES - len(orjson.dumps(just)))
    assert len(orjson.dumps(just)) == MAX_MESSAGE_BYTES
    assert one(just).messages


def test_a_batch_that_is_not_a_list_refuses_the_request():
    for body in ({}, {"batch": {"type": "track"}}, {"batch": None}):
        with pytest.raises(RequestError) as info:
            accept(body, "batch", RECEIVED, SETTINGS)
        assert (info.value.status, info.value.code) == (400, "invalid_batch")
    assert accept({"batch": []}, "import", RECEIVED, SETTINGS).messages == []


def test_parse_refuses_what_is_not_a_json_object():
    assert parse(b'{"a": 1}') == {"a": 1}
    for data in (b"{", b"", b"[1]", b"null", "é".encode("latin-1")):
        with pytest.raises(RequestError) as info:
            parse(data)
        assert (info.value.status, info.value.code) == (400, "invalid_json")


def test_decompress_gzip_and_limits_after_decompression():
    data = orjson.dumps({"batch": []})
    assert decompress(data, None) == decompress(data, "identity") == data
    assert decompress(gzip.compress(data), "gzip") == data
    assert decompress(gzip.compress(data), " GZIP ") == data
    bomb = gzip.compress(b" " * (MAX_REQUEST_BYTES + 1))
    assert len(bomb) < 10_000
    with pytest.raises(RequestError) as info:
        decompress(bomb, "gzip")
    assert (info.value.status, info.value.code) == (400, "request_too_large")
    assert decompress(gzip.compress(b" " * MAX_REQUEST_BYTES), "gzip") == b" " * MAX_REQUEST_BYTES
    with pytest.raises(RequestError) as info:
        decompress(b" " * (MAX_REQUEST_BYTES + 1), None)
    assert info.value.code == "request_too_large"
    with pytest.raises(RequestError) as info:
        decompress(b"not gzip", "gzip")
    assert (info.value.status, info.value.code) == (400, "invalid_gzip")
    with pytest.raises(RequestError) as info:
        decompress(gzip.compress(data)[:-12], "gzip")
    assert info.value.code == "invalid_gzip"
    with pytest.raises(RequestError) as info:
        decompress(data, "br")
    assert (info.value.status, info.value.code) == (415, "unsupported_encoding")


def test_sent_at_that_is_not_a_date_rejects_the_message():
    [rejected] = accept(batch({"type": "track", "event": "E", "userId": "user-0001"}, sentAt=5),
                        "batch", RECEIVED, SETTINGS).rejected
    assert rejected.reason == "sentAt: must be an ISO 8601 date-time string, not a number"
    far = {"type": "track", "event": "E", "userId": "user-0001", "timestamp": "0001-01-01T00:00:00Z",
           "sentAt": "9999-12-31T00:00:00Z"}
    [too_far] = accept(batch(far), "batch", RECEIVED, SETTINGS).rejected
    assert too_far.reason.startswith("sentAt: ")


def test_a_batch_s_sent_at_serves_every_message_without_its_own():
    messages = [{"type": "track", "event": "E", "userId": "user-0001", "timestamp": stamp}
                for stamp in ("2026-03-01T12:10:00.000Z", "2026-03-01T12:09:58.000Z")]
    messages.append({**messages[1], "sentAt": "2026-03-01T12:09:59.000Z"})
    sent, earlier, own = accept(batch(*messages, sentAt="2026-03-01T12:10:00.000Z"), "batch", RECEIVED,
                                SETTINGS).messages
    assert sent["timestamp"] == sent["receivedAt"] == "2026-03-01T12:00:00.500Z"  # sent as it happened
    assert sent["sentAt"] == earlier["sentAt"] == "2026-03-01T12:10:00.000Z"
    assert earlier["timestamp"] == "2026-03-01T11:59:58.500Z"
    assert own["timestamp"] == "2026-03-01T11:59:59.500Z"


def test_a_batch_s_invalid_sent_at_rejects_only_the_messages_that_use_it_after_their_timestamp():
    good = {"type": "track", "event": "E", "userId": "user-0001", "timestamp": "2026-03-01T12:09:58.000Z"}
    body = batch(good, {**good, "sentAt": "2026-03-01T12:10:00.000Z"}, {**good, "timestamp": "soon"},
                 sentAt="later")
    accepted = accept(body, "batch", RECEIVED, SETTINGS)
    assert [message["timestamp"] for message in accepted.messages] == ["2026-03-01T11:59:58.500Z"]
    assert [(r.index, r.reason) for r in accepted.rejected] == [
        (0, "sentAt: 'later' is not an ISO 8601 date-time"), (2, "timestamp: 'soon' is not an ISO 8601 date-time")]
