"""`audsync translate`: Segment messages as JSON lines in, one Amplitude operation per line out.

Streams line by line so memory does not grow with the input. A line that cannot be translated is
reported on stderr as {"line": N, "error": "..."} and the stream goes on.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import IO, BinaryIO, Iterator

import orjson

from ..config import AmplitudeSettings
from ..errors import UsageError, ValidationError
from ..mapping import translate

_FLUSH_BYTES = 1 << 16


@contextmanager
def open_input(path: str) -> Iterator[BinaryIO]:
    """`-` is stdin; anything else a file that must exist (a usage error otherwise)."""
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the input ({exc.strerror})") from None
    with handle:
        yield handle


def parse_line(raw: bytes) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"not valid JSON ({exc})") from None


def translate_stream(settings: AmplitudeSettings, path: str, out: IO[str], err: IO[str]) -> int:
    """Returns the exit code: 0 when every line translated (or was dropped by settings), 1 otherwise."""
    out_buffer = out.buffer if hasattr(out, "buffer") else None
    pending: list[bytes] = []
    pending_size = 0
    rejected = 0

    def flush() -> None:
        nonlocal pending_size
        if not pending:
            return
        data = b"".join(pending)
        if out_buffer is not None:
            out_buffer.write(data)
        else:
            out.write(data.decode())
        pending.clear()
        pending_size = 0

    with open_input(path) as source:
        for number, raw in enumerate(source, start=1):
            if not raw.strip():
                continue
            try:
                operations = translate(parse_line(raw), settings)
            except ValidationError as exc:
                rejected += 1
                flush()  # keep stdout and stderr in input order for a reader of both
                err.write(orjson.dumps({"line": number, "error": str(exc)}).decode() + "\n")
                continue
            for operation in operations:
                line = orjson.dumps(operation) + b"\n"
                pending.append(line)
                pending_size += len(line)
            if pending_size >= _FLUSH_BYTES:
                flush()
    flush()
    out.flush()
    return 1 if rejected else 0
