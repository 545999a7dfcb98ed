"""Charts of sessions: how long they are (events, time) and how visitors move between states."""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from psanalytics.jupyter.charts._base import (
    HEIGHT,
    OTHER,
    WIDTH,
    ChartDataError,
    _lazy,
    _pick,
    _require,
    _ship,
    alt,
)


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
