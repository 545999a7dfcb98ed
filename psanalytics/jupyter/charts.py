"""Altair chart builders for track events, sessions and journeys.

Every function aggregates in Polars first and ships only the aggregate to the browser
(never more than :data:`MAX_ROWS` rows), then returns an ordinary Altair chart, so you
can keep composing it::

    from psanalytics.jupyter import charts
    charts.events_over_time(events) | charts.country_bars(events)
    charts.top_pages(events, top=10).properties(title="Top pages this week")

Inputs are the canonical events frame (:mod:`psanalytics.schema`), or the sessions /
funnel / transitions frames of :mod:`psanalytics.sessions` and :mod:`psanalytics.journeys`.
A ``LazyFrame`` is aggregated lazily and only the aggregate is collected.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import polars as pl

from psanalytics import _time
from psanalytics.errors import PsaError


def _import_altair():  # noqa: ANN202
    """Import Altair, skipping jsonschema's optional ``rfc3987_syntax`` import.

    jsonschema (imported by Altair) imports ``rfc3987_syntax`` when it is installed (the
    Jupyter server stack brings it) only to check the ``iri`` string format; that module
    compiles a Lark grammar at import, which more than doubles Altair's import time (2.3 s
    -> 1 s here, 7 s -> 2.8 s on a loaded machine; it is paid by every notebook kernel).
    Altair never checks formats. When jsonschema is already imported nothing changes; else
    jsonschema in this process has no ``iri`` format checker.
    """
    if "jsonschema" in sys.modules or "rfc3987_syntax" in sys.modules:
        import altair

        return altair
    sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # ImportError on import
    try:
        import altair
    finally:
        if sys.modules.get("rfc3987_syntax", 0) is None:
            del sys.modules["rfc3987_syntax"]
    return altair


alt = _import_altair()


def _draw_offline() -> None:
    from psanalytics.jupyter import offline

    offline.enable()  # charts built here draw with no network (see offline.py)


_draw_offline()

__all__ = [
    "MAX_ROWS",
    "ChartDataError",
    "chart_rows",
    "url_path",
    "country_bars",
    "events_over_time",
    "funnel",
    "render",
    "session_duration_histogram",
    "session_length_histogram",
    "top_pages",
    "transition_heatmap",
    "funnel_breakdown",
    "time_to_convert",
    "retention_heatmap",
    "sankey",
    "attribution",
    "pick_visitor",
    "visitor_frame",
    "visitor_timeline",
]

#: Most rows any chart built here ships to the browser.
MAX_ROWS = 5_000

WIDTH = 600
HEIGHT = 260

OTHER = "(other)"
UNKNOWN = "(none)"

# Candidate time bins for events_over_time, smallest first.
_EVERY: tuple[tuple[str, timedelta], ...] = (
    ("1m", timedelta(minutes=1)),
    ("5m", timedelta(minutes=5)),
    ("15m", timedelta(minutes=15)),
    ("30m", timedelta(minutes=30)),
    ("1h", timedelta(hours=1)),
    ("3h", timedelta(hours=3)),
    ("6h", timedelta(hours=6)),
    ("12h", timedelta(hours=12)),
    ("1d", timedelta(days=1)),
    ("7d", timedelta(days=7)),
    ("30d", timedelta(days=30)),
)
_MAX_BINS = 150
# A bin polars reads as it is ("90m", "1h30m"); other durations are re-spelt with these units.
_POLARS_EVERY = re.compile(r"(\d+(ns|us|ms|s|m|h|d|w))+")
_POLARS_UNITS = tuple((u, _time.UNITS_NS[u]) for u in ("w", "d", "h", "m", "s", "ms", "us", "ns"))


class ChartDataError(PsaError, ValueError):
    """The data given to a chart builder cannot make that chart (missing column, empty, ...)."""


# --------------------------------------------------------------------------- helpers


def _lazy(data: Any, fn: str) -> pl.LazyFrame:
    """Accept a Polars/pandas frame, or an object carrying one (``.frame``/``.events``)."""
    if isinstance(data, pl.LazyFrame):
        return data
    if isinstance(data, pl.DataFrame):
        return data.lazy()
    for attr in ("frame", "events"):
        inner = getattr(data, attr, None)
        if isinstance(inner, pl.DataFrame | pl.LazyFrame):
            return inner.lazy()
    try:
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            return pl.from_pandas(data).lazy()
    except ImportError:  # pragma: no cover
        pass
    raise ChartDataError(f"{fn}: expected a Polars or pandas DataFrame, got {type(data).__name__}")


def _require(lf: pl.LazyFrame, columns: Sequence[str], fn: str) -> pl.Schema:
    schema = lf.collect_schema()
    missing = [c for c in columns if c not in schema]
    if missing:
        raise ChartDataError(
            f"{fn}: the frame has no column(s) {', '.join(missing)}; "
            f"it has: {', '.join(schema.names()) or '(none)'}"
        )
    return schema


def _pick(schema: pl.Schema, candidates: Sequence[str]) -> str | None:
    for name in candidates:
        if name in schema:
            return name
    return None


def _ship(frame: pl.DataFrame, fn: str) -> pl.DataFrame:
    """Guard: a chart's data never exceeds :data:`MAX_ROWS` rows."""
    if frame.height > MAX_ROWS:  # pragma: no cover - every builder aggregates below the cap
        raise ChartDataError(
            f"{fn}: {frame.height} rows would be sent to the browser (cap {MAX_ROWS})"
        )
    return frame


def chart_rows(chart: alt.TopLevelMixin) -> int:
    """Number of data rows a chart embeds (what the browser receives), summed over datasets."""
    spec = chart.to_dict()
    total = sum(len(rows) for rows in spec.get("datasets", {}).values())
    values = spec.get("data", {}).get("values")
    if isinstance(values, list):
        total += len(values)
    return total


def _lump(lf: pl.LazyFrame, column: str, top: int, weight: str | None = None) -> pl.LazyFrame:
    """Replace all but the ``top`` most frequent values of ``column`` by ``(other)``."""
    counts = lf.group_by(column).agg(
        pl.len().alias("_n") if weight is None else pl.col(weight).sum().alias("_n")
    )
    keep = counts.sort(["_n", column], descending=[True, False]).head(top).select(column)
    keep_list = keep.collect().get_column(column).to_list()
    return lf.with_columns(
        pl.when(pl.col(column).is_in(keep_list))
        .then(pl.col(column))
        .otherwise(pl.lit(OTHER))
        .alias(column)
    )


def _label_empty(column: str) -> pl.Expr:
    return (
        pl.when(pl.col(column) == "").then(pl.lit(UNKNOWN)).otherwise(pl.col(column)).alias(column)
    )


def _top(fn: str, top: int | None, n: int | None, default: int) -> int:
    """``top=`` is the name every builder uses; ``n=`` still works for one release."""
    if n is not None:
        if top is not None:
            raise ChartDataError(f"{fn}: give top= only (n= is its old name)")
        import warnings

        from psanalytics.journeys import DeprecatedArgumentWarning

        warnings.warn(
            f"{fn}(n=...) is deprecated and will be removed in the next release; use top=...",
            DeprecatedArgumentWarning,
            stacklevel=3,
        )
        return n
    return default if top is None else top


def _parse_every(every: str | timedelta) -> tuple[str, timedelta]:
    if isinstance(every, timedelta):
        us = int(every.total_seconds() * 1_000_000)
        return f"{us}us", every
    for name, delta in _EVERY:
        if name == every:
            return name, delta
    try:
        ns = _time.parse_duration(every)
    except _time.TimeError:
        ns = 0
    if ns <= 0:
        raise ChartDataError(
            f"events_over_time: every={every!r} is not a duration like '15m', '1h' or '1d'"
        )
    if not _POLARS_EVERY.fullmatch(every):  # e.g. "2hr", "1.5h": say it the way polars reads
        every = next(f"{ns // size}{unit}" for unit, size in _POLARS_UNITS if ns % size == 0)
    return every, timedelta(microseconds=ns / 1_000)


# --------------------------------------------------------------------------- events


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


_URL = r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)"


def url_path(expr: pl.Expr, values: pl.Series | None = None) -> pl.Expr:
    """A URL's path (with its query), ``/`` for the site root: what tells pages apart in a
    chart or a table (the host is the same everywhere). When ``values`` holds URLs of
    several hosts, the host is kept for those whose path is not unique."""
    path = expr.str.replace(_URL, "").str.replace(r"^$", "/")
    if values is None:
        return path
    hosts = values.str.extract(_URL, 1).drop_nulls().unique()
    if hosts.len() <= 1:
        return path
    host_path = expr.str.replace(r"^[A-Za-z][A-Za-z0-9+.-]*://", "")
    return pl.when(path.is_duplicated()).then(host_path).otherwise(path)


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


# --------------------------------------------------------------------------- sessions


def _sessions_frame(data: Any, fn: str) -> pl.LazyFrame:
    """A per-session frame with ``n_events`` and ``duration_s``.

    Accepts the sessions table of :func:`psanalytics.sessionize` (or the ``Sessionized``
    result itself), or an events frame: then sessions are its ``session_key`` groups when
    sessionized, else (DeviceId, SessionId) pairs as Profile Store recorded them.
    """
    sessions = getattr(data, "sessions", None)
    if isinstance(sessions, pl.DataFrame | pl.LazyFrame):
        data = sessions
    lf = _lazy(data, fn)
    schema = lf.collect_schema()
    if "n_events" in schema and "duration_s" in schema:
        return lf.select(pl.col("n_events").cast(pl.Int64), pl.col("duration_s").cast(pl.Float64))
    if "EventTime" in schema:
        key = ["session_key"] if "session_key" in schema else ["DeviceId", "SessionId"]
        _require(lf, key, fn)
        return (
            lf.group_by(key)
            .agg(
                pl.len().cast(pl.Int64).alias("n_events"),
                (
                    (pl.col("EventTime").max() - pl.col("EventTime").min()).dt.total_microseconds()
                    / 1e6
                )
                .cast(pl.Float64)
                .alias("duration_s"),
            )
            .select("n_events", "duration_s")
        )
    raise ChartDataError(
        f"{fn}: expected a sessions table (n_events, duration_s) or an events frame "
        f"(EventTime, DeviceId, SessionId); got columns {', '.join(schema.names())}"
    )


def session_length_histogram(
    sessions: Any, *, max_bars: int = 40, title: str | None = None
) -> alt.Chart:
    """Histogram of events per session.

    One bar per length from 1 up to the 99th percentile (grouped into equal-width bins when
    that is more than ``max_bars``; empty bins drawn as 0); the long tail (bots, crawlers) is
    one last ``N+`` bar.
    """
    fn = "session_length_histogram"
    lengths = _sessions_frame(sessions, fn).select("n_events").collect()["n_events"]
    if lengths.len() == 0:
        raise ChartDataError(f"{fn}: no sessions to chart")
    cap = max(1, int(lengths.quantile(0.99, "higher") or 1))
    width = max(1, math.ceil(cap / max_bars))
    bins = (
        pl.DataFrame({"n": lengths})
        .with_columns(
            pl.when(pl.col("n") > cap)
            .then(pl.lit(cap + 1))
            .otherwise(((pl.col("n") - 1) // width) * width + 1)
            .alias("lo")
        )
        .group_by("lo")
        .agg(pl.len().alias("sessions"))
    )
    grid = pl.DataFrame(
        {"lo": list(range(1, cap + 1, width)) + ([cap + 1] if (lengths > cap).any() else [])},
        schema={"lo": bins.schema["lo"]},
    )
    bins = (
        grid.join(bins, on="lo", how="left")
        .with_columns(pl.col("sessions").fill_null(0).cast(pl.Int64))
        .sort("lo")
        .with_columns(
            pl.when(pl.col("lo") > cap)
            .then(pl.format("{}+", pl.col("lo")))
            .when(pl.lit(width) == 1)
            .then(pl.col("lo").cast(pl.String))
            .otherwise(
                pl.format(
                    "{}-{}", pl.col("lo"), pl.min_horizontal(pl.col("lo") + width - 1, pl.lit(cap))
                )
            )
            .alias("events per session")
        )
    )
    data = _ship(bins.select("events per session", "lo", "sessions"), fn)
    order = data["events per session"].to_list()
    return (
        alt.Chart(data, title=title or "Events per session")
        .mark_bar()
        .encode(
            x=alt.X("events per session:O", sort=order, title="events per session"),
            y=alt.Y("sessions:Q", title="sessions"),
            tooltip=["events per session:O", "sessions:Q"],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )


# (upper bound in seconds, label); a session of duration d falls in the first bin with d < bound.
_DURATION_BINS: tuple[tuple[float, str], ...] = (
    (1e-9, "0 s"),
    (10, "<10 s"),
    (30, "10-30 s"),
    (60, "30-60 s"),
    (120, "1-2 min"),
    (300, "2-5 min"),
    (600, "5-10 min"),
    (1800, "10-30 min"),
    (3600, "30-60 min"),
    (7200, "1-2 h"),
    (4 * 3600, "2-4 h"),
    (12 * 3600, "4-12 h"),
    (24 * 3600, "12-24 h"),
    (math.inf, "24 h+"),
)


def session_duration_histogram(sessions: Any, *, title: str | None = None) -> alt.Chart:
    """Histogram of session durations in readable bins (``0 s`` = single-event sessions,
    ``<10 s``, ``10-30 s`` ... ``24 h+``). Bins with no sessions are drawn as 0."""
    fn = "session_duration_histogram"
    durations = _sessions_frame(sessions, fn).select("duration_s").collect()["duration_s"]
    if durations.len() == 0:
        raise ChartDataError(f"{fn}: no sessions to chart")
    bounds = [b for b, _ in _DURATION_BINS]
    labels = [label for _, label in _DURATION_BINS]
    # index of the first bin whose upper bound is > d
    bin_index = pl.Series(bounds).search_sorted(durations.fill_null(0.0), side="right")
    counts = (
        pl.DataFrame({"bin": bin_index.cast(pl.Int64)})
        .group_by("bin")
        .agg(pl.len().alias("sessions"))
    )
    data = (
        pl.DataFrame({"bin": list(range(len(labels))), "duration": labels})
        .join(counts, on="bin", how="left")
        .with_columns(pl.col("sessions").fill_null(0).cast(pl.Int64))
        .sort("bin")
        .select("duration", "sessions")
    )
    data = _ship(data, fn)
    return (
        alt.Chart(data, title=title or "Session duration")
        .mark_bar()
        .encode(
            x=alt.X("duration:O", sort=labels, title="session duration"),
            y=alt.Y("sessions:Q", title="sessions"),
            tooltip=["duration:O", "sessions:Q"],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )


# --------------------------------------------------------------------------- journeys


def funnel(
    data: Any,
    *,
    step: str | None = None,
    count: str | None = None,
    title: str | None = None,
) -> alt.LayerChart:
    """Funnel bars: how many reached each step, labelled with the share of the first step.

    ``data`` is the frame of :func:`psanalytics.journeys.funnel` (one row per step, in order:
    ``name`` and ``entered``), or any frame with a step-name column and a count column (named with ``step=``/``count=``
    when they are not one of the usual names).
    """
    fn = "funnel"
    lf = _lazy(data, fn)
    schema = lf.collect_schema()
    if step is None:
        names = [c for c in ("name", "step_name", "step", "EventType", "label") if c in schema]
        step = next((c for c in names if schema[c] == pl.String), names[0] if names else None)
    count = count or _pick(
        schema, ("reached", "entered", "count", "n", "sessions", "devices", "users", "visitors")
    )
    if step is None or count is None:
        raise ChartDataError(
            f"{fn}: could not tell the step and count columns among {', '.join(schema.names())}; "
            "pass step= and count="
        )
    _require(lf, [step, count], fn)
    frame = (
        lf.select(pl.col(step).cast(pl.String), pl.col(count).cast(pl.Int64))
        .head(MAX_ROWS)
        .collect()
    )
    if frame.height == 0:
        raise ChartDataError(f"{fn}: the funnel has no steps")
    first = frame[count][0] or 0
    frame = (
        frame.with_row_index("order")
        .with_columns(
            (pl.col(count) / first if first else pl.lit(0.0)).alias("of_first"),
            (pl.col(count) / pl.col(count).shift(1)).fill_null(1.0).alias("of_previous"),
        )
        .with_columns(
            pl.format("{} ({}%)", pl.col(count), (pl.col("of_first") * 100).round(1)).alias("label")
        )
    )
    frame = _ship(frame, fn)
    order = frame[step].to_list()
    base = alt.Chart(frame, title=title or "Funnel").encode(
        y=alt.Y(f"{step}:N", sort=order, title="step"),
        # room on the right for the "n (p%)" labels
        x=alt.X(
            f"{count}:Q",
            title=count,
            scale=alt.Scale(domain=[0, max(1, int(frame[count].max() * 1.3))]),
        ),
        tooltip=[
            f"{step}:N",
            f"{count}:Q",
            alt.Tooltip("of_first:Q", format=".1%", title="of first step"),
            alt.Tooltip("of_previous:Q", format=".1%", title="of previous step"),
        ],
    )
    bars = base.mark_bar()
    text = base.mark_text(align="left", dx=4).encode(text="label:N")
    return alt.layer(bars, text).properties(width=WIDTH, height=alt.Step(28))


def _transitions_frame(data: Any, level: str, fn: str) -> tuple[pl.LazyFrame, str, str, str]:
    lf = _lazy(data, fn)
    schema = lf.collect_schema()
    src = _pick(schema, ("from", "source", "src", "from_step"))
    dst = _pick(schema, ("to", "target", "dst", "to_step"))
    cnt = _pick(schema, ("count", "n", "transitions", "weight"))
    if src and dst and cnt:
        return (
            lf.select(pl.col(src).cast(pl.String), pl.col(dst).cast(pl.String), pl.col(cnt)),
            src,
            dst,
            cnt,
        )
    if "EventTime" in schema:
        # Consecutive events of one session (sessionized key, else Profile Store's SessionId).
        key = ["session_key"] if "session_key" in schema else ["DeviceId", "SessionId"]
        _require(lf, [*key, level], fn)
        steps = (
            lf.select(*key, "EventTime", pl.col(level).cast(pl.String))
            .with_row_index("_row")
            .sort([*key, "EventTime", "_row"])
            .with_columns(pl.col(level).shift(-1).over(key).alias("to"))
            .filter(pl.col("to").is_not_null())
            .group_by(pl.col(level).alias("from"), "to")
            .agg(pl.len().alias("count"))
        )
        return steps, "from", "to", "count"
    raise ChartDataError(
        f"{fn}: expected a transitions frame (from, to, count) or an events frame; "
        f"got columns {', '.join(schema.names())}"
    )


def transition_heatmap(
    data: Any, *, top: int = 15, level: str = "EventType", title: str | None = None
) -> alt.Chart:
    """Heatmap of from -> to transition counts, with the row-normalised probability in tooltips.

    ``data`` is :func:`psanalytics.journeys.transitions` output (``from``, ``to``, ``count``),
    or an events frame (then consecutive events of a session on column ``level`` are counted).
    Only the ``top`` busiest states keep their name; the rest are ``(other)``.
    """
    fn = "transition_heatmap"
    lf, src, dst, cnt = _transitions_frame(data, level, fn)
    flat = lf.rename({src: "from", dst: "to", cnt: "count"}).collect()
    if flat.height == 0:
        raise ChartDataError(f"{fn}: no transitions to chart")
    volume = (
        pl.concat(
            [
                flat.select(pl.col("from").alias("s"), "count"),
                flat.select(pl.col("to").alias("s"), "count"),
            ]
        )
        .group_by("s")
        .agg(pl.col("count").sum())
        .sort(["count", "s"], descending=[True, False])
    )
    keep = volume["s"].head(top).to_list()

    def lump(c: str) -> pl.Expr:
        return pl.when(pl.col(c).is_in(keep)).then(pl.col(c)).otherwise(pl.lit(OTHER)).alias(c)

    data_ = (
        flat.with_columns(lump("from"), lump("to"))
        .group_by("from", "to")
        .agg(pl.col("count").sum().cast(pl.Int64))
        .with_columns((pl.col("count") / pl.col("count").sum().over("from")).alias("probability"))
        .sort("from", "to")
    )
    data_ = _ship(data_, fn)
    order = [s for s in keep if s in set(data_["from"]) | set(data_["to"])]
    if OTHER in set(data_["from"]) | set(data_["to"]):
        order.append(OTHER)
    return (
        alt.Chart(data_, title=title or "Transitions (from row to column)")
        .mark_rect()
        .encode(
            x=alt.X("to:N", sort=order, title="to"),
            y=alt.Y("from:N", sort=order, title="from"),
            color=alt.Color("count:Q", scale=alt.Scale(scheme="blues"), title="transitions"),
            tooltip=["from:N", "to:N", "count:Q", alt.Tooltip("probability:Q", format=".1%")],
        )
        .properties(width=alt.Step(22), height=alt.Step(22))
    )


def funnel_breakdown(
    data: Any, *, by: str | None = None, top: int = 8, title: str | None = None
) -> alt.Chart:
    """Conversion (share of step 1) at each step, one line per breakdown value.

    ``data`` is :func:`psanalytics.journeys.funnel` with ``breakdown=``; ``by`` is the
    breakdown column (default: the first column before ``step``). Only the ``top`` groups with
    the most journeys at step 1 get a line; the rest are summed into ``(other)``.
    """
    fn = "funnel_breakdown"
    frame = _lazy(data, fn).collect()
    _require(frame.lazy(), ["step", "name", "entered"], fn)
    if by is None:
        lead = frame.columns[: frame.columns.index("step")]
        if not lead:
            raise ChartDataError(f"{fn}: the funnel has no breakdown column; pass by=")
        by = lead[0]
    f = frame.select(
        pl.col(by).cast(pl.String).fill_null(UNKNOWN).alias(by), "step", "name", "entered"
    )
    size = f.filter(pl.col("step") == 1).sort(["entered", by], descending=[True, False])
    keep = size[by].head(top).to_list()
    f = (
        f.with_columns(
            pl.when(pl.col(by).is_in(keep)).then(pl.col(by)).otherwise(pl.lit(OTHER)).alias(by)
        )
        .group_by(by, "step", "name")
        .agg(pl.col("entered").sum())
        .with_columns(
            (
                pl.col("entered") / pl.col("entered").filter(pl.col("step") == 1).first().over(by)
            ).alias("conversion")
        )
        .sort(by, "step")
    )
    data_ = _ship(f, fn)
    order = (
        frame.filter(pl.col("step").is_not_null())
        .sort("step")["name"]
        .unique(maintain_order=True)
        .to_list()
    )
    return (
        alt.Chart(data_, title=title or f"Funnel conversion by {by}")
        .mark_line(point=True)
        .encode(
            x=alt.X("name:N", sort=order, title="step"),
            y=alt.Y("conversion:Q", axis=alt.Axis(format="%"), title="of step 1"),
            color=alt.Color(f"{by}:N", sort=keep + [OTHER], title=by),
            tooltip=[f"{by}:N", "name:N", "entered:Q", alt.Tooltip("conversion:Q", format=".1%")],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )


def time_to_convert(data: Any, *, title: str | None = None) -> alt.Chart:
    """Bars of how long journeys took to reach a step: :func:`psanalytics.journeys.time_histogram`
    output (``step``, ``name``, ``bin``, ``journeys``), one row of bars per step."""
    fn = "time_to_convert"
    frame = _lazy(data, fn).collect()
    _require(frame.lazy(), ["step", "name", "bin", "journeys"], fn)
    if frame.height == 0:
        raise ChartDataError(f"{fn}: no conversions to chart")
    frame = _ship(frame.with_columns(pl.format("{}. {}", "step", "name").alias("to step")), fn)
    bins = frame["bin"].unique(maintain_order=True).to_list()
    steps = frame["to step"].unique(maintain_order=True).to_list()
    return (
        alt.Chart(frame, title=title or "Time to convert (from step 1)")
        .mark_bar()
        .encode(
            x=alt.X("bin:O", sort=bins, title="time from step 1"),
            y=alt.Y("journeys:Q", title="journeys"),
            color=alt.Color("to step:N", sort=steps, legend=None),
            row=alt.Row("to step:N", sort=steps, title=None),
            tooltip=["to step:N", "bin:O", "journeys:Q"],
        )
        .properties(width=WIDTH, height=90)
    )


def retention_heatmap(
    data: Any, *, value: str = "rate", title: str | None = None
) -> alt.LayerChart:
    """The classic retention triangle: one row per cohort, one column per period offset,
    coloured and labelled by ``value`` (``"rate"`` or ``"returning"``).

    ``data`` is :func:`psanalytics.journeys.retention` output (long form: ``cohort``,
    ``cohort_size``, ``period``, ``returning``, ``rate``).
    """
    fn = "retention_heatmap"
    frame = _lazy(data, fn).collect()
    _require(frame.lazy(), ["cohort", "cohort_size", "period", "returning", "rate"], fn)
    if value not in ("rate", "returning"):
        raise ChartDataError(f"{fn}: value must be 'rate' or 'returning', not {value!r}")
    if frame.height == 0:
        raise ChartDataError(f"{fn}: no cohorts to chart")
    frame = _ship(
        frame.with_columns(
            pl.format(
                "{} ({})", pl.col("cohort").dt.strftime("%Y-%m-%d"), pl.col("cohort_size")
            ).alias("cohort (size)"),
            pl.when(pl.lit(value == "rate"))
            .then(pl.format("{}%", (pl.col("rate") * 100).round(0).cast(pl.Int64)))
            .otherwise(pl.col("returning").cast(pl.String))
            .alias("label"),
        ),
        fn,
    )
    rows = frame.sort("cohort")["cohort (size)"].unique(maintain_order=True).to_list()
    base = alt.Chart(frame, title=title or "Retention by cohort").encode(
        x=alt.X("period:O", title="periods after the cohort's"),
        y=alt.Y("cohort (size):N", sort=rows, title="cohort (size)"),
        tooltip=[
            alt.Tooltip("cohort:T", format="%Y-%m-%d"), "cohort_size:Q", "period:O",
            "returning:Q", alt.Tooltip("rate:Q", format=".1%"),
        ],
    )  # fmt: skip
    rate_only = frame.filter(pl.col("period") > 0)
    top = float(rate_only[value].max() or 1) if rate_only.height else 1.0
    rect = base.mark_rect().encode(
        color=alt.Color(
            f"{value}:Q", scale=alt.Scale(scheme="blues", domain=[0, top], clamp=True), title=value
        )
    )
    text = base.mark_text(fontSize=9).encode(
        text="label:N",
        color=alt.condition(f"datum.{value} > {top * 0.6}", alt.value("white"), alt.value("black")),
    )
    return alt.layer(rect, text).properties(width=alt.Step(36), height=alt.Step(20))


def sankey(
    data: Any, *, top: int = 300, node_gap: float = 0.02, title: str | None = None
) -> alt.LayerChart:
    """A Sankey diagram of :func:`psanalytics.journeys.paths` edges (``from_depth``,
    ``from_step``, ``to_step``, ``count``).

    Altair has no Sankey mark, so it is drawn from layers: each node is a ``rect`` in its
    depth's column, stacked by journeys (biggest on top, ``node_gap`` apart); each link is an
    ``area`` band from its source's right edge to its target's left edge, sampled at 16 points
    along a smoothstep curve (the band keeps its width, the journeys it carries). Links are
    stacked inside their nodes in the order of the nodes they connect, so bands do not cross
    inside a node. Only the ``top`` biggest links are drawn (the title says when some were
    left out).
    """
    fn = "sankey"
    frame = _lazy(data, fn).collect()
    _require(frame.lazy(), ["from_depth", "from_step", "to_step", "count"], fn)
    if frame.height == 0:
        raise ChartDataError(f"{fn}: no paths to chart")
    total_links = frame.height
    e = frame.sort("count", descending=True).head(top)
    links = [
        (int(d), str(a), str(b), float(c))
        for d, a, b, c in e.select("from_depth", "from_step", "to_step", "count").iter_rows()
    ]
    # node sizes: max of in- and out-flow
    out_f: dict[tuple[int, str], float] = {}
    in_f: dict[tuple[int, str], float] = {}
    for d, a, b, c in links:
        out_f[(d, a)] = out_f.get((d, a), 0) + c
        in_f[(d + 1, b)] = in_f.get((d + 1, b), 0) + c
    nodes = {k: max(out_f.get(k, 0), in_f.get(k, 0)) for k in set(out_f) | set(in_f)}
    depths = sorted({d for d, _ in nodes})
    scale = max(sum(v for (d, _), v in nodes.items() if d == dd) for dd in depths)
    pos: dict[tuple[int, str], float] = {}
    node_rows = []
    for dd in depths:
        col = sorted([k for k in nodes if k[0] == dd], key=lambda k: (-nodes[k], k[1]))
        y = 0.0
        for k in col:
            h = nodes[k] / scale
            pos[k] = y
            node_rows.append(
                {
                    "depth": dd,
                    "step": k[1],
                    "y": y,
                    "y2": y + h,
                    "journeys": nodes[k],
                    "x": dd + 0.0,
                    "x2": dd + 0.08,
                }
            )
            y += h + node_gap
    out_off = dict.fromkeys(nodes, 0.0)
    in_off = dict.fromkeys(nodes, 0.0)
    rows = []
    ordered = sorted(links, key=lambda r: (r[0], pos[(r[0], r[1])], pos[(r[0] + 1, r[2])]))
    for li, (d, a, b, c) in enumerate(ordered):
        h = c / scale
        s0 = pos[(d, a)] + out_off[(d, a)]
        out_off[(d, a)] += h
        t0 = pos[(d + 1, b)] + in_off[(d + 1, b)]
        in_off[(d + 1, b)] += h
        for i in range(16):
            u = i / 15
            sm = u * u * (3 - 2 * u)
            y = s0 + (t0 - s0) * sm
            rows.append(
                {
                    "link": li,
                    "x": d + 0.08 + u * 0.92,
                    "y": y,
                    "y2": y + h,
                    "from": a,
                    "to": b,
                    "journeys": c,
                }
            )
    node_df = _ship(pl.DataFrame(node_rows), fn)
    link_df = _ship(pl.DataFrame(rows), fn)
    heading = title or "Paths"
    if total_links > len(links):
        heading += f" (the {len(links)} biggest of {total_links} links)"
    y_scale = alt.Scale(domain=[max(r["y2"] for r in node_rows) + node_gap, 0], nice=False)
    x_scale = alt.Scale(domain=[min(depths) - 0.05, max(depths) + 0.6], nice=False)
    band = (
        alt.Chart(link_df)
        .mark_area(opacity=0.35, interpolate="monotone")
        .encode(
            x=alt.X("x:Q", scale=x_scale, axis=alt.Axis(title="step", tickMinStep=1, format="d")),
            y=alt.Y("y:Q", scale=y_scale, axis=None),
            y2="y2:Q",
            detail="link:N",
            color=alt.Color("from:N", legend=None),
            tooltip=["from:N", "to:N", "journeys:Q"],
        )
    )
    rect = (
        alt.Chart(node_df)
        .mark_rect(color="#444")
        .encode(
            x="x:Q",
            x2="x2",
            y=alt.Y("y:Q", scale=y_scale),
            y2="y2",
            tooltip=["depth:Q", "step:N", "journeys:Q"],
        )
    )
    label = (
        alt.Chart(node_df.with_columns(((pl.col("y") + pl.col("y2")) / 2).alias("ym")))
        .mark_text(align="left", dx=3, fontSize=10)
        .encode(x="x2:Q", y=alt.Y("ym:Q", scale=y_scale), text="step:N")
    )
    return alt.layer(band, rect, label, title=heading).properties(
        width=WIDTH + 200, height=HEIGHT + 140
    )


def attribution(
    data: Any, *, value: str = "conversions", by: str | None = None, title: str | None = None
) -> alt.Chart:
    """Horizontal bars of :func:`psanalytics.journeys.attribute` output per channel.

    ``value="conversions"`` (credited conversions) or ``"revenue"``; revenue is drawn per
    currency (one column of bars per currency: currencies are never added). Several models
    can be compared by concatenating their results with a ``model`` column: it becomes the
    colour.
    """
    fn = "attribution"
    frame = _lazy(data, fn).collect()
    if by is None:
        by = next(
            (c for c in frame.columns if c not in ("currency", "conversions", "revenue", "model")),
            None,
        )
    if by is None:
        raise ChartDataError(f"{fn}: could not tell the channel column; pass by=")
    _require(frame.lazy(), [by, value], fn)
    keys = [by] + [c for c in ("model",) if c in frame.columns]
    if value == "revenue" and "currency" in frame.columns:
        keys.append("currency")
    f = _ship(frame.group_by(keys).agg(pl.col(value).sum()).sort(keys), fn)
    enc: dict[str, Any] = {
        "x": alt.X(f"{value}:Q", title=value),
        "y": alt.Y(f"{by}:N", sort="-x", title=by),
        "tooltip": [*[f"{k}:N" for k in keys], alt.Tooltip(f"{value}:Q", format=",.1f")],
    }
    if "model" in f.columns:
        enc["color"] = alt.Color("model:N")
        enc["yOffset"] = alt.YOffset("model:N")
    chart = alt.Chart(f, title=title or f"Attributed {value} by {by}").mark_bar().encode(**enc)
    if value == "revenue" and "currency" in f.columns:
        chart = chart.encode(column=alt.Column("currency:N", title="currency"))
        chart = chart.properties(width=160, height=alt.Step(14))
        return chart.resolve_scale(x="independent")
    return chart.properties(width=WIDTH, height=alt.Step(16))


# --------------------------------------------------------------------------- visitors


def pick_visitor(
    events: Any,
    *,
    max_events: int = 300,
    min_sessions: int = 2,
    max_session: timedelta = timedelta(hours=1),
    max_session_events: int = 60,
    gap: timedelta = timedelta(minutes=30),
) -> str:
    """A DeviceId worth looking at: a **human-looking** visitor, by this rule.

    Sessions are cut where a device is idle for more than ``gap`` (30 minutes). A device
    looks human when it has at least ``min_sessions`` sessions (it came back), none longer
    than ``max_session`` (1 hour) or with more than ``max_session_events`` events (60), and
    at most ``max_events`` events in all (300). Among those, the one with the most events
    wins (ties: the smallest DeviceId). Crawlers fail the rule: they fire around the clock,
    seconds apart, so their "sessions" last many hours. When no device qualifies, the
    most active device with at most ``max_events`` events, else the most active device.
    """
    lf = _lazy(events, "pick_visitor")
    schema = _require(lf, ["DeviceId"], "pick_visitor")
    counts = lf.group_by("DeviceId").agg(pl.len().alias("n")).collect()
    if counts.height == 0:
        raise ChartDataError("pick_visitor: no events")
    order = (["n", "DeviceId"], [True, False])
    if "EventTime" in schema:
        per_session = (
            lf.select("DeviceId", "EventTime")
            .sort("DeviceId", "EventTime")
            .with_columns(
                (pl.col("EventTime").diff().over("DeviceId") > gap)
                .fill_null(False)
                .cum_sum()
                .over("DeviceId")
                .alias("_session")
            )
            .group_by("DeviceId", "_session")
            .agg(
                pl.len().alias("events"),
                (pl.col("EventTime").max() - pl.col("EventTime").min()).alias("length"),
            )
        )
        human = (
            per_session.group_by("DeviceId")
            .agg(
                pl.len().alias("sessions"),
                pl.col("events").sum().alias("n"),
                pl.col("events").max().alias("longest_events"),
                pl.col("length").max().alias("longest"),
            )
            .filter(
                (pl.col("sessions") >= min_sessions)
                & (pl.col("n") <= max_events)
                & (pl.col("longest") <= max_session)
                & (pl.col("longest_events") <= max_session_events)
            )
            .collect()
        )
        if human.height:
            return human.sort(*order[:1], descending=order[1])["DeviceId"][0]
    small = counts.filter(pl.col("n") <= max_events)
    pool = small if small.height else counts
    return pool.sort(order[0], descending=order[1])["DeviceId"][0]


def visitor_frame(
    events: Any, device_id: str | None = None, *, timeout: str | timedelta = "30m"
) -> pl.DataFrame:
    """The events of one device in time order, with ``session`` (1-based) and ``step`` columns.

    ``device_id=None`` picks one with :func:`pick_visitor`. Sessions are the
    ``session_index`` of a sessionized frame when present, else cut at gaps > ``timeout``.
    """
    fn = "visitor_frame"
    lf = _lazy(events, fn)
    schema = _require(lf, ["DeviceId", "EventTime", "EventType"], fn)
    if device_id is None:
        device_id = pick_visitor(lf)
    frame = (
        lf.filter(pl.col("DeviceId") == device_id)
        .with_row_index("_row")
        .sort("EventTime", "_row")
        .collect()
    )
    if frame.height == 0:
        raise ChartDataError(f"{fn}: no events for DeviceId {device_id!r}")
    if "session_index" in schema:
        session = pl.col("session_index").cast(pl.Int64)
    else:
        _, gap = _parse_every(timeout) if isinstance(timeout, str) else ("", timeout)
        session = ((pl.col("EventTime").diff() > gap).fill_null(False).cum_sum() + 1).cast(pl.Int64)
    return frame.with_columns(session.alias("session"), pl.int_range(pl.len()).alias("step")).drop(
        "_row"
    )


def visitor_timeline(
    events: Any,
    device_id: str | None = None,
    *,
    current: int | None = None,
    timeout: str | timedelta = "30m",
    max_events: int = 2_000,
    title: str | None = None,
) -> alt.LayerChart:
    """One visitor's events over time: a point per event on an EventType row, coloured by
    session, with a dashed rule at each session start and the ``current`` step (0-based,
    as :class:`~psanalytics.jupyter.widgets.VisitorPlayer` steps) ringed.

    At most ``max_events`` events are drawn (the ones around ``current``); the title says
    when some were left out.
    """
    fn = "visitor_timeline"
    max_events = min(max_events, MAX_ROWS // 2)
    frame = (
        events
        if isinstance(events, pl.DataFrame)
        and "step" in events.columns
        and "session" in events.columns
        else None
    )
    if frame is None:
        frame = visitor_frame(events, device_id, timeout=timeout)
    device = frame["DeviceId"][0]
    total = frame.height
    if total > max_events:
        centre = current if current is not None else 0
        start = max(0, min(centre - max_events // 2, total - max_events))
        frame = frame.slice(start, max_events)
    cols = ["step", "EventTime", "EventType", "session"] + [
        c for c in ("PageUri", "PageTitle", "Value") if c in frame.columns
    ]
    points_data = _ship(
        frame.select(cols).with_columns(pl.col("session").cast(pl.String).alias("session")), fn
    )
    starts = points_data.group_by("session", maintain_order=True).agg(pl.col("EventTime").min())
    shown = points_data.height
    n_sessions = points_data["session"].n_unique()
    heading = (
        title or f"Visitor {device}: {total} events in {frame['session'].n_unique()} session(s)"
    )
    if shown < total:
        heading += f" (showing {shown} of {total})"
    tooltip = [
        alt.Tooltip("EventTime:T", format="%Y-%m-%d %H:%M:%S"),
        "EventType:N",
        "session:N",
        "step:Q",
    ] + [f"{c}:N" for c in ("PageUri", "PageTitle", "Value") if c in points_data.columns]
    points = (
        alt.Chart(points_data)
        .mark_circle(size=60, opacity=0.85)
        .encode(
            x=alt.X("EventTime:T", title="EventTime (UTC)"),
            y=alt.Y("EventType:N", title=None),
            color=alt.Color(
                "session:N",
                title="session",
                sort=None,
                legend=None if n_sessions > 12 else alt.Legend(),
            ),
            tooltip=tooltip,
        )
    )
    rules = (
        alt.Chart(starts)
        .mark_rule(strokeDash=[4, 3], color="gray")
        .encode(
            x="EventTime:T",
            tooltip=["session:N", alt.Tooltip("EventTime:T", title="session start")],
        )
    )
    layers: list[alt.Chart] = [rules, points]
    if current is not None:
        cur = points_data.filter(pl.col("step") == current)
        if cur.height:
            layers.append(
                alt.Chart(cur)
                .mark_point(size=260, shape="circle", filled=False, strokeWidth=2.5, color="black")
                .encode(x="EventTime:T", y="EventType:N")
            )
    return alt.layer(*layers, title=heading).properties(width=WIDTH, height=alt.Step(24))


# --------------------------------------------------------------------------- KQL render


_RENDER_KINDS = (
    "timechart",
    "linechart",
    "areachart",
    "barchart",
    "columnchart",
    "piechart",
    "scatterchart",
    "table",
)


def render(
    frame: pl.DataFrame,
    kind: str | Any,
    properties: Mapping[str, Any] | None = None,
    *,
    partial: str | None = None,
) -> alt.TopLevelMixin:
    """Draw a KQL result the way ``| render <kind>`` asks (Kusto's conventions).

    ``partial`` says the result itself was cut (e.g. ``"1,000-row cap"``): the title then
    says the chart is partial.

    ``kind`` is the render kind, or a ``RenderSpec`` (``.kind``, ``.properties``) from a
    :class:`KqlResult`. Columns: ``timechart``/``linechart``/``areachart`` put the first
    datetime (or first) column on x and every numeric column on y; ``barchart`` (horizontal)
    and ``columnchart`` (vertical) put the first string column on the category axis;
    ``piechart`` takes the first string column as slices and the first numeric as sizes.
    String columns other than the axis become the series (colour). ``with (title=...,
    xtitle=..., ytitle=..., xcolumn=..., ycolumns=..., series=...)`` properties are honoured.
    At most :data:`MAX_ROWS` rows are drawn; the title says when more were left out.
    """
    if not isinstance(kind, str):
        properties = dict(getattr(kind, "properties", None) or {}) | dict(properties or {})
        kind = kind.kind
    props = {str(k).lower(): v for k, v in (properties or {}).items()}
    kind = kind.lower()
    if kind not in _RENDER_KINDS:
        raise ChartDataError(
            f"render: chart kind {kind!r} is not supported; use one of {', '.join(_RENDER_KINDS)}"
        )
    if frame.width == 0:
        raise ChartDataError("render: the result has no columns")
    total = frame.height
    if kind == "table":
        raise ChartDataError("render table: shown as the table itself, there is no chart to draw")
    schema = frame.schema
    numeric = [c for c, t in schema.items() if t.is_numeric()]
    temporal = [c for c, t in schema.items() if t.is_temporal() and not isinstance(t, pl.Duration)]
    strings = [
        c
        for c, t in schema.items()
        if t == pl.String or isinstance(t, pl.Categorical | pl.Enum) or t == pl.Boolean
    ]

    def _cols(value: Any) -> list[str]:
        if value is None:
            return []
        items = value if isinstance(value, list | tuple) else str(value).split(",")
        out = [str(i).strip() for i in items if str(i).strip()]
        for c in out:
            if c not in schema:
                raise ChartDataError(
                    f"render: column {c!r} named in with(...) is not in the result ({', '.join(frame.columns)})"
                )
        return out

    xcol = (_cols(props.get("xcolumn")) or [None])[0]
    ycols = _cols(props.get("ycolumns"))
    series_cols = _cols(props.get("series"))
    title = props.get("title")

    if kind in ("timechart", "linechart", "areachart", "scatterchart"):
        xcol = xcol or (temporal[0] if temporal else frame.columns[0])
        ycols = ycols or [c for c in numeric if c != xcol]
        series_cols = series_cols or [c for c in strings if c != xcol]
    else:
        cat = xcol or (strings[0] if strings else (temporal[0] if temporal else frame.columns[0]))
        xcol = cat
        ycols = ycols or [c for c in numeric if c != xcol]
        series_cols = series_cols or [c for c in strings if c != xcol]
        if kind == "piechart":
            ycols = ycols[:1]
    if not ycols:
        raise ChartDataError(
            f"render {kind}: the result has no numeric column to draw ({', '.join(frame.columns)})"
        )

    data = frame.select(list(dict.fromkeys([xcol, *series_cols, *ycols])))
    if series_cols:
        data = data.with_columns(
            pl.concat_str([pl.col(c).cast(pl.String) for c in series_cols], separator=" / ").alias(
                "_series"
            )
        )
    long = data.unpivot(
        index=[c for c in data.columns if c not in ycols],
        on=ycols,
        variable_name="_measure",
        value_name="_value",
    )
    if series_cols and len(ycols) > 1:
        long = long.with_columns(
            pl.concat_str(["_series", "_measure"], separator=" / ").alias("_color")
        )
    elif series_cols:
        long = long.with_columns(pl.col("_series").alias("_color"))
    else:
        long = long.with_columns(pl.col("_measure").alias("_color"))
    notes = []
    if partial:
        notes.append(f"partial: the result was cut at the {partial}")
    line_like = kind in ("timechart", "linechart", "areachart", "scatterchart")
    if line_like or long.height > MAX_ROWS:  # a cut keeps the first x values, not any rows
        long = long.sort(xcol, "_color", nulls_last=True, maintain_order=True)
    if long.height > MAX_ROWS:
        long = long.head(MAX_ROWS)
        notes.append(f"partial: the first {MAX_ROWS:,} of {total * len(ycols):,} points by {xcol}")
    heading = f"{title or kind} ({'; '.join(notes)})" if notes else (title or None)
    long = long.select(xcol, "_color", "_value").rename({"_color": "series", "_value": "value"})
    if xcol in ("series", "value"):  # pragma: no cover - exotic column names
        raise ChartDataError(
            f"render: rename the column {xcol!r}, it clashes with the chart's own fields"
        )
    ytitle = props.get("ytitle") or (ycols[0] if len(ycols) == 1 else "value")
    xtitle = props.get("xtitle") or xcol
    x_type = "T" if xcol in temporal else ("Q" if xcol in numeric else "N")
    chart = alt.Chart(long, title=heading) if heading else alt.Chart(long)
    color = alt.Color("series:N", title=" / ".join(series_cols) if series_cols else None)
    show_color = len(set(long["series"].to_list())) > 1
    tooltip = [f"{xcol}:{x_type}", "series:N", "value:Q"]
    if kind == "piechart":
        return (
            chart.mark_arc()
            .encode(
                theta=alt.Theta("value:Q", title=ytitle),
                color=alt.Color(f"{xcol}:N", title=xtitle),
                tooltip=[f"{xcol}:N", "value:Q"],
            )
            .properties(width=HEIGHT, height=HEIGHT)
        )
    if kind in ("timechart", "linechart", "areachart", "scatterchart"):
        mark = {
            "timechart": chart.mark_line(),
            "linechart": chart.mark_line(),
            "areachart": chart.mark_area(opacity=0.7),
            "scatterchart": chart.mark_point(),
        }[kind]
        enc: dict[str, Any] = {
            "x": alt.X(f"{xcol}:{x_type}", title=xtitle),
            "y": alt.Y("value:Q", title=ytitle, stack=True if kind == "areachart" else None),
            "tooltip": tooltip,
        }
        if show_color:
            enc["color"] = color
        return mark.encode(**enc).properties(width=WIDTH, height=HEIGHT)
    # bar (horizontal) / column (vertical)
    cat_enc = alt.X if kind == "columnchart" else alt.Y
    val_enc = alt.Y if kind == "columnchart" else alt.X
    cat_axis = "x" if kind == "columnchart" else "y"
    val_axis = "y" if kind == "columnchart" else "x"
    enc = {
        cat_axis: cat_enc(
            f"{xcol}:{'T' if x_type == 'T' and kind == 'columnchart' else 'N' if x_type != 'Q' else 'O'}",
            title=xtitle,
            sort=None,
        ),
        val_axis: val_enc("value:Q", title=ytitle),
        "tooltip": tooltip,
    }
    if show_color:
        enc["color"] = color
    size = (
        {"width": WIDTH, "height": HEIGHT}
        if kind == "columnchart"
        else {"width": WIDTH, "height": alt.Step(18)}
    )
    return chart.mark_bar().encode(**enc).properties(**size)
