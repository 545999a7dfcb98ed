"""The odata-query AST -> a Polars expression (operands, comparisons, the visitor)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl
from odata_query import ast

from psanalytics._time import instant_or_none
from psanalytics.errors import TimeError
from psanalytics.query.odata._parse import (
    _COLS_LOWER,
    _DAY_NS,
    _STRICT_REJECTED,
    _TIME_DT,
    _TIME_RANGE,
    ODataError,
    _find,
    parse_filter,
)
from psanalytics.schema import COLUMNS, parse_time_expr

if TYPE_CHECKING:
    from psanalytics.query.odata.builder import Filter


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
    text = _text_of(text)
    if not isinstance(text, str):
        raise TypeError(f"$filter must be text or an F filter, not {type(text).__name__}")
    return _compile_cached(text, bool(lenient))


def filter_frame(frame: pl.DataFrame | pl.LazyFrame, text: str | Filter, *,
                 lenient: bool = False) -> pl.DataFrame:
    """The rows of a canonical events frame that ``text`` matches (order kept)."""
    out = frame.filter(compile_filter(text, lenient=lenient))
    return out.collect() if isinstance(out, pl.LazyFrame) else out


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


def _text_of(text: Any) -> Any:
    """``$filter`` text from text or an ``F`` filter (anything with ``render()``)."""
    render = getattr(text, "render", None)
    return render() if callable(render) and not isinstance(text, str) else text
