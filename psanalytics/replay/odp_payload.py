"""Payload fields of ODP events: the naming rule and the columnar flattening.

:func:`field_name` names an ODP field after a Payload path (``ps_`` + the keys in
snake_case joined by ``_``); :func:`_payload_fields` turns each event's Payload into the
JSON members text of its flattened scalars, per EventType with Polars (schema inferred on
a spread sample), falling back to the exact per-row path (:func:`_flat_py`) for a type
whose payloads do not decode as one table. Used by :mod:`psanalytics.replay.odp` (events)
and :mod:`psanalytics.replay.odp_customers` (customer attributes).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import polars as pl

from psanalytics.replay._text import _BOOL_TEXT, _NUMBER_TEXT, _json_str
from psanalytics.replay.tags import _EMAIL_IN_TEXT, _PII_KEY, _mixed_types, sampled_schema

__all__ = ["field_name"]

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_BAD = re.compile(r"[^a-z0-9_]+")


def field_name(*path: str, prefix: str = "ps_") -> str:
    """The ODP field name of a Payload path: ``prefix`` + keys in snake_case joined by ``_``.

    >>> field_name("epi", "contentGuid")
    'ps_epi_content_guid'
    >>> field_name("orderId")
    'ps_order_id'
    """
    parts = [_BAD.sub("_", _CAMEL.sub("_", p).lower()).strip("_") for p in path]
    return prefix + "_".join(p for p in parts if p)


def _leaves(dtype: pl.DataType, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], pl.DataType]]:
    if isinstance(dtype, pl.Struct):
        for f in dtype.fields:
            yield from _leaves(f.dtype, (*path, f.name))
    elif not isinstance(dtype, (pl.List, pl.Array, pl.Object, pl.Null)):
        yield path, dtype


def _as_text(dtype: pl.DataType) -> pl.DataType:
    if isinstance(dtype, pl.Struct):
        return pl.Struct({f.name: _as_text(f.dtype) for f in dtype.fields if not isinstance(
            f.dtype, (pl.List, pl.Array, pl.Object, pl.Null))})
    return pl.String


def _flat_py(payload: str | None, scrub: bool) -> str | None:
    if payload is None:
        return None
    try:
        d = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(d, dict):
        return None
    out: dict[str, Any] = {}

    def walk(obj: dict[str, Any], path: tuple[str, ...]) -> None:
        for k, v in obj.items():
            p = (*path, k)
            if isinstance(v, dict):
                walk(v, p)
            elif v is None or isinstance(v, list):
                continue
            elif scrub and (_PII_KEY.match(k) or (isinstance(v, str) and re.search(_EMAIL_IN_TEXT, v))):
                continue
            else:
                out.setdefault(field_name(*p), v)

    walk(d, ())
    return orjson.dumps(out).decode()[1:-1] if out else None


#: A quoted JSON string followed by a colon: an object key (or, rarely, text inside a
#: string value that looks like one: then the exact per-row path is taken, never a loss).
_KEY_TEXT = r'"(?:[^"\\]|\\.)*"\s*:'


def _names(dtype: pl.DataType) -> set[str]:
    """Every field name in a (nested) dtype, inside lists of structs too."""
    if isinstance(dtype, pl.Struct):
        return {f.name for f in dtype.fields} | {n for f in dtype.fields for n in _names(f.dtype)}
    if isinstance(dtype, (pl.List, pl.Array)):
        return _names(dtype.inner)  # type: ignore[arg-type]
    return set()


def _keys_outside(payloads: pl.Series, schema: Mapping[str, pl.DataType]) -> bool:
    """True when some payload has a key the sampled schema does not name (decoding with
    it would drop that field): one regex pass over every payload's raw text."""
    known = set(schema) | {n for dt in schema.values() for n in _names(dt)}
    found = payloads.str.extract_all(_KEY_TEXT).explode().drop_nulls().unique().to_list()
    for text in found:
        try:
            key = orjson.loads(text[:text.rindex('"') + 1])
        except (orjson.JSONDecodeError, ValueError):
            return True
        if key not in known:
            return True
    return False


def _payload_fields(frame: pl.DataFrame, scrub: bool, sample: int = 1000) -> pl.Series:
    """Per event: the flattened Payload scalars as JSON members text (``"k":v,...``), or null.

    Columnar per EventType (schema inferred on a spread sample, checked against every
    payload: no key outside it, no key changing JSON type; every payload decoded as
    text with it, leaves turned into fragments); a type that fails a check, or whose
    payloads do not decode as one table, takes the exact per-row path.
    """
    out = pl.Series("f", [None] * frame.height, pl.String)
    idx = frame.select("EventType", "Payload").with_row_index("_i").filter(pl.col("Payload").is_not_null())
    parts: list[pl.DataFrame] = []
    for (_,), grp in idx.group_by("EventType", maintain_order=True):
        payloads = grp.get_column("Payload")
        try:
            inferred, n_read = sampled_schema(payloads, sample)
            leaves = [(p, dt) for name, dt0 in inferred.items() for p, dt in _leaves(dt0, (name,))]
            if not leaves:
                continue
            flat_keys = {p[-1]: dt for p, dt in leaves}
            if _mixed_types(payloads, flat_keys) or len(flat_keys) != len(leaves):
                raise ValueError("a key has values of different JSON types (or repeats at two depths)")
            if grp.height > n_read and _keys_outside(payloads, inferred):
                raise ValueError("a key the sample did not show")
            schema = pl.Struct({n: _as_text(dt) for n, dt in inferred.items()
                                if not isinstance(dt, (pl.List, pl.Array, pl.Object, pl.Null))})
            decoded = payloads.str.json_decode(schema).alias("_p").to_frame()
            names: dict[str, int] = {}
            frags = []
            for path, dt in leaves:
                if scrub and _PII_KEY.match(path[-1]):
                    continue
                name = field_name(*path)
                if name in names:
                    raise ValueError(f"two paths name the field {name}")
                names[name] = 1
                col: pl.Expr = pl.col("_p")
                for k in path:
                    col = col.struct.field(k)
                if dt != pl.String:
                    pattern = _BOOL_TEXT if dt == pl.Boolean else _NUMBER_TEXT
                    if not decoded.select(col.drop_nulls().str.contains(pattern).all()).item():
                        raise ValueError(f"{name}: a value that is not a JSON {dt}")
                keep = col.is_not_null()
                if scrub and dt == pl.String:
                    keep = keep & ~col.str.contains(_EMAIL_IN_TEXT)
                text = _json_str(col) if dt == pl.String else col
                frags.append(pl.when(keep).then(pl.lit(orjson.dumps(name).decode() + ":") + text))
            if not frags:
                continue
            f = decoded.select(pl.concat_str(frags, separator=",", ignore_nulls=True).alias("f")).get_column("f")
            f = pl.select(pl.when(f == "").then(None).otherwise(f).alias("f")).get_column("f")
        except Exception:  # noqa: BLE001 - any decode problem: per-row path
            f = pl.Series("f", [_flat_py(p, scrub) for p in payloads], pl.String)
        parts.append(pl.DataFrame({"_i": grp.get_column("_i"), "f": f}))
    if not parts:
        return out
    allp = pl.concat(parts)
    return out.scatter(allp.get_column("_i"), allp.get_column("f"))
