"""``$filter`` text -> the odata-query AST (lexer, parser, bare-value quoting), and
:class:`ODataError` (see the package docstring)."""

from __future__ import annotations

import re
from typing import Any

import polars as pl
from odata_query import ast
from odata_query import exceptions as oexc
from odata_query.grammar import ODataLexer, ODataParser

from psanalytics.errors import PsaError
from psanalytics.schema import COLUMNS

_DAY_NS = 86_400 * 1_000_000_000
_TIME_DT = pl.Datetime("ns", "UTC")
_COLS_LOWER = {c.lower(): c for c in COLUMNS}
_STRICT_REJECTED = ("contains", "startswith", "endswith")
_KEYWORDS = {"eq", "ne", "gt", "ge", "lt", "le", "and", "or", "not", "in"}


class ODataError(PsaError, ValueError):
    """A ``$filter`` (or ``$orderby``) text could not be parsed or compiled.

    ``position`` is the 1-based character position in ``text`` (None when unknown),
    ``reason`` says what was wrong; ``str(err)`` adds a caret line under the text.
    """

    def __init__(self, reason: str, *, text: str = "", position: int | None = None,
                 what: str = "$filter"):
        self.reason = reason
        self.text = text
        self.position = position
        self.what = what
        where = f" at position {position}" if position is not None else ""
        self.message = f"invalid {what}{where}: {reason}"
        snippet = ""
        if text:
            snippet = f"\n  {text}"
            if position is not None:
                snippet += "\n  " + " " * (position - 1) + "^"
        super().__init__(self.message + snippet)

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "position": self.position, "text": self.text}



#: The instants EventTime can hold (a nanosecond time), for messages.
_TIME_RANGE = "1677-09-21 .. 2262-04-11"
#: Longest $filter text read (a longer one is refused before lexing: it would cost
#: seconds and gigabytes for nothing a real filter needs).
MAX_FILTER_CHARS = 2_000_000


# --------------------------------------------------------------------------- lexer / parser


class _Lexer(ODataLexer):
    """odata-query's lexer with whole-word keywords (see the module docstring)."""

    tokens = ODataLexer.tokens
    literals = ODataLexer.literals

    @_(r"true(?!\w)|false(?!\w)")  # type: ignore[name-defined]  # noqa: F821
    def BOOLEAN(self, t):  # noqa: N802
        t.value = ast.Boolean(t.value)
        return t

    @_(r"null(?!\w)")  # type: ignore[name-defined]  # noqa: F821
    def NULL(self, t):  # noqa: N802
        t.value = ast.Null()
        return t

    @_(r"not(?:\s+|(?=\())")  # type: ignore[name-defined]  # noqa: F821
    def NOT(self, t):  # noqa: N802
        t.value = ast.Not()
        return t

    @_(r"[^\W\d](?:\.?\w){0,127}")  # type: ignore[name-defined]  # noqa: F821
    def ODATA_IDENTIFIER(self, t):  # noqa: N802
        *ns, identifier = t.value.split(".")
        t.value = ast.Identifier(identifier, tuple(ns))
        return t

    @_(r"any(?=\s*\()")  # type: ignore[name-defined]  # noqa: F821
    def ANY(self, t):  # noqa: N802
        t.value = ast.Any()
        return t

    @_(r"all(?=\s*\()")  # type: ignore[name-defined]  # noqa: F821
    def ALL(self, t):  # noqa: N802
        t.value = ast.All()
        return t


def _tokens(text: str) -> list[Any]:
    try:
        return list(_Lexer().tokenize(text))
    except oexc.TokenizingException as exc:
        idx = getattr(exc.token, "index", 0)
        raise ODataError(
            f"unexpected character {text[idx]!r}", text=text, position=idx + 1
        ) from None


# A value right after a comparison operator, written without quotes.
_BARE_VALUE = re.compile(r"(?i)(?<=\s)(eq|ne|gt|ge|lt|le)(\s+)([^\s()',]+)")
# What the grammar reads by itself: numbers, dates/times, GUIDs, keywords, identifiers.
_GRAMMAR_VALUE = re.compile(
    r"-?\d+(\.\d+)?([eE][+-]?\d+)?[dDfFmMlL]?"
    r"|\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?"
    r"|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
    r"|[^\W\d]\w*(\.[^\W\d]\w*)*"
)


def quote_bare_values(text: str) -> tuple[str, list[tuple[int, int]]]:
    """``text`` with unquoted values the grammar cannot read by itself quoted, as real
    callers wrote them: e-mails (``User.Email eq a@b.c``), ``+``, ``.``, ``-``, URLs.
    Numbers, dates, times, GUIDs, ``true/false/null`` and plain words are left as they
    are. Returns the new text and ``(position in new text, characters added before it)``
    pairs, to point errors at the text as written. A bare value holding a quote is
    ambiguous (where does it end?): :class:`ODataError` asks for quotes.
    """
    shifts: list[tuple[int, int]] = []
    out: list[str] = []
    last = 0
    added = 0
    for m in _BARE_VALUE.finditer(text):
        value = m.group(3)
        if _GRAMMAR_VALUE.fullmatch(value):
            continue
        start = m.start(3)
        out.append(text[last:start])
        out.append("'" + value + "'")
        last = m.end(3)
        at = start + added  # the opening quote, in the new text
        shifts.append((at + 1, added + 1))  # inside the value
        shifts.append((at + len(value) + 2, added + 2))  # after the closing quote
        added += 2
    if not shifts:
        return text, []
    out.append(text[last:])
    return "".join(out), shifts


def _unquoted_quote(text: str) -> ODataError | None:
    """A bare value with a quote inside (``Value eq O'Brien``) is ambiguous: say so."""
    for m in re.finditer(r"(?i)(?<=\s)(?:eq|ne|gt|ge|lt|le)\s+([^\s()']+'[^\s()]*)", text):
        if not m.group(1).startswith("'"):
            value = m.group(1)
            fixed = "'" + value.replace("'", "''") + "'"
            return ODataError(
                f"the value {value!r} has a quote inside: write it quoted, doubling the "
                f"quote ({fixed})", text=text, position=m.start(1) + 1)
    return None


def _position_as_written(pos: int, shifts: list[tuple[int, int]]) -> int:
    """A 1-based position in the quoted text -> the same place in the text as written."""
    back = 0
    for at, added in shifts:
        if pos - 1 >= at:
            back = added
    return max(1, pos - back)


def parse_filter(text: str) -> ast._Node:
    """Parse ``$filter`` text into an odata-query AST (raises :class:`ODataError`)."""
    if not isinstance(text, str):
        raise TypeError(f"$filter must be text, not {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise ODataError("the filter is empty", text=text, position=1)
    if len(text) > MAX_FILTER_CHARS:
        raise ODataError(f"the filter is {len(text):,} characters long; at most "
                         f"{MAX_FILTER_CHARS:,} are read (select fewer values per request)")
    lead = len(text) - len(text.lstrip())
    quoted, shifts = quote_bare_values(stripped)
    if shifts:
        try:
            return parse_filter(quoted)
        except ODataError as exc:
            pos = None if exc.position is None else _position_as_written(exc.position, shifts) + lead
            raise ODataError(exc.reason, text=text, position=pos) from None
    if "'" in stripped and _unquoted_quote(stripped):
        raise _unquoted_quote(stripped)  # type: ignore[misc]
    toks = _tokens(stripped)
    try:
        return ODataParser().parse(iter(toks))
    except oexc.ParsingException as exc:
        if exc.eof or exc.token is None:
            raise ODataError("the filter ends too early (an operand is missing)",
                             text=text, position=len(text.rstrip()) + 1) from None
        pos = exc.token.index
        rest = stripped[pos:]
        pos += len(rest) - len(rest.lstrip())  # tokens like " eq " carry their spaces
        words = stripped[pos:].split()
        val = words[0] if words else ""
        early = re.search(r"(?<![\w.'-])0\d{3}$", stripped[:pos])
        if early and re.match(r"-\d\d-\d\d", stripped[pos:]):
            # the grammar reads no year before 1000: "0001-01-01" lexes as 0001, -01-01
            date = stripped[early.start():pos + 6]
            raise ODataError(
                f"{date} is outside the times EventTime can hold ({_TIME_RANGE}); for an open "
                "end leave the condition out", text=text, position=lead + early.start() + 1) from None
        if not val:
            reason = "the filter ends too early (an operand is missing)"
        elif len(words) == 1 and val.lower() in _KEYWORDS:
            reason = f"the filter ends after {val!r}: a value or condition is missing"
        else:
            reason = f"unexpected {val!r}"
        raise ODataError(reason, text=text, position=lead + pos + 1) from None
    except oexc.UnknownFunctionException as exc:
        raise ODataError(
            f"unknown function {exc.function_name}()", text=text,
            position=_find(text, exc.function_name, call=True),
        ) from None
    except oexc.ArgumentCountException as exc:
        raise ODataError(str(exc), text=text, position=_find(text, exc.function_name, call=True)) from None
    except oexc.ODataException as exc:
        raise ODataError(str(exc), text=text) from None


def _find(text: str, word: str, *, call: bool = False) -> int | None:
    """1-based position of ``word`` outside quoted strings (a rough but honest locator)."""
    pat = re.compile(
        r"(?<![\w.'])" + re.escape(word) + (r"\s*\(" if call else r"(?![\w])"), re.IGNORECASE
    )
    in_str = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "'":
            in_str = not in_str
        elif not in_str and pat.match(text, i) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "._")):
            return i + 1
        i += 1
    return None
