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

What it pages is a :class:`Resource`: :data:`EVENTS` (``TrackEvents``, windowed on
``EventTime``, ties broken by ``TrackId``) by default; :mod:`psanalytics.api.profiles`
pages ``Profiles`` with the same engine (windowed on ``FirstSeen``, ties by ``ProfileId``).

Why this file is long: it is one engine. Paging inside windows, restarts when a
window's total changes, splits, the concurrent window runner and the page helpers above
``Pager`` share its invariants (order checks, duplicate removal at restart boundaries)
and are tested as one. If it grows, the page-level helpers (``_Page`` .. ``_range_filter``)
are the part to move out.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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
from psanalytics.api.windows import (
    RESULT_WINDOW,
    Window,
    WindowOverflowError,
    plan_windows,
    window_filter,
)
from psanalytics.errors import ArgumentError, PsaError
from psanalytics.query.odata import ODataError, parse_orderby
from psanalytics.wire import api_json
from psanalytics.wire.api_json import parse_page, peek_last_time, peek_total

__all__ = ["EVENTS", "Pager", "Resource", "WindowReport", "OrderError", "ORDERBY", "PROBE_PAGE",
           "settled_end"]

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


def _parse_events(body: bytes) -> tuple[pl.DataFrame, int]:
    # Looked up at call time, so a wrapper installed on this module's parse_page (the
    # loader benchmark's parse timer) sees every page.
    return parse_page(body)


@dataclass(frozen=True)
class Resource:
    """What a :class:`Pager` pages: a ``GET`` path answering ``{"items", "total"}`` under
    ``$filter``/``$orderby``/``$skip``/``$top``, the time column its windows cut (``time``,
    a ``Datetime`` column of the parsed frame, written in filters as the API's 7-digit
    UTC text), the column that breaks ties (``tie``), how a raw page body becomes
    ``(frame, total)`` (``parse``), each row's whole-row identity at a page seam
    (``identity``), an empty frame of the schema (``empty``) and, optionally, the last
    ``time`` text read off a raw body without parsing it (``peek_last``; None: parse)."""

    path: str
    time: str
    tie: str
    parse: Callable[[bytes], tuple[pl.DataFrame, int]]
    identity: Callable[[pl.DataFrame], pl.Series]
    empty: Callable[[], pl.DataFrame]
    peek_last: Callable[[bytes], str | None] = field(default=lambda body: None)
    noun: str = "events"

    @property
    def orderby(self) -> str:
        """The total order every page is asked in (and checked against)."""
        return f"{self.time} asc,{self.tie} asc"

    @property
    def orderby_desc(self) -> str:
        return f"{self.time} desc,{self.tie} desc"


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


@dataclass
class _Page:
    """One page of a key-continued query (see :meth:`Pager._page_through`)."""

    job: Any  # Future of (frame, total)
    asked: int  # $top
    cursor: str | None  # the filter's ``EventTime ge/gt`` bound (None: the first page)
    overlap: bool  # ``ge``: the page before returned rows at ``cursor``: take them off
    read_last: str | None = None  # last EventTime read off the raw body (checked)


def _after(text: str | None, instant: str, *, strict: bool = False, time_col: str = "EventTime") -> str:
    """``text`` continued from ``instant`` (``ge``; ``gt`` with ``strict``)."""
    bound = f"{time_col} {'gt' if strict else 'ge'} {instant}"
    return bound if not text else f"({text}) and {bound}"


def _last_text(frame: pl.DataFrame, time_col: str = "EventTime") -> str:
    return format_ns(int(frame.get_column(time_col).dt.epoch("ns").item(-1)))


def identity_lines(frame: pl.DataFrame) -> pl.Series:
    """Each event's identity at a page seam: the whole event, as the API JSON it is
    written back as (every field; no key is assumed unique, so two identical events are
    two equal identities, counted)."""
    return api_json.api_json_lines(frame)


#: Track events (``GET api/v2.0/TrackEvents``): the Pager's default resource.
EVENTS = Resource(PREFIX_V2, "EventTime", "TrackId", _parse_events,
                  lambda frame: identity_lines(frame), schema.empty_frame,
                  lambda body: peek_last_time(body))


def _take_off_head(frame: pl.DataFrame, before: pl.DataFrame, instant: str,
                   res: Resource | None = None) -> pl.DataFrame:
    """``frame`` less one occurrence of each event of ``before`` at ``instant`` (a multiset
    difference on whole events; only ``frame``'s head can be at that instant)."""
    res = res or EVENTS
    t = to_ns(instant)
    times = before.get_column(res.time).dt.epoch("ns")
    seen = Counter(res.identity(before.filter(times == t)).to_list())
    if not seen:
        return frame
    head = int((frame.get_column(res.time).dt.epoch("ns") == t).sum())
    drop = []
    for i, line in enumerate(res.identity(frame.head(head)).to_list()):
        if seen.get(line):
            seen[line] -= 1
            drop.append(i)
    if not drop:
        return frame
    keep = pl.Series([True] * frame.height).scatter(drop, False)
    return frame.filter(keep)


def _assemble(pages: list[_Page], text: str | None, res: Resource | None = None) -> list[pl.DataFrame] | None:
    """The pages' frames with the repeated heads taken off; None when a check fails (a
    short page, a last time other than the one read ahead: the data moved)."""
    res = res or EVENTS
    frames: list[pl.DataFrame] = []
    prev: pl.DataFrame | None = None
    last_time = None
    for p in pages:
        frame, ptotal = p.job.result()
        if frame.height < min(p.asked, ptotal):
            return None
        if p.read_last is not None and (frame.height == 0 or _last_text(frame, res.time) != p.read_last):
            return None
        _check_order(frame, None, text, 0, res)
        raw = frame
        if p.overlap and prev is not None and p.cursor is not None:
            frame = _take_off_head(frame, prev, p.cursor, res)
        if frame.height:
            if last_time is not None and frame.get_column(res.time)[0] < last_time:
                return None
            last_time = frame.get_column(res.time)[-1]
        frames.append(frame)
        prev = raw
    return frames


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


def _check_order(frame: pl.DataFrame, last_time: Any, text: str | None, skip: int,
                 res: Resource | None = None) -> None:
    res = res or EVENTS
    times = frame.get_column(res.time)
    if times.null_count():
        # Rows without the time cannot be paged by time (they fall outside every
        # window): a clear error naming one, never a silent loss.
        tid = frame.filter(pl.col(res.time).is_null()).get_column(res.tie).item(0)
        one = res.noun.rstrip("s")
        raise OrderError(
            f"GET {res.path} $filter={text} $skip={skip}: the server returned {'an' if one[0] in 'aeiou' else 'a'} "
            f"{one} without {res.time} ({res.tie} {tid!r}); psanalytics pages by {res.time} and cannot "
            f"fetch such {res.noun} exactly. Filter them out (e.g. a range with start= and end=) "
            "or fix the data.")
    if not times.is_sorted() or (last_time is not None and times[0] < last_time):
        raise OrderError(
            f"GET {res.path} $filter={text} $skip={skip}: rows came back out of {res.time} "
            f"order although $orderby={res.orderby} was sent; paging cannot be exact"
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


def _range_filter(ftext: str | None, start: TimeLike | None, end: TimeLike | None,
                  time_col: str = "EventTime") -> str | None:
    """``(ftext) and EventTime ge <start> and EventTime lt <end>`` (open ends left out)."""
    parts = []
    if start is not None:
        lo = to_ns(start)
        parts.append(f"{time_col} ge {format_ns(floor_tick(lo))}")
    if end is not None:
        hi = to_ns(end)
        parts.append(f"{time_col} lt {format_ns(ceil_tick(hi))}")
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
    defaults (the facade may change them after construction). ``resource``: what is
    paged (:data:`EVENTS` by default).
    """

    def __init__(self, client: httpx.Client, url: str, *, policy: RetryPolicy,
                 stats: RequestStats, page_size: int = RESULT_WINDOW, concurrency: int = 4,
                 progress: bool | None = None, resource: Resource | None = None) -> None:
        self.res = resource or EVENTS
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
             orderby: str | None = None) -> tuple[pl.DataFrame, int]:
        parse = self.res.parse
        return self._send_page(ftext, skip, top, stats, orderby or self.res.orderby,
                               lambda resp: parse(resp.content))

    def _get_body(self, ftext: str | None, skip: int, top: int, stats: RequestStats | None
                  ) -> bytes:
        """One page's raw body (retried like :meth:`_get`), for :meth:`_page_through`."""
        return self._send_page(ftext, skip, top, stats, self.res.orderby, _body)

    def _send_page(self, ftext: str | None, skip: int, top: int, stats: RequestStats | None,
                   orderby: str, decode: Callable[[httpx.Response], Any]) -> Any:
        if skip + top > RESULT_WINDOW:  # a guard no caller should ever trip
            raise ArgumentError(f"refusing to send $skip={skip} $top={top}: over the result window")
        params = {"$orderby": orderby, "$skip": str(skip), "$top": str(top)}
        if ftext:
            params["$filter"] = ftext
        stats_list = [s for s in (stats, self.stats) if s is not None]
        _resp, decoded = send_json(self._client, "GET", self.res.path, params=params,
                                   policy=self.policy, decode=decode, stats=_Tee(stats_list))
        return decoded

    def _prefetcher(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.concurrency + 1,
                                                thread_name_prefix="psanalytics-page")
            return self._pool

    def _page_through(self, text: str | None, stats: RequestStats, top: int | None = None, *,
                      stop_if_big: bool = False, limit: int | None = None, peek: bool = True
                      ) -> tuple[list[pl.DataFrame], int, int, str]:
        """Every event of one query, exactly once, in pages continued by key.

        Page 1 is ``$filter=<text>`` (``$skip=0``, ``$top=size``); each next page asks for
        ``(<text>) and EventTime ge T``, ``T`` being the last ``EventTime`` of the page
        before, and the rows at ``T`` that page already returned are taken off its head
        (as a multiset of whole events: two identical events stay two). No ``$skip``: an
        event deleted or added between two requests cannot shift others past a seam, and
        the server's order among ties does not matter. Requests stay sequential (one in
        flight per query), but each page is parsed on a worker while the next is asked
        for: ``T`` and the page's ``total`` are read off the raw body, and checked against
        the parsed page (a mismatch answers "changed": the caller restarts with
        ``peek=False``).

        Returns ``(frames, total, rows, status)``: ``total`` is the first page's; status
        ``"ok"`` (complete; with ``limit``, complete or at least ``limit`` rows);
        ``"big"`` (``stop_if_big`` and the first page's total is over the result window:
        ``frames`` holds just that page); ``"changed"``.
        """
        size = min(top or self.page_size, RESULT_WINDOW)
        pool = self._prefetcher()
        pages: list[_Page] = []
        cur_text, cursor, overlap = text, None, False
        total0: int | None = None
        while True:
            body = self._get_body(cur_text, 0, size, stats)
            page = _Page(pool.submit(self._parse_body, body, cur_text, 0, size, stats), size,
                         cursor, overlap)
            pages.append(page)
            ptotal = peek_total(body) if peek else None
            if ptotal is None:
                ptotal = page.job.result()[1]
            if total0 is None:
                total0 = ptotal
                if stop_if_big and ptotal > RESULT_WINDOW:
                    frame = page.job.result()[0]
                    return [frame], ptotal, frame.height, "big"
            if ptotal <= size:
                break  # this page holds all that is left
            if limit is not None:
                done = _assemble(pages, text, self.res)
                if done is None:
                    return [], int(total0), 0, "changed"
                if sum(f.height for f in done) >= limit:
                    break
            last = self.res.peek_last(body) if peek else None
            if last is None:
                frame = page.job.result()[0]
                if frame.height == 0:
                    return [], int(total0), 0, "changed"
                self._check_times(frame, cur_text)
                last = _last_text(frame, self.res.time)
            page.read_last = last
            if last == cursor:
                # The whole page is one instant: continue after it if it held all of it,
                # else ask again for the largest page.
                if not self._holds_instant(text, last, page, stats):
                    pages.pop()
                    size = RESULT_WINDOW
                    continue
                cur_text, overlap = _after(text, last, strict=True, time_col=self.res.time), False
                continue
            cursor, overlap = last, True
            cur_text = _after(text, last, time_col=self.res.time)
        frames = _assemble(pages, text, self.res)
        for p in pages:
            p.job.cancel()
        if frames is None:
            return [], int(total0 or 0), 0, "changed"
        return frames, int(total0 or 0), sum(f.height for f in frames), "ok"

    def _holds_instant(self, text: str | None, instant: str, page: _Page,
                       stats: RequestStats) -> bool:
        """Whether ``page`` (all of one instant) holds every event of that instant. More
        than the result window in one instant cannot be fetched: WindowOverflowError."""
        t = to_ns(instant)
        n = self._get(window_filter(text, t, t + TICK_NS, self.res.time), 0, 1, stats)[1]
        if n > RESULT_WINDOW:
            raise WindowOverflowError(t, n, RESULT_WINDOW, field=self.res.time, noun=self.res.noun)
        return n <= page.job.result()[0].height

    def _parse_body(self, body: bytes, text: str | None, skip: int, top: int,
                    stats: RequestStats) -> tuple[pl.DataFrame, int]:
        try:
            return self.res.parse(body)
        except ValueError:
            # Not JSON after all (cut off inside): fetch again, parsing as it comes.
            stats.note_retry()
            self.stats.note_retry()
            return self._get(text, skip, top, None)

    def _count_range(self, ftext: str | None, lo: int | None, hi: int | None,
                     stats: RequestStats | None = None) -> int:
        text = ftext if lo is None else window_filter(ftext, lo, hi, self.res.time)  # type: ignore[arg-type]
        return self._get(text, 0, 1, stats)[1]

    def _check_times(self, frame: pl.DataFrame, ftext: str | None) -> None:
        if frame.get_column(self.res.time).null_count():
            _check_order(frame, None, ftext, 0, self.res)

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
        bounded = _range_filter(ftext, lo, hi, self.res.time)
        complete = False
        if probe_top >= self.page_size:
            # Page through at once when it all fits the window (pipelined, no planning).
            for attempt in range(5):
                frames, total, _rows, status = self._page_through(
                    bounded, stats or RequestStats(), top=min(self.page_size, PROBE_PAGE),
                    stop_if_big=True, peek=attempt == 0)
                if status != "changed":
                    break
            if status == "ok":
                first = pl.concat(frames, how="vertical") if len(frames) > 1 else (
                    frames[0] if frames else self.res.empty())
                total, complete = first.height, True
            elif status == "big":
                first = frames[0]
            else:
                first, total = self._get(bounded, 0, probe_top, stats)
        else:
            first, total = self._get(bounded, 0, probe_top, stats)
        if total == 0 or first.height == 0:
            return None
        self._check_times(first, bounded)
        if lo is None:
            lo = to_ns(first.get_column(self.res.time).dt.epoch("ns").item(0))
        if complete or (first.height >= total and total <= RESULT_WINDOW):
            _check_order(first, None, bounded, 0, self.res)
            if hi is None:
                hi = int(first.get_column(self.res.time).dt.epoch("ns").item(-1)) + TICK_NS
            return lo, hi, total, first
        if hi is None:
            last, _ = self._get(bounded, 0, 1, stats, orderby=self.res.orderby_desc)
            if last.height == 0:
                return None
            self._check_times(last, bounded)
            hi = int(last.get_column(self.res.time).dt.epoch("ns").item()) + TICK_NS
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
        """One window: one request when it fits a page (the default page is the whole
        result window), else pages continued by key (see :meth:`_page_through`); a window
        that grew past the result window since it was planned is paged on the same way."""
        text = w.filter(ftext, self.res.time)
        for attempt in range(5):
            frames, _total0, _rows, status = self._page_through(text, stats, peek=attempt == 0)
            if status == "ok":
                break
            rep.restarts += 1
        else:
            raise ApiError(
                f"GET {self.res.path} $filter={text}: the pages kept disagreeing with what was read "
                "ahead (5 restarts); the data is being written to right now. Retry later or "
                "pass an end time in the past.",
                method="GET", url=self.url + self.res.path,
            )
        if not frames:
            return self.res.empty()
        return pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]

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
                rep.distinct_ids = frame.get_column(self.res.tie).n_unique()
                rep.min_time = frame.get_column(self.res.time).min()  # type: ignore[assignment]
                rep.max_time = frame.get_column(self.res.time).max()  # type: ignore[assignment]
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
        text = _range_filter(_filter_text(filter), start, settled_end(end, settle), self.res.time)
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
            return self.res.empty()
        if limit is not None and limit <= RESULT_WINDOW:
            head = self._events_head(ftext, start, end, limit, orderby)
            if head is not None:
                return head
        windows, everything = self._plan(ftext, start, end, None, probe_top=self.page_size)
        if everything is not None:
            out = everything
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
        out = pl.concat(parts, how="vertical", rechunk=False) if parts else self.res.empty()
        if orderby is not None:
            out = _client_order(out, orderby)
        if limit is not None:
            out = out.head(limit)
        return out

    def _events_head(self, ftext: str | None, start: TimeLike | None, end: TimeLike | None,
                     limit: int, orderby: str | None = None) -> pl.DataFrame | None:
        """The first ``limit`` (<= 9,999) events in the requested order, asked of the server.

        In time order: pages continued by key (as every fetch), stopping once ``limit``
        rows are in. With ``orderby``: one ``$orderby``/``$top`` request (when ``limit``
        fits ``page_size``), sent with ``EventTime asc, TrackId asc`` appended as
        tie-breakers: the same order the client gives a full fetch (a stable sort of the
        time-ordered events). None when that cannot be trusted, and the caller does the
        full fetch instead: a key the server cannot order by, a limit over one page, rows
        back in another order than the client's sort, or pages that kept changing.
        """
        if orderby is not None and self.res is not EVENTS:
            return None  # the server's order on other resources' keys is not known: sort here
        order_text = self.res.orderby if orderby is None else _server_orderby(orderby)
        if order_text is None:
            return None
        text = _range_filter(ftext, start, end, self.res.time)
        if orderby is None:
            stats = RequestStats()
            for attempt in range(5):
                frames, _total, _rows, status = self._page_through(
                    text, stats, top=min(self.page_size, limit), limit=limit, peek=attempt == 0)
                if status == "ok":
                    out = pl.concat(frames, how="vertical") if frames else self.res.empty()
                    return out.head(limit)
            return None
        if limit > self.page_size:
            return None  # offsets over several pages could shift under concurrent change
        out, _total = self._get(text, 0, limit, None, orderby=order_text)
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
            yield everything
            return
        # Windows are half-open [t0, t1): no event can be in two of them.
        for w in windows:
            rep = WindowReport(key=w.key, start=w.start_time, end=w.end_time, planned=w.count)
            frame = self._fetch_window(ftext, w, rep)
            if frame.height:
                yield frame
