"""Deletes: ``DELETE api/v2.0/TrackEvents/{scope}/{id}``, one or many (bounded, reported)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import polars as pl

from psanalytics.api._paging import PREFIX_V2, _progress, _Tee
from psanalytics.api.http import (
    ApiError,
    RequestStats,
    RetryAfterTooLong,
    RetryPolicy,
    send_with_retries,
)
from psanalytics.errors import ArgumentError

__all__ = ["DeleteReport", "delete", "delete_many"]


@dataclass
class DeleteReport:
    """Outcome of :meth:`ProfileStore.delete_many`: ids deleted, ids not found, failures."""

    deleted: list[tuple[str, str]] = field(default_factory=list)
    not_found: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    requests: int = 0
    retries: int = 0

    def __repr__(self) -> str:
        return (
            f"DeleteReport(deleted={len(self.deleted)}, not_found={len(self.not_found)}, "
            f"failed={len(self.failed)}, requests={self.requests}, retries={self.retries})"
        )



def _seg(value: str) -> str:
    from urllib.parse import quote

    return quote(str(value), safe="")



def delete(client: httpx.Client, policy: RetryPolicy, scope: str, track_id: str,
           stats: list[RequestStats]) -> bool:
    """Delete one event: True when deleted, False when the API answers 404."""
    url = f"{PREFIX_V2}/{_seg(scope)}/{_seg(track_id)}"
    try:
        send_with_retries(client, "DELETE", url, policy=policy, stats=_Tee(stats))
    except ApiError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def delete_many(client: httpx.Client, policy: RetryPolicy, conn_stats: RequestStats,
                events: pl.DataFrame | Iterable[str], *, scope: str, concurrency: int,
                progress: bool) -> DeleteReport:
    """Delete many events; see :meth:`ProfileStore.delete_many
    <psanalytics.api.profile_store.ProfileStore.delete_many>`."""
    pairs: list[tuple[str, str]]
    if isinstance(events, pl.DataFrame):
        if "TrackId" not in events.columns:
            raise ArgumentError("delete_many needs a TrackId column")
        ids = events.get_column("TrackId").cast(pl.String).to_list()
        scopes = (events.get_column("Scope").cast(pl.String).to_list() if "Scope" in events.columns
                  else [None] * len(ids))
        pairs = [(s or scope, i) for s, i in zip(scopes, ids, strict=True)]
    else:
        pairs = [(scope, str(i)) for i in events]
    report = DeleteReport()
    stats = RequestStats()
    lock = threading.Lock()
    bar = _progress(len(pairs), "delete", progress, "ev")

    stop: list[str] = []

    def work(pair: tuple[str, str]) -> None:
        sc, tid = pair
        if stop:
            with lock:
                report.failed.append((sc, tid, f"not sent: {stop[0]}"))
            bar.update(1)
            return
        try:
            ok = delete(client, policy, sc, tid, [stats, conn_stats])
        except RetryAfterTooLong as exc:
            # The pending-deletion limit: the server wants hours. Stop asking.
            with lock:
                stop.append(str(exc))
                report.failed.append((sc, tid, str(exc)))
        except ApiError as exc:
            with lock:
                report.failed.append((sc, tid, str(exc)))
        else:
            with lock:
                (report.deleted if ok else report.not_found).append((sc, tid))
        bar.update(1)

    try:
        with ThreadPoolExecutor(max_workers=min(concurrency, max(1, len(pairs)))) as ex:
            list(ex.map(work, pairs))
    finally:
        bar.close()
    report.requests, report.retries = stats.requests, stats.retries
    return report
