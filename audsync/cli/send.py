"""`audsync send`: Segment messages (JSON lines) translated and delivered to Amplitude.

The same flow as a sync without sources and diff: translate, deliver, report. Memory stays
bounded: lines are read as the deliverer asks for them, and a message is kept only while its
operations are unsettled. Rejected and undelivered messages go to the rejects file as the
original message plus an `_audsync` field (line, status, reason), ready to fix and resend.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any, Iterator

import orjson

from ..config import Config
from ..delivery import DELIVERED, REJECTED, Deliverer, Outcomes
from ..errors import ValidationError
from ..mapping import translate
from .translate_stream import open_input, parse_line

INVALID = "invalid"


@dataclass
class SendSummary:
    read: int = 0
    dropped: int = 0                     # filtered out by settings (integrations, page settings)
    invalid: int = 0                     # could not be translated
    operations: int = 0
    delivered: Counter = field(default_factory=Counter)   # api -> operations
    rejected: int = 0                    # messages with an operation Amplitude refused for good
    undelivered: int = 0                 # messages with an operation whose retries ran out
    reasons: Counter = field(default_factory=Counter)
    stopped: bool = False

    @property
    def exit_code(self) -> int:
        return 1 if (self.invalid or self.rejected or self.undelivered or self.stopped) else 0

    def render(self) -> str:
        delivered = ", ".join(f"{n:,} {api}" for api, n in sorted(self.delivered.items())) or "none"
        lines = [
            f"messages read: {self.read:,}",
            f"operations delivered: {delivered}",
            f"dropped by settings: {self.dropped:,}",
            f"invalid (not translated): {self.invalid:,}",
            f"rejected by Amplitude: {self.rejected:,}",
            f"undelivered (retries exhausted): {self.undelivered:,}",
        ]
        if self.stopped:
            lines.append("stopped before the end of the input")
        if self.reasons:
            lines.append("top reasons:")
            lines += [f"  {count:,} x {reason}" for reason, count in self.reasons.most_common(5)]
        return "\n".join(lines)


class _Message:
    """One input message whose operations are in delivery."""

    __slots__ = ("line", "raw", "left", "status", "reason")

    def __init__(self, line: int, raw: bytes, operations: int):
        self.line, self.raw, self.left = line, raw, operations
        self.status = DELIVERED
        self.reason: str | None = None


class _Rejects:
    def __init__(self, handle: IO[bytes] | None):
        self.handle = handle

    def write(self, line: int, raw: bytes, status: str, reason: str) -> None:
        if self.handle is None:
            return
        note = {"line": line, "status": status, "reason": reason}
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            message = None
        if isinstance(message, dict):
            message["_audsync"] = note
            try:
                line = orjson.dumps(message)
            except orjson.JSONEncodeError:
                # nested deeper than orjson writes (it reads deeper): the note goes into the text as read
                line = b'{"_audsync":' + orjson.dumps(note) + b"," + raw.strip()[1:]
            self.handle.write(line + b"\n")
        else:  # not an object: keep the text as read so nothing is lost
            self.handle.write(orjson.dumps({"_audsync": note, "raw": raw.decode("utf-8", "replace").rstrip("\n")}) + b"\n")


def send(config: Config, input_path: str, *, rejects: IO[bytes] | None = None, progress: Any = None,
         stop_event: threading.Event | None = None) -> SendSummary:
    config.require_api_key("send")
    summary = SendSummary()
    sink = _Rejects(rejects)
    phase = progress.phase("sending") if progress is not None else None

    def operations(source) -> Iterator[tuple[_Message, dict]]:
        for number, raw in enumerate(source, start=1):
            if stop_event is not None and stop_event.is_set():
                summary.stopped = True
                return
            if not raw.strip():
                continue
            summary.read += 1
            try:
                ops = translate(parse_line(raw), config.amplitude)
            except ValidationError as exc:
                summary.invalid += 1
                summary.reasons[f"invalid: {exc}"[:200]] += 1
                sink.write(number, raw, INVALID, str(exc))
                continue
            if not ops:
                summary.dropped += 1
                continue
            summary.operations += len(ops)
            message = _Message(number, raw, len(ops))
            for op in ops:
                yield message, op

    def on_outcomes(outcomes: Outcomes) -> None:
        status, reason = outcomes.status, outcomes.reason
        if status == DELIVERED:
            summary.delivered[outcomes.api] += len(outcomes)
        for message in outcomes.refs:
            if status != DELIVERED and (message.status == DELIVERED or status != REJECTED):
                message.status, message.reason = status, reason
            message.left -= 1
            if message.left == 0 and message.status != DELIVERED:
                if message.status == REJECTED:
                    summary.rejected += 1
                else:
                    summary.undelivered += 1
                summary.reasons[f"{message.status}: {message.reason}"[:200]] += 1
                sink.write(message.line, message.raw, message.status, message.reason or "")
        if phase is not None:
            phase.advance(len(outcomes))

    with open_input(input_path) as source, Deliverer(config.amplitude, config.delivery) as deliverer:
        try:
            deliverer.deliver(operations(source), on_outcomes,
                              should_stop=None if stop_event is None else stop_event.is_set)
        finally:
            if phase is not None:
                phase.close()
    if stop_event is not None and stop_event.is_set():
        summary.stopped = True
    return summary
