"""Date and time functions: now/ago, conversions, start/end of periods, bin, parts,
calendar arithmetic (datetime_add/diff/part), make_datetime."""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from psanalytics._time import instant_or_none, parse_timespan
from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.errors import KqlUnsupported
from psanalytics.query.kql.functions._base import (
    FUNC_IMPLS,
    Impl,
    V,
    _s,
    args,
    const_long,
    const_str,
    fn,
    want,
)
from psanalytics.query.kql.types import (
    DAY_NS,
    NUMERIC,
    SPAN_DTYPE,
    TIME_DTYPE,
    Table,
    Val,
    _lit,
)

if TYPE_CHECKING:
    from psanalytics.query.kql.compiler import Compiler


# ------------------------------------------------------------------ time


@fn("now")
def _now(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 0, 1)
    base = _lit(c.now_ns, "datetime")
    if a:
        off = want(c, a[0], e.args[0], "timespan")
        if off.is_const:
            return _lit(None if off.const is None else c.now_ns + off.const, "datetime")
        return V(base.expr + off.expr, "datetime", off)
    return base


@fn("ago")
def _ago(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    off = want(c, a, e.args[0], "timespan")
    if off.is_const:
        return _lit(None if off.const is None else c.now_ns - off.const, "datetime")
    return V(_lit(c.now_ns, "datetime").expr - off.expr, "datetime", off)


@fn("todatetime")
def _todatetime(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    if a.ktype == "datetime":
        return a
    if a.is_const and a.ktype == "string":
        return _lit(instant_or_none(a.const, check_range=False), "datetime")
    from psanalytics.schema import parse_time_expr
    s = want(c, a, e.args[0], "string")
    return V(parse_time_expr(s.expr), "datetime", a)


@fn("totimespan")
def _totimespan(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    if a.ktype == "timespan":
        return a
    if a.is_const and a.ktype == "string":
        return _lit(parse_timespan(a.const), "timespan")
    if a.ktype == "long":
        # a long is a number of 100 ns ticks
        return V((a.expr.cast(pl.Int64) * 100).cast(SPAN_DTYPE), "timespan", a)
    raise c.sem("totimespan() of a non-literal string is not supported locally", e,
                cls=KqlUnsupported)


def _dt_arg(c: Compiler, e: N.Call, t: Table) -> tuple[Val, pl.Expr]:
    """The datetime and its offset (a literal or a column: ``startofday(d, offset)``)."""
    a = args(c, e, t, 1, 2)
    d = want(c, a[0], e.args[0], "datetime")
    if len(a) > 1:
        o = want(c, a[1], e.args[1], "long")
        n = pl.lit(int(o.const), dtype=pl.Int64) if o.is_const and o.const is not None \
            else o.expr.cast(pl.Int64)
    else:
        n = pl.lit(0, dtype=pl.Int64)
    return d, n


_TICK = pl.duration(nanoseconds=100, time_unit="ns")


def _sod(x: pl.Expr) -> pl.Expr:
    return x.dt.truncate("1d")


def _months_off(x: pl.Expr, n: pl.Expr, unit: str) -> pl.Expr:
    return x.dt.offset_by(pl.format("{}" + unit, n))


@fn("startofday")
def _startofday(c: Compiler, e: N.Call, t: Table) -> Val:
    d, n = _dt_arg(c, e, t)
    return V(_sod(d.expr) + pl.duration(days=n, time_unit="ns"), "datetime", d)


@fn("endofday")
def _endofday(c: Compiler, e: N.Call, t: Table) -> Val:
    d, n = _dt_arg(c, e, t)
    r = _sod(d.expr) + pl.duration(nanoseconds=(n + 1) * DAY_NS - 100, time_unit="ns")
    return V(r, "datetime", d)


def _sow(x: pl.Expr) -> pl.Expr:
    # Sunday-based: Polars weekday Monday=1..Sunday=7
    return _sod(x) - pl.duration(days=x.dt.weekday() % 7, time_unit="ns")


@fn("startofweek")
def _startofweek(c: Compiler, e: N.Call, t: Table) -> Val:
    d, n = _dt_arg(c, e, t)
    return V(_sow(d.expr) + pl.duration(days=7 * n, time_unit="ns"), "datetime", d)


@fn("endofweek")
def _endofweek(c: Compiler, e: N.Call, t: Table) -> Val:
    d, n = _dt_arg(c, e, t)
    week_end = pl.duration(nanoseconds=(n + 1) * 7 * DAY_NS - 100, time_unit="ns")
    return V(_sow(d.expr) + week_end,
             "datetime", d)


@fn("startofmonth")
def _startofmonth(c: Compiler, e: N.Call, t: Table) -> Val:
    d, n = _dt_arg(c, e, t)
    return V(_months_off(d.expr.dt.truncate("1mo"), n, "mo"), "datetime", d)


@fn("endofmonth")
def _endofmonth(c: Compiler, e: N.Call, t: Table) -> Val:
    d, n = _dt_arg(c, e, t)
    r = _months_off(d.expr.dt.truncate("1mo"), n + 1, "mo") - _TICK
    return V(r, "datetime", d)


@fn("startofyear")
def _startofyear(c: Compiler, e: N.Call, t: Table) -> Val:
    d, n = _dt_arg(c, e, t)
    return V(_months_off(d.expr.dt.truncate("1y"), n, "y"), "datetime", d)


@fn("endofyear")
def _endofyear(c: Compiler, e: N.Call, t: Table) -> Val:
    d, n = _dt_arg(c, e, t)
    r = _months_off(d.expr.dt.truncate("1y"), n + 1, "y") - _TICK
    return V(r, "datetime", d)


def _floor_to(c: Compiler, v: Val, size: Val, node: N.Call, origin: pl.Expr | None) -> Val:
    if v.ktype in ("datetime", "timespan"):
        if size.ktype != "timespan":
            raise c.sem(f"bin() of a {v.ktype} needs a timespan size", node.args[1])
        if size.is_const and (size.const is None or size.const <= 0):
            return _lit(None, v.ktype)
        if size.is_const and v.ktype == "datetime" and origin is None:
            # constant size: Polars' truncate floors to multiples of a fixed duration
            # counted from the Unix epoch (same as the integer arithmetic below, faster)
            return V(v.expr.dt.truncate(f"{int(size.const)}ns"), "datetime", v)
        ns = v.expr.cast(pl.Int64) if v.ktype == "timespan" else v.expr.dt.epoch("ns")
        sz = size.expr.cast(pl.Int64)
        if size.is_const:
            sz = pl.lit(int(size.const), dtype=pl.Int64)
        if origin is not None:
            o = origin.dt.epoch("ns")
            r = ((ns - o).floordiv(sz)) * sz + o
        else:
            r = ns.floordiv(sz) * sz
        r = pl.when(sz > 0).then(r)
        out = r.cast(TIME_DTYPE) if v.ktype == "datetime" else r.cast(SPAN_DTYPE)
        return V(out, v.ktype, v, size)
    v = want(c, v, node.args[0], "long", "real")
    size = want(c, size, node.args[1], "long", "real")
    if v.ktype == "long" and size.ktype == "long":
        r = v.expr.floordiv(size.expr) * size.expr
        return V(pl.when(size.expr > 0).then(r), "long", v, size)
    x = v.expr.cast(pl.Float64)
    s = size.expr.cast(pl.Float64)
    return V(pl.when(s > 0).then((x / s).floor() * s), "real", v, size)


@fn("bin", "floor")
def _bin(c: Compiler, e: N.Call, t: Table) -> Val:
    v, size = args(c, e, t, 2)
    return _floor_to(c, v, size, e, None)


@fn("bin_at")
def _bin_at(c: Compiler, e: N.Call, t: Table) -> Val:
    v, size, fixed = args(c, e, t, 3)
    if v.ktype == "datetime" and fixed.ktype == "datetime":
        return _floor_to(c, v, size, e, fixed.expr)
    if v.ktype == "timespan" and fixed.ktype == "timespan" and size.ktype == "timespan":
        ns, sz, o = (x.expr.cast(pl.Int64) for x in (v, size, fixed))
        r = pl.when(sz > 0).then(((ns - o).floordiv(sz)) * sz + o)
        return V(r.cast(SPAN_DTYPE), "timespan", v, size, fixed)
    if v.ktype in NUMERIC and size.ktype in NUMERIC and fixed.ktype in NUMERIC:
        kt = "long" if v.ktype == size.ktype == fixed.ktype == "long" else "real"
        x, sz, o = (y.expr.cast(pl.Float64 if kt == "real" else pl.Int64)
                    for y in (v, size, fixed))
        r = ((x - o) / sz).floor() * sz + o if kt == "real" else \
            (x - o).floordiv(sz) * sz + o
        return V(pl.when(sz > 0).then(r), kt, v, size, fixed)
    raise c.sem(f"bin_at() needs a value, size and origin of matching kinds, got {v.ktype}, "
                f"{size.ktype} and {fixed.ktype}", e)


@fn("dayofweek")
def _dayofweek(c: Compiler, e: N.Call, t: Table) -> Val:
    (d,) = args(c, e, t, 1)
    d = want(c, d, e.args[0], "datetime")
    days = (d.expr.dt.weekday() % 7).cast(pl.Int64)
    return V((days * DAY_NS).cast(SPAN_DTYPE), "timespan", d)


def _part(attr: str) -> Impl:
    def impl(c: Compiler, e: N.Call, t: Table) -> Val:
        (d,) = args(c, e, t, 1)
        d = want(c, d, e.args[0], "datetime")
        return V(getattr(d.expr.dt, attr)().cast(pl.Int64), "long", d)
    return impl


FUNC_IMPLS["hourofday"] = _part("hour")
FUNC_IMPLS["getmonth"] = _part("month")
FUNC_IMPLS["monthofyear"] = _part("month")
FUNC_IMPLS["getyear"] = _part("year")
FUNC_IMPLS["dayofmonth"] = _part("day")
FUNC_IMPLS["dayofyear"] = _part("ordinal_day")


# ------------------------------------------------------------------ calendar arithmetic

_FIXED_NS = {
    "day": DAY_NS, "hour": 3_600 * 10**9, "minute": 60 * 10**9, "second": 10**9,
    "millisecond": 10**6, "microsecond": 1000, "nanosecond": 1,
}
_PERIOD_ALIASES = {
    "year": "year", "quarter": "quarter", "month": "month", "week": "week", "day": "day",
    "hour": "hour", "minute": "minute", "second": "second", "millisecond": "millisecond",
    "microsecond": "microsecond", "nanosecond": "nanosecond",
    "years": "year", "quarters": "quarter", "months": "month", "weeks": "week",
    "days": "day", "hours": "hour", "minutes": "minute", "seconds": "second",
    "milliseconds": "millisecond", "microseconds": "microsecond",
    "nanoseconds": "nanosecond", "d": "day", "h": "hour", "m": "minute", "s": "second",
    "ms": "millisecond",
}


def _period(c: Compiler, v: Val, node: N.Expr) -> str:
    name = const_str(c, v, node, "the period").lower()
    if name not in _PERIOD_ALIASES:
        from psanalytics.query.kql.errors import suggest
        raise c.sem(f"unknown period '{name}'", node,
                    suggestion=suggest(name, list(_PERIOD_ALIASES)))
    return _PERIOD_ALIASES[name]


def _months(x: pl.Expr) -> pl.Expr:
    return x.dt.year().cast(pl.Int64) * 12 + x.dt.month().cast(pl.Int64)


@fn("datetime_diff")
def _datetime_diff(c: Compiler, e: N.Call, t: Table) -> Val:
    p, a, b = args(c, e, t, 3)
    period = _period(c, p, e.args[0])
    a = want(c, a, e.args[1], "datetime")
    b = want(c, b, e.args[2], "datetime")
    x, y = a.expr, b.expr
    if period == "year":
        r = x.dt.year().cast(pl.Int64) - y.dt.year().cast(pl.Int64)
    elif period == "quarter":
        r = ((x.dt.year().cast(pl.Int64) * 4 + x.dt.quarter().cast(pl.Int64))
             - (y.dt.year().cast(pl.Int64) * 4 + y.dt.quarter().cast(pl.Int64)))
    elif period == "month":
        r = _months(x) - _months(y)
    elif period == "week":
        r = (_sow(x).dt.epoch("ns") - _sow(y).dt.epoch("ns")).floordiv(7 * DAY_NS)
    else:
        size = _FIXED_NS[period]
        r = x.dt.epoch("ns").floordiv(size) - y.dt.epoch("ns").floordiv(size)
    return V(r, "long", a, b)


@fn("datetime_add")
def _datetime_add(c: Compiler, e: N.Call, t: Table) -> Val:
    p, n, d = args(c, e, t, 3)
    period = _period(c, p, e.args[0])
    d = want(c, d, e.args[2], "datetime")
    if period in ("year", "quarter", "month"):
        k = const_long(c, n, e.args[1], "the amount")
        k = k * 3 if period == "quarter" else k
        unit = "y" if period == "year" else "mo"
        return V(d.expr.dt.offset_by(f"{k}{unit}"), "datetime", d)
    n = want(c, n, e.args[1], "long")
    size = 7 * DAY_NS if period == "week" else _FIXED_NS[period]
    return V(d.expr + pl.duration(nanoseconds=n.expr * size, time_unit="ns"), "datetime", d, n)


@fn("datetime_part")
def _datetime_part(c: Compiler, e: N.Call, t: Table) -> Val:
    p, d = args(c, e, t, 2)
    name = const_str(c, p, e.args[0], "the part").lower()
    d = want(c, d, e.args[1], "datetime")
    x = d.expr.dt
    parts = {
        "year": x.year(), "quarter": x.quarter(), "month": x.month(),
        "week_of_year": x.week(), "day": x.day(), "dayofyear": x.ordinal_day(),
        "hour": x.hour(), "minute": x.minute(), "second": x.second(),
        "millisecond": x.millisecond(), "microsecond": x.microsecond(),
        "nanosecond": x.nanosecond(),
    }
    if name not in parts:
        from psanalytics.query.kql.errors import suggest
        raise c.sem(f"unknown datetime part '{name}'", e.args[0],
                    suggestion=suggest(name, list(parts)))
    return V(parts[name].cast(pl.Int64), "long", d)


@fn("week_of_year")
def _week_of_year(c: Compiler, e: N.Call, t: Table) -> Val:
    (d,) = args(c, e, t, 1)
    d = want(c, d, e.args[0], "datetime")
    return V(d.expr.dt.week().cast(pl.Int64), "long", d)  # ISO 8601 week number


@fn("string_size")
def _string_size(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    s = _s(c, a, e.args[0])
    return V(s.expr.str.len_bytes().cast(pl.Int64), "long", s, nullable=False)


def _unix(scale: int) -> Impl:
    def impl(c: Compiler, e: N.Call, t: Table) -> Val:
        (a,) = args(c, e, t, 1)
        a = want(c, a, e.args[0], "long", "real")
        ns = (a.expr.cast(pl.Float64) * scale).round(0).cast(pl.Int64, strict=False)
        return V(ns.cast(TIME_DTYPE), "datetime", a)
    return impl


FUNC_IMPLS["unixtime_seconds_todatetime"] = _unix(10**9)
FUNC_IMPLS["unixtime_milliseconds_todatetime"] = _unix(10**6)
FUNC_IMPLS["unixtime_microseconds_todatetime"] = _unix(10**3)
FUNC_IMPLS["unixtime_nanoseconds_todatetime"] = _unix(1)


@fn("make_datetime")
def _make_datetime(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 3, 7)
    parts = [want(c, v, n, "long", "real").expr for v, n in zip(a, e.args, strict=True)]
    y, mo, d = (p.cast(pl.Int64) for p in parts[:3])
    hh = parts[3].cast(pl.Int64) if len(parts) > 3 else pl.lit(0)
    mi = parts[4].cast(pl.Int64) if len(parts) > 4 else pl.lit(0)
    sec = parts[5].cast(pl.Float64) if len(parts) > 5 else pl.lit(0.0)
    base = pl.datetime(y, mo, d, hh, mi, time_unit="ns", time_zone="UTC")
    r = base + pl.duration(nanoseconds=(sec * 1e9).round(0).cast(pl.Int64), time_unit="ns")
    return V(r, "datetime", *a)


@fn("make_timespan")
def _make_timespan(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 2, 4)
    p = [want(c, v, n, "long", "real").expr.cast(pl.Float64)
         for v, n in zip(a, e.args, strict=True)]
    if len(p) == 2:
        ns = (p[0] * 3600 + p[1] * 60) * 1e9
    elif len(p) == 3:
        ns = (p[0] * 3600 + p[1] * 60 + p[2]) * 1e9
    else:
        ns = (p[0] * 86400 + p[1] * 3600 + p[2] * 60 + p[3]) * 1e9
    return V(ns.round(0).cast(pl.Int64).cast(SPAN_DTYPE), "timespan", *a)


