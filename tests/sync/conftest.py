"""A loopback Amplitude for sync tests: real HTTP, speaking the documented contract
(/identify form fields, /2/httpapi and /batch JSON), keeping each user's resulting user
properties so tests can check what Amplitude ends up with."""

from __future__ import annotations

import json
import textwrap
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest



def missing_parts() -> str | None:
    """The sync tests need the sources, mapping and delivery modules (built in parallel)."""
    import importlib

    for module, name in (("audsync.sources", "open_source"), ("audsync.mapping", "translate"),
                         ("audsync.delivery", "Deliverer")):
        if not hasattr(importlib.import_module(module), name):
            return f"{module}.{name} is not in the tree yet"
    return None


API_KEY = "test-api-key-123"
OTHER_KEY = "another-project-key-456"


class FakeAmplitude:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.properties: dict[str, dict] = defaultdict(dict)  # user_id (or device_id) -> properties
        self.identifies: list[dict] = []
        self.events: list[dict] = []
        self.reject: set[str] = set()       # ids answered with 400 (permanent)
        self.unavailable: set[str] = set()  # ids answered with 503 (retry later)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                path = self.path.split("?")[0]
                if path in ("/identify", "/groupidentify"):
                    form = parse_qs(raw.decode())
                    api_key = form.get("api_key", [""])[0]
                    items = json.loads(form.get("identification", ["[]"])[0])
                    if isinstance(items, dict):
                        items = [items]
                    status, body = outer.receive(api_key, items, identify_api=True)
                else:
                    payload = json.loads(raw)
                    status, body = outer.receive(payload.get("api_key", ""), payload.get("events", []),
                                                 identify_api=False)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def who(item: dict) -> str:
        return item.get("user_id") or item.get("device_id") or ""

    def receive(self, api_key: str, items: list[dict], *, identify_api: bool) -> tuple[int, dict]:
        if api_key not in (API_KEY, OTHER_KEY):
            return 400, {"code": 400, "error": "Invalid API key: " + api_key[:3]}
        ids = [self.who(item) for item in items]
        if any(i in self.unavailable for i in ids):
            return 503, {"code": 503, "error": "Service unavailable"}
        bad = [n for n, i in enumerate(ids) if i in self.reject]
        if bad:
            if identify_api:
                return 400, {"code": 400, "error": "invalid user_properties"}
            return 400, {"code": 400, "error": "Invalid field values on some events",
                         "events_with_invalid_fields": {"user_properties": bad}}
        with self.lock:
            for item in items:
                if identify_api or item.get("event_type") == "$identify":
                    self.identifies.append(item)
                    self.apply(self.who(item), item.get("user_properties", {}))
                else:
                    self.events.append(item)
        return 200, {"code": 200, "events_ingested": len(items)}

    def apply(self, who: str, props: dict) -> None:
        state = self.properties[who]
        if not any(k.startswith("$") for k in props):
            props = {"$set": props}
        for op, values in props.items():
            for key, value in values.items():
                if op == "$set":
                    state[key] = value
                elif op == "$setOnce":
                    state.setdefault(key, value)
                elif op == "$unset":
                    state.pop(key, None)
                elif op == "$add":
                    state[key] = state.get(key, 0) + value

    def sent_to(self, who: str) -> list[dict]:
        return [i for i in self.identifies if self.who(i) == who]

    def clear(self) -> None:
        self.identifies.clear()
        self.events.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def amplitude():
    fake = FakeAmplitude()
    yield fake
    fake.close()


class Project:
    """A config file with CSV sources under tmp_path, pointed at the fake Amplitude."""

    def __init__(self, tmp_path: Path, state_url: str, amplitude: FakeAmplitude):
        self.dir = tmp_path
        self.state_url = state_url
        self.amplitude_url = amplitude.url
        self.api_key = API_KEY

    def members(self, name: str, rows: list[tuple]) -> str:
        """Write (user_id, anonymous_id[, value]) rows as a JSON-lines source; returns its TOML."""
        with open(self.dir / f"{name}.jsonl", "w") as f:
            for row in rows:
                record = {"user_id": row[0], "anonymous_id": row[1]}
                if len(row) > 2:
                    record["value"] = row[2]
                f.write(json.dumps({k: v for k, v in record.items() if v is not None}) + "\n")
        return f'{{ type = "file", path = "{name}.jsonl" }}'

    def write(self, audiences: str, extra: str = "") -> Path:
        path = self.dir / "audsync.toml"
        path.write_text(textwrap.dedent(f'''
            [state]
            url = "{self.state_url}"
            [amplitude]
            api_key = "{self.api_key}"
            endpoint = "{self.amplitude_url}"
            [delivery]
            max_attempts = 2
            backoff_initial_s = 0.01
            backoff_max_s = 0.02
            timeout_s = 5
            deadline_s = 10
            {textwrap.dedent(extra)}
        ''') + textwrap.dedent(audiences))
        return path

    def config(self, audiences: str, extra: str = ""):
        from audsync.config import load

        return load(self.write(audiences, extra), environ={})


@pytest.fixture
def project(tmp_path, state_url, amplitude):
    return Project(tmp_path, state_url, amplitude)
