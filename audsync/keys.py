"""Audience keys: the snake_case trait name a user sees in Amplitude (DESIGN.md section 4). Pure."""

from __future__ import annotations

import re

_CAMEL_ACRONYM = re.compile(r"([A-Z]+)([A-Z][a-z])")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")
KEY_PATTERN = re.compile(r"[a-z0-9_]+")


def snake_case(name: str) -> str:
    """'Order Completed Last 30days' -> 'order_completed_last_30days'; 'orderCompleted' -> 'order_completed'."""
    text = _CAMEL_ACRONYM.sub(r"\1_\2", name)
    text = _CAMEL.sub(r"\1_\2", text)
    text = _SEPARATORS.sub("_", text)
    return text.strip("_").lower()
