"""Track events <-> Optimizely Event API visitors.

:func:`to_visitors` turns a canonical events frame into Event API ``visitors`` (the
objects inside a ``POST /v1/events`` body); :func:`from_visitor_log` reads bodies back
(dry-run files, the SDK's log-event listener output, single bodies) into one row per
event.

The encoder is columnar: every event's JSON text is built by Polars expressions (no
per-event dicts), deterministic ``uuid`` values come from one hashlib loop, and visitors
are assembled with group-bys. :func:`encode_visitors` exposes that frame (one row per
visitor with its exact JSON text) for the batcher; :func:`to_visitors` decodes it into
dicts for people who want to look at them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import ipaddress
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
import polars as pl

from psanalytics.errors import InputError, PsaError

__all__ = [
    "ACTIVATE_EVENT_KEY",
    "DecisionSpec",
    "EventMap",
    "EventSpec",
    "MappingError",
    "REPLAY_NAMESPACE",
    "body_prefix",
    "encode_visitors",
    "event_uuid",
    "from_visitor_log",
    "to_visitors",
    "truncate_ip",
    "truncate_ip_expr",
]

#: The key the Event API (and the SDKs) give to a campaign activation event.
ACTIVATE_EVENT_KEY = "campaign_activated"
#: Namespace of the deterministic per-event uuid5 (stable across releases: changing it
#: would make re-sends look like new events to the service).
REPLAY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/psanalytics/replay/event")
_NS_BYTES = REPLAY_NAMESPACE.bytes
_USER_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/psanalytics/replay/user")


class MappingError(PsaError, ValueError):
    """The events or the event map cannot be turned into Event API visitors."""


# --------------------------------------------------------------------------- event map


@dataclass(frozen=True)
class DecisionSpec:
    """A campaign activation recorded with an event (impression).

    Each id is a literal string, or ``"$.path"`` to read it from the event's Payload
    (JSONPath, e.g. ``"$.variation.id"``). ``metadata`` follows the SDK's decision
    metadata (``flag_key``, ``rule_key``, ``rule_type``, ``variation_key``, ``enabled``);
    missing keys are filled from the ids.
    """

    campaign_id: str
    experiment_id: str
    variation_id: str
    is_campaign_holdback: bool | None = None
    metadata: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class EventSpec:
    """How one Profile Store ``EventType`` becomes an Event API event.

    ``entity_id``/``key``: the Optimizely event id and key. ``revenue``: Payload path of
    an amount in currency units, sent as integer cents. ``value``: Payload path of a
    numeric value. ``tags``: send the Payload's top-level scalars as tags. ``decision``:
    the event is a campaign activation (sent as ``campaign_activated`` with a decision).
    ``skip``: do not send this event type.
    """

    entity_id: str
    key: str
    revenue: str | None = None
    value: str | None = None
    tags: bool = True
    decision: DecisionSpec | None = None
    skip: bool = False


def _path(p: str | None) -> str | None:
    if p is None:
        return None
    p = p.strip()
    if p.startswith("$"):
        return p
    if p.startswith("Payload."):
        p = p[len("Payload."):]
    return "$." + p


@dataclass
class EventMap:
    """EventType -> Event API entity, plus visitor attributes.

    ``events`` maps an EventType to an entity id (``"order": "7001"``), to a dict
    (``{"entity_id": "7001", "key": "purchase", "revenue": "total"}``, with
    ``"decision": {"campaign_id": ..., "experiment_id": ..., "variation_id": ...}`` for an
    activation, or ``"skip": True``), or to an :class:`EventSpec`.

    ``unmapped``: what to do with an EventType the map does not name: ``"keep"`` (send it
    with ``entity_id = key = EventType``), ``"skip"`` or ``"error"``.

    ``revenue``: EventType -> Payload path for types that carry money when the map does
    not say (default: ``order`` -> ``total``).

    ``attributes``: visitor attribute key -> source column (``CountryCode``, ``City``,
    ``Scope``, ...) or ``(entity_id, column)``; the value is the visitor's first non-empty
    value. Default ``{"country": "CountryCode"}``. Only the attributes named here are
    sent (an allowlist).

    ``scrub_pii`` (default True): tags whose key names personal data (``email``,
    ``phone``, ``firstName``, ``lastName``, ``address``, ...) or whose text value holds an
    e-mail address are not sent.
    """

    events: Mapping[str, str | Mapping[str, Any] | EventSpec] = field(default_factory=dict)
    unmapped: Literal["keep", "skip", "error"] = "keep"
    revenue: Mapping[str, str] = field(default_factory=lambda: {"order": "total"})
    attributes: Mapping[str, str | tuple[str, str]] = field(
        default_factory=lambda: {"country": "CountryCode"}
    )
    scrub_pii: bool = True

    @classmethod
    def of(cls, value: EventMap | Mapping[str, Any] | None) -> EventMap:
        """Coerce ``None``, a plain ``{EventType: entity}`` dict, a dict of the whole map
        (``{"events": {...}, "unmapped": "skip", "attributes": {"market": ["9001", "Scope"]}}``,
        as a JSON file holds it), or an EventMap."""
        if value is None:
            return cls()
        if isinstance(value, EventMap):
            return value
        if isinstance(value, Mapping):
            full = {"events", "unmapped", "revenue", "attributes"}
            if isinstance(value.get("events"), Mapping) and set(value) <= full:
                # the whole EventMap as a dict (e.g. a JSON file for the CLI)
                attrs = {k: tuple(v) if isinstance(v, list) else v
                         for k, v in dict(value.get("attributes", {"country": "CountryCode"})).items()}
                return cls(events=dict(value["events"]), unmapped=value.get("unmapped", "keep"),
                           revenue=dict(value.get("revenue", {"order": "total"})), attributes=attrs)
            return cls(events=dict(value))
        raise MappingError(f"event_map must be a dict or an EventMap, not {type(value).__name__}")

    def spec(self, event_type: str) -> EventSpec | None:
        """The spec for one EventType (None when it is skipped)."""
        raw = self.events.get(event_type)
        if raw is None:
            if self.unmapped == "skip":
                return None
            if self.unmapped == "error":
                raise MappingError(
                    f"EventType {event_type!r} is not in the event map (unmapped='error'); "
                    f"map it or pass unmapped='keep'/'skip'"
                )
            return EventSpec(entity_id=event_type, key=event_type,
                             revenue=_path(self.revenue.get(event_type)))
        if isinstance(raw, EventSpec):
            spec = raw
        elif isinstance(raw, str):
            spec = EventSpec(entity_id=raw, key=event_type, revenue=_path(self.revenue.get(event_type)))
        elif isinstance(raw, Mapping):
            unknown = set(raw) - {"entity_id", "key", "revenue", "value", "tags", "decision", "skip"}
            if unknown:
                raise MappingError(
                    f"event map entry {event_type!r} has unknown keys {sorted(unknown)}; allowed: "
                    "entity_id, key, revenue, value, tags, decision, skip"
                )
            dec = raw.get("decision")
            if dec is not None and not isinstance(dec, DecisionSpec):
                try:
                    dec = DecisionSpec(**dict(dec))
                except TypeError as exc:
                    raise MappingError(f"event map entry {event_type!r}: bad decision: {exc}") from None
            spec = EventSpec(
                entity_id=str(raw.get("entity_id", event_type)),
                key=str(raw.get("key", event_type)),
                revenue=_path(raw.get("revenue", self.revenue.get(event_type))),
                value=_path(raw.get("value")),
                tags=bool(raw.get("tags", True)),
                decision=dec,
                skip=bool(raw.get("skip", False)),
            )
        else:
            raise MappingError(f"event map entry {event_type!r} must be a str, dict or EventSpec")
        return None if spec.skip else spec


# --------------------------------------------------------------------------- helpers


def event_uuid(name: str) -> str:
    """The deterministic uuid5 of one event (``name`` = its TrackId or content key)."""
    return str(uuid.uuid5(REPLAY_NAMESPACE, name))


def _uuid5_many(names: list[str], namespace: bytes = _NS_BYTES) -> pl.Series:
    """uuid5 over many names (same result as ``uuid.uuid5``): SHA-1 in one hashlib loop,
    version and variant bits and the 8-4-4-4-12 layout with Polars string ops."""
    sha1 = hashlib.sha1
    ns = namespace
    hx = pl.Series("h", [sha1(ns + s.encode()).hexdigest() for s in names], pl.String)
    variant = hx.str.slice(16, 1).replace_strict(_VARIANT, return_dtype=pl.String)
    return pl.select(
        pl.concat_str(
            [hx.str.slice(0, 8), pl.lit("-"), hx.str.slice(8, 4), pl.lit("-5"), hx.str.slice(13, 3),
             pl.lit("-"), variant, hx.str.slice(17, 3), pl.lit("-"), hx.str.slice(20, 12)]
        ).alias("_uuid")
    ).to_series()


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def _json_str(expr: pl.Expr) -> pl.Expr:
    """JSON-encode a string expression (quotes and escapes), vectorised."""
    return pl.struct(expr.alias("v")).struct.json_encode().str.head(-1).str.slice(5)


_V4 = re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$")


def truncate_ip(ip: str) -> str:
    """Zero the last octet of an IPv4 address or the last 80 bits of an IPv6 address.

    Returns "" for "" and leaves text that is not an IP address unchanged.
    """
    ip = ip.strip()
    if not ip:
        return ip
    if _V4.match(ip):
        return ip.rsplit(".", 1)[0] + ".0"
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Address(int(addr) & 0xFFFFFF00))
    mapped = addr.ipv4_mapped
    if mapped is not None:
        return "::ffff:" + str(ipaddress.IPv4Address(int(mapped) & 0xFFFFFF00))
    return str(ipaddress.IPv6Address(int(addr) & ~((1 << 80) - 1) & ((1 << 128) - 1)))


def truncate_ip_expr(expr: pl.Expr) -> pl.Expr:
    """Vectorised :func:`truncate_ip` (IPv4 by regex; IPv6 per distinct value)."""
    v4 = expr.str.replace(r"^(\d{1,3}\.\d{1,3}\.\d{1,3})\.\d{1,3}$", "${1}.0")
    return (
        pl.when(expr.str.contains(":"))
        .then(expr.map_elements(truncate_ip, return_dtype=pl.String, skip_nulls=True))
        .otherwise(v4)
    )


_PII_KEY = re.compile(
    r"^(e-?mail(address)?|phone(number)?|mobile|first_?name|last_?name|full_?name|address|street|"
    r"zip(code)?|postal_?code|ssn|personal_?number|birth_?date|date_?of_?birth|ip(address)?)$",
    re.IGNORECASE,
)
_EMAIL_IN_TEXT = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"


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
            if grp.height > sample:
                step = max(1, grp.height // (sample // 2))
                pick = pl.concat([payloads.head(sample // 4), payloads.gather_every(step), payloads.tail(sample // 4)])
            else:
                pick = payloads
            inferred = pl.read_ndjson(
                io.BytesIO(pick.str.replace_all("\n", " ").str.join("\n").item().encode()),
                infer_schema_length=None,
            ).schema
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


_NUMBER_TEXT = r"^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$"
_BOOL_TEXT = r"^(true|false)$"


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


# --------------------------------------------------------------------------- encoder


def _as_frame(events: Any) -> tuple[pl.DataFrame, pl.Series | None]:
    from psanalytics.schema import EVENTS_SCHEMA, normalize

    if isinstance(events, (str, Path)):
        from psanalytics.exports import read_events

        events = read_events(events)
    if isinstance(events, pl.LazyFrame):
        events = events.collect()
    extra = None
    if isinstance(events, pl.DataFrame) and "session_id" in events.columns:
        extra = events.get_column("session_id").cast(pl.String)
        events = events.drop("session_id")
    if isinstance(events, pl.DataFrame) and events.schema != EVENTS_SCHEMA:
        keep = [c for c in events.columns if c in EVENTS_SCHEMA.names() or c.startswith("User.")]
        if set(keep) == set(EVENTS_SCHEMA.names()):
            events = events.select(EVENTS_SCHEMA.names())
    return normalize(events), extra


def _resolve(
    events: Any,
    *,
    sessions: Any = None,
    visitor_id: str = "DeviceId",
    truncate_ips: bool = False,
) -> pl.DataFrame:
    """Canonical frame + ``_offset`` (input row), ``_sid`` (session) and ``_vid`` (visitor)."""
    frame, session_col = _as_frame(events)
    frame = frame.with_row_index("_offset")

    # -- sessions
    if sessions is not None and hasattr(sessions, "events") and hasattr(sessions, "sessions"):
        sessions = sessions.events  # a psanalytics.sessions.Sessionized result
    if sessions is None:
        sid = session_col
    elif sessions is True or (isinstance(sessions, str) and sessions == "sessionize"):
        if session_col is not None:
            sid = session_col
        else:
            from psanalytics.sessions import sessionize

            sid = sessionize(frame.drop("_offset")).events.get_column("session_id")
    elif isinstance(sessions, str):
        if sessions == "session_id" and session_col is not None:
            sid = session_col
        elif sessions in frame.columns:
            sid = frame.get_column(sessions).cast(pl.String)
        else:
            raise MappingError(f"sessions={sessions!r} names no column of the events frame")
    elif isinstance(sessions, pl.DataFrame | pl.LazyFrame):
        s = sessions.collect() if isinstance(sessions, pl.LazyFrame) else sessions
        missing = {"DeviceId", "EventTime", "session_id"} - set(s.columns)
        if missing:
            raise MappingError(
                f"sessions frame lacks columns {sorted(missing)}; expected DeviceId, EventTime, "
                "session_id (as psanalytics.sessionize(...).events has them)"
            )
        s = s.select(
            pl.col("DeviceId").cast(pl.String),
            pl.col("EventTime").cast(frame.schema["EventTime"]),
            pl.col("session_id").cast(pl.String),
        ).unique(["DeviceId", "EventTime"], keep="first")
        sid = (
            frame.select("_offset", "DeviceId", "EventTime")
            .join(s, on=["DeviceId", "EventTime"], how="left")
            .sort("_offset")
            .get_column("session_id")
        )
    else:
        raise MappingError(
            "sessions must be None, True ('sessionize'), a column name, a Sessionized result, or a "
            "frame with DeviceId, EventTime, session_id"
        )
    frame = frame.with_columns(
        (sid.fill_null("") if sid is not None else pl.lit("", pl.String)).alias("_sid")
    )

    # -- visitor ids
    if visitor_id == "DeviceId":
        vid = pl.col("DeviceId")
    elif visitor_id in ("user", "User", "stitched"):
        # Stitch (psanalytics.sessions.stitch): a device maps to its latest non-empty
        # User.Email; the id sent is a uuid5 of that address (no raw PII leaves).
        from psanalytics.sessions import stitch

        users = stitch(frame.drop("_offset")).select("device_id", "user_email")
        uniq = users.get_column("user_email").unique().to_list()
        ids = dict(zip(uniq, (str(uuid.uuid5(_USER_NAMESPACE, e)) for e in uniq), strict=True))
        users = users.select(
            pl.col("device_id").alias("DeviceId"),
            pl.col("user_email").replace_strict(ids, default=None).alias("_uid"),
        )
        frame = frame.join(users, on="DeviceId", how="left").sort("_offset")
        vid = pl.coalesce(pl.col("_uid"), pl.col("DeviceId"))
    elif visitor_id in frame.columns:
        vid = pl.col(visitor_id).cast(pl.String)
    else:
        raise MappingError(f"visitor_id={visitor_id!r}: use 'DeviceId', 'user', or a column name")
    frame = frame.with_columns(vid.alias("_vid"))
    if frame.height and (frame.get_column("_vid") == "").any():
        bad = int(frame.select((pl.col("_vid") == "").arg_max()).item())
        raise MappingError(f"event at row {bad} has no visitor id (empty DeviceId)")

    if truncate_ips:
        frame = frame.with_columns(truncate_ip_expr(pl.col("RemoteAddress")).alias("RemoteAddress"))

    return frame


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


def sample_mask(ids: pl.Series, fraction: float) -> pl.Series:
    """Consistent sampling: True for ids whose SHA-1 falls in the first ``fraction`` of
    the hash space (the same ids on every run and machine)."""
    cut = int(fraction * 2**32)
    uniq = ids.unique().to_list()
    keep = [v for v in uniq if int.from_bytes(hashlib.sha1(v.encode()).digest()[:4], "big") < cut]
    return ids.is_in(keep)


def _encode_resolved(frame: pl.DataFrame, emap: EventMap) -> pl.DataFrame:
    # -- per EventType specs
    types = frame.get_column("EventType").unique().sort().to_list()
    specs = {t: emap.spec(t) for t in types}
    kept = [t for t, s in specs.items() if s is not None]
    frame = frame.filter(pl.col("EventType").is_in(kept))
    if frame.height == 0:
        return _empty_visitors()
    specs = {t: specs[t] for t in kept}

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
    # Activation events: entity_id is the campaign id, key campaign_activated.
    act_specs = {t: s.decision for t, s in specs.items() if s.decision is not None}
    if act_specs:
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

    # -- event JSON text (SDK key order: entity_id, uuid, key, timestamp, revenue, value, tags)
    base = pl.struct(
        pl.col("_entity").alias("entity_id"),
        pl.col("_uuid").alias("uuid"),
        pl.col("_key").alias("key"),
        pl.col("_ts").alias("timestamp"),
    ).struct.json_encode().str.head(-1)
    ev_json = pl.concat_str(
        [
            base,
            pl.when(pl.col("_revenue").is_not_null()).then(pl.lit(',"revenue":') + pl.col("_revenue").cast(pl.String)).otherwise(pl.lit("")),
            pl.when(pl.col("_value").is_not_null()).then(pl.lit(',"value":') + pl.col("_value").cast(pl.String)).otherwise(pl.lit("")),
            pl.when(pl.col("_tagjson").is_not_null()).then(pl.lit(',"tags":') + pl.col("_tagjson")).otherwise(pl.lit("")),
            pl.lit("}"),
        ]
    )
    gkeys = ["_vid", "_sid"]
    attrs = {k: (v if isinstance(v, tuple) else (k, v)) for k, v in emap.attributes.items()}
    for k, (_, col) in attrs.items():
        if col not in frame.columns:
            raise MappingError(f"attribute {k!r} reads column {col!r}, which the events frame lacks")
    # Sort only what the group-bys need (moving Payload and friends costs more than sorting).
    need = ["_vid", "_sid", "_ts", "_offset", "_act", *sorted({c for _, c in attrs.values()})]
    if act_specs:
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
    if act_specs and frame.get_column("_act").any():
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


# --------------------------------------------------------------------------- reverse


def _iter_bodies(source: Any) -> Iterator[tuple[str, int | None, Any]]:
    """Yield (origin, line, body) for every body in ``source``."""
    if hasattr(source, "params") and isinstance(getattr(source, "params", None), Mapping):
        yield ("LogEvent", None, source.params)
        return
    if isinstance(source, Mapping):
        yield ("body", None, source)
        return
    if isinstance(source, (bytes, bytearray)):
        text = bytes(source)
        yield from _iter_text("<bytes>", text)
        return
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and not source.lstrip().startswith(("{", "["))):
        path = Path(source)
        if not path.exists():
            raise InputError("no such file", path=str(path))
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        yield from _iter_text(str(path), raw)
        return
    if isinstance(source, str):
        yield from _iter_text("<text>", source.encode())
        return
    if isinstance(source, Iterable):
        for i, item in enumerate(source):
            for origin, _, body in _iter_bodies(item):
                yield (origin, i, body)
        return
    raise MappingError(f"cannot read visitor logs from a {type(source).__name__}")


def _iter_text(origin: str, raw: bytes) -> Iterator[tuple[str, int | None, Any]]:
    stripped = raw.strip()
    if not stripped:
        return
    try:
        whole = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        whole = None
    if whole is not None:
        items = whole if isinstance(whole, list) else [whole]
        for i, b in enumerate(items):
            yield (origin, i + 1 if isinstance(whole, list) else 1, b)
        return
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield (origin, n, orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise InputError(f"not valid JSON: {exc}", path=origin, line=n) from None


_LOG_SCHEMA = {
    "account_id": pl.String,
    "project_id": pl.String,
    "visitor_id": pl.String,
    "session_id": pl.String,
    "snapshot": pl.Int64,
    "timestamp": pl.Datetime("ms", "UTC"),
    "uuid": pl.String,
    "entity_id": pl.String,
    "key": pl.String,
    "type": pl.String,
    "value": pl.Float64,
    "revenue": pl.Int64,
    "quantity": pl.Int64,
    "tags": pl.String,
    "decisions": pl.List(
        pl.Struct({"campaign_id": pl.String, "experiment_id": pl.String, "variation_id": pl.String,
                   "is_campaign_holdback": pl.Boolean})
    ),
    "attributes": pl.List(
        pl.Struct({"entity_id": pl.String, "key": pl.String, "type": pl.String, "value": pl.String})
    ),
    "source_line": pl.Int64,
}


def _s(v: Any) -> str | None:
    return None if v is None else str(v)


def from_visitor_log(source: Any) -> pl.DataFrame:
    """Event API bodies -> one row per event.

    ``source``: a path to a JSON-lines file of bodies (a dry-run file, optionally
    gzipped) or to one JSON body / array of bodies; JSON text or bytes; one body dict; a
    list of bodies; an SDK ``LogEvent`` (its ``.params``) or a list of them; a dict of a
    log-event listener's ``{"url", "params"}`` record.

    Columns: account_id, project_id, visitor_id, session_id, snapshot (index within the
    visitor), timestamp (Datetime ms UTC), uuid, entity_id, key, type, value, revenue
    (integer cents), quantity, tags (JSON text), decisions (list of structs: the
    snapshot's decisions), attributes (list of structs, values as text), source_line.
    """
    rows: dict[str, list[Any]] = {c: [] for c in _LOG_SCHEMA}
    for origin, line, body in _iter_bodies(source):
        if isinstance(body, Mapping) and "params" in body and "visitors" not in body:
            body = body["params"]
        if not isinstance(body, Mapping) or "visitors" not in body:
            raise InputError("not an Event API body (no 'visitors')", path=origin, line=line)
        acct, proj = _s(body.get("account_id")), _s(body.get("project_id"))
        for vis in body.get("visitors") or []:
            attrs = [
                {"entity_id": _s(a.get("entity_id")), "key": _s(a.get("key")), "type": _s(a.get("type")),
                 "value": _s(a.get("value")) if not isinstance(a.get("value"), bool) else str(a.get("value")).lower()}
                for a in vis.get("attributes") or []
            ]
            for si, snap in enumerate(vis.get("snapshots") or []):
                decs = [
                    {"campaign_id": _s(d.get("campaign_id")), "experiment_id": _s(d.get("experiment_id")),
                     "variation_id": _s(d.get("variation_id")), "is_campaign_holdback": d.get("is_campaign_holdback")}
                    for d in snap.get("decisions") or []
                ]
                for ev in snap.get("events") or []:
                    tags = ev.get("tags")
                    rows["account_id"].append(acct)
                    rows["project_id"].append(proj)
                    rows["visitor_id"].append(_s(vis.get("visitor_id")))
                    rows["session_id"].append(_s(vis.get("session_id")))
                    rows["snapshot"].append(si)
                    rows["timestamp"].append(ev.get("timestamp"))
                    rows["uuid"].append(_s(ev.get("uuid")))
                    rows["entity_id"].append(_s(ev.get("entity_id")))
                    rows["key"].append(_s(ev.get("key")))
                    rows["type"].append(_s(ev.get("type")))
                    rows["value"].append(ev.get("value"))
                    rows["revenue"].append(ev.get("revenue"))
                    rows["quantity"].append(ev.get("quantity"))
                    rows["tags"].append(None if tags is None else orjson.dumps(tags).decode())
                    rows["decisions"].append(decs)
                    rows["attributes"].append(attrs)
                    rows["source_line"].append(line)
    data = {}
    for c, dt in _LOG_SCHEMA.items():
        if c == "timestamp":
            data[c] = pl.Series(c, rows[c], pl.Int64, strict=False).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")
        else:
            data[c] = pl.Series(c, rows[c], dt, strict=False)
    return pl.DataFrame(data)
