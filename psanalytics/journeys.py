"""Journeys: step transitions, the most common paths, and ordered funnels.

Every function takes canonical events (DataFrame or LazyFrame) or the ``.events`` of a
:func:`psanalytics.sessionize` result, and a ``path`` saying what one journey is:

* ``"session"``: one session (uses ``session_key`` when the frame has it, otherwise the
  events are sessionized with the default rules first);
* ``"device"``: all events of one ``DeviceId``;
* ``"user"``: all events of the devices stitched to one e-mail (devices with no e-mail stay
  on their own), as in spec §2 (never merging sessions, only grouping them).

Inside a journey, events are ordered by (``EventTime``, input order), so ties in time are
decided by the input order, as in :func:`psanalytics.sessionize`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Literal

import numpy as np
import polars as pl

from psanalytics.errors import JourneyError
from psanalytics.sessions import parse_duration, sessionize, stitch

__all__ = ["ENTRY", "EXIT", "funnel", "top_paths", "transitions"]

#: Pseudo-step before the first step of every journey.
ENTRY = "(entry)"
#: Pseudo-step after the last step of every journey.
EXIT = "(exit)"

PathKind = Literal["session", "device", "user"]
_LEVELS = {"page": "PageUri", "event_type": "EventType", "title": "PageTitle"}


def _frame(events: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    if isinstance(events, pl.LazyFrame):
        return events.collect()
    if isinstance(events, pl.DataFrame):
        return events
    raise JourneyError(
        f"events must be a polars DataFrame or LazyFrame, got {type(events).__name__}"
    )


def _level_column(df: pl.DataFrame, level: str) -> str:
    col = _LEVELS.get(level, level)
    if col not in df.schema:
        raise JourneyError(
            f"level={level!r} needs column {col!r}; use 'page', 'event_type', 'title' or a column of the frame"
        )
    return col


def _ordered(df: pl.DataFrame, path: str, columns: Sequence[str]) -> pl.DataFrame:
    """Frame with ``_path`` (journey key), ``_t`` and ``columns``, ordered by
    (journey, time, input row)."""
    if "EventTime" not in df.schema:
        raise JourneyError("journeys need the EventTime column")
    if path == "session":
        if "session_key" in df.schema:
            key = pl.col("session_key").cast(pl.Int64)
        else:
            idx = sessionize(df, minimal=True).events.get_column("session_index")
            df = df.with_columns(idx.alias("_session_index"))
            key = pl.concat_str(
                [pl.col("DeviceId"), pl.lit("\x1f"), pl.col("_session_index").cast(pl.String)]
            )
    elif path == "device":
        if "DeviceId" not in df.schema:
            raise JourneyError("path='device' needs the DeviceId column")
        key = pl.col("DeviceId")
    elif path == "user":
        if "DeviceId" not in df.schema or "User" not in df.schema:
            raise JourneyError("path='user' needs the DeviceId and User columns")
        m = stitch(df).select("device_id", "user_email")
        df = df.join(m, left_on="DeviceId", right_on="device_id", how="left", maintain_order="left")
        key = pl.coalesce(pl.col("user_email"), pl.lit("device:") + pl.col("DeviceId"))
    else:
        raise JourneyError(f"path must be 'session', 'device' or 'user', got {path!r}")
    out = df.select(
        key.alias("_path"), pl.col("EventTime").alias("_t"), *[pl.col(c) for c in columns]
    )
    return out.with_row_index("_row").sort(["_path", "_t", "_row"], maintain_order=True)


def transitions(
    events: pl.DataFrame | pl.LazyFrame,
    *,
    level: str = "page",
    path: PathKind = "session",
    collapse_repeats: bool = False,
) -> pl.DataFrame:
    """Count step-to-step transitions inside journeys, with entry and exit pseudo-steps.

    Args:
        events: canonical events or sessionized ``.events``.
        level: ``"page"`` (``PageUri``), ``"event_type"`` (``EventType``), ``"title"``
            (``PageTitle``) or any column name.
        path: what one journey is: ``"session"``, ``"device"`` or ``"user"``.
        collapse_repeats: merge consecutive equal steps (a reload, or a block event on the
            same page) into one step first.

    Returns:
        ``from_step``, ``to_step``, ``count`` (UInt32), ``probability`` (count divided by all
        transitions out of ``from_step``; each ``from_step``'s probabilities sum to 1).
        Every journey contributes ``(entry) -> first step`` and ``last step -> (exit)``.
        Sorted by ``from_step``, then ``count`` descending, then ``to_step``.
    """
    df = _frame(events)
    col = _level_column(df, level)
    o = _ordered(df, path, [col]).select(
        "_path", pl.col(col).cast(pl.String).fill_null("").alias("step")
    )
    if collapse_repeats:
        o = o.filter(
            (pl.col("step") != pl.col("step").shift(1))
            | (pl.col("_path") != pl.col("_path").shift(1))
            | pl.col("step").shift(1).is_null()
        )
    nxt_same = pl.col("_path").shift(-1) == pl.col("_path")
    first = (pl.col("_path") != pl.col("_path").shift(1)).fill_null(True)
    pairs = o.select(
        pl.when(first).then(pl.lit(ENTRY)).otherwise(pl.col("step").shift(1)).alias("from_step"),
        pl.col("step").alias("to_step"),
    )
    exits = o.filter(~nxt_same.fill_null(False)).select(
        pl.col("step").alias("from_step"), pl.lit(EXIT).alias("to_step")
    )
    counts = (
        pl.concat([pairs, exits])
        .group_by("from_step", "to_step")
        .agg(pl.len().cast(pl.UInt32).alias("count"))
        .with_columns(
            (pl.col("count") / pl.col("count").sum().over("from_step")).alias("probability")
        )
        .sort(["from_step", "count", "to_step"], descending=[False, True, False])
    )
    return counts


def top_paths(
    events: pl.DataFrame | pl.LazyFrame,
    *,
    level: str = "page",
    path: PathKind = "session",
    max_steps: int | None = 10,
    n: int = 20,
    collapse_repeats: bool = True,
) -> pl.DataFrame:
    """The most common journeys as step sequences.

    Args:
        level, path: as in :func:`transitions`.
        max_steps: keep only the first ``max_steps`` steps of each journey (None: all), so
            journeys that share a beginning count together.
        n: how many paths to return.
        collapse_repeats: merge consecutive equal steps first (default on).

    Returns:
        ``steps`` (List[String]), ``n_steps`` (UInt32), ``count`` (UInt32: journeys with
        exactly these first steps), ``share`` (count / all journeys); most common first,
        ties by ``steps``.
    """
    if n < 1:
        raise JourneyError(f"n must be at least 1, got {n}")
    if max_steps is not None and max_steps < 1:
        raise JourneyError(f"max_steps must be at least 1 or None, got {max_steps}")
    df = _frame(events)
    col = _level_column(df, level)
    o = _ordered(df, path, [col]).select(
        "_path", pl.col(col).cast(pl.String).fill_null("").alias("step")
    )
    if collapse_repeats:
        o = o.filter(
            (pl.col("step") != pl.col("step").shift(1))
            | (pl.col("_path") != pl.col("_path").shift(1))
            | pl.col("step").shift(1).is_null()
        )
    seq = o.group_by("_path", maintain_order=True).agg(pl.col("step"))
    if max_steps is not None:
        seq = seq.with_columns(pl.col("step").list.head(max_steps))
    total = seq.height
    return (
        seq.group_by("step")
        .agg(pl.len().cast(pl.UInt32).alias("count"))
        .rename({"step": "steps"})
        .with_columns(
            pl.col("steps").list.len().cast(pl.UInt32).alias("n_steps"),
            (pl.col("count") / max(total, 1)).alias("share"),
            pl.col("steps").list.join("\x1f").alias("_k"),
        )
        .sort(["count", "_k"], descending=[True, False])
        .head(n)
        .select("steps", "n_steps", "count", "share")
    )


def funnel(
    events: pl.DataFrame | pl.LazyFrame,
    steps: Sequence[str | pl.Expr],
    *,
    within: PathKind = "session",
    window: str | timedelta | float | None = None,
    level: str = "event_type",
) -> pl.DataFrame:
    """An ordered funnel: how many journeys reach each step, in order.

    Semantics (exact, whatever the order or repetition of events):

    * a step is matched by an event whose ``level`` column equals the step's string, or for
      which the step's Polars expression is true;
    * inside each journey (``within``), events are ordered by (``EventTime``, input order);
      step ``k+1`` must be matched by an event **strictly after** the event that matched step
      ``k`` (so one event never counts for two steps, and ``[A, A]`` needs two A events);
    * repeated events count once: a journey either reaches a step or not;
    * out-of-order events do not count: a step-2 event before the first step-1 event is
      ignored, but a step-2 event after a later step-1 event counts;
    * an attempt starts at any step-1 event and follows the earliest later match of each
      next step; the journey is credited with its best attempt (most steps; ties: the
      earliest start). Without a window this equals following the first step-1 event;
    * ``window``: every step of an attempt must happen within ``window`` of the attempt's
      step-1 event (``t_k - t_1 <= window``).

    Returns:
        One row per step: ``step`` (1-based), ``name``, ``entered`` (journeys reaching the
        step), ``conversion`` (``entered / entered at step 1``), ``conversion_from_previous``,
        ``dropped`` (journeys reaching the previous step but not this one), ``drop_off_rate``,
        ``median_time_to_step_s`` and ``mean_time_to_step_s`` (from step 1, over the journeys
        that reached the step), ``median_time_from_previous_s``.
    """
    if not steps:
        raise JourneyError("funnel needs at least one step")
    win_ns = parse_duration(window, name="window") if window is not None else None
    df = _frame(events)
    names: list[str] = []
    preds: list[pl.Expr] = []
    level_col: str | None = None
    for s in steps:
        if isinstance(s, pl.Expr):
            names.append(str(s))
            preds.append(s)
        elif isinstance(s, str):
            if level_col is None:
                level_col = _level_column(df, level)
            names.append(s)
            preds.append(pl.col(level_col) == s)
        else:
            raise JourneyError(
                f"funnel steps must be strings or polars expressions, got {type(s).__name__}"
            )
    k = len(steps)
    flags = df.select([p.fill_null(False).alias(f"_s{i}") for i, p in enumerate(preds)])
    base = _ordered(df.with_columns(flags), within, [f"_s{i}" for i in range(k)])
    base = base.with_row_index("_pos").with_columns(
        pl.col("_pos").cast(pl.Int64),
        pl.col("_t").dt.cast_time_unit("ns").to_physical().alias("_tn"),
    )
    # Attempts: one per step-1 event.
    att = base.filter(pl.col("_s0")).select(
        "_path",
        pl.col("_pos").alias("_start"),
        pl.col("_pos").alias("_prev"),
        pl.col("_tn").alias("_t0"),
    )
    att = att.with_row_index("_att")
    reached = np.ones(att.height, dtype=np.int64)
    times = [np.zeros(att.height, dtype=np.int64)]
    alive = att.select("_att", "_path", "_prev", "_t0").sort("_prev")
    for i in range(1, k):
        right = base.filter(pl.col(f"_s{i}")).select("_path", "_pos", "_tn").sort("_pos")
        if alive.height == 0 or right.height == 0:
            break
        j = alive.join_asof(
            right,
            left_on="_prev",
            right_on="_pos",
            by="_path",
            strategy="forward",
            allow_exact_matches=False,
            check_sortedness=False,
        ).filter(pl.col("_pos").is_not_null())
        if win_ns is not None:
            j = j.filter(pl.col("_tn") - pl.col("_t0") <= win_ns)
        idx = j.get_column("_att").to_numpy()
        reached[idx] = i + 1
        tk = np.full(att.height, -1, dtype=np.int64)
        tk[idx] = j.get_column("_tn").to_numpy() - j.get_column("_t0").to_numpy()
        times.append(tk)
        alive = j.select("_att", "_path", pl.col("_pos").alias("_prev"), "_t0").sort("_prev")
    while len(times) < k:
        times.append(np.full(att.height, -1, dtype=np.int64))
    # Best attempt per journey: most steps, then earliest start.
    best = (
        att.select("_att", "_path", "_start")
        .with_columns(pl.Series("_reached", reached))
        .sort(["_path", "_reached", "_start"], descending=[False, True, False])
        .group_by("_path", maintain_order=True)
        .first()
    )
    bidx = best.get_column("_att").to_numpy()
    breached = best.get_column("_reached").to_numpy()
    rows = []
    prev_entered = None
    first_entered = int(breached.size)
    for i in range(k):
        sel = breached >= i + 1
        entered = int(sel.sum())
        dt = times[i][bidx[sel]] / 1e9 if entered else np.array([])
        if i > 0 and entered:
            dprev = (times[i][bidx[sel]] - times[i - 1][bidx[sel]]) / 1e9
        else:
            dprev = np.array([])
        rows.append(
            {
                "step": i + 1,
                "name": names[i],
                "entered": entered,
                "conversion": entered / first_entered if first_entered else None,
                "conversion_from_previous": (
                    (entered / prev_entered if prev_entered else None)
                    if i
                    else (1.0 if entered else None)
                ),
                "dropped": (prev_entered - entered) if i else 0,
                "drop_off_rate": ((prev_entered - entered) / prev_entered if prev_entered else None)
                if i
                else 0.0,
                "median_time_to_step_s": float(np.median(dt)) if dt.size else None,
                "mean_time_to_step_s": float(np.mean(dt)) if dt.size else None,
                "median_time_from_previous_s": float(np.median(dprev)) if dprev.size else None,
            }
        )
        prev_entered = entered
    return pl.DataFrame(
        rows,
        schema={
            "step": pl.UInt32,
            "name": pl.String,
            "entered": pl.UInt32,
            "conversion": pl.Float64,
            "conversion_from_previous": pl.Float64,
            "dropped": pl.UInt32,
            "drop_off_rate": pl.Float64,
            "median_time_to_step_s": pl.Float64,
            "mean_time_to_step_s": pl.Float64,
            "median_time_from_previous_s": pl.Float64,
        },
    )
