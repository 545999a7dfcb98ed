"""Dynamic arrays and property bags: array_length, array_concat/slice, set_union,
pack_array, bag_pack, bag_keys..."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import polars as pl

from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.functions._base import (
    FUNC_IMPLS,
    V,
    _dumps,
    _dyn,
    _json_text,
    _loads,
    _per_value,
    _tostring_expr,
    args,
    const_str,
    fn,
)
from psanalytics.query.kql.types import (
    Table,
    Val,
    _lit,
)

if TYPE_CHECKING:
    from psanalytics.query.kql.compiler import Compiler


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




def _remove_keys(bag: Any, keys: Any) -> Any:
    if not isinstance(bag, dict):
        return None
    drop = {k for k in keys if isinstance(k, str)} if isinstance(keys, list) else set()
    return {k: v for k, v in bag.items() if k not in drop}


_arr_fn("bag_remove_keys", _remove_keys, (2, 2))


def _json_fragment(c: Compiler, v: Val) -> pl.Expr:
    """A value as JSON text (``null`` when null): dynamic as it is, numbers and bools as
    JSON, strings quoted and escaped, datetimes and timespans as their string."""
    if v.ktype == "dynamic":
        return _json_text(c, v).fill_null("null")
    x = v.expr if v.ktype in ("long", "real", "bool", "string") else _tostring_expr(c, v)
    enc = pl.struct(x.alias("v")).struct.json_encode()
    return pl.when(v.expr.is_null()).then(pl.lit("null")) \
        .otherwise(enc.str.strip_prefix('{"v":').str.strip_suffix("}"))


@fn("pack_all")
def _pack_all(c: Compiler, e: N.Call, t: Table) -> Val:
    """A bag of the row's columns (``pack_all(true)``: without the null and empty ones)."""
    a = args(c, e, t, 0, 1)
    skip_empty = False
    if a:
        if not a[0].is_const or a[0].ktype != "bool":
            raise c.sem("pack_all() takes a bool literal (ignore null and empty values)",
                        e.args[0])
        skip_empty = bool(a[0].const)
    parts: list[pl.Expr] = []
    for name in t.schema:
        v = c.expr(N.Name(name, span=e.span), t)
        frag = pl.lit(_dumps(name) + ":") + _json_fragment(c, v) + pl.lit(",")
        if skip_empty:
            empty = v.expr.is_null()
            if v.ktype == "string":
                empty = empty | (v.expr == "")
            frag = pl.when(empty).then(pl.lit("")).otherwise(frag)
        parts.append(frag)
    body = pl.concat_str(parts).str.strip_suffix(",") if parts else pl.lit("")
    return _dyn(pl.concat_str([pl.lit("{"), body, pl.lit("}")]))
