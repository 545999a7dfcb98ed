"""The registry (:data:`FUNC_IMPLS`, :data:`AGG_IMPLS`, the ``@fn`` decorator) and the
helpers every function module shares: argument checking, coercions, dynamic JSON text."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import polars as pl

from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.errors import KqlUnsupported
from psanalytics.query.kql.types import (
    DAY_NS,
    Table,
    Val,
)

if TYPE_CHECKING:
    from psanalytics.query.kql.compiler import Compiler


Impl = Callable[["Compiler", N.Call, "Table"], Val]
FUNC_IMPLS: dict[str, Impl] = {}
AGG_IMPLS: dict[str, Impl] = {}


def fn(*names: str, agg: bool = False) -> Callable[[Impl], Impl]:
    def deco(f: Impl) -> Impl:
        for n in names:
            (AGG_IMPLS if agg else FUNC_IMPLS)[n] = f
        return f
    return deco


def args(c: Compiler, e: N.Call, t: Table, lo: int, hi: int | None = None) -> list[Val]:
    hi = lo if hi is None else hi
    n = len(e.args)
    if n < lo or (hi >= 0 and n > hi):
        if lo == hi:
            want = f"{lo} argument{'s' if lo != 1 else ''}"
        elif hi < 0:
            want = f"at least {lo} arguments"
        else:
            want = f"{lo} to {hi} arguments"
        raise c.sem(f"'{e.name}' takes {want}, got {n}", e)
    return [c.expr(a, t) for a in e.args]


def want(c: Compiler, v: Val, node: N.Expr, *kinds: str) -> Val:
    if v.ktype in kinds:
        return v
    if v.ktype == "dynamic" and not v.is_list:
        if "string" in kinds:
            return Val(c.dyn_text(v).fill_null(""), "string", False, agg=v.agg)
        if "real" in kinds or "long" in kinds:
            return c.numeric(v, node)
        if "datetime" in kinds:
            from psanalytics.schema import parse_time_expr
            return Val(parse_time_expr(c.dyn_text(v)), "datetime", True, agg=v.agg)
    if v.ktype == "long" and "real" in kinds:
        return Val(v.expr.cast(pl.Float64), "real", v.nullable, agg=v.agg)
    raise c.sem(f"expected {' or '.join(kinds)} here, got {v.ktype}", node)


def const_long(c: Compiler, v: Val, node: N.Expr, what: str) -> int:
    if not v.is_const or v.ktype != "long" or v.const is None:
        raise c.sem(f"{what} must be an integer literal locally", node, cls=KqlUnsupported)
    return int(v.const)


def const_str(c: Compiler, v: Val, node: N.Expr, what: str) -> str:
    if not v.is_const or v.ktype != "string":
        raise c.sem(f"{what} must be a string literal locally", node, cls=KqlUnsupported)
    return str(v.const)


def V(expr: pl.Expr, ktype: str, *src: Val, nullable: bool = True) -> Val:
    return Val(expr, ktype, nullable, agg=any(s.agg for s in src))


# ------------------------------------------------------------------ strings


def _tostring_expr(c: Compiler, v: Val) -> pl.Expr:
    k = v.ktype
    if k == "string":
        return v.expr
    if k == "dynamic":
        if v.is_list:
            # JSON text of the array: encode {"v": [...]} and keep the array part
            enc = pl.struct(v.expr.alias("v")).struct.json_encode()
            return enc.str.strip_prefix('{"v":').str.strip_suffix("}").fill_null("")
        return c.dyn_text(v).fill_null("")
    if k == "long":
        return v.expr.cast(pl.String).fill_null("")
    if k == "real":
        x = v.expr
        return (pl.when(x.is_nan()).then(pl.lit("NaN"))
                .when(x == float("inf")).then(pl.lit("Infinity"))
                .when(x == float("-inf")).then(pl.lit("-Infinity"))
                .when((x == x.floor()) & (x.abs() < 1e15)).then(x.cast(pl.Int64).cast(pl.String))
                .otherwise(x.cast(pl.String))).fill_null("")
    if k == "bool":
        return (pl.when(v.expr.is_null()).then(pl.lit("")).when(v.expr).then(pl.lit("true"))
                .otherwise(pl.lit("false")))
    if k == "datetime":
        from psanalytics.schema import format_time_expr
        return format_time_expr(v.expr).fill_null("")
    if k == "timespan":
        ns = v.expr.cast(pl.Int64)
        a = ns.abs()
        days = a // DAY_NS
        rem = a % DAY_NS
        hh = (rem // (3600 * 10**9)).cast(pl.String).str.zfill(2)
        mm = ((rem // (60 * 10**9)) % 60).cast(pl.String).str.zfill(2)
        ss = ((rem // 10**9) % 60).cast(pl.String).str.zfill(2)
        frac = ((rem % 10**9) // 100)
        sign = pl.when(ns < 0).then(pl.lit("-")).otherwise(pl.lit(""))
        dpart = pl.when(days > 0).then(days.cast(pl.String) + ".").otherwise(pl.lit(""))
        fpart = pl.when(frac > 0).then("." + frac.cast(pl.String).str.zfill(7)) \
            .otherwise(pl.lit(""))
        return pl.concat_str([sign, dpart, hh, pl.lit(":"), mm, pl.lit(":"), ss, fpart]) \
            .fill_null("")
    raise KqlUnsupported(f"tostring() of {k} is not supported locally")


@fn("tostring")
def _tostring(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    try:
        return V(_tostring_expr(c, a), "string", a, nullable=False)
    except KqlUnsupported as exc:
        raise c.sem(exc.message, e, cls=KqlUnsupported) from None


def _s(c: Compiler, v: Val, node: N.Expr) -> Val:
    if v.ktype == "string":
        return v
    if v.ktype == "dynamic":
        return want(c, v, node, "string")
    return V(_tostring_expr(c, v), "string", v, nullable=False)


# ------------------------------------------------------------------ issue 14 additions


def _per_value(fn_: Callable[[Any], Any], dtype: pl.DataType) -> Callable[[pl.Series], pl.Series]:
    """A Python function applied once per distinct value (for functions Polars has no
    vectorised form of: URL coding, hashes, JSON bags)."""
    def batch(s: pl.Series) -> pl.Series:
        uniq = s.unique().to_list()
        mapping = {u: fn_(u) for u in uniq}
        return pl.Series([mapping[x] for x in s.to_list()], dtype=dtype)
    return batch


def _json_text(c: Compiler, v: Val) -> pl.Expr:
    """A dynamic value as JSON text (arrays and bags as JSON, scalars as JSON scalars)."""
    if v.is_list:
        enc = pl.struct(v.expr.alias("v")).struct.json_encode()
        return enc.str.strip_prefix('{"v":').str.strip_suffix("}")
    if v.struct_fields is not None:
        return v.expr.struct.json_encode()
    if v.json_base is not None and v.json_path:
        # json_path_match drops the quotes of strings: re-read the raw sub-document
        return c.dyn_text(v)
    return v.expr


def _loads(text: str | None) -> Any:
    import orjson
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _dumps(value: Any) -> str | None:
    import orjson
    return None if value is None else orjson.dumps(value).decode()


def _dyn_json(c: Compiler, e: N.Expr, t: Table, fn_: Callable[[Any], Any]) -> pl.Expr:
    """Apply ``fn_`` to the parsed JSON of a dynamic argument; the result is JSON text."""
    v = c.expr(e, t)
    if v.ktype != "dynamic":
        raise c.sem(f"expected a dynamic value, got {v.ktype}", e)
    return _json_text(c, v).map_batches(_per_value(lambda x: _dumps(fn_(_loads(x))),
                                                   pl.String), return_dtype=pl.String)


def _dyn(expr: pl.Expr, *src: Val) -> Val:
    return Val(expr, "dynamic", True, json_base=expr, json_any=True,
               agg=any(s.agg for s in src))


