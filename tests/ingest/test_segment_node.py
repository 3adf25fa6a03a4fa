"""The official @segment/analytics-node client (tests/clients, run by node), pointed at `audsync
serve` by its host option only: every call type is accepted, and the fake Amplitude receives
exactly what `audsync translate` makes of the stored messages."""

from __future__ import annotations

import subprocess

from .conftest import WRITE_KEY
from .segment_clients import (AMPLITUDE, NODE_DIR, assert_settings_at_work, canonical, forwarding_config, node,
                              node_module, received, record_stored, recorded, translated, wait_until)


def test_every_call_of_the_node_library_reaches_amplitude_as_translate_gives_it(tmp_path, state_url, servers,
                                                                                amplitude):
    executable = node()
    node_module("@segment/analytics-node")
    config = forwarding_config(tmp_path, state_url, amplitude, AMPLITUDE)
    proc = servers(config)
    url = proc.url  # waits for serve to listen: its tables are made
    record_stored(state_url)
    sent = subprocess.run([executable, "send-node.mjs", url, WRITE_KEY], cwd=NODE_DIR, capture_output=True,
                          text=True, timeout=60)
    assert sent.returncode == 0, sent.stdout + sent.stderr + proc.output()

    stored = recorded(state_url)
    assert [m["type"] for m in stored] == ["identify", "track", "page", "screen", "group", "alias", "track"]
    assert all(m["context"]["library"]["name"] == "@segment/analytics-node" for m in stored)
    assert all(m["receivedAt"] and m["timestamp"] for m in stored)
    expected = translated(stored, config)
    assert_settings_at_work(expected, "@segment/analytics-node")
    page = next(body for api, body in expected if api == "event" and body["event_type"] == "Loaded a Page")
    assert page["user_properties"]["$set"]["utm_source"] == "news"
    wait_until(lambda: len(received(amplitude)) >= len(expected), what="every operation forwarded", proc=proc)
    assert canonical(received(amplitude)) == canonical(expected)
    assert proc.stop() == 0, proc.output()
    assert len(received(amplitude)) == len(expected)  # nothing sent twice
