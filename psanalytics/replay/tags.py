"""Tag inference: an event's Payload top-level scalars as Event API ``tags`` (with exact
JSON types and number text), personal data scrubbed."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping

import orjson
import polars as pl

from psanalytics.replay._text import _BOOL_TEXT, _NUMBER_TEXT, _json_str

__all__: list[str] = []


_PII_KEY = re.compile(
    r"^(e-?mail(address)?|phone(number)?|mobile|first_?name|last_?name|full_?name|address|street|"
    r"zip(code)?|postal_?code|ssn|personal_?number|birth_?date|date_?of_?birth|ip(address)?)$",
    re.IGNORECASE,
)
_EMAIL_IN_TEXT = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"


def sampled_schema(payloads: pl.Series, sample: int) -> tuple[pl.Schema, int]:
    """The JSON schema Polars infers from up to ``sample`` of ``payloads`` (head, a spread,
    tail), and how many it read. Callers check the rest against it."""
    if payloads.len() > sample:
        step = max(1, payloads.len() // (sample // 2))
        pick = pl.concat([payloads.head(sample // 4), payloads.gather_every(step), payloads.tail(sample // 4)])
    else:
        pick = payloads
    inferred = pl.read_ndjson(
        io.BytesIO(pick.str.replace_all("\n", " ").str.join("\n").item().encode()),
        infer_schema_length=None,
    ).schema
    return inferred, pick.len()


def _tags_column(frame: pl.DataFrame, sample: int = 3000, *, scrub_pii: bool = True) -> pl.Series:
    """JSON object text of each Payload's top-level scalars (null when none), vectorised.

    Payloads of one EventType share their keys, so the scalar keys of each type are
    found on a sample of its payloads (up to ``sample``, spread over the type: first,
    last and evenly spaced rows) and every payload of the type is then decoded with
    that schema. A key that appears only outside the sample of a type with more than
    ``sample`` events is not sent as a tag. A type whose payloads do not decode as one
    table falls back to a per-row decode.
    """
    out = pl.Series("tags", [None] * frame.height, pl.String)
    if frame.height == 0:
        return out
    idx = frame.select("EventType", "Payload", "_tags").with_row_index("_i").filter(
        pl.col("_tags") & pl.col("Payload").is_not_null()
    )
    if idx.height == 0:
        return out
    parts: list[pl.DataFrame] = []
    for (_,), grp in idx.group_by("EventType", maintain_order=True):
        payloads = grp.get_column("Payload")
        try:
            inferred, _ = sampled_schema(payloads, sample)
            scalars = {
                c: dt for c, dt in inferred.items()
                if not isinstance(dt, (pl.Struct, pl.List, pl.Array, pl.Object, pl.Null))
            }
            if not scalars:
                continue
            if _mixed_types(payloads, scalars):
                raise ValueError("a key has values of different JSON types")
            # Every value decoded as text: strings are re-quoted, numbers and booleans are
            # the JSON text itself (3298 stays 3298, 12.5 stays 12.5).
            decoded = payloads.str.json_decode(pl.Struct({c: pl.String for c in scalars})).struct.unnest()
            for c, dt in scalars.items():
                if dt != pl.String:
                    pattern = _BOOL_TEXT if dt == pl.Boolean else _NUMBER_TEXT
                    col = decoded.get_column(c)
                    if not col.drop_nulls().str.contains(pattern).all():
                        raise ValueError(f"{c}: a value that is not a JSON {dt}")
        except Exception:  # noqa: BLE001 - any decode problem: per-row fallback
            parts.append(grp.select("_i", pl.Series("tags", [_tags_py(p, scrub_pii) for p in payloads],
                                                    pl.String)))
            continue
        if scrub_pii:
            scalars = {c: dt for c, dt in scalars.items() if not _PII_KEY.match(c)}
        frags = [
            pl.when(
                pl.col(c).is_not_null()
                & (~pl.col(c).str.contains(_EMAIL_IN_TEXT) if scrub_pii and dt == pl.String else True)
            ).then(
                pl.lit(orjson.dumps(c).decode() + ":")
                + (_json_str(pl.col(c)) if dt == pl.String else pl.col(c))
            )
            for c, dt in scalars.items()
        ]
        tags = decoded.select(
            pl.concat_str(frags, separator=",", ignore_nulls=True).alias("t")
        ).get_column("t")
        tags = pl.select(
            pl.when(tags.is_null() | (tags == "")).then(None).otherwise("{" + tags + "}").alias("tags")
        ).get_column("tags")
        parts.append(pl.DataFrame({"_i": grp.get_column("_i"), "tags": tags}))
    if not parts:
        return out
    allp = pl.concat(parts)
    return out.scatter(allp.get_column("_i"), allp.get_column("tags"))




def _mixed_types(payloads: pl.Series, scalars: Mapping[str, pl.DataType]) -> bool:
    """True when a key's values are not all of the JSON type inferred for it: a string
    key with a non-string value somewhere, or a number/boolean key with a string value.

    Checked with one regex per key over the raw text of every payload of the type (the
    schema came from a sample); a false alarm (the same key nested deeper) only sends
    the type down the exact per-row path.
    """
    for key, dt in scalars.items():
        k = re.escape(orjson.dumps(key).decode())
        pattern = k + (r'\s*:\s*[^"\s]' if dt == pl.String else r'\s*:\s*"')
        if payloads.str.contains(pattern).any():
            return True
    return False


_EMAIL_RE = re.compile(_EMAIL_IN_TEXT)


def _tags_py(payload: str, scrub_pii: bool = True) -> str | None:
    try:
        d = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(d, dict):
        return None
    t = {k: v for k, v in d.items() if v is not None and not isinstance(v, (dict, list))}
    if scrub_pii:
        t = {k: v for k, v in t.items()
             if not _PII_KEY.match(k) and not (isinstance(v, str) and _EMAIL_RE.search(v))}
    return orjson.dumps(t).decode() if t else None
