"""Charts of raw track events: events over time, top pages, countries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import polars as pl

from psanalytics.jupyter.charts._base import (
    _EVERY,
    _MAX_BINS,
    HEIGHT,
    MAX_ROWS,
    WIDTH,
    ChartDataError,
    _label_empty,
    _lazy,
    _lump,
    _parse_every,
    _require,
    _ship,
    _top,
    alt,
    url_path,
)


def events_over_time(
    events: Any,
    *,
    every: str | timedelta | None = None,
    by: str | None = "EventType",
    top: int = 8,
    title: str | None = None,
) -> alt.Chart:
    """Line chart of event counts per time bin, one line per value of ``by``.

    ``every`` is the bin (``"15m"``, ``"1h"``, ``"1d"`` ...); by default the smallest bin that
    keeps the chart under 150 points per line. Only the ``top`` most frequent values of ``by``
    get their own line; the rest are summed into ``(other)``. Empty bins are drawn as 0.
    ``by=None`` draws a single line of all events.
    """
    fn = "events_over_time"
    lf = _lazy(events, fn)
    _require(lf, ["EventTime"] + ([by] if by else []), fn)
    bounds = lf.select(
        pl.col("EventTime").min().alias("lo"), pl.col("EventTime").max().alias("hi")
    ).collect()
    lo, hi = bounds["lo"][0], bounds["hi"][0]
    if lo is None:
        raise ChartDataError(f"{fn}: no events to chart")
    n_series = top + 1 if by else 1
    if every is None:
        span = hi - lo
        max_bins = min(_MAX_BINS, MAX_ROWS // n_series)
        every_name, delta = _EVERY[-1]
        for name, d in _EVERY:
            if span / d < max_bins:
                every_name, delta = name, d
                break
    else:
        every_name, delta = _parse_every(every)
        if (hi - lo) / delta + 1 > MAX_ROWS // n_series:
            raise ChartDataError(
                f"{fn}: every={every!r} makes {int((hi - lo) / delta) + 1} bins per line; "
                f"use a coarser bin (the chart ships at most {MAX_ROWS} points)"
            )
    series = by or "series"
    if by:
        lf = _lump(lf.with_columns(_label_empty(by)), by, top)
    else:
        lf = lf.with_columns(pl.lit("events").alias(series))
    counts = (
        lf.select(pl.col("EventTime").dt.truncate(every_name).alias("time"), pl.col(series))
        .group_by("time", series)
        .agg(pl.len().alias("events"))
        .collect()
    )
    time_dtype = counts.schema["time"]
    grid_times = pl.datetime_range(
        counts["time"].min(),
        counts["time"].max(),
        every_name,
        eager=True,
        time_unit=time_dtype.time_unit,
        time_zone=time_dtype.time_zone,  # type: ignore[attr-defined]
    ).alias("time")
    grid = pl.DataFrame(grid_times).join(counts.select(series).unique(), how="cross")
    data = (
        grid.join(counts, on=["time", series], how="left")
        .with_columns(pl.col("events").fill_null(0).cast(pl.Int64))
        .sort("time", series)
    )
    data = _ship(data, fn)
    enc: dict[str, Any] = {
        "x": alt.X("time:T", title=f"EventTime (UTC, per {every_name})"),
        "y": alt.Y("events:Q", title="events"),
        "tooltip": [alt.Tooltip("time:T", format="%Y-%m-%d %H:%M"), f"{series}:N", "events:Q"],
    }
    if by:
        enc["color"] = alt.Color(f"{series}:N", title=by)
    return (
        alt.Chart(data, title=title or f"Events per {every_name}" + (f" by {by}" if by else ""))
        .mark_line(interpolate="monotone")
        .encode(**enc)
        .properties(width=WIDTH, height=HEIGHT)
    )


def _count_bars(
    lf: pl.LazyFrame, column: str, n: int, metric: str, fn: str, title: str, label: str
) -> alt.Chart:
    schema = _require(lf, [column], fn)
    if metric not in ("events", "visitors"):
        raise ChartDataError(f"{fn}: metric must be 'events' or 'visitors', not {metric!r}")
    aggs = [pl.len().alias("events")]
    if "DeviceId" in schema:
        aggs.append(pl.col("DeviceId").n_unique().alias("visitors"))
    elif metric == "visitors":
        raise ChartDataError(f"{fn}: metric='visitors' needs a DeviceId column")
    data = (
        lf.with_columns(_label_empty(column))
        .group_by(column)
        .agg(aggs)
        .sort([metric, column], descending=[True, False])
        .head(n)
        .collect()
    )
    data = _ship(data, fn)
    axis = column
    if column == "PageUri":  # the path tells pages apart; the host is the same everywhere
        data = data.with_columns(url_path(pl.col(column), data.get_column(column)).alias("page"))
        axis, label = "page", "page (path; full URL in the tooltip)"
    tooltip = [f"{column}:N", "events:Q"] + (["visitors:Q"] if "visitors" in data.columns else [])
    return (
        alt.Chart(data, title=title)
        .mark_bar()
        .encode(
            x=alt.X(f"{metric}:Q", title=metric),
            y=alt.Y(f"{axis}:N", sort="-x", title=label, axis=alt.Axis(labelLimit=320)),
            tooltip=tooltip,
        )
        .properties(width=WIDTH, height=alt.Step(18))
    )


def top_pages(
    events: Any,
    *,
    top: int | None = None,
    by: str = "PageUri",
    event_type: str | Sequence[str] | None = None,
    metric: str = "events",
    title: str | None = None,
    n: int | None = None,
) -> alt.Chart:
    """Horizontal bars of the ``top`` (default 15) most visited pages (``by="PageUri"`` or ``"PageTitle"``).

    ``event_type`` restricts to those event types (e.g. ``"epiPageView"``); events without a
    page are left out. ``metric="visitors"`` ranks by distinct DeviceIds instead of events.
    (``n=`` is the deprecated spelling of ``top=``.)
    """
    fn = "top_pages"
    n = _top(fn, top, n, 15)
    lf = _lazy(events, fn)
    _require(lf, [by], fn)
    if event_type is not None:
        _require(lf, ["EventType"], fn)
        types = [event_type] if isinstance(event_type, str) else list(event_type)
        lf = lf.filter(pl.col("EventType").is_in(types))
    lf = lf.filter(pl.col(by) != "")
    return _count_bars(lf, by, n, metric, fn, title or f"Top {n} pages by {metric}", by)


def country_bars(
    events: Any,
    *,
    top: int | None = None,
    metric: str = "events",
    title: str | None = None,
    n: int | None = None,
) -> alt.Chart:
    """Horizontal bars of events (or distinct visitors, ``metric="visitors"``) per CountryCode,
    the ``top`` (default 20) countries. (``n=`` is the deprecated spelling of ``top=``.)"""
    fn = "country_bars"
    n = _top(fn, top, n, 20)
    return _count_bars(
        _lazy(events, fn),
        "CountryCode",
        n,
        metric,
        fn,
        title or f"{metric.capitalize()} by country (top {n})",
        "CountryCode",
    )
