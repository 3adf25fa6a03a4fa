"""The HTTP transport: URLs per region, request encodings, the file sink, secrets kept out."""

from __future__ import annotations

import json

import orjson
import pytest

from audsync.delivery import Deliverer
from audsync.delivery.transport import Transport, multipart, url_for
from audsync.testing.fake_amplitude import parse_form

from .conftest import API_KEY, amplitude_settings, fast_delivery

URL_CASES = [
    ("us_httpapi", "us", "event", False, "https://api2.amplitude.com/2/httpapi"),
    ("us_batch_switch", "us", "event", True, "https://api2.amplitude.com/batch"),
    ("us_identify", "us", "identify", False, "https://api2.amplitude.com/identify"),
    ("us_identify_ignores_batch_switch", "us", "identify", True, "https://api2.amplitude.com/identify"),
    ("us_groupidentify", "us", "groupidentify", False, "https://api2.amplitude.com/groupidentify"),
    ("us_usermap_on_api_host", "us", "usermap", False, "https://api.amplitude.com/usermap"),
    ("us_deletions", "us", "deletions", False, "https://amplitude.com/api/2/deletions/users"),
    ("eu_httpapi", "eu", "event", False, "https://api.eu.amplitude.com/2/httpapi"),
    ("eu_batch_switch", "eu", "event", True, "https://api.eu.amplitude.com/batch"),
    ("eu_identify", "eu", "identify", False, "https://api.eu.amplitude.com/identify"),
    ("eu_groupidentify", "eu", "groupidentify", False, "https://api.eu.amplitude.com/groupidentify"),
    ("eu_usermap", "eu", "usermap", False, "https://api.eu.amplitude.com/usermap"),
    ("eu_deletions", "eu", "deletions", False, "https://analytics.eu.amplitude.com/api/2/deletions/users"),
    ("base_url_httpapi", "http://127.0.0.1:9", "event", False, "http://127.0.0.1:9/2/httpapi"),
    ("base_url_batch", "http://127.0.0.1:9", "event", True, "http://127.0.0.1:9/batch"),
    ("base_url_identify", "http://127.0.0.1:9", "identify", False, "http://127.0.0.1:9/identify"),
    ("base_url_usermap", "http://127.0.0.1:9", "usermap", False, "http://127.0.0.1:9/usermap"),
    ("file_sink_httpapi", "file:out/requests.jsonl", "event", False, "file:/2/httpapi"),
    ("file_sink_batch", "file:out/requests.jsonl", "event", True, "file:/batch"),
    ("file_sink_identify", "file:out/requests.jsonl", "identify", False, "file:/identify"),
]


@pytest.mark.parametrize("rule,endpoint,api,batch,expected", URL_CASES, ids=[c[0] for c in URL_CASES])
def test_url_for(rule, endpoint, api, batch, expected):
    assert url_for(endpoint, api, batch) == expected


def _record_raw(fake):
    raws = []
    original = fake.handle

    def handle(path, headers, raw):
        raws.append((path, headers.get("Content-Type", ""), raw))
        return original(path, headers, raw)

    fake.handle = handle
    return raws


def _encode(items):
    return [orjson.dumps(item) for item in items]


def test_events_go_to_httpapi_as_json_with_the_key_in_the_body(fake):
    raws = _record_raw(fake)
    transport = Transport(amplitude_settings(fake), fast_delivery())
    try:
        answer = transport.send("event", _encode([{"event_type": "a", "user_id": "user-1", "insert_id": "i1"}]))
    finally:
        transport.close()
    assert answer.status == 200 and answer.body["events_ingested"] == 1
    path, content_type, raw = raws[0]
    assert path == "/2/httpapi" and content_type == "application/json"
    payload = orjson.loads(raw)
    assert payload["api_key"] == API_KEY and "options" not in payload
    assert fake.events[0]["event_type"] == "a"


def test_batch_endpoint_switch_sends_events_to_batch(fake):
    raws = _record_raw(fake)
    transport = Transport(amplitude_settings(fake, send_to_batch_endpoint=True), fast_delivery())
    try:
        assert transport.send("event", _encode([{"event_type": "a", "user_id": "user-1"}])).status == 200
        assert transport.send("identify", _encode([{"user_id": "user-1", "user_properties": {}}])).status == 200
    finally:
        transport.close()
    assert [r[0] for r in raws] == ["/batch", "/identify"]


MIN_ID_CASES = [
    ("default_5_sends_no_options", 5, "abc", 400, False),
    ("lower_min_id_length_sent_and_short_id_accepted", 3, "abc", 200, True),
    ("higher_min_id_length_sent_and_enforced", 8, "abcdef", 400, True),
]


@pytest.mark.parametrize("rule,min_len,user,status,sent", MIN_ID_CASES, ids=[c[0] for c in MIN_ID_CASES])
@pytest.mark.parametrize("api", ["event", "identify"])
def test_min_id_length_option_sent_only_when_not_5(fake, rule, min_len, user, status, sent, api):
    raws = _record_raw(fake)
    transport = Transport(amplitude_settings(fake, min_id_length=min_len), fast_delivery())
    item = {"user_id": user, "user_properties": {"$set": {"a": 1}}}
    if api == "event":
        item["event_type"] = "$identify"
    try:
        assert transport.send(api, _encode([item])).status == status
    finally:
        transport.close()
    _, content_type, raw = raws[0]
    if api == "event":
        options = orjson.loads(raw).get("options")
    else:
        form = parse_form(content_type, raw)
        options = orjson.loads(form["options"]) if "options" in form else None
    assert (options == {"min_id_length": min_len}) if sent else options is None


TRICKY = [
    {"user_id": "user-ünïcødé", "user_properties": {"$set": {"quote": 'a "b" c', "crlf": "x\r\ny",
                                                             "boundary-like": "--abc--\r\n\r\n"}}},
    {"device_id": "device-0001", "user_properties": {"$unset": {"gone": "-"}}},
    {"user_id": "user-emoji", "user_properties": {"$set": {"e": "😀 & = % +"}}},
]


@pytest.mark.parametrize("api,field", [("identify", "identification"), ("usermap", "mapping")])
def test_form_apis_are_multipart_and_round_trip_exactly(fake, api, field):
    raws = _record_raw(fake)
    transport = Transport(amplitude_settings(fake), fast_delivery())
    items = TRICKY if api == "identify" else [{"user_id": "user-ünï", "global_user_id": 'g"1\r\n'}]
    try:
        assert transport.send(api, _encode(items)).status == 200
    finally:
        transport.close()
    path, content_type, raw = raws[0]
    assert path == "/" + api and content_type.startswith("multipart/form-data; boundary=")
    form = parse_form(content_type, raw)
    assert form["api_key"] == API_KEY and orjson.loads(form[field]) == items
    received = fake.identifies if api == "identify" else fake.mappings
    assert received == items


def test_groupidentify_round_trips_through_the_fake(fake):
    transport = Transport(amplitude_settings(fake), fast_delivery())
    item = {"group_type": "org", "group_value": "Acme \"Inc\"", "group_properties": {"$set": {"plan": "pro"}}}
    try:
        assert transport.send("groupidentify", _encode([item])).status == 200
    finally:
        transport.close()
    assert fake.groups[("org", 'Acme "Inc"')] == {"plan": "pro"}


def test_multipart_encoder_parsed_by_the_fake():
    content, content_type = multipart([("a", b"1"), ("b", "é\r\n".encode())])
    assert parse_form(content_type, content) == {"a": "1", "b": "é\r\n"}


def test_file_sink_writes_url_and_body_without_the_api_key(tmp_path):
    sink = tmp_path / "sub" / "requests.jsonl"
    settings = amplitude_settings(endpoint=f"file:{sink}", api_key="very-secret-key-999")
    transport = Transport(settings, fast_delivery())
    assert transport.send("event", _encode([{"event_type": "e", "user_id": "user-1"}])).status == 200
    assert transport.send("identify", _encode(TRICKY)).status == 200
    assert transport.send("usermap", _encode([{"user_id": "user-1", "global_user_id": "g-1"}])).status == 200
    text = sink.read_text()
    assert "very-secret-key-999" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert [set(line) for line in lines] == [{"url", "body"}] * 3
    assert [line["url"] for line in lines] == ["/2/httpapi", "/identify", "/usermap"]
    assert lines[0]["body"] == {"events": [{"event_type": "e", "user_id": "user-1"}]}
    assert lines[1]["body"] == {"identification": TRICKY}
    assert lines[2]["body"] == {"mapping": [{"user_id": "user-1", "global_user_id": "g-1"}]}


def test_file_sink_through_the_deliverer_acknowledges_everything(tmp_path):
    sink = tmp_path / "requests.jsonl"
    outcomes = []
    with Deliverer(amplitude_settings(endpoint=f"file:{sink}"), fast_delivery()) as deliverer:
        stats = deliverer.deliver(((n, {"api": "identify", "body": {"user_id": f"user-{n}"}}) for n in range(2500)),
                                  lambda batch: outcomes.extend(batch.each()))
    assert stats.total_delivered == 2500 and {o.status for o in outcomes} == {"delivered"}
    sent = [item["user_id"] for line in sink.read_text().splitlines()
            for item in json.loads(line)["body"]["identification"]]
    assert sorted(sent) == sorted(f"user-{n}" for n in range(2500))


def test_no_api_key_in_reprs(fake):
    settings = amplitude_settings(fake, api_key="very-secret-key-999", secret_key="very-secret-sec-888")
    transport = Transport(settings, fast_delivery())
    deliverer = Deliverer(settings, fast_delivery(), transport=transport)
    try:
        for obj in (settings, transport, deliverer):
            assert "very-secret" not in repr(obj) and "very-secret" not in str(obj)
    finally:
        deliverer.close()


def test_unreachable_host_is_a_network_error_not_an_exception():
    transport = Transport(amplitude_settings(endpoint="http://127.0.0.1:9"), fast_delivery(timeout_s=0.5))
    try:
        answer = transport.send("event", _encode([{"event_type": "e", "user_id": "user-1"}]))
    finally:
        transport.close()
    assert answer.status == 0 and "network error" in answer.error
