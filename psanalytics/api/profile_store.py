"""The ProfileStore facade: one connection, every endpoint's client behind small methods.

>>> import psanalytics as ps
>>> store = ps.connect()                      # no config: in-process emulator + sample data
>>> orders = store.events(ps.F.EventType == "order")
>>> store.export("export/", start="2024-03-01", end="2024-03-15")

The work lives in the rooms next door, as httpx splits its client:

- :mod:`psanalytics.api._paging`: the exact-paging engine (:class:`~psanalytics.api._paging.Pager`:
  windows, restarts, dedupe at boundaries) behind ``events``/``pages``/``count``/``plan``;
- :mod:`psanalytics.api.export`: ``export`` with its checkpoint;
- :mod:`psanalytics.api.preview`: KQL preview with typed params;
- :mod:`psanalytics.api.tracking` and :mod:`psanalytics.api.deletes`: the other endpoints;
- :mod:`psanalytics.wire`: the JSON the API speaks (page parsing, Tracking bodies, limits);
- :func:`psanalytics.connect` (``psanalytics/_connect.py``) picks a real URL or the emulator.

Everything is synchronous on worker threads (no event loop), so it works the same in a
script and inside Jupyter's running loop; ``aevents``/``acount``/``aexport`` are awaitable
wrappers for async code.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import httpx
import polars as pl

from psanalytics._config import progress_enabled
from psanalytics.api import deletes as _deletes
from psanalytics.api import export as _export
from psanalytics.api import preview as _preview
from psanalytics.api import profiles as _profiles
from psanalytics.api import tracking as _tracking
from psanalytics.api._paging import (
    ORDERBY,
    FilterLike,
    OrderError,
    Pager,
    TimeLike,
    WindowReport,
    settled_end,
)
from psanalytics.api.deletes import DeleteReport
from psanalytics.api.export import ExportReport
from psanalytics.api.http import (
    RequestStats,
    RetryPolicy,
    Secret,
    SendResult,
    build_client,
    mask_url,
)
from psanalytics.api.preview import PreviewTruncatedWarning, with_params
from psanalytics.api.tracking import TrackReport
from psanalytics.api.windows import RESULT_WINDOW, Window, WindowOverflowError
from psanalytics.errors import ArgumentError
from psanalytics.wire.api_json import parse_page  # its home moved to wire/; kept importable here
from psanalytics.wire.limits import MAX_BULK_EVENTS, MAX_EVENT_BYTES

__all__ = [
    "ProfileStore",
    "ExportReport",
    "WindowReport",
    "DeleteReport",
    "TrackReport",
    "OrderError",
    "WindowOverflowError",
    "PreviewTruncatedWarning",
    "with_params",
    "settled_end",
    "ORDERBY",
    "MAX_BULK_EVENTS",
    "MAX_EVENT_BYTES",
    "parse_page",
]


class ProfileStore:
    """A Profile Store connection. Make one with :func:`connect`.

    Options: ``transport`` (an httpx transport, e.g. the in-process emulator's),
    ``policy`` (:class:`~psanalytics.api.http.RetryPolicy`), ``timeout``, ``concurrency``
    (windows fetched at once, default 4), ``page_size`` (rows per request, at most 9,999),
    ``progress`` (tqdm bars on long work; None, the default, follows ``psanalytics.Config``,
    which shows them unless set off), ``auth`` (``"epi-single"`` or
    ``"subscription-key"``), ``tracking_url`` and ``tracking_key`` (the Tracking API's
    own host and key, as real deployments have them; default the query API's).
    """

    def __init__(
        self,
        url: str,
        api_key: str | Secret | None = None,
        *,
        scope: str = "default",
        transport: httpx.BaseTransport | None = None,
        policy: RetryPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
        concurrency: int = 4,
        page_size: int = RESULT_WINDOW,
        progress: bool | None = None,
        auth: str = "epi-single",
        tracking_key: str | Secret | None = None,
        tracking_url: str | None = None,
        emulator: Any = None,
    ) -> None:
        if not 1 <= page_size <= RESULT_WINDOW:
            raise ArgumentError(f"page_size must be between 1 and {RESULT_WINDOW}")
        if concurrency < 1:
            raise ArgumentError("concurrency must be at least 1")
        self.url = str(url).rstrip("/")
        self._key = api_key if isinstance(api_key, Secret) or api_key is None else Secret(api_key)
        tk = tracking_key if tracking_key is not None else api_key
        self._tracking_key = tk if isinstance(tk, Secret) or tk is None else Secret(tk)
        self.scope = scope
        self.policy = policy or RetryPolicy()
        self.emulator = emulator
        #: Cumulative request/retry counters of this connection.
        self.stats = RequestStats()
        # Enough pooled connections for every window worker (plus the planner's counters).
        limits = httpx.Limits(max_connections=max(16, 2 * concurrency),
                              max_keepalive_connections=max(16, 2 * concurrency))
        self._client = build_client(self.url, api_key=self._key, transport=transport,
                                    timeout=timeout, auth=auth, limits=limits)
        self.tracking_url = str(tracking_url).rstrip("/") if tracking_url else self.url
        if self._tracking_key == self._key and self.tracking_url == self.url:
            self._tracking_client = self._client
        else:
            self._tracking_client = build_client(self.tracking_url, api_key=self._tracking_key,
                                                 transport=transport, timeout=timeout, auth=auth)
        self._pager = Pager(self._client, self.url, policy=self.policy, stats=self.stats,
                            page_size=page_size, concurrency=concurrency, progress=progress)
        # api/v2.0/Profiles: the same engine over another resource (see api/profiles.py)
        self._profile_pager = Pager(self._client, self.url, policy=self.policy, stats=self.stats,
                                    page_size=page_size, concurrency=concurrency, progress=progress,
                                    resource=_profiles.PROFILES)

    # ------------------------------------------------------------------ basics


    # The paging settings live on the Pager; these keep them readable and settable here.
    @property
    def page_size(self) -> int:
        return self._pager.page_size

    @page_size.setter
    def page_size(self, value: int) -> None:
        self._pager.page_size = value

    @property
    def concurrency(self) -> int:
        return self._pager.concurrency

    @concurrency.setter
    def concurrency(self, value: int) -> None:
        self._pager.concurrency = value

    @property
    def progress(self) -> bool:
        """Whether this connection shows progress bars: its own setting, else
        ``psanalytics.Config``'s, else on."""
        return progress_enabled(self._pager.progress, default=True)

    @progress.setter
    def progress(self, value: bool | None) -> None:
        self._pager.progress = value

    # ------------------------------------------------------------------ basics

    def __repr__(self) -> str:
        key = "***" if self._key else "None"
        emu = ", emulator=True" if self.emulator is not None else ""
        return f"ProfileStore(url={mask_url(self.url)!r}, scope={self.scope!r}, api_key={key}{emu})"

    def close(self) -> None:
        """Close the connection pools."""
        self._pager.close()
        self._profile_pager.close()
        self._client.close()
        if self._tracking_client is not self._client:
            self._tracking_client.close()

    def __enter__(self) -> ProfileStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reads (the Pager)

    def count(self, filter: FilterLike = None, *, start: TimeLike | None = None,
              end: TimeLike | None = None, settle: Any = None) -> int:
        """How many events match ``filter`` in ``[start, end)`` (one request)."""
        return self._pager.count(filter, start=start, end=end, settle=settle)

    def plan(self, filter: FilterLike = None, *, start: TimeLike | None = None,
             end: TimeLike | None = None, settle: Any = None) -> list[Window]:
        """The windows a fetch would use (dry run): each holds at most 9,999 events.

        Costs only count requests. ``sum(w.count for w in plan)`` is the number of events
        a fetch would return now.
        """
        return self._pager.plan(filter, start=start, end=end, settle=settle)

    def events(
        self,
        filter: FilterLike = None,
        *,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        orderby: str | None = None,
        limit: int | None = None,
        progress: bool | None = None,
        concurrency: int | None = None,
        settle: Any = None,
    ) -> pl.DataFrame:
        """Every event matching ``filter`` with ``start <= EventTime < end``, exactly once.

        ``filter`` is a ``$filter`` string in the Profile Store dialect
        (``"EventType eq order and User.Email ne ''"``) or a builder expression
        (``F.EventType == "order"``). ``start``/``end`` are datetimes (naive = UTC), ISO
        text or int ns; open ends reach the first/last matching event. Rows come back in
        the canonical schema ordered by ``EventTime``, ``TrackId`` unless ``orderby``
        (``"Prop [asc|desc], ..."``) says otherwise; ``limit`` keeps the first rows.
        ``settle="5m"`` reads only what is at least that old (``end`` moves back to
        ``now - 5m``): for a store that is being written to right now.
        """
        return self._pager.events(filter, start=start, end=end, orderby=orderby, limit=limit,
                                  progress=progress, concurrency=concurrency, settle=settle)

    def pages(
        self,
        filter: FilterLike = None,
        *,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        settle: Any = None,
    ) -> Iterator[pl.DataFrame]:
        """Iterate the matching events window by window (each a canonical frame, in time
        order), holding one window in memory at a time. Together the frames are exactly
        what :meth:`events` returns."""
        return self._pager.pages(filter, start=start, end=end, settle=settle)

    def profiles(
        self,
        filter: FilterLike = None,
        *,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        orderby: str | None = None,
        limit: int | None = None,
        progress: bool | None = None,
        concurrency: int | None = None,
    ) -> pl.DataFrame:
        """Every Profile Store profile matching ``filter`` (``GET api/v2.0/Profiles``),
        exactly once, past the 10,000-row window (see :mod:`psanalytics.api.profiles`).

        ``filter``: profiles ``$filter`` text (``"DeviceIds eq <guid>"``,
        ``"Info.Email eq a@b.c"``, ``"Visits gt 3"``); ``start``/``end`` bound
        ``FirstSeen`` (half-open). Rows come in ``FirstSeen``, ``ProfileId`` order (those
        without ``FirstSeen`` last) unless ``orderby`` says otherwise; ``limit`` keeps the
        first rows. Columns: :data:`psanalytics.wire.profiles.PROFILE_SCHEMA` (``Info`` and
        ``Payload`` as JSON text, unknown keys in ``Extra``). Moving them to ODP:
        ``replay(events, to="odp", profiles=store.profiles())``.
        """
        for name, value in (("page_size", self.page_size), ("concurrency", self.concurrency)):
            setattr(self._profile_pager, name, value)
        self._profile_pager.progress = self._pager.progress
        return _profiles.fetch_profiles(self._profile_pager, filter, start=start, end=end,
                                        orderby=orderby, limit=limit, progress=progress,
                                        concurrency=concurrency)

    async def aevents(self, *args: Any, **kwargs: Any) -> pl.DataFrame:
        """``await store.aevents(...)``: :meth:`events` on a worker thread."""
        return await asyncio.to_thread(self.events, *args, **kwargs)

    async def acount(self, *args: Any, **kwargs: Any) -> int:
        """``await store.acount(...)``: :meth:`count` on a worker thread."""
        return await asyncio.to_thread(self.count, *args, **kwargs)

    async def aexport(self, *args: Any, **kwargs: Any) -> ExportReport:
        """``await store.aexport(...)``: :meth:`export` on a worker thread."""
        return await asyncio.to_thread(self.export, *args, **kwargs)

    # ------------------------------------------------------------------ export

    def export(
        self,
        path: str | os.PathLike[str],
        filter: FilterLike = None,
        *,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        resume: bool = True,
        settle: Any = None,
        progress: bool | None = None,
        concurrency: int | None = None,
        overwrite: bool = False,
        top_up: bool = False,
        look_back: Any = "1h",
        _after_window: Callable[[int], None] | None = None,
    ) -> ExportReport:
        """Write the matching events to ``path`` as Parquet, one file per window.

        See :func:`psanalytics.api.export.export` (layout, checkpoint, resume, what is
        deleted: only our own parts; ``overwrite=True`` writes into a non-empty folder;
        ``top_up=True`` with a later ``end`` fetches only what a finished export lacks,
        re-reading the last ``look_back`` for late events)."""
        return _export.export(self._pager, path, filter, start=start, end=end, resume=resume,
                              settle=settle, progress=progress, concurrency=concurrency,
                              overwrite=overwrite, top_up=top_up, look_back=look_back,
                              _after_window=_after_window)

    # ------------------------------------------------------------------ preview

    def preview(self, query: str, *, scope: str | None = None, validate: bool = True,
                params: Mapping[str, Any] | None = None) -> pl.DataFrame:
        """Run a KQL query on the API's preview endpoint (at most 1,000 rows).

        ``params`` are sent as typed ``let`` statements in front of the query (see
        :func:`~psanalytics.api.preview.with_params`); the query is validated locally
        first. See :func:`psanalytics.api.preview.preview`.
        """
        return _preview.preview(self._client, self.policy, self.stats, query,
                                scope=scope or self.scope, validate=validate, params=params)

    # ------------------------------------------------------------------ deletes

    def delete(self, scope: str, track_id: str) -> bool:
        """Delete one event. True when deleted, False when the API says it does not exist.

        Retries 500 and honours 429 ``Retry-After`` (the pending-deletion limit); other
        errors raise :class:`~psanalytics.api.http.ApiError`.
        """
        return _deletes.delete(self._client, self.policy, scope, track_id, [self.stats])

    def delete_many(self, events: pl.DataFrame | Iterable[str], *, scope: str | None = None,
                    concurrency: int | None = None, progress: bool | None = None) -> DeleteReport:
        """Delete many events (a frame with ``TrackId`` and optionally ``Scope``, or ids).

        Returns a :class:`DeleteReport` of what was deleted, what was not found and what
        failed (with the error), so nothing is lost if the pending-deletion limit is hit:
        once the server asks to wait longer than ``policy.max_retry_after`` the remaining
        ids are not sent and are listed as failed with that reason.
        """
        return _deletes.delete_many(
            self._client, self.policy, self.stats, events, scope=scope or self.scope,
            concurrency=concurrency or self.concurrency,
            progress=self.progress if progress is None else progress)

    # ------------------------------------------------------------------ tracking

    def track_batch(self, bodies: Sequence[Mapping[str, Any]]) -> SendResult:
        """One ``POST api/v1.0/TrackBulk`` of at most 100 Tracking API bodies (camelCase
        dicts, each at most 256 KB encoded), with retries. Returns a SendResult."""
        return _tracking.track_batch(self._tracking_client, self.policy, self.stats, bodies)

    def track(self, events: pl.DataFrame | Sequence[Mapping[str, Any]], *,
              progress: bool | None = None) -> TrackReport:
        """Send events to the Tracking API in batches of at most 100 events and 256 KB.

        ``events`` is a canonical frame (converted to camelCase Tracking bodies by
        :func:`psanalytics.wire.tracking.tracking_bodies`) or a list of Tracking bodies
        as dicts.
        """
        return _tracking.track(self._tracking_client, self.policy, self.stats, events,
                               progress=self.progress if progress is None else progress)
