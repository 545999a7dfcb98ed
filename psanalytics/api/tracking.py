"""Tracking API client: ``POST api/v1.0/TrackBulk`` in batches of at most 100 events and 256 KB."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import polars as pl

from psanalytics.api._paging import _progress
from psanalytics.api.http import RequestStats, RetryPolicy, SendResult, send_with_retries
from psanalytics.errors import ArgumentError
from psanalytics.wire.limits import MAX_BULK_EVENTS, MAX_EVENT_BYTES
from psanalytics.wire.tracking import tracking_bodies

__all__ = ["TrackReport", "track", "track_batch", "tracking_bodies"]


@dataclass
class TrackReport:
    """Outcome of :meth:`ProfileStore.track`: events and batches sent, requests, retries."""

    events: int
    batches: int
    requests: int
    retries: int
    elapsed_s: float



def track_batch(client: httpx.Client, policy: RetryPolicy, stats: RequestStats,
                bodies: Sequence[Mapping[str, Any]]) -> SendResult:
    """One ``POST api/v1.0/TrackBulk`` of at most 100 Tracking API bodies (camelCase
    dicts, each at most 256 KB encoded), with retries. Returns a SendResult."""
    if len(bodies) > MAX_BULK_EVENTS:
        raise ArgumentError(f"TrackBulk takes at most {MAX_BULK_EVENTS} events, got {len(bodies)}")
    encoded = [orjson.dumps(b) for b in bodies]
    for i, e in enumerate(encoded):
        if len(e) > MAX_EVENT_BYTES:
            raise ArgumentError(f"event {i} is {len(e):,} bytes encoded, over the Tracking API's "
                             f"{MAX_EVENT_BYTES:,}-byte limit per event")
    data = b"[" + b",".join(encoded) + b"]"
    t0 = time.perf_counter()
    resp = send_with_retries(client, "POST", "/api/v1.0/TrackBulk", content=data,
                             headers={"Content-Type": "application/json"}, policy=policy,
                             stats=stats)
    attempts = int(resp.extensions.get("psanalytics_attempts", 1))
    return SendResult(status=resp.status_code, attempts=attempts, retries=attempts - 1,
                      elapsed_s=time.perf_counter() - t0)


def track(client: httpx.Client, policy: RetryPolicy, stats: RequestStats,
          events: pl.DataFrame | Sequence[Mapping[str, Any]], *, progress: bool) -> TrackReport:
    """Send events to the Tracking API in batches of at most 100 events and 256 KB.

    ``events`` is a canonical frame (converted to camelCase Tracking bodies by
    :func:`psanalytics.wire.tracking.tracking_bodies`, the one Tracking encoder: trackId
    and sessionId included) or a list of Tracking bodies as dicts.
    """
    bodies = tracking_bodies(events) if isinstance(events, pl.DataFrame) else list(events)
    t0 = time.perf_counter()
    before_r, before_q = stats.retries, stats.requests
    batches = list(_batches(bodies))
    bar = _progress(len(bodies), "track", progress)
    try:
        for b in batches:
            track_batch(client, policy, stats, b)
            bar.update(len(b))
    finally:
        bar.close()
    return TrackReport(events=len(bodies), batches=len(batches),
                       requests=stats.requests - before_q,
                       retries=stats.retries - before_r,
                       elapsed_s=time.perf_counter() - t0)



def _batches(bodies: Sequence[Mapping[str, Any]]) -> Iterator[list[Mapping[str, Any]]]:
    """Split into batches of <= 100 events whose encoded array stays <= 256 KB."""
    batch: list[Mapping[str, Any]] = []
    size = 2
    for i, b in enumerate(bodies):
        n = len(orjson.dumps(b))
        if n + 2 > MAX_EVENT_BYTES:
            raise ArgumentError(f"event {i} is {n:,} bytes encoded, over the Tracking API's "
                             f"{MAX_EVENT_BYTES:,}-byte limit")
        if batch and (len(batch) >= MAX_BULK_EVENTS or size + n + 1 > MAX_EVENT_BYTES):
            yield batch
            batch, size = [], 2
        batch.append(b)
        size += n + 1
    if batch:
        yield batch
