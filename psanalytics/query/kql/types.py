"""Shared vocabulary of the KQL back end: compiled scalar values (:class:`Val`), tables
(:class:`Table`), KQL types and their Polars dtypes. Imports only Polars and the AST."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from psanalytics._time import datetime_to_ns

TIME_DTYPE = pl.Datetime("ns", "UTC")
SPAN_DTYPE = pl.Duration("ns")

DAY_NS = 86_400 * 10**9
NUMERIC = ("long", "real")
ORDERED = ("long", "real", "datetime", "timespan")
_DTYPES: dict[str, pl.DataType] = {
    "string": pl.String(), "long": pl.Int64(), "real": pl.Float64(), "bool": pl.Boolean(),
    "datetime": TIME_DTYPE, "timespan": SPAN_DTYPE, "dynamic": pl.String(),
}


@dataclass
class RenderSpec:
    """What ``| render`` asked for: ``kind`` (e.g. ``"timechart"``) and its ``with (...)``
    properties as Python values. The data itself is never changed by ``render``."""

    kind: str
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class Val:
    """A compiled scalar: Polars expression, KQL type and helpers for dynamic access."""

    expr: pl.Expr
    ktype: str
    nullable: bool = True
    #: for dynamic JSON text: the JSON column expression and the path below it
    json_base: pl.Expr | None = None
    json_path: tuple[str | int, ...] = ()
    #: for a Struct dynamic (User): its field names
    struct_fields: tuple[str, ...] | None = None
    is_list: bool = False
    #: a JSON text column whose root may be a scalar (read with the path "$")
    json_any: bool = False
    #: Python value when the expression is a constant
    const: Any = None
    is_const: bool = False
    agg: bool = False


@dataclass
class Table:
    lf: pl.LazyFrame
    schema: dict[str, str]           # column -> ktype
    dtypes: dict[str, pl.DataType]   # column -> polars dtype
    ordered: bool = True             # row order is meaningful (input order / after sort)


@dataclass
class Compiled:
    lf: pl.LazyFrame
    schema: dict[str, str]
    render: RenderSpec | None
    #: the plan reads JSON per distinct document: run it on the in-memory engine (the
    #: streaming engine is ~3x slower on those whole-column steps)
    in_memory: bool = False


def _lit(value: Any, ktype: str) -> Val:
    dtype = _DTYPES[ktype]
    if value is None:
        return Val(pl.lit(None, dtype=dtype), ktype, True, const=None, is_const=True)
    if ktype == "datetime":
        e = pl.lit(int(value), dtype=pl.Int64).cast(TIME_DTYPE)
    elif ktype == "timespan":
        e = pl.lit(int(value), dtype=pl.Int64).cast(SPAN_DTYPE)
    elif ktype == "dynamic":
        import orjson
        if isinstance(value, list):
            return Val(pl.lit(_list_series(value)).first(), "dynamic", False, is_list=True,
                       const=value, is_const=True)
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        return Val(pl.lit(text, dtype=pl.String), "dynamic", False, const=value,
                   is_const=True)
    else:
        e = pl.lit(value, dtype=dtype)
    return Val(e, ktype, False, const=value, is_const=True)


def _list_series(value: list[Any]) -> pl.Series:
    """A dynamic array literal as a one-row List series (mixed items become JSON text)."""
    import orjson

    kinds = {type(v) for v in value if v is not None}
    if kinds <= {str}:
        return pl.Series([value], dtype=pl.List(pl.String))
    if kinds <= {bool}:
        return pl.Series([value], dtype=pl.List(pl.Boolean))
    if kinds <= {int}:
        return pl.Series([value], dtype=pl.List(pl.Int64))
    if kinds <= {int, float}:
        return pl.Series([[None if v is None else float(v) for v in value]],
                         dtype=pl.List(pl.Float64))
    texts = [v if isinstance(v, str) or v is None else orjson.dumps(v).decode() for v in value]
    return pl.Series([texts], dtype=pl.List(pl.String))


def _json_path(path: tuple[str | int, ...]) -> str:
    out = "$"
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p):
            out += "." + p
        else:
            out += "['" + p.replace("\\", "\\\\").replace("'", "\\'") + "']"
    return out


def _rust_escape(s: str) -> str:
    return re.sub(r"([\\.+*?()|\[\]{}^$#&\-~])", r"\\\1", s)


def _ns(d: datetime) -> int:
    return datetime_to_ns(d)


