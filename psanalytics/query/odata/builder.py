"""The ``F`` filter builder: Python expressions that render ``$filter`` text."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import polars as pl

from psanalytics.query.odata._compile import compile_filter
from psanalytics.query.odata._parse import _COLS_LOWER
from psanalytics.schema import COLUMNS

# --------------------------------------------------------------------------- F builder


def _render_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and value != value:
            raise ValueError("NaN cannot be written in a $filter")
        return repr(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond:06d}0Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"cannot write a {type(value).__name__} in a $filter")


class Filter:
    """A built ``$filter``: combine with ``&``, ``|``, ``~``; ``str(f)`` is its text."""

    __slots__ = ("_text", "_prec")

    def __init__(self, text: str, prec: int = 3):
        self._text = text
        self._prec = prec  # 1 = or, 2 = and, 3 = atom

    def render(self) -> str:
        """The ``$filter`` text (quoted strings, bare 7-digit UTC datetimes)."""
        return self._text

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"F<{self._text}>"

    def _wrap(self, prec: int) -> str:
        return self._text if self._prec >= prec else f"({self._text})"

    def __and__(self, other: Filter) -> Filter:
        if not isinstance(other, Filter):
            return NotImplemented
        return Filter(f"{self._wrap(2)} and {other._wrap(2)}", 2)

    def __or__(self, other: Filter) -> Filter:
        if not isinstance(other, Filter):
            return NotImplemented
        return Filter(f"{self._wrap(1)} or {other._wrap(1)}", 1)

    def __invert__(self) -> Filter:
        return Filter(f"not ({self._text})", 3)

    def __bool__(self) -> bool:
        raise TypeError("use & | ~ to combine filters, not and/or/not")

    def __eq__(self, other: object) -> bool:  # type: ignore[override]
        return isinstance(other, Filter) and other._text == self._text

    def __hash__(self) -> int:
        return hash(self._text)

    def to_expr(self, *, lenient: bool = True) -> pl.Expr:
        """The Polars expression for this filter (lenient by default: local use)."""
        return compile_filter(self._text, lenient=lenient)


class _Path:
    """A property path in the builder: ``F.User.Email``, ``F.Payload.epi.language``."""

    __slots__ = ("_parts",)

    def __init__(self, parts: tuple[str, ...]):
        self._parts = parts

    def __getattr__(self, name: str) -> _Path:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Path((*self._parts, name))

    def __getitem__(self, name: str) -> _Path:
        return _Path((*self._parts, name))

    @property
    def name(self) -> str:
        return ".".join(self._parts)

    def __repr__(self) -> str:
        return f"F.{self.name}"

    def _op(self, op: str, value: Any) -> Filter:
        return Filter(f"{self.name} {op} {_render_value(value)}")

    def __eq__(self, value: Any) -> Filter:  # type: ignore[override]
        return self._op("eq", value)

    def __ne__(self, value: Any) -> Filter:  # type: ignore[override]
        return self._op("ne", value)

    def __lt__(self, value: Any) -> Filter:
        return self._op("lt", value)

    def __le__(self, value: Any) -> Filter:
        return self._op("le", value)

    def __gt__(self, value: Any) -> Filter:
        return self._op("gt", value)

    def __ge__(self, value: Any) -> Filter:
        return self._op("ge", value)

    __hash__ = None  # type: ignore[assignment]

    def between(self, lo: Any, hi: Any) -> Filter:
        """``lo <= prop < hi``: HALF-OPEN, the end is left out (as the paging windows and
        ``events(start=, end=)`` are), so consecutive ranges tile without overlap.

        Not KQL's ``between``, which is closed (``x between (lo .. hi)`` keeps ``hi``):
        for a closed range write ``(F.x >= lo) & (F.x <= hi)``.

        >>> F.EventTime.between("2024-01-01", "2024-02-01").render()
        "EventTime ge '2024-01-01' and EventTime lt '2024-02-01'"
        """
        return (self >= lo) & (self < hi)

    def contains(self, value: str) -> Filter:
        """``contains(prop, 'v')``: not part of the Profile Store dialect (lenient only)."""
        return Filter(f"contains({self.name}, {_render_value(value)})")

    def startswith(self, value: str) -> Filter:
        """``startswith(prop, 'v')``: lenient only."""
        return Filter(f"startswith({self.name}, {_render_value(value)})")

    def endswith(self, value: str) -> Filter:
        """``endswith(prop, 'v')``: lenient only."""
        return Filter(f"endswith({self.name}, {_render_value(value)})")


class _Root:
    """Entry point of the builder: ``F.EventType == "order"``."""

    def __getattr__(self, name: str) -> _Path:
        if name.startswith("__"):
            raise AttributeError(name)
        root = _COLS_LOWER.get(name.lower())
        if root is None:
            raise AttributeError(f"F.{name}: not an event property (known: {', '.join(COLUMNS)})")
        return _Path((root,))

    def __getitem__(self, name: str) -> _Path:
        parts = name.split(".")
        return _Path((getattr(self, parts[0]).name, *parts[1:]))

    def __repr__(self) -> str:
        return "F"


F = _Root()
