"""@segment/analytics-next (its npm bundle, tests/clients) in headless Chromium, on a loopback page
opened with UTM parameters and a referrer, its settings from `audsync serve`'s settings endpoint:
its page and track calls reach the fake Amplitude under the device_id of the ajs_anonymous_id
cookie, with the UTM and referrer user properties and the page event names the config asks for,
exactly as `audsync translate` makes them of the stored messages. Nothing leaves loopback."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .conftest import WRITE_KEY, write_config
from .segment_clients import (NODE_DIR, canonical, chromium, missing, node_module, received,
                              record_stored, recorded, translated, wait_until)

# Page naming away from the defaults, campaign and referrer tracking on.
AMPLITUDE = """
track_all_pages = true
track_categorized_pages = false
track_named_pages = true
track_utm_properties = true
track_referrer = true
track_gclid = true
"""
QUERY = "?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale&gclid=gc-123"
REFERRER = "https://search.example/results?q=audsync"


class PageServer:
    """The test page, its config.js and the analytics-next bundle, over loopback."""

    def __init__(self, bundles: Path):
        page = (NODE_DIR / "page.html").read_bytes()
        self.requests: list[str] = []
        self.config_js = b""  # set once serve listens
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                outer.requests.append(self.path)
                path = self.path.split("?", 1)[0]
                if path == "/pricing":
                    self._send(page, "text/html; charset=utf-8")
                elif path == "/config.js":
                    self._send(outer.config_js, "application/javascript")
                elif path.startswith("/analytics-next/") and (bundles / path.rsplit("/", 1)[1]).is_file():
                    self._send((bundles / path.rsplit("/", 1)[1]).read_bytes(), "application/javascript")
                else:
                    self.send_error(404)

            def _send(self, body: bytes, content_type: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def cookie_value(value: str) -> str:
    """analytics.js stores ids plainly or JSON-quoted, depending on its version."""
    return json.loads(value) if value.startswith('"') else value


@pytest.mark.parametrize("cors", ["any origin", "the page's origin only"])
def test_analytics_next_in_chromium_reaches_amplitude_with_cookie_device_campaign_and_referrer(
        tmp_path, sqlite_url, servers, amplitude, cors):
    # The browser side does not depend on the state database: SQLite only (both are covered by
    # the server libraries' tests). The page is on another origin than serve: every request is
    # cross-origin, its sends preflighted (analytics.js sends Authorization).
    bundles = node_module("@segment/analytics-next") / "dist" / "umd"
    executable = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright package is not installed (pip install '.[test]')")

    site = PageServer(bundles)
    left_loopback: list[str] = []
    try:
        origins = "*" if cors == "any origin" else site.origin
        config = write_config(tmp_path, sqlite_url, amplitude=f'endpoint = "{amplitude.url}"\n{AMPLITUDE}',
                              ingest=f'write_keys = ["{WRITE_KEY}"]\nforward = true\ncors_origins = ["{origins}"]\n')
        proc = servers(config)
        serve_url = proc.url  # waits for serve to listen: its tables are made
        record_stored(sqlite_url)
        site.config_js = f"window.audsyncTest = {json.dumps({'writeKey': WRITE_KEY, 'cdnURL': serve_url})}".encode()
        with sync_playwright() as playwright:
            # Running as root (containers, CI) Chromium needs --no-sandbox; the page is our own.
            browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            try:
                context = browser.new_context(locale="en-US")

                def refuse(route) -> None:
                    left_loopback.append(route.request.url)
                    route.abort()

                context.route(re.compile(r"^(?!http://127\.0\.0\.1:)"), refuse)
                page = context.new_page()
                page.goto(f"{site.origin}/pricing{QUERY}", referer=REFERRER)
                page.wait_for_function("window.audsyncSent || window.audsyncFailed", timeout=15_000)
                assert page.evaluate("window.audsyncFailed") is None
                cookies = {c["name"]: c["value"] for c in context.cookies()}
            finally:
                browser.close()
    finally:
        site.close()
    assert left_loopback == []
    assert "/analytics-next/index.js" in site.requests
    anonymous_id = cookie_value(cookies["ajs_anonymous_id"])

    stored = recorded(sqlite_url)
    assert [(m["type"], m.get("name") or m.get("event")) for m in stored] == [("page", "Pricing"),
                                                                             ("track", "Plan Chosen")]
    assert all(m["anonymousId"] == anonymous_id for m in stored)
    assert all(m["context"]["library"]["name"] == "analytics.js" for m in stored)
    expected = translated(stored, config)
    wait_until(lambda: len(received(amplitude)) >= len(expected), what="every operation forwarded", proc=proc)
    assert canonical(received(amplitude)) == canonical(expected)
    assert proc.stop() == 0, proc.output()

    events = {body["event_type"]: body for api, body in received(amplitude) if api == "event"}
    assert set(events) == {"Loaded a Page", "Viewed Docs Pricing Page", "Plan Chosen"}
    assert {body["device_id"] for body in events.values()} == {anonymous_id}
    campaign = {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "spring_sale", "gclid": "gc-123"}
    referrer = {"referrer": REFERRER, "referring_domain": "search.example"}
    for name in ("Loaded a Page", "Viewed Docs Pricing Page"):
        props = events[name]["user_properties"]
        assert props["$set"] == {**campaign, **referrer}
        assert props["$setOnce"] == {f"initial_{key}": value for key, value in {**campaign, **referrer}.items()}
        assert events[name]["event_properties"]["url"] == f"{site.origin}/pricing{QUERY}"
    # the referrer belongs to page calls; the campaign to every call of the page
    assert events["Plan Chosen"]["user_properties"]["$set"] == campaign
    assert events["Plan Chosen"]["event_properties"] == {"plan": "pro"}
