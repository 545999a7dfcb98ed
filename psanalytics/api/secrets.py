"""API keys never show: the registry of secrets, :func:`redact` (every message this
package produces goes through it), a logging filter on httpx's and our loggers, and
:class:`Secret`, a string whose ``repr``/``str`` are ``***``. (Importable from
``psanalytics.api.http`` as before.)
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import orjson

__all__ = ["MASK", "Secret", "redact", "register_secret"]

_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
MASK = "***"


def _escaped_forms(value: str) -> set[str]:
    """The forms a secret takes in messages: as is, stripped, and escaped the ways Python
    reprs (str and bytes), JSON and URLs escape it (h11 shows a bad header as ``b'...\\n'``)."""
    import urllib.parse

    forms = {value, value.strip()}
    for v in list(forms):
        forms.add(v.encode("unicode_escape").decode("ascii"))
        forms.add(repr(v.encode("utf-8"))[2:-1])
        forms.add(orjson.dumps(v).decode()[1:-1])
        forms.add(urllib.parse.quote(v, safe=""))
        forms.add(urllib.parse.quote_plus(v))
    return {f for f in forms if len(f) >= 3}


def register_secret(value: str | None) -> None:
    """Remember a secret so :func:`redact` hides it (and its escaped forms) in every
    message we produce."""
    if value and len(value) >= 3:
        forms = _escaped_forms(value)
        with _SECRETS_LOCK:
            _SECRETS.update(forms)


def redact(text: str) -> str:
    """Replace every registered secret in ``text`` with ``***``."""
    if not text:
        return text
    with _SECRETS_LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, MASK)
    return text


class _RedactFilter(logging.Filter):
    """Logging filter that redacts registered secrets from records (httpx logs URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            try:
                text = record.getMessage()
            except Exception:  # noqa: BLE001 - never break logging
                return True
            clean = redact(text)
            if clean != text:
                record.msg, record.args = clean, None
        return True


_FILTER = _RedactFilter()
for _name in ("httpx", "httpcore", "httpcore.connection", "httpcore.http11", "httpcore.http2",
              "httpcore.proxy", "psanalytics"):
    logging.getLogger(_name).addFilter(_FILTER)


class Secret:
    """A string that never shows itself: ``repr``/``str`` print ``***``.

    Use :meth:`reveal` where the real value is needed (building the auth header).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret(value)

    def reveal(self) -> str:
        """The real value."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return MASK

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return other._value == self._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:  # pragma: no cover - pickling keeps the value, not repr
        return (Secret, (self._value,))


def _reveal(key: str | Secret | None) -> str | None:
    if key is None:
        return None
    if isinstance(key, Secret):
        return key.reveal()
    return str(key)
