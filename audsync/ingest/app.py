"""The HTTP side of `audsync serve`: the Segment tracking API of DESIGN.md section 6 as an ASGI app.

Starlette routes requests; audsync.ingest.validate decides what is accepted; the group committer
(audsync.state.ingest) stores the valid messages, and a request is answered 200 only once its
messages are committed. Every error body is {"code", "message"}: segment-analytics-python reads
those two fields and retries ten times on a JSON error body without them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import ipaddress
import logging
from datetime import datetime, timezone
from typing import Any, Protocol

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from ..config import AmplitudeSettings, IngestSettings
from ..errors import AudsyncError
from ..statuspage import StatusPage, is_page_path
from .metrics import CONTENT_TYPE, IngestMetrics
from .validate import ENDPOINTS, MAX_REQUEST_BYTES, RequestError, accept, body_write_key, decompress, parse

log = logging.getLogger("audsync.ingest")

# A gzip body a little over the limit may still inflate to less than it; past this it cannot.
_MAX_RAW_BYTES = MAX_REQUEST_BYTES + 64 * 1024
_ALLOWED_HEADERS = "Content-Type, Content-Encoding, Authorization, X-Retry-Count"
_PREFLIGHT_MAX_AGE = "7200"  # Chromium's cap: preflights are cached at most two hours anyway
_OK = orjson.dumps({"success": True})
_PROBES = frozenset({"/metrics", "/healthz"})


class Committer(Protocol):  # audsync.state.ingest.GroupCommitter
    def submit(self, messages: list[dict], source: str | None = None, *,
               loop: asyncio.AbstractEventLoop | None = None) -> Any: ...  # a future of `loop`


class RejectionLog(Protocol):  # audsync.state.ingest.IngestLog
    def record_rejections(self, rows: list[dict], source: str | None = None) -> int: ...


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(content, status_code=status, media_type="application/json", headers=headers)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json(status, {"code": code, "message": message}, headers)


class IngestApp:
    """The ASGI app (`app.asgi`) over a committer and a rejection log, counting what it answers
    in `metrics` (served at /metrics)."""

    def __init__(self, ingest: IngestSettings, amplitude: AmplitudeSettings, committer: Committer,
                 rejections: RejectionLog, metrics: IngestMetrics | None = None, page: StatusPage | None = None):
        self.keys = frozenset(ingest.write_keys)
        self.any_origin = "*" in ingest.cors_origins
        self.origins = frozenset(ingest.cors_origins)
        self.amplitude = amplitude
        self.committer = committer
        self.rejections = rejections
        self.metrics = metrics if metrics is not None else IngestMetrics()
        self.page = page
        # The status page (DESIGN.md section 8), GET only: user ids, never a key; no write key asked.
        pages = [Route("/", self.status_page, methods=["GET"]),
                 Route("/audiences/{key}", self.status_page, methods=["GET"])] if page is not None else []
        self.routes = Starlette(
            routes=[
                *pages,
                Route("/v1/projects/{key}/settings", self.settings, methods=["GET", "OPTIONS"]),
                Route("/v1/{endpoint}", self.post, methods=["POST", "OPTIONS"]),
                Route("/healthz", self.healthz, methods=["GET"]),
                # No write key: it is what Prometheus scrapes, and it shows counts, never messages or keys.
                Route("/metrics", self.scrape, methods=["GET"]),
            ],
            exception_handlers={HTTPException: self._http_error},
        )

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The routes, each answer to a client counted by its status code (scrapes, health
        checks and the status page are not clients' traffic)."""
        if scope["type"] != "http" or scope["path"] in _PROBES or is_page_path(scope["path"]):
            await self.routes(scope, receive, send)
            return
        requests = self.metrics.requests

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                requests.labels(code=str(message["status"])).inc()
            await send(message)

        await self.routes(scope, receive, counted)

    # CORS: browsers send from any page in cors_origins; analytics.js 1.84+ sends Authorization and,
    # on retries, X-Retry-Count, so its requests are preflighted.
    def _cors(self, request: Request) -> dict[str, str] | None:
        """The CORS headers for this request's origin; {} without an Origin; None for an origin
        not allowed."""
        origin = request.headers.get("origin")
        if origin is None:
            return {}
        if self.any_origin:
            return {"Access-Control-Allow-Origin": "*"}
        if origin in self.origins:
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        return None

    def _preflight(self, request: Request, methods: str) -> Response:
        headers = self._cors(request)
        if headers is None:
            return _error(403, "origin_not_allowed",
                          f"origin {request.headers.get('origin')!r} is not in ingest.cors_origins")
        headers.update({"Access-Control-Allow-Methods": methods, "Access-Control-Allow-Headers": _ALLOWED_HEADERS,
                        "Access-Control-Max-Age": _PREFLIGHT_MAX_AGE})
        return Response(status_code=204, headers=headers)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        return _error(exc.status_code, code, f"{request.method} {request.url.path}: {exc.detail}",
                      self._cors(request) or None)

    async def healthz(self, request: Request) -> Response:
        return Response(b"ok\n", media_type="text/plain")

    async def scrape(self, request: Request) -> Response:
        # The backlog is a query on the state database: off the event loop.
        return Response(await asyncio.to_thread(self.metrics.render), media_type=CONTENT_TYPE)

    async def status_page(self, request: Request) -> Response:
        assert self.page is not None
        # serve's port faces the clients that send events, browsers included, and the page shows
        # user ids: it answers loopback only (through a proxy, uvicorn puts the forwarded client here).
        if not _is_loopback(request.client.host if request.client else None):
            return _error(403, "forbidden", "the status page shows user ids and answers only on this host "
                                            "(127.0.0.1 or ::1); reach it through an SSH tunnel, or run "
                                            "`audsync daemon --metrics-port N --metrics-host H` for a page elsewhere")
        # The page reads the state database: off the event loop.
        key = request.path_params.get("key")
        path = "/" if key is None else f"/audiences/{key}"  # whatever root path a proxy put it under
        answer = await asyncio.to_thread(self.page.respond, request.method, path)
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type,
                        headers=answer.headers)

    async def settings(self, request: Request) -> Response:
        """The settings analytics.js loads from its CDN, pointing its Segment.io plugin back at
        this server: the host the browser used and its scheme."""
        if request.method == "OPTIONS":
            return self._preflight(request, "GET, OPTIONS")
        cors = self._cors(request) or {}
        key = request.path_params["key"]
        if key not in self.keys:
            return _error(404, "unknown_write_key", "no project has this write key", cors)
        host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
        root = request.scope.get("root_path", "").rstrip("/")
        return _json(200, settings_document(key, f"{host}{root}/v1", request.url.scheme), cors)

    async def post(self, request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        if request.method == "OPTIONS":
            if endpoint != "m" and endpoint not in ENDPOINTS:
                raise HTTPException(404)
            return self._preflight(request, "POST, OPTIONS")
        cors = self._cors(request) or {}
        try:
            if endpoint == "m":
                await _read(request)  # analytics.js's own metrics: answered, not kept
                return _json(200, _OK, cors)
            if endpoint not in ENDPOINTS:
                raise HTTPException(404)
            return await self._accept(request, endpoint, cors)
        except RequestError as exc:
            return _error(exc.status, exc.code, exc.message, cors)

    async def _accept(self, request: Request, endpoint: str, cors: dict[str, str]) -> Response:
        basic = _basic_user(request.headers.get("authorization"))
        if basic is not None and basic not in self.keys:
            raise RequestError(401, "unauthorized", "unknown write key")
        body = parse(decompress(await _read(request), request.headers.get("content-encoding")))
        key = basic or body_write_key(body)
        if key is None:
            raise RequestError(401, "unauthorized", "no write key: send it as the user name of HTTP Basic "
                                                    "auth or as writeKey in the body")
        if key not in self.keys:
            raise RequestError(401, "unauthorized", "unknown write key")
        client = request.client.host if request.client else None
        accepted = accept(body, endpoint, datetime.now(timezone.utc), self.amplitude, client)
        # The write key names the source (the one the client was given for this app or site); the
        # state database keeps its fingerprint, not the key.
        source = source_of(key)
        if accepted.messages:
            try:
                stored = await self.committer.submit(accepted.messages, source, loop=asyncio.get_running_loop())
            except AudsyncError as exc:
                log.error("could not store %d messages: %s", len(accepted.messages), exc)
                raise RequestError(503, "unavailable", "the messages could not be stored; retry later") from None
            self.metrics.on_stored(accepted.messages, stored)
        # After the commit: a request answered 503 is sent again, and its rejections recorded then.
        if accepted.rejected:
            self.metrics.on_rejected([r.reason for r in accepted.rejected])
            rows = [{"index": r.index, "reason": r.reason, "example": _without_write_key(r.message),
                     "messageId": r.message.get("messageId") if isinstance(r.message, dict) else None}
                    for r in accepted.rejected]
            try:
                await asyncio.to_thread(self.rejections.record_rejections, rows, source)
            except AudsyncError as exc:  # the valid messages still count; the reasons are in the answer
                log.warning("could not record %d rejected messages: %s", len(rows), exc)
        if not accepted.rejected:
            return _json(200, _OK, cors)
        return _json(200, {"success": True, "rejected": [r.answer() for r in accepted.rejected]}, cors)


async def _read(request: Request) -> bytes:
    """The raw body, refused as soon as it grows past what the request limit allows."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > _MAX_RAW_BYTES:
        raise RequestError(400, "request_too_large", f"the request is over {MAX_REQUEST_BYTES // 1024} KB "
                                                     "(Exceed payload limit)")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > _MAX_RAW_BYTES:
                raise RequestError(400, "request_too_large", f"the request is over {MAX_REQUEST_BYTES // 1024} KB "
                                                             "(Exceed payload limit)")
            chunks.append(chunk)
    except ClientDisconnect:  # nothing was read whole, nothing is stored; no one is left to answer
        raise RequestError(400, "client_disconnected", "the client went away before sending its body") from None
    return b"".join(chunks)


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:  # a Unix socket's peer, say: no address to trust
        return False


def _without_write_key(message: Any) -> Any:
    """A rejected message as kept for `audsync status`: a single call's body (/v1/track) is the
    message, and may carry the write key, which is a secret."""
    if isinstance(message, dict) and "writeKey" in message:
        return {name: value for name, value in message.items() if name != "writeKey"}
    return message


def _basic_user(header: str | None) -> str | None:
    """The write key of `Authorization: Basic base64(key:)`; None without Basic auth (no header,
    or another scheme such as the OAuth Bearer token, which then needs the body's writeKey)."""
    if header is None:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise RequestError(401, "unauthorized", "the Authorization header is not valid Basic auth") from None
    user = decoded.partition(":")[0]
    if not user:
        raise RequestError(401, "unauthorized", "the Basic auth user name (the write key) is empty")
    return user


def settings_document(key: str, api_host: str, protocol: str) -> dict:
    """CDN settings for analytics.js (@segment/analytics-next): the Segment.io integration's
    apiKey is the body writeKey it sends and apiHost/protocol where it sends (reference section
    6); remote metrics are switched off (sampleRate 0), /v1/m is still answered."""
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": key,
                "apiHost": api_host,
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
            },
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }


def source_of(write_key: str) -> str:
    """What the state database records as a message's source: a fingerprint of its write key."""
    return "wk-" + hashlib.sha256(write_key.encode()).hexdigest()[:12]
