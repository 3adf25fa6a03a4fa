"""The real segment-analytics-python library, pointed at `audsync serve` by its host only."""

from __future__ import annotations

import pytest
from segment.analytics import Client

from .conftest import WRITE_KEY, stored_messages, write_config


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
