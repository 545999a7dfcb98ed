"""EventTime bounds implied by a filter's top-level ``and`` terms, and the split into
bounds + the rest (what the emulator slices its sorted store by)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import polars as pl
from odata_query import ast

from psanalytics._time import from_ns
from psanalytics.query.odata._compile import (
    _FLIP,
    _OPS,
    _chain,
    _Compiler,
    _instant,
    _is_date_only,
    _literal,
    _parse_cached,
    _resolve,
    _text_of,
)
from psanalytics.query.odata._parse import _DAY_NS

if TYPE_CHECKING:
    from psanalytics.query.odata.builder import Filter


# --------------------------------------------------------------------------- time bounds


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
    text = _text_of(text)
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
    text = _text_of(text)
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
