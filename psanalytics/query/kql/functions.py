"""Scalar functions and aggregates: each compiles a call to vectorised Polars expressions."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import polars as pl

from psanalytics._time import instant_or_none, parse_timespan
from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.compiler import DAY_NS, NUMERIC, Val, _lit, _rust_escape
from psanalytics.query.kql.errors import KqlUnsupported
from psanalytics.query.kql.types import _DTYPES, SPAN_DTYPE, TIME_DTYPE

if TYPE_CHECKING:
    from psanalytics.query.kql.compiler import Compiler, Table

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
    raise c.sem(f"'{getattr(node, 'name', 'this')}' expects {' or '.join(kinds)}, "
                f"got {v.ktype}", node)


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


@fn("format_datetime")
def _format_datetime(c: Compiler, e: N.Call, t: Table) -> Val:
    d, f = args(c, e, t, 2)
    d = want(c, d, e.args[0], "datetime")
    fmt = const_str(c, f, e.args[1], "the format")
    tokens = [("yyyy", "%Y"), ("yy", "%y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"),
              ("hh", "%I"), ("mm", "%M"), ("ss", "%S"), ("fffffff", "%7f"),
              ("ffffff", "%6f"), ("fff", "%3f"), ("tt", "%p")]
    out, i = "", 0
    while i < len(fmt):
        for tok, rep in tokens:
            if fmt.startswith(tok, i):
                out += rep
                i += len(tok)
                break
        else:
            ch = fmt[i]
            if ch.isalpha():
                raise c.sem(f"format token '{ch}' is not supported locally", e.args[1],
                            cls=KqlUnsupported)
            out += "%%" if ch == "%" else ch
            i += 1
    expr = d.expr
    if "%7f" in out:
        # 7 fractional digits: ns // 100
        pre, post = out.split("%7f", 1)
        frac = (d.expr.dt.nanosecond() // 100).cast(pl.String).str.zfill(7)
        expr = pl.concat_str([d.expr.dt.strftime(pre), frac, d.expr.dt.strftime(post)])
        return V(expr.fill_null(""), "string", d, nullable=False)
    return V(expr.dt.strftime(out).fill_null(""), "string", d, nullable=False)


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


@fn("tolower")
def _tolower(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    a = _s(c, a, e.args[0])
    return V(a.expr.str.to_lowercase(), "string", a, nullable=False)


@fn("toupper")
def _toupper(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    a = _s(c, a, e.args[0])
    return V(a.expr.str.to_uppercase(), "string", a, nullable=False)


@fn("strlen")
def _strlen(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    a = _s(c, a, e.args[0])
    return V(a.expr.str.len_chars().cast(pl.Int64), "long", a, nullable=False)


@fn("substring")
def _substring(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 2, 3)
    s = _s(c, a[0], e.args[0])
    start = want(c, a[1], e.args[1], "long").expr
    # a negative start counts from the end (substring("123456", -2, 2) == "56")
    if len(a) > 2:
        ln = want(c, a[2], e.args[2], "long").expr
        ln = pl.when(ln < 0).then(0).otherwise(ln)
        r = s.expr.str.slice(start, ln)
    else:
        r = s.expr.str.slice(start)
    return V(r.fill_null(""), "string", *a, nullable=False)


@fn("strcat")
def _strcat(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 1, 64)
    parts = [_s(c, v, n).expr for v, n in zip(a, e.args, strict=True)]
    return V(pl.concat_str(parts), "string", *a, nullable=False)


@fn("strcat_delim")
def _strcat_delim(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 3, 64)
    d = const_str(c, a[0], e.args[0], "the delimiter")
    parts = [_s(c, v, n).expr for v, n in zip(a[1:], e.args[1:], strict=True)]
    return V(pl.concat_str(parts, separator=d), "string", *a, nullable=False)


def _trim(which: str) -> Impl:
    def impl(c: Compiler, e: N.Call, t: Table) -> Val:
        rx, s = args(c, e, t, 2)
        pat = const_str(c, rx, e.args[0], "the trim pattern")
        c.check_regex(pat, e.args[0])
        s = _s(c, s, e.args[1])
        r = s.expr
        if which in ("both", "start"):
            r = r.str.replace(f"^(?:{pat})+", "")
        if which in ("both", "end"):
            r = r.str.replace(f"(?:{pat})+$", "")
        return V(r, "string", s, nullable=False)
    return impl


FUNC_IMPLS["trim"] = _trim("both")
FUNC_IMPLS["trim_start"] = _trim("start")
FUNC_IMPLS["trim_end"] = _trim("end")


@fn("replace_string")
def _replace_string(c: Compiler, e: N.Call, t: Table) -> Val:
    s, a, b = args(c, e, t, 3)
    s = _s(c, s, e.args[0])
    old = const_str(c, a, e.args[1], "the lookup text")
    new = const_str(c, b, e.args[2], "the replacement")
    if old == "":
        return s
    return V(s.expr.str.replace_all(old, new, literal=True), "string", s, nullable=False)


def _indexof_py(start: int, length: int, occurrence: int) -> Callable[[Any], Any]:
    def one(pair: dict[str, Any]) -> int | None:
        src, look = pair["s"], pair["l"]
        if src is None or look is None:
            return None
        n = len(src)
        st = start if start >= 0 else max(0, n + start)
        if st > n:
            return -1
        end = n if length < 0 else min(n, st + length)
        pos = st - 1
        for _ in range(occurrence):
            pos = src.find(look, pos + 1, end)
            if pos < 0:
                return -1
        return pos
    return one


@fn("indexof")
def _indexof(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 2, 5)
    s = _s(c, a[0], e.args[0])
    look = _s(c, a[1], e.args[1])
    if len(a) == 2 and look.is_const:
        r = s.expr.str.find(look.const, literal=True).cast(pl.Int64).fill_null(-1)
        return V(r, "long", s, nullable=False)
    start = const_long(c, a[2], e.args[2], "the start") if len(a) > 2 else 0
    length = const_long(c, a[3], e.args[3], "the length") if len(a) > 3 else -1
    occ = const_long(c, a[4], e.args[4], "the occurrence") if len(a) > 4 else 1
    if occ < 1:
        raise c.sem("indexof() occurrence must be >= 1", e.args[4])
    one = _indexof_py(start, length, occ)
    r = pl.struct(s.expr.alias("s"), look.expr.alias("l")).map_batches(
        lambda b: pl.Series([one(x) for x in b.to_list()], dtype=pl.Int64),
        return_dtype=pl.Int64)
    return V(r, "long", s, look)


@fn("split")
def _split(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 2, 3)
    s = _s(c, a[0], e.args[0])
    d = const_str(c, a[1], e.args[1], "the delimiter")
    if len(a) == 3:
        i = const_long(c, a[2], e.args[2], "the index")
        # a one-element array (empty when the index is out of range)
        r = s.expr.str.split(d).list.slice(i, 1) if i >= 0 else \
            s.expr.str.split(d).list.slice(0, 0)
        return Val(r, "dynamic", True, is_list=True, agg=s.agg)
    return Val(s.expr.str.split(d), "dynamic", True, is_list=True, agg=s.agg)


@fn("extract")
def _extract(c: Compiler, e: N.Call, t: Table) -> Val:
    if len(e.args) == 4:
        ty = e.args[3]
        if not (isinstance(ty, N.Call) and ty.name == "typeof" and len(ty.args) == 1
                and isinstance(ty.args[0], N.Name)):
            raise c.sem("extract()'s fourth argument is typeof(T)", ty)
        kt = {"int": "long", "double": "real", "boolean": "bool", "date": "datetime",
              "time": "timespan"}.get(ty.args[0].name, ty.args[0].name)
        inner = _extract(c, N.Call("extract", e.args[:3], span=e.span,
                                   name_span=e.name_span), t)
        g = pl.when(inner.expr != "").then(inner.expr)
        if kt in ("long", "real", "bool"):
            return V(g.cast(_DTYPES[kt], strict=False), kt, inner)
        if kt == "string":
            return inner
        if kt == "datetime":
            from psanalytics.schema import parse_time_expr
            return V(parse_time_expr(g), "datetime", inner)
        raise c.sem(f"extract() to typeof({kt}) is not supported locally", ty,
                    cls=KqlUnsupported)
    a = args(c, e, t, 3)
    pat = const_str(c, a[0], e.args[0], "the regex")
    c.check_regex(pat, e.args[0])
    g = const_long(c, a[1], e.args[1], "the capture group")
    s = _s(c, a[2], e.args[2])
    return V(s.expr.str.extract(pat, g).fill_null(""), "string", s, nullable=False)


def _self_overlaps(needle: str) -> bool:
    return any(needle[:k] == needle[-k:] for k in range(1, len(needle)))


def _count_overlapping(needle: str) -> Callable[[pl.Series], pl.Series]:
    def count(text: str | None) -> int:
        if text is None:
            return 0
        n, i = 0, text.find(needle)
        while i >= 0:
            n += 1
            i = text.find(needle, i + 1)
        return n

    def batch(s: pl.Series) -> pl.Series:
        return pl.Series([count(x) for x in s.to_list()], dtype=pl.Int64)
    return batch


@fn("countof")
def _countof(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 2, 3)
    s = _s(c, a[0], e.args[0])
    needle = const_str(c, a[1], e.args[1], "the search text")
    kind = const_str(c, a[2], e.args[2], "the kind") if len(a) > 2 else "normal"
    if kind not in ("normal", "regex"):
        raise c.sem(f"countof() kind must be 'normal' or 'regex', not '{kind}'", e.args[2])
    if needle == "":
        return _lit(0, "long")
    if kind == "regex":
        c.check_regex(needle, e.args[1])
        r = s.expr.str.count_matches(needle)
    elif _self_overlaps(needle):
        # plain matches may overlap (countof("aaaa", "aa") == 3): Polars counts
        # non-overlapping ones, so such needles are counted per value
        r = s.expr.map_batches(_count_overlapping(needle), return_dtype=pl.Int64)
    else:
        r = s.expr.str.count_matches(needle, literal=True)
    return V(r.cast(pl.Int64), "long", s, nullable=False)


@fn("reverse")
def _reverse(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    s = _s(c, a, e.args[0])
    return V(s.expr.str.reverse(), "string", s, nullable=False)


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
        from psanalytics.query.kql.operators import _json_elements
        x = _json_text(c, v)
        if cond:
            x = x.filter(_pred(c, a[1], e.args[1]))
        x = x.map_batches(_json_elements("flat"), return_dtype=pl.List(pl.String)).explode()
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
    if not getattr(c, "_grouped", False):
        x = x.implode()
    return Val(x, "dynamic", True, is_list=True, agg=True)


AGG_IMPLS["make_set"] = lambda c, e, t: _make(c, e, t, True, False)
AGG_IMPLS["make_list"] = lambda c, e, t: _make(c, e, t, False, False)
AGG_IMPLS["make_set_if"] = lambda c, e, t: _make(c, e, t, True, True)
AGG_IMPLS["make_list_if"] = lambda c, e, t: _make(c, e, t, False, True)


@fn("percentile", agg=True)
def _percentile(c: Compiler, e: N.Call, t: Table) -> Val:
    v, p = _agg_args(c, e, t, 2)
    v = _num(c, v, e.args[0])
    if not p.is_const or p.ktype not in NUMERIC or p.const is None or not 0 <= p.const <= 100:
        raise c.sem("percentile() needs a literal percentage between 0 and 100", e.args[1])
    r = v.expr.quantile(float(p.const) / 100.0, interpolation="nearest")
    return A(r.cast(pl.Float64) if v.ktype == "real" else r, v.ktype)


@fn("stdev", "variance", agg=True)
def _stdev(c: Compiler, e: N.Call, t: Table) -> Val:
    (v,) = _agg_args(c, e, t, 1)
    v = _num(c, v, e.args[0])
    x = v.expr.cast(pl.Float64)
    return A(x.std(ddof=1) if e.name == "stdev" else x.var(ddof=1), "real")


_ = _rust_escape


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


@fn("array_length")
def _array_length(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    if a.is_list:
        return V(a.expr.list.len().cast(pl.Int64), "long", a)
    if a.ktype != "dynamic":
        return _lit(None, "long")
    r = _json_text(c, a).map_batches(
        _per_value(lambda x: len(v) if isinstance(v := _loads(x), list) else None, pl.Int64),
        return_dtype=pl.Int64)
    return V(r, "long", a)


def _list_of(v: Any) -> list[Any] | None:
    return v if isinstance(v, list) else None


def _arr_fn(name: str, op: Callable[..., Any], n_args: tuple[int, int]) -> None:
    def impl(c: Compiler, e: N.Call, t: Table) -> Val:
        a = args(c, e, t, *n_args)
        texts = []
        for v in a:
            if v.ktype == "dynamic":
                texts.append(_json_text(c, v).alias(f"a{len(texts)}"))
            else:
                texts.append(_tostring_expr(c, v).alias(f"a{len(texts)}"))
        kinds = [v.ktype for v in a]

        def row(vals: dict[str, Any]) -> str | None:
            parsed = []
            for i, k in enumerate(kinds):
                x = vals[f"a{i}"]
                parsed.append(_loads(x) if k == "dynamic" else x)
            return _dumps(op(*parsed))

        r = pl.struct(texts).map_batches(
            lambda s: pl.Series([row(x) for x in s.to_list()], dtype=pl.String),
            return_dtype=pl.String)
        return _dyn(r, *a)
    FUNC_IMPLS[name] = impl


def _concat(*xs: Any) -> Any:
    if any(not isinstance(x, list) for x in xs):
        return None
    return [y for x in xs for y in x]


def _slice(arr: Any, start: Any, end: Any) -> Any:
    if not isinstance(arr, list):
        return None
    n = len(arr)
    s = int(start) + n if int(start) < 0 else int(start)
    en = int(end) + n if int(end) < 0 else int(end)
    return arr[max(s, 0):max(en + 1, 0)]


def _set_union(*xs: Any) -> Any:
    if any(not isinstance(x, list) for x in xs):
        return None
    out: list[Any] = []
    for x in xs:
        for y in x:
            if y not in out:
                out.append(y)
    return out


def _set_intersect(*xs: Any) -> Any:
    if any(not isinstance(x, list) for x in xs):
        return None
    out: list[Any] = []
    for y in xs[0]:
        if y not in out and all(y in x for x in xs[1:]):
            out.append(y)
    return out


_arr_fn("array_concat", _concat, (1, 64))
_arr_fn("array_slice", lambda a, s, e: _slice(a, s, e), (3, 3))
_arr_fn("set_union", _set_union, (2, 64))
_arr_fn("set_intersect", _set_intersect, (2, 64))
_arr_fn("bag_keys", lambda b: list(b) if isinstance(b, dict) else None, (1, 1))


@fn("pack_array")
def _pack_array(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 1, 64)
    return _arr_from(c, a, lambda *xs: list(xs))


def _arr_from(c: Compiler, a: list[Val], build: Callable[..., Any]) -> Val:
    cols = []
    for i, v in enumerate(a):
        if v.ktype == "dynamic":
            cols.append(_json_text(c, v).alias(f"a{i}"))
        elif v.ktype in ("datetime", "timespan"):
            cols.append(_tostring_expr(c, v).alias(f"a{i}"))
        else:
            cols.append(v.expr.alias(f"a{i}"))
    kinds = [v.ktype for v in a]

    def row(vals: dict[str, Any]) -> str | None:
        items = [_loads(vals[f"a{i}"]) if k == "dynamic" else vals[f"a{i}"]
                 for i, k in enumerate(kinds)]
        return _dumps(build(*items))

    r = pl.struct(cols).map_batches(
        lambda s: pl.Series([row(x) for x in s.to_list()], dtype=pl.String),
        return_dtype=pl.String)
    return _dyn(r, *a)


@fn("bag_pack", "pack")
def _bag_pack(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 2, 128)
    if len(a) % 2:
        raise c.sem(f"'{e.name}' takes key, value pairs", e)
    keys = [const_str(c, a[i], e.args[i], "a key") for i in range(0, len(a), 2)]
    return _arr_from(c, a[1::2], lambda *xs: dict(zip(keys, xs, strict=True)))


def _dotnet_url_encode(x: str, component: bool) -> str:
    """.NET HttpUtility.UrlEncode: space -> '+', lower-case hex, ``-_.!*()`` kept."""
    from urllib.parse import quote
    if component:
        return quote(x, safe="")
    out = quote(x, safe="-_.!*() ").replace(" ", "+")
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), out)


@fn("url_encode", "url_encode_component")
def _url_encode(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    s = _s(c, a, e.args[0])
    comp = e.name == "url_encode_component"
    r = s.expr.map_batches(_per_value(lambda x: None if x is None else
                                      _dotnet_url_encode(x, comp), pl.String),
                           return_dtype=pl.String)
    return V(r.fill_null(""), "string", s, nullable=False)


@fn("url_decode")
def _url_decode(c: Compiler, e: N.Call, t: Table) -> Val:
    from urllib.parse import unquote
    (a,) = args(c, e, t, 1)
    s = _s(c, a, e.args[0])
    r = s.expr.map_batches(_per_value(lambda x: None if x is None else unquote(x),
                                      pl.String), return_dtype=pl.String)
    return V(r.fill_null(""), "string", s, nullable=False)


def _parse_url(x: str | None) -> str | None:
    from urllib.parse import parse_qsl, urlsplit
    if not x:
        return _dumps({})
    try:
        u = urlsplit(x)
    except ValueError:
        return _dumps({})
    if not u.scheme or not u.netloc:
        return _dumps({})
    return _dumps({
        "Scheme": u.scheme, "Host": u.hostname or "", "Port": str(u.port or ""),
        "Path": u.path, "Username": u.username or "", "Password": u.password or "",
        "Query Parameters": dict(parse_qsl(u.query, keep_blank_values=True)),
        "Fragment": u.fragment,
    })


def _parse_urlquery(x: str | None) -> str | None:
    from urllib.parse import parse_qsl
    q = (x or "")
    if "?" in q:
        q = q.split("?", 1)[1]
    return _dumps({"Query Parameters": dict(parse_qsl(q, keep_blank_values=True))})


@fn("parse_url")
def _parse_url_fn(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    s = _s(c, a, e.args[0])
    return _dyn(s.expr.map_batches(_per_value(_parse_url, pl.String), return_dtype=pl.String),
                s)


@fn("parse_urlquery")
def _parse_urlquery_fn(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    s = _s(c, a, e.args[0])
    return _dyn(s.expr.map_batches(_per_value(_parse_urlquery, pl.String),
                                   return_dtype=pl.String), s)


def _hash_fn(name: str, algo: str) -> None:
    import hashlib

    def impl(c: Compiler, e: N.Call, t: Table) -> Val:
        (a,) = args(c, e, t, 1)
        s = _s(c, a, e.args[0])
        r = s.expr.map_batches(
            _per_value(lambda x: None if x is None else
                       hashlib.new(algo, x.encode()).hexdigest(), pl.String),
            return_dtype=pl.String)
        return V(r.fill_null(""), "string", s, nullable=False)
    FUNC_IMPLS[name] = impl


_hash_fn("hash_sha256", "sha256")
_hash_fn("hash_sha1", "sha1")
_hash_fn("hash_md5", "md5")


@fn("replace_regex")
def _replace_regex(c: Compiler, e: N.Call, t: Table) -> Val:
    s, rx, rw = args(c, e, t, 3)
    s = _s(c, s, e.args[0])
    pat = const_str(c, rx, e.args[1], "the regex")
    c.check_regex(pat, e.args[1])
    rep = const_str(c, rw, e.args[2], "the rewrite")
    # Kusto writes groups as \1; Polars (Rust regex) as ${1}
    rep = re.sub(r"\$", "$$", rep)
    rep = re.sub(r"\\(\d+)", r"${\1}", rep)
    return V(s.expr.str.replace_all(pat, rep), "string", s, nullable=False)


@fn("extract_all")
def _extract_all(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 2, 3)
    pat = const_str(c, a[0], e.args[0], "the regex")
    c.check_regex(pat, e.args[0])
    groups: list[int] | None = None
    if len(a) == 3:
        gv = a[1]
        if not gv.is_const or not isinstance(gv.const, list):
            raise c.sem("extract_all() groups must be a dynamic array literal", e.args[1],
                        cls=KqlUnsupported)
        groups = [int(g) for g in gv.const]
    s = _s(c, a[-1], e.args[-1])
    rx = re.compile(pat)

    def one(x: str | None) -> str | None:
        if x is None:
            return None
        out = []
        for m in rx.finditer(x):
            if groups is not None:
                out.append([m.group(g) for g in groups] if len(groups) > 1
                           else m.group(groups[0]))
            elif rx.groups <= 1:
                out.append(m.group(rx.groups))
            else:
                out.append(list(m.groups()))
        return _dumps(out) if out else None
    r = s.expr.map_batches(_per_value(one, pl.String), return_dtype=pl.String)
    return _dyn(r, s)


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


@fn("todecimal")
def _todecimal(c: Compiler, e: N.Call, t: Table) -> Val:
    return FUNC_IMPLS["toreal"](c, N.Call("toreal", e.args, span=e.span,
                                          name_span=e.name_span), t)


@fn("parsejson")
def _parsejson(c: Compiler, e: N.Call, t: Table) -> Val:
    return FUNC_IMPLS["parse_json"](c, N.Call("parse_json", e.args, span=e.span,
                                              name_span=e.name_span), t)


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
    a = args(c, e, t, 1, 2)
    v = want(c, a[0], e.args[0], "long", "real", "timespan")
    x = v.expr.fill_null(0) if v.ktype != "timespan" else v.expr
    if len(a) > 1:
        restart = c.as_bool(a[1], e.args[1], "row_cumsum() restart must be bool")
        grp = restart.fill_null(False).cast(pl.Int64).cum_sum()
        return Val(x.cum_sum().over(grp), v.ktype, True)
    return Val(x.cum_sum(), v.ktype, True)
