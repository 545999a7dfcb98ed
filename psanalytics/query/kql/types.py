"""Shared vocabulary of the KQL back end, at the bottom of it: compiled scalar values
(:class:`Val`), tables (:class:`Table`), KQL types and their Polars dtypes
(:func:`ktype_of`), literals. Imports no other module of the engine."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import polars as pl

from psanalytics._time import datetime_to_ns

TIME_DTYPE = pl.Datetime("ns", "UTC")
SPAN_DTYPE = pl.Duration("ns")

KTYPES = ("string", "long", "real", "bool", "datetime", "timespan", "dynamic")
#: Columns that hold JSON text and are typed ``dynamic`` in KQL (null: absent).
DYNAMIC_TEXT_COLUMNS = frozenset({"Payload", "Headers", "Extras"})

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


@dataclass(frozen=True)
class Scope:
    """Where the compiler is: immutable. A nested step runs under a changed copy
    (``with compiler.within(agg=True): ...``), which is dropped when the step ends, so no
    setting outlives the step that made it (the flags it replaces leaked into later
    operators and subqueries)."""

    #: compiling summarize's aggregate list: aggregates allowed, bare columns are not
    agg: bool = False
    #: compiling an aggregate's arguments (an aggregate may not nest in another)
    in_agg: bool = False
    #: the summarize has by-keys (an aggregate stays per group instead of one list)
    grouped: bool = False
    #: the row order of this operator's output matters to a later one (a take, or the
    #: caller of a nested pipeline): summarize keeps first-appearance group order, join
    #: keeps the left side's order
    order_matters: bool = True
    #: every row of this operator's input is read anyway: a JSON path may be read once
    #: per distinct document (see ``Compiler.json_path``)
    dedupe_json: bool = False
    #: compiling summarize's aggregates, which may read JSON paths into hidden columns of
    #: its input (``Compiler.pre_agg``), computed before the group_by
    pre_agg: bool = False


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
    #: a hidden column that already holds ``json_path_match(json_base, json_path)`` (an
    #: expanded element's field, read by ``mv-expand``: see :mod:`.op_mvfields`)
    path_col: str | None = None
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
    #: this table is ``distinct`` of ``(frame, columns, ktypes)``: a join may filter that
    #: frame on the other side's keys before the distinct (see ``TabularOps.op_join``)
    distinct_of: tuple[pl.LazyFrame, list[str], list[str]] | None = None


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




RENDER_KINDS = (
    "table", "timechart", "linechart", "barchart", "columnchart", "piechart", "areachart",
    "scatterchart", "stackedareachart", "anomalychart", "card", "pivotchart", "ladderchart",
    "timepivot", "treemap", "plotly",
)


def ktype_of(name: str, dtype: pl.DataType) -> str:
    """KQL type of a Polars column (``Payload`` JSON text and Struct/List -> dynamic)."""
    if name in DYNAMIC_TEXT_COLUMNS and dtype == pl.String:
        return "dynamic"
    if isinstance(dtype, (pl.Struct, pl.List, pl.Array, pl.Object)):
        return "dynamic"
    if dtype == pl.String or dtype == pl.Categorical or dtype == pl.Enum:
        return "string"
    if dtype == pl.Boolean:
        return "bool"
    if dtype.is_integer():
        return "long"
    if dtype.is_float() or dtype.is_decimal():
        return "real"
    if isinstance(dtype, pl.Datetime) or dtype == pl.Date:
        return "datetime"
    if isinstance(dtype, pl.Duration):
        return "timespan"
    if dtype == pl.Null:
        return "dynamic"
    return "dynamic"


def distinct_index(s: pl.Series, hashes: pl.Series | None = None
                   ) -> tuple[pl.Series, pl.Series] | None:
    """``(first, idx)``: the mask of each distinct value's first row and, per row, the
    number of its distinct value (0, 1, ... in order of first appearance); None when
    every value is distinct or two distinct values share a hash.

    Rows are keyed by a 64-bit hash of the value (``hashes``: for tests). The mapping is
    checked exactly: every row must equal the first row of its hash (``eq_missing``: a
    comparison of each row with one other, where the string ``n_unique`` this replaced
    built a hash table of the texts: 8 of B6's 15 ms of mapping)."""
    h = s.hash() if hashes is None else hashes
    first = h.is_first_distinct()
    n_first = int(first.sum())
    if n_first == s.len():
        return None
    idx = h.replace_strict(h.filter(first), pl.int_range(n_first, eager=True, dtype=pl.UInt32),
                           return_dtype=pl.UInt32)
    if not s.filter(first).gather(idx).eq_missing(s).all():  # a collision
        return None
    return first, idx


def map_distinct(s: pl.Series, fn: Any, hashes: pl.Series | None = None) -> pl.Series:
    """``fn(s)``, computed once per distinct value of ``s`` and mapped back to the rows
    (:func:`distinct_index`); when every value is distinct or two share a hash, ``fn``
    sees every row. One pass of each step, where the same steps as one expression ran 6
    hashes and 2 ``n_unique`` per JSON path (no common-subexpression elimination in such
    plans)."""
    di = distinct_index(s, hashes)
    if di is None:
        return fn(s).alias(s.name)
    first, idx = di
    return fn(s.filter(first)).gather(idx).alias(s.name)


def json_elements(kind: str) -> Any:
    """JSON text -> list of element JSON texts (arrays: items; bags: one-key bags or
    [key, value] pairs; scalars: themselves; null: [null] so the row stays)."""
    def one(text: str | None) -> list[str | None]:
        if text is None:
            return [None]
        try:
            v = orjson.loads(text)
        except orjson.JSONDecodeError:
            return [text]
        if v is None:
            return [None]
        if isinstance(v, list):
            return [orjson.dumps(x).decode() for x in v]
        if isinstance(v, dict):
            if kind == "flat":  # make_set/make_list: only arrays are flattened
                return [text]
            if kind == "array":
                return [orjson.dumps([k, x]).decode() for k, x in v.items()]
            return [orjson.dumps({k: x}).decode() for k, x in v.items()]
        return [text]

    return element_lists(one)


def element_lists(one: Any) -> Any:
    """A batch function: each distinct text of the Series -> ``one(text)`` (a list of
    element texts), parsed once per distinct text (:func:`map_distinct`); the lists are
    built through Arrow (building a List series from Python lists costs ~35 us a row)."""
    def build(d: pl.Series) -> pl.Series:
        import pyarrow as pa

        offsets = [0]
        values: list[str | None] = []
        for u in d.to_list():
            values.extend(one(u))
            offsets.append(len(values))
        arr = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()),
                                            pa.array(values, pa.large_string()))
        return pl.Series(arr).cast(pl.List(pl.String))
    return lambda s: map_distinct(s, build)
