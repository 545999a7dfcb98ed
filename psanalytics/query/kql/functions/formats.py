"""``format_datetime`` and ``format_timespan``: the format elements of the Kusto reference
(``d``/``dd``, ``f``..``fffffff``, ``F``..``FFFFFFF``, ``h``/``hh``, ``H``/``HH``,
``m``/``mm``, ``M``/``MM``, ``s``/``ss``, ``y``/``yy``/``yyyy``, ``tt``; for timespans
``d``..``dddddddd`` days), compiled to one vectorised ``concat_str``.

A format is read as runs of one letter (``yyyy``, ``M``, ``FF``); any other character is
copied as is (the documented delimiters are `` /-:,._[]``). A run the reference does not
list is ``KqlUnsupported`` naming it. ``F`` elements drop trailing zeros and print nothing
when the digits are all zero; then a ``.`` written just before them is dropped too (as
.NET, which Kusto runs on, does). A timespan is formatted by its magnitude (.NET custom
timespan formats print no sign)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import polars as pl

from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.errors import KqlUnsupported
from psanalytics.query.kql.functions._base import V, args, const_str, fn, want
from psanalytics.query.kql.types import DAY_NS, Table, Val

if TYPE_CHECKING:
    from psanalytics.query.kql.compiler import Compiler

_SECOND = 10**9


def _runs(fmt: str) -> list[str]:
    """``'yyyy-M-dd'`` -> ``['yyyy', '-', 'M', '-', 'dd']`` (letters in runs of one letter)."""
    out: list[str] = []
    for ch in fmt:
        if out and ch.isalpha() and out[-1][0] == ch:
            out[-1] += ch
        else:
            out.append(ch)
    return out


def _pad(x: pl.Expr, width: int) -> pl.Expr:
    return x.cast(pl.Int64).cast(pl.String).str.zfill(width)


def _fraction(frac_ns: pl.Expr, run: str) -> pl.Expr:
    """``f``..``fffffff`` (always the digits) or ``F``..``FFFFFFF`` (trailing zeros
    dropped, nothing when zero) of the fraction of a second, given in nanoseconds."""
    n = len(run)
    digits = _pad(frac_ns // 10 ** (9 - n), n)
    return digits if run[0] == "f" else digits.str.strip_chars_end("0")


def _compile(c: Compiler, fmt: str, node: N.Expr, what: str,
             elements: dict[str, Callable[[str], pl.Expr]], families: str) -> list[pl.Expr]:
    """The format as pieces to concatenate; ``families`` are the letters whose runs of
    any length share one element (``f``: ``f``..``fffffff``)."""
    pieces: list[pl.Expr] = []
    literal = ""
    for run in _runs(fmt):
        if not run[0].isalpha():
            literal += run
            continue
        # runs of any length (up to 7 digits, 8 for timespan days) share one element
        make = elements.get(run) or (elements.get(run[0]) if run[0] in families else None)
        if make is None or len(run) > (8 if run[0] == "d" else 7):
            raise c.sem(f"{what}: format element '{run}' is not supported (see the Kusto "
                        "reference's list of format elements)", node, cls=KqlUnsupported)
        part = make(run)
        if run[0] == "F" and literal.endswith("."):
            # nothing printed: the '.' written before it goes too
            pieces.append(pl.lit(literal[:-1]))
            pieces.append(pl.when(part == "").then(pl.lit("")).otherwise(pl.lit(".")))
        elif literal:
            pieces.append(pl.lit(literal))
        literal = ""
        pieces.append(part)
    if literal:
        pieces.append(pl.lit(literal))
    return pieces


@fn("format_datetime")
def _format_datetime(c: Compiler, e: N.Call, t: Table) -> Val:
    d, f = args(c, e, t, 2)
    d = want(c, d, e.args[0], "datetime")
    fmt = const_str(c, f, e.args[1], "the format")
    x = d.expr
    hour = x.dt.hour()
    elements: dict[str, Callable[[str], pl.Expr]] = {
        "y": lambda r: (x.dt.year() % 100).cast(pl.String),
        "yy": lambda r: _pad(x.dt.year() % 100, 2),
        "yyyy": lambda r: _pad(x.dt.year(), 4),
        "M": lambda r: x.dt.month().cast(pl.String),
        "MM": lambda r: _pad(x.dt.month(), 2),
        "d": lambda r: x.dt.day().cast(pl.String),
        "dd": lambda r: _pad(x.dt.day(), 2),
        "H": lambda r: hour.cast(pl.String),
        "HH": lambda r: _pad(hour, 2),
        "h": lambda r: ((hour + 11) % 12 + 1).cast(pl.String),
        "hh": lambda r: _pad((hour + 11) % 12 + 1, 2),
        "m": lambda r: x.dt.minute().cast(pl.String),
        "mm": lambda r: _pad(x.dt.minute(), 2),
        "s": lambda r: x.dt.second().cast(pl.String),
        "ss": lambda r: _pad(x.dt.second(), 2),
        "tt": lambda r: pl.when(hour < 12).then(pl.lit("AM")).otherwise(pl.lit("PM")),
        "f": lambda r: _fraction(x.dt.nanosecond(), r),
        "F": lambda r: _fraction(x.dt.nanosecond(), r),
    }
    pieces = _compile(c, fmt, e.args[1], "format_datetime()", elements, "fF")
    r = pl.concat_str(pieces) if pieces else pl.lit("")
    return V(pl.when(x.is_null()).then(pl.lit("")).otherwise(r), "string", d,
             nullable=False)


@fn("format_timespan")
def _format_timespan(c: Compiler, e: N.Call, t: Table) -> Val:
    s, f = args(c, e, t, 2)
    s = want(c, s, e.args[0], "timespan")
    fmt = const_str(c, f, e.args[1], "the format")
    ns = s.expr.cast(pl.Int64).abs()
    days = ns // DAY_NS
    hours = (ns % DAY_NS) // (3600 * _SECOND)
    minutes = (ns // (60 * _SECOND)) % 60
    seconds = (ns // _SECOND) % 60
    elements: dict[str, Callable[[str], pl.Expr]] = {
        "d": lambda r: _pad(days, len(r)),
        "H": lambda r: hours.cast(pl.String), "h": lambda r: hours.cast(pl.String),
        "HH": lambda r: _pad(hours, 2), "hh": lambda r: _pad(hours, 2),
        "m": lambda r: minutes.cast(pl.String),
        "mm": lambda r: _pad(minutes, 2),
        "s": lambda r: seconds.cast(pl.String),
        "ss": lambda r: _pad(seconds, 2),
        "f": lambda r: _fraction(ns % _SECOND, r),
        "F": lambda r: _fraction(ns % _SECOND, r),
    }
    pieces = _compile(c, fmt, e.args[1], "format_timespan()", elements, "fFd")
    r = pl.concat_str(pieces) if pieces else pl.lit("")
    return V(pl.when(ns.is_null()).then(pl.lit("")).otherwise(r), "string", s,
             nullable=False)
