"""The status page in Debian's Chromium (Playwright, no browser download), on SQLite and
PostgreSQL states made by real syncs: the numbers it shows are `audsync status --json`'s, its
charts have a mark per run (per minute for the ingest), hostile user data stays text and runs
nothing, it is keyboard navigable, and it fits a 1280 px screen and a 390 px phone. Screenshots
go to test-artifacts/statuspage/ (ignored by git); with AUDSYNC_UPDATE_SCREENSHOT=1 the SQLite
run also writes README's docs/status-page.png."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ingest.segment_clients import chromium, missing  # tests/ingest/segment_clients.py

from .conftest import FORWARD_LAGS, HOSTILE_EVENT, HOSTILE_KEY, HOSTILE_NAME, HOSTILE_USER
from .pages import page_server

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "statuspage"
README_SCREENSHOT = ROOT / "docs" / "status-page.png"
SERIES = ("entered", "exited", "changed", "rejected")


def _status_json(path: Path, capsys) -> dict:
    from audsync.cli import main

    capsys.readouterr()
    assert main(["status", "--config", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _check_numbers(page, shown: dict) -> None:
    for entry in shown["audiences"]:
        key = entry["key"]
        row = page.locator(f'#summary tr[data-audience="{key}"]')
        card = page.locator(f"#audience-{key}")
        assert row.locator("th a").inner_text() == entry["name"]
        for name in ("members", "pending", "rejected"):
            assert row.locator(f'[data-field="{name}"]').inner_text() == f"{entry[name]:,}", (key, name)
            assert card.locator(f'[data-field="{name}"]').inner_text() == f"{entry[name]:,}", (key, name)
        runs = entry["last_runs"]
        assert len(runs) == 3
        assert runs[0]["status"] in row.locator('[data-field="result"]').inner_text()
        assert runs[0]["status"] in card.locator('[data-field="last-run"]').inner_text()
        assert card.locator('[data-field="source"]').inner_text() == {
            "script_alert_1_script_buyers": "file", "lifetime_value": "file", "newsletter": "SQL",
            "event_seen": "rule"}[key]
        # One point per run for members, one bar per run for each count, oldest first.
        assert card.locator('svg[data-series="members"] circle').count() == len(runs)
        for series in SERIES:
            bars = card.locator(f'svg[data-series="{series}"] rect')
            assert bars.count() == len(runs), (key, series)
            titles = [bars.nth(i).locator("title").text_content() for i in range(len(runs))]
            assert [t.rsplit(": ", 1)[1] for t in titles] == [f"{r[series]:,} {series}" for r in reversed(runs)]
    ingest = shown["ingest"]
    assert page.locator('[data-field="ingest-pending"]').inner_text().startswith(f"{ingest['pending']:,} message")
    assert page.locator('[data-field="ingest-rejected"]').inner_text().startswith(f"{ingest['rejected']:,} message")
    assert page.locator('[data-field="ingest-stored"]').inner_text().startswith(
        f"{ingest['stored_last_24h']:,} message")
    assert page.locator('[data-field="ingest-forward-rejected"]').inner_text().startswith(
        f"{ingest['forward_rejected']:,} message")
    for series in ("accepted", "forwarded"):
        assert page.locator(f'svg[data-series="{series}"] rect').count() == 60
    accepted = page.locator('svg[data-series="accepted"] rect title').all_text_contents()
    assert sum(int(t.rsplit(": ", 1)[1].split()[0]) for t in accepted) == ingest["stored_last_24h"]
    forwarded = page.locator('svg[data-series="forwarded"] rect title').all_text_contents()
    assert sum(int(t.rsplit(": ", 1)[1].split()[0]) for t in forwarded) == len(FORWARD_LAGS)
    assert page.locator('[data-field="ingest-lag"]').inner_text().startswith(
        f"{sum(FORWARD_LAGS) / len(FORWARD_LAGS):.2f} s on average, {max(FORWARD_LAGS):.2f} s at most")
    assert page.locator('svg[data-series="forward lag, slowest message (s)"] circle').count() == 1


def _check_hostile_text(page, dialogs: list[str], heading: str) -> None:
    assert page.locator(heading).inner_text() == HOSTILE_NAME
    assert page.locator(f"#audience-{HOSTILE_KEY} [data-field=user-id]").first.inner_text() == HOSTILE_USER
    assert page.locator("script, img, form, iframe").count() == 0
    assert dialogs == []


def _check_keyboard(page) -> None:
    page.keyboard.press("Tab")
    focused = page.evaluate("""() => { const e = document.activeElement, s = getComputedStyle(e);
        return {text: e.textContent, outline: s.outlineStyle, width: s.outlineWidth,
                left: e.getBoundingClientRect().left}; }""")
    assert focused["text"] == "Skip to content"
    assert focused["outline"] != "none" and focused["width"] != "0px" and focused["left"] >= 0  # seen when focused
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#main"
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("Tab")  # on from the main content: the summary table's scrollable region
    assert page.evaluate("document.activeElement.closest('main') !== null")


def _check_history(page, entry: dict) -> None:
    rows = page.locator("#runs tbody tr")
    assert rows.count() == len(entry["last_runs"])
    for i, run in enumerate(entry["last_runs"]):
        cells = rows.nth(i).locator("td")
        assert run["status"] in cells.nth(1).inner_text()
        assert [cells.nth(j).inner_text() for j in range(3, 11)] == [
            f"{run[name]:,}" for name in ("rows_read", "entered", "exited", "changed", "unset", "delivered",
                                          "rejected", "pending")]


def test_the_status_page_in_chromium(status_state, capsys):
    executable = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright package is not installed (pip install '.[test]')")
    shown = _status_json(status_state.path, capsys)
    backend = "postgresql" if status_state.state_url.startswith("postgresql") else "sqlite"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    left_loopback: list[str] = []
    dialogs: list[str] = []
    # A frozen clock; no reload while the test reads the page.
    with page_server(status_state.config, lambda: status_state.now, refresh_s=3600) as base, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000}, locale="en-US")

            def refuse(route) -> None:
                left_loopback.append(route.request.url)
                route.abort()

            context.route(re.compile(r"^(?!http://127\.0\.0\.1:)"), refuse)
            page = context.new_page()
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.goto(base + "/")
            _check_numbers(page, shown)
            _check_hostile_text(page, dialogs, f"#h-{HOSTILE_KEY}")
            assert HOSTILE_EVENT in page.locator("#audience-event_seen [data-field=source-text]").inner_text()
            assert page.evaluate("document.documentElement.scrollWidth") <= 1280
            if backend == "sqlite" and os.environ.get("AUDSYNC_UPDATE_SCREENSHOT") == "1":
                with page_server(status_state.config, lambda: status_state.now) as plain:  # as served: 30 s
                    page.goto(plain + "/")
                    README_SCREENSHOT.parent.mkdir(exist_ok=True)
                    page.screenshot(path=str(README_SCREENSHOT), full_page=True,
                                    clip={"x": 0, "y": 0, "width": 1280, "height": 1500})
                page.goto(base + "/")
            page.screenshot(path=str(ARTIFACTS / f"{backend}-index-1280.png"), full_page=True)
            _check_keyboard(page)

            page.locator(f"#h-{HOSTILE_KEY} a").click()  # a real link to the audience's own page
            assert page.url == f"{base}/audiences/{HOSTILE_KEY}"
            _check_hostile_text(page, dialogs, "h1")
            _check_history(page, shown["audiences"][0])
            assert page.locator('svg[data-series="members"] circle').count() == 3
            page.screenshot(path=str(ARTIFACTS / f"{backend}-audience-1280.png"), full_page=True)

            page.set_viewport_size({"width": 390, "height": 844})
            page.goto(base + "/")
            assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone
            assert not page.locator("#summary").is_visible()  # the cards say the same, one by one
            for entry in shown["audiences"]:
                members = page.locator(f'#audience-{entry["key"]} [data-field="members"]')
                assert members.is_visible() and members.inner_text() == f"{entry['members']:,}"
            page.screenshot(path=str(ARTIFACTS / f"{backend}-index-390.png"), full_page=True)
            page.goto(f"{base}/audiences/{HOSTILE_KEY}")
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            page.screenshot(path=str(ARTIFACTS / f"{backend}-audience-390.png"), full_page=True)
        finally:
            browser.close()
    assert left_loopback == []
    assert dialogs == []
