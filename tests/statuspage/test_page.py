"""The status page over HTTP, on SQLite and PostgreSQL states made by real syncs: what it never
shows (keys, passwords, markup from user data), what it refuses (anything but GET), its clock,
its bounded history, and its answer when the state database is away."""

from __future__ import annotations

import dataclasses
import html
import re

from audsync.config import load
from audsync.state import StateStore

from .conftest import (API_KEY, HOSTILE_EVENT, HOSTILE_KEY, HOSTILE_NAME, HOSTILE_USER, PG_PASSWORD, SECRET_KEY,
                       WRITE_KEY)
from .pages import fetch, page_server

HOSTILE = (HOSTILE_NAME, HOSTILE_EVENT, HOSTILE_USER)


def test_the_pages_show_no_secret_and_user_data_only_as_text(status_state):
    with page_server(status_state.config, lambda: status_state.now) as base:
        pages = {path: fetch(base + path) for path in ["/"] + [f"/audiences/{k}" for k in status_state.keys]}
    for path, (status, headers, body) in pages.items():
        assert status == 200, path
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'none': no script at all
        assert headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert '<meta http-equiv="refresh" content="30">' in body  # it reloads itself
        for secret in (API_KEY, SECRET_KEY, WRITE_KEY, PG_PASSWORD):
            assert secret not in body, (path, secret)
        assert "<script" not in body and "<form" not in body and "<img" not in body, path
        assert not re.search(r'\b(src|href)="(https?:)?//', body), path  # nothing from the network
    index = pages["/"][2]
    for text in HOSTILE:
        assert html.escape(text, quote=False) in index
    assert html.escape(HOSTILE_NAME, quote=False) in pages[f"/audiences/{HOSTILE_KEY}"][2]
    if status_state.state_url.startswith("postgresql"):  # the SQL source's URL, its password masked
        assert "postgres:***@127.0.0.1" in index


def test_only_get_and_head_are_answered(sqlite_status_state):
    with page_server(sqlite_status_state.config, lambda: sqlite_status_state.now) as base:
        for path in ("/", f"/audiences/{HOSTILE_KEY}", "/metrics", "/healthz"):
            for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
                status, headers, _ = fetch(base + path, method)
                assert (status, headers.get("Allow")) == (405, "GET, HEAD"), (method, path)
            status, _, body = fetch(base + path, "HEAD")
            assert (status, body) == (200, "")


def test_an_unknown_audience_is_a_404_page(sqlite_status_state):
    with page_server(sqlite_status_state.config, lambda: sqlite_status_state.now) as base:
        status, _, body = fetch(base + "/audiences/%3Cb%3Enope%3C%2Fb%3E")
    assert status == 404
    assert "No audience with the key &#39;&lt;b&gt;nope&lt;/b&gt;&#39; is configured." in body


def test_times_are_relative_to_the_clock_given(sqlite_status_state):
    from audsync.status_report import status

    last = status(sqlite_status_state.config)[0]["last_runs"][0]["started_at"]
    with page_server(sqlite_status_state.config, lambda: last + 185) as base:
        _, _, body = fetch(f"{base}/audiences/{HOSTILE_KEY}")
    field = re.search(r'data-field="last-run">(.*?)</dd>', body, re.S).group(1)
    assert "(3 min ago)" in field and "UTC" in field


def test_history_stays_bounded_to_the_last_90_runs(sqlite_status_state):
    config = sqlite_status_state.config
    store = StateStore(config.state.url)
    try:
        row = store.find_audience(config.amplitude.destination_id, "lifetime_value")
        for _ in range(120):
            store.finish_run(store.start_run(row.id, "run"), "ok", rows_read=5)
    finally:
        store.close()
    with page_server(config, lambda: sqlite_status_state.now + 60) as base:
        _, _, body = fetch(f"{base}/audiences/lifetime_value")
    runs = body[body.index('<table id="runs">'):]
    assert runs.count("<tr>") == 1 + 90  # the head row and 90 runs
    assert body.count('<circle ') == 90
    assert 'data-series="entered" data-marks="90"' in body


def test_a_state_database_away_is_said_on_the_page(tmp_path, sqlite_status_state):
    away = f"postgresql+psycopg://postgres:{PG_PASSWORD}@127.0.0.1:1/nothing?connect_timeout=2"
    config = dataclasses.replace(sqlite_status_state.config,
                                 state=dataclasses.replace(sqlite_status_state.config.state, url=away))
    with page_server(config, lambda: sqlite_status_state.now) as base:
        status, _, body = fetch(base + "/")
    assert status == 503
    assert "State database unavailable" in body and PG_PASSWORD not in body


def test_a_state_no_run_or_serve_has_touched_shows_every_audience_never_run(tmp_path, state_url):
    path = tmp_path / "audsync.toml"
    (tmp_path / "a.csv").write_text("user_id\n")
    path.write_text(f'[state]\nurl = "{state_url}"\n[amplitude]\napi_key = "{API_KEY}"\n'
                    f'[ingest]\nwrite_keys = ["{WRITE_KEY}"]\n'
                    '[[audiences]]\nname = "Alpha"\nsource = { type = "file", path = "a.csv" }\n')
    with page_server(load(path, environ={}), lambda: 1_780_000_000.0) as base:
        status, _, index = fetch(base + "/")
        assert fetch(base + "/audiences/alpha")[0] == 200
    assert status == 200
    assert "never run" in index and 'id="ingest"' in index  # write keys set: its section, all zeros
    assert "Per minute" not in index  # no ingest table yet, no minutes
