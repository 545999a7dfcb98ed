"""Profile Store ``$filter`` dialect -> Polars expression, and the ``F`` filter builder.

>>> import polars as pl
>>> from psanalytics.query.odata import compile_filter, F
>>> expr = compile_filter("EventType eq epiPageView AND User.Email ne ''")
>>> str(F.Payload.epi.language == "sv")
"Payload.epi.language eq 'sv'"

The dialect, as real clients wrote it (see ``shared/spec/apis.md``):

- comparisons ``eq ne gt ge lt le``, logic ``and or not`` (any case), parentheses;
- values unquoted (``EventType eq epiPageView``) or single-quoted (``''`` escapes a quote);
  datetimes bare (``EventTime gt 2020-01-01T00:00:00Z``, up to 7+ fractional digits,
  no offset means UTC); a bare date compared with ``eq`` means that whole day (``gt`` a
  date means after that day, ``le`` a date means up to the end of it); GUIDs bare;
- dotted paths: ``User.Email``, ``User.Name`` (the User struct),
  ``User.Info.Email`` (a key of the user's ``Info`` object, read from its JSON text;
  ``Info.Email`` means the same: real callers wrote it, and ``User.Info`` is the only
  ``Info`` an event has) and ``Payload.epi.language`` (read from the Payload JSON text);
- ``contains``, ``startswith``, ``endswith`` and ``in`` are rejected unless ``lenient``.

Parsing uses the ``odata-query`` package's lexer and parser (text -> tokens -> AST); this
module is the visitor that turns the AST into a Polars expression. One change to the
library's lexer (a subclass, not text rewriting): its ``any``, ``all``, ``true``,
``false``, ``null`` and ``not`` tokens matched word prefixes, so unquoted values such as
``anything``, ``allowed``, ``trueview`` or ``nullable`` failed to parse; here those
keywords must be whole words. Unquoted values may also start with a non-ASCII letter
(``City eq Göteborg``).

Semantics chosen where the spec is silent:

- On the right of a comparison, an identifier is a value (``EventType eq Value`` compares
  with the text ``"Value"``). A literal on the left and a property on the right is
  flipped. Property names are matched case-insensitively; Payload keys are not.
- String columns are never null: ``eq null`` on them means ``eq ''``. ``Payload eq null``
  tests for a missing Payload. A comparison on a Payload path that is missing is false
  (and ``not`` of it is true).
- Numbers compared with a Payload path compare numerically; with a string column they
  compare with the number's text. Bare GUIDs compare case-insensitively.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import polars as pl
from odata_query import ast
from odata_query import exceptions as oexc
from odata_query.grammar import ODataLexer, ODataParser

from psanalytics._time import from_ns, instant_or_none
from psanalytics.errors import PsaError, TimeError
from psanalytics.schema import COLUMNS, parse_time_expr

__all__ = [
    "ODataError",
    "compile_filter",
    "filter_frame",
    "parse_filter",
    "time_bounds",
    "time_bounds_ns",
    "split_filter",
    "parse_orderby",
    "F",
    "Filter",
]

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


# --------------------------------------------------------------------------- time helpers

def _is_date_only(text: str) -> bool:
    return re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()) is not None


def _ns_lit(ns: int) -> pl.Expr:
    return pl.lit(ns, pl.Int64).cast(_TIME_DT)


# --------------------------------------------------------------------------- operands


@dataclass(frozen=True)
class _Prop:
    """A resolved property: a canonical column, a User field, or a Payload JSON path."""

    kind: str  # "string" | "time" | "user" | "payload" | "payload_root"
    name: str  # display name, e.g. "Payload.epi.language"
    column: str  # "Payload" or "User.Info" for the JSON kinds
    path: tuple[str, ...] = ()

    def expr(self) -> pl.Expr:
        if self.kind == "user":
            return pl.col("User").struct.field(self.path[0])
        if self.kind in ("payload", "payload_root"):
            col = (pl.col("User").struct.field("Info") if self.column == "User.Info"
                   else pl.col("Payload"))
            if self.kind == "payload_root":
                if self.column == "User.Info":  # "" means absent there (schema._absent)
                    return pl.when(col == "").then(None).otherwise(col)
                return col
            jp = "$" + "".join(f".{p}" if re.fullmatch(r"\w+", p) else f"['{p}']" for p in self.path)
            return col.str.json_path_match(jp)
        return pl.col(self.column)


@dataclass(frozen=True)
class _Lit:
    kind: str  # "string" | "ident" | "int" | "float" | "bool" | "null" | "guid" | "date" | "datetime"
    value: Any
    text: str


def _resolve(node: Any) -> _Prop | None:
    if not isinstance(node, ast.Identifier):
        return None
    parts = (*node.namespace, node.name)
    if parts[0].lower() == "info" and len(parts) > 1:
        parts = ("User", *parts)  # Info.Email as real callers wrote it: the user's Info
    root = _COLS_LOWER.get(parts[0].lower())
    if root is None:
        return None
    name = ".".join((root, *parts[1:]))
    if root == "User":
        if len(parts) == 2 and parts[1].lower() in ("email", "name"):
            field = {"email": "Email", "name": "Name"}[parts[1].lower()]
            return _Prop("user", f"User.{field}", "User", (field,))
        if len(parts) >= 2 and parts[1].lower() == "info":
            # Info is JSON text (an object of strings): its keys are matched as written
            if len(parts) == 2:
                return _Prop("payload_root", "User.Info", "User.Info")
            return _Prop("payload", ".".join(("User.Info", *parts[2:])), "User.Info",
                         tuple(parts[2:]))
        return _Prop("bad", name, "User", tuple(parts[1:]))
    if root == "Payload":
        if len(parts) == 1:
            return _Prop("payload_root", name, "Payload")
        return _Prop("payload", name, "Payload", tuple(parts[1:]))
    if len(parts) > 1:
        return _Prop("bad", name, root, tuple(parts[1:]))
    if root == "EventTime":
        return _Prop("time", name, root)
    return _Prop("string", name, root)


def _literal(node: Any) -> _Lit | None:
    if isinstance(node, ast.String):
        return _Lit("string", node.val, f"'{node.val}'")
    if isinstance(node, ast.Identifier):
        text = ".".join((*node.namespace, node.name))
        return _Lit("ident", text, text)
    if isinstance(node, ast.Integer):
        return _Lit("int", int(node.val), node.val)
    if isinstance(node, ast.Float):
        return _Lit("float", float(node.val), node.val)
    if isinstance(node, ast.Boolean):
        return _Lit("bool", node.val.lower() == "true", node.val.lower())
    if isinstance(node, ast.Null):
        return _Lit("null", None, "null")
    if isinstance(node, ast.GUID):
        return _Lit("guid", node.val.lower(), node.val)
    if isinstance(node, ast.Date):
        return _Lit("date", node.val, node.val)
    if isinstance(node, ast.DateTime):
        return _Lit("datetime", node.val, node.val)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _literal(node.operand)
        if inner is not None and inner.kind in ("int", "float"):
            return _Lit(inner.kind, -inner.value, "-" + inner.text)
    return None


_FLIP = {ast.Lt: ast.Gt, ast.Gt: ast.Lt, ast.LtE: ast.GtE, ast.GtE: ast.LtE, ast.Eq: ast.Eq,
         ast.NotEq: ast.NotEq}
_OPS = {ast.Eq: "eq", ast.NotEq: "ne", ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge"}


def _cmp(left: pl.Expr, op: str, right: Any) -> pl.Expr:
    if op == "eq":
        return left == right
    if op == "ne":
        return left != right
    if op == "lt":
        return left < right
    if op == "le":
        return left <= right
    if op == "gt":
        return left > right
    return left >= right


#: The instants EventTime can hold (a nanosecond time), for messages.
_TIME_RANGE = "1677-09-21 .. 2262-04-11"
#: Longest $filter text read (a longer one is refused before lexing: it would cost
#: seconds and gigabytes for nothing a real filter needs).
MAX_FILTER_CHARS = 2_000_000


def _range_error(value: str, text: str) -> ODataError:
    return ODataError(
        f"{value} is outside the times EventTime can hold ({_TIME_RANGE}); for an open end "
        "leave the condition out", text=text, position=_find(text, value.strip("'")))


def _instant(raw: str, text: str) -> int | None:
    """ns of a literal instant; None when not ISO 8601; an ODataError when out of range."""
    try:
        return instant_or_none(raw)
    except TimeError:
        raise _range_error(raw, text) from None


def _time_cmp(col: pl.Expr, op: str, lit: _Lit, *, text: str) -> pl.Expr:
    """Compare a Datetime(ns, UTC) expression with a date/datetime literal."""
    raw = lit.value if lit.kind in ("date", "datetime", "string", "ident") else None
    ns = _instant(raw, text) if isinstance(raw, str) else None
    if ns is None:
        raise ODataError(
            f"cannot compare a time with {lit.text} (write a bare ISO 8601 datetime such as "
            "2020-01-01T00:00:00Z, or a date)",
            text=text, position=_find(text, lit.text.strip("'")) if lit.kind != "string" else None,
        )
    if _is_date_only(raw):
        lo, hi = _ns_lit(ns), _ns_lit(ns + _DAY_NS)
        return {
            "eq": (col >= lo) & (col < hi),
            "ne": (col < lo) | (col >= hi),
            "lt": col < lo,
            "le": col < hi,
            "gt": col >= hi,
            "ge": col >= lo,
        }[op]
    return _cmp(col, op, _ns_lit(ns))


class _Compiler:
    def __init__(self, text: str, lenient: bool):
        self.text = text
        self.lenient = lenient

    def pos(self, word: str, call: bool = False) -> int | None:
        return _find(self.text, word, call=call)

    def err(self, reason: str, word: str | None = None, call: bool = False) -> ODataError:
        return ODataError(reason, text=self.text, position=self.pos(word, call) if word else None)

    def visit(self, node: Any) -> pl.Expr:
        if isinstance(node, ast.BoolOp):
            # A long and/or chain is a deep tree: flatten it (no recursion per term) and
            # combine the terms in one flat horizontal expression.
            op = type(node.op)
            terms = _chain(node, op)
            exprs = [self.visit(t) for t in terms]
            return pl.all_horizontal(exprs) if op is ast.And else pl.any_horizontal(exprs)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            n = 0
            while isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
                node, n = node.operand, n + 1
            inner = self.visit(node)
            return ~inner if n % 2 else inner
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.BinOp):
            raise self.err("arithmetic (add, sub, mul, div, mod) is not supported in $filter")
        if isinstance(node, ast.CollectionLambda):
            raise self.err("any()/all() lambdas are not supported in $filter")
        lit = _literal(node)
        if lit is not None:
            word = lit.text.strip("'")
            raise self.err(
                f"{lit.text} is a value, not a condition (expected e.g. 'Prop eq value')", word)
        raise self.err(f"unsupported expression {type(node).__name__}")

    # ---------------------------------------------------------------- comparisons
    def operand(self, node: Any) -> tuple[_Prop | None, _Lit | None, pl.Expr | None]:
        if isinstance(node, ast.Call):
            fname = node.func.full_name()
            if fname in ("tolower", "toupper") and self.lenient:
                prop = _resolve(node.args[0]) if node.args else None
                if prop is None or prop.kind not in ("string", "user", "payload"):
                    raise self.err(f"{fname}() takes a text property", fname, call=True)
                e = prop.expr()
                return prop, None, (e.str.to_lowercase() if fname == "tolower" else e.str.to_uppercase())
            raise self.unsupported_function(fname)
        prop = _resolve(node)
        if prop is not None:
            if prop.kind == "bad":
                raise self.err(
                    f"unknown property {prop.name} ({prop.column} has no field "
                    f"{'.'.join(prop.path)}; known: User.Email, User.Name, User.Info.<key>, "
                    "Payload.<path>)",
                    prop.name.split(".")[0],
                )
            return prop, None, None
        return None, _literal(node), None

    def compare(self, node: ast.Compare) -> pl.Expr:
        op_t = type(node.comparator)
        if op_t is ast.In:
            if not self.lenient:
                raise ODataError(
                    "the 'in' operator is not supported by the Profile Store $filter dialect "
                    "(combine 'eq' with 'or'; the emulator allows it only when started lenient)",
                    text=self.text, position=_find(self.text, "in"),
                )
            prop, _, pexpr = self.operand(node.left)
            if prop is None:
                raise self.err("'in' needs a property on its left")
            values = node.right.val if isinstance(node.right, ast.List) else [node.right]
            parts = [self.compare_values(prop, pexpr, "eq", _literal(v)) for v in values]
            out = parts[0]
            for p in parts[1:]:
                out = out | p
            return out
        op = _OPS[op_t]
        lprop, llit, lexpr = self.operand(node.left)
        if lprop is None:
            # A literal (or unknown name) on the left: a property on the right flips it.
            rprop, _rlit, rexpr = (None, None, None)
            if isinstance(node.right, (ast.Identifier, ast.Call)):
                rprop, _rlit, rexpr = self.operand(node.right)
            if rprop is None:
                name = llit.text if llit else "?"
                if llit is not None and llit.kind == "ident":
                    raise self.err(
                        f"unknown property {name} (known: {', '.join(COLUMNS)}, User.Email, "
                        "User.Name, User.Info.<key>, Payload.<path>)", name.split(".")[0])
                raise self.err(f"a comparison needs a property on one side ({name} {op} ...)",
                               name.strip("'"))
            flipped = _OPS[_FLIP[op_t]]
            return self.compare_values(rprop, rexpr, flipped, llit)
        rlit = _literal(node.right)
        if rlit is None:
            if isinstance(node.right, ast.Call):
                raise self.unsupported_function(node.right.func.full_name())
            raise self.err(f"the right side of '{op}' must be a value")
        return self.compare_values(lprop, lexpr, op, rlit)

    def compare_values(self, prop: _Prop, pexpr: pl.Expr | None, op: str, lit: _Lit | None) -> pl.Expr:
        if lit is None:
            raise self.err(f"{prop.name} must be compared with a value")
        col = pexpr if pexpr is not None else prop.expr()
        if prop.kind == "payload_root":
            if lit.kind != "null" or op not in ("eq", "ne"):
                example = ("User.Info.Email" if prop.column == "User.Info"
                           else "Payload.epi.language")
                raise self.err(f"{prop.name} itself can only be compared with null "
                               f"(use a path such as {example})", prop.name.split(".")[0])
            return col.is_null() if op == "eq" else col.is_not_null()
        if prop.kind == "time":
            if lit.kind == "null":
                return (col.is_null() if op == "eq" else col.is_not_null()) if op in ("eq", "ne") else pl.lit(False)
            return _time_cmp(col, op, lit, text=self.text)
        if prop.kind == "payload":
            if lit.kind == "null":
                if op not in ("eq", "ne"):
                    raise self.err(f"null can only be compared with eq/ne ({prop.name})", prop.name)
                return col.is_null() if op == "eq" else col.is_not_null()
            if lit.kind in ("int", "float"):
                return _cmp(col.cast(pl.Float64, strict=False), op, float(lit.value)).fill_null(False)
            if lit.kind == "bool":
                return _cmp(col, op, "true" if lit.value else "false").fill_null(False)
            if lit.kind in ("date", "datetime"):
                return _time_cmp(parse_time_expr(col), op, lit, text=self.text).fill_null(False)
            if lit.kind == "guid":
                return _cmp(col.str.to_lowercase(), op, lit.value).fill_null(False)
            return _cmp(col, op, str(lit.value)).fill_null(False)
        # Text columns and User fields: never null, "" when missing.
        if lit.kind == "null":
            value = ""
        elif lit.kind == "bool":
            value = "true" if lit.value else "false"
        elif lit.kind == "guid":
            return _cmp(col.str.to_lowercase(), op, lit.value)
        elif lit.kind in ("int", "float", "date", "datetime"):
            value = lit.text
        else:
            value = str(lit.value)
        return _cmp(col, op, value)

    # ---------------------------------------------------------------- functions
    def unsupported_function(self, fname: str) -> ODataError:
        if fname in _STRICT_REJECTED:
            return ODataError(
                f"the function {fname}() is not supported by the Profile Store $filter dialect "
                "(no wildcards; the emulator allows it only when started lenient)",
                text=self.text, position=_find(self.text, fname, call=True),
            )
        return ODataError(f"the function {fname}() is not supported in $filter",
                          text=self.text, position=_find(self.text, fname, call=True))

    def call(self, node: ast.Call) -> pl.Expr:
        fname = node.func.full_name()
        if fname not in _STRICT_REJECTED or not self.lenient:
            raise self.unsupported_function(fname)
        prop, _, pexpr = self.operand(node.args[0])
        lit = _literal(node.args[1])
        if prop is None or prop.kind not in ("string", "user", "payload") or lit is None:
            raise self.err(f"{fname}() takes a text property and a value", fname, call=True)
        col = pexpr if pexpr is not None else prop.expr()
        val = str(lit.value) if lit.kind in ("string", "ident", "guid") else lit.text
        if fname == "contains":
            out = col.str.contains(val, literal=True)
        elif fname == "startswith":
            out = col.str.starts_with(val)
        else:
            out = col.str.ends_with(val)
        return out.fill_null(False)


@functools.lru_cache(maxsize=512)
def _parse_cached(text: str) -> ast._Node:
    return parse_filter(text)


@functools.lru_cache(maxsize=512)
def _compile_cached(text: str, lenient: bool) -> pl.Expr:
    return _Compiler(text, lenient).visit(_parse_cached(text)).fill_null(False)


def compile_filter(text: str | Filter, *, lenient: bool = False) -> pl.Expr:
    """Compile Profile Store ``$filter`` text (or an ``F`` filter) to a Polars expression.

    The expression is boolean and meant for ``frame.filter(...)`` on the canonical events
    frame. Raises :class:`ODataError` naming the position and the reason. ``lenient``
    also accepts ``contains``/``startswith``/``endswith``/``in``/``tolower``/``toupper``.
    """
    if isinstance(text, Filter):
        text = text.render()
    if not isinstance(text, str):
        raise TypeError(f"$filter must be text or an F filter, not {type(text).__name__}")
    return _compile_cached(text, bool(lenient))


def filter_frame(frame: pl.DataFrame | pl.LazyFrame, text: str | Filter, *,
                 lenient: bool = False) -> pl.DataFrame:
    """The rows of a canonical events frame that ``text`` matches (order kept)."""
    out = frame.filter(compile_filter(text, lenient=lenient))
    return out.collect() if isinstance(out, pl.LazyFrame) else out


# --------------------------------------------------------------------------- time bounds


def _chain(node: Any, op: type) -> list[Any]:
    """The terms of a chain of one boolean operator, left to right, without recursion
    (a filter of thousands of ``or`` terms is a tree thousands deep)."""
    out: list[Any] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.BoolOp) and isinstance(n.op, op):
            stack.append(n.right)
            stack.append(n.left)
        else:
            out.append(n)
    return out


def _conjuncts(node: Any) -> Iterator[Any]:
    yield from _chain(node, ast.And)


def _time_term(c: Any, text: str = "") -> list[tuple[str, int, bool]] | None:
    """The bound(s) a top-level conjunct puts on EventTime, exactly; None if it is not a
    plain time comparison (``("lo"|"hi", ns, inclusive)`` items)."""
    if not isinstance(c, ast.Compare) or type(c.comparator) not in _OPS:
        return None
    op_t = type(c.comparator)
    lp, rp = _resolve(c.left), _resolve(c.right)
    if lp is not None and lp.kind == "time" and rp is None:
        lit = _literal(c.right)
    elif rp is not None and rp.kind == "time" and lp is None:
        lit, op_t = _literal(c.left), _FLIP[op_t]
    else:
        return None
    if lit is None or lit.kind not in ("date", "datetime", "string"):
        return None
    ns = _instant(str(lit.value), text)
    if ns is None:
        return None
    op = _OPS[op_t]
    if op == "ne":
        return None
    if _is_date_only(str(lit.value)):
        d0, d1 = ns, ns + _DAY_NS
        return {
            "eq": [("lo", d0, True), ("hi", d1, False)],
            "lt": [("hi", d0, False)],
            "le": [("hi", d1, False)],
            "gt": [("lo", d1, True)],
            "ge": [("lo", d0, True)],
        }[op]
    return {
        "eq": [("lo", ns, True), ("hi", ns, True)],
        "gt": [("lo", ns, False)],
        "ge": [("lo", ns, True)],
        "lt": [("hi", ns, False)],
        "le": [("hi", ns, True)],
    }[op]


def _split(text: str) -> tuple[tuple[int | None, bool, int | None, bool], list[Any]]:
    lo: int | None = None
    lo_inc = True
    hi: int | None = None
    hi_inc = True
    rest: list[Any] = []
    for c in _conjuncts(_parse_cached(text)):
        items = _time_term(c, text)
        if items is None:
            rest.append(c)
            continue
        for side, v, inc in items:
            if side == "lo" and (lo is None or v > lo or (v == lo and not inc)):
                lo, lo_inc = v, inc
            elif side == "hi" and (hi is None or v < hi or (v == hi and not inc)):
                hi, hi_inc = v, inc
    return (lo, lo_inc, hi, hi_inc), rest


_NODE_CACHE: dict[tuple[str, bool], pl.Expr] = {}


def split_filter(text: str | Filter, *, lenient: bool = False
                 ) -> tuple[tuple[int | None, bool, int | None, bool], pl.Expr | None]:
    """``(time_bounds_ns(text), rest)``: the EventTime bounds that the top-level ``and``
    terms set exactly, and the expression for every other term (None when the bounds say
    it all). Rows inside the bounds (EventTime not null) that match ``rest`` are exactly
    the rows ``compile_filter(text)`` matches; the emulator slices its sorted store by the
    bounds and evaluates only ``rest`` on the slice. Raises :class:`ODataError`.
    """
    if isinstance(text, Filter):
        text = text.render()
    bounds, rest = _split(text)
    if not rest:
        return bounds, None
    exprs = []
    comp = _Compiler(text, lenient)
    for node in rest:
        try:
            key: tuple[str, bool] | None = (repr(node), bool(lenient))
        except RecursionError:  # a very deep term: compile it, do not cache it
            key = None
        e = _NODE_CACHE.get(key) if key is not None else None
        if e is None:
            e = comp.visit(node).fill_null(False)
            if key is not None:
                if len(_NODE_CACHE) > 2048:
                    _NODE_CACHE.clear()
                _NODE_CACHE[key] = e
        exprs.append(e)
    out = exprs[0]
    for e in exprs[1:]:
        out = out & e
    return bounds, out


def time_bounds_ns(text: str | Filter | None) -> tuple[int | None, bool, int | None, bool]:
    """Like :func:`time_bounds`, in exact integer nanoseconds since the epoch."""
    if text is None:
        return None, True, None, True
    if isinstance(text, Filter):
        text = text.render()
    if not text.strip():
        return None, True, None, True
    return _split(text)[0]


def time_bounds(text: str | Filter | None) -> tuple[datetime | None, bool, datetime | None, bool]:
    """Bounds on ``EventTime`` implied by the filter's top-level ``and`` conjuncts.

    Returns ``(lo, lo_inclusive, hi, hi_inclusive)``; ``None`` for an open end. Terms under
    ``or``/``not`` are ignored (the bounds are a superset of the matches, never narrower).
    Python datetimes hold microseconds: a bound with finer digits is widened to the
    enclosing microsecond and made inclusive (use :func:`time_bounds_ns` for exact ns).
    """
    lo, lo_inc, hi, hi_inc = time_bounds_ns(text)
    lo_dt = hi_dt = None
    if lo is not None:
        lo_dt = from_ns(lo)
        if lo % 1000:
            lo_inc = True
    if hi is not None:
        up = -((-hi) // 1000) * 1000
        hi_dt = from_ns(up)
        if up != hi:
            hi_inc = True
    return lo_dt, lo_inc, hi_dt, hi_inc


# --------------------------------------------------------------------------- $orderby


_ORDER_TERM = re.compile(r"^\s*([A-Za-z_][\w.]*)(?:\s+(asc|desc))?\s*$", re.IGNORECASE)


def parse_orderby(text: str | None, *, server: bool = True) -> list[tuple[str, bool]]:
    """``"EventTime desc, TrackId"`` -> ``[("EventTime", True), ("TrackId", False)]``.

    The one ``$orderby`` reader (the emulator, and the client's own ordering and
    ``$orderby`` for ``events(orderby=...)``). Each term is ``Prop [asc|desc]`` (direction
    in any case, ascending by default); the bool is "descending". Column names come back
    in their canonical spelling (``eventtype`` -> ``EventType``, ``user.email`` ->
    ``User.Email``). With ``server`` (the default) only what the API orders by is allowed:
    a column or ``User.Email``/``User.Name``; with ``server=False`` any column or dotted
    path is returned (the client sorts a frame by it, e.g. ``Payload``). Raises
    :class:`ODataError` with the position of a bad term.

    >>> parse_orderby("eventtime DESC, User.email")
    [('EventTime', True), ('User.Email', False)]
    >>> parse_orderby("Payload desc", server=False)
    [('Payload', True)]
    """
    out: list[tuple[str, bool]] = []
    if text is None or not text.strip():
        return out
    offset = 0
    for term in text.split(","):
        m = _ORDER_TERM.match(term)
        pos = offset + len(term) - len(term.lstrip()) + 1
        if not m:
            raise ODataError(f"expected 'Property [asc|desc]', got {term.strip()!r}",
                             text=text, position=pos, what="$orderby")
        name, direction = m.group(1), (m.group(2) or "asc").lower()
        parts = name.split(".")
        root = _COLS_LOWER.get(parts[0].lower())
        if root == "User" and len(parts) == 2 and parts[1].lower() in ("email", "name"):
            canon: str | None = f"User.{parts[1].capitalize()}"
        elif root is not None and root not in ("User", "Payload") and len(parts) == 1:
            canon = root
        else:
            canon = None  # not a key the API orders by
        if canon is None and server:
            raise ODataError(f"cannot order by {name!r} (use a column such as EventTime, or "
                             "User.Email / User.Name)", text=text, position=pos, what="$orderby")
        if canon is None:
            canon = ".".join([root or parts[0], *parts[1:]])
        out.append((canon, direction == "desc"))
        offset += len(term) + 1
    return out


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
