"""The real segment-analytics-python library, pointed at `audsync serve` by its host only: every call
type is stored as sent, and a forwarding serve gives the fake Amplitude exactly what `audsync
translate` makes of the stored messages."""

from __future__ import annotations

import pytest
from segment.analytics import Client

from .conftest import WRITE_KEY, stored_messages, write_config
from .segment_clients import (AMPLITUDE, assert_settings_at_work, canonical, forwarding_config, received,
                              record_stored, recorded, translated, wait_until)


@pytest.mark.parametrize("gzip", [False, True])
def test_every_call_of_the_python_library_is_stored(tmp_path, state_url, servers, gzip):
    proc = servers(write_config(tmp_path, state_url))
    errors: list = []
    client = Client(write_key=WRITE_KEY, host=proc.url, gzip=gzip, on_error=lambda e, batch: errors.append(e),
                    max_retries=0)
    try:
        client.identify("user-0001", {"plan": "pro", "email": "ada@example.com"})
        client.track("user-0001", "Order Completed", {"revenue": 42.5, "currency": "EUR"})
        client.page("user-0001", "Docs", "Getting Started", {"url": "https://example.com/docs"})
        client.screen("user-0001", "App", "Settings")
        client.group("user-0001", "group-0001", {"name": "Acme"})
        client.alias("anon-0001", "user-0001")
        client.track(anonymous_id="anon-0002", event="Viewed")
        client.flush()
    finally:
        client.shutdown()
    assert errors == []
    stored = stored_messages(state_url)
    assert [m["type"] for m in stored] == ["identify", "track", "page", "screen", "group", "alias", "track"]
    identify, track, page, screen, group, alias, anonymous = stored
    assert identify["traits"] == {"plan": "pro", "email": "ada@example.com"}
    assert track["event"] == "Order Completed" and track["properties"]["revenue"] == 42.5
    assert (page["category"], page["name"]) == ("Docs", "Getting Started")
    assert screen["name"] == "Settings"
    assert group["groupId"] == "group-0001"
    assert (alias["previousId"], alias["userId"]) == ("anon-0001", "user-0001")
    assert anonymous["anonymousId"] == "anon-0002" and anonymous["userId"] is None
    assert all(m["context"]["library"]["name"] == "analytics-python" for m in stored)
    assert all(m["receivedAt"] and m["sentAt"] and m["originalTimestamp"] for m in stored)
    assert proc.stop() == 0, proc.output()


def test_every_call_of_the_python_library_reaches_amplitude_as_translate_gives_it(tmp_path, state_url, servers,
                                                                                  amplitude):
    config = forwarding_config(tmp_path, state_url, amplitude, AMPLITUDE)
    proc = servers(config)
    url = proc.url  # waits for serve to listen: its tables are made
    record_stored(state_url)
    errors: list = []
    client = Client(write_key=WRITE_KEY, host=url, on_error=lambda e, batch: errors.append(e), max_retries=0)
    try:
        client.identify("user-0001", {"plan": "pro", "email": "ada@example.com", "logins": 3})
        client.track("user-0001", "Order Completed",
                     {"revenue": 42.5, "products": [{"product_id": "p-1", "price": 20, "quantity": 1},
                                                    {"product_id": "p-2", "price": 22.5, "quantity": 1}]})
        client.page(anonymous_id="anon-0002", category="Docs", name="Getting Started",
                    properties={"url": "https://example.com/docs?utm_source=news"},
                    context={"campaign": {"source": "news", "medium": "email"},
                             "page": {"referrer": "https://search.example/"}})
        client.screen("user-0002", "App", "Settings", {"tab": "billing"})
        client.group("user-0001", "group-0001", {"name": "Acme", "plan": "team"})
        client.alias("user-0001", "user-0003")
        client.track(anonymous_id="anon-0002", event="Viewed")
        client.flush()
    finally:
        client.shutdown()
    assert errors == []
    stored = recorded(state_url)
    assert [m["type"] for m in stored] == ["identify", "track", "page", "screen", "group", "alias", "track"]
    expected = translated(stored, config)
    assert_settings_at_work(expected, "analytics-python")
    wait_until(lambda: len(received(amplitude)) >= len(expected), what="every operation forwarded", proc=proc)
    assert canonical(received(amplitude)) == canonical(expected)
    assert proc.stop() == 0, proc.output()
    assert len(received(amplitude)) == len(expected)  # nothing sent twice
