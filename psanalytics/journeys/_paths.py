"""Step transitions, the most common paths, and paths anchored on a start or end step."""

from __future__ import annotations

import warnings

import polars as pl

from psanalytics.journeys._bounded import per_bucket, summed_transitions, wants_buckets
from psanalytics.journeys._common import (
    _UNSET,
    DEFAULT_LEVEL,
    DeprecatedArgumentWarning,
    JourneyError,
    frame,
    level_expr,
    ordered,
    settle,
)

#: Pseudo-step before the first step of every journey.
ENTRY = "(entry)"
#: Pseudo-step after the last step of every journey.
EXIT = "(exit)"
#: Steps lumped together by ``min_share``.
OTHER = "(other)"


def _level(fn: str, level: object) -> str:
    if level is _UNSET:
        warnings.warn(
            f"{fn}(): level now defaults to {DEFAULT_LEVEL!r} like every journey function "
            "(it was 'page'); pass level= to choose and silence this warning",
            DeprecatedArgumentWarning,
            stacklevel=3,
        )
        return DEFAULT_LEVEL
    return str(level)


def _steps(
    events: pl.DataFrame | pl.LazyFrame, level: str, within: str, collapse_repeats: bool
) -> pl.DataFrame:
    df = frame(events)
    step = level_expr(df.schema, level).alias("step")
    o = ordered(df, within, [step]).select("_path", "step")
    return o.filter(_new_step()) if collapse_repeats else o


def _new_step() -> pl.Expr:
    """True where a step is not a repeat of the journey's previous step."""
    return (
        (pl.col("step") != pl.col("step").shift(1))
        | (pl.col("_path") != pl.col("_path").shift(1))
        | pl.col("step").shift(1).is_null()
    )


def transitions(
    events: pl.DataFrame | pl.LazyFrame,
    *,
    level: str = _UNSET,
    within: str = _UNSET,
    collapse_repeats: bool = False,
    path: str = _UNSET,
    memory: str | int | None = None,
) -> pl.DataFrame:
    """Count step-to-step transitions inside journeys, with entry and exit pseudo-steps.

    Args:
        events: canonical events or sessionized ``.events``.
        level: ``"event_type"`` (default), ``"page"`` (``PageUri``), ``"page_path"``
            (cleaned URL), ``"page_type"``, ``"title"`` or any column name.
        within: what one journey is: ``"session"`` (default), ``"device"`` or ``"user"``.
        collapse_repeats: merge consecutive equal steps (a reload, or a block event on the
            same page) into one step first.
        path: deprecated spelling of ``within``.
        memory: with export files as ``events`` (a path, folder, glob or list) or with this
            budget (``"2GB"``), journeys are counted device bucket by device bucket within
            the budget (:func:`psanalytics.sessions.device_buckets`); the same result.

    Returns:
        ``from_step``, ``to_step``, ``count`` (UInt32), ``probability`` (count divided by all
        transitions out of ``from_step``; each ``from_step``'s probabilities sum to 1).
        Every journey contributes ``(entry) -> first step`` and ``last step -> (exit)``.
        Sorted by ``from_step``, then ``count`` descending, then ``to_step``.
    """
    within = settle("transitions", "within", within, "path", path, "session")
    lvl = _level("transitions", level)
    if wants_buckets(events, memory):
        _, parts = per_bucket(
            events,  # type: ignore[arg-type]
            within,
            memory,
            lambda b: transitions(b, level=lvl, within=within, collapse_repeats=collapse_repeats),
        )
        return with_probability(summed_transitions(parts))
    o = _steps(events, lvl, within, collapse_repeats)
    nxt_same = pl.col("_path").shift(-1) == pl.col("_path")
    first = (pl.col("_path") != pl.col("_path").shift(1)).fill_null(True)
    pairs = o.select(
        pl.when(first).then(pl.lit(ENTRY)).otherwise(pl.col("step").shift(1)).alias("from_step"),
        pl.col("step").alias("to_step"),
    )
    exits = o.filter(~nxt_same.fill_null(False)).select(
        pl.col("step").alias("from_step"), pl.lit(EXIT).alias("to_step")
    )
    return with_probability(
        pl.concat([pairs, exits])
        .group_by("from_step", "to_step")
        .agg(pl.len().cast(pl.UInt32).alias("count"))
    )


def with_probability(counts: pl.DataFrame) -> pl.DataFrame:
    """Transition counts -> ``probability`` per ``from_step``, in the documented order."""
    return counts.with_columns(
        (pl.col("count") / pl.col("count").sum().over("from_step")).alias("probability")
    ).sort(["from_step", "count", "to_step"], descending=[False, True, False])


def top_paths(
    events: pl.DataFrame | pl.LazyFrame,
    *,
    level: str = _UNSET,
    within: str = _UNSET,
    max_steps: int | None = 10,
    top: int = _UNSET,
    collapse_repeats: bool = True,
    path: str = _UNSET,
    n: int = _UNSET,
) -> pl.DataFrame:
    """The most common journeys as step sequences.

    Args:
        level, within: as in :func:`transitions`.
        max_steps: keep only the first ``max_steps`` steps of each journey (None: all), so
            journeys that share a beginning count together.
        top: how many paths to return (default 20).
        collapse_repeats: merge consecutive equal steps first (default on).
        path, n: deprecated spellings of ``within`` and ``top``.

    Returns:
        ``steps`` (List[String]), ``n_steps`` (UInt32), ``count`` (UInt32: journeys with
        exactly these first steps), ``share`` (count / all journeys); most common first,
        ties by ``steps``.
    """
    within = settle("top_paths", "within", within, "path", path, "session")
    top = settle("top_paths", "top", top, "n", n, 20)
    if top < 1:
        raise JourneyError(f"top must be at least 1, got {top}")
    if max_steps is not None and max_steps < 1:
        raise JourneyError(f"max_steps must be at least 1 or None, got {max_steps}")
    o = _steps(events, _level("top_paths", level), within, collapse_repeats)
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
        .head(top)
        .select("steps", "n_steps", "count", "share")
    )


def paths(
    events: pl.DataFrame | pl.LazyFrame,
    *,
    start: str | pl.Expr | None = None,
    end: str | pl.Expr | None = None,
    steps: int = 5,
    level: str = DEFAULT_LEVEL,
    within: str = "session",
    min_share: float = 0.01,
    collapse_repeats: bool = True,
) -> pl.DataFrame:
    """Where journeys go after a start step (or come from before an end step): the edges
    of a Sankey diagram, :func:`psanalytics.jupyter.charts.sankey` draws them.

    Args:
        start: anchor each journey on its **first** event at this step (a ``level`` value, or
            a Polars expression that is true on the anchor events) and follow the ``steps``
            steps after it. Journeys that never reach it are left out.
        end: anchor on the journey's **last** event at this step and look at the ``steps``
            steps before it. Give ``start`` or ``end`` (or neither: from each journey's entry).
        steps: how many steps to follow from the anchor.
        level, within: as in :func:`transitions`; ``level="page_type"`` or ``"page_path"``
            give readable page paths.
        min_share: at each depth, steps reached by less than this share of the anchored
            journeys are lumped into ``(other)`` (0 keeps everything).
        collapse_repeats: merge consecutive equal steps first (default on).

    Returns:
        One row per edge: ``from_depth`` (Int32: 0 is the anchor with ``start`` or without an
        anchor; with ``end`` the anchor is at depth ``steps`` and earlier steps have smaller
        depths), ``from_step``, ``to_step`` (``(exit)`` after a journey's last step with
        ``start``, ``(entry)`` before its first step with ``end``), ``count`` (journeys),
        ``share`` (of anchored journeys). Sorted by depth, then count descending.
    """
    if start is not None and end is not None:
        raise JourneyError("paths: give start= or end=, not both")
    if steps < 1:
        raise JourneyError(f"paths: steps must be at least 1, got {steps}")
    if not 0 <= min_share < 1:
        raise JourneyError(f"paths: min_share must be in [0, 1), got {min_share}")
    df = frame(events)
    o = _anchored_steps(df, start if start is not None else end, level, within, collapse_repeats)
    o = o.with_columns(pl.int_range(pl.len()).over("_path").alias("_i"))
    lens = o.group_by("_path").agg(pl.len().alias("_n"))
    if start is not None:
        a = o.filter(pl.col("_a")).group_by("_path").agg(pl.col("_i").min().alias("_ai"))
    elif end is not None:
        a = o.filter(pl.col("_a")).group_by("_path").agg(pl.col("_i").max().alias("_ai"))
    else:
        a = lens.select("_path", pl.lit(0, dtype=pl.Int64).alias("_ai"))
    o = o.join(a.join(lens, on="_path"), on="_path")
    n_journeys = a.height
    nodes = _window(o, steps, backwards=end is not None)
    if min_share > 0 and n_journeys:
        nodes = _lump(nodes, n_journeys, min_share)
    return _edges(nodes, n_journeys)


def _anchored_steps(
    df: pl.DataFrame,
    anchor_def: str | pl.Expr | None,
    level: str,
    within: str,
    collapse_repeats: bool,
) -> pl.DataFrame:
    """``_path``, ``step`` and ``_a`` (an anchor event) in journey order, repeats merged."""
    step = level_expr(df.schema, level)
    if anchor_def is None:
        anchor = pl.lit(False)
    elif isinstance(anchor_def, pl.Expr):
        anchor = anchor_def.fill_null(False)
    else:
        anchor = step == anchor_def
    o = ordered(df, within, [step.alias("step"), anchor.alias("_a")]).select("_path", "step", "_a")
    if not collapse_repeats:
        return o
    # an anchor event folded into a repeat marks the kept step it repeats
    o = o.with_columns(_new_step().cum_sum().alias("_grp"))
    return o.group_by("_grp", maintain_order=True).agg(
        pl.col("_path").first(), pl.col("step").first(), pl.col("_a").any()
    )


def _window(o: pl.DataFrame, steps: int, *, backwards: bool) -> pl.DataFrame:
    """The nodes (``_path``, ``depth``, ``step``) within ``steps`` of each anchor, with the
    exit (or entry) node when the journey ends within reach."""
    i, ai = pl.col("_i"), pl.col("_ai")
    if not backwards:
        w = o.filter((i >= ai) & (i <= ai + steps))
        w = w.with_columns((i - ai).cast(pl.Int32).alias("depth"))
        ex = w.filter(i == pl.col("_n") - 1).filter(pl.col("depth") < steps)
        ex = ex.select("_path", (pl.col("depth") + 1).alias("depth"), pl.lit(EXIT).alias("step"))
    else:
        w = o.filter((i <= ai) & (i >= ai - steps))
        w = w.with_columns((steps - (ai - i)).cast(pl.Int32).alias("depth"))
        ex = w.filter(i == 0).filter(pl.col("depth") > 0)
        ex = ex.select("_path", (pl.col("depth") - 1).alias("depth"), pl.lit(ENTRY).alias("step"))
    return pl.concat([w.select("_path", "depth", "step"), ex]).sort("_path", "depth")


def _lump(nodes: pl.DataFrame, n_journeys: int, min_share: float) -> pl.DataFrame:
    """Steps reached by less than ``min_share`` of the journeys at their depth -> (other)."""
    share = nodes.group_by("depth", "step").agg((pl.len() / n_journeys).alias("_s"))
    rare = (pl.col("_s") < min_share) & ~pl.col("step").is_in([ENTRY, EXIT])
    return (
        nodes.join(share, on=["depth", "step"])
        .with_columns(pl.when(rare).then(pl.lit(OTHER)).otherwise(pl.col("step")).alias("step"))
        .drop("_s")
    )


def _edges(nodes: pl.DataFrame, n_journeys: int) -> pl.DataFrame:
    nodes = nodes.sort("_path", "depth")
    edges = nodes.with_columns(
        pl.col("step").shift(-1).over("_path").alias("to_step"),
        pl.col("depth").shift(-1).over("_path").alias("_nd"),
    ).filter(pl.col("_nd").is_not_null())
    return (
        edges.group_by(
            pl.col("depth").alias("from_depth"), pl.col("step").alias("from_step"), "to_step"
        )
        .agg(pl.len().cast(pl.UInt32).alias("count"))
        .with_columns((pl.col("count") / max(n_journeys, 1)).alias("share"))
        .sort(
            ["from_depth", "count", "from_step", "to_step"], descending=[False, True, False, False]
        )
    )
