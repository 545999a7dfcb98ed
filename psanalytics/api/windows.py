"""Time-window planner: keep every TrackEvents query under the 10,000-row result window.

Profile Store answers at most ``$skip + $top < 10,000`` rows for one query, so a range
holding more matching events is cut into half-open ``[t0, t1)`` windows on ``EventTime``
that tile the range with no gap and no overlap, each holding at most ``limit`` (9,999)
events. Times are integers in nanoseconds since the epoch, always multiples of 100 ns
(the API's resolution, 7 fractional digits), so boundaries print exactly in a ``$filter``.

The planner only needs a ``count(start_ns, end_ns) -> int`` function (the client asks the
server for ``total`` with a one-row query). A window whose count exceeds the limit is split
into enough equal parts (recursively); adjacent small windows are merged back up to the
limit so the fetch needs few requests. One instant (100 ns) holding more matching events
than the limit cannot be fetched exactly: :class:`WindowOverflowError` says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from psanalytics._time import TICK_NS, ceil_tick, floor_tick, format_ns, from_ns, to_ns
from psanalytics.errors import ArgumentError, PsaError
from psanalytics.wire.limits import RESULT_WINDOW as _RESULT_WINDOW

__all__ = [
    "TICK_NS",
    "RESULT_WINDOW",
    "Window",
    "WindowOverflowError",
    "plan_windows",
    "page_requests",
    "window_filter",
    "to_ns",
    "from_ns",
    "format_ns",
]

#: Largest ``$skip + $top`` we ever send (the API requires it to be below 10,000);
#: defined with the other client-side limits in :mod:`psanalytics.wire.limits`.
RESULT_WINDOW = _RESULT_WINDOW


class WindowOverflowError(PsaError):
    """More events share one EventTime instant than one query can return."""

    def __init__(self, instant_ns: int, count: int, limit: int, *, field: str = "EventTime",
                 noun: str = "events") -> None:
        self.instant = from_ns(instant_ns)
        self.instant_ns = instant_ns
        self.count = count
        self.limit = limit
        super().__init__(
            f"{count:,} matching {noun} share the single instant {field} = {format_ns(instant_ns)}; "
            f"the API returns at most {limit:,} rows per query, so they cannot all be fetched "
            f"exactly. Narrow the filter (e.g. by EventType or DeviceId) for that instant."
        )


@dataclass(frozen=True, order=True)
class Window:
    """A half-open ``[start, end)`` interval on EventTime (int ns), with its planned count."""

    start: int
    end: int
    count: int | None = None

    @property
    def start_time(self) -> datetime:
        return from_ns(self.start)

    @property
    def end_time(self) -> datetime:
        return from_ns(self.end)

    @property
    def key(self) -> str:
        """A stable, file-name-safe identifier: ``<start>_<end>`` in 100 ns ticks."""
        return f"{self.start // TICK_NS:020d}_{self.end // TICK_NS:020d}"

    def filter(self, base: str | None = None, field: str = "EventTime") -> str:
        """The ``$filter`` for this window, ANDed with ``base`` (kept as one conjunct);
        ``field`` is the time property the window cuts."""
        return window_filter(base, self.start, self.end, field)

    def __repr__(self) -> str:
        c = "" if self.count is None else f", count={self.count}"
        return f"Window({format_ns(self.start)} .. {format_ns(self.end)}{c})"


def window_filter(base: str | None, start_ns: int, end_ns: int, field: str = "EventTime") -> str:
    """``(base) and EventTime ge <start> and EventTime lt <end>`` (7-digit UTC times;
    ``field`` names another time property)."""
    rng = f"{field} ge {format_ns(start_ns)} and {field} lt {format_ns(end_ns)}"
    if base is None or not base.strip():
        return rng
    return f"({base}) and {rng}"


def plan_windows(
    start_ns: int,
    end_ns: int,
    count: Callable[[int, int], int],
    *,
    limit: int = RESULT_WINDOW,
    target: int | None = None,
    merge: bool = True,
    total: int | None = None,
    count_many: Callable[[list[tuple[int, int]]], list[int]] | None = None,
    overflow: list[Window] | None = None,
) -> list[Window]:
    """Windows tiling ``[start_ns, end_ns)``, each holding at most ``limit`` events.

    ``count(a, b)`` must return how many matching events have ``a <= EventTime < b``.
    ``target`` (default ``limit * 3 // 4``) is the size aimed for when splitting, leaving
    head-room; ``merge`` joins neighbours while their sum stays within ``limit``;
    ``total`` is the count of the whole range if already known; ``count_many`` (optional)
    counts the parts of one split together (e.g. concurrently). Raises
    :class:`WindowOverflowError` when one 100 ns instant holds more than ``limit`` events,
    unless ``overflow`` is a list: such one-tick windows are then appended to it and left
    out of the plan (their neighbours are never merged across them).
    """
    if limit < 1:
        raise ArgumentError("limit must be at least 1")
    start_ns, end_ns = floor_tick(start_ns), ceil_tick(end_ns)
    if end_ns <= start_ns:
        return []
    target = max(1, target if target is not None else limit * 3 // 4)
    out: list[Window] = []
    # Depth-first, left to right, so windows come out in time order.
    stack: list[Window] = [Window(start_ns, end_ns, total)]
    while stack:
        w = stack.pop()
        c = w.count if w.count is not None else count(w.start, w.end)
        if c <= limit:
            out.append(Window(w.start, w.end, c))
            continue
        ticks = (w.end - w.start) // TICK_NS
        if ticks <= 1:
            if overflow is None:
                raise WindowOverflowError(w.start, c, limit)
            overflow.append(Window(w.start, w.end, c))
            out.append(Window(w.start, w.end, c))  # a wall for _merge (count > limit)
            continue
        k = min(ticks, max(2, math.ceil(c / target)))
        bounds = [w.start + ((ticks * i) // k) * TICK_NS for i in range(k)] + [w.end]
        spans = [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
        if count_many is not None:
            counts: list[int | None] = list(count_many(spans))
        else:
            counts = [None] * len(spans)
        stack.extend(reversed([Window(a, b, c) for (a, b), c in zip(spans, counts, strict=True)]))
    if merge:
        out = _merge(out, limit)
    return [w for w in out if (w.count or 0) <= limit]


def _merge(windows: list[Window], limit: int) -> list[Window]:
    merged: list[Window] = []
    for w in windows:
        if merged and (merged[-1].count or 0) + (w.count or 0) <= limit:
            last = merged[-1]
            merged[-1] = Window(last.start, w.end, (last.count or 0) + (w.count or 0))
        else:
            merged.append(w)
    return merged


def page_requests(count: int, page_size: int = RESULT_WINDOW, limit: int = RESULT_WINDOW) -> Iterator[tuple[int, int]]:
    """``($skip, $top)`` pairs that page through ``count`` rows with ``skip + top <= limit``.

    The last page's ``$top`` shrinks so the sum never passes the limit; a ``count`` above
    the limit is refused (plan smaller windows first).
    """
    if count > limit:
        raise ArgumentError(f"{count} rows cannot be paged under a {limit}-row window; split it")
    page_size = max(1, min(page_size, limit))
    skip = 0
    while skip < count:
        top = min(page_size, limit - skip)
        yield skip, top
        skip += top
