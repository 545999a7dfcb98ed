"""The emulator's in-memory event store, sorted by ``EventTime`` then ``TrackId``.

A query slices its time window by binary search on the sorted times and evaluates the
filter only on that slice, so a one-hour page over 10 M events touches one hour of rows.
New events (Tracking API) go to a small sorted side segment that is merged into the main
segment when it grows; deletions hide rows at once (two-stage) and ``purge()`` drops them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from psanalytics import schema
from psanalytics.query.odata import split_filter
from psanalytics.wire import api_json

_SORT = ["EventTime", "TrackId"]
#: Name of the column that carries the encoded rows through a query (never returned).
SOURCE_COLUMN = "__source__"
_MIN_NS = np.iinfo(np.int64).min
_DELTA_MAX = 50_000  # side segment size that triggers a merge
#: Main segments up to this many rows keep each event's API JSON text ready (like a
#: document store's stored source), so a page is a slice and a join, not an encode.
SOURCE_MAX_ROWS = 2_000_000


def _times(frame: pl.DataFrame) -> np.ndarray:
    t = frame.get_column("EventTime").dt.epoch("ns")
    if t.null_count():
        t = t.fill_null(_MIN_NS)
    return t.to_numpy().astype(np.int64, copy=False)


def _is_sorted(frame: pl.DataFrame, times: np.ndarray) -> bool:
    """True when rows are in (EventTime, TrackId) order: checks times, then the ties only."""
    if len(times) < 2:
        return True
    d = np.diff(times)
    if (d < 0).any():
        return False
    ties = np.flatnonzero(d == 0)
    if len(ties) == 0:
        return True
    tid = frame.get_column("TrackId")
    a = tid.gather(ties)
    b = tid.gather(ties + 1)
    return bool((a <= b).all())


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    if frame.height < 2:
        return frame
    return frame.sort(_SORT, nulls_last=False, maintain_order=True)


@dataclass
class _Segment:
    frame: pl.DataFrame
    times: np.ndarray
    hidden: np.ndarray
    #: Each row's API JSON text (``schema.api_json_lines``), once encoded; None until then.
    source: pl.Series | None = None
    encoded: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def of(cls, frame: pl.DataFrame) -> _Segment:
        times = _times(frame)
        if not _is_sorted(frame, times):  # an already sorted frame is kept as is (no copy)
            frame = _sorted(frame)
            times = _times(frame)
        return cls(frame, times, np.zeros(frame.height, dtype=bool))

    def encode_source(self) -> None:
        """Encode every row's JSON text (Polars releases the GIL; run off the event loop).
        Queries made before it is done encode their page on the fly instead."""
        try:
            self.source = api_json.api_json_lines(self.frame).alias(SOURCE_COLUMN)
        finally:
            self.encoded.set()

    def window(self, lo: int | None, lo_inc: bool, hi: int | None, hi_inc: bool,
               with_source: bool = False) -> pl.DataFrame:
        """Rows in the time range (hidden ones dropped). ``with_source`` adds the rows'
        JSON text as column ``SOURCE_COLUMN`` when it has been encoded."""
        a = 0 if lo is None else int(np.searchsorted(self.times, lo, "left" if lo_inc else "right"))
        b = len(self.times) if hi is None else int(
            np.searchsorted(self.times, hi, "right" if hi_inc else "left"))
        src = self.source if with_source else None
        if b <= a:
            sub = self.frame.clear()
            return sub.with_columns(src.clear()) if src is not None else sub
        sub = self.frame.slice(a, b - a)
        if src is not None:
            sub = sub.with_columns(src.slice(a, b - a))
        mask = self.hidden[a:b]
        if mask.any():
            sub = sub.filter(pl.Series(~mask))
        return sub

    def visible(self) -> pl.DataFrame:
        if self.hidden.any():
            return self.frame.filter(pl.Series(~self.hidden))
        return self.frame


@dataclass
class QueryResult:
    """One page: the rows, ``total`` matches of the whole filter, and (when the store had
    them ready) the rows' API JSON text in ``source``."""

    page: pl.DataFrame
    total: int
    source: pl.Series | None = None


class EventStore:
    """Track events in memory, sorted, with two-stage deletion. Thread-safe."""

    def __init__(self, events: pl.DataFrame | None = None, *, lenient: bool = False):
        frame = schema.normalize(events) if events is not None else schema.empty_frame()
        self.lenient = lenient
        self._lock = threading.RLock()
        self._main = _Segment.of(frame)
        self._delta = _Segment.of(schema.empty_frame())
        self._pending = 0
        self.deleted_total = 0
        self.purged_total = 0
        self.tracked_total = 0
        self.version = 0
        self._cache: OrderedDict[tuple, pl.DataFrame] = OrderedDict()
        self._start_source(self._main)

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        with self._lock:
            return (self._main.frame.height - int(self._main.hidden.sum())
                    + self._delta.frame.height - int(self._delta.hidden.sum()))

    @property
    def pending_deletions(self) -> int:
        return self._pending

    def events(self) -> pl.DataFrame:
        """Every visible event, sorted by EventTime then TrackId."""
        with self._lock:
            main, delta = self._main.visible(), self._delta.visible()
        if delta.height == 0:
            return main
        return _sorted(pl.concat([main, delta]))

    def _start_source(self, seg: _Segment) -> None:
        """Encode a new main segment's rows in the background (bounded by SOURCE_MAX_ROWS)."""
        if 0 < seg.frame.height <= SOURCE_MAX_ROWS:
            threading.Thread(target=seg.encode_source, name="psanalytics-emulator-encode",
                             daemon=True).start()
        else:
            seg.encoded.set()

    def wait_encoded(self, timeout: float | None = None) -> bool:
        """Wait until the main segment's rows have their JSON text ready (pages are then a
        slice and a join). Pages are right either way; this is for steady timings."""
        return self._main.encoded.wait(timeout)

    def _window(self, lo, lo_inc, hi, hi_inc, with_source: bool = False) -> pl.DataFrame:
        with self._lock:
            m = self._main.window(lo, lo_inc, hi, hi_inc, with_source)
            d = self._delta.window(lo, lo_inc, hi, hi_inc) if self._delta.frame.height else None
        if d is None or d.height == 0:
            return m
        if SOURCE_COLUMN in m.columns:
            m = m.drop(SOURCE_COLUMN)  # the side segment has no source: encode this one
        return _sorted(pl.concat([m, d]))

    def matches(self, filter_text: str | None, orderby: list[tuple[str, bool]] | None = None,
                *, with_source: bool = False) -> pl.DataFrame:
        """All visible events the filter matches, in the requested order (cached per version).

        ``with_source`` keeps the rows' encoded JSON (when ready) in column
        ``SOURCE_COLUMN``. Raises :class:`psanalytics.query.odata.ODataError` on a bad filter.
        """
        key = (filter_text or "", tuple(orderby or ()), self.version, with_source)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        if filter_text:
            (lo, lo_inc, hi, hi_inc), expr = split_filter(filter_text, lenient=self.lenient)
            if lo is None and hi is not None:
                lo, lo_inc = _MIN_NS, False  # a null EventTime matches no time comparison
        else:
            (lo, lo_inc, hi, hi_inc), expr = (None, True, None, True), None
        rows = self._window(lo, lo_inc, hi, hi_inc, with_source)
        if expr is not None:
            rows = rows.filter(expr)
        if orderby and [(c, d) for c, d in orderby] not in ([("EventTime", False)],
                                                              [("EventTime", False), ("TrackId", False)]):
            keys: list[pl.Expr] = []
            desc: list[bool] = []
            for name, d in orderby:
                keys.append(pl.col("User").struct.field(name[5:]) if name.startswith("User.") else pl.col(name))
                desc.append(d)
            for name in _SORT:
                if name not in [n for n, _ in orderby]:
                    keys.append(pl.col(name))
                    desc.append(False)
            rows = rows.sort(keys, descending=desc, nulls_last=True, maintain_order=True)
        with self._lock:
            if key[2] == self.version:
                self._cache[key] = rows
                while len(self._cache) > 8:
                    self._cache.popitem(last=False)
        return rows

    def query(self, filter_text: str | None, *, orderby: list[tuple[str, bool]] | None = None,
              skip: int = 0, top: int = 100, with_source: bool = False) -> QueryResult:
        rows = self.matches(filter_text, orderby, with_source=with_source)
        page = rows.slice(skip, top)
        if SOURCE_COLUMN in page.columns:
            return QueryResult(page.drop(SOURCE_COLUMN), rows.height, page.get_column(SOURCE_COLUMN))
        return QueryResult(page, rows.height)

    # ------------------------------------------------------------------ writing
    def _changed(self) -> None:
        self.version += 1
        self._cache.clear()

    def append(self, events: pl.DataFrame) -> int:
        """Add events (canonical frame); they are queryable at once. Returns the count."""
        events = schema.normalize(events)
        if events.height == 0:
            return 0
        with self._lock:
            delta = self._delta.visible()
            merged = _Segment.of(pl.concat([delta, events]) if delta.height else events)
            if merged.frame.height > _DELTA_MAX:
                hidden_main = self._main.hidden
                main = self._main.frame.filter(pl.Series(~hidden_main)) if hidden_main.any() else self._main.frame
                self._pending -= int(hidden_main.sum()) + int(self._delta.hidden.sum())
                self.purged_total += int(hidden_main.sum()) + int(self._delta.hidden.sum())
                self._main = _Segment.of(pl.concat([main, merged.frame]))
                self._start_source(self._main)
                self._delta = _Segment.of(schema.empty_frame())
            else:
                self._pending -= int(self._delta.hidden.sum())
                self.purged_total += int(self._delta.hidden.sum())
                self._delta = merged
            self.tracked_total += events.height
            self._changed()
        return events.height

    def find(self, scope: str, track_id: str) -> tuple[str, int] | None:
        """``("main"|"delta", row)`` of the visible event with this scope and TrackId."""
        want_default = scope == "default"
        for name in ("delta", "main"):
            seg: _Segment = getattr(self, f"_{name}")
            if seg.frame.height == 0:
                continue
            tid = seg.frame.get_column("TrackId")
            hits = (tid == track_id).arg_true()
            for row in hits.to_list():
                if seg.hidden[row]:
                    continue
                sc = seg.frame.get_column("Scope")[row]
                if sc == scope or (want_default and sc == ""):
                    return name, row
        return None

    def delete(self, scope: str, track_id: str) -> bool:
        """Hide one event (two-stage deletion). False when there is no such visible event."""
        with self._lock:
            hit = self.find(scope, track_id)
            if hit is None:
                return False
            seg: _Segment = getattr(self, f"_{hit[0]}")
            seg.hidden[hit[1]] = True
            self._pending += 1
            self.deleted_total += 1
            self._changed()
            return True

    def purge(self) -> int:
        """Drop hidden events for good (the daily clean-up). Returns how many."""
        with self._lock:
            n = self._pending
            if n:
                old = self._main
                self._main = _Segment.of(old.visible())
                if old.source is not None and self._main.frame.height == old.source.len() - int(old.hidden.sum()):
                    keep = old.source.filter(pl.Series(~old.hidden)) if old.hidden.any() else old.source
                    self._main.source = keep
                    self._main.encoded.set()
                else:
                    self._start_source(self._main)
                self._delta = _Segment.of(self._delta.visible())
                self._pending = 0
                self.purged_total += n
                self._changed()
            return n
