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

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import polars as pl

from psanalytics.replay._odp_text import NUMERIC_FIELDS as NUMERIC_FIELDS
from psanalytics.replay._odp_text import ODP_NAMESPACE as _ODP_NAMESPACE
from psanalytics.replay._odp_text import OdpText, _p, event_pieces
from psanalytics.replay.batching import MAX_BYTES, Batch, BatchingError, Quarantined, _batch_id
from psanalytics.replay.event_map import MappingError
from psanalytics.replay.inputs import _as_frame
from psanalytics.replay.odp_customers import encode_odp_customers, encode_odp_profiles
from psanalytics.replay.odp_payload import field_name

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
#: Namespace of the per-event ``idempotence_id`` (uuid5; defined with the text encoder).
#: Never change it: a re-send would then look new to ODP.
ODP_NAMESPACE = _ODP_NAMESPACE


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


def _odp_records(
    events: Any,
    *,
    odp_map: OdpMap | Mapping[str, Any] | None = None,
    data_source_version: str | None = None,
    unmapped_out: dict[str, int] | None = None,
) -> tuple[pl.DataFrame, OdpText | None]:
    """:func:`encode_odp_events` without the ``json`` column: the records, and the
    :class:`~psanalytics.replay._odp_text.OdpText` that builds their texts (row for
    row; None when no event is sent)."""
    omap = OdpMap.of(odp_map)
    if data_source_version is None:
        from psanalytics import __version__ as data_source_version
    frame, _ = _as_frame(events)
    frame = frame.with_row_index("_offset")
    specs = _specs(frame, omap, unmapped_out)
    if frame.get_column("EventType").n_unique() != len(specs):
        frame = frame.filter(pl.col("EventType").is_in(list(specs)))
    if frame.height == 0:
        return pl.DataFrame(schema=_RECORD_SCHEMA), None
    if frame.get_column("EventTime").null_count():
        bad = frame.filter(pl.col("EventTime").is_null()).get_column("_offset")[0]
        raise MappingError(f"event at row {bad} has no EventTime: ODP needs the event's time")
    if not frame.get_column("EventTime").is_sorted():
        frame = frame.sort("EventTime", maintain_order=True)  # stable: ties keep input order
    text = event_pieces(frame, specs, omap, str(data_source_version))
    by = pl.col("EventType")
    records = text.frame.select(
        pl.col("_nbytes").alias("nbytes"),
        pl.col("EventTime").dt.epoch("ms").alias("ms"),
        pl.col("_offset").cast(pl.Int64).alias("offset"),
        by.alias("EventType"),
        pl.col("EventTime").dt.date().alias("day"),
        by.replace_strict({t: s.type for t, s in specs.items()}, default=None, return_dtype=pl.String).alias("type"),
        by.replace_strict({t: s.action for t, s in specs.items()}, default=None, return_dtype=pl.String)
        .alias("action"),
        pl.col("_iid").alias("idempotence_id"),
    )
    return records, text


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

    Columnar (:mod:`psanalytics.replay._odp_text`): text that depends on a repeating
    value (the event type's head, devices, addresses, pages, countries) is made once
    per distinct value and gathered by index; Payload fields once per distinct
    (EventType, Payload); the rows are put in time order before the text is built (a
    no-op for the usual time-ordered input). The replayer batches the records without
    this column: it builds each chunk of bodies' texts as it goes.
    """
    records, text = _odp_records(events, odp_map=odp_map, data_source_version=data_source_version,
                                 unmapped_out=unmapped_out)
    json = text.texts() if text is not None else pl.Series("json", [], pl.String)
    return records.with_columns(json.alias("json")).select(list(_RECORD_SCHEMA))


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
    text: OdpText | None = None,
) -> Iterator[Batch]:
    """JSON arrays of at most ``max_objects`` objects and ``max_bytes`` bytes, in record
    order. ``Batch.rows`` is the (start, end) row range of ``records`` a batch carries
    (halves of a split batch carry sub-ranges), which the reconciliation reads.

    The texts are ``records["json"]``, or with ``text`` (the replayer's way) built from
    it a chunk of bodies at a time: the rows of ``text.frame`` are ``records``' rows."""
    if not 1 <= max_objects <= MAX_ODP_OBJECTS:
        raise BatchingError(f"max_objects must be 1..{MAX_ODP_OBJECTS} (got {max_objects})")
    series: Any = text if text is not None else records.get_column("json")
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
                # (with ``text`` the chunk's texts are built here and dropped after the join)
            a = cum[i] - cum[c0] + (i - c0)
            body = b"".join((b"[", buf[a:a + cum[j] - cum[i] + (j - i) - 1], b"]"))
            yield Batch(seq=seq, id=None, body=body, visitors=0, events=j - i,
                        first_ms=ms[i], last_ms=ms[j - 1], offset_min=min(offs[i:j]), offset_max=max(offs[i:j]),
                        kind=kind, prefix=b"[", suffix=b"]", rows=(i, j), texts=series)
            seq += 1
            i = j
            continue
        if texts is None:
            texts = (text.texts() if text is not None else series).to_list()
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
