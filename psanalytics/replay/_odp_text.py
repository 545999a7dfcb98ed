"""The text of ODP events, built column-wise: each event's JSON is one ``concat_str`` of
pieces, and almost every piece is text made once per distinct value (an event type's
head, a device's identifier, a page, a country, an (EventType, Payload) pair's fields)
and gathered per row by an integer index.

:func:`event_pieces` returns the events (in time order) with those indexes and the
expression that builds each event's text from them (:class:`OdpText`), so a caller can
build the text of a few thousand rows at a time (the dry run and the sink build each
body's rows while batching: the 700 bytes an event takes are never all in memory at
once, and gathering from the small tables copies no text). :func:`OdpText.texts` builds
them all (``encode_odp_events``).

The field order and rules are :mod:`psanalytics.replay.odp`'s (docs/odp.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import polars as pl

from psanalytics.replay._text import _NUMBER_TEXT, _json_str, _uuid5_many
from psanalytics.replay.event_map import MappingError
from psanalytics.replay.odp_payload import _payload_fields

if TYPE_CHECKING:  # odp.py imports this module: names for annotations only (no cycle)
    from psanalytics.replay.odp import OdpEventSpec, OdpMap

#: Namespace of the per-event ``idempotence_id`` (uuid5). Never change it: a re-send
#: would then look new to ODP.
ODP_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/psanalytics/replay/odp-event")

#: Standard ODP fields that are numbers (the others, ids and codes, are strings).
NUMERIC_FIELDS = frozenset({"total", "subtotal", "price", "quantity", "discount", "tax", "shipping"})


def _p(path: str) -> str:
    path = path.strip()
    if path.startswith("$"):
        return path
    return "$." + path.removeprefix("Payload.")


def _member(name: str) -> str:
    return "," + orjson.dumps(name).decode() + ":"


def _frag(name: str, expr: pl.Expr) -> pl.Expr:
    """``,"name":<json string>`` when ``expr`` is non-null and not "", else null."""
    return pl.when(expr.is_not_null() & (expr != "")).then(pl.lit(_member(name)) + _json_str(expr))


def _frag_scalar(name: str, text: pl.Expr) -> pl.Expr:
    """Like :func:`_frag` for a value read with ``json_path_match`` (which gives a
    string's content and a number's text alike): fields in :data:`NUMERIC_FIELDS` are
    sent as numbers when the text is one, every other field as a string."""
    if name in NUMERIC_FIELDS:
        val = pl.when(text.str.contains(_NUMBER_TEXT)).then(text).otherwise(_json_str(text))
    else:
        val = _json_str(text)
    return pl.when(text.is_not_null() & (text != "")).then(pl.lit(_member(name)) + val)


def _json_member(name: str) -> Callable[[str], str | None]:
    """``v -> ,"name":<v as JSON>`` (None for "")."""
    head = _member(name)
    return lambda v: None if v == "" else head + orjson.dumps(v).decode()


@dataclass
class OdpText:
    """Events (one row each, in send order) and ``expr``, the expression that builds each
    row's ODP JSON text from the row's columns (indexes into small text tables)."""

    frame: pl.DataFrame
    expr: pl.Expr

    def texts(self, offset: int = 0, length: int | None = None) -> pl.Series:
        """The JSON text of rows ``[offset, offset + length)`` (all rows by default)."""
        rows = self.frame if offset == 0 and length is None else self.frame.slice(offset, length)
        return rows.select(self.expr.alias("json")).to_series()

    def slice(self, offset: int, length: int | None = None) -> pl.Series:
        """Same as :meth:`texts` (the shape ``Batch.split`` reads)."""
        return self.texts(offset, length)


class _Tables:
    """Text made once per distinct value of a column, looked up per row by index.

    ``index(col)`` adds a ``UInt32`` column ``_i_<col>`` (each row's position among the
    column's distinct values) unless the column has too many distinct values for a table
    to pay, then the caller builds that text per row (``fallback``)."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame = frame
        self.keys: dict[str, list[Any]] = {}
        self.lengths: list[pl.Expr] = []  # byte length of each piece per row (null = 0)

    def index(self, col: str, *, always: bool = False) -> bool:
        if col in self.keys:
            return True
        uniq = self.frame.get_column(col).unique(maintain_order=True).drop_nulls()
        if uniq.len() > max(2_000, self.frame.height // 4) and not always:
            return False
        self.keys[col] = uniq.to_list()
        self.frame = self.frame.with_columns(pl.col(col).replace_strict(
            uniq, pl.int_range(uniq.len(), eager=True), default=None, return_dtype=pl.UInt32).alias("_i_" + col))
        return True

    def piece(self, col: str, fmt: Callable[[Any], str | None], fallback: pl.Expr) -> pl.Expr:
        """``fmt(value)`` for each row's ``col`` (null for None), or ``fallback``."""
        if not self.index(col):
            return self.per_row(fallback)
        return self.table(pl.Series([fmt(v) for v in self.keys[col]], dtype=pl.String), pl.col("_i_" + col))

    def table(self, texts: pl.Series, index: pl.Expr) -> pl.Expr:
        """``texts[index]`` per row (null index: null)."""
        self.lengths.append(pl.lit(texts.str.len_bytes().cast(pl.Int64)).gather(index))
        return pl.lit(texts).gather(index)

    def per_row(self, expr: pl.Expr) -> pl.Expr:
        self.lengths.append(expr.str.len_bytes().cast(pl.Int64))
        return expr

    def literal(self, text: str) -> pl.Expr:
        self.lengths.append(pl.lit(len(text.encode()), pl.Int64))
        return pl.lit(text)


def _heads(t: _Tables, specs: dict[str, OdpEventSpec], omap: OdpMap) -> list[pl.Expr]:
    """The pieces of ``{"type":..,"action":..,"identifiers":{...}}``: the type's head, the
    device (``vuid``, or ``email`` for campaign mail types) and User.Email after a vuid."""
    by, dev = pl.col("EventType"), pl.col("DeviceId")
    email_ident = [e for e, s in specs.items() if s.identifier == "email"]
    bad = t.frame.filter((dev == "") & ~by.is_in(email_ident))
    if bad.height:
        raise MappingError(f"event at row {bad.get_column('_offset')[0]} has no DeviceId: ODP needs an identifier")
    t.index("EventType", always=True)  # one head per type sent, however many
    types = t.keys["EventType"]
    head = pl.Series([
        '{"type":' + orjson.dumps(specs[e].type).decode()
        + (',"action":' + orjson.dumps(specs[e].action).decode() if specs[e].action else "") + ',"identifiers":{'
        for e in types], dtype=pl.String)
    pieces = [t.table(head, pl.col("_i_EventType"))]
    mail = pl.col("_i_EventType").is_in([i for i, e in enumerate(types) if e in email_ident])
    vuid = _json_prefixed('"vuid":')
    email = _json_prefixed('"email":')
    if not t.index("DeviceId"):
        fb_vuid = pl.when(dev != "").then(pl.lit('"vuid":') + _json_str(dev))
        fb_email = pl.when(dev != "").then(pl.lit('"email":') + _json_str(dev))
        pieces.append(t.per_row(pl.when(mail).then(fb_email).otherwise(fb_vuid) if email_ident else fb_vuid))
    elif email_ident:  # one table: the vuid texts, then the email texts
        keys = t.keys["DeviceId"]
        both = pl.Series([vuid(v) for v in keys] + [email(v) for v in keys], dtype=pl.String)
        pieces.append(t.table(both, (pl.col("_i_DeviceId") + pl.when(mail).then(len(keys)).otherwise(0))
                              .cast(pl.UInt32)))
    else:
        pieces.append(t.table(pl.Series([vuid(v) for v in t.keys["DeviceId"]], dtype=pl.String),
                              pl.col("_i_DeviceId")))
    if omap.email:
        user = pl.col("_email")
        ident = _json_prefixed(',"email":')
        fallback = pl.when(user != "").then(pl.lit(',"email":') + _json_str(user))
        if t.index("_email"):
            texts = pl.Series([ident(v) for v in t.keys["_email"]] + [None], dtype=pl.String)
            none = len(t.keys["_email"])
            pieces.append(t.table(texts, pl.when(mail).then(none).otherwise(pl.col("_i__email")).cast(pl.UInt32)
                                  if email_ident else pl.col("_i__email")))
        else:
            pieces.append(t.per_row(pl.when(~mail).then(fallback) if email_ident else fallback))
    return pieces


def _json_prefixed(prefix: str) -> Callable[[str], str | None]:
    return lambda v: None if v == "" else prefix + orjson.dumps(v).decode()


def _pair_index(frame: pl.DataFrame) -> tuple[pl.Series, pl.Series]:
    """(first row of each distinct (EventType, Payload) pair in order of appearance,
    each row's pair number). Each Payload's text is hashed once, as one column: a key
    of two string columns would be row-encoded (a copy of every payload)."""
    payload, types = frame.get_column("Payload"), frame.get_column("EventType")
    texts = payload.drop_nulls().unique(maintain_order=True)
    names = types.unique(maintain_order=True)
    key = (types.replace_strict(names, pl.int_range(names.len(), eager=True), return_dtype=pl.UInt64) * (1 << 32)
           + payload.replace_strict(texts, pl.int_range(texts.len(), eager=True), default=texts.len(),
                                    return_dtype=pl.UInt64))
    first = key.arg_unique()
    pair = key.replace_strict(key.gather(first), pl.int_range(first.len(), eager=True), return_dtype=pl.UInt32)
    return first, pair


def _payload_tables(t: _Tables, specs: dict[str, OdpEventSpec], omap: OdpMap) -> tuple[pl.Expr, pl.Expr]:
    """The pieces ``_std`` (the type's standard fields, then ``ps_event_type``) and
    ``_pf`` (``,`` and the flattened Payload fields), made once per distinct
    (EventType, Payload) pair (pages and products repeat across visitors; a null
    Payload is a pair too: its events still get ``ps_event_type``)."""
    by = pl.col("EventType")
    first, pair = _pair_index(t.frame)
    t.frame = t.frame.with_columns(pair.alias("_i_pair"))
    uniq = t.frame.select("EventType", "Payload")[first]
    std: list[pl.Expr] = []
    for fname in sorted({f for s in specs.values() for f in s.fields}):
        expr: Any = None
        for e, s in specs.items():
            if fname in s.fields:
                cond = by == e
                val = pl.when(cond).then(pl.col("Payload")).str.json_path_match(_p(s.fields[fname]))
                expr = (pl.when(cond) if expr is None else expr.when(cond)).then(val)
        std.append(_frag_scalar(fname, expr.otherwise(None)))
    ps_type = {e: ',"ps_event_type":' + orjson.dumps(e).decode() for e in specs if e}
    std.append(by.replace_strict(ps_type, default=None, return_dtype=pl.String))
    pf = (_payload_fields(uniq, omap.scrub_pii) if omap.payload and uniq.height
          else pl.Series("f", [None] * uniq.height, pl.String))
    parts = uniq.select(
        pl.concat_str(std, ignore_nulls=True).alias("_std"),
        pl.when(pf.is_not_null()).then(pl.lit(",") + pf).alias("_pf"),
    )
    return (t.table(parts.get_column("_std"), pl.col("_i_pair")),
            t.table(parts.get_column("_pf"), pl.col("_i_pair")))


def event_pieces(frame: pl.DataFrame, specs: dict[str, OdpEventSpec], omap: OdpMap,
                 data_source_version: str) -> OdpText:
    """Events to send (``frame``: time order, with ``_offset``) -> :class:`OdpText` whose
    frame also carries ``_iid`` (the idempotence id) and ``_nbytes`` (each text's
    length in bytes, computed from the tables' lengths without building the text)."""
    by, dev = pl.col("EventType"), pl.col("DeviceId")
    frame = frame.with_columns(pl.col("User").struct.field("Email").alias("_email"))
    # idempotence ids: uuid5 of TrackId, or of the content when there is none
    names = frame.select(
        pl.when(pl.col("TrackId") != "").then(pl.col("TrackId")).otherwise(pl.concat_str(
            [pl.lit("content:"), dev, by, pl.col("EventTime").dt.epoch("ns").cast(pl.String),
             pl.col("Value"), pl.col("PageUri"), pl.col("Payload").fill_null("null")], separator="\x1f"))
    ).to_series()
    t = _Tables(frame.with_columns(_uuid5_many(names, ODP_NAMESPACE.bytes).alias("_iid")))
    source = ('",' + '"data_source_type":"psanalytics","data_source":' + orjson.dumps(omap.data_source).decode()
              + ',"data_source_version":' + orjson.dumps(str(data_source_version)).decode())

    def member(name: str, col: str) -> pl.Expr:
        return t.piece(col, _json_member(name), _frag(name, pl.col(col)))

    pieces = [
        *_heads(t, specs, omap),
        t.literal('},"data":{"ts":'), t.per_row(pl.col("EventTime").dt.epoch("s").cast(pl.String)),
        t.literal(',"idempotence_id":"'), t.per_row(pl.col("_iid")), t.literal(source),
        member("page", "PageUri"),
        member("title", "PageTitle"),
    ]
    std, pf = _payload_tables(t, specs, omap)
    pieces += [
        std,
        member("ps_value", "Value"),
        member("ps_country", "CountryCode"),
        member("ps_city", "City"),
        member("ps_scope", "Scope"),
        pf,
        t.literal("}}"),
    ]
    keep = ["_offset", "EventTime", "EventType", "_iid", *(c for c in t.frame.columns if c.startswith("_i_"))]
    fallback_cols = {c for p in pieces for c in p.meta.root_names()} - set(keep)
    out = t.frame.select(*keep, *sorted(fallback_cols),
                         pl.sum_horizontal([n.fill_null(0) for n in t.lengths]).alias("_nbytes"))
    return OdpText(out, pl.concat_str(pieces, ignore_nulls=True))

