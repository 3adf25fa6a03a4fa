"""Audience keys: the snake_case trait name a user sees in Amplitude (DESIGN.md section 4). Pure."""

from __future__ import annotations

import re
import unicodedata

_CAMEL_ACRONYM = re.compile(r"([A-Z]+)([A-Z][a-z])")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")
KEY_PATTERN = re.compile(r"[a-z0-9_]+")
# Latin letters that NFKD does not split into a base letter and accents.
_LATIN_LETTERS = str.maketrans({"ß": "ss", "æ": "ae", "Æ": "Ae", "ø": "o", "Ø": "O", "œ": "oe", "Œ": "Oe",
                                "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th",
                                "Þ": "Th", "ı": "i"})


def snake_case(name: str) -> str:
    """'Order Completed Last 30days' -> 'order_completed_last_30days'; 'orderCompleted' -> 'order_completed';
    accents are dropped ('Café Lovers' -> 'cafe_lovers')."""
    text = unicodedata.normalize("NFKD", name.translate(_LATIN_LETTERS))
    text = "".join(c for c in text if not unicodedata.combining(c))  # "Café" -> "Cafe"
    text = _CAMEL_ACRONYM.sub(r"\1_\2", text)
    text = _CAMEL.sub(r"\1_\2", text)
    text = _SEPARATORS.sub("_", text)
    return text.strip("_").lower()
