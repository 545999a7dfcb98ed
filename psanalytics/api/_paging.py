"""The exact-paging engine: every matching event once, past the 10,000-row window.

:class:`Pager` asks the server how many events match (``total`` of a one-row query),
plans half-open ``[t0, t1)`` windows on ``EventTime`` that each hold at most 9,999 of
them (:mod:`psanalytics.api.windows`), and pages each window with ``$skip + $top <= 9999``
under an explicit ``$orderby=EventTime asc,TrackId asc``. Windows run concurrently
(bounded), pages within a window sequentially. It checks the order of what comes back,
restarts a window whose ``total`` changed while paging, splits a window that grew past
the limit, and drops duplicate TrackIds at restart boundaries. One instant holding more
than 9,999 matching events raises :class:`~psanalytics.api.windows.WindowOverflowError`
instead of truncating.

:class:`~psanalytics.api.profile_store.ProfileStore` is the facade users hold; it owns
one Pager (which owns the query client) and delegates ``events``/``pages``/``count``/
``plan`` to it; :mod:`psanalytics.api.export` drives it window by window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import polars as pl

from psanalytics import schema
from psanalytics._config import progress_enabled
from psanalytics._time import TICK_NS, ceil_tick, floor_tick, format_ns, parse_duration, to_ns
from psanalytics.api.http import (
    ApiError,
    RequestStats,
    RetryPolicy,
    send_json,
)
from psanalytics.api.windows import RESULT_WINDOW, Window, plan_windows, window_filter
from psanalytics.errors import ArgumentError, PsaError
from psanalytics.query.odata import ODataError, parse_orderby
from psanalytics.wire.api_json import parse_page, peek_total

__all__ = ["Pager", "WindowReport", "OrderError", "ORDERBY", "PROBE_PAGE", "settled_end"]

#: The order the client always asks for (and checks): a total order, so offsets are stable.
ORDERBY = "EventTime asc,TrackId asc"

TimeLike = datetime | str | int
FilterLike = Any  # str, or a psanalytics.query.odata filter object with .render()

PREFIX_V2 = "/api/v2.0/TrackEvents"

#: Rows asked for by the first request of a fetch. A range that fits the result window
#: then comes in pages this size, each parsed while the next is fetched (on a fast link
#: this halves the time of a 10,000-event fetch; on a slow one it costs two round trips).
PROBE_PAGE = 3_333


class OrderError(PsaError):
    """The server returned rows out of ``EventTime`` order, so paging cannot be trusted."""


@dataclass
class WindowReport:
    """What happened to one window: rows, distinct ids, time span, requests, retries."""

    key: str
    start: datetime
    end: datetime
    planned: int | None
    rows: int = 0
    distinct_ids: int = 0
    min_time: datetime | None = None
    max_time: datetime | None = None
    requests: int = 0
    retries: int = 0
    restarts: int = 0
    duplicates_dropped: int = 0
    file: str | None = None
    resumed: bool = False


def _decode_page(resp: httpx.Response) -> tuple[pl.DataFrame, int]:
    # Looked up at call time, so a wrapper installed on this module's parse_page (the
    # loader benchmark's parse timer) sees every page.
    return parse_page(resp.content)


class _CutOffBody(Exception):
    """A page body that plainly ends mid-way: ``send_json`` retries it as a bad body."""


def _body(resp: httpx.Response) -> bytes:
    """The raw page body, parsed later (while the next page is in flight). A body that is
    plainly cut off raises here, so it is retried like a dropped connection."""
    body = resp.content
    if body.rstrip()[-1:] not in (b"}", b"]"):
        raise _CutOffBody("response body ends mid-way")
    return body


def _filter_text(filter: FilterLike) -> str | None:
    if filter is None:
        return None
    if isinstance(filter, str):
        return filter.strip() or None
    render = getattr(filter, "render", None)
    if callable(render):
        return str(render())
    raise TypeError(
        f"filter must be a $filter string or a psanalytics.F expression, not {type(filter).__name__}"
    )


def _client_order(frame: pl.DataFrame, orderby: str) -> pl.DataFrame:
    """``frame`` sorted as ``orderby`` says (stable; any column, ``User.Email``-style
    struct fields); the terms are read by :func:`~psanalytics.query.odata.parse_orderby`."""
    cols: list[pl.Expr] = []
    desc: list[bool] = []
    for name, descending in parse_orderby(orderby, server=False):
        head, *rest = name.split(".")
        if head not in frame.columns:
            raise ArgumentError(
                f"orderby: no column {name!r}; columns are {', '.join(frame.columns)}"
            )
        e = pl.col(head)
        for r in rest:
            e = e.struct.field(r)
        cols.append(e)
        desc.append(descending)
    return frame.sort(cols, descending=desc, maintain_order=True, nulls_last=True)


def _server_orderby(orderby: str) -> str | None:
    """``orderby`` as a ``$orderby`` with ``EventTime asc,TrackId asc`` tie-breakers, or
    None when a key is not one the server orders by (the client sorts those itself).
    Text that cannot be read raises the same :class:`ODataError` as the client sort."""
    parse_orderby(orderby, server=False)  # unreadable text: the error, not a fallback
    try:
        keys = parse_orderby(orderby)
    except ODataError:
        return None
    terms = [f"{col} {'desc' if d else 'asc'}" for col, d in keys]
    names = {col for col, _ in keys}
    terms += [f"{c} asc" for c in ("EventTime", "TrackId") if c not in names]
    return ",".join(terms)


def _dedupe(frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Drop repeated TrackIds (keep the first); events without an id are kept."""
    if frame.height == 0:
        return frame, 0
    ids = frame.get_column("TrackId")
    # No two equal 64-bit hashes means no two equal ids: a 10x cheaper check than
    # is_duplicated on the strings (~25 ms vs ~250 ms per million rows, serial at the end
    # of events()). Any repeated hash (a real duplicate, a collision, several "") takes
    # the exact path below.
    if ids.hash().n_unique() == frame.height:
        return frame, 0
    dup = ids.is_duplicated() & (ids != "")
    if not dup.any():
        return frame, 0
    keep = frame.select(
        (pl.col("TrackId").is_first_distinct() | (pl.col("TrackId") == "")).alias("keep")
    ).to_series()
    out = frame.filter(keep)
    return out, frame.height - out.height



def _progress(total: int | None, desc: str, enabled: bool | None, unit: str = "ev") -> Any:
    """A tqdm bar; ``enabled=None`` follows ``psanalytics.Config`` (on by default)."""
    from tqdm.auto import tqdm

    enabled = progress_enabled(enabled, default=True)
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=not enabled,
                leave=True, dynamic_ncols=True)



class _Tee:
    """Record into several RequestStats at once."""

    def __init__(self, targets: list[RequestStats]) -> None:
        self.targets = targets

    def _record(self, **kw: Any) -> None:
        for t in self.targets:
            t._record(**kw)


def _check_order(frame: pl.DataFrame, last_time: Any, text: str | None, skip: int) -> None:
    times = frame.get_column("EventTime")
    if times.null_count():
        # Events without EventTime cannot be paged by time (they fall outside every
        # window): a clear error naming one, never a silent loss.
        tid = frame.filter(pl.col("EventTime").is_null()).get_column("TrackId").item(0)
        raise OrderError(
            f"GET {PREFIX_V2} $filter={text} $skip={skip}: the server returned an event without "
            f"EventTime (TrackId {tid!r}); psanalytics pages by EventTime and cannot fetch such "
            "events exactly. Filter them out (e.g. a range with start= and end=) or fix the data.")
    if not times.is_sorted() or (last_time is not None and times[0] < last_time):
        raise OrderError(
            f"GET {PREFIX_V2} $filter={text} $skip={skip}: rows came back out of EventTime "
            f"order although $orderby={ORDERBY} was sent; paging cannot be exact"
        )



def settled_end(end: TimeLike | None, settle: Any, now_ns: int | None = None) -> TimeLike | None:
    """``end`` moved back to ``now - settle`` when it is later (or open): only windows the
    server has finished writing are read. ``settle`` is ``"5m"``, ``"1h"``, a timedelta or
    seconds; None keeps ``end``."""
    if settle is None:
        return end
    lag = parse_duration(settle, name="settle")
    if lag <= 0:
        raise ArgumentError(f"settle must be positive, got {settle!r}")
    cutoff = floor_tick((time.time_ns() if now_ns is None else now_ns) - lag)
    if end is None:
        return cutoff
    return min(to_ns(end), cutoff)


def _range_filter(ftext: str | None, start: TimeLike | None, end: TimeLike | None) -> str | None:
    """``(ftext) and EventTime ge <start> and EventTime lt <end>`` (open ends left out)."""
    parts = []
    if start is not None:
        lo = to_ns(start)
        parts.append(f"EventTime ge {format_ns(floor_tick(lo))}")
    if end is not None:
        hi = to_ns(end)
        parts.append(f"EventTime lt {format_ns(ceil_tick(hi))}")
    if not parts:
        return ftext
    rng = " and ".join(parts)
    return rng if not ftext else f"({ftext}) and {rng}"



# --------------------------------------------------------------------------- the engine


class Pager:
    """The paging engine over one query client: plans windows and fetches them exactly.

    ``client`` is the httpx client for the query API (built by
    :func:`psanalytics.api.http.build_client`); ``stats`` the connection's cumulative
    counters. ``page_size``, ``concurrency`` and ``progress`` are the connection's
    defaults (the facade may change them after construction).
    """

    def __init__(self, client: httpx.Client, url: str, *, policy: RetryPolicy,
                 stats: RequestStats, page_size: int = RESULT_WINDOW, concurrency: int = 4,
                 progress: bool | None = None) -> None:
        self._client = client
        self.url = url
        self.policy = policy
        self.stats = stats
        self.page_size = page_size
        self.concurrency = concurrency
        self.progress = progress
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def close(self) -> None:
        """Stop the page-parsing workers."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    # ------------------------------------------------------------------ low level

    def _get(self, ftext: str | None, skip: int, top: int, stats: RequestStats | None,
             orderby: str = ORDERBY) -> tuple[pl.DataFrame, int]:
        return self._send_page(ftext, skip, top, stats, orderby, _decode_page)

    def _get_body(self, ftext: str | None, skip: int, top: int, stats: RequestStats | None
                  ) -> bytes:
        """One page's raw body (retried like :meth:`_get`), for :meth:`_page_through`."""
        return self._send_page(ftext, skip, top, stats, ORDERBY, _body)

    def _send_page(self, ftext: str | None, skip: int, top: int, stats: RequestStats | None,
                   orderby: str, decode: Callable[[httpx.Response], Any]) -> Any:
        if skip + top > RESULT_WINDOW:  # a guard no caller should ever trip
            raise ArgumentError(f"refusing to send $skip={skip} $top={top}: over the result window")
        params = {"$orderby": orderby, "$skip": str(skip), "$top": str(top)}
        if ftext:
            params["$filter"] = ftext
        stats_list = [s for s in (stats, self.stats) if s is not None]
        _resp, decoded = send_json(self._client, "GET", PREFIX_V2, params=params,
                                   policy=self.policy, decode=decode, stats=_Tee(stats_list))
        return decoded

    def _prefetcher(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.concurrency + 1,
                                                thread_name_prefix="psanalytics-page")
            return self._pool

    def _page_through(self, text: str | None, stats: RequestStats, top: int | None = None
                      ) -> tuple[list[pl.DataFrame], int, int, str]:
        """Every page of one query whose total fits the result window, in order.

        Requests stay sequential (one in flight per query), but each page is parsed on a
        worker while the next one is asked for: the request sequence follows from the
        ``total`` read off the first body (``$skip`` advancing by full pages), and every
        parsed page is then checked against it (same total, full pages, time order).

        Returns ``(frames, total, rows, status)``: status ``"ok"``; ``"changed"`` (the
        total moved between pages, or a short page came before it: restart);
        ``"big"`` (the first page's total is over the window: ``frames`` holds just
        that page).
        """
        top0 = min(top or self.page_size, RESULT_WINDOW)
        pool = self._prefetcher()
        jobs: list[tuple[int, int, Any]] = []
        skip, size = 0, top0
        while True:
            body = self._get_body(text, skip, size, stats)
            job = pool.submit(self._parse_body, body, text, skip, size, stats)
            jobs.append((skip, size, job))
            total = peek_total(body)
            if total is None:  # not plainly there: parse this page to know
                total = job.result()[1]
            nxt = skip + size
            if total > RESULT_WINDOW or nxt >= total or nxt >= RESULT_WINDOW:
                break
            skip, size = nxt, min(top0, RESULT_WINDOW - nxt)
        frames: list[pl.DataFrame] = []
        rows = 0
        total0: int | None = None
        last_time = None
        status = "ok"
        for i, (skip, size, job) in enumerate(jobs):
            frame, total = job.result()
            if total0 is None:
                total0 = total
                if total > RESULT_WINDOW:
                    return [frame], total, frame.height, "big"
            if total != total0 or (frame.height < size and i < len(jobs) - 1):
                status = "changed"  # rows moved while paging: offsets shifted
                break
            if frame.height:
                _check_order(frame, last_time, text, skip)
                last_time = frame.get_column("EventTime")[-1]
            frames.append(frame)
            rows += frame.height
        if status == "ok" and rows != total0:
            status = "changed"  # a short page before the announced total: data moved
        for _skip, _size, job in jobs:
            job.cancel()
        return frames, int(total0 or 0), rows, status

    def _parse_body(self, body: bytes, text: str | None, skip: int, top: int,
                    stats: RequestStats) -> tuple[pl.DataFrame, int]:
        try:
            return parse_page(body)
        except ValueError:
            # Not JSON after all (cut off inside): fetch again, parsing as it comes.
            stats.note_retry()
            self.stats.note_retry()
            return self._get(text, skip, top, None)

    def _count_range(self, ftext: str | None, lo: int | None, hi: int | None,
                     stats: RequestStats | None = None) -> int:
        text = ftext if lo is None else window_filter(ftext, lo, hi)  # type: ignore[arg-type]
        return self._get(text, 0, 1, stats)[1]

    def _check_times(self, frame: pl.DataFrame, ftext: str | None) -> None:
        if frame.get_column("EventTime").null_count():
            _check_order(frame, None, ftext, 0)

    def _resolve_range(self, ftext: str | None, start: TimeLike | None, end: TimeLike | None,
                       stats: RequestStats | None, probe_top: int = 1
                       ) -> tuple[int, int, int, pl.DataFrame | None] | None:
        """(lo, hi, total, everything) for the range, probing the first/last event when open.

        The first probe asks for ``probe_top`` rows; when they are all there is,
        ``everything`` is that frame (no further request needed), else None.
        """
        lo = None if start is None else to_ns(start)
        hi = None if end is None else to_ns(end)
        if lo is not None:
            lo = floor_tick(lo)
        if hi is not None:
            hi = ceil_tick(hi)
        if lo is not None and hi is not None and hi <= lo:
            raise ArgumentError(f"end ({format_ns(hi)}) must be after start ({format_ns(lo)})")
        bounded = _range_filter(ftext, lo, hi)
        if probe_top >= self.page_size:
            # Page through at once when it all fits the window (pipelined, no planning).
            frames, total, _rows, status = self._page_through(
                bounded, stats or RequestStats(), top=min(self.page_size, PROBE_PAGE))
            if status == "ok" and total:
                first = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
                if len(frames) > 1:
                    unique, dropped = _dedupe(first)
                    if dropped and unique.height < total:
                        # The server's order of ties is not stable across pages: take
                        # it in one request instead (as a window fetch does).
                        first, total = self._get(bounded, 0, RESULT_WINDOW, stats)
            elif frames:
                first = frames[0]
            else:
                first, total = self._get(bounded, 0, probe_top, stats)
        else:
            first, total = self._get(bounded, 0, probe_top, stats)
        if total == 0 or first.height == 0:
            return None
        self._check_times(first, bounded)
        if lo is None:
            lo = to_ns(first.get_column("EventTime").dt.epoch("ns").item(0))
        if first.height >= total and total <= RESULT_WINDOW:
            _check_order(first, None, bounded, 0)
            if hi is None:
                hi = int(first.get_column("EventTime").dt.epoch("ns").item(-1)) + TICK_NS
            return lo, hi, total, first
        if hi is None:
            last, _ = self._get(bounded, 0, 1, stats, orderby="EventTime desc,TrackId desc")
            if last.height == 0:
                return None
            self._check_times(last, bounded)
            hi = int(last.get_column("EventTime").dt.epoch("ns").item()) + TICK_NS
        return lo, hi, total, None

    def plan(self, filter: FilterLike = None, *, start: TimeLike | None = None,
             end: TimeLike | None = None, settle: Any = None) -> list[Window]:
        """The windows a fetch would use (dry run): each holds at most 9,999 events.

        Costs only count requests. ``sum(w.count for w in plan)`` is the number of events
        a fetch would return now.
        """
        return self._plan(_filter_text(filter), start, settled_end(end, settle), None)[0]

    def _plan(self, ftext: str | None, start: TimeLike | None, end: TimeLike | None,
              stats: RequestStats | None, probe_top: int = 1,
              overflow: list[Window] | None = None,
              ) -> tuple[list[Window], pl.DataFrame | None]:
        """Planned windows (empty ones dropped); with ``probe_top`` > 1 a range small enough
        to come back whole in the first probe is returned as the frame instead.
        ``overflow``: collect overfull instants there instead of raising."""
        rng = self._resolve_range(ftext, start, end, stats, probe_top)
        if rng is None:
            return [], None
        lo, hi, total, everything = rng
        if everything is not None:
            return [Window(lo, hi, total)], everything
        windows = plan_windows(lo, hi, lambda a, b: self._count_range(ftext, a, b, stats),
                               total=total, count_many=self._counter(ftext, stats),
                               overflow=overflow)
        return [w for w in windows if w.count], None

    def _counter(self, ftext: str | None, stats: RequestStats | None
                 ) -> Callable[[list[tuple[int, int]]], list[int]]:
        """Count several ranges concurrently (bounded by ``concurrency``)."""

        def count_many(spans: list[tuple[int, int]]) -> list[int]:
            if len(spans) <= 1 or self.concurrency <= 1:
                return [self._count_range(ftext, a, b, stats) for a, b in spans]
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(spans)),
                                    thread_name_prefix="psanalytics-count") as ex:
                return list(ex.map(lambda ab: self._count_range(ftext, ab[0], ab[1], stats), spans))

        return count_many

    # ------------------------------------------------------------------ windows

    def _fetch_window(self, ftext: str | None, w: Window, rep: WindowReport,
                      depth: int = 0) -> pl.DataFrame:
        """All events of one window, exactly once (pages sequential)."""
        stats = RequestStats()
        try:
            return self._fetch_window_inner(ftext, w, rep, stats, depth)
        finally:
            rep.requests += stats.requests
            rep.retries += stats.retries

    def _fetch_window_inner(self, ftext: str | None, w: Window, rep: WindowReport,
                            stats: RequestStats, depth: int) -> pl.DataFrame:
        text = w.filter(ftext)
        for _restart in range(5):
            frames, total0, _rows, status = self._page_through(text, stats)
            if status == "big":
                # The window grew past the limit since it was planned: split it now.
                return self._fetch_split(ftext, w, total0, rep, stats, depth)
            if status == "ok":
                break
            rep.restarts += 1
        else:
            raise ApiError(
                f"GET {PREFIX_V2} $filter={text}: the window's total kept changing while "
                "paging (5 restarts); the data is being written to right now. Retry later or "
                "pass an end time in the past.",
                method="GET", url=self.url + PREFIX_V2,
            )
        out = pl.concat(frames, how="vertical") if frames else schema.empty_frame()
        out, dropped = _dedupe(out)
        rep.duplicates_dropped += dropped
        if dropped and len(frames) > 1 and total0 is not None and out.height < total0:
            # Rows repeated across page boundaries and others went missing: the server's
            # order of ties is not stable. Take the window in one request instead.
            frame, total = self._get(text, 0, RESULT_WINDOW, stats)
            if total > RESULT_WINDOW:
                return self._fetch_split(ftext, w, total, rep, stats, depth)
            _check_order(frame, None, text, 0)
            out, dropped = _dedupe(frame)
            rep.duplicates_dropped += dropped
            rep.restarts += 1
        return out

    def _fetch_split(self, ftext: str | None, w: Window, total: int, rep: WindowReport,
                     stats: RequestStats, depth: int) -> pl.DataFrame:
        # Counted sequentially: this runs inside a window worker already (no nested pools).
        subs = plan_windows(w.start, w.end, lambda a, b: self._count_range(ftext, a, b, stats),
                            total=total)
        frames = []
        for s in subs:
            if s.count:
                frames.append(self._fetch_window_inner(ftext, s, rep, stats, depth + 1))
        rep.restarts += 1
        out = pl.concat(frames, how="vertical") if frames else schema.empty_frame()
        out, dropped = _dedupe(out)
        rep.duplicates_dropped += dropped
        return out

    def _run_windows(
        self,
        ftext: str | None,
        windows: Sequence[Window],
        *,
        on_done: Callable[[int, Window, pl.DataFrame, WindowReport], None] | None = None,
        progress: bool | None = None,
        concurrency: int | None = None,
        desc: str = "events",
        total_events: int | None = None,
    ) -> list[WindowReport]:
        """Fetch windows on a bounded thread pool; ``on_done`` is called per window (in a
        worker thread, under a lock) with the frame."""
        reports = [
            WindowReport(key=w.key, start=w.start_time, end=w.end_time, planned=w.count)
            for w in windows
        ]
        if not windows:
            return reports
        bar = _progress(total_events if total_events is not None else sum(w.count or 0 for w in windows),
                        desc, self.progress if progress is None else progress)
        lock = threading.Lock()
        done = [0]

        def work(i: int) -> None:
            w = windows[i]
            frame = self._fetch_window(ftext, w, reports[i])
            rep = reports[i]
            rep.rows = frame.height
            if frame.height:
                rep.distinct_ids = frame.get_column("TrackId").n_unique()
                rep.min_time = frame.get_column("EventTime").min()  # type: ignore[assignment]
                rep.max_time = frame.get_column("EventTime").max()  # type: ignore[assignment]
            with lock:
                if on_done is not None:
                    on_done(i, w, frame, rep)
                done[0] += 1
                bar.update(frame.height)
                bar.set_postfix_str(f"windows {done[0]}/{len(windows)}, retries {self.stats.retries}",
                                    refresh=False)

        n = min(concurrency or self.concurrency, len(windows))
        try:
            if n <= 1:
                for i in range(len(windows)):
                    work(i)
            else:
                with ThreadPoolExecutor(max_workers=n, thread_name_prefix="psanalytics-window") as ex:
                    futures = [ex.submit(work, i) for i in range(len(windows))]
                    try:
                        for f in futures:
                            f.result()
                    except BaseException:
                        for f in futures:
                            f.cancel()
                        raise
        finally:
            bar.close()
        return reports

    # ------------------------------------------------------------------ public reads

    def count(self, filter: FilterLike = None, *, start: TimeLike | None = None,
              end: TimeLike | None = None, settle: Any = None) -> int:
        """How many events match ``filter`` in ``[start, end)`` (one request)."""
        text = _range_filter(_filter_text(filter), start, settled_end(end, settle))
        return self._get(text, 0, 1, None)[1]

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
        if limit is not None and limit < 0:
            raise ArgumentError("limit must not be negative")
        end = settled_end(end, settle)
        ftext = _filter_text(filter)
        if limit == 0:
            return schema.empty_frame()
        if limit is not None and limit <= RESULT_WINDOW:
            head = self._events_head(ftext, start, end, limit, orderby)
            if head is not None:
                return head
        windows, everything = self._plan(ftext, start, end, None, probe_top=self.page_size)
        if everything is not None:
            out, _ = _dedupe(everything)
            if orderby is not None:
                out = _client_order(out, orderby)
            return out.head(limit) if limit is not None else out
        if limit is not None and orderby is None:
            keep, acc = [], 0
            for w in windows:
                keep.append(w)
                acc += w.count or 0
                if acc >= limit:
                    break
            windows = keep
        frames: list[pl.DataFrame | None] = [None] * len(windows)

        def collect(i: int, _w: Window, frame: pl.DataFrame, _rep: WindowReport) -> None:
            frames[i] = frame

        self._run_windows(ftext, windows, on_done=collect, progress=progress,
                          concurrency=concurrency)
        parts = [f for f in frames if f is not None and f.height]
        # No rechunk: copying a million rows into one chunk would double peak memory.
        out = pl.concat(parts, how="vertical", rechunk=False) if parts else schema.empty_frame()
        out, _ = _dedupe(out)
        if orderby is not None:
            out = _client_order(out, orderby)
        if limit is not None:
            out = out.head(limit)
        return out

    def _events_head(self, ftext: str | None, start: TimeLike | None, end: TimeLike | None,
                     limit: int, orderby: str | None = None) -> pl.DataFrame | None:
        """The first ``limit`` (<= 9,999) events in the requested order, asked of the server
        with ``$orderby``/``$top`` (paged by ``page_size``, ``$skip + $top <= 9999``).

        ``orderby`` is sent with ``EventTime asc, TrackId asc`` appended as tie-breakers:
        the same total order the client gives a full fetch (a stable sort of the
        time-ordered events). None when that cannot be trusted, and the caller does the
        full fetch instead: a key the server cannot order by, the server's order differing
        from the client's, repeated TrackIds, or a total that kept changing while paging.
        """
        order_text = ORDERBY if orderby is None else _server_orderby(orderby)
        if order_text is None:
            return None
        text = _range_filter(ftext, start, end)
        for _restart in range(5):
            frames: list[pl.DataFrame] = []
            skip = 0
            total0: int | None = None
            changed = False
            while skip < limit:
                top = min(self.page_size, limit - skip)
                frame, total = self._get(text, skip, top, None, orderby=order_text)
                if total0 is None:
                    total0 = total
                elif total != total0:
                    changed = True  # rows moved between pages: offsets shifted
                    break
                frames.append(frame)
                skip += frame.height
                if frame.height < top or skip >= total:
                    break
            if not changed:
                break
        else:
            return None
        out = pl.concat(frames, how="vertical") if frames else schema.empty_frame()
        if orderby is None:
            return _dedupe(out)[0]
        if _dedupe(out)[1]:
            return None  # which copy a full fetch keeps depends on rows not fetched
        if not out.equals(_client_order(out, order_text)):
            return None  # the server orders differently (e.g. string collation, ties)
        return out

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
        end = settled_end(end, settle)
        ftext = _filter_text(filter)
        windows, everything = self._plan(ftext, start, end, None, probe_top=self.page_size)
        if everything is not None:
            yield _dedupe(everything)[0]
            return
        seen_boundary: set[str] = set()
        for w in windows:
            rep = WindowReport(key=w.key, start=w.start_time, end=w.end_time, planned=w.count)
            frame = self._fetch_window(ftext, w, rep)
            if seen_boundary and frame.height:
                frame = frame.filter(~pl.col("TrackId").is_in(list(seen_boundary)))
            if frame.height:
                # Keep only the ids at the last instant: the only ones a later window could repeat.
                last = frame.get_column("EventTime")[-1]
                seen_boundary = set(frame.filter(pl.col("EventTime") == last).get_column("TrackId").to_list())
                yield frame
