"""Observability of `audsync serve` (issue 16 points 3 and 9): /metrics on the serve port and the
ingest section of `audsync status`, from real serve processes over loopback forwarding to the
loopback fake Amplitude, on a real SQLite file and the real PostgreSQL."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from audsync.config import load
from audsync.ingest.metrics import forward_reason_code, reason_code
from audsync.status_report import status

from .conftest import AUDSYNC, WRITE_KEY, stored_rejections, write_config
from .test_forward import forwarding_config, rows, track, wait_until


def scrape(proc) -> dict[tuple[str, tuple], float]:
    """/metrics, without any credential, as {(sample name, sorted labels): value}."""
    answer = httpx.get(f"{proc.url}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    assert WRITE_KEY not in answer.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def send(proc, batch: list, path: str = "/v1/batch") -> dict:
    body = {"batch": batch, "writeKey": WRITE_KEY} if path == "/v1/batch" else {**batch[0], "writeKey": WRITE_KEY}
    with proc.client() as client:
        answer = client.post(path, json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def cli(*args: str, cwd) -> subprocess.CompletedProcess:
    result = subprocess.run([AUDSYNC, *args], capture_output=True, text=True, cwd=cwd, timeout=60)
    assert result.returncode == 0, result.stderr
    return result


NO_USER = {"type": "track", "event": "Orphan", "messageId": "bad-no-user", "properties": {"n": 1}}
NO_EVENT = {"type": "track", "userId": "user-0009", "messageId": "bad-no-event"}


def test_metrics_count_what_was_accepted_rejected_by_field_forwarded_and_its_lag(tmp_path, state_url, servers,
                                                                                  amplitude):
    amplitude.reject.add("user-refused")
    proc = servers(forwarding_config(tmp_path, state_url, amplitude))
    good = [track("user-0001", 1), track("user-0002", 1), track("user-0003", 1),
            {"type": "identify", "userId": "user-0001", "traits": {"plan": "pro"}, "messageId": "id-0001"}]
    refused = track("user-refused", 1)
    answer = send(proc, [good[0], NO_USER, good[1], NO_EVENT, good[2], good[3], refused])
    assert [r["index"] for r in answer["rejected"]] == [1, 3]
    send(proc, [good[0]])  # a resend: acknowledged, not stored again
    wait_until(lambda: not rows(state_url, "SELECT id FROM ingest_log WHERE status = 'pending'"),
               what="everything forwarded", proc=proc)
    samples = wait_until(lambda: (s := scrape(proc)) and
                         value(s, "audsync_ingest_forward_rejected_total", reason="invalid_field") and s,
                         what="the refusal counted", proc=proc)

    assert value(samples, "audsync_ingest_messages_accepted_total", type="track") == 4
    assert value(samples, "audsync_ingest_messages_accepted_total", type="identify") == 1
    assert value(samples, "audsync_ingest_messages_duplicate_total") == 1
    assert value(samples, "audsync_ingest_messages_rejected_total", reason="userId") == 1
    assert value(samples, "audsync_ingest_messages_rejected_total", reason="event") == 1
    assert value(samples, "audsync_ingest_messages_forwarded_total") == 4
    assert value(samples, "audsync_ingest_forward_rejected_total", reason="invalid_field") == 1
    assert value(samples, "audsync_ingest_forward_lag_seconds_count") == 4
    lag = value(samples, "audsync_ingest_forward_lag_seconds_sum")
    assert 0 < lag < 4 * 30
    assert value(samples, "audsync_ingest_forward_lag_seconds_bucket", le="+Inf") == 4
    assert value(samples, "audsync_ingest_backlog_messages") == 0
    assert value(samples, "audsync_ingest_oldest_pending_age_seconds") == 0
    assert value(samples, "audsync_ingest_backlog_read") == 1
    assert value(samples, "audsync_ingest_requests_total", code="200") == 2
    # the label is the field at fault, never the reason's text with the values in it
    assert {dict(k[1]).get("reason") for k in samples if k[0] == "audsync_ingest_messages_rejected_total"} \
        == {"userId", "event"}
    assert proc.stop() == 0, proc.output()


def test_without_forwarding_the_backlog_is_what_is_stored_and_needs_no_credential(tmp_path, state_url, servers,
                                                                                 amplitude):
    proc = servers(forwarding_config(tmp_path, state_url, amplitude, forward=False))
    send(proc, [track(f"user-{n:04d}", n) for n in range(5)] + [NO_USER])
    with proc.client() as client:
        assert client.post("/v1/nowhere", json={}).status_code == 404
    samples = scrape(proc)
    stored = len(rows(state_url, "SELECT id FROM ingest_log WHERE status = 'pending'"))
    assert stored == 5
    assert value(samples, "audsync_ingest_backlog_messages") == stored
    assert value(samples, "audsync_ingest_oldest_pending_age_seconds") >= 0
    assert value(samples, "audsync_ingest_messages_accepted_total", type="track") == 5
    assert value(samples, "audsync_ingest_messages_rejected_total", reason="userId") == 1
    assert value(samples, "audsync_ingest_messages_forwarded_total") == 0
    assert value(samples, "audsync_ingest_forward_lag_seconds_count") == 0
    assert value(samples, "audsync_ingest_requests_total", code="404") == 1
    assert amplitude.requests == []
    assert proc.stop() == 0, proc.output()


AUDIENCE = '''
[[audiences]]
name = "Newsletter Subscribers"
source = { type = "file", path = "members.csv" }
'''


def test_status_shows_the_ingest_backlog_rejections_by_reason_and_the_latest_examples(tmp_path, state_url, servers,
                                                                                    amplitude):
    amplitude.reject.add("user-refused")
    config = write_config(tmp_path, state_url, ingest=f'write_keys = ["{WRITE_KEY}"]\nforward = true\n',
                          amplitude=f'endpoint = "{amplitude.url}"\n{AUDIENCE}')
    (tmp_path / "members.csv").write_text("user_id\nuser-0001\n")
    proc = servers(config)
    send(proc, [track("user-0001", 1), NO_USER, NO_EVENT, track("user-refused", 1)])
    send(proc, [{**NO_EVENT, "messageId": "bad-single"}], path="/v1/track")  # a single call carries its key
    wait_until(lambda: rows(state_url, "SELECT id FROM ingest_log WHERE status = 'rejected'"),
               what="the refusal recorded", proc=proc)
    assert proc.stop() == 0, proc.output()
    # a stopped server's messages are the backlog status shows
    stopped = servers(forwarding_config(tmp_path, state_url, amplitude, forward=False))
    send(stopped, [track("user-0002", 1), track("user-0003", 1)])
    assert stopped.stop() == 0, stopped.output()
    assert all(WRITE_KEY not in (r["example"] or "") for r in stored_rejections(state_url))

    config = write_config(tmp_path, state_url, ingest=f'write_keys = ["{WRITE_KEY}"]\nforward = true\n',
                          amplitude=f'endpoint = "{amplitude.url}"\n{AUDIENCE}')
    shown = cli("status", "--config", str(config), cwd=tmp_path).stdout
    data = json.loads(cli("status", "--config", str(config), "--json", cwd=tmp_path).stdout)

    assert set(data) == {"audiences", "ingest"}
    # the audiences part is what it always was (next_run aside: a schedule boundary may pass meanwhile)
    assert [{**e, "next_run": None} for e in json.loads(json.dumps(status(load(config, environ={})), default=str))] \
        == [{**e, "next_run": None} for e in data["audiences"]]
    assert [e["name"] for e in data["audiences"]] == ["Newsletter Subscribers"]
    ingest = data["ingest"]
    assert (ingest["pending"], ingest["in_flight"]) == (2, 0)
    assert ingest["oldest_pending_age_s"] >= 0
    assert ingest["stored_last_24h"] == 4
    assert ingest["rejected"] == 3
    assert ingest["rejected_by_reason"] == [
        {"reason": "event: a track call needs an event name", "messages": 2},
        {"reason": "userId: the message has neither a userId nor an anonymousId", "messages": 1}]
    assert ingest["forward_rejected"] == 1
    (refusal,) = ingest["forward_rejected_by_reason"]
    assert refusal["messages"] == 1 and refusal["reason"].startswith("invalid field: user_properties")
    latest = ingest["latest_rejections"]
    assert [(e["index"], e["messageId"]) for e in latest] == [(0, "bad-single"), (2, "bad-no-event"),
                                                             (1, "bad-no-user")]
    assert all(e["source"].startswith("wk-") and e["received_at"] > 0 for e in latest)
    assert json.loads(latest[1]["example"]) == NO_EVENT

    assert "Newsletter Subscribers (newsletter_subscribers, " in shown
    assert "ingest: 2 pending (oldest " in shown and "4 stored in the last 24 h" in shown
    assert "rejected at validation: 3; refused when forwarded: 1" in shown
    assert "rejected 2: event: a track call needs an event name" in shown
    assert "refused by Amplitude 1: invalid field: user_properties" in shown
    assert "message 2 (messageId bad-no-event) from wk-" in shown
    for output in (shown, json.dumps(data)):
        assert WRITE_KEY not in output and "test-api-key-123" not in output


def test_status_leaves_the_ingest_out_where_serve_is_neither_configured_nor_used(tmp_path, state_url):
    config = write_config(tmp_path, state_url, ingest="forward = false\n", amplitude=AUDIENCE)
    (tmp_path / "members.csv").write_text("user_id\nuser-0001\n")
    cli("db", "upgrade", "--config", str(config), cwd=tmp_path)
    data = json.loads(cli("status", "--config", str(config), "--json", cwd=tmp_path).stdout)
    assert data["ingest"] is None and len(data["audiences"]) == 1
    assert "ingest" not in cli("status", "--config", str(config), cwd=tmp_path).stdout


def test_status_shows_an_empty_ingest_section_once_serve_is_configured(tmp_path, sqlite_url):
    config = write_config(tmp_path, sqlite_url)
    data = json.loads(cli("status", "--config", str(config), "--json", cwd=tmp_path).stdout)
    assert data == {"audiences": [], "ingest": {
        "pending": 0, "in_flight": 0, "oldest_pending_at": None, "oldest_pending_age_s": None,
        "stored_last_24h": 0, "rejected": 0, "rejected_by_reason": [], "forward_rejected": 0,
        "forward_rejected_by_reason": [], "latest_rejections": []}}
    assert "ingest: 0 pending, 0 in flight" in cli("status", "--config", str(config), cwd=tmp_path).stdout


@pytest.mark.parametrize(("reason", "code"), [
    ("userId: the message has neither a userId nor an anonymousId", "userId"),
    ("properties.products[3]: must be an object, not a string", "properties"),
    ("integrations.Amplitude.groups.org-42: must be a string", "integrations"),
    ("type: 'boom' is not one of track, page", "type"),
    ("customer_4711: something a future check says", "other"),
    ("userIdentity: not a field of the spec", "other"),
])
def test_a_rejection_label_is_the_top_level_field_at_fault_or_other(reason, code):
    assert reason_code(reason) == code


@pytest.mark.parametrize(("reason", "code"), [
    ("invalid field: user_properties (Invalid field values on some events)", "invalid_field"),
    ("missing field: user_id", "missing_field"),
    ("invalid id length: user_id", "invalid_id_length"),
    ("invalid: userId: 'null' is a value Amplitude refuses as an id", "invalid_message"),
    ("413: payload too large even alone", "too_large"),
    ("400: Invalid request path", "bad_request"),
    ("device silenced by Amplitude", "silenced"),
    ("something new from Amplitude for user 4711", "other"),
])
def test_a_forwarding_refusal_label_is_its_kind(reason, code):
    assert forward_reason_code(reason) == code


def test_a_scrape_still_answers_when_the_state_database_does_not(tmp_path, caplog):
    from audsync.ingest.metrics import IngestMetrics
    from audsync.state.ingest import IngestLog
    from audsync.state.store import StateStore

    store = StateStore(f"sqlite:///{tmp_path / 'never-migrated.db'}")  # no ingest tables: every read fails
    try:
        metrics = IngestMetrics(IngestLog(store))
        metrics.on_rejected(["userId: the message has neither a userId nor an anonymousId"])
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(metrics.render().decode()) for s in family.samples}
    finally:
        store.close()
    assert value(samples, "audsync_ingest_backlog_read") == 0
    assert value(samples, "audsync_ingest_messages_rejected_total", reason="userId") == 1
    assert "could not read the backlog from the state database" in caplog.text
