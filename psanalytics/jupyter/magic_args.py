"""Reading a ``%kql`` line: the ``name <<`` binding, the options before the query, and
``--param`` values as typed Python values."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

from psanalytics import _time
from psanalytics.errors import PsaError

BIND = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*<<\s*")
#: A duration such as ``30m``, ``1h30m``, ``500ms`` (units: ``_time.DURATION_UNITS``).
_TIMESPAN = re.compile(r"^(\d+(?:\.\d+)?[a-zµ]+)+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ][0-9:.]+)?(Z|[+-]\d{2}:?\d{2})?$")
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class KqlMagicError(PsaError):
    """A ``%kql`` cell failed: shown as the message (with the query line and a caret for KQL
    errors) instead of a traceback. ``.error`` is the underlying exception."""

    def __init__(self, message: str, error: BaseException | None = None):
        super().__init__(message)
        self.error = error

    def _render_traceback_(self) -> list[str]:  # IPython shows these lines instead of a traceback
        name = type(self.error).__name__ if self.error is not None else "KqlMagicError"
        return [f"\x1b[0;31m{name}\x1b[0m: {self}"]


def parse_param(text: str, namespace: dict[str, Any] | None = None) -> tuple[str, Any]:
    """``--param`` text -> (name, typed Python value); the engine injects it as a typed ``let``.

    ``k=42`` int, ``k=1.5`` float, ``k=true`` bool, ``k=2024-03-04T10:00:00Z`` datetime,
    ``k=1h``/``30m``/``7d``/``500ms`` timedelta, ``k=["a","b"]`` list (JSON), ``k='x'`` or
    ``k=x`` string; ``k`` alone takes the notebook variable ``k``.
    """
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not IDENT.fullmatch(name):
        raise KqlMagicError(f"--param {text!r}: {name!r} is not a valid KQL name")
    if not sep:
        ns = namespace or {}
        if name not in ns:
            raise KqlMagicError(
                f"--param {name}: no variable {name!r} in the notebook; use --param {name}=VALUE"
            )
        return name, ns[name]
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return name, raw[1:-1]
    if raw.lower() in ("true", "false"):
        return name, raw.lower() == "true"
    if re.fullmatch(r"[+-]?\d+", raw):
        return name, int(raw)
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?", raw):
        return name, float(raw)
    if _TIMESPAN.fullmatch(raw):
        try:
            return name, timedelta(microseconds=_time.parse_duration(raw) / 1_000)
        except _time.TimeError:
            pass  # e.g. 12abc: a plain string
    if _DATE.fullmatch(raw):
        try:
            return name, _time.from_ns(_time.parse_instant(raw))
        except _time.TimeError:
            raise KqlMagicError(
                f"--param {text!r}: {raw!r} is not a valid ISO 8601 datetime"
            ) from None
    if raw.startswith("["):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise KqlMagicError(f"--param {text!r}: not a JSON list ({exc.msg})") from None
        return name, value
    return name, raw


def _take_word(line: str, k: int) -> tuple[str, int]:
    """The shell-like word starting at ``k`` (quotes may hold spaces) and where it ends."""
    quote = ""
    m = k
    while m < len(line):
        ch = line[m]
        if ch == "\\" and quote != "'":
            m += 2
            continue
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch.isspace():
            break
        m += 1
    return line[k:m], m


def _split_options(line: str) -> tuple[str, str]:
    """Split ``--opt ... QUERY`` into the options text and the query text (kept verbatim).

    Options come first; the query starts at the first word that is neither an option nor
    an option's value. ``--local`` takes a value only when the next word is a plain name
    that is not followed by ``|`` (so ``%kql --local Events | take 1`` runs on the default
    frame), or with ``--local=FRAME``.
    """
    takes_value = {"--limit", "--param", "--out", "--scope", "--client"}
    i, n = 0, len(line)
    opts: list[str] = []
    while True:
        while i < n and line[i].isspace():
            i += 1
        if i >= n or not line.startswith("-", i):
            break
        word, i = _take_word(line, i)
        opts.append(word)
        key = word.split("=", 1)[0]
        if "=" in word or (key not in takes_value and key != "--local"):
            continue
        k = i
        while k < n and line[k].isspace():
            k += 1
        if k >= n:
            break
        value, end = _take_word(line, k)
        if key == "--local" and (not IDENT.fullmatch(value) or line[end:].lstrip().startswith("|")):
            continue
        opts.append(value)
        i = end
    return " ".join(opts), line[i:]
