"""Window functions over a serialized row set: row_number, prev, next, row_cumsum."""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.functions._base import (
    FUNC_IMPLS,
    Impl,
    args,
    const_long,
    fn,
    want,
)
from psanalytics.query.kql.types import (
    Table,
    Val,
)

if TYPE_CHECKING:
    from psanalytics.query.kql.compiler import Compiler


@fn("row_number")
def _row_number(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 0, 2)
    start = const_long(c, a[0], e.args[0], "the start") if a else 1
    if len(a) > 1:
        restart = c.as_bool(a[1], e.args[1], "row_number() restart must be bool")
        grp = restart.fill_null(False).cast(pl.Int64).cum_sum()
        r = pl.int_range(pl.len(), dtype=pl.Int64).over(grp) + start
    else:
        r = pl.int_range(pl.len(), dtype=pl.Int64) + start
    return Val(r, "long", False)


def _shift(sign: int) -> Impl:
    def impl(c: Compiler, e: N.Call, t: Table) -> Val:
        a = args(c, e, t, 1, 3)
        v = a[0]
        off = const_long(c, a[1], e.args[1], "the offset") if len(a) > 1 else 1
        x = c.materialize(v)
        r = x.shift(sign * off)
        if len(a) > 2:
            r = r.fill_null(a[2].expr)
        elif v.ktype == "string":
            r = r.fill_null("")
        out = Val(r, v.ktype, v.ktype != "string")
        if v.ktype == "dynamic" and not v.is_list:
            out.json_base, out.json_any = r, True
        out.is_list = v.is_list
        return out
    return impl


FUNC_IMPLS["prev"] = _shift(1)
FUNC_IMPLS["next"] = _shift(-1)


@fn("row_cumsum")
def _row_cumsum(c: Compiler, e: N.Call, t: Table) -> Val:
    # the value is summed per restart group (over()): JSON paths in it are read per row,
    # as a per-distinct-document reading would run once per group
    with c.within(dedupe_json=False):
        a = args(c, e, t, 1, 2)
    v = want(c, a[0], e.args[0], "long", "real", "timespan")
    x = v.expr.fill_null(0) if v.ktype != "timespan" else v.expr
    if len(a) > 1:
        restart = c.as_bool(a[1], e.args[1], "row_cumsum() restart must be bool")
        grp = restart.fill_null(False).cast(pl.Int64).cum_sum()
        return Val(x.cum_sum().over(grp), v.ktype, True)
    return Val(x.cum_sum(), v.ktype, True)
