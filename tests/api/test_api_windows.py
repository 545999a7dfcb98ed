"""Window planner: exact unit cases and hypothesis properties (tiling, limits, overflow)."""

from __future__ import annotations

import bisect
from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from psanalytics.api.windows import (
    RESULT_WINDOW,
    TICK_NS,
    Window,
    WindowOverflowError,
    format_ns,
    page_requests,
    plan_windows,
    to_ns,
    window_filter,
)


def counter_for(times: list[int]):
    s = sorted(times)
    calls: list[tuple[int, int]] = []

    def count(a: int, b: int) -> int:
        calls.append((a, b))
        return bisect.bisect_left(s, b) - bisect.bisect_left(s, a)

    count.calls = calls  # type: ignore[attr-defined]
    return count


def test_time_formatting_is_seven_digits_and_exact():
    ns = to_ns("2017-09-15T07:16:34.7957819Z")
    assert format_ns(ns) == "2017-09-15T07:16:34.7957819Z"
    assert to_ns(datetime(2020, 1, 1, tzinfo=UTC)) == 1_577_836_800_000_000_000
    assert to_ns("2020-01-01T02:00:00+02:00") == 1_577_836_800_000_000_000
    assert format_ns(1_577_836_800_000_000_100) == "2020-01-01T00:00:00.0000001Z"
    with pytest.raises(ValueError, match="not an ISO 8601 time: 'yesterday'"):
        to_ns("yesterday")


def test_window_filter_text():
    w = Window(to_ns("2020-01-01T00:00:00Z"), to_ns("2020-01-02T00:00:00Z"))
    assert w.filter() == "EventTime ge 2020-01-01T00:00:00.0000000Z and EventTime lt 2020-01-02T00:00:00.0000000Z"
    assert w.filter("EventType eq 'order' or Value eq x") == (
        "(EventType eq 'order' or Value eq x) and EventTime ge 2020-01-01T00:00:00.0000000Z "
        "and EventTime lt 2020-01-02T00:00:00.0000000Z"
    )
    assert window_filter("  ", 0, 100) == "EventTime ge 1970-01-01T00:00:00.0000000Z and EventTime lt 1970-01-01T00:00:00.0000001Z"


def test_small_range_is_one_window_with_one_count():
    count = counter_for([100, 200, 300])
    assert plan_windows(0, 1000, count) == [Window(0, 1000, 3)]
    assert count.calls == [(0, 1000)]
    assert plan_windows(500, 500, count) == []


def test_splits_dense_range_and_merges_back():
    times = [i * TICK_NS for i in range(25)]  # 25 events, one per tick
    w = plan_windows(0, 25 * TICK_NS, counter_for(times), limit=10)
    # 25 > 10: split into ceil(25 / target 7) = 4 equal parts; 6 + 6 > 10 so no merge.
    assert w == [Window(0, 600, 6), Window(600, 1200, 6), Window(1200, 1800, 6), Window(1800, 2500, 7)]
    # Sparse neighbours are merged back up to the limit.
    times = [0, 100, 200] + [i * TICK_NS for i in range(1000, 1012)]
    w = plan_windows(0, 2000 * TICK_NS, counter_for(times), limit=10)
    assert w == [Window(0, 99_900, 3), Window(99_900, 100_900, 9), Window(100_900, 200_000, 3)]
    assert len(plan_windows(0, 2000 * TICK_NS, counter_for(times), limit=10, merge=False)) == 9


def test_instant_overflow_is_a_clear_error():
    t = to_ns("2021-03-04T05:06:07.1234567Z")
    times = [t] * 11 + [t + TICK_NS]
    with pytest.raises(WindowOverflowError) as ei:
        plan_windows(t - 10**9, t + 10**9, counter_for(times), limit=10)
    assert ei.value.instant_ns == t and ei.value.count == 11
    assert str(ei.value).startswith(
        "11 matching events share the single instant EventTime = 2021-03-04T05:06:07.1234567Z; "
        "the API returns at most 10 rows per query"
    )
    # Exactly the limit at one instant is fine.
    w = plan_windows(t - 10**9, t + 10**9, counter_for([t] * 10 + [t + TICK_NS]), limit=10)
    assert [x.count for x in w] == [10, 1]


def test_page_requests_shrink_last_page():
    assert list(page_requests(9999, 4000)) == [(0, 4000), (4000, 4000), (8000, 1999)]
    assert list(page_requests(0)) == []
    assert list(page_requests(9999)) == [(0, 9999)]
    assert list(page_requests(10, 3, limit=10)) == [(0, 3), (3, 3), (6, 3), (9, 1)]
    with pytest.raises(ValueError, match="10000 rows cannot be paged under a 9999-row window"):
        list(page_requests(10_000))


ticks = st.integers(min_value=0, max_value=5_000)


@settings(max_examples=300, deadline=None)
@given(
    times=st.lists(st.one_of(ticks, st.sampled_from([7, 7, 7, 1234, 1234])), max_size=400),
    lo=st.integers(min_value=-50, max_value=3000),
    span=st.integers(min_value=0, max_value=6000),
    limit=st.integers(min_value=1, max_value=60),
    merge=st.booleans(),
    batched=st.booleans(),
)
def test_windows_tile_the_range_and_respect_the_limit(times, lo, span, limit, merge, batched):
    times_ns = [t * TICK_NS for t in times]
    start, end = lo * TICK_NS, (lo + span) * TICK_NS
    inside = Counter(t for t in times_ns if start <= t < end)
    count = counter_for(times_ns)
    many = (lambda spans: [count(a, b) for a, b in spans]) if batched else None
    if any(c > limit for c in inside.values()):
        with pytest.raises(WindowOverflowError) as ei:
            plan_windows(start, end, count, limit=limit, merge=merge, count_many=many)
        assert inside[ei.value.instant_ns] > limit
        return
    windows = plan_windows(start, end, count, limit=limit, merge=merge, count_many=many)
    if span == 0:
        assert windows == []
        return
    # Tiles: first starts at start, last ends at end, each starts where the previous ended.
    assert windows[0].start == start and windows[-1].end == end
    for a, b in zip(windows, windows[1:], strict=False):
        assert a.end == b.start
    for w in windows:
        assert w.start < w.end and w.start % TICK_NS == 0 and w.end % TICK_NS == 0
        # Every window's planned count is its true count, and fits the window.
        assert w.count == count(w.start, w.end) <= limit
        # Every request made to fetch it respects $skip + $top <= limit.
        pages = list(page_requests(w.count, page_size=max(1, limit // 3), limit=limit))
        assert all(skip + top <= limit for skip, top in pages)
        assert sum(top for _, top in pages) >= w.count
    # Every event in the range is in exactly one window.
    assert sum(w.count for w in windows) == sum(inside.values())
    # Every count query asked about a sub-range of the requested range.
    assert all(start <= a < b <= end for a, b in count.calls)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(min_value=0, max_value=20_000_000), size=st.integers(min_value=50, max_value=20_000))
def test_page_requests_never_pass_the_window(n, size):
    n = n % (RESULT_WINDOW + 1)
    pages = list(page_requests(n, size))
    assert all(s + t <= RESULT_WINDOW for s, t in pages)
    assert [s for s, _ in pages] == [sum(t for _, t in pages[:i]) for i in range(len(pages))]
    if n == 0:
        assert pages == []
    else:  # pages cover [0, n): the last one starts before n
        assert pages[-1][0] < n <= pages[-1][0] + pages[-1][1]
