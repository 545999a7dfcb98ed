"""Aggregates (summarize's functions): count, dcount, sum, avg, min/max, make_set,
percentile, stdev..."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import polars as pl

from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.functions._base import (
    AGG_IMPLS,
    _json_text,
    args,
    const_long,
    fn,
    want,
)
from psanalytics.query.kql.types import (
    NUMERIC,
    Table,
    Val,
    json_elements,
)

if TYPE_CHECKING:
    from psanalytics.query.kql.compiler import Compiler


# ------------------------------------------------------------------ aggregates


def _refs_column(node: N.Expr, t: Table) -> bool:
    if isinstance(node, N.Name):
        return node.name in t.schema
    return any(_refs_column(ch, t) for ch in _children(node))


def _children(node: N.Expr) -> list[N.Expr]:
    if isinstance(node, N.Member):
        return [node.obj]
    if isinstance(node, N.Index):
        return [node.obj, node.index]
    if isinstance(node, N.Call):
        return list(node.args)
    if isinstance(node, N.Unary):
        return [node.operand]
    if isinstance(node, N.Binary):
        return [node.left, node.right]
    if isinstance(node, N.InList):
        return [node.left, *node.items]
    if isinstance(node, N.Between):
        return [node.left, node.low, node.high]
    return []


def _agg_args(c: Compiler, e: N.Call, t: Table, lo: int, hi: int | None = None
              ) -> list[Val]:
    vals = args(c, e, t, lo, hi)
    out = []
    for v, node in zip(vals, e.args, strict=True):
        if not _refs_column(node, t) and not v.is_list:
            # a value that does not depend on the row: one copy per row, so that
            # sum(1) counts rows and countif(true) is 0 on empty input
            v = Val(pl.repeat(v.expr, pl.len()), v.ktype, v.nullable, json_base=v.json_base,
                    json_path=v.json_path, const=v.const, is_const=v.is_const)
        out.append(v)
    return out


def _pred(c: Compiler, v: Val, node: N.Expr) -> pl.Expr:
    return c.as_bool(v, node, "the predicate must be bool").fill_null(False)


def A(expr: pl.Expr, ktype: str) -> Val:
    return Val(expr, ktype, True, agg=True)


@fn("count", agg=True)
def _count(c: Compiler, e: N.Call, t: Table) -> Val:
    if len(e.args) == 1 and isinstance(e.args[0], N.Star):
        return A(pl.len().cast(pl.Int64), "long")
    a = _agg_args(c, e, t, 0, 1)
    if not a:
        return A(pl.len().cast(pl.Int64), "long")
    # count(expr) counts rows, nulls included (the summarize page's example)
    return A(a[0].expr.len().cast(pl.Int64), "long")


@fn("countif", agg=True)
def _countif(c: Compiler, e: N.Call, t: Table) -> Val:
    (p,) = _agg_args(c, e, t, 1)
    return A(_pred(c, p, e.args[0]).sum().cast(pl.Int64), "long")


def _distinct_count(x: pl.Expr, nullable: bool, exact: bool) -> pl.Expr:
    """Distinct non-null values. ``dcount`` (an estimate in Kusto) counts distinct 64-bit
    hashes: exact unless two different values collide (probability about n²/2⁶⁵, i.e.
    below 1e-7 for a million distinct values), and about twice as fast as comparing the
    values themselves; ``count_distinct`` compares the values."""
    key = x if exact else x.hash()
    n = key.n_unique()
    if nullable:
        n = n - x.is_null().any().cast(pl.UInt32)
    return n.cast(pl.Int64)


@fn("dcount", "count_distinct", agg=True)
def _dcount(c: Compiler, e: N.Call, t: Table) -> Val:
    a = _agg_args(c, e, t, 1, 2 if e.name == "dcount" else 1)
    if len(a) == 2:
        const_long(c, a[1], e.args[1], "the accuracy level")
    v = a[0]
    x = c.materialize(v) if v.ktype == "dynamic" else v.expr
    return A(_distinct_count(x, v.nullable, exact=e.name == "count_distinct"), "long")


@fn("dcountif", agg=True)
def _dcountif(c: Compiler, e: N.Call, t: Table) -> Val:
    a = _agg_args(c, e, t, 2, 3)
    x = c.materialize(a[0]) if a[0].ktype == "dynamic" else a[0].expr
    return A(_distinct_count(x.filter(_pred(c, a[1], e.args[1])), True, exact=False), "long")


def _num(c: Compiler, v: Val, node: N.Expr, allow_span: bool = False) -> Val:
    kinds = ("long", "real", "timespan") if allow_span else ("long", "real")
    return want(c, v, node, *kinds)


@fn("sum", agg=True)
def _sum(c: Compiler, e: N.Call, t: Table) -> Val:
    (v,) = _agg_args(c, e, t, 1)
    v = _num(c, v, e.args[0], True)
    return A(v.expr.sum(), v.ktype)


@fn("sumif", agg=True)
def _sumif(c: Compiler, e: N.Call, t: Table) -> Val:
    v, p = _agg_args(c, e, t, 2)
    v = _num(c, v, e.args[0], True)
    return A(v.expr.filter(_pred(c, p, e.args[1])).sum(), v.ktype)


def _avg(x: pl.Expr, kt: str) -> pl.Expr:
    if kt == "timespan":
        return x.mean()
    x = x.cast(pl.Float64)
    return x.sum() / x.count().cast(pl.Float64)


@fn("avg", agg=True)
def _avgf(c: Compiler, e: N.Call, t: Table) -> Val:
    (v,) = _agg_args(c, e, t, 1)
    v = _num(c, v, e.args[0], True)
    return A(_avg(v.expr, v.ktype), "timespan" if v.ktype == "timespan" else "real")


@fn("avgif", agg=True)
def _avgif(c: Compiler, e: N.Call, t: Table) -> Val:
    v, p = _agg_args(c, e, t, 2)
    v = _num(c, v, e.args[0], True)
    return A(_avg(v.expr.filter(_pred(c, p, e.args[1])), v.ktype),
             "timespan" if v.ktype == "timespan" else "real")


def _minmax(c: Compiler, e: N.Call, t: Table, which: str, cond: bool) -> Val:
    a = _agg_args(c, e, t, 2 if cond else 1)
    v = a[0]
    if v.ktype == "dynamic":
        v = c.numeric(v, e.args[0])
    if v.ktype == "bool":
        raise c.sem(f"{e.name}() of bool is not supported", e.args[0])
    x = v.expr
    if cond:
        x = x.filter(_pred(c, a[1], e.args[1]))
    r = x.min() if which == "min" else x.max()
    if v.ktype == "string":
        r = r.fill_null("")  # "" is a value (min of a column holding "" is "")
    return A(r, v.ktype)


AGG_IMPLS["min"] = lambda c, e, t: _minmax(c, e, t, "min", False)
AGG_IMPLS["max"] = lambda c, e, t: _minmax(c, e, t, "max", False)
AGG_IMPLS["minif"] = lambda c, e, t: _minmax(c, e, t, "min", True)
AGG_IMPLS["maxif"] = lambda c, e, t: _minmax(c, e, t, "max", True)


@fn("take_any", "any", agg=True)
def _take_any(c: Compiler, e: N.Call, t: Table) -> Val:
    (v,) = _agg_args(c, e, t, 1)
    x = c.materialize(v)
    return A(x.drop_nulls().first(), v.ktype)


def _make(c: Compiler, e: N.Call, t: Table, unique: bool, cond: bool) -> Val:
    a = _agg_args(c, e, t, 2 if cond else 1, 3 if cond else 2)
    v = a[0]
    x = c.materialize(v)
    if cond:
        x = x.filter(_pred(c, a[1], e.args[1]))
    json_items = v.ktype == "dynamic" and v.json_any and not v.json_path
    if v.is_list:
        # an array-valued argument contributes its elements (make_set over arrays)
        x = x.explode()
    elif json_items:
        x = _json_text(c, v)
        if cond:
            x = x.filter(_pred(c, a[1], e.args[1]))
        x = x.map_batches(json_elements("flat"), return_dtype=pl.List(pl.String)).explode()
    x = x.drop_nulls()
    if unique:
        x = x.unique(maintain_order=True)
    lim = a[2 if cond else 1] if len(a) > (2 if cond else 1) else None
    if lim is not None:
        n = const_long(c, lim, e.args[-1], "the size limit")
        if n < 0:
            raise c.sem(f"{e.name}() size limit must be >= 0", e.args[-1])
        x = x.head(n)
    if json_items:
        # JSON element texts -> one JSON array text
        r = pl.concat_str([pl.lit("["), x.str.join(","), pl.lit("]")])
        return Val(r, "dynamic", True, json_base=r, json_any=True, agg=True)
    if not c.scope.grouped:
        x = x.implode()
    return Val(x, "dynamic", True, is_list=True, agg=True)


AGG_IMPLS["make_set"] = lambda c, e, t: _make(c, e, t, True, False)
AGG_IMPLS["make_list"] = lambda c, e, t: _make(c, e, t, False, False)
AGG_IMPLS["make_set_if"] = lambda c, e, t: _make(c, e, t, True, True)
AGG_IMPLS["make_list_if"] = lambda c, e, t: _make(c, e, t, False, True)


def _nearest_rank(values: pl.Expr, n: pl.Expr, pct: float, ktype: str, *,
                  get: str = "get") -> pl.Expr:
    """Item ``ceil(n * pct / 100)`` (1-based; 0 -> the first) of ascending ``values``."""
    n = n.cast(pl.Int64)
    if pct.is_integer():
        rank = (n * int(pct) + 99) // 100  # ceil(n * pct / 100) in integers
    else:
        rank = (n.cast(pl.Float64) * pct / 100.0).ceil().cast(pl.Int64)
    at = values.list.get if get == "list" else values.get
    r = at((rank - 1).clip(0), null_on_oob=True)
    return r.cast(pl.Float64) if ktype == "real" else r.cast(pl.Int64)


def _quantile(v: Val, pct: float) -> pl.Expr:
    """The nearest-rank percentile the reference defines: the smallest value with ``pct``
    percent of the (non-null) values at or below it; 0 is the minimum. Exact here (Kusto
    estimates it with a T-Digest: within 1% of rank, exact at 0 and 100)."""
    x = v.expr.drop_nulls().sort()
    return _nearest_rank(x, x.len(), pct, v.ktype)


def _pct(c: Compiler, p: Val, node: N.Expr, fname: str) -> float:
    if not p.is_const or p.ktype not in NUMERIC or p.const is None or not 0 <= p.const <= 100:
        raise c.sem(f"{fname}() needs a literal percentage between 0 and 100", node)
    return float(p.const)


@fn("percentile", agg=True)
def _percentile(c: Compiler, e: N.Call, t: Table) -> Val:
    v, p = _agg_args(c, e, t, 2)
    v = _num(c, v, e.args[0])
    return A(_quantile(v, _pct(c, p, e.args[1], "percentile")), v.ktype)


def _percentages(c: Compiler, e: N.Call, t: Table) -> tuple[Val, list[tuple[N.Expr, float]]]:
    """The value and the percentages of ``percentiles(x, p1, p2, ...)`` (for
    ``percentiles_array`` also one ``dynamic([p1, p2, ...])``)."""
    a = _agg_args(c, e, t, 2, -1)
    v = _num(c, a[0], e.args[0])
    if len(a) == 2 and a[1].ktype == "dynamic" and isinstance(a[1].const, list):
        if not a[1].const:
            raise c.sem(f"{e.name}() needs at least one percentage", e.args[1])
        out = []
        for x in a[1].const:
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 <= x <= 100:
                raise c.sem(f"{e.name}() needs percentages between 0 and 100, got {x!r}",
                            e.args[1])
            out.append((e.args[1], float(x)))
        return v, out
    return v, [(n, _pct(c, p, n, e.name)) for p, n in zip(a[1:], e.args[1:], strict=True)]


def percentile_columns(c: Compiler, e: N.Call, t: Table
                       ) -> tuple[pl.Expr, str, list[tuple[float, Callable[[pl.Expr], pl.Expr]]]]:
    """``percentiles(x, 5, 50, 95)``: the values sorted once (an aggregate: one list per
    group) and, per percentage, how to read its column from that list (summarize names
    them ``percentile_x_5``, ``percentile_x_50``...)."""
    v, pcts = _percentages(c, e, t)

    def reader(p: float) -> Callable[[pl.Expr], pl.Expr]:
        return lambda lst: _nearest_rank(lst, lst.list.len(), p, v.ktype, get="list")

    return v.expr.drop_nulls().sort(), v.ktype, [(p, reader(p)) for _, p in pcts]


@fn("percentiles_array", agg=True)
def _percentiles_array(c: Compiler, e: N.Call, t: Table) -> Val:
    v, pcts = _percentages(c, e, t)
    r = pl.concat_list([_quantile(v, p) for _, p in pcts])
    return Val(r, "dynamic", True, is_list=True, agg=True)


@fn("stdev", "variance", agg=True)
def _stdev(c: Compiler, e: N.Call, t: Table) -> Val:
    (v,) = _agg_args(c, e, t, 1)
    v = _num(c, v, e.args[0])
    x = v.expr.cast(pl.Float64)
    return A(x.std(ddof=1) if e.name == "stdev" else x.var(ddof=1), "real")



