"""Batching: Event API bodies by visitors and measured encoded size; TrackBulk batches.

One visitor's object is never split across bodies. A visitor whose own body would pass
``max_bytes`` cannot be sent at all and is handed back as *quarantined*.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import polars as pl

from psanalytics.errors import PsaError
from psanalytics.wire.limits import MAX_BULK_EVENTS, MAX_EVENT_BYTES

__all__ = [
    "Batch",
    "BatchingError",
    "Quarantined",
    "MAX_BYTES",
    "TRACK_BULK_MAX_EVENTS",
    "TRACK_BULK_MAX_BYTES",
    "event_api_batches",
    "tracking_batches",
    "tracking_records",
]

#: Default body size cap: 100 KB margin under the Event API's 3.5 MB.
MAX_BYTES = 3_400_000
#: TrackBulk limits (spec §2): at most 100 events per request, each at most 256 KB
#: (the client-side limits live in psanalytics.wire.limits).
TRACK_BULK_MAX_EVENTS = MAX_BULK_EVENTS
TRACK_BULK_MAX_BYTES = MAX_EVENT_BYTES
_SUFFIX = b"]}"


class BatchingError(PsaError, ValueError):
    """Batching options that cannot work."""


class _BatchId:
    """The ``id`` field of :class:`Batch`: given, or (``id=None``) computed from ``seq`` and
    ``body`` the first time it is read. Hashing every body costs a pass over all the
    bytes a run writes; a dry run without a checkpoint never reads the ids."""

    def __get__(self, obj: Any, owner: Any = None) -> str:
        if obj is None:
            raise AttributeError("id")  # the field has no default (dataclasses asks)
        value = obj.__dict__["_id"]
        if value is None:
            value = obj.__dict__["_id"] = _batch_id(obj.seq, obj.body)
        return value

    def __set__(self, obj: Any, value: str | None) -> None:
        obj.__dict__["_id"] = value


@dataclass
class Batch:
    """One request: its id, exact body, and what it carries.

    ``id`` is ``<seq>-<sha1 of body>``: the same input and options give the same ids, so
    a checkpoint can tell which batches were acknowledged (``id=None`` computes it when
    it is first read). ``parts`` are the visitor JSON texts (Event API) so a rejected
    batch can be split; ``records`` the TrackBulk event dicts (Tracking API).
    """

    seq: int
    id: str = _BatchId()  # type: ignore[assignment]
    body: bytes
    visitors: int
    events: int
    first_ms: int
    last_ms: int
    offset_min: int
    offset_max: int
    kind: str = "event-api"
    parts: list[str] = field(default_factory=list, repr=False)
    records: list[dict[str, Any]] | None = field(default=None, repr=False)
    prefix: bytes = field(default=b"", repr=False)
    part_events: list[int] = field(default_factory=list, repr=False)
    part_first_ms: list[int] = field(default_factory=list, repr=False)
    #: the bytes after the parts (``]}`` closes an Event API body, ``]`` a JSON array)
    suffix: bytes = field(default=_SUFFIX, repr=False)
    #: (start, end) rows of the encoded records this batch carries (ODP), else None
    rows: tuple[int, int] | None = None
    #: the records' JSON texts (ODP): ``parts`` are read from it only when a batch is
    #: split, so a run that is never refused does not copy every text into Python
    texts: Any = field(default=None, repr=False)
    #: replayer clock time at which pacing released the batch (None until then)
    released_at: float | None = None

    @property
    def nbytes(self) -> int:
        return len(self.body)

    @property
    def splittable(self) -> bool:
        """More than one visitor (Event API) or object (ODP): :meth:`split` can halve it."""
        if self.parts:
            return len(self.parts) > 1
        return self.rows is not None and self.texts is not None and self.rows[1] - self.rows[0] > 1

    def split(self) -> tuple[Batch, Batch]:
        """Two halves by parts (visitors, or ODP objects), for isolating a rejected one."""
        if not self.parts and self.texts is not None and self.rows is not None:
            self.parts = self.texts.slice(self.rows[0], self.rows[1] - self.rows[0]).to_list()
        n = len(self.parts)
        if n < 2:
            raise BatchingError(f"batch {self.id} has one visitor; it cannot be split")
        h = n // 2
        per_event = not self.part_events  # one event per part (ODP objects)
        out = []
        for i, (lo, hi) in enumerate(((0, h), (h, n))):
            parts = self.parts[lo:hi]
            body = self.prefix + ",".join(parts).encode() + self.suffix
            rows = None if self.rows is None else (self.rows[0] + lo, self.rows[0] + hi)
            out.append(
                Batch(
                    seq=self.seq, id=f"{self.id}.{i}", body=body,
                    visitors=0 if per_event else hi - lo,
                    events=hi - lo if per_event else sum(self.part_events[lo:hi]),
                    first_ms=self.first_ms if per_event else min(self.part_first_ms[lo:hi]),
                    last_ms=self.last_ms, offset_min=self.offset_min, offset_max=self.offset_max,
                    kind=self.kind, parts=parts, prefix=self.prefix, suffix=self.suffix,
                    part_events=self.part_events[lo:hi], part_first_ms=self.part_first_ms[lo:hi],
                    rows=rows, texts=self.texts,
                )
            )
        return out[0], out[1]


@dataclass
class Quarantined:
    """A visitor (or a Tracking event) too large to send under the size cap."""

    visitor_id: str
    session_id: str | None
    events: int
    nbytes: int
    json: str
    offsets: list[int]
    reason: str = "too large for one request"


def _batch_id(seq: int, body: bytes) -> str:
    return f"{seq:07d}-{hashlib.sha1(body).hexdigest()[:16]}"


def event_api_batches(
    visitors: pl.DataFrame,
    prefix: bytes,
    *,
    max_visitors: int = 500,
    max_bytes: int = MAX_BYTES,
    max_span_ms: int | None = None,
    quarantine: list[Quarantined] | None = None,
    start_seq: int = 0,
) -> Iterator[Batch]:
    """Group encoded visitors (from :func:`~psanalytics.replay.mapping.encode_visitors`)
    into bodies of at most ``max_visitors`` visitors and ``max_bytes`` encoded bytes.

    ``max_span_ms`` also closes a batch when a visitor starts that many ms (original
    time) after the batch's first visitor (used by pacing). Visitors too large for a
    body on their own are appended to ``quarantine`` and skipped.
    """
    if max_visitors < 1:
        raise BatchingError(f"max_visitors must be >= 1 (got {max_visitors})")
    fixed = len(prefix) + len(_SUFFIX)
    if max_bytes <= fixed + 2:
        raise BatchingError(f"max_bytes={max_bytes} leaves no room for a visitor")
    seq = start_seq
    parts: list[str] = []
    p_events: list[int] = []
    p_first: list[int] = []
    size = fixed
    lo = hi = 0
    last = 0

    def flush() -> Batch:
        nonlocal seq
        body = prefix + ",".join(parts).encode() + _SUFFIX
        assert len(body) == size, (len(body), size)
        b = Batch(
            seq=seq, id=_batch_id(seq, body), body=body, visitors=len(parts), events=sum(p_events),
            first_ms=min(p_first), last_ms=last, offset_min=lo, offset_max=hi, parts=list(parts),
            prefix=prefix, part_events=list(p_events), part_first_ms=list(p_first),
        )
        seq += 1
        return b

    cols = visitors.select(
        "visitor_id", "session_id", "json", "nbytes", "events", "first_ms", "last_ms",
        pl.col("offsets").list.min().alias("omin"), pl.col("offsets").list.max().alias("omax"),
    )
    for vid, sid, text, nb, nev, fms, lms, omin, omax in cols.iter_rows():
        if fixed + nb > max_bytes:
            if quarantine is not None:
                off = visitors.filter(
                    (pl.col("visitor_id") == vid)
                    & (pl.col("session_id").is_null() if sid is None else pl.col("session_id") == sid)
                ).get_column("offsets")
                quarantine.append(Quarantined(vid, sid, nev, fixed + nb, text,
                                              off[0].to_list() if len(off) else []))
            continue
        add = nb + (1 if parts else 0)
        if parts and (
            size + add > max_bytes
            or len(parts) >= max_visitors
            or (max_span_ms is not None and fms - p_first[0] > max_span_ms)
        ):
            yield flush()
            parts, p_events, p_first, size, last = [], [], [], fixed, 0
            add = nb
        if not parts:
            lo, hi = omin, omax
        parts.append(text)
        p_events.append(nev)
        p_first.append(fms)
        size += add
        last = max(last, lms)
        lo, hi = min(lo, omin), max(hi, omax)
    if parts:
        yield flush()


def tracking_records(events: pl.DataFrame, *, truncate_ips: bool = False) -> pl.DataFrame:
    """Canonical events -> TrackBulk bodies (camelCase JSON text per event), in time order.

    Columns: ``json`` (one Tracking API event object, written by
    :func:`psanalytics.wire.tracking.tracking_json`, the one Tracking encoder: ``trackId``
    and ``sessionId`` travel, empty fields are left out, ``user.info`` is sent), ``nbytes``,
    ``ms`` (epoch ms), ``offset`` (input row).
    """
    from psanalytics.replay.mapping import truncate_ip_expr
    from psanalytics.wire.tracking import tracking_json

    f = events.with_row_index("offset").sort(["EventTime", "offset"])
    ip = truncate_ip_expr(pl.col("RemoteAddress")) if truncate_ips else None
    out = f.select(
        pl.col("EventTime").dt.epoch("ms").alias("ms"),
        pl.col("offset").cast(pl.Int64),
    ).with_columns(tracking_json(f, remote_address=ip).alias("json")).select("json", "ms", "offset")
    return out.with_columns(pl.col("json").str.len_bytes().cast(pl.Int64).alias("nbytes"))


def tracking_batches(
    records: pl.DataFrame,
    *,
    max_events: int = TRACK_BULK_MAX_EVENTS,
    max_bytes: int = TRACK_BULK_MAX_BYTES,
    max_span_ms: int | None = None,
    quarantine: list[Quarantined] | None = None,
) -> Iterator[Batch]:
    """TrackBulk batches: JSON arrays of at most ``max_events`` events and ``max_bytes``."""
    if not 1 <= max_events <= TRACK_BULK_MAX_EVENTS:
        raise BatchingError(f"max_events must be 1..{TRACK_BULK_MAX_EVENTS} (got {max_events})")
    seq = 0
    parts: list[str] = []
    ms: list[int] = []
    offs: list[int] = []
    size = 2

    def flush() -> Batch:
        nonlocal seq
        body = ("[" + ",".join(parts) + "]").encode()
        b = Batch(
            seq=seq, id=_batch_id(seq, body), body=body, visitors=0, events=len(parts),
            first_ms=min(ms), last_ms=max(ms), offset_min=min(offs), offset_max=max(offs),
            kind="tracking", records=None, parts=list(parts),
        )
        seq += 1
        return b

    for text, m, off, nb in records.select("json", "ms", "offset", "nbytes").iter_rows():
        if nb + 2 > max_bytes:
            if quarantine is not None:
                dev = orjson.loads(text).get("deviceId", "")
                quarantine.append(Quarantined(dev, None, 1, nb + 2, text, [off]))
            continue
        add = nb + (1 if parts else 0)
        if parts and (size + add > max_bytes or len(parts) >= max_events
                      or (max_span_ms is not None and m - ms[0] > max_span_ms)):
            yield flush()
            parts, ms, offs, size = [], [], [], 2
            add = nb
        parts.append(text)
        ms.append(m)
        offs.append(off)
        size += add
    if parts:
        yield flush()
