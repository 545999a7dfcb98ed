"""Profile Store client: every matching track event exactly once, past the 10,000-row window.

>>> import psanalytics as ps
>>> store = ps.connect()                      # no config: in-process emulator + sample data
>>> orders = store.events(ps.F.EventType == "order")
>>> store.export("export/", start="2024-03-01", end="2024-03-15")

How ``events()`` stays exact: it asks the server how many events match (``total`` of a
one-row query), plans half-open ``[t0, t1)`` windows on ``EventTime`` that each hold at
most 9,999 of them (:mod:`psanalytics.api.windows`), and pages each window with
``$skip + $top <= 9999`` under an explicit ``$orderby=EventTime asc,TrackId asc``. Windows
run concurrently (bounded), pages within a window sequentially. The client checks the
order of what comes back, restarts a window whose ``total`` changed while paging, splits
a window that grew past the limit, and drops duplicate TrackIds at restart boundaries.
One instant holding more than 9,999 matching events raises
:class:`~psanalytics.api.windows.WindowOverflowError` instead of truncating.

Everything is synchronous on worker threads (no event loop), so it works the same in a
script and inside Jupyter's running loop; ``aevents``/``acount``/``aexport`` are awaitable
wrappers for async code.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import orjson
import polars as pl

from psanalytics import schema
from psanalytics.api.http import (
    ApiError,
    RequestStats,
    RetryAfterTooLong,
    RetryPolicy,
    Secret,
    SendResult,
    build_client,
    mask_url,
    redact,
    send_json,
    send_with_retries,
)
from psanalytics.api.windows import (
    RESULT_WINDOW,
    TICK_NS,
    Window,
    WindowOverflowError,
    format_ns,
    from_ns,
    plan_windows,
    to_ns,
    window_filter,
)
from psanalytics.errors import PsaError

__all__ = [
    "connect",
    "ProfileStore",
    "ExportReport",
    "WindowReport",
    "DeleteReport",
    "TrackReport",
    "OrderError",
    "WindowOverflowError",
    "PreviewTruncatedWarning",
    "with_params",
    "ORDERBY",
    "MAX_BULK_EVENTS",
    "MAX_EVENT_BYTES",
]

#: The order the client always asks for (and checks): a total order, so offsets are stable.
ORDERBY = "EventTime asc,TrackId asc"
#: Tracking API limits.
MAX_BULK_EVENTS = 100
MAX_EVENT_BYTES = 256 * 1024
#: Preview row cap of the API.
PREVIEW_CAP = 1000

TimeLike = datetime | str | int
FilterLike = Any  # str, or a psanalytics.query.odata filter object with .render()

_PREFIX_V2 = "/api/v2.0/TrackEvents"
_CHECKPOINT = "_checkpoint.json"


#: Rows asked for by the first request of a fetch. A range that fits the result window
#: then comes in pages this size, each parsed while the next is fetched (on a fast link
#: this halves the time of a 10,000-event fetch; on a slow one it costs two round trips).
PROBE_PAGE = 3_333


class OrderError(PsaError):
    """The server returned rows out of ``EventTime`` order, so paging cannot be trusted."""


class PreviewTruncatedWarning(UserWarning):
    """A KQL preview returned the API's 1,000-row cap: more rows may exist."""


# --------------------------------------------------------------------------- reports


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


@dataclass
class ExportReport:
    """Outcome of :meth:`ProfileStore.export`.

    ``windows`` holds one :class:`WindowReport` per planned window (``resumed=True`` for
    windows finished by an earlier run and not fetched again). ``rows`` counts all rows in
    the export, ``fetched_rows`` those fetched by this run.
    """

    path: Path
    windows: list[WindowReport]
    rows: int
    fetched_rows: int
    requests: int
    retries: int
    duration_s: float
    resumed_windows: int
    duplicates: int
    files: list[Path] = field(default_factory=list)

    def scan(self) -> pl.LazyFrame:
        """The exported events, lazily, in the canonical schema (time order)."""
        if not self.files:
            return schema.empty_frame().lazy()
        return pl.scan_parquet([str(f) for f in self.files])

    def read(self) -> pl.DataFrame:
        """The exported events as one frame."""
        return self.scan().collect()

    def __repr__(self) -> str:
        return (
            f"ExportReport(path={str(self.path)!r}, windows={len(self.windows)}, rows={self.rows:,}, "
            f"fetched_rows={self.fetched_rows:,}, resumed_windows={self.resumed_windows}, "
            f"requests={self.requests}, retries={self.retries}, duplicates={self.duplicates}, "
            f"duration_s={self.duration_s:.2f})"
        )


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


@dataclass
class TrackReport:
    """Outcome of :meth:`ProfileStore.track`: events and batches sent, requests, retries."""

    events: int
    batches: int
    requests: int
    retries: int
    elapsed_s: float


# --------------------------------------------------------------------------- parsing

_PAGE_SCHEMA = {c: pl.String for c in schema.STRING_COLUMNS}
_PAGE_SCHEMA["EventTime"] = pl.String
_PAGE_SCHEMA["User"] = schema.USER_DTYPE
_API_KEYS = frozenset(schema.API_ORDER)


def _payload_series(items: list[dict[str, Any]]) -> pl.Series:
    dumps = orjson.dumps
    vals = [
        None if (p := it.get("Payload")) is None else (p.encode() if isinstance(p, str) else dumps(p))
        for it in items
    ]
    return pl.Series("Payload", vals, pl.Binary).cast(pl.String)


def parse_items(items: list[dict[str, Any]]) -> pl.DataFrame:
    """API event objects (PascalCase) -> canonical frame, fast (Rust-side construction).

    Falls back to :func:`psanalytics.schema.normalize` for other shapes (camelCase, odd
    time formats).
    """
    if not items:
        return schema.empty_frame()
    first = items[0]
    if not isinstance(first, dict) or not set(first) <= _API_KEYS | {"Headers"}:
        return schema.normalize(items, warn_unknown=False)
    try:
        frame = pl.from_dicts(items, schema=_PAGE_SCHEMA)
        times = frame.get_column("EventTime").str.to_datetime(
            "%Y-%m-%dT%H:%M:%S%.fZ", time_unit="ns", time_zone="UTC", strict=True
        )
    except Exception:  # noqa: BLE001 - any surprise: take the careful path
        return schema.normalize(items, warn_unknown=False)
    frame = frame.with_columns(
        [pl.col(c).fill_null("") for c in schema.STRING_COLUMNS]
        + [
            times.alias("EventTime"),
            pl.struct(
                pl.col("User").struct.field("Email").fill_null(""),
                pl.col("User").struct.field("Name").fill_null(""),
            ).alias("User"),
            _payload_series(items),
        ]
    )
    return frame.select(schema.COLUMNS)


class _PayloadItem(msgspec.Struct, gc=False):  # no GC tracking: 10,000 per page
    Payload: msgspec.Raw = msgspec.Raw(b"null")


class _PayloadPage(msgspec.Struct, gc=False):
    items: list[_PayloadItem]
    total: int | None = None


_PAYLOAD_DECODER = msgspec.json.Decoder(_PayloadPage)
_PAYLOAD_LIST_DECODER = msgspec.json.Decoder(list[_PayloadItem])


def _arrow_json() -> tuple[Any, Any, Any]:
    """(pyarrow.json, options for NDJSON items, options for a whole ``{"items": ...}`` page)."""
    global _ARROW
    if _ARROW is None:
        import pyarrow as pa
        import pyarrow.json as paj

        # EventTime is parsed by Arrow (ISO 8601, in C++); a value it cannot read sends the
        # page down the careful path.
        fields = [(c, pa.string()) for c in schema.STRING_COLUMNS] + [
            ("EventTime", pa.timestamp("ns", tz="UTC")),
            ("User", pa.struct([("Email", pa.string()), ("Name", pa.string())])),
        ]
        items = paj.ParseOptions(explicit_schema=pa.schema(fields), unexpected_field_behavior="ignore")
        page = paj.ParseOptions(
            explicit_schema=pa.schema([("items", pa.list_(pa.struct(fields)))]),
            unexpected_field_behavior="ignore",
        )
        _ARROW = (paj, items, page)
    return _ARROW


_ARROW: tuple[Any, Any, Any] | None = None


def _pool() -> Any:
    """The Arrow memory pool for page parsing: the system allocator. Arrow's default
    (mimalloc) hands its memory back and faults fresh huge pages in for every page,
    which cost ~15 % of the client's CPU on a million-event fetch; a page's Arrow buffers
    live only until the frame is built."""
    import pyarrow as pa

    return pa.system_memory_pool()


_RAW_LIST_DECODER = msgspec.json.Decoder(list[msgspec.Raw])


def parse_page(body: bytes) -> tuple[pl.DataFrame, int]:
    """One TrackEvents response body -> (canonical frame, total), exactly.

    Fast path for the documented shape (``{"items": [PascalCase events], "total": n}``
    or a bare array of events): msgspec hands over each ``Payload`` as its raw JSON text,
    untouched, without building Python objects for the rest; Arrow's JSON reader decodes
    the plain fields (C++, GIL released, on the calling thread: windows already
    parse in parallel) straight into columns. Anything else
    (camelCase, numbers where strings belong, odd times) goes through
    :func:`psanalytics.schema.normalize`. Raises ``ValueError`` on a body that is not
    valid JSON (the caller retries it like a dropped connection).
    """
    bare = body[:1] == b"["
    try:
        if bare:
            raw_items: list[msgspec.Raw] = _RAW_LIST_DECODER.decode(body)
            payloads = _PAYLOAD_LIST_DECODER.decode(body)
            total: int | None = None
        else:
            page = _PAYLOAD_DECODER.decode(body)
            payloads, total = page.items, page.total
    except (msgspec.DecodeError, msgspec.ValidationError):
        return _slow_page(body)
    n = len(payloads)
    if n == 0:
        return schema.empty_frame(), int(total or 0)
    try:
        paj, item_opts, page_opts = _arrow_json()
        if bare:
            nd = b"\n".join(raw_items)
            table = paj.read_json(io.BytesIO(nd), parse_options=item_opts, memory_pool=_pool(),
                                  read_options=paj.ReadOptions(use_threads=False,
                                                               block_size=max(1 << 21, len(nd) + 1)))
            items = pl.from_arrow(table)
        else:
            # The whole page is one JSON object: one row whose "items" list holds the events.
            table = paj.read_json(io.BytesIO(body), parse_options=page_opts, memory_pool=_pool(),
                                  read_options=paj.ReadOptions(use_threads=False,
                                                               block_size=max(1 << 21, len(body) + 1)))
            items = pl.from_arrow(table).get_column("items").explode().struct.unnest()  # type: ignore[union-attr]
        assert isinstance(items, pl.DataFrame)
        times = items.get_column("EventTime")
        if times.dtype != schema.TIME_DTYPE:
            times = times.cast(schema.TIME_DTYPE)
    except Exception:  # noqa: BLE001 - any surprise: take the careful path
        return _slow_page(body)
    if items.height != n or times.null_count() or items.get_column("TrackId").null_count() == n:
        return _slow_page(body)
    pay = pl.Series("Payload", [bytes(it.Payload) for it in payloads], pl.Binary).cast(pl.String)
    user = items.get_column("User")
    fix = [pl.col(c).fill_null("") for c in schema.STRING_COLUMNS
           if items.get_column(c).null_count()]
    if user.null_count() or user.struct.field("Email").null_count() or user.struct.field("Name").null_count():
        fix.append(pl.struct(
            pl.col("User").struct.field("Email").fill_null(""),
            pl.col("User").struct.field("Name").fill_null(""),
        ).alias("User"))
    frame = items.with_columns(
        fix + [times.alias("EventTime"), pl.when(pay == "null").then(None).otherwise(pay).alias("Payload")]
    ).select(schema.COLUMNS)
    return frame, int(total if total is not None else n)


def _slow_page(body: bytes) -> tuple[pl.DataFrame, int]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if isinstance(data, list):  # some deployments answered a bare array
        return parse_items(data), len(data)
    if not isinstance(data, dict):
        raise ValueError("response is neither an object nor an array")
    items = data.get("items", data.get("Items"))
    if items is None:
        raise ValueError("response has no 'items'")
    total = data.get("total", data.get("Total"))
    frame = parse_items(items)
    return frame, int(total) if total is not None else frame.height


def _decode_page(resp: httpx.Response) -> tuple[pl.DataFrame, int]:
    return parse_page(resp.content)


def _decode_json(resp: httpx.Response) -> Any:
    return orjson.loads(resp.content)


def _body(resp: httpx.Response) -> bytes:
    """The raw page body, parsed later (while the next page is in flight). A body that is
    plainly cut off raises ValueError here, so it is retried like a dropped connection."""
    body = resp.content
    if body.rstrip()[-1:] not in (b"}", b"]"):
        raise ValueError("response body ends mid-way")
    return body


_TAIL_TOTAL = re.compile(rb'"total"\s*:\s*(\d+)\s*(?:,\s*"count"\s*:\s*\d+\s*)?\}\s*$')
_HEAD_TOTAL = re.compile(rb'\A\s*\{\s*(?:"count"\s*:\s*\d+\s*,\s*)?"total"\s*:\s*(\d+)\s*,')


def _peek_total(body: bytes) -> int | None:
    """``total`` read off the start or end of a page body without parsing it (None when
    it is not plainly there). Only decides whether to send the next request early; the
    parsed total is what the exactness checks use."""
    m = _TAIL_TOTAL.search(body[-96:]) or _HEAD_TOTAL.match(body[:96])
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------- helpers


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


_ORDER_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(asc|desc)?\s*$", re.IGNORECASE)


def _client_order(frame: pl.DataFrame, orderby: str) -> pl.DataFrame:
    cols: list[pl.Expr] = []
    desc: list[bool] = []
    for part in orderby.split(","):
        m = _ORDER_RE.match(part)
        if not m:
            raise ValueError(f"orderby: cannot read {part.strip()!r}; write 'Prop [asc|desc], ...'")
        name, direction = m.group(1), (m.group(2) or "asc").lower()
        head, *rest = name.split(".")
        col = schema.canonical_name(head) or head
        if col not in frame.columns:
            raise ValueError(f"orderby: no column {name!r}; columns are {', '.join(frame.columns)}")
        e = pl.col(col)
        for r in rest:
            e = e.struct.field(r.capitalize() if col == "User" else r)
        cols.append(e)
        desc.append(direction == "desc")
    return frame.sort(cols, descending=desc, maintain_order=True, nulls_last=True)


def _server_orderby(orderby: str) -> str | None:
    """``orderby`` as a ``$orderby`` with ``EventTime asc,TrackId asc`` tie-breakers, or
    None when a key is not one the server orders by (the client sorts those itself).
    Raises the same ValueError as the client sort for text it cannot read."""
    terms: list[str] = []
    names: set[str] = set()
    for part in orderby.split(","):
        m = _ORDER_RE.match(part)
        if not m:
            raise ValueError(f"orderby: cannot read {part.strip()!r}; write 'Prop [asc|desc], ...'")
        name, direction = m.group(1), (m.group(2) or "asc").lower()
        head, *rest = name.split(".")
        col = schema.canonical_name(head)
        if col is None or col == "Payload":
            return None
        if col == "User":
            if len(rest) != 1 or rest[0].lower() not in ("email", "name"):
                return None
            col = f"User.{rest[0].capitalize()}"
        elif rest:
            return None
        terms.append(f"{col} {direction}")
        names.add(col)
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


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.{threading.get_ident()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _progress(total: int | None, desc: str, enabled: bool, unit: str = "ev") -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=not enabled,
                leave=True, dynamic_ncols=True)


# --------------------------------------------------------------------------- the client


class ProfileStore:
    """A Profile Store connection. Make one with :func:`connect`.

    Options: ``transport`` (an httpx transport, e.g. the in-process emulator's),
    ``policy`` (:class:`~psanalytics.api.http.RetryPolicy`), ``timeout``, ``concurrency``
    (windows fetched at once, default 4), ``page_size`` (rows per request, at most 9,999),
    ``progress`` (tqdm bars on long work, default True), ``auth`` (``"epi-single"`` or
    ``"subscription-key"``), ``tracking_key`` (a separate Tracking API key; default the
    same key).
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
        progress: bool = True,
        auth: str = "epi-single",
        tracking_key: str | Secret | None = None,
        emulator: Any = None,
    ) -> None:
        if not 1 <= page_size <= RESULT_WINDOW:
            raise ValueError(f"page_size must be between 1 and {RESULT_WINDOW}")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.url = str(url).rstrip("/")
        self._key = api_key if isinstance(api_key, Secret) or api_key is None else Secret(api_key)
        tk = tracking_key if tracking_key is not None else api_key
        self._tracking_key = tk if isinstance(tk, Secret) or tk is None else Secret(tk)
        self.scope = scope
        self.policy = policy or RetryPolicy()
        self.concurrency = concurrency
        self.page_size = page_size
        self.progress = progress
        self.emulator = emulator
        #: Cumulative request/retry counters of this connection.
        self.stats = RequestStats()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        # Enough pooled connections for every window worker (plus the planner's counters).
        limits = httpx.Limits(max_connections=max(16, 2 * concurrency),
                              max_keepalive_connections=max(16, 2 * concurrency))
        self._client = build_client(self.url, api_key=self._key, transport=transport,
                                    timeout=timeout, auth=auth, limits=limits)
        if self._tracking_key == self._key:
            self._tracking_client = self._client
        else:
            self._tracking_client = build_client(self.url, api_key=self._tracking_key,
                                                 transport=transport, timeout=timeout, auth=auth)

    # ------------------------------------------------------------------ basics

    def __repr__(self) -> str:
        key = "***" if self._key else "None"
        emu = ", emulator=True" if self.emulator is not None else ""
        return f"ProfileStore(url={mask_url(self.url)!r}, scope={self.scope!r}, api_key={key}{emu})"

    def close(self) -> None:
        """Close the connection pools."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._client.close()
        if self._tracking_client is not self._client:
            self._tracking_client.close()

    def __enter__(self) -> ProfileStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
            raise ValueError(f"refusing to send $skip={skip} $top={top}: over the result window")
        params = {"$orderby": orderby, "$skip": str(skip), "$top": str(top)}
        if ftext:
            params["$filter"] = ftext
        stats_list = [s for s in (stats, self.stats) if s is not None]
        _resp, decoded = send_json(self._client, "GET", _PREFIX_V2, params=params,
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
            total = _peek_total(body)
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
            lo = lo - (lo % TICK_NS)
        if hi is not None:
            hi = -((-hi) // TICK_NS) * TICK_NS
        if lo is not None and hi is not None and hi <= lo:
            raise ValueError(f"end ({format_ns(hi)}) must be after start ({format_ns(lo)})")
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
              stats: RequestStats | None, probe_top: int = 1
              ) -> tuple[list[Window], pl.DataFrame | None]:
        """Planned windows (empty ones dropped); with ``probe_top`` > 1 a range small enough
        to come back whole in the first probe is returned as the frame instead."""
        rng = self._resolve_range(ftext, start, end, stats, probe_top)
        if rng is None:
            return [], None
        lo, hi, total, everything = rng
        if everything is not None:
            return [Window(lo, hi, total)], everything
        windows = plan_windows(lo, hi, lambda a, b: self._count_range(ftext, a, b, stats),
                               total=total, count_many=self._counter(ftext, stats))
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
                f"GET {_PREFIX_V2} $filter={text}: the window's total kept changing while "
                "paging (5 restarts); the data is being written to right now. Retry later or "
                "pass an end time in the past.",
                method="GET", url=self.url + _PREFIX_V2,
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
            raise ValueError("limit must not be negative")
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
        _after_window: Callable[[int], None] | None = None,
    ) -> ExportReport:
        """Write the matching events to ``path`` as Parquet, one file per window.

        Layout: ``path/<YYYY-MM-DD>/part-<window>.parquet`` (the day the window starts) and
        ``path/_checkpoint.json`` (the plan and the windows finished). If an earlier run
        with the same filter and range was interrupted and ``resume`` is true, finished
        windows are kept and not fetched again. Otherwise (``resume=False``, different
        arguments, or an export that had completed) the old part files are removed and
        everything is fetched again, so re-running never duplicates rows. Files are
        written atomically; read them back with ``report.scan()`` or
        ``pl.scan_parquet(f"{path}/*/*.parquet")``. ``settle="5m"`` exports only what is at
        least that old; a resumed export keeps the end its plan was made with.
        """
        t0 = time.perf_counter()
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        ftext = _filter_text(filter)
        stats = RequestStats()
        ck_path = root / _CHECKPOINT
        args = {
            "filter": ftext,
            "start": None if start is None else format_ns(to_ns(start)),
            "end": None if end is None else format_ns(to_ns(end)),
            "url": redact(self.url),
        }
        if settle is not None:  # (absent otherwise: checkpoints from before it still resume)
            args["settle"] = str(settle)
        old = _read_checkpoint(ck_path)
        windows: list[Window]
        done: dict[str, dict[str, Any]] = {}
        if resume and old and old.get("args") == args and not old.get("complete"):
            windows = [Window(int(w["start"]), int(w["end"]), w.get("count")) for w in old["windows"]]
            done = {k: v for k, v in old.get("done", {}).items() if (root / v["file"]).exists()}
        else:
            _clean_export(root, old)
            windows, _ = self._plan(ftext, start, settled_end(end, settle), stats)
        for tmp in root.glob("*/*.tmp*"):
            tmp.unlink(missing_ok=True)
        state = {
            "version": 1,
            "args": args,
            "windows": [{"start": w.start, "end": w.end, "count": w.count, "key": w.key} for w in windows],
            "done": done,
            "complete": False,
        }
        _atomic_write(ck_path, orjson.dumps(state, option=orjson.OPT_INDENT_2))
        todo = [w for w in windows if w.key not in done]
        finished = [0]

        def write(i: int, w: Window, frame: pl.DataFrame, rep: WindowReport) -> None:
            day = from_ns(w.start).strftime("%Y-%m-%d")
            rel = f"{day}/part-{w.key}.parquet"
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + f".tmp{os.getpid()}")
            frame.write_parquet(tmp)
            os.replace(tmp, target)
            rep.file = rel
            done[w.key] = {"file": rel, "rows": frame.height, "requests": rep.requests,
                           "retries": rep.retries}
            _atomic_write(ck_path, orjson.dumps(state, option=orjson.OPT_INDENT_2))
            finished[0] += 1
            if _after_window is not None:
                _after_window(finished[0])

        fetched = self._run_windows(ftext, todo, on_done=write, progress=progress,
                                    concurrency=concurrency, desc="export")
        by_key = {r.key: r for r in fetched}
        reports: list[WindowReport] = []
        for w in windows:
            if w.key in by_key:
                reports.append(by_key[w.key])
            else:
                d = done[w.key]
                reports.append(WindowReport(key=w.key, start=w.start_time, end=w.end_time,
                                            planned=w.count, rows=d["rows"], file=d["file"],
                                            resumed=True))
        files = [root / done[w.key]["file"] for w in windows if w.key in done]
        rows = sum(done[w.key]["rows"] for w in windows if w.key in done)
        duplicates = 0
        if files:
            ids = pl.scan_parquet([str(f) for f in files]).select(
                n=pl.len(), u=pl.col("TrackId").filter(pl.col("TrackId") != "").n_unique(),
                e=(pl.col("TrackId") == "").sum(),
            ).collect()
            duplicates = int(ids["n"][0] - ids["u"][0] - ids["e"][0])
            if duplicates:
                warnings.warn(f"export {root}: {duplicates} duplicate TrackIds across windows "
                              "(events moved in time while exporting?)", stacklevel=2)
        state["complete"] = True
        _atomic_write(ck_path, orjson.dumps(state, option=orjson.OPT_INDENT_2))
        return ExportReport(
            path=root, windows=reports, rows=rows,
            fetched_rows=sum(r.rows for r in fetched),
            requests=stats.requests + sum(r.requests for r in fetched),
            retries=stats.retries + sum(r.retries for r in fetched),
            duration_s=time.perf_counter() - t0,
            resumed_windows=len(windows) - len(todo), duplicates=duplicates, files=files,
        )

    # ------------------------------------------------------------------ preview

    def preview(self, query: str, *, scope: str | None = None, validate: bool = True,
                params: Mapping[str, Any] | None = None) -> pl.DataFrame:
        """Run a KQL query on the API's preview endpoint (at most 1,000 rows).

        ``params`` (``{"country": "SE", "since": datetime(...), "codes": ["SE", "NO"]}``)
        are sent as typed ``let`` statements in front of the query (see
        :func:`with_params`); the query refers to them by name. Values are never pasted
        into the query text, so a quote in a value stays data.

        The query is checked locally first (``validate=True``): a syntax or semantic error
        raises :class:`~psanalytics.query.kql.KqlError` with the line:column of the text as
        written and a caret, before any request. An error the server reports (HTTP 400) is
        raised as a ``KqlError`` too, its line counted in the text as written. Rows that
        are whole events come back in the canonical schema; a ``project``/``summarize``
        result keeps its own columns. When the API's 1,000-row cap was reached the frame's
        ``truncated`` attribute is True and a :class:`PreviewTruncatedWarning` is issued.
        """
        params = dict(params) if params else None
        if validate:
            from psanalytics.query.kql import validate as kql_validate

            kql_validate(query, params=params)
        sent, n_lets = _with_params(query, params)
        body = {"Query": sent, "Scope": scope or self.scope}
        try:
            _resp, data = send_json(self._client, "POST", f"{_PREFIX_V2}/preview",
                                    content=orjson.dumps(body),
                                    headers={"Content-Type": "application/json"},
                                    policy=self.policy, decode=_decode_json, stats=self.stats)
        except ApiError as exc:
            if exc.status == 400:
                try:
                    from psanalytics.query.kql import KqlError
                except ImportError:  # pragma: no cover
                    raise exc from None
                err = KqlError.from_remote(_raw_message(exc), sent)
                raise _as_written(err, query, n_lets) from exc
            raise
        items = data.get("items", data.get("Items", [])) if isinstance(data, dict) else data
        frame = _preview_frame(items)
        truncated = frame.height >= PREVIEW_CAP
        if truncated:
            warnings.warn(
                f"preview returned {frame.height:,} rows, the API's cap of {PREVIEW_CAP:,}: more rows "
                "may match. Use store.events() with a $filter for everything, or run the KQL "
                "locally with psanalytics.kql() on the fetched frame.",
                PreviewTruncatedWarning, stacklevel=2,
            )
        frame.truncated = truncated  # type: ignore[attr-defined]
        return frame

    # ------------------------------------------------------------------ deletes

    def delete(self, scope: str, track_id: str) -> bool:
        """Delete one event. True when deleted, False when the API says it does not exist.

        Retries 500 and honours 429 ``Retry-After`` (the pending-deletion limit); other
        errors raise :class:`~psanalytics.api.http.ApiError`.
        """
        return self._delete(scope, track_id, self.stats)

    def _delete(self, scope: str, track_id: str, stats: RequestStats) -> bool:
        url = f"{_PREFIX_V2}/{_seg(scope)}/{_seg(track_id)}"
        try:
            send_with_retries(self._client, "DELETE", url, policy=self.policy,
                              stats=_Tee([stats, self.stats]))
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def delete_many(self, events: pl.DataFrame | Iterable[str], *, scope: str | None = None,
                    concurrency: int | None = None, progress: bool | None = None) -> DeleteReport:
        """Delete many events (a frame with ``TrackId`` and optionally ``Scope``, or ids).

        Returns a :class:`DeleteReport` of what was deleted, what was not found and what
        failed (with the error), so nothing is lost if the pending-deletion limit is hit:
        once the server asks to wait longer than ``policy.max_retry_after`` the remaining
        ids are not sent and are listed as failed with that reason.
        """
        pairs: list[tuple[str, str]]
        if isinstance(events, pl.DataFrame):
            if "TrackId" not in events.columns:
                raise ValueError("delete_many needs a TrackId column")
            ids = events.get_column("TrackId").cast(pl.String).to_list()
            scopes = (events.get_column("Scope").cast(pl.String).to_list() if "Scope" in events.columns
                      else [None] * len(ids))
            pairs = [(s or scope or self.scope, i) for s, i in zip(scopes, ids, strict=True)]
        else:
            pairs = [(scope or self.scope, str(i)) for i in events]
        report = DeleteReport()
        stats = RequestStats()
        lock = threading.Lock()
        bar = _progress(len(pairs), "delete", self.progress if progress is None else progress, "ev")

        stop: list[str] = []

        def work(pair: tuple[str, str]) -> None:
            sc, tid = pair
            if stop:
                with lock:
                    report.failed.append((sc, tid, f"not sent: {stop[0]}"))
                bar.update(1)
                return
            try:
                ok = self._delete(sc, tid, stats)
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
            with ThreadPoolExecutor(max_workers=min(concurrency or self.concurrency, max(1, len(pairs)))) as ex:
                list(ex.map(work, pairs))
        finally:
            bar.close()
        report.requests, report.retries = stats.requests, stats.retries
        return report

    # ------------------------------------------------------------------ tracking

    def track_batch(self, bodies: Sequence[Mapping[str, Any]]) -> SendResult:
        """One ``POST api/v1.0/TrackBulk`` of at most 100 Tracking API bodies (camelCase
        dicts, each at most 256 KB encoded), with retries. Returns a SendResult."""
        if len(bodies) > MAX_BULK_EVENTS:
            raise ValueError(f"TrackBulk takes at most {MAX_BULK_EVENTS} events, got {len(bodies)}")
        encoded = [orjson.dumps(b) for b in bodies]
        for i, e in enumerate(encoded):
            if len(e) > MAX_EVENT_BYTES:
                raise ValueError(f"event {i} is {len(e):,} bytes encoded, over the Tracking API's "
                                 f"{MAX_EVENT_BYTES:,}-byte limit per event")
        data = b"[" + b",".join(encoded) + b"]"
        t0 = time.perf_counter()
        resp = send_with_retries(self._tracking_client, "POST", "/api/v1.0/TrackBulk", content=data,
                                 headers={"Content-Type": "application/json"}, policy=self.policy,
                                 stats=self.stats)
        attempts = int(resp.extensions.get("psanalytics_attempts", 1))
        return SendResult(status=resp.status_code, attempts=attempts, retries=attempts - 1,
                          elapsed_s=time.perf_counter() - t0)

    def track(self, events: pl.DataFrame | Sequence[Mapping[str, Any]], *,
              progress: bool | None = None) -> TrackReport:
        """Send events to the Tracking API in batches of at most 100 events and 256 KB.

        ``events`` is a canonical frame (converted to camelCase Tracking bodies: deviceId,
        eventType, value, eventTime, pageUri, pageTitle, scope, remoteAddress, user,
        payload) or a list of Tracking bodies as dicts.
        """
        bodies = tracking_bodies(events) if isinstance(events, pl.DataFrame) else list(events)
        t0 = time.perf_counter()
        before_r, before_q = self.stats.retries, self.stats.requests
        batches = list(_batches(bodies))
        bar = _progress(len(bodies), "track", self.progress if progress is None else progress)
        try:
            for b in batches:
                self.track_batch(b)
                bar.update(len(b))
        finally:
            bar.close()
        return TrackReport(events=len(bodies), batches=len(batches),
                           requests=self.stats.requests - before_q,
                           retries=self.stats.retries - before_r,
                           elapsed_s=time.perf_counter() - t0)


# --------------------------------------------------------------------------- helpers 2


class _Tee:
    """Record into several RequestStats at once."""

    def __init__(self, targets: list[RequestStats]) -> None:
        self.targets = targets

    def _record(self, **kw: Any) -> None:
        for t in self.targets:
            t._record(**kw)


def _check_order(frame: pl.DataFrame, last_time: Any, text: str | None, skip: int) -> None:
    times = frame.get_column("EventTime")
    if not times.is_sorted() or (last_time is not None and times[0] < last_time):
        raise OrderError(
            f"GET {_PREFIX_V2} $filter={text} $skip={skip}: rows came back out of EventTime "
            f"order although $orderby={ORDERBY} was sent; paging cannot be exact"
        )


def _raw_message(exc: ApiError) -> str:
    """The server's ``error.message`` (without the code prefix), for KQL position mapping."""
    if exc.body:
        try:
            data = orjson.loads(exc.body)
            msg = data["error"]["message"]
            if isinstance(msg, str) and msg:
                return redact(msg)
        except (orjson.JSONDecodeError, KeyError, TypeError):
            pass
    return exc.server_message


def settled_end(end: TimeLike | None, settle: Any, now_ns: int | None = None) -> TimeLike | None:
    """``end`` moved back to ``now - settle`` when it is later (or open): only windows the
    server has finished writing are read. ``settle`` is ``"5m"``, ``"1h"``, a timedelta or
    seconds; None keeps ``end``."""
    if settle is None:
        return end
    from psanalytics.sessions import SessionizeError, parse_duration

    try:
        lag = parse_duration(settle, name="settle")
    except SessionizeError as exc:
        raise ValueError(str(exc)) from None
    cutoff = (time.time_ns() if now_ns is None else now_ns) - int(lag or 0)
    cutoff -= cutoff % TICK_NS
    if end is None:
        return cutoff
    return min(to_ns(end), cutoff)


def _range_filter(ftext: str | None, start: TimeLike | None, end: TimeLike | None) -> str | None:
    """``(ftext) and EventTime ge <start> and EventTime lt <end>`` (open ends left out)."""
    parts = []
    if start is not None:
        lo = to_ns(start)
        parts.append(f"EventTime ge {format_ns(lo - lo % TICK_NS)}")
    if end is not None:
        hi = to_ns(end)
        parts.append(f"EventTime lt {format_ns(-((-hi) // TICK_NS) * TICK_NS)}")
    if not parts:
        return ftext
    rng = " and ".join(parts)
    return rng if not ftext else f"({ftext}) and {rng}"


_KQL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def with_params(query: str, params: Mapping[str, Any] | None) -> str:
    """The KQL text :meth:`ProfileStore.preview` sends: ``params`` as typed leading lets.

    Each parameter becomes a ``let name = <typed literal>;`` statement on its own line,
    built as an AST node (:func:`psanalytics.query.kql.compiler.param_literal`: string,
    long, real, bool, datetime, timespan or dynamic list) and formatted by the KQL
    formatter; the query follows unchanged on the next line, so line ``L`` of the query
    as written is line ``L + len(params)`` of the text sent. Values never touch the
    query text. No params: the query is returned as is.

    >>> with_params("Events | where CountryCode in (codes)", {"codes": ["SE", "NO"]})
    'let codes = dynamic(["SE", "NO"]);\nEvents | where CountryCode in (codes)'
    """
    return _with_params(query, params)[0]


def _with_params(query: str, params: Mapping[str, Any] | None) -> tuple[str, int]:
    """(text to send, number of let lines put in front)."""
    if not params:
        return query, 0
    from psanalytics.query.kql import format as kql_format
    from psanalytics.query.kql import nodes
    from psanalytics.query.kql import parse as kql_parse
    from psanalytics.query.kql.compiler import param_literal
    from psanalytics.query.kql.errors import KqlSemanticError

    source = kql_parse("Events").body
    lines = []
    for name, value in params.items():
        if not isinstance(name, str) or not _KQL_NAME.fullmatch(name):
            raise KqlSemanticError(f"parameter name {name!r} is not a valid KQL identifier")
        let = nodes.Let(name, param_literal(name, value))
        # The formatter writes each let as one line (strings escape their newlines).
        line = kql_format(nodes.Query([let], source)).split("\n", 1)[0]
        if not (line.startswith("let ") and line.endswith(";")):  # pragma: no cover - guard
            raise KqlSemanticError(f"parameter {name!r}: cannot be written as one let line")
        lines.append(line)
    return "\n".join([*lines, query]), len(lines)


def _as_written(err: Any, query: str, n_lets: int) -> Any:
    """A server error on the text sent, re-pointed at the query as written (the let lines
    in front shift it by ``n_lets`` lines; the query's own lines are sent unchanged)."""
    if not n_lets or err.line is None or err.line <= n_lets:
        return err
    from psanalytics.query.kql.errors import make_snippet

    line = err.line - n_lets
    # The server's snippet (if any) already shows the user's line, unchanged.
    snippet = err.snippet or make_snippet(query, line, err.column or 1)
    return type(err)(err.message, line=line, column=err.column, snippet=snippet,
                     suggestion=err.suggestion)


def _seg(value: str) -> str:
    from urllib.parse import quote

    return quote(str(value), safe="")


def _preview_frame(items: list[Any]) -> pl.DataFrame:
    if not items:
        return schema.empty_frame()
    keys = set(items[0]) if isinstance(items[0], dict) else set()
    if {"TrackId", "EventTime", "EventType", "DeviceId"} <= keys and keys <= _API_KEYS | {"Headers"}:
        return parse_items(items)
    # Projected / summarized columns: keep them as they are (nested values as JSON text).
    rows = [{k: (orjson.dumps(v).decode() if isinstance(v, (dict, list)) else v) for k, v in it.items()}
            for it in items]
    frame = pl.from_dicts(rows, infer_schema_length=None)
    if "EventTime" in frame.columns and frame.schema["EventTime"] == pl.String:
        frame = frame.with_columns(schema.parse_time_expr(pl.col("EventTime")).alias("EventTime"))
    return frame


def tracking_bodies(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Canonical frame -> Tracking API bodies (camelCase; Payload decoded to an object)."""
    df = schema.normalize(frame)
    times = df.select(schema.format_time_expr(pl.col("EventTime"))).to_series().to_list()
    out = []
    for row, t in zip(df.iter_rows(named=True), times, strict=True):
        body: dict[str, Any] = {
            "deviceId": row["DeviceId"],
            "eventType": row["EventType"],
            "value": row["Value"],
        }
        if t:
            body["eventTime"] = t
        for src, dst in (("PageUri", "pageUri"), ("PageTitle", "pageTitle"), ("Scope", "scope"),
                         ("RemoteAddress", "remoteAddress")):
            if row[src]:
                body[dst] = row[src]
        user = row["User"] or {}
        if user.get("Email") or user.get("Name"):
            body["user"] = {"email": user.get("Email", ""), "name": user.get("Name", "")}
        if row["Payload"] is not None:
            try:
                body["payload"] = orjson.loads(row["Payload"])
            except orjson.JSONDecodeError:
                body["payload"] = row["Payload"]
        out.append(body)
    return out


def _batches(bodies: Sequence[Mapping[str, Any]]) -> Iterator[list[Mapping[str, Any]]]:
    """Split into batches of <= 100 events whose encoded array stays <= 256 KB."""
    batch: list[Mapping[str, Any]] = []
    size = 2
    for i, b in enumerate(bodies):
        n = len(orjson.dumps(b))
        if n + 2 > MAX_EVENT_BYTES:
            raise ValueError(f"event {i} is {n:,} bytes encoded, over the Tracking API's "
                             f"{MAX_EVENT_BYTES:,}-byte limit")
        if batch and (len(batch) >= MAX_BULK_EVENTS or size + n + 1 > MAX_EVENT_BYTES):
            yield batch
            batch, size = [], 2
        batch.append(b)
        size += n + 1
    if batch:
        yield batch


def _read_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


_DAY_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _clean_export(root: Path, old: dict[str, Any] | None) -> None:
    """Remove part files of an earlier export in ``root`` (only files we wrote)."""
    for d in root.iterdir():
        if d.is_dir() and _DAY_DIR.match(d.name):
            for f in d.glob("part-*.parquet*"):
                f.unlink()
            try:
                d.rmdir()
            except OSError:
                pass  # the user keeps other files there
    (root / _CHECKPOINT).unlink(missing_ok=True)


# --------------------------------------------------------------------------- connect


def connect(url: str | None = None, api_key: str | None = None, *, scope: str = "default",
            **options: Any) -> ProfileStore:
    """Connect to Profile Store.

    ``url`` and ``api_key`` default to the ``PSANALYTICS_URL`` and ``PSANALYTICS_API_KEY``
    environment variables. With neither set, an in-process emulator seeded with the sample
    data is started (no sockets, no credentials) and one line on stderr says so; pass
    ``quiet=True`` to silence it. ``options`` go to :class:`ProfileStore` (``transport``,
    ``policy``, ``concurrency``, ``page_size``, ``progress``, ``timeout``, ``auth``,
    ``tracking_key``).
    """
    quiet = bool(options.pop("quiet", False))
    url = url or os.environ.get("PSANALYTICS_URL") or None
    api_key = api_key or os.environ.get("PSANALYTICS_API_KEY") or None
    if url is None and api_key is None and options.get("transport") is None:
        from psanalytics.emulator import Emulator

        emu = Emulator()
        if not quiet:
            n = emu.events().height
            print(
                f"psanalytics: no url or API key configured (PSANALYTICS_URL / PSANALYTICS_API_KEY): "
                f"using the in-process emulator with {n:,} sample events",
                file=sys.stderr,
            )
        return ProfileStore(emu.url, emu.api_key, scope=scope, transport=emu.transport(),
                            emulator=emu, **options)
    if url is None:
        if options.get("transport") is not None:
            url = "http://psanalytics-emulator"
        else:
            raise ValueError("an API key was given but no url: pass url= or set PSANALYTICS_URL")
    return ProfileStore(url, api_key, scope=scope, **options)
