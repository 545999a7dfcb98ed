"""One visitor at a time: which one to look at, their events, their timeline."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import polars as pl

from psanalytics.jupyter.charts._base import (
    MAX_ROWS,
    WIDTH,
    ChartDataError,
    _lazy,
    _parse_every,
    _require,
    _ship,
    alt,
    url_paths,
)


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
    as :class:`~psanalytics.jupyter.widgets.VisitorPlayer` steps) ringed. The tooltip shows
    the page as its path (``page``) and the full URL (``PageUri``).

    At most ``max_events`` events are drawn (the ones around ``current``); the title says
    when some were left out.
    """
    frame = (
        events
        if isinstance(events, pl.DataFrame)
        and "step" in events.columns
        and "session" in events.columns
        else None
    )
    if frame is None:
        frame = visitor_frame(events, device_id, timeout=timeout)
    points_data, total, n_sessions = _timeline_points(frame, current, max_events)
    starts = points_data.group_by("session", maintain_order=True).agg(pl.col("EventTime").min())
    shown = points_data.height
    heading = title or f"Visitor {frame['DeviceId'][0]}: {total} events in {n_sessions} session(s)"
    if shown < total:
        heading += f" (showing {shown} of {total})"
    extra = [c for c in ("page", "PageUri", "PageTitle", "Value") if c in points_data.columns]
    tooltip = [
        alt.Tooltip("EventTime:T", format="%Y-%m-%d %H:%M:%S"),
        "EventType:N",
        "session:N",
        "step:Q",
        *[f"{c}:N" for c in extra],
    ]
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
                legend=None if points_data["session"].n_unique() > 12 else alt.Legend(),
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


def _timeline_points(
    frame: pl.DataFrame, current: int | None, max_events: int
) -> tuple[pl.DataFrame, int, int]:
    """The points :func:`visitor_timeline` draws (at most ``max_events``, around
    ``current``; ``page`` = the URL path), the visitor's event and session counts."""
    max_events = min(max_events, MAX_ROWS // 2)
    total, n_sessions = frame.height, frame["session"].n_unique()
    if total > max_events:
        centre = current if current is not None else 0
        start = max(0, min(centre - max_events // 2, total - max_events))
        frame = frame.slice(start, max_events)
    cols = ["step", "EventTime", "EventType", "session"] + [
        c for c in ("PageUri", "PageTitle", "Value") if c in frame.columns
    ]
    points = frame.select(cols).with_columns(pl.col("session").cast(pl.String))
    if "PageUri" in points.columns:
        points = points.with_columns(url_paths(points.get_column("PageUri")).alias("page"))
    return _ship(points, "visitor_timeline"), total, n_sessions
