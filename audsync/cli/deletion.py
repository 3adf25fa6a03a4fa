"""`audsync delete-users`: Amplitude's User Privacy API (amplitude-api.md section 7.3).

Basic auth api_key:secret_key, at most 100 ids per request, at most 1 request per second.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import httpx
import orjson

from ..config import AmplitudeSettings, DeliverySettings
from ..delivery.policy import backoff
from ..delivery.transport import url_for
from ..errors import ConfigError, FatalDeliveryError

log = logging.getLogger("audsync.deletion")
MAX_IDS = 100
MIN_INTERVAL_S = 1.0


@dataclass
class DeletionReport:
    requested: int = 0
    accepted: int = 0
    invalid: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)   # (user id, reason)
    days: set[str] = field(default_factory=set)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def render(self) -> str:
        lines = [f"deletion requested for {self.requested:,} users: {self.accepted:,} accepted by Amplitude"]
        if self.days:
            lines.append(f"scheduled for: {', '.join(sorted(self.days))}")
        if self.invalid:
            lines.append(f"unknown to Amplitude ({len(self.invalid)}): {', '.join(self.invalid[:20])}")
        if self.failed:
            lines.append(f"failed ({len(self.failed)}): " + "; ".join(f"{u}: {r}" for u, r in self.failed[:10]))
        return "\n".join(lines)


def read_ids(path: str) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield line.strip()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the user id file ({exc.strerror})") from None


def _chunks(ids: Iterable[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    for user_id in ids:
        chunk.append(user_id)
        if len(chunk) == MAX_IDS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def delete_users(amplitude: AmplitudeSettings, delivery: DeliverySettings, user_ids: Iterable[str], *,
                 requester: str = "audsync", sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> DeletionReport:
    if not amplitude.api_key:
        raise ConfigError("amplitude.api_key (or AMPLITUDE_API_KEY) is needed for delete-users")
    check = f"check {amplitude.key_setting('api_key')} and {amplitude.key_setting('secret_key')}"
    if not amplitude.secret_key:
        raise ConfigError("amplitude.secret_key (or AMPLITUDE_SECRET_KEY) is needed for delete-users: "
                          "Amplitude's deletion API authenticates with the API key and the secret key")
    report = DeletionReport()
    url = url_for(amplitude.endpoint, "deletions")
    headers = {"Authorization": f"Basic {amplitude.basic_credentials}", "Content-Type": "application/json"}
    last_start = None
    client = None if url.startswith("file:") else httpx.Client(timeout=delivery.timeout_s)
    try:
        for chunk in _chunks(user_ids):
            report.requested += len(chunk)
            body = {"user_ids": chunk, "requester": requester, "ignore_invalid_id": True}
            for attempt in range(1, delivery.max_attempts + 1):
                if last_start is not None:  # Amplitude allows one deletion request per second
                    wait = MIN_INTERVAL_S - (clock() - last_start)
                    if wait > 0:
                        sleep(wait)
                last_start = clock()
                status, answer = _post(client, url, headers, body, amplitude)
                if status == 200:
                    invalid = [str(i) for i in (answer.get("invalid_ids") or [])] if isinstance(answer, dict) else []
                    report.invalid += invalid
                    report.accepted += len(chunk) - len(invalid)
                    if isinstance(answer, dict) and answer.get("day"):
                        report.days.add(str(answer["day"]))
                    break
                if status in (401, 403):
                    raise FatalDeliveryError(f"Amplitude refused the credentials for deletions ({status}): {check}")
                error = answer.get("error") if isinstance(answer, dict) else answer
                log.warning("amplitude answered %s to a deletion request", status or "nothing",
                            extra={"status": status, "error": error, "batch_size": len(chunk)})
                retryable = status == 0 or status == 429 or status >= 500
                if not retryable or attempt == delivery.max_attempts:
                    reason = f"{status or 'no answer'}: {error or 'failed'}"
                    report.failed += [(user_id, reason) for user_id in chunk]
                    break
                sleep(backoff(attempt, delivery.backoff_initial_s, delivery.backoff_max_s, 0.5))
    finally:
        if client is not None:
            client.close()
    return report


def _post(client: httpx.Client | None, url: str, headers: dict, body: dict,
          amplitude: AmplitudeSettings) -> tuple[int, object]:
    if client is None:  # the file: sink records the request (without credentials) and accepts it
        path = amplitude.endpoint[len("file:"):]
        with open(path, "ab") as handle:
            handle.write(orjson.dumps({"url": url[len("file:"):], "body": body}) + b"\n")
        return 200, {"day": None}
    try:
        response = client.post(url, content=orjson.dumps(body), headers=headers)
    except httpx.HTTPError as exc:
        return 0, f"network error ({type(exc).__name__})"
    try:
        return response.status_code, orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.status_code, response.text[:200]
