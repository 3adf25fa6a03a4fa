"""Logging setup for every command: plain lines by default, one JSON object per line on request.

Both formats mask credentials in the finished line, whatever field or traceback they came in."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

from .._redact import redact

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # Strings first: JSON escapes would hide a secret holding quotes or non-ASCII letters.
        entry = {k: redact(v) if isinstance(v, str) else v for k, v in entry.items()}
        return redact(json.dumps(entry, default=str))


class PlainFormatter(logging.Formatter):
    """`message key=value ...`: the structured fields stay readable without JSON."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in record.__dict__.items() if k not in _RESERVED)
        line = f"{record.levelname.lower()}: {record.getMessage()}"
        line = f"{line} {extras}" if extras else line
        # A crash's traceback (logger.exception) is the one thing a bug report needs.
        return redact(f"{line}\n{self.formatException(record.exc_info)}" if record.exc_info else line)


_json = False


def setup(log_format: str = "plain", level: int = logging.INFO) -> None:
    global _json
    _json = log_format == "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if _json else PlainFormatter())
    root = logging.getLogger("audsync")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def json_lines() -> bool:
    return _json


def last_words(message: str) -> None:
    """The message a command ends on: `audsync: ...` on stderr, or a JSON log line like every
    other stderr line with --log-format json."""
    if _json:
        logging.getLogger("audsync.cli").error("%s", message)
    else:
        print(redact(f"audsync: {message}"), file=sys.stderr)
