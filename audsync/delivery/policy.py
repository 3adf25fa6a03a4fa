"""What an Amplitude answer means for the items of one request (amplitude-api.md section 4). Pure.

`classify` turns (api, status, body, headers, items) into one Decision; the deliverer carries it
out. An answer not recognised here is never success.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

OK = "ok"
REJECT = "reject"        # `rejected` items end rejected with their reason; the rest are resent
SPLIT = "split"          # resend in halves (413, or a 400 that names no item)
THROTTLE = "throttle"    # `paused` items wait `pause_s`; `parked` end undelivered; the rest resent at once
RETRY = "retry"          # resend all after a backoff (5xx, network errors, unknown answers)
FATAL = "fatal"          # stop: the configuration is wrong (invalid API key, blocked by the firewall)

_INDEX_MAPS = (
    ("events_with_invalid_fields", "invalid field"),
    ("events_with_missing_fields", "missing field"),
    ("events_with_invalid_id_lengths", "invalid id length"),
)


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str = ""
    rejected: Mapping[int, str] = field(default_factory=dict)
    paused: Sequence[int] = ()
    parked: Mapping[int, str] = field(default_factory=dict)
    pause_s: float = 0.0


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after") or headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _ids(item: Mapping[str, Any]) -> tuple[Any, Any]:
    return item.get("user_id"), item.get("device_id")


def classify(api: str, status: int, body: Any, headers: Mapping[str, str], items: Sequence[Mapping[str, Any]],
             throttle_pause_s: float, batch_endpoint: bool, api_key_setting: str = "amplitude.api_key") -> Decision:
    """`body` is the parsed JSON answer (or its text, or None); `items` the request's item bodies;
    `api_key_setting` where the key was set (AmplitudeSettings.key_setting)."""
    data = body if isinstance(body, dict) else {}
    error = str(data.get("error") or (body if isinstance(body, str) else "") or "").strip()
    if status == 200:
        return Decision(OK)
    if status == 0:
        return Decision(RETRY, reason=error or "network error")
    if status == 400:
        if error.lower().startswith("invalid api key") or data.get("missing_field") == "api_key":
            return Decision(FATAL, reason=f"Amplitude refused the API key (from {api_key_setting}; "
                                          f"400 Invalid API key): check {api_key_setting}")
        rejected: dict[int, str] = {}
        present = [name for name, _ in _INDEX_MAPS if data.get(name)]
        # Amplitude's one `error` text describes one kind of problem: quoting it on items listed
        # under another map would give them the wrong reason
        detail = f" ({error})" if error and len(present) == 1 else ""
        for name, label in _INDEX_MAPS:
            for fld, indexes in (data.get(name) or {}).items():
                for index in indexes if isinstance(indexes, list) else []:
                    if isinstance(index, int) and 0 <= index < len(items):
                        rejected.setdefault(index, f"{label}: {fld}{detail}")
        for index in data.get("silenced_events") or []:
            if isinstance(index, int) and 0 <= index < len(items):
                rejected.setdefault(index, "device silenced by Amplitude")
        if rejected:
            return Decision(REJECT, reason=error, rejected=rejected)
        if len(items) > 1:
            return Decision(SPLIT, reason=error or "400")
        return Decision(REJECT, reason=error, rejected={0: f"400: {error or 'invalid request'}"})
    if status == 403:
        return Decision(FATAL, reason="Amplitude refused the request (403 Forbidden, its firewall blocked it)")
    if status == 413:
        if len(items) > 1:
            return Decision(SPLIT, reason="413 payload too large")
        return Decision(REJECT, reason="413", rejected={0: "413: payload too large even alone"})
    if status == 429:
        default_pause = throttle_pause_s if (api == "event" and not batch_endpoint) else throttle_pause_s / 2
        pause = _retry_after(headers)
        pause = default_pause if pause is None else pause
        quota_users = data.get("exceeded_daily_quota_users") or {}
        quota_devices = data.get("exceeded_daily_quota_devices") or {}
        parked = {}
        for i, item in enumerate(items):
            user, device = _ids(item)
            if (user is not None and user in quota_users) or (device is not None and device in quota_devices):
                parked[i] = "exceeded Amplitude's daily quota for this user or device"
        throttled = data.get("throttled_events")
        if isinstance(throttled, list) and throttled:
            paused = [i for i in throttled if isinstance(i, int) and 0 <= i < len(items) and i not in parked]
        else:
            users = data.get("throttled_users") or {}
            devices = data.get("throttled_devices") or {}
            if users or devices:
                paused = [i for i, item in enumerate(items) if i not in parked
                          and ((_ids(item)[0] in users) or (_ids(item)[1] in devices))]
            else:  # a bare 429 names nobody: the whole request waits
                paused = [i for i in range(len(items)) if i not in parked]
        return Decision(THROTTLE, reason=error or "429 too many requests", paused=paused, parked=parked,
                        pause_s=pause)
    if 500 <= status < 600:
        return Decision(RETRY, reason=f"{status} {error}".strip(), pause_s=_retry_after(headers) or 0.0)
    return Decision(RETRY, reason=f"unexpected answer {status} {error}".strip())


def backoff(attempt: int, initial_s: float, max_s: float, rng: float) -> float:
    """Capped exponential backoff with full jitter: attempt 1 waits up to initial_s."""
    ceiling = min(max_s, initial_s * (2 ** max(0, attempt - 1)))
    return ceiling * (0.5 + rng / 2)
