"""`audsync serve` over loopback: the endpoints, auth, bodies, limits and answers of DESIGN.md
section 6, each checked against what the state database then holds (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import gzip
import json
import signal
import socket
import time
import uuid

import httpx
import pytest

from audsync.ingest.app import source_of

from .conftest import WRITE_KEY, stored_messages, stored_rejections, write_config


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def track(event: str = "Signed Up", **extra) -> dict:
    return {"type": "track", "event": event, "userId": "user-0001", "messageId": str(uuid.uuid4()), **extra}


@pytest.fixture
def served(tmp_path, state_url, servers):
    proc = servers(write_config(tmp_path, state_url))
    with proc.client() as client:
        yield proc, client, state_url


def test_both_auth_forms_and_every_endpoint_store_what_they_accept(served):
    proc, client, url = served
    sent = []
    # segment-analytics-python 2.3+: body writeKey only; analytics-node 3.1: Basic (and the body key).
    body = {"batch": [track("A"), track("B")], "writeKey": WRITE_KEY, "sentAt": "2026-03-01T12:00:00Z"}
    assert client.post("/v1/batch", json=body).json() == {"success": True}
    sent += body["batch"]
    body = {"batch": [track("C")]}
    assert client.post("/v1/batch", json=body, headers=basic(WRITE_KEY)).json() == {"success": True}
    sent += body["batch"]
    for path, message in [("identify", {"userId": "user-0001", "traits": {"plan": "pro"}}),
                          ("page", {"anonymousId": "anon-0001", "name": "Home"}),
                          ("screen", {"userId": "user-0001", "name": "Settings"}),
                          ("group", {"userId": "user-0001", "groupId": "group-0001"}),
                          ("alias", {"userId": "user-0001", "previousId": "anon-0001"}),
                          ("track", {"userId": "user-0001", "event": "D"}),
                          ("t", {"anonymousId": "anon-0001", "event": "E"}),
                          ("p", {"anonymousId": "anon-0001", "name": "Pricing"}),
                          ("i", {"anonymousId": "anon-0001", "traits": {"a": 1}})]:
        message = {**message, "messageId": str(uuid.uuid4())}
        answer = client.post(f"/v1/{path}", json={**message, "writeKey": WRITE_KEY})
        assert answer.status_code == 200 and answer.json() == {"success": True}, (path, answer.text)
        sent.append(message)
    for path in ("import", "b"):
        body = {"batch": [track(path)], "writeKey": WRITE_KEY}
        assert client.post(f"/v1/{path}", json=body).json() == {"success": True}
        sent += body["batch"]
    stored = stored_messages(url)
    assert [m["messageId"] for m in stored] == [m["messageId"] for m in sent]
    by_id = {m["messageId"]: m for m in stored}
    assert by_id[sent[7]["messageId"]]["type"] == "alias"
    assert by_id[sent[10]["messageId"]]["type"] == "page"
    assert all(m["receivedAt"] for m in stored)
    assert all("writeKey" not in m for m in stored)


def test_missing_or_unknown_write_key_is_401_and_stores_nothing(served):
    proc, client, url = served
    cases = [({"batch": [track()]}, {}), ({"batch": [track()], "writeKey": "nope-0001"}, {}),
             ({"batch": [track()], "writeKey": WRITE_KEY}, basic("nope-0001")),
             ({"batch": [track()]}, {"Authorization": "Basic %%%"}),
             ({"batch": [track()]}, basic(""))]
    for body, headers in cases:
        answer = client.post("/v1/batch", json=body, headers=headers)
        assert answer.status_code == 401, (body, headers)
        assert set(answer.json()) == {"code", "message"} and answer.json()["code"] == "unauthorized"
    assert stored_messages(url) == []


def test_gzip_and_text_plain_bodies(served):
    proc, client, url = served
    zipped = track("Zipped")
    answer = client.post("/v1/batch", content=gzip.compress(json.dumps({"batch": [zipped]}).encode()),
                         headers={**basic(WRITE_KEY), "Content-Type": "application/json",
                                  "Content-Encoding": "gzip"})
    assert answer.json() == {"success": True}
    plain = {**track("Plain"), "writeKey": WRITE_KEY}
    plain.pop("type")
    answer = client.post("/v1/t", content=json.dumps(plain), headers={"Content-Type": "text/plain"})
    assert answer.json() == {"success": True}
    assert [m["event"] for m in stored_messages(url)] == ["Zipped", "Plain"]


def test_limits_and_invalid_json_are_400_and_store_nothing(served):
    proc, client, url = served
    big = track(properties={"blob": "x" * (32 * 1024)})
    answer = client.post("/v1/batch", json={"batch": [track(), big], "writeKey": WRITE_KEY})
    assert answer.status_code == 400 and answer.json()["code"] == "message_too_large"
    many = [track(properties={"blob": "x" * (20 * 1024)}) for _ in range(30)]  # ~600 KB in all
    answer = client.post("/v1/batch", json={"batch": many, "writeKey": WRITE_KEY})
    assert answer.status_code == 400 and answer.json()["code"] == "request_too_large"
    zipped = gzip.compress(json.dumps({"batch": many, "writeKey": WRITE_KEY}).encode())
    assert len(zipped) < 100_000
    answer = client.post("/v1/batch", content=zipped, headers={"Content-Encoding": "gzip"})
    assert answer.status_code == 400 and answer.json()["code"] == "request_too_large"
    answer = client.post("/v1/batch", content=b'{"batch": [', headers=basic(WRITE_KEY))
    assert answer.status_code == 400 and set(answer.json()) == {"code", "message"}
    assert answer.json()["code"] == "invalid_json"
    assert stored_messages(url) == []


def test_batch_with_invalid_messages_stores_the_valid_and_answers_the_rejected(served):
    proc, client, url = served
    good = [track("Good 1"), track("Good 2")]
    batch = [good[0], {"type": "track", "event": "No Ids"}, {"type": "track", "userId": "user-0001"},
             {"type": "order", "userId": "user-0001"}, {"type": "identify", "userId": "abc"}, good[1]]
    answer = client.post("/v1/batch", json={"batch": batch, "writeKey": WRITE_KEY})
    assert answer.status_code == 200
    body = answer.json()
    assert body["success"] is True
    assert [r["index"] for r in body["rejected"]] == [1, 2, 3, 4]
    assert body["rejected"][3]["reason"] == "userId: 'abc' is shorter than min_id_length (5)"
    assert [m["event"] for m in stored_messages(url)] == ["Good 1", "Good 2"]
    rejections = stored_rejections(url)
    assert [(r["message_index"], r["reason"], r["source"]) for r in rejections] == \
        [(r["index"], r["reason"], source_of(WRITE_KEY)) for r in body["rejected"]]
    assert json.loads(rejections[0]["example"]) == batch[1]
    # the state database keeps the write key's fingerprint, never the key
    assert WRITE_KEY not in json.dumps([stored_messages(url), rejections], default=str)


def test_a_message_id_seen_before_is_acknowledged_and_not_stored_again(served):
    proc, client, url = served
    message = track("Once")
    for _ in range(2):
        assert client.post("/v1/batch", json={"batch": [message], "writeKey": WRITE_KEY}).json() == {"success": True}
    assert client.post("/v1/track", json={**message, "writeKey": WRITE_KEY}).json() == {"success": True}
    assert [m["messageId"] for m in stored_messages(url)] == [message["messageId"]]


def test_cors_preflight_settings_metrics_and_health(served):
    proc, client, url = served
    answer = client.options("/v1/t", headers={"Origin": "https://shop.example.com",
                                              "Access-Control-Request-Method": "POST",
                                              "Access-Control-Request-Headers": "authorization,x-retry-count"})
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == "*"
    allowed = {h.strip().lower() for h in answer.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "x-retry-count", "content-type"} <= allowed
    assert "POST" in answer.headers["access-control-allow-methods"]
    answer = client.post("/v1/t", headers={"Origin": "https://shop.example.com", **basic(WRITE_KEY),
                                           "Content-Type": "text/plain"},
                         content=json.dumps({"anonymousId": "anon-0001", "event": "From The Browser"}))
    assert answer.json() == {"success": True} and answer.headers["access-control-allow-origin"] == "*"

    settings = client.get(f"/v1/projects/{WRITE_KEY}/settings", headers={"Origin": "https://shop.example.com"})
    assert settings.status_code == 200 and settings.headers["access-control-allow-origin"] == "*"
    segment = settings.json()["integrations"]["Segment.io"]
    assert segment == {**segment, "apiKey": WRITE_KEY, "apiHost": f"127.0.0.1:{proc.port}/v1", "protocol": "http"}
    assert settings.json()["metrics"]["sampleRate"] == 0
    assert client.get("/v1/projects/nope-0001/settings").status_code == 404

    answer = client.post("/v1/m", content='{"series": [{"metric": "analytics_js.invoke", "value": 1}]}',
                         headers={"Content-Type": "text/plain"})
    assert answer.status_code == 200
    assert client.get("/healthz").status_code == 200
    missing = client.post("/v1/nothing", json={})
    assert missing.status_code == 404 and set(missing.json()) == {"code", "message"}
    assert [m["event"] for m in stored_messages(url)] == ["From The Browser"]


def test_cors_origins_limit_which_pages_may_send(tmp_path, sqlite_url, servers):
    config = write_config(tmp_path, sqlite_url, ingest=f'''
        write_keys = ["{WRITE_KEY}"]
        forward = false
        cors_origins = ["https://shop.example.com"]
    ''')
    proc = servers(config)
    with proc.client() as client:
        preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
        answer = client.options("/v1/b", headers={"Origin": "https://shop.example.com", **preflight})
        assert answer.status_code == 204
        assert answer.headers["access-control-allow-origin"] == "https://shop.example.com"
        answer = client.options("/v1/b", headers={"Origin": "https://evil.example.net", **preflight})
        assert answer.status_code == 403 and "access-control-allow-origin" not in answer.headers


def test_sigterm_answers_the_request_in_flight_then_exits_0(served):
    proc, client, url = served
    message = track("In Flight")
    body = json.dumps({"batch": [message], "writeKey": WRITE_KEY}).encode()
    with socket.create_connection(("127.0.0.1", proc.port), timeout=30) as conn:
        # A whole request first: once it is answered, the server holds this connection.
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while not first.endswith(b"\r\n\r\nok\n"):
            chunk = conn.recv(65536)
            assert chunk, first
            first += chunk
        assert first.startswith(b"HTTP/1.1 200")
        conn.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:10])
        time.sleep(0.5)  # its headers are read: the request is under way before the signal
        proc.proc.send_signal(signal.SIGTERM)
        proc.wait_for("SIGTERM: stopping")
        deadline = time.monotonic() + 10
        while True:  # the listener closes within uvicorn's next tick: then no new connection is taken
            try:
                socket.create_connection(("127.0.0.1", proc.port), timeout=1).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
            time.sleep(0.05)
        conn.sendall(body[10:])
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert answer.endswith(b'{"success":true}')
    assert proc.wait(30) == 0, proc.output()
    assert [m["messageId"] for m in stored_messages(url)] == [message["messageId"]]


def test_second_signal_exits_at_once(served):
    proc, client, url = served
    conn = socket.create_connection(("127.0.0.1", proc.port), timeout=30)
    try:
        conn.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        time.sleep(0.3)  # the request is under way: a first signal alone would wait for it
        proc.proc.send_signal(signal.SIGTERM)
        proc.wait_for("SIGTERM: stopping")
        proc.proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 128 + signal.SIGINT
    finally:
        conn.close()


def test_a_commit_that_fails_is_503_with_a_code_so_clients_send_again(tmp_path, sqlite_url, servers):
    import sqlalchemy as sa

    proc = servers(write_config(tmp_path, sqlite_url))
    with proc.client() as client:
        assert client.get("/healthz").status_code == 200
        engine = sa.create_engine(sqlite_url)
        with engine.begin() as conn:  # a state database that no longer takes the messages
            conn.exec_driver_sql("ALTER TABLE ingest_log RENAME TO ingest_log_away")
        engine.dispose()
        answer = client.post("/v1/batch", json={"batch": [track(), {"type": "track"}], "writeKey": WRITE_KEY})
    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == "unavailable"
    assert stored_rejections(sqlite_url) == []  # recorded when the request is sent again
    assert proc.stop() == 0, proc.output()
