"""Compare a result frame with an output table as the Kusto docs print it (cells as text)."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import polars as pl


def clean(cell: str) -> str:
    s = cell.strip()
    while len(s) >= 2 and s[0] == "`" and s[-1] == "`":
        s = s[1:-1].strip()
    if len(s) >= 4 and s.startswith("**") and s.endswith("**"):
        s = s[2:-2]
    s = s.replace("\\|", "|")
    s = s.replace("&nbsp;", "").strip()  # an empty cell written as a non-breaking space
    # multi-line cells are printed with HTML line breaks
    s = re.sub(r"<br\s*/?>", "\n", s)
    return s


def _num(s: str) -> float | None:
    t = s.replace(",", "").strip()
    try:
        return float(t)
    except ValueError:
        return None


_DT_FORMATS = (
    "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d", "%Y-%m-%dT%H:%MZ",
    "%Y-%m-%d %H:%M", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M", "%m/%d/%Y",
)


def parse_dt(s: str) -> datetime | None:
    t = s.strip()
    m = re.fullmatch(r"(.*?[T ]\d\d:\d\d:\d\d)\.(\d+)(Z?)", t)
    frac_ns = 0
    if m:
        t = m.group(1) + m.group(3)
        frac_ns = int(m.group(2)[:9].ljust(9, "0"))
    for f in _DT_FORMATS:
        try:
            d = datetime.strptime(t, f).replace(tzinfo=UTC)
        except ValueError:
            continue
        return d + timedelta(microseconds=frac_ns // 1000)
    return None


def parse_ts(s: str) -> int | None:
    m = re.fullmatch(r"(-)?(?:(\d+)\.)?(\d{1,2}):(\d\d):(\d\d)(?:\.(\d+))?", s.strip())
    if not m:
        return None
    neg, d, h, mi, se, fr = m.groups()
    ns = ((int(d or 0) * 24 + int(h)) * 60 + int(mi)) * 60 * 10**9 + int(se) * 10**9
    if fr:
        ns += int(fr[:9].ljust(9, "0"))
    return -ns if neg else ns


def _json(s: str) -> Any:
    try:
        return json.loads(s)
    except (ValueError, TypeError):
        return _NOJSON


_NOJSON = object()


def _jeq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b and type(a) is type(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, datetime) and isinstance(b, str):  # a datetime in a dynamic array
        d = parse_dt(b)
        return d is not None and (a if a.tzinfo else a.replace(tzinfo=UTC)) == d
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_jeq(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_jeq(a[k], b[k]) for k in a)
    return a == b


def _decimals(s: str) -> int | None:
    m = re.fullmatch(r"-?[\d,]*\.(\d+)", s.strip())
    return len(m.group(1)) if m else None


def cell_eq(value: Any, dtype: pl.DataType, expected: str) -> bool:
    exp = clean(expected)
    if value is None or (isinstance(value, float) and math.isnan(value)
                         and exp.lower() not in ("nan",)):
        if isinstance(value, float) and math.isnan(value):
            return exp in ("NaN", "nan")
        return exp in ("", "null") or (dtype == pl.String and exp == "")
    if isinstance(value, bool):
        return exp.lower() in (str(value).lower(), "1" if value else "0")
    if isinstance(value, int) and not isinstance(dtype, pl.Duration):
        if re.fullmatch(r"-?\d+", exp.replace(",", "")):
            return int(exp.replace(",", "")) == value  # exact: longs beyond 2**53
        n = _num(exp)
        return n is not None and n == value
    if isinstance(value, (float, Decimal)):
        v = float(value)
        if exp.lower() in ("nan",):
            return math.isnan(v)
        if exp.lower() in ("infinity", "inf", "∞"):
            return v == math.inf
        if exp.lower() in ("-infinity", "-inf", "-∞"):
            return v == -math.inf
        n = _num(exp)
        if n is None:
            return False
        if math.isclose(v, n, rel_tol=1e-9, abs_tol=1e-12):
            return True
        k = _decimals(exp)
        if k is not None and round(v, k) == round(n, k):
            return True
        return math.isclose(v, n, rel_tol=1e-6)
    if isinstance(value, datetime):
        d = parse_dt(exp)
        if d is None:
            return False
        v = value if value.tzinfo else value.replace(tzinfo=UTC)
        return v == d or (d.microsecond == 0 and v.replace(microsecond=0) == d
                          and "." not in exp)
    if isinstance(value, timedelta) or isinstance(dtype, pl.Duration):
        ns = parse_ts(exp)
        if isinstance(value, timedelta):
            vns = (value.days * 86_400 + value.seconds) * 10**9 + value.microseconds * 1000
        else:
            vns = int(value)
        return ns is not None and ns == vns
    if isinstance(value, (list, dict)):
        e = _json(exp)
        return e is not _NOJSON and _jeq(value, e)
    if isinstance(value, str):
        if value == exp or value.strip() == exp:  # a markdown cell drops edge spaces
            return True
        if len(exp) >= 2 and exp[0] == exp[-1] and exp[0] in "\"'" and exp[1:-1] == value:
            return True
        a, b = _json(value), _json(exp)
        if a is not _NOJSON and b is not _NOJSON:
            return _jeq(a, b)
        return False
    return str(value) == exp


def compare(frame: pl.DataFrame, columns: list[str] | None, rows: list[list[str]],
            *, ordered: bool) -> str | None:
    """None when equal, else a message saying what differs."""
    got_cols = frame.columns
    if columns is not None:
        want = [clean(c) for c in columns]
        if got_cols != want:
            return f"columns {got_cols} != documented {want}"
    if frame.height != len(rows):
        return f"{frame.height} rows != documented {len(rows)}:\n{frame}\n{rows}"
    dtypes = frame.dtypes
    got = frame.rows()
    width = len(got_cols)
    for r in rows:
        if len(r) != width:
            return f"documented row {r} has {len(r)} cells, result has {width} columns"

    def row_eq(g: tuple, w: list[str]) -> bool:
        return all(cell_eq(v, d, e) for v, d, e in zip(g, dtypes, w, strict=True))

    if all(row_eq(g, w) for g, w in zip(got, rows, strict=True)):
        return None
    if ordered:
        for g, w in zip(got, rows, strict=True):
            if not row_eq(g, w):
                return f"row {g} != documented {w}\n{frame}"
    # multiset comparison (Kusto gives no row order without a sort)
    left = list(got)
    for w in rows:
        for k, g in enumerate(left):
            if row_eq(g, w):
                del left[k]
                break
        else:
            return f"documented row {w} not in the result:\n{frame}"
    return None
