"""Journeys past memory: funnels and transitions over files or a LazyFrame, device bucket by
device bucket (:func:`psanalytics.sessions.device_buckets`), with the very functions the
in-memory path runs on each bucket.

A journey (a session, a device, or a stitched user) never spans two buckets: buckets are cut
by ``DeviceId``, or, for ``within="user"``, by the user each device is stitched to (the
stitching rule looks at one device's own events, so :func:`psanalytics.stitch` on the whole
input and on a bucket agree). Inside a bucket rows keep the input order, so ties in time
are decided as in memory. What adds up across buckets:

* a funnel's per-journey credited attempts (one row per journey that entered the funnel):
  they are concatenated and aggregated once, so counts, quantiles and means are computed
  from exactly the rows the in-memory funnel sees, in the same (journey) order;
* transitions' pair counts: summed, then the probabilities are computed once.

The same per-bucket pieces run on Spark executors (:mod:`psanalytics.spark`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import polars as pl

from psanalytics.journeys._common import JourneyError

#: Column the buckets of ``within="user"`` are cut by.
USER_KEY = "_psa_user"
_ROW = "__psa_row"

Source = pl.DataFrame | pl.LazyFrame | str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def wants_buckets(events: object, memory: object) -> bool:
    """Files (a path, folder, glob or list of them), or any input with ``memory=``."""
    if memory is not None:
        return True
    if isinstance(events, str | os.PathLike):
        return True
    return (
        isinstance(events, list | tuple)
        and bool(events)
        and all(isinstance(e, str | os.PathLike) for e in events)
    )


def _lazy(events: Source) -> pl.LazyFrame:
    if isinstance(events, pl.LazyFrame):
        return events
    if isinstance(events, pl.DataFrame):
        return events.lazy()
    from psanalytics.exports import scan_events

    return scan_events(events)  # type: ignore[arg-type]


def user_key(lf: pl.LazyFrame) -> pl.LazyFrame:
    """``lf`` with :data:`USER_KEY`: the e-mail its device is stitched to, else
    ``"device:" + DeviceId`` (what ``within="user"`` calls one journey)."""
    from psanalytics.sessions import stitch

    m = stitch(lf).select(pl.col("device_id").alias("DeviceId"), pl.col("user_email"))
    return (
        lf.join(m.lazy(), on="DeviceId", how="left", maintain_order="left")
        .with_columns(
            pl.coalesce(pl.col("user_email"), pl.lit("device:") + pl.col("DeviceId")).alias(
                USER_KEY
            )
        )
        .drop("user_email")
    )


def bucket_key(schema: pl.Schema, within: str) -> str:
    """The column buckets are cut by so that no journey spans two buckets."""
    if within == "user":
        if "DeviceId" not in schema or "User" not in schema:
            raise JourneyError("within='user' needs the DeviceId and User columns")
        return USER_KEY
    if within in ("session", "device"):
        if "DeviceId" in schema:
            return "DeviceId"
        if within == "session" and "session_key" in schema:
            return "session_key"
        raise JourneyError(f"within={within!r} needs the DeviceId column")
    raise JourneyError(f"within must be 'session', 'device' or 'user', got {within!r}")


@contextmanager
def journey_buckets(
    events: Source, within: str, memory: str | int | None
) -> Iterator[tuple[pl.Schema, Iterator[pl.DataFrame]]]:
    """The input's schema and its buckets (each a frame with the input's own columns, rows in
    input order), no journey split between two buckets."""
    from psanalytics.sessions import device_buckets

    lf = _lazy(events)
    schema = lf.collect_schema()
    key = bucket_key(schema, within)
    if key == USER_KEY:
        lf = user_key(lf)
    drop = [_ROW, *([USER_KEY] if key == USER_KEY else [])]
    with device_buckets(lf, key=key, memory=memory) as buckets:
        yield schema, (b.drop(drop) for b in buckets)


def per_bucket(
    events: Source,
    within: str,
    memory: str | int | None,
    fn: Callable[[pl.DataFrame], pl.DataFrame],
) -> tuple[pl.Schema, list[pl.DataFrame]]:
    """``fn`` on every bucket (and once on the empty frame, which fixes the result's schema
    when the input has no rows)."""
    with journey_buckets(events, within, memory) as (schema, buckets):
        parts = [fn(b) for b in buckets]
    if not parts:
        parts = [fn(pl.DataFrame(schema=schema))]
    return schema, parts


def bucketed_credited(
    events: Source,
    within: str,
    memory: str | int | None,
    spec_of: Callable[[pl.Schema], Any],
    journeys: bool,
) -> tuple[pl.DataFrame, Any]:
    """A funnel's credited attempts (one row per journey that entered it) over all buckets,
    and its spec (built from the input's schema by ``spec_of``)."""
    from psanalytics.journeys._attempts import credited

    spec = spec_of(_lazy(events).collect_schema())
    _, parts = per_bucket(
        events, within, memory, lambda b: credited(b, spec, within, journeys=journeys)
    )
    return pl.concat(parts, how="vertical_relaxed", rechunk=True), spec


def summed_transitions(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """Pair counts of several buckets' ``transitions`` added up (probability and order are
    computed again by the caller)."""
    return (
        pl.concat([p.select("from_step", "to_step", "count") for p in parts])
        .group_by("from_step", "to_step")
        .agg(pl.col("count").sum().cast(pl.UInt32))
    )
