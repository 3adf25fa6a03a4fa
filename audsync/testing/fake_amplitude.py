"""A loopback Amplitude for tests and benchmarks: real HTTP speaking the documented contract.

Endpoints: /2/httpapi and /batch (JSON), /identify and /groupidentify (form fields, urlencoded or
multipart), /usermap, /api/2/deletions/users (basic auth). It validates like Amplitude (API key,
required fields, id lengths with options.min_id_length, request limits -> 413, properties Amplitude
refuses: an array holding an array, nesting deeper than 40 levels), dedups events on
insert_id, applies user-property operations per user in arrival order, and plays scripted faults:
429 for chosen users (throttle or daily quota), 5xx bursts, 413 above N items, slow answers and
dropped connections.

Run alone for benchmarks: `python -m audsync.testing.fake_amplitude --port 8765 [--lean] [--arrivals]`.
With --arrivals it keeps each accepted event's insert_id and arrival time (time.monotonic(), the
same clock in every process of the machine), and GET /_arrivals hands over those kept since the
last call: bench/ingest.py measures forward lag with it.
"""

from __future__ import annotations

import argparse
import base64
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import orjson

MB = 1_000_000
MAX_DEPTH = 40  # properties nest at most 40 levels (amplitude-api.md 2.2, 6.1)
PROPERTY_FIELDS = ("event_properties", "user_properties", "group_properties")
BLOCKED = {"anonymous", "nil", "none", "null", "n/a", "na", "undefined", "unknown", '""',
           "00000000-0000-0000-0000-000000000000", "{}", "lmy47d", "0", "-1"}


def parse_form(content_type: str, raw: bytes) -> dict[str, str]:
    if content_type.startswith("multipart/form-data"):
        boundary = content_type.split("boundary=", 1)[1].strip().strip('"').encode()
        fields = {}
        for part in raw.split(b"--" + boundary):
            if b"\r\n\r\n" not in part:
                continue
            head, _, value = part.partition(b"\r\n\r\n")
            marker = b'name="'
            start = head.find(marker)
            if start < 0:
                continue
            name = head[start + len(marker):head.index(b'"', start + len(marker))].decode()
            fields[name] = value[:-2].decode() if value.endswith(b"\r\n") else value.decode()
        return fields
    return {k: v[0] for k, v in parse_qs(raw.decode()).items()}


def refused_properties(props: dict) -> bool:
    """Whether Amplitude refuses a properties object: an array holding an array anywhere in it
    (seed page, Troubleshooting) or nesting deeper than 40 levels. Operations ($set...) count
    from their own objects."""
    if props and all(isinstance(k, str) and k.startswith("$") for k in props):
        return any(isinstance(v, dict) and _refused(v, 1) for v in props.values())
    return _refused(props, 1)


def _refused(node: dict | list, depth: int) -> bool:
    if depth > MAX_DEPTH:
        return True
    for child in node.values() if isinstance(node, dict) else node:
        if isinstance(child, list) and isinstance(node, list):
            return True
        if isinstance(child, (dict, list)) and _refused(child, depth + 1):
            return True
    return False


class FakeAmplitude:
    def __init__(self, api_keys: tuple[str, ...] = ("test-api-key-123", "another-project-key-456"),
                 secret_key: str = "test-secret-key", lean: bool = False, port: int = 0,
                 arrivals: bool = False):
        self.api_keys = set(api_keys)
        self.secret_key = secret_key
        self.lean = lean
        self.lock = threading.Lock()
        self.properties: dict[str, dict] = defaultdict(dict)   # user_id (else device_id) -> properties
        self.groups: dict[tuple, dict] = defaultdict(dict)
        self.identifies: list[dict] = []
        self.events: list[dict] = []
        self.mappings: list[dict] = []
        self.deletions: list[dict] = []
        self.requests: list[dict] = []        # {"path", "items", "status", "start", "time"} per request (not lean)
        self.arrivals: dict[str, list] = defaultdict(list)  # who -> items in arrival order
        self.items_received = 0
        self.request_count = 0
        self.seen_insert_ids: set[tuple] = set()
        # [insert_id, monotonic time] per accepted event, for a benchmark in another process
        self.arrival_times: list[list] | None = [] if arrivals else None
        # scripted faults
        self.reject: set[str] = set()           # ids answered with 400 invalid fields
        self.unavailable: set[str] = set()      # ids answered with 503 while present
        self.throttled: dict[str, int] = {}     # id -> 429s left
        self.quota_exceeded: set[str] = set()   # ids answered 429 exceeded_daily_quota_*
        self.fail_next: list[int] = []          # statuses to answer the next requests with
        self.max_items: int | None = None       # 413 above this many items
        self.max_bytes: int | None = None       # 413 above this many body bytes
        self.delay_s = 0.0
        self.drop_next = 0                      # close the connection without answering
        self.retry_after: str | None = None
        self.on_request = None                  # callback(path, items, status) after answering
        self.on_receive = None                  # callback(path, raw body) before handling or answering
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # the answer goes out in two writes (head, body): with Nagle on, the body waits for the
            # client's delayed ACK, about 40 ms per request
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                start = time.monotonic()
                with outer.lock:
                    drop = outer.drop_next > 0
                    if drop:
                        outer.drop_next -= 1
                if drop:
                    self.close_connection = True
                    self.connection.close()
                    return
                if outer.on_receive is not None:
                    outer.on_receive(self.path, raw)
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                status, body, items, headers = outer.handle(self.path.split("?")[0], dict(self.headers), raw)
                outer.request_count += 1
                if not outer.lean:
                    # "time" is taken before the answer is written: a client that waits for the
                    # answer cannot start its next request for the same user before it
                    with outer.lock:
                        outer.requests.append({"path": self.path.split("?")[0], "items": items, "status": status,
                                               "start": start, "time": time.monotonic()})
                data = body if isinstance(body, bytes) else orjson.dumps(body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json" if not isinstance(body, bytes) else "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if outer.on_request is not None:
                    outer.on_request(self.path, items, status)

            def do_GET(self) -> None:  # noqa: N802
                # /_stats lets a benchmark in another process see what arrived
                if self.path == "/_arrivals" and outer.arrival_times is not None:
                    with outer.lock:
                        taken, outer.arrival_times = outer.arrival_times, []
                    data = orjson.dumps(taken)
                elif self.path == "/_stats":
                    data = orjson.dumps({"items_received": outer.items_received, "requests": outer.request_count})
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                return

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self.server = Server(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # a short poll keeps close() (shutdown) from costing half a second per test
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       name="fake-amplitude", daemon=True)
        self.thread.start()

    # -- helpers for tests -------------------------------------------------------------------
    @staticmethod
    def who(item: dict) -> str:
        return item.get("user_id") or item.get("device_id") or ""

    def sent_to(self, who: str) -> list[dict]:
        return [i for i in self.identifies if self.who(i) == who]

    def clear(self) -> None:
        with self.lock:
            self.identifies.clear()
            self.events.clear()
            self.requests.clear()
            self.arrivals.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- the contract ------------------------------------------------------------------------
    def handle(self, path: str, headers: dict, raw: bytes) -> tuple[int, Any, list, dict]:
        content_type = headers.get("Content-Type") or headers.get("content-type") or ""
        if path == "/api/2/deletions/users":
            return self._deletions(headers, raw)
        if path in ("/2/httpapi", "/batch"):
            try:
                payload = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return 400, {"code": 400, "error": "Invalid JSON request body"}, [], {}
            if not isinstance(payload, dict):
                return 400, {"code": 400, "error": "Invalid JSON request body"}, [], {}
            api_key, items = payload.get("api_key"), payload.get("events")
            min_len = (payload.get("options") or {}).get("min_id_length", 5)
            limit_bytes = 20 * MB if path == "/batch" else MB
            kind = "event"
        elif path in ("/identify", "/groupidentify", "/usermap"):
            form = parse_form(content_type, raw)
            api_key = form.get("api_key")
            field = "mapping" if path == "/usermap" else "identification"
            try:
                items = orjson.loads(form.get(field, ""))
            except orjson.JSONDecodeError:
                return 400, b"missing_event", [], {}
            if isinstance(items, dict):
                items = [items]
            min_len = orjson.loads(form["options"]).get("min_id_length", 5) if "options" in form else 5
            limit_bytes = MB
            kind = path[1:]
        else:
            return 404, {"code": 404, "error": "Invalid request path"}, [], {}
        if not api_key:
            return 400, {"code": 400, "error": "Request missing required field", "missing_field": "api_key"}, [], {}
        if api_key not in self.api_keys:
            # echoes the key it got, the worst case for a client that logs error bodies
            return 400, {"code": 400, "error": "Invalid API key: " + str(api_key)}, [], {}
        if not isinstance(items, list) or not items:
            return 400, {"code": 400, "error": "Request missing required field", "missing_field": "events"}, [], {}
        max_items = {"groupidentify": 1024}.get(kind, 2000)
        if self.max_items is not None:
            max_items = min(max_items, self.max_items)
        if self.max_bytes is not None:
            limit_bytes = min(limit_bytes, self.max_bytes)
        if len(items) > max_items or len(raw) > limit_bytes:
            return 413, {"code": 413, "error": "Payload too large"}, items, {}
        with self.lock:
            if self.fail_next:
                status = self.fail_next.pop(0)
                return status, {"code": status, "error": "scripted failure"}, items, {}
        return self._items(kind, path, items, min_len)

    def _items(self, kind: str, path: str, items: list, min_len: int) -> tuple[int, Any, list, dict]:
        if self.lean and not (self.reject or self.unavailable or self.throttled or self.quota_exceeded):
            # benchmarks: checking each item in Python would make the fake the bottleneck
            self._accept(kind, items)
            if kind == "event":
                return 200, {"code": 200, "events_ingested": len(items)}, items, {}
            return 200, b"success", items, {}
        invalid_ids, missing, invalid = [], defaultdict(list), defaultdict(list)
        throttled_events, throttled_users, quota_users = [], {}, {}
        unavailable = False
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                invalid["event"].append(i)
                continue
            if kind == "usermap":
                if not item.get("user_id"):
                    missing["user_id"].append(i)
                continue
            if kind == "groupidentify":
                if not item.get("group_type") or not item.get("group_value"):
                    missing["group_type"].append(i)
                elif isinstance(item.get("group_properties"), dict) and refused_properties(item["group_properties"]):
                    invalid["group_properties"].append(i)
                continue
            if kind == "event" and not item.get("event_type"):
                missing["event_type"].append(i)
            ids = [item.get("user_id"), item.get("device_id")]
            present = [x for x in ids if isinstance(x, str)]
            if not present:
                missing["user_id"].append(i)
            elif all(len(x) < min_len or x.lower() in BLOCKED for x in present):
                invalid_ids.append(i)
            for name in PROPERTY_FIELDS:
                props = item.get(name)
                if isinstance(props, dict) and refused_properties(props):
                    invalid[name].append(i)
            who = self.who(item)
            if who in self.reject:
                invalid["user_properties"].append(i)
            if who in self.unavailable:
                unavailable = True
            if who in self.quota_exceeded:
                quota_users[who] = 500_001
                throttled_events.append(i)
            elif self.throttled.get(who, 0) > 0:
                throttled_users[who] = 40
                throttled_events.append(i)
        if unavailable:
            return 503, {"code": 503, "error": "Service unavailable"}, items, {}
        if invalid_ids or missing or invalid:
            body = {"code": 400, "error": "Invalid field values on some events"}
            if invalid_ids:
                body = {"code": 400, "error": "Invalid id length for user_id or device_id",
                        "events_with_invalid_id_lengths": {"user_id": invalid_ids}}
            if missing:
                body["events_with_missing_fields"] = dict(missing)
            if invalid:
                body["events_with_invalid_fields"] = dict(invalid)
            return 400, body, items, {}
        if throttled_events:
            with self.lock:
                for who in throttled_users:
                    self.throttled[who] -= 1
            body = {"code": 429, "error": "Too many requests for some devices and users",
                    "eps_threshold": 30, "throttled_users": throttled_users, "throttled_devices": {},
                    "throttled_events": throttled_events}
            if quota_users:
                body["exceeded_daily_quota_users"] = quota_users
            return 429, body, items, ({"Retry-After": self.retry_after} if self.retry_after else {})
        self._accept(kind, items)
        if kind == "event":
            return 200, {"code": 200, "events_ingested": len(items), "payload_size_bytes": 0,
                         "server_upload_time": int(time.time() * 1000)}, items, {}
        return 200, b"success", items, {}

    def _accept(self, kind: str, items: list) -> None:
        with self.lock:
            self.items_received += len(items)
            if self.arrival_times is not None:
                now = time.monotonic()
                self.arrival_times.extend([item.get("insert_id"), now] for item in items if isinstance(item, dict))
            if self.lean:
                return
            for item in items:
                if kind == "usermap":
                    self.mappings.append(item)
                    continue
                if kind == "groupidentify":
                    props = item.get("group_properties") or {}
                    self._apply(self.groups[(item["group_type"], item["group_value"])], props)
                    continue
                who = self.who(item)
                self.arrivals[who].append(item)
                if kind == "identify" or item.get("event_type") == "$identify":
                    self.identifies.append(item)
                    self._apply(self.properties[who], item.get("user_properties") or {})
                    continue
                insert_id = item.get("insert_id")
                if insert_id is not None:
                    key = (item.get("device_id") or item.get("user_id"), insert_id)
                    if key in self.seen_insert_ids:
                        continue
                    self.seen_insert_ids.add(key)
                self.events.append(item)
                if item.get("user_properties"):
                    self._apply(self.properties[who], item["user_properties"])

    @staticmethod
    def _apply(state: dict, props: dict) -> None:
        if not any(k.startswith("$") for k in props):
            props = {"$set": props}
        for op, values in props.items():
            for key, value in (values or {}).items():
                if value is None:  # Amplitude ignores a null (amplitude-api.md 6.3)
                    continue
                if op == "$set":
                    state[key] = value
                elif op == "$setOnce":
                    state.setdefault(key, value)
                elif op == "$unset":
                    state.pop(key, None)
                elif op == "$add":
                    state[key] = state.get(key, 0) + value
                elif op in ("$append", "$prepend"):
                    current = state.get(key, [])
                    current = current if isinstance(current, list) else [current]
                    extra = value if isinstance(value, list) else [value]
                    state[key] = current + extra if op == "$append" else extra + current

    def _deletions(self, headers: dict, raw: bytes) -> tuple[int, Any, list, dict]:
        auth = headers.get("Authorization") or headers.get("authorization") or ""
        expected = "Basic " + base64.b64encode(f"{sorted(self.api_keys)[-1]}:{self.secret_key}".encode()).decode()
        valid = {"Basic " + base64.b64encode(f"{k}:{self.secret_key}".encode()).decode() for k in self.api_keys}
        if auth not in valid and auth != expected:
            return 401, {"error": "Invalid credentials"}, [], {}
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return 400, {"error": "Invalid JSON"}, [], {}
        ids = (body.get("user_ids") or []) + (body.get("amplitude_ids") or [])
        if not ids or len(ids) > 100:
            return 400, {"error": "between 1 and 100 ids per request"}, [], {}
        with self.lock:
            self.deletions.append({"body": body, "time": time.monotonic()})
        return 200, {"day": "2026-12-01", "status": "staging",
                     "amplitude_ids": [{"amplitude_id": i, "requester": body.get("requester")} for i in ids]}, ids, {}


def main() -> None:
    parser = argparse.ArgumentParser(description="A loopback fake Amplitude")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--lean", action="store_true", help="count items only (benchmarks)")
    parser.add_argument("--arrivals", action="store_true",
                        help="keep each event's insert_id and arrival time for GET /_arrivals (forward lag)")
    args = parser.parse_args()
    fake = FakeAmplitude(lean=args.lean, port=args.port, arrivals=args.arrivals)
    print(f"fake Amplitude on {fake.url}", flush=True)
    try:
        fake.thread.join()
    except KeyboardInterrupt:
        fake.close()


if __name__ == "__main__":
    main()
