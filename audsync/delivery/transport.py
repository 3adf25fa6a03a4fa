"""HTTP to Amplitude (httpx, connections reused, explicit timeouts) and the `file:` sink.

Request bodies are assembled from already-encoded items, so each item is encoded once.
/identify and /groupidentify take form fields; they are sent as multipart/form-data, which
Amplitude accepts (amplitude-api.md section 1) and which needs no percent-encoding of the JSON.
"""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass
from typing import Mapping, Sequence

import httpx
import orjson

from ..config import AmplitudeSettings, DeliverySettings

HOSTS = {
    "us": {"event": "https://api2.amplitude.com", "usermap": "https://api.amplitude.com",
           "deletions": "https://amplitude.com"},
    "eu": {"event": "https://api.eu.amplitude.com", "usermap": "https://api.eu.amplitude.com",
           "deletions": "https://analytics.eu.amplitude.com"},
}
PATHS = {"event": "/2/httpapi", "batch": "/batch", "identify": "/identify", "groupidentify": "/groupidentify",
         "usermap": "/usermap", "deletions": "/api/2/deletions/users"}
FORM_FIELD = {"identify": "identification", "groupidentify": "identification", "usermap": "mapping"}


def url_for(endpoint: str, api: str, batch_endpoint: bool = False) -> str:
    path_key = "batch" if api == "event" and batch_endpoint else api
    if endpoint in HOSTS:
        host_key = api if api in ("usermap", "deletions") else "event"
        return HOSTS[endpoint][host_key] + PATHS[path_key]
    if endpoint.startswith("file:"):
        return "file:" + PATHS[path_key]
    return endpoint + PATHS[path_key]


@dataclass(frozen=True)
class Answer:
    status: int          # 0: no answer (network error or timeout)
    body: object         # parsed JSON, or text, or None
    headers: Mapping[str, str]
    error: str = ""      # what went wrong when status is 0


def _parse(content: bytes) -> object:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return content.decode("utf-8", "replace").strip() or None


class Transport:
    """Sends one request of already-encoded items; thread-safe (one shared httpx client)."""

    def __init__(self, amplitude: AmplitudeSettings, delivery: DeliverySettings):
        self.endpoint = amplitude.endpoint
        self.batch_endpoint = amplitude.send_to_batch_endpoint
        self._api_key = amplitude.api_key
        self._options = (b',"options":' + orjson.dumps({"min_id_length": amplitude.min_id_length})
                         if amplitude.min_id_length != 5 else b"")
        self._form_options = (orjson.dumps({"min_id_length": amplitude.min_id_length})
                              if amplitude.min_id_length != 5 else None)
        self._sink_lock = threading.Lock()
        self._client: httpx.Client | None = None
        if not self.endpoint.startswith("file:"):
            timeout = httpx.Timeout(delivery.timeout_s, connect=min(delivery.timeout_s, 10.0))
            limits = httpx.Limits(max_connections=delivery.concurrency + 2,
                                  max_keepalive_connections=delivery.concurrency + 2)
            self._client = httpx.Client(timeout=timeout, limits=limits,
                                        headers={"User-Agent": "audsync"})

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def __repr__(self) -> str:  # never shows the API key
        return f"Transport(endpoint={self.endpoint!r})"

    def send(self, api: str, encoded: Sequence[bytes]) -> Answer:
        url = url_for(self.endpoint, api, self.batch_endpoint)
        joined = b"[" + b",".join(encoded) + b"]"
        if self._client is None:
            return self._sink(url, api, joined)
        try:
            if api == "event":
                body = (b'{"api_key":' + orjson.dumps(self._api_key) + b',"events":' + joined
                        + self._options + b"}")
                response = self._client.post(url, content=body, headers={"Content-Type": "application/json"})
            else:
                fields = [("api_key", self._api_key.encode()), (FORM_FIELD[api], joined)]
                if self._form_options is not None and api == "identify":
                    fields.append(("options", self._form_options))
                content, content_type = multipart(fields)
                response = self._client.post(url, content=content, headers={"Content-Type": content_type})
        except httpx.TimeoutException:
            return Answer(0, None, {}, f"timed out on {_shown(url)}")
        except httpx.HTTPError as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return Answer(0, None, {}, f"network error on {_shown(url)} ({detail})")
        return Answer(response.status_code, _parse(response.content), response.headers)

    def _sink(self, url: str, api: str, joined: bytes) -> Answer:
        """Appends the request as one JSON line and answers like Amplitude's 200 (no API key written)."""
        field = {"event": "events"}.get(api, FORM_FIELD.get(api, "items"))
        line = b'{"url":' + orjson.dumps(url[len("file:"):]) + b',"body":{"' + field.encode() + b'":' + joined + b"}}\n"
        path = self.endpoint[len("file:"):]
        with self._sink_lock:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "ab") as handle:
                handle.write(line)
        return Answer(200, {"code": 200}, {})


def _shown(url: str) -> str:
    """The URL without credentials a custom endpoint might carry (the API key travels in bodies)."""
    return str(httpx.URL(url).copy_with(username=None, password=None))


def multipart(fields: Sequence[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
        parts.append(value)
        parts.append(b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
