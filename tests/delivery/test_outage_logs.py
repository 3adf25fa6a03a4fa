"""Operators can read a network failure: it names the endpoint URL (never the API key), and a long
outage logs its first failure and then summaries, not a warning per failed request."""

from __future__ import annotations

import logging
import socket

import pytest

from audsync.delivery import UNDELIVERED, Deliverer
from audsync.delivery.transport import Transport

from .conftest import API_KEY, amplitude_settings, fast_delivery


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def delivery_log():
    """The delivery logger's records, whatever logging setup an earlier test left behind."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    logger = logging.getLogger("audsync.delivery")
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.DEBUG
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_network_error_names_the_endpoint_url_without_credentials():
    port = closed_port()
    settings = amplitude_settings(endpoint=f"http://someone:pw123@127.0.0.1:{port}")
    transport = Transport(settings, fast_delivery(timeout_s=0.5))
    try:
        answer = transport.send("identify", [b'{"user_id":"user-1"}'])
    finally:
        transport.close()
    assert answer.status == 0
    assert f"network error on http://127.0.0.1:{port}/identify (ConnectError" in answer.error
    assert "pw123" not in answer.error and API_KEY not in answer.error


def test_a_long_outage_logs_its_first_failure_then_a_summary_not_a_warning_per_request(delivery_log):
    port = closed_port()
    settings = amplitude_settings(endpoint=f"http://127.0.0.1:{port}")
    operations = [{"api": "identify", "body": {"user_id": f"user-{i}", "user_properties": {"$set": {"n": i}}}}
                  for i in range(3)]
    outcomes = []
    with Deliverer(settings, fast_delivery(max_attempts=40)) as deliverer:
        stats = deliverer.deliver(enumerate(operations), lambda batch: outcomes.extend(batch.each()))
    assert stats.requests == 40 and {o.status for o in outcomes} == {UNDELIVERED}

    warnings = [r for r in delivery_log if r.levelno >= logging.WARNING]
    assert len(warnings) <= 3, [r.getMessage() for r in warnings]  # the first, at most one per 30 s, the last
    first, last = warnings[0], warnings[-1]
    assert first.getMessage().startswith("amplitude answered nothing on identify")
    assert f"127.0.0.1:{port}/identify" in first.error
    assert "(40 since the first)" in last.getMessage() and f"127.0.0.1:{port}/identify" in last.getMessage()
    assert all(API_KEY not in r.getMessage() + str(r.__dict__) for r in delivery_log)


def test_the_end_of_an_outage_is_logged_with_the_number_of_failed_requests(fake, delivery_log):
    fake.unavailable.add("user-1")
    settings = amplitude_settings(fake)
    answered = []

    def on_response(api, status, items):
        answered.append(status)
        if len(answered) == 5:
            fake.unavailable.clear()

    with Deliverer(settings, fast_delivery(max_attempts=10), on_response=on_response) as deliverer:
        deliverer.deliver(enumerate([{"api": "identify", "body": {"user_id": "user-1",
                                                                  "user_properties": {"$set": {"n": 1}}}}]),
                          lambda batch: None)
    messages = [r.getMessage() for r in delivery_log]
    assert answered == [503] * 5 + [200]
    assert sum(m.startswith("amplitude answered 503") for m in messages) == 1
    assert "amplitude answers again after 5 failed requests" in messages
