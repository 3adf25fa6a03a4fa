"""The one place that hides credentials in text that is shown, logged or stored (DESIGN.md section 5).

URL passwords are found by their form, `scheme://user:PASSWORD@host` and `?password=` or
`&password=` in any case (SQLAlchemy's own masking knows only the first). The configured API key,
secret key and the Basic header built from them are masked wherever they appear: config.load
remembers them, because a driver or an HTTP answer may echo a credential without its URL around it.
"""

from __future__ import annotations

import re

MASK = "***"
_USERINFO_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@'\"]*:)[^\s@]+(?=@)")
_QUERY_PASSWORD = re.compile(r"([?&;]password=)[^&#\s'\"]+", re.IGNORECASE)
# A shorter literal would mask ordinary words; URL passwords are masked by their form anyway.
MIN_SECRET_LENGTH = 4

_secrets: set[str] = set()


def remember(*secrets: str) -> None:
    """Mask these values from now on, wherever redact() is applied."""
    _secrets.update(s for s in secrets if len(s) >= MIN_SECRET_LENGTH)


def redact(text: str) -> str:
    text = _USERINFO_PASSWORD.sub(r"\1" + MASK, text)
    text = _QUERY_PASSWORD.sub(r"\1" + MASK, text)
    for secret in sorted(_secrets, key=len, reverse=True):  # a longer secret may contain a shorter one
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def url_password(url: str) -> str | None:
    """The password a SQLAlchemy URL holds, in either form; None when it has none."""
    from sqlalchemy.engine.url import make_url

    try:
        parsed = make_url(url)
    except Exception:  # unparsable: redact() still masks the password by its form
        return None
    query = {k.lower(): v for k, v in parsed.query.items()}
    password = parsed.password or query.get("password")
    return password if isinstance(password, str) and password else None
