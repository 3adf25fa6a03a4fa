"""`audsync serve` forwarding to the loopback fake Amplitude (issue 16 points 2, 4, 6), on a real
SQLite file and the real PostgreSQL: what arrives is exactly what the mapping core gives for the
stored messages, in order per user; an outage drains afterwards, a refusal is recorded and not
retried, a SIGKILL loses nothing acknowledged, a SIGTERM settles the round in flight."""

from __future__ import annotations

import json
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa

from audsync.config import load
from audsync.mapping import translate

from .conftest import WRITE_KEY, stored_messages, write_config

API_PATHS = {"/2/httpapi": "event", "/batch": "event", "/identify": "identify", "/groupidentify": "groupidentify",
             "/usermap": "usermap"}


# Settings that change what the mapping core makes: the fake must get exactly that.
AMPLITUDE = """
enable_alias = true
group_type_trait = "plan"
group_value_trait = "name"
track_revenue_per_product = true
track_all_screens = true
traits_to_set_once = ["email"]
"""


def forwarding_config(tmp_path, state_url, fake, forward: bool = True, delivery: str = ""):
    ingest = f'write_keys = ["{WRITE_KEY}"]\nforward = {str(forward).lower()}\n'
    amplitude = f'endpoint = "{fake.url}"\n{AMPLITUDE}' + (f"[delivery]\n{delivery}\n" if delivery else "")
    return write_config(tmp_path, state_url, ingest=ingest, amplitude=amplitude)


def post(client: httpx.Client, batch: list[dict], **extra) -> None:
    answer = client.post("/v1/batch", json={"batch": batch, "writeKey": WRITE_KEY, **extra})
    assert answer.status_code == 200 and answer.json() == {"success": True}, answer.text


def track(user: str, n: int, **extra) -> dict:
    return {"type": "track", "event": "Step", "userId": user, "messageId": f"m-{user}-{n}-{uuid.uuid4().hex[:8]}",
            "properties": {"n": n}, **extra}


def received(fake) -> list[tuple[str, dict]]:
    """(api, body) of every operation the fake accepted, in arrival order."""
    with fake.lock:
        return [(API_PATHS[r["path"]], item) for r in fake.requests if r["status"] == 200 for item in r["items"]]


def rows(state_url: str, sql: str) -> list[dict]:
    engine = sa.create_engine(state_url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text(sql)).mappings()]
    finally:
        engine.dispose()


def wait_until(check, timeout: float = 30.0, what: str = "", proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}" + (f"\n{proc.output()}" if proc else ""))


def event_ids(fake) -> list[str]:
    return [body.get("insert_id") for api, body in received(fake) if api == "event"]


CALLS = [
    {"type": "identify", "userId": "user-0001", "anonymousId": "anon-0001",
     "traits": {"plan": "pro", "email": "a@b.co"},
     "context": {"ip": "203.0.113.5", "library": {"name": "analytics-python", "version": "2.3.3"}}},
    {"type": "track", "userId": "user-0001", "event": "Order Completed",
     "properties": {"revenue": 42.5, "products": [{"product_id": "p-1", "price": 20, "quantity": 1},
                                                  {"product_id": "p-2", "price": 22.5, "quantity": 1}]}},
    {"type": "page", "anonymousId": "anon-0002", "name": "Pricing", "category": "Docs",
     "properties": {"url": "https://example.com/pricing?utm_source=news", "referrer": "https://search.example/"},
     "context": {"page": {"url": "https://example.com/pricing?utm_source=news", "referrer": "https://search.example/"},
                 "campaign": {"source": "news", "medium": "email"}}},
    {"type": "screen", "userId": "user-0002", "name": "Settings", "properties": {"tab": "billing"}},
    {"type": "group", "userId": "user-0001", "groupId": "group-0001", "traits": {"name": "Acme", "plan": "team"}},
    {"type": "alias", "userId": "user-0003", "previousId": "user-0001"},
    {"type": "track", "anonymousId": "anon-0002", "event": "Viewed", "timestamp": "2026-03-01T11:59:58Z"},
]


@pytest.fixture
def fake(amplitude):
    return amplitude


def test_every_call_type_reaches_amplitude_as_translate_gives_it(tmp_path, state_url, servers, fake):
    """Stored first (forward = false), forwarded on the next start: the fake gets exactly the
    operations audsync.mapping.translate makes of the stored messages (as the server normalised
    them: receivedAt, timestamp corrected for skew), with every [amplitude] setting applied."""
    calls = [{**call, "messageId": f"msg-{i:04d}"} for i, call in enumerate(CALLS)]
    store = servers(forwarding_config(tmp_path, state_url, fake, forward=False))
    with store.client() as client:
        post(client, calls[:4], sentAt="2026-03-01T12:00:05Z")
        for call in calls[4:]:
            answer = client.post(f"/v1/{call['type']}", json={**call, "writeKey": WRITE_KEY,
                                                              "sentAt": "2026-03-01T12:00:00Z"})
            assert answer.status_code == 200, answer.text
    assert store.stop() == 0
    assert received(fake) == []
    stored = stored_messages(state_url)
    assert [m["messageId"] for m in stored] == [c["messageId"] for c in calls]

    config_path = forwarding_config(tmp_path, state_url, fake)
    expected = [(op["api"], op["body"]) for message in stored
                for op in translate(message, load(config_path).amplitude)]
    assert {api for api, _ in expected} == {"event", "identify", "groupidentify", "usermap"}
    proc = servers(config_path)
    wait_until(lambda: len(received(fake)) >= len(expected), what="every operation forwarded", proc=proc)
    assert sorted(map(json.dumps, received(fake))) == sorted(map(json.dumps, expected))
    # per product events and the rest: insert_id from messageId, the same at every resend
    assert all(body["insert_id"].startswith("msg-") for api, body in expected if api == "event")
    wait_until(lambda: not rows(state_url, "SELECT id FROM ingest_log"), what="the log emptied", proc=proc)
    assert proc.stop() == 0, proc.output()
    assert len(received(fake)) == len(expected)  # nothing sent twice


def test_live_messages_keep_each_users_order(tmp_path, state_url, servers, fake):
    proc = servers(forwarding_config(tmp_path, state_url, fake))
    users = [f"user-{u:04d}" for u in range(6)]
    sent: dict[str, list[int]] = {user: [] for user in users}
    with proc.client() as client:
        for chunk in range(8):  # requests interleaving the users, while earlier ones are being forwarded
            batch = []
            for n in range(chunk * 5, chunk * 5 + 5):
                for user in users:
                    batch.append(track(user, n))
                    sent[user].append(n)
            post(client, batch)
    total = sum(map(len, sent.values()))
    wait_until(lambda: len(event_ids(fake)) >= total, what="every event forwarded", proc=proc)
    for user in users:
        arrived = [item["event_properties"]["n"] for item in fake.arrivals[user]]
        assert arrived == sent[user], user
    assert proc.stop() == 0, proc.output()


def test_an_outage_loses_nothing_and_drains_afterwards(tmp_path, state_url, servers, fake):
    users = [f"user-{u:04d}" for u in range(3)]
    fake.unavailable.update(users)  # 503 for every request carrying them
    proc = servers(forwarding_config(tmp_path, state_url, fake, delivery=(
        "max_attempts = 2\nbackoff_initial_s = 0.05\nbackoff_max_s = 0.1\n")))
    batch = [track(user, n) for n in range(10) for user in users]
    with proc.client() as client:
        post(client, batch)
    # the Deliverer's retries run out; the messages go back to pending and are tried again
    proc.wait_for("not acknowledged by Amplitude and go again")
    failed = [r for r in fake.requests if r["status"] == 503]
    assert failed and event_ids(fake) == []
    pending = rows(state_url, "SELECT status FROM ingest_log")
    assert len(pending) == len(batch) and {r["status"] for r in pending} == {"pending"}
    fake.unavailable.clear()
    wait_until(lambda: len(event_ids(fake)) >= len(batch), what="the backlog drained", proc=proc)
    assert sorted(event_ids(fake)) == sorted(m["messageId"] for m in batch)
    for user in users:
        assert [i["event_properties"]["n"] for i in fake.arrivals[user]] == list(range(10))
    wait_until(lambda: not rows(state_url, "SELECT id FROM ingest_log"), what="the log emptied", proc=proc)
    assert proc.stop() == 0, proc.output()


def test_a_message_refused_for_good_is_recorded_with_its_reason_and_not_retried(tmp_path, state_url, servers, fake):
    fake.reject.add("user-bad01")
    proc = servers(forwarding_config(tmp_path, state_url, fake))
    bad, good = track("user-bad01", 1), track("user-good1", 1)
    with proc.client() as client:
        post(client, [bad, good])
    wait_until(lambda: event_ids(fake) == [good["messageId"]], what="the good message forwarded", proc=proc)
    # The good message may reach the fake before the round that carried both is settled.
    refused = wait_until(lambda: rows(state_url, "SELECT message_id, status, reason FROM ingest_log "
                                                 "WHERE status <> 'pending'"),
                         what="the refusal recorded", proc=proc)
    assert [(r["message_id"], r["status"]) for r in refused] == [(bad["messageId"], "rejected")]
    assert "user_properties" in refused[0]["reason"] or "invalid" in refused[0]["reason"].lower()
    tries = sum(1 for r in fake.requests for i in r["items"] if i.get("user_id") == "user-bad01")
    time.sleep(1.0)  # rounds go on polling: the refused message is not among what they claim
    fake.reject.clear()
    with proc.client() as client:
        post(client, [track("user-good1", 2)])
    wait_until(lambda: len(event_ids(fake)) == 2, what="a later message forwarded", proc=proc)
    assert sum(1 for r in fake.requests for i in r["items"] if i.get("user_id") == "user-bad01") == tries
    assert proc.stop() == 0, proc.output()
    assert "1 messages refused for good" in proc.output()


def test_sigkill_after_a_burst_of_200s_loses_nothing_acknowledged(tmp_path, state_url, servers, fake):
    """Issue 16 point 2: every message answered 200 reaches Amplitude once a restarted server
    forwards; the killed server's claims are taken back at once (same host, its pid gone)."""
    fake.delay_s = 0.05  # the kill lands while rounds are in flight
    config = forwarding_config(tmp_path, state_url, fake)
    proc = servers(config)
    acknowledged: list[str] = []

    def burst(worker: int) -> list[str]:
        ids = []
        with httpx.Client(base_url=proc.url, timeout=10) as client:
            for n in range(15):
                batch = [track(f"user-{worker:02d}{k:02d}", n) for k in range(4)]
                try:
                    answer = client.post("/v1/batch", json={"batch": batch, "writeKey": WRITE_KEY})
                except httpx.HTTPError:
                    break
                if answer.status_code == 200:
                    ids += [m["messageId"] for m in batch]
        return ids

    proc.port  # started
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(burst, w) for w in range(4)]
        for future in futures:
            acknowledged += future.result()
    proc.proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert len(acknowledged) == 4 * 15 * 4
    fake.delay_s = 0.0
    again = servers(config)
    # well within the killed server's leases: they were taken back, not waited out
    wait_until(lambda: set(acknowledged) <= set(event_ids(fake)), timeout=15, what="every acknowledged message",
               proc=again)
    wait_until(lambda: not rows(state_url, "SELECT id FROM ingest_log"), what="the log emptied", proc=again)
    assert again.stop() == 0, again.output()
    # what was in flight at the kill went again (at least once), with the same insert_id
    assert "took back the users" in again.output()
    assert sorted(e["insert_id"] for e in fake.events) == sorted(acknowledged)


def test_sigterm_settles_the_round_in_flight_and_the_rest_goes_on_the_next_start(tmp_path, state_url, servers,
                                                                                  fake):
    fake.delay_s = 0.4  # each request of the round takes a while; a user's messages go one after another
    config = forwarding_config(tmp_path, state_url, fake)
    proc = servers(config)
    first = [track(f"user-a{u:03d}", n) for n in range(5) for u in range(20)]
    later = [track(f"user-b{u:03d}", n) for n in range(3) for u in range(10)]
    with proc.client() as client:
        post(client, first)
        wait_until(lambda: fake.requests, what="the first round under way", proc=proc)
        post(client, later)  # stored while the round runs: not in it
    started = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, proc.output()
    assert time.monotonic() - started < 30
    # the round in flight was handed to Amplitude whole and settled
    assert sorted(event_ids(fake)) == sorted(m["messageId"] for m in first)
    left = rows(state_url, "SELECT message_id, status FROM ingest_log ORDER BY id")
    assert [r["message_id"] for r in left] == [m["messageId"] for m in later]
    assert {r["status"] for r in left} == {"pending"}
    fake.delay_s = 0.0
    again = servers(config)
    wait_until(lambda: len(event_ids(fake)) == len(first) + len(later), what="the rest forwarded", proc=again)
    assert sorted(event_ids(fake)[len(first):]) == sorted(m["messageId"] for m in later)
    assert again.stop() == 0, again.output()


def test_forward_false_only_stores(tmp_path, state_url, servers, fake):
    proc = servers(forwarding_config(tmp_path, state_url, fake, forward=False))
    with proc.client() as client:
        post(client, [track("user-0001", 1)])
    time.sleep(0.5)
    assert proc.stop() == 0
    assert fake.requests == [] and len(stored_messages(state_url)) == 1
