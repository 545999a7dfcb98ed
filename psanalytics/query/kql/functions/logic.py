"""Conversions (toint, toreal, tobool, parse_json...), predicates (isempty, isnull...),
conditionals (iff, case, coalesce, min_of/max_of) and math."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import polars as pl

from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.functions._base import (
    FUNC_IMPLS,
    V,
    _s,
    args,
    const_long,
    fn,
    want,
)
from psanalytics.query.kql.types import (
    NUMERIC,
    SPAN_DTYPE,
    TIME_DTYPE,
    Table,
    Val,
    _lit,
)

if TYPE_CHECKING:
    from psanalytics.query.kql.compiler import Compiler


# ------------------------------------------------------------------ conversion


@fn("toint", "tolong")
def _tolong(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    if a.ktype == "long":
        return a
    if a.ktype == "real":
        return V(a.expr.cast(pl.Int64, strict=False), "long", a)
    if a.ktype == "bool":
        return V(a.expr.cast(pl.Int64), "long", a)
    if a.ktype in ("string", "dynamic") and not a.is_list:
        s = c.dyn_text(a) if a.ktype == "dynamic" else a.expr
        s = s.str.strip_chars()
        r = pl.coalesce(s.cast(pl.Int64, strict=False),
                        s.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False))
        return V(r, "long", a)
    if a.ktype in ("datetime", "timespan"):
        return V(a.expr.cast(pl.Int64) // 100, "long", a)
    raise c.sem(f"cannot convert {a.ktype} to long", e.args[0])


@fn("toreal", "todouble")
def _toreal(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    if a.ktype == "real":
        return a
    if a.ktype in ("long", "bool"):
        return V(a.expr.cast(pl.Float64), "real", a)
    if a.ktype in ("string", "dynamic") and not a.is_list:
        s = c.dyn_text(a) if a.ktype == "dynamic" else a.expr
        return V(s.str.strip_chars().cast(pl.Float64, strict=False), "real", a)
    raise c.sem(f"cannot convert {a.ktype} to real", e.args[0])


@fn("tobool", "toboolean")
def _tobool(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    if a.ktype == "bool":
        return a
    if a.ktype in NUMERIC:
        return V(a.expr != 0, "bool", a)
    if a.ktype in ("string", "dynamic") and not a.is_list:
        s = (c.dyn_text(a) if a.ktype == "dynamic" else a.expr).str.to_lowercase()
        r = pl.when(s == "true").then(True).when(s == "false").then(False) \
            .when(s.str.contains(r"^-?\d+$")).then(s.cast(pl.Int64, strict=False) != 0)
        return V(r, "bool", a)
    raise c.sem(f"cannot convert {a.ktype} to bool", e.args[0])


@fn("parse_json", "todynamic")
def _parse_json(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    if a.ktype == "dynamic":
        return a
    if a.ktype != "string":
        raise c.sem("parse_json() expects a string", e.args[0])
    if a.is_const:
        import orjson
        try:
            return _lit(orjson.loads(a.const), "dynamic")
        except orjson.JSONDecodeError:
            return _lit(None, "dynamic")
    return Val(a.expr, "dynamic", True, json_base=a.expr, agg=a.agg)


# ------------------------------------------------------------------ predicates


@fn("isempty", "isnotempty")
def _isempty(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    if a.ktype == "string":
        r = a.expr == ""
    elif a.ktype == "dynamic" and not a.is_list:
        x = c.dyn_text(a)
        r = x.is_null() | (x == "")
    else:
        r = a.expr.is_null()
    return V(~r if e.name == "isnotempty" else r, "bool", a, nullable=False)


@fn("isnull", "isnotnull")
def _isnull(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    if a.ktype == "string":
        r = a.expr.is_null() & pl.lit(False)  # strings are never null (one value per row)
    elif a.ktype == "dynamic" and not a.is_list:
        r = c.dyn_text(a).is_null()
    else:
        r = a.expr.is_null()
    return V(~r if e.name == "isnotnull" else r, "bool", a, nullable=False)


@fn("isnan")
def _isnan(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    a = want(c, a, e.args[0], "real")
    return V(a.expr.is_nan(), "bool", a)


@fn("isinf")
def _isinf(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    a = want(c, a, e.args[0], "real")
    return V(a.expr.is_infinite(), "bool", a)


@fn("not")
def _not(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    b = c.as_bool(a, e.args[0], "not() needs a bool")
    return V(~b, "bool", a)


def _common(c: Compiler, vals: list[Val], nodes: list[N.Expr], fname: str
            ) -> tuple[list[pl.Expr], str]:
    kinds = {v.ktype for v in vals if not (v.is_const and v.const is None)}
    if not kinds:
        return [v.expr for v in vals], vals[0].ktype
    if kinds <= set(NUMERIC):
        k = "real" if "real" in kinds else "long"
        return [v.expr.cast(pl.Float64 if k == "real" else pl.Int64) for v in vals], k
    if len(kinds) == 1:
        k = kinds.pop()
        if k == "dynamic":
            return [c.dyn_text(v) if not v.is_list else v.expr for v in vals], "dynamic"
        dt = {"string": pl.String, "bool": pl.Boolean, "datetime": TIME_DTYPE,
              "timespan": SPAN_DTYPE}[k]
        return [v.expr.cast(dt) for v in vals], k
    if kinds <= {"string", "dynamic"}:
        return [_s(c, v, n).expr for v, n in zip(vals, nodes, strict=True)], "string"
    raise c.sem(f"'{fname}' branches have different types: {', '.join(sorted(kinds))}",
                nodes[0])


@fn("iff", "iif")
def _iff(c: Compiler, e: N.Call, t: Table) -> Val:
    cond, a, b = args(c, e, t, 3)
    p = c.as_bool(cond, e.args[0], f"{e.name}() needs a bool condition")
    (x, y), k = _common(c, [a, b], e.args[1:], e.name)
    r = pl.when(p.fill_null(False)).then(x).otherwise(y)
    if k == "string":
        r = r.fill_null("")
    return V(r, k, cond, a, b, nullable=k != "string")


@fn("case")
def _case(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 3, 255)
    if len(a) % 2 != 1:
        raise c.sem("case() takes predicate/value pairs and a final else value", e)
    preds = [c.as_bool(a[i], e.args[i], "case() needs bool predicates")
             for i in range(0, len(a) - 1, 2)]
    vals = [a[i] for i in range(1, len(a), 2)] + [a[-1]]
    nodes = [e.args[i] for i in range(1, len(a), 2)] + [e.args[-1]]
    exprs, k = _common(c, vals, nodes, "case")
    chain: Any = pl.when(preds[0].fill_null(False)).then(exprs[0])
    for p, x in zip(preds[1:], exprs[1:-1], strict=True):
        chain = chain.when(p.fill_null(False)).then(x)
    r = chain.otherwise(exprs[-1])
    return V(r.fill_null("") if k == "string" else r, k, *a, nullable=k != "string")


@fn("coalesce")
def _coalesce(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 1, 64)
    exprs, k = _common(c, a, list(e.args), "coalesce")
    if k == "string":
        exprs = [pl.when(x != "").then(x) for x in exprs]
        return V(pl.coalesce(exprs).fill_null(""), "string", *a, nullable=False)
    return V(pl.coalesce(exprs), k, *a)


@fn("min_of", "max_of")
def _min_of(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 2, 64)
    exprs, k = _common(c, a, list(e.args), e.name)
    r = pl.min_horizontal(exprs) if e.name == "min_of" else pl.max_horizontal(exprs)
    return V(r, k, *a)


# ------------------------------------------------------------------ math


def _math(name: str, f: Callable[[pl.Expr], pl.Expr]) -> None:
    def impl(c: Compiler, e: N.Call, t: Table) -> Val:
        (a,) = args(c, e, t, 1)
        a = want(c, a, e.args[0], "long", "real")
        return V(f(a.expr.cast(pl.Float64)), "real", a)
    FUNC_IMPLS[name] = impl


_math("sqrt", lambda x: x.sqrt())
_math("exp", lambda x: x.exp())
_math("log", lambda x: x.log())
_math("log10", lambda x: x.log10())


@fn("abs")
def _abs(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    a = want(c, a, e.args[0], "long", "real", "timespan")
    return V(a.expr.abs(), a.ktype, a)


@fn("round")
def _round(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 1, 2)
    x = want(c, a[0], e.args[0], "long", "real")
    n = const_long(c, a[1], e.args[1], "the precision") if len(a) > 1 else 0
    if x.ktype == "long" and n >= 0:
        return x
    f = x.expr.cast(pl.Float64)
    if n >= 0:
        r = f.round(n, mode="half_away_from_zero")
    else:  # round(21.5, -1) == 20: round to a multiple of 10^-n
        scale = float(10 ** -n)
        r = (f / scale).round(0, mode="half_away_from_zero") * scale
    if x.ktype == "long":
        return V(r.cast(pl.Int64), "long", x)
    return V(r, "real", x)


@fn("pow")
def _pow(c: Compiler, e: N.Call, t: Table) -> Val:
    a, b = args(c, e, t, 2)
    a = want(c, a, e.args[0], "long", "real")
    b = want(c, b, e.args[1], "long", "real")
    return V(a.expr.cast(pl.Float64).pow(b.expr.cast(pl.Float64)), "real", a, b)


@fn("todecimal")
def _todecimal(c: Compiler, e: N.Call, t: Table) -> Val:
    return FUNC_IMPLS["toreal"](c, N.Call("toreal", e.args, span=e.span,
                                          name_span=e.name_span), t)


@fn("parsejson")
def _parsejson(c: Compiler, e: N.Call, t: Table) -> Val:
    return FUNC_IMPLS["parse_json"](c, N.Call("parse_json", e.args, span=e.span,
                                              name_span=e.name_span), t)




@fn("new_guid")
def _new_guid(c: Compiler, e: N.Call, t: Table) -> Val:
    """A random (version 4) GUID per row, as its string (the local engine has no guid
    type: ``toguid`` values are strings too)."""
    args(c, e, t, 0)

    def fresh(s: pl.Series) -> pl.Series:
        return pl.Series([str(uuid.uuid4()) for _ in range(len(s))], dtype=pl.String)

    r = pl.int_range(pl.len()).map_batches(fresh, return_dtype=pl.String)
    return Val(r, "string", False)
