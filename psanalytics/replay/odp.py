"""Track events -> Optimizely Data Platform (ODP) events and customer profiles.

:func:`encode_odp_events` turns a canonical events frame into ODP event objects (the
JSON the ``POST /v3/events`` API takes, the shape the official SDK's ``OdpEvent``
sends), one row per event with its exact JSON text, in time order; :func:`odp_batches`
groups them into request bodies (JSON arrays of at most 500); :func:`encode_odp_profiles`
builds customer updates for ``POST /v3/profiles`` from ``User.Email`` / ``User.Name`` /
``User.Info`` and the devices seen with each address.

Mapping (``OdpMap`` overrides any of it; docs/odp.md has the table and the reasons):

- ``type``/``action``: standard ODP events where a Profile Store type fits
  (:data:`STANDARD_EVENTS`); any other type is sent as a custom type (its name in
  snake_case) and reported (``unmapped="custom"``), or skipped / refused
  (``unmapped="skip"`` / ``"error"``). Nothing is guessed silently: :func:`mapping_table`
  and the replay report list how every type was mapped.
- ``identifiers``: ``vuid`` = DeviceId, ``email`` = User.Email when present (ODP links the
  device to the customer). Campaign mail events use the recipient's address as DeviceId:
  it is sent as ``email``.
- ``data``: ``ts`` (the original EventTime in epoch seconds, ODP's unit for an event's
  time), ``idempotence_id`` (uuid5 of the TrackId, or of the event's content when it has
  none: a re-send is recognised), ``data_source_type`` ``"psanalytics"``, ``data_source``
  ``"psanalytics"``, ``data_source_version``, ``page``/``title`` (PageUri/PageTitle),
  the standard fields of the event (``order_id``, ``total``, ``currency``,
  ``product_id``, ``campaign_id``, ``search_term``), and ``ps_*`` custom fields: ``ps_event_type``
  (the Profile Store EventType, so a move can be reconciled from ODP's side),
  ``ps_value``, ``ps_country``, ``ps_city``, ``ps_scope`` and the Payload's scalars, flattened (rule:
  ``ps_`` + the path's keys in snake_case joined by ``_``: ``{"epi": {"contentGuid": ..}}``
  -> ``ps_epi_content_guid``; arrays, nulls and personal data are left out).

Payload flattening and the field-naming rule live in :mod:`psanalytics.replay.odp_payload`,
customer updates in :mod:`psanalytics.replay.odp_customers` (both re-exported here).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import polars as pl

from psanalytics.replay._text import _NUMBER_TEXT, _json_str, _uuid5_many
from psanalytics.replay.batching import MAX_BYTES, Batch, BatchingError, Quarantined, _batch_id
from psanalytics.replay.event_map import MappingError
from psanalytics.replay.inputs import _as_frame
from psanalytics.replay.odp_customers import encode_odp_customers, encode_odp_profiles
from psanalytics.replay.odp_payload import _payload_fields, field_name

__all__ = [
    "MAX_ODP_OBJECTS",
    "ODP_NAMESPACE",
    "STANDARD_EVENTS",
    "OdpEventSpec",
    "OdpMap",
    "encode_odp_customers",
    "encode_odp_events",
    "encode_odp_profiles",
    "field_name",
    "mapping_table",
    "odp_batches",
    "to_odp_events",
]

#: Objects per ODP request (the documented bulk limit).
MAX_ODP_OBJECTS = 500
#: Namespace of the per-event ``idempotence_id`` (uuid5). Never change it: a re-send
#: would then look new to ODP.
ODP_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/psanalytics/replay/odp-event")


@dataclass(frozen=True)
class OdpEventSpec:
    """How one Profile Store EventType becomes an ODP event.

    ``type``/``action``: the ODP event type and action ("" for none). ``fields``: ODP data
    field -> Payload path (``"$.orderId"`` or ``"orderId"``), for standard fields.
    ``identifier``: which identifier DeviceId is (``"vuid"``, or ``"email"`` for campaign
    mail events whose DeviceId is the recipient's address). ``skip``: do not send.
    """

    type: str
    action: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)
    identifier: Literal["vuid", "email"] = "vuid"
    skip: bool = False


def _p(path: str) -> str:
    path = path.strip()
    if path.startswith("$"):
        return path
    return "$." + path.removeprefix("Payload.")


#: Profile Store event types with an ODP standard event (docs/odp.md explains each).
STANDARD_EVENTS: dict[str, OdpEventSpec] = {
    "epiPageView": OdpEventSpec("pageview"),
    "pageview": OdpEventSpec("pageview"),
    "home": OdpEventSpec("pageview"),
    "category": OdpEventSpec("pageview"),
    "product": OdpEventSpec("product", "detail", {"product_id": "$.product.refCode"}),
    "basket": OdpEventSpec("product", "add_to_cart", {"product_id": "$.lines[0].refCode"}),
    "wishlist": OdpEventSpec("product", "add_to_wishlist", {"product_id": "$.product.refCode"}),
    "order": OdpEventSpec("order", "purchase", {"order_id": "$.orderId", "total": "$.total",
                                                "currency": "$.currency"}),
    "login": OdpEventSpec("account", "login"),
    "logout": OdpEventSpec("account", "logout"),
    "register": OdpEventSpec("account", "register"),
    "epiSearch": OdpEventSpec("search", "", {"search_term": "$.keyword"}),
    "epiCampaignMailingtouser": OdpEventSpec("email", "sent", {"campaign_id": "$.epi.campaign.mailingId"},
                                             identifier="email"),
    "epiCampaignOpen": OdpEventSpec("email", "open", {"campaign_id": "$.epi.campaign.mailingId"},
                                    identifier="email"),
    "epiCampaignClick": OdpEventSpec("email", "click", {"campaign_id": "$.epi.campaign.mailingId"},
                                     identifier="email"),
}


@dataclass
class OdpMap:
    """EventType -> ODP event, on top of :data:`STANDARD_EVENTS` (``standard=False`` to
    start from nothing).

    ``events``: EventType -> ``"type"``, ``"type/action"``, a dict (``{"type", "action",
    "fields", "identifier", "skip"}``) or an :class:`OdpEventSpec`.
    ``unmapped``: an EventType neither map names: ``"custom"`` (sent as a custom type, its
    name in snake_case, and listed in the report), ``"skip"`` or ``"error"``.
    ``payload``: send the Payload's scalars as ``ps_*`` fields. ``scrub_pii``: leave out
    Payload fields that name personal data (email, phone, names, address, ...) or hold
    an e-mail address. ``email``: send User.Email as an identifier.
    ``data_source``: ``data.data_source``.
    """

    events: Mapping[str, str | Mapping[str, Any] | OdpEventSpec] = field(default_factory=dict)
    standard: bool = True
    unmapped: Literal["custom", "skip", "error"] = "custom"
    payload: bool = True
    scrub_pii: bool = True
    email: bool = True
    data_source: str = "psanalytics"

    @classmethod
    def of(cls, value: OdpMap | Mapping[str, Any] | None) -> OdpMap:
        """None, an OdpMap, ``{EventType: spec}``, or the whole map as a dict (a JSON file:
        ``{"events": {...}, "unmapped": "skip", ...}``)."""
        if value is None:
            return cls()
        if isinstance(value, OdpMap):
            return value
        if isinstance(value, Mapping):
            keys = {"events", "standard", "unmapped", "payload", "scrub_pii", "email", "data_source"}
            if isinstance(value.get("events"), Mapping) and set(value) <= keys:
                return cls(**dict(value))
            return cls(events=dict(value))
        raise MappingError(f"odp_map must be a dict or an OdpMap, not {type(value).__name__}")

    def __post_init__(self) -> None:
        if self.unmapped not in ("custom", "skip", "error"):
            raise MappingError(f"unmapped must be 'custom', 'skip' or 'error' (got {self.unmapped!r})")

    def how(self, event_type: str) -> tuple[OdpEventSpec | None, str]:
        """(spec or None when skipped, how: ``map``/``standard``/``custom``/``skip``)."""
        raw = self.events.get(event_type)
        if raw is not None:
            spec = _coerce_spec(event_type, raw)
            return (None, "skip") if spec.skip else (spec, "map")
        if self.standard and event_type in STANDARD_EVENTS:
            return STANDARD_EVENTS[event_type], "standard"
        if self.unmapped == "skip":
            return None, "skip"
        if self.unmapped == "error":
            raise MappingError(
                f"EventType {event_type!r} has no ODP mapping (unmapped='error'); map it in "
                "OdpMap(events={...}) or pass unmapped='custom'/'skip'")
        return OdpEventSpec(field_name(event_type, prefix="")), "custom"


def _coerce_spec(event_type: str, raw: Any) -> OdpEventSpec:
    if isinstance(raw, OdpEventSpec):
        return raw
    if isinstance(raw, str):
        t, _, a = raw.partition("/")
        if not t:
            raise MappingError(f"odp map entry {event_type!r}: empty type")
        return OdpEventSpec(t, a)
    if isinstance(raw, Mapping):
        unknown = set(raw) - {"type", "action", "fields", "identifier", "skip"}
        if unknown:
            raise MappingError(f"odp map entry {event_type!r} has unknown keys {sorted(unknown)}; "
                               "allowed: type, action, fields, identifier, skip")
        if raw.get("skip"):
            return OdpEventSpec(str(raw.get("type", "")), skip=True)
        if not raw.get("type"):
            raise MappingError(f"odp map entry {event_type!r} needs a type")
        ident = raw.get("identifier", "vuid")
        if ident not in ("vuid", "email"):
            raise MappingError(f"odp map entry {event_type!r}: identifier must be 'vuid' or 'email'")
        return OdpEventSpec(str(raw["type"]), str(raw.get("action", "")),
                            {str(k): _p(str(v)) for k, v in dict(raw.get("fields") or {}).items()}, ident)
    raise MappingError(f"odp map entry {event_type!r} must be a str, dict or OdpEventSpec")


def mapping_table(events: Any, odp_map: OdpMap | Mapping[str, Any] | None = None) -> pl.DataFrame:
    """How each EventType of ``events`` is mapped: ``EventType, events, type, action, how``
    (``standard``, ``map``, ``custom`` = not in any map, sent as a custom type, or ``skip``)."""
    omap = OdpMap.of(odp_map)
    frame, _ = _as_frame(events)
    counts = frame.group_by("EventType").len().sort("EventType")
    rows = []
    for t, n in counts.iter_rows():
        spec, how = omap.how(t)
        rows.append({"EventType": t, "events": n, "type": spec.type if spec else None,
                     "action": spec.action if spec else None, "how": how})
    return pl.DataFrame(rows, schema={"EventType": pl.String, "events": pl.Int64, "type": pl.String,
                                      "action": pl.String, "how": pl.String})


# --------------------------------------------------------------------------- encoder

_RECORD_SCHEMA = {
    "json": pl.String, "nbytes": pl.Int64, "ms": pl.Int64, "offset": pl.Int64, "EventType": pl.String,
    "day": pl.Date, "type": pl.String, "action": pl.String, "idempotence_id": pl.String,
}


def _frag(name: str, expr: pl.Expr, *, text: bool = True) -> pl.Expr:
    """``,"name":<json>`` when ``expr`` is non-null and not "" (strings), else null."""
    val = _json_str(expr) if text else expr
    cond = expr.is_not_null() & (expr != "") if text else expr.is_not_null()
    return pl.when(cond).then(pl.lit("," + orjson.dumps(name).decode() + ":") + val)


#: Standard ODP fields that are numbers (the others, ids and codes, are strings).
NUMERIC_FIELDS = frozenset({"total", "subtotal", "price", "quantity", "discount", "tax", "shipping"})


def _frag_scalar(name: str, text: pl.Expr) -> pl.Expr:
    """Like :func:`_frag` for a value read with ``json_path_match`` (which gives a
    string's content and a number's text alike): fields in :data:`NUMERIC_FIELDS` are
    sent as numbers when the text is one, every other field as a string."""
    if name in NUMERIC_FIELDS:
        val = pl.when(text.str.contains(_NUMBER_TEXT)).then(text).otherwise(_json_str(text))
    else:
        val = _json_str(text)
    return pl.when(text.is_not_null() & (text != "")).then(pl.lit("," + orjson.dumps(name).decode() + ":") + val)


def _lut(frame: pl.DataFrame, col: str, fmt: Any, fallback: pl.Expr) -> pl.Expr:
    """``fmt(value)`` (Python text, or None for "nothing") for each row's ``col``, computed
    once per distinct value and looked up (countries, pages, devices and event types
    repeat across events); ``fallback`` (the same text built per row) when the column
    has too many distinct values for that to pay."""
    uniq = frame.get_column(col).unique().drop_nulls()
    if uniq.len() > max(2_000, frame.height // 4):
        return fallback
    keys = uniq.to_list()
    return pl.col(col).replace_strict(keys, pl.Series([fmt(v) for v in keys], dtype=pl.String),
                                      default=None, return_dtype=pl.String)


def _json_member(name: str) -> Any:
    """``v -> ,"name":<v as JSON>`` (None for "")."""
    head = "," + orjson.dumps(name).decode() + ":"
    return lambda v: None if v == "" else head + orjson.dumps(v).decode()


def _specs(frame: pl.DataFrame, omap: OdpMap, unmapped_out: dict[str, int] | None) -> dict[str, OdpEventSpec]:
    """The spec of each EventType present that is sent (skipped types left out); types
    sent as custom types because no map names them are counted into ``unmapped_out``."""
    specs: dict[str, OdpEventSpec] = {}
    counts = frame.group_by("EventType").len()
    for t, n in counts.sort("EventType").iter_rows():
        spec, how = omap.how(t)
        if spec is None:
            continue
        specs[t] = spec
        if how == "custom" and unmapped_out is not None:
            unmapped_out[t] = unmapped_out.get(t, 0) + int(n)
    return specs


def _identifiers(frame: pl.DataFrame, specs: dict[str, OdpEventSpec], omap: OdpMap) -> list[pl.Expr]:
    """The pieces of each event's ``{"type":..,"action":..,"identifiers":{...}}`` text
    (the event's head), for the one ``concat_str`` that builds the event: each piece is
    text made once per distinct value and looked up, so no per-row text is built here."""
    by, dev = pl.col("EventType"), pl.col("DeviceId")
    email_ident = [t for t, s in specs.items() if s.identifier == "email"]
    bad = frame.filter((dev == "") & ~by.is_in(email_ident))
    if bad.height:
        raise MappingError(f"event at row {bad.get_column('_offset')[0]} has no DeviceId: ODP needs an identifier")
    head = {t: '{"type":' + orjson.dumps(s.type).decode()
            + (',"action":' + orjson.dumps(s.action).decode() if s.action else "") + ',"identifiers":{'
            for t, s in specs.items()}
    # DeviceId is the vuid, or the address of a campaign mail event's recipient; User.Email
    # follows a vuid (every event of a type sent by vuid has one: checked above)
    as_vuid = _lut(frame, "DeviceId", lambda v: None if v == "" else '"vuid":' + orjson.dumps(v).decode(),
                   pl.when(dev != "").then(pl.lit('"vuid":') + _json_str(dev)))
    device = as_vuid
    if email_ident:
        as_email = _lut(frame, "DeviceId", lambda v: None if v == "" else '"email":' + orjson.dumps(v).decode(),
                        pl.when(dev != "").then(pl.lit('"email":') + _json_str(dev)))
        device = pl.when(by.is_in(email_ident)).then(as_email).otherwise(as_vuid)
    pieces = [by.replace_strict(head, default=None, return_dtype=pl.String), device]
    if omap.email:
        user_email = pl.col("_email")
        by_user = _lut(frame, "_email", lambda v: None if v == "" else ',"email":' + orjson.dumps(v).decode(),
                       pl.when(user_email != "").then(pl.lit(',"email":') + _json_str(user_email)))
        pieces.append(pl.when(~by.is_in(email_ident)).then(by_user) if email_ident else by_user)
    return pieces


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


def _payload_parts(frame: pl.DataFrame, specs: dict[str, OdpEventSpec], omap: OdpMap) -> pl.DataFrame:
    """``frame`` with ``_std`` (the type's standard fields, then ``ps_event_type``) and
    ``_pf`` (``,`` and the flattened Payload fields), computed once per distinct
    (EventType, Payload) pair (pages and products repeat across visitors) and looked up
    (a null Payload is a pair too: its events still get ``ps_event_type``)."""
    by = pl.col("EventType")
    first, pair = _pair_index(frame)
    uniq = frame.select("EventType", "Payload")[first]
    std: list[pl.Expr] = []
    for fname in sorted({f for s in specs.values() for f in s.fields}):
        expr: Any = None
        for t, s in specs.items():
            if fname in s.fields:
                cond = by == t
                val = pl.when(cond).then(pl.col("Payload")).str.json_path_match(_p(s.fields[fname]))
                expr = (pl.when(cond) if expr is None else expr.when(cond)).then(val)
        std.append(_frag_scalar(fname, expr.otherwise(None)))
    ps_type = {t: ',"ps_event_type":' + orjson.dumps(t).decode() for t in specs if t}
    std.append(by.replace_strict(ps_type, default=None, return_dtype=pl.String))
    pf = (_payload_fields(uniq, omap.scrub_pii) if omap.payload and uniq.height
          else pl.Series("f", [None] * uniq.height, pl.String))
    parts = uniq.select(
        pl.concat_str(std, ignore_nulls=True).alias("_std"),
        pl.when(pf.is_not_null()).then(pl.lit(",") + pf).alias("_pf"),
    )
    return frame.with_columns(parts.get_column("_std").gather(pair), parts.get_column("_pf").gather(pair))


def encode_odp_events(
    events: Any,
    *,
    odp_map: OdpMap | Mapping[str, Any] | None = None,
    data_source_version: str | None = None,
    unmapped_out: dict[str, int] | None = None,
) -> pl.DataFrame:
    """Events -> one row per ODP event with its exact JSON text, in time order.

    Columns: ``json``, ``nbytes``, ``ms`` (epoch ms of EventTime), ``offset`` (input row),
    ``EventType``, ``day`` (UTC date of EventTime), ``type``, ``action``,
    ``idempotence_id``. Event types the map skips are left out; types sent as custom
    types because no map names them are counted into ``unmapped_out``.

    Columnar: text that depends on a repeating value (the event type's head, devices,
    addresses, pages, countries) is encoded once per distinct value and looked up;
    Payload fields once per distinct (EventType, Payload); the rows are put in time
    order before the text is built (a no-op for the usual time-ordered input). Each
    event's text is one ``concat_str`` of those pieces: the only per-event text built
    (no intermediate text per event: the dry run's cost is mostly memory traffic).
    """
    omap = OdpMap.of(odp_map)
    if data_source_version is None:
        from psanalytics import __version__ as data_source_version
    frame, _ = _as_frame(events)
    frame = frame.with_row_index("_offset")
    specs = _specs(frame, omap, unmapped_out)
    if frame.get_column("EventType").n_unique() != len(specs):
        frame = frame.filter(pl.col("EventType").is_in(list(specs)))
    if frame.height == 0:
        return pl.DataFrame(schema=_RECORD_SCHEMA)
    if frame.get_column("EventTime").null_count():
        bad = frame.filter(pl.col("EventTime").is_null()).get_column("_offset")[0]
        raise MappingError(f"event at row {bad} has no EventTime: ODP needs the event's time")
    if not frame.get_column("EventTime").is_sorted():
        frame = frame.sort("EventTime", maintain_order=True)  # stable: ties keep input order
    by, dev = pl.col("EventType"), pl.col("DeviceId")
    frame = frame.with_columns(pl.col("User").struct.field("Email").alias("_email"))
    head = _identifiers(frame, specs, omap)
    # idempotence ids: uuid5 of TrackId, or of the content when there is none
    names = frame.select(
        pl.when(pl.col("TrackId") != "").then(pl.col("TrackId")).otherwise(pl.concat_str(
            [pl.lit("content:"), dev, by, pl.col("EventTime").dt.epoch("ns").cast(pl.String),
             pl.col("Value"), pl.col("PageUri"), pl.col("Payload").fill_null("null")], separator="\x1f"))
    ).to_series()
    frame = _payload_parts(frame.with_columns(_uuid5_many(names, ODP_NAMESPACE.bytes).alias("_iid")), specs, omap)
    source = ('",' + '"data_source_type":"psanalytics","data_source":' + orjson.dumps(omap.data_source).decode()
              + ',"data_source_version":' + orjson.dumps(str(data_source_version)).decode())

    def member(name: str, col: str) -> pl.Expr:
        return _lut(frame, col, _json_member(name), _frag(name, pl.col(col)))

    event = pl.concat_str([
        *head,
        pl.lit('},"data":{"ts":'), pl.col("EventTime").dt.epoch("s").cast(pl.String),
        pl.lit(',"idempotence_id":"'), pl.col("_iid"), pl.lit(source),
        member("page", "PageUri"),
        member("title", "PageTitle"),
        pl.col("_std"),
        member("ps_value", "Value"),
        member("ps_country", "CountryCode"),
        member("ps_city", "City"),
        member("ps_scope", "Scope"),
        pl.col("_pf"),
        pl.lit("}}"),
    ], ignore_nulls=True)
    out = frame.select(
        event.alias("json"),
        pl.col("EventTime").dt.epoch("ms").alias("ms"),
        pl.col("_offset").cast(pl.Int64).alias("offset"),
        by.alias("EventType"),
        pl.col("EventTime").dt.date().alias("day"),
        by.replace_strict({t: s.type for t, s in specs.items()}, default=None, return_dtype=pl.String).alias("type"),
        by.replace_strict({t: s.action for t, s in specs.items()}, default=None, return_dtype=pl.String)
        .alias("action"),
        pl.col("_iid").alias("idempotence_id"),
    )
    out = out.with_columns(pl.col("json").str.len_bytes().cast(pl.Int64).alias("nbytes"))
    return out.select(list(_RECORD_SCHEMA))


def to_odp_events(events: Any, *, odp_map: OdpMap | Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Track events -> ODP event dicts (as sent), in time order."""
    return [orjson.loads(t) for t in encode_odp_events(events, odp_map=odp_map).get_column("json")]


# --------------------------------------------------------------------------- batching


#: Bodies joined at once on the fast path of :func:`odp_batches`.
_CHUNK_BATCHES = 20


def odp_batches(
    records: pl.DataFrame,
    *,
    kind: str = "odp",
    max_objects: int = MAX_ODP_OBJECTS,
    max_bytes: int = MAX_BYTES,
    max_span_ms: int | None = None,
    quarantine: list[Quarantined] | None = None,
    start_seq: int = 0,
) -> Iterator[Batch]:
    """JSON arrays of at most ``max_objects`` objects and ``max_bytes`` bytes, in record
    order. ``Batch.rows`` is the (start, end) row range of ``records`` a batch carries
    (halves of a split batch carry sub-ranges), which the reconciliation reads."""
    if not 1 <= max_objects <= MAX_ODP_OBJECTS:
        raise BatchingError(f"max_objects must be 1..{MAX_ODP_OBJECTS} (got {max_objects})")
    series = records.get_column("json")
    sizes = records.get_column("nbytes").to_list()
    ms = records.get_column("ms").to_list()
    offs = records.get_column("offset").to_list() if "offset" in records.columns else list(range(len(sizes)))
    seq = start_seq
    i, n = 0, len(sizes)
    texts: list[str] | None = None
    # Fast path (no span limit): max_objects rows at a time while their encoded array fits
    # max_bytes (a prefix sum answers that per chunk; bodies are joined by Polars, the
    # texts never become Python strings); a chunk that does not fit, and every chunk
    # under a span limit, goes through the exact row-by-row loop below.
    cum = [0]
    if max_span_ms is None:
        cum = records.select(pl.col("nbytes").cum_sum()).to_series().to_list()
        cum.insert(0, 0)
    # The fast path joins ``_CHUNK_BATCHES`` bodies' rows at once (as bytes: no Python
    # str in between) and copies each body out of that buffer once (with its brackets).
    # Ids are computed when read (a dry run without a checkpoint never hashes a body).
    c0, c1, buf = 0, 0, memoryview(b"")
    while i < n:
        j = min(n, i + max_objects)
        if max_span_ms is None and cum[j] - cum[i] + (j - i) + 1 <= max_bytes:
            if not (c0 <= i and j <= c1):
                c0, c1 = i, min(n, i + _CHUNK_BATCHES * max_objects)
                buf = memoryview(series.slice(c0, c1 - c0).str.join(",").cast(pl.Binary).item())
            a = cum[i] - cum[c0] + (i - c0)
            body = b"".join((b"[", buf[a:a + cum[j] - cum[i] + (j - i) - 1], b"]"))
            yield Batch(seq=seq, id=None, body=body, visitors=0, events=j - i,
                        first_ms=ms[i], last_ms=ms[j - 1], offset_min=min(offs[i:j]), offset_max=max(offs[i:j]),
                        kind=kind, prefix=b"[", suffix=b"]", rows=(i, j), texts=series)
            seq += 1
            i = j
            continue
        if texts is None:
            texts = series.to_list()
        if sizes[i] + 2 > max_bytes:
            if quarantine is not None:
                quarantine.append(Quarantined("", None, 1, sizes[i] + 2, texts[i], [offs[i]]))
            i += 1
            continue
        j, size = i, 1
        while j < n and j - i < max_objects:
            if sizes[j] + 2 > max_bytes:
                break
            add = sizes[j] + 1
            if size + add > max_bytes:
                break
            if max_span_ms is not None and ms[j] - ms[i] > max_span_ms:
                break
            size += add
            j += 1
        parts = texts[i:j]
        body = ("[" + ",".join(parts) + "]").encode()
        yield Batch(seq=seq, id=_batch_id(seq, body), body=body, visitors=0, events=j - i,
                    first_ms=ms[i], last_ms=ms[j - 1], offset_min=min(offs[i:j]), offset_max=max(offs[i:j]),
                    kind=kind, parts=parts, prefix=b"[", suffix=b"]", rows=(i, j))
        seq += 1
        i = j
