"""The Event API encoder: track events -> visitors (columnar: Polars expressions build every
event's JSON text; visitors are assembled with group-bys)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import polars as pl

from psanalytics.replay._text import _json_str, _uuid5_many
from psanalytics.replay.event_map import ACTIVATE_EVENT_KEY, DecisionSpec, EventMap, MappingError
from psanalytics.replay.inputs import _resolve, sample_mask
from psanalytics.replay.tags import _tags_column

__all__ = ["body_prefix", "encode_visitor_chunks", "encode_visitors", "to_visitors"]


def body_prefix(
    *,
    account_id: str,
    project_id: str | None = None,
    revision: str | None = None,
    anonymize_ip: bool = True,
    client_name: str = "psanalytics/replay",
    client_version: str | None = None,
    enrich_decisions: bool = True,
) -> bytes:
    """The bytes of a body up to ``"visitors":[`` (the batcher appends visitors and ``]}``)."""
    if client_version is None:
        from psanalytics import __version__

        client_version = __version__
    head: dict[str, Any] = {"account_id": str(account_id)}
    if project_id is not None:
        head["project_id"] = str(project_id)
    if revision is not None:
        head["revision"] = str(revision)
    head.update(
        client_name=client_name,
        client_version=client_version,
        anonymize_ip=bool(anonymize_ip),
        enrich_decisions=bool(enrich_decisions),
    )
    return orjson.dumps(head)[:-1] + b',"visitors":['


def encode_visitors(
    events: Any,
    *,
    event_map: EventMap | Mapping[str, Any] | None = None,
    sessions: Any = None,
    visitor_id: str = "DeviceId",
    truncate_ips: bool = False,
) -> pl.DataFrame:
    """Events -> one row per Event API visitor with its exact JSON text.

    Columns: ``visitor_id``, ``session_id`` (null when none), ``json`` (the visitor
    object as JSON text), ``nbytes`` (its encoded size), ``events`` (how many events),
    ``first_ms``/``last_ms`` (epoch ms of its first and last event), ``offsets`` (the
    input row numbers of its events). Rows are ordered by each visitor's first event.
    See :func:`to_visitors` for the arguments.
    """
    frame = _resolve(events, sessions=sessions, visitor_id=visitor_id, truncate_ips=truncate_ips)
    return _encode_resolved(frame, EventMap.of(event_map))


def encode_visitor_chunks(
    events: Any,
    *,
    chunk_events: int = 250_000,
    event_map: EventMap | Mapping[str, Any] | None = None,
    sessions: Any = None,
    visitor_id: str = "DeviceId",
    truncate_ips: bool = False,
    sample: float | None = None,
) -> tuple[int, Iterator[pl.DataFrame]]:
    """Like :func:`encode_visitors`, in parts of about ``chunk_events`` events.

    Visitors are assigned to parts by a stable hash of their id (CRC-32), so every
    visitor is whole in exactly one part and the parts are the same on every run; each
    part is encoded only when the iterator reaches it (the replayer sends one part while
    the next is encoded). ``sample``: keep that fraction of visitors, chosen by a hash of
    the visitor id (:func:`sample_mask`). Returns (number of events that will be
    encoded, parts).
    """
    import zlib

    emap = EventMap.of(event_map)
    frame = _resolve(events, sessions=sessions, visitor_id=visitor_id, truncate_ips=truncate_ips)
    if sample is not None:
        frame = frame.filter(sample_mask(frame.get_column("_vid"), sample))
    types = frame.get_column("EventType").unique().to_list()
    kept = [t for t in types if emap.spec(t) is not None]
    frame = frame.filter(pl.col("EventType").is_in(kept))
    parts = max(1, -(-frame.height // max(1, chunk_events)))
    if parts == 1:
        return frame.height, iter([_encode_resolved(frame, emap)])
    uniq = frame.get_column("_vid").unique().to_list()
    slot = {v: zlib.crc32(v.encode()) % parts for v in uniq}
    frame = frame.with_columns(pl.col("_vid").replace_strict(slot, return_dtype=pl.Int64).alias("_part"))

    def gen() -> Iterator[pl.DataFrame]:
        for k in range(parts):
            yield _encode_resolved(frame.filter(pl.col("_part") == k).drop("_part"), emap)

    return frame.height, gen()


def _encode_resolved(frame: pl.DataFrame, emap: EventMap) -> pl.DataFrame:
    """One visitor JSON object per (visitor, session) of resolved events: the event
    columns per EventType spec, a deterministic uuid, each event's JSON, then visitors."""
    types = frame.get_column("EventType").unique().sort().to_list()
    specs = {t: emap.spec(t) for t in types}
    kept = [t for t, s in specs.items() if s is not None]
    frame = frame.filter(pl.col("EventType").is_in(kept))
    if frame.height == 0:
        return _empty_visitors()
    specs = {t: specs[t] for t in kept}
    frame = _event_columns(frame, specs)
    act_specs = {t: s.decision for t, s in specs.items() if s.decision is not None}
    if act_specs:
        # Activation events: entity_id is the campaign id, key campaign_activated.
        frame = _with_decisions(frame, act_specs)
    # -- deterministic uuid per event: TrackId, or a content key when there is none
    names = frame.select(
        pl.when(pl.col("TrackId") != "")
        .then(pl.col("TrackId"))
        .otherwise(
            pl.concat_str(
                [
                    pl.lit("content:"),
                    pl.col("DeviceId"),
                    pl.col("EventType"),
                    pl.col("EventTime").dt.epoch("ns").cast(pl.String),
                    pl.col("Value"),
                    pl.col("PageUri"),
                    pl.col("Payload").fill_null("null"),
                ],
                separator="\x1f",
            )
        )
    ).to_series()
    frame = frame.with_columns(_uuid5_many(names.to_list()))
    frame = frame.with_columns(_tags_column(frame, scrub_pii=emap.scrub_pii).alias("_tagjson"))

    attrs = {k: (v if isinstance(v, tuple) else (k, v)) for k, v in emap.attributes.items()}
    for k, (_, col) in attrs.items():
        if col not in frame.columns:
            raise MappingError(f"attribute {k!r} reads column {col!r}, which the events frame lacks")
    visitors = _group_visitors(frame, attrs, has_decisions=bool(act_specs))
    return _visitor_rows(visitors, attrs)


def _event_columns(frame: pl.DataFrame, specs: Mapping[str, Any]) -> pl.DataFrame:
    """Per EventType spec: _entity, _key, _act, _tags, _ts, _revenue, _value."""
    def per_type(values: Mapping[str, Any], dtype: pl.DataType) -> pl.Expr:
        return pl.col("EventType").replace_strict(dict(values), default=None, return_dtype=dtype)

    entity = per_type({t: s.entity_id for t, s in specs.items()}, pl.String)
    key = per_type({t: s.key for t, s in specs.items()}, pl.String)
    is_act = per_type({t: s.decision is not None for t, s in specs.items()}, pl.Boolean)
    use_tags = per_type({t: s.tags and s.decision is None for t, s in specs.items()}, pl.Boolean)

    def payload_number(paths: dict[str, str]) -> pl.Expr:
        expr: Any = None
        for t, p in paths.items():
            cond = pl.col("EventType") == t
            val = pl.when(cond).then(pl.col("Payload")).str.json_path_match(p).cast(pl.Float64, strict=False)
            expr = (pl.when(cond) if expr is None else expr.when(cond)).then(val)
        return pl.lit(None, pl.Float64) if expr is None else expr.otherwise(None)

    rev_paths = {t: s.revenue for t, s in specs.items() if s.revenue and s.decision is None}
    val_paths = {t: s.value for t, s in specs.items() if s.value and s.decision is None}
    frame = frame.with_columns(
        entity.alias("_entity"),
        key.alias("_key"),
        is_act.alias("_act"),
        use_tags.alias("_tags"),
        pl.col("EventTime").dt.epoch("ms").alias("_ts"),
        (payload_number(rev_paths) * 100).round(0).cast(pl.Int64).alias("_revenue"),
        payload_number(val_paths).alias("_value"),
    )
    return frame


def _event_json() -> pl.Expr:
    """Each event's JSON text (SDK key order: entity_id, uuid, key, timestamp, revenue,
    value, tags)."""
    base = pl.struct(
        pl.col("_entity").alias("entity_id"),
        pl.col("_uuid").alias("uuid"),
        pl.col("_key").alias("key"),
        pl.col("_ts").alias("timestamp"),
    ).struct.json_encode().str.head(-1)
    return pl.concat_str(
        [
            base,
            pl.when(pl.col("_revenue").is_not_null()).then(pl.lit(',"revenue":') + pl.col("_revenue").cast(pl.String)).otherwise(pl.lit("")),
            pl.when(pl.col("_value").is_not_null()).then(pl.lit(',"value":') + pl.col("_value").cast(pl.String)).otherwise(pl.lit("")),
            pl.when(pl.col("_tagjson").is_not_null()).then(pl.lit(',"tags":') + pl.col("_tagjson")).otherwise(pl.lit("")),
            pl.lit("}"),
        ]
    )


def _group_visitors(frame: pl.DataFrame, attrs: Mapping[str, tuple[str, str]], *,
                    has_decisions: bool) -> pl.DataFrame:
    """Events grouped into snapshots and visitors, in time order."""
    ev_json = _event_json()
    gkeys = ["_vid", "_sid"]
    # Sort only what the group-bys need (moving Payload and friends costs more than sorting).
    need = ["_vid", "_sid", "_ts", "_offset", "_act", *sorted({c for _, c in attrs.values()})]
    if has_decisions:
        need.append("_dec")
    frame = (
        frame.select(*need, ev_json.alias("_ej"), "EventTime")
        .sort(["EventTime", "_offset"])
        .drop("EventTime")
    )
    attr_aggs = [
        pl.col(col).filter(pl.col(col) != "").first().alias(f"_attr_{i}")
        for i, (_, col) in enumerate(attrs.values())
    ]
    common_aggs = [
        pl.len().alias("events"),
        pl.col("_ts").first().alias("first_ms"),
        pl.col("_ts").last().alias("last_ms"),
        pl.col("_offset").alias("offsets"),
        *attr_aggs,
    ]
    if has_decisions and frame.get_column("_act").any():
        # Runs of conversions share a snapshot; each activation is its own snapshot.
        frame = frame.with_columns(
            (pl.col("_act") | pl.col("_act").shift(1, fill_value=False).over(gkeys))
            .cum_sum()
            .over(gkeys)
            .alias("_snap")
        )
        snaps = frame.group_by([*gkeys, "_snap"], maintain_order=True).agg(
            pl.col("_ej").str.join(",").alias("_evs"),
            pl.col("_dec").first().alias("_dec"),
            *common_aggs,
        )
        snaps = snaps.with_columns(
            pl.concat_str(
                [
                    pl.when(pl.col("_dec").is_not_null()).then(pl.lit('{"decisions":[') + pl.col("_dec") + '],"events":[').otherwise(pl.lit('{"events":[')),
                    pl.col("_evs"),
                    pl.lit("]}"),
                ]
            ).alias("_snapjson")
        )
        visitors = snaps.group_by(gkeys, maintain_order=True).agg(
            pl.col("_snapjson").str.join(",").alias("_snaps"),
            pl.col("events").sum(),
            pl.col("first_ms").first(),
            pl.col("last_ms").last(),
            pl.col("offsets").list.explode(keep_nulls=False, empty_as_null=False),
            *[pl.col(f"_attr_{i}").drop_nulls().first() for i in range(len(attrs))],
        )
    else:
        visitors = frame.group_by(gkeys, maintain_order=True).agg(
            (pl.lit('{"events":[') + pl.col("_ej").str.join(",") + pl.lit("]}")).alias("_snaps"),
            *common_aggs,
        )
    return visitors


def _visitor_rows(visitors: pl.DataFrame, attrs: Mapping[str, tuple[str, str]]) -> pl.DataFrame:
    """The visitor JSON objects and what each carries."""
    attr_frags = [
        pl.when(pl.col(f"_attr_{i}").is_not_null()).then(
            pl.lit('{"entity_id":' + orjson.dumps(ent).decode() + ',"key":' + orjson.dumps(k).decode() + ',"type":"custom","value":')
            + _json_str(pl.col(f"_attr_{i}"))
            + pl.lit("}")
        )
        for i, (k, (ent, _)) in enumerate(attrs.items())
    ]
    attr_json = (
        pl.lit("[") + pl.concat_str(attr_frags, separator=",", ignore_nulls=True).fill_null("") + pl.lit("]")
        if attr_frags
        else pl.lit("[]")
    )
    vjson = pl.concat_str(
        [
            pl.lit('{"visitor_id":') + _json_str(pl.col("_vid")),
            pl.when(pl.col("_sid") != "").then(pl.lit(',"session_id":') + _json_str(pl.col("_sid"))).otherwise(pl.lit("")),
            pl.lit(',"attributes":') + attr_json,
            pl.lit(',"snapshots":[') + pl.col("_snaps") + pl.lit("]}"),
        ]
    )
    out = visitors.select(
        pl.col("_vid").alias("visitor_id"),
        pl.when(pl.col("_sid") != "").then(pl.col("_sid")).otherwise(None).alias("session_id"),
        vjson.alias("json"),
        pl.col("events").cast(pl.Int64),
        pl.col("first_ms"),
        pl.col("last_ms"),
        pl.col("offsets").cast(pl.List(pl.Int64)),
    ).with_columns(pl.col("json").str.len_bytes().cast(pl.Int64).alias("nbytes"))
    return out.select("visitor_id", "session_id", "json", "nbytes", "events", "first_ms", "last_ms", "offsets")


def _empty_visitors() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "visitor_id": pl.String, "session_id": pl.String, "json": pl.String, "nbytes": pl.Int64,
            "events": pl.Int64, "first_ms": pl.Int64, "last_ms": pl.Int64, "offsets": pl.List(pl.Int64),
        }
    )


def _with_decisions(frame: pl.DataFrame, act_specs: Mapping[str, DecisionSpec]) -> pl.DataFrame:
    def value(v: Any) -> pl.Expr:
        if isinstance(v, str) and v.startswith("$"):
            return pl.col("Payload").str.json_path_match(v)
        return pl.lit(None if v is None else str(v), pl.String)

    camp: Any = None
    dec: Any = None
    for t, d in act_specs.items():
        meta = dict(d.metadata or {})
        cond = pl.col("EventType") == t
        c, e, v = value(d.campaign_id), value(d.experiment_id), value(d.variation_id)
        fields = [c.alias("campaign_id"), e.alias("experiment_id"), v.alias("variation_id")]
        if d.is_campaign_holdback is not None:
            fields.append(pl.lit(bool(d.is_campaign_holdback)).alias("is_campaign_holdback"))
        md = pl.struct(
            value(meta.get("flag_key", "")).alias("flag_key"),
            (value(meta["rule_key"]) if "rule_key" in meta else e).alias("rule_key"),
            value(meta.get("rule_type", "experiment")).alias("rule_type"),
            (value(meta["variation_key"]) if "variation_key" in meta else v).alias("variation_key"),
            pl.lit(bool(meta.get("enabled", True))).alias("enabled"),
        )
        fields.append(md.alias("metadata"))
        dj = pl.struct(fields).struct.json_encode()
        camp = (pl.when(cond) if camp is None else camp.when(cond)).then(c)
        dec = (pl.when(cond) if dec is None else dec.when(cond)).then(dj)
    frame = frame.with_columns(camp.otherwise(None).alias("_camp"), dec.otherwise(None).alias("_dec"))
    missing = frame.filter(pl.col("_act") & pl.col("_camp").is_null())
    if missing.height:
        r = missing.row(0, named=True)
        raise MappingError(
            f"activation event at row {r['_offset']} ({r['EventType']}) has no campaign id "
            "(the decision's campaign_id path found nothing in its Payload)"
        )
    return frame.with_columns(
        pl.when(pl.col("_act")).then(pl.col("_camp")).otherwise(pl.col("_entity")).alias("_entity"),
        pl.when(pl.col("_act")).then(pl.lit(ACTIVATE_EVENT_KEY)).otherwise(pl.col("_key")).alias("_key"),
    )


def to_visitors(
    events: Any,
    *,
    account_id: str,
    project_id: str | None = None,
    event_map: EventMap | Mapping[str, Any] | None = None,
    sessions: Any = None,
    anonymize_ip: bool = True,
    client_name: str = "psanalytics/replay",
    client_version: str | None = None,
    visitor_id: str = "DeviceId",
    truncate_ips: bool = False,
) -> Iterator[dict[str, Any]]:
    """Track events -> Event API visitor objects (dicts), ordered by first event.

    - ``visitor_id``: ``"DeviceId"`` (default), ``"user"`` (stitched with
      :func:`psanalytics.stitch`: every event of a device goes to the device's latest
      e-mail, sent as a pseudonymous uuid5 of the address), or a column of ``events``.
    - ``sessions``: None (the service cuts sessions itself), ``True``/``"sessionize"``
      (the events' ``session_id`` column, else :func:`psanalytics.sessionize` with its
      defaults), a :class:`~psanalytics.sessions.Sessionized` result, a frame with
      ``DeviceId``, ``EventTime``, ``session_id``, or a column name (``"SessionId"`` for
      the Profile Store's own). An events frame with a ``session_id`` column (such as
      ``sessionize(...).events``) is used automatically. One visitor object per
      (visitor, session).
    - Each event: ``timestamp`` in epoch ms (13 digits), ``uuid`` = uuid5 of its TrackId
      (or of its content when TrackId is "") so re-sends are deduplicated, ``entity_id``
      and ``key`` from ``event_map``, ``revenue`` in integer cents (orders' Payload
      ``total`` by default), ``tags`` = the Payload's top-level scalars. Event types the
      map marks with a ``decision`` become campaign activations.
    - ``account_id``, ``project_id``, ``anonymize_ip``, ``client_name`` and
      ``client_version`` belong to the body, not to visitors: they are accepted here so
      calls mirror :func:`replay`, and checked (``account_id`` must be non-empty).
    """
    if not str(account_id or "").strip():
        raise MappingError("account_id is required (the Optimizely account the events belong to)")
    vis = encode_visitors(events, event_map=event_map, sessions=sessions, visitor_id=visitor_id,
                          truncate_ips=truncate_ips)
    for text in vis.get_column("json"):
        yield orjson.loads(text)
