"""Ordered, strict and any-order funnels with windows, exclusions and breakdowns."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import numpy as np
import polars as pl

from psanalytics.journeys._attempts import credited
from psanalytics.journeys._bounded import bucketed_credited, wants_buckets
from psanalytics.journeys._common import DEFAULT_LEVEL, JourneyError, duration, frame, level_expr

Order = Literal["ordered", "strict", "any"]
ORDERS = ("ordered", "strict", "any")
QUANTILES = (0.25, 0.5, 0.75, 0.9)

_NS = 1_000_000_000


@dataclass(frozen=True)
class Step:
    """A funnel step: ``match`` (a ``level`` value or a boolean Polars expression), and the
    ``name`` shown in results and charts."""

    match: str | pl.Expr
    name: str | None = None


@dataclass(frozen=True)
class Exclusion:
    """Events that cancel a conversion between two steps (1-based step numbers)."""

    match: str | pl.Expr
    between: tuple[int, int] | None = None


def step(match: str | pl.Expr, *, name: str | None = None) -> Step:
    """A funnel step with a readable name, e.g.
    ``step(pl.col("PageUri").str.contains("/checkout/"), name="checkout page")``.
    (``pl.Expr.alias`` names an expression step too.)"""
    return Step(match, name)


def exclude(match: str | pl.Expr, *, between: tuple[int, int] | None = None) -> Exclusion:
    """An exclusion for :func:`funnel`: an event matching ``match`` after the event of step
    ``between[0]`` and before the event of step ``between[1]`` stops that attempt before
    step ``between[1]``. Default: between the first and the last step."""
    return Exclusion(match, between)


def _expr_name(e: pl.Expr) -> str:
    try:
        if str(e.meta.undo_aliases()) != str(e):
            return e.meta.output_name()
    except Exception:  # noqa: BLE001 - an expression polars cannot name
        pass
    text = str(e)
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


def _match(m: str | pl.Expr, level_col: pl.Expr | None, what: str) -> pl.Expr:
    if isinstance(m, pl.Expr):
        return m
    if isinstance(m, str):
        if level_col is None:  # pragma: no cover - guarded by the caller
            raise JourneyError(f"{what} {m!r} needs a level column")
        return level_col == m
    raise JourneyError(f"{what} must be a string or a polars expression, got {type(m).__name__}")


@dataclass
class _Spec:
    names: list[str]
    preds: list[pl.Expr]
    excl: list[tuple[pl.Expr, int, int]]  # (pred, from index, to index), 0-based
    win_ns: int | None
    step_ns: list[int | None]  # per step (index 0 unused)
    order: str
    breakdown: pl.Expr | None
    breakdown_name: str | None


def _spec(
    schema: pl.Schema,
    steps: Sequence[str | pl.Expr | Step],
    *,
    level: str,
    window: object,
    step_windows: Sequence[object] | None,
    exclude_: Sequence[str | pl.Expr | Exclusion | tuple] | None,
    order: str,
    breakdown: str | pl.Expr | None,
) -> _Spec:
    if not steps:
        raise JourneyError("funnel needs at least one step")
    if order not in ORDERS:
        raise JourneyError(f"order must be 'ordered', 'strict' or 'any', got {order!r}")
    lvl: list[pl.Expr] = []

    def lvl_col() -> pl.Expr:  # read only when a step or exclusion is a level value
        if not lvl:
            lvl.append(level_expr(schema, level))
        return lvl[0]

    names, preds = _steps(steps, lvl_col)
    win_ns = duration(window, "window") if window is not None else None
    step_ns = _step_windows(step_windows, len(steps), order)
    excl = _exclusions(exclude_, len(steps), order, lvl_col)
    bd, bd_name = _breakdown(schema, breakdown)
    return _Spec(names, preds, excl, win_ns, step_ns, order, bd, bd_name)


def _steps(
    steps: Sequence[str | pl.Expr | Step], lvl_col: Callable[[], pl.Expr]
) -> tuple[list[str], list[pl.Expr]]:
    names: list[str] = []
    preds: list[pl.Expr] = []
    for s in steps:
        name = None
        if isinstance(s, Step):
            name, s = s.name, s.match
        if isinstance(s, str):
            preds.append(_match(s, lvl_col(), "a funnel step"))
            names.append(name or s)
        elif isinstance(s, pl.Expr):
            preds.append(s)
            names.append(name or _expr_name(s))
        else:
            raise JourneyError(
                f"funnel steps must be strings, polars expressions or step(...), got {type(s).__name__}"
            )
    return names, preds


def _step_windows(step_windows: Sequence[object] | None, k: int, order: str) -> list[int | None]:
    step_ns: list[int | None] = [None] * k
    if step_windows is None:
        return step_ns
    if order == "any":
        raise JourneyError("step_windows need an ordered funnel (order='ordered' or 'strict')")
    if len(step_windows) != k - 1:
        raise JourneyError(
            f"step_windows needs one entry per step after the first ({k - 1}), got {len(step_windows)}"
        )
    for i, w in enumerate(step_windows, start=1):
        step_ns[i] = duration(w, f"step_windows[{i - 1}]") if w is not None else None
    return step_ns


def _exclusions(
    exclude_: Sequence[str | pl.Expr | Exclusion | tuple] | None,
    k: int,
    order: str,
    lvl_col: Callable[[], pl.Expr],
) -> list[tuple[pl.Expr, int, int]]:
    excl: list[tuple[pl.Expr, int, int]] = []
    for x in exclude_ or ():
        between: tuple[int, int] | None = None
        if isinstance(x, Exclusion):
            m, between = x.match, x.between
        elif isinstance(x, tuple):
            if len(x) != 3:
                raise JourneyError("an exclusion tuple is (match, from_step, to_step)")
            m, between = x[0], (x[1], x[2])
        else:
            m = x
        if order == "any":
            raise JourneyError("exclusions need an ordered funnel (order='ordered' or 'strict')")
        a, b = between if between is not None else (1, k)
        if not (1 <= a < b <= k):
            raise JourneyError(
                f"an exclusion is between steps 1 <= from < to <= {k}, got between=({a}, {b})"
            )
        excl.append(
            (_match(m, lvl_col() if isinstance(m, str) else None, "an exclusion"), a - 1, b - 1)
        )
    return excl


def _breakdown(
    schema: pl.Schema, breakdown: str | pl.Expr | None
) -> tuple[pl.Expr | None, str | None]:
    if breakdown is None:
        return None, None
    if isinstance(breakdown, str):
        if breakdown not in schema:
            raise JourneyError(f"breakdown={breakdown!r} is not a column of the events")
        return pl.col(breakdown), breakdown
    if isinstance(breakdown, pl.Expr):
        return breakdown, _expr_name(breakdown)
    raise JourneyError("breakdown must be a column name or a polars expression")


def funnel_times(
    events: pl.DataFrame | pl.LazyFrame,
    steps: Sequence[str | pl.Expr | Step],
    *,
    within: str = "session",
    window: str | timedelta | float | None = None,
    step_windows: Sequence[str | timedelta | float | None] | None = None,
    breakdown: str | pl.Expr | None = None,
    exclude: Sequence[str | pl.Expr | Exclusion | tuple] | None = None,
    order: Order = "ordered",
    level: str = DEFAULT_LEVEL,
    memory: str | int | None = None,
) -> pl.DataFrame:
    """Per journey and reached step, the time it took (the data behind :func:`funnel`'s time
    columns and :func:`time_histogram`): ``journey`` (String), the breakdown column if any,
    ``step`` (UInt32, 1-based), ``name``, ``time_to_step_s`` (from the credited attempt's
    first step) and ``time_from_previous_s`` (null at step 1). Arguments as in :func:`funnel`.
    """
    best, spec = _credited(
        events, steps, within, memory, True, level=level, window=window,
        step_windows=step_windows, exclude_=exclude, order=order, breakdown=breakdown,
    )  # fmt: skip
    return _times(best, spec).sort("journey", "step")


def _times(best: pl.DataFrame, spec: _Spec) -> pl.DataFrame:
    k = len(spec.names)
    bd = [pl.col("_bd").alias(spec.breakdown_name)] if spec.breakdown_name else []
    jr = [pl.col("_path").cast(pl.String).alias("journey")] if "_path" in best.columns else []
    parts = []
    for i in range(k):
        part = best.filter(pl.col("reached") > i).select(
            *jr,
            *bd,
            pl.lit(i + 1, dtype=pl.UInt32).alias("step"),
            pl.lit(spec.names[i]).alias("name"),
            (pl.col(f"_t{i}") / _NS).alias("time_to_step_s"),
            (
                (pl.col(f"_t{i}") - pl.col(f"_t{i - 1}")) / _NS if i else pl.lit(None, pl.Float64)
            ).alias("time_from_previous_s"),
        )
        parts.append(part)
    return pl.concat(parts) if parts else pl.DataFrame()


def funnel(
    events: pl.DataFrame | pl.LazyFrame,
    steps: Sequence[str | pl.Expr | Step],
    *,
    within: str = "session",
    window: str | timedelta | float | None = None,
    step_windows: Sequence[str | timedelta | float | None] | None = None,
    breakdown: str | pl.Expr | None = None,
    exclude: Sequence[str | pl.Expr | Exclusion | tuple] | None = None,
    order: Order = "ordered",
    level: str = DEFAULT_LEVEL,
    memory: str | int | None = None,
) -> pl.DataFrame:
    """A funnel: how many journeys reach each step.

    Steps are ``level`` values (``EventType`` by default), Polars boolean expressions (named
    by their ``.alias``), or :func:`step` objects with a ``name``. Inside each journey
    (``within``: ``"session"``, ``"device"`` or ``"user"``) events are ordered by
    (``EventTime``, input order).

    ``order="ordered"`` (default; PostHog's "sequential"):

    * step ``k+1`` is matched by an event **strictly after** the event matching step ``k`` (one
      event never counts for two steps; ``[A, A]`` needs two As), other events may come between;
    * an attempt starts at every step-1 event and takes the **earliest** later match of each
      next step; the journey is credited with its best attempt (most steps, then the earliest
      start), so a journey counts once and repeated events count once;
    * ``window``: every step within ``window`` of the attempt's step-1 event
      (``t_k - t_1 <= window``: exactly the window converts, 1 ns more does not);
    * ``step_windows=[w2, w3, ...]``: step ``k`` within ``w_k`` of step ``k-1`` (``None``: no
      limit), applied to the earliest match (a later match of step ``k`` is not tried);
    * ``exclude=[...]``: an exclusion event after the event of step ``a`` and before the event
      of step ``b`` (by default the first and last steps; :func:`exclude` or a tuple
      ``(match, a, b)`` choose) stops that attempt before step ``b``; another attempt that
      starts after the exclusion can still convert.

    ``order="strict"`` (PostHog's "strict"): as ordered, but step ``k+1`` must be the very next
    event of the journey after step ``k``'s (any other event in between breaks the attempt).

    ``order="any"``: the steps may happen in any order; step ``k`` is reached when events
    matching each of steps ``1..k`` happened (an event matching several steps counts for each),
    all within ``window`` of the first of them. Times are from that first event to the moment
    steps ``1..k`` had all happened.

    ``breakdown`` (a column name or an expression) is read on the first event of each
    journey's credited attempt, so every journey is in exactly one group and the groups add
    up to the funnel without breakdown.

    Returns:
        One row per step (per breakdown value first, when given, ordered by journeys entering
        step 1, then value): ``step`` (1-based), ``name``, ``entered``, ``conversion`` (vs
        step 1), ``conversion_from_previous``, ``dropped``, ``drop_off_rate``,
        ``time_to_step_p25_s`` / ``_p50_s`` / ``_p75_s`` / ``_p90_s`` (linear interpolation),
        ``mean_time_to_step_s``, ``median_time_to_step_s`` (= p50), ``median_time_from_previous_s``.
        Use :func:`funnel_times` for the per-journey times and :func:`time_histogram` for bins.

    ``events`` may also be export files (a path, folder, glob or list). With files, or with
    ``memory=`` (a budget such as ``"2GB"``), journeys are credited device bucket by device
    bucket within the budget (:func:`psanalytics.sessions.device_buckets`), then aggregated
    once: the same result with bounded memory.
    """
    best, spec = _credited(
        events, steps, within, memory, False, level=level, window=window,
        step_windows=step_windows, exclude_=exclude, order=order, breakdown=breakdown,
    )  # fmt: skip
    return _aggregate(best, spec)


def _credited(
    events: object, steps: Sequence[str | pl.Expr | Step], within: str,
    memory: str | int | None, journeys: bool, **spec_args: Any,
) -> tuple[pl.DataFrame, _Spec]:  # fmt: skip
    """The credited attempts of every journey: in memory, or with files or ``memory=``
    device bucket by device bucket (:mod:`psanalytics.journeys._bounded`)."""
    if wants_buckets(events, memory):
        return bucketed_credited(
            events, within, memory, lambda schema: _spec(schema, steps, **spec_args), journeys
        )
    df = frame(events)  # type: ignore[arg-type]
    spec = _spec(df.schema, steps, **spec_args)
    return credited(df, spec, within, journeys=journeys), spec


_TIME_COLS = [f"time_to_step_p{int(q * 100)}_s" for q in QUANTILES] + [
    "mean_time_to_step_s", "median_time_to_step_s", "median_time_from_previous_s",
]  # fmt: skip


def _aggregate(best: pl.DataFrame, spec: _Spec) -> pl.DataFrame:
    k = len(spec.names)
    g = [spec.breakdown_name] if spec.breakdown_name is not None else []
    grid = pl.DataFrame({"step": pl.Series(range(1, k + 1), dtype=pl.UInt32), "name": spec.names})
    codes, groups = _group_codes(best, g)
    if g:
        grid = groups.join(grid, how="cross")
    stats = _time_stats(best, k, codes, groups)
    if stats.height:
        grid = grid.join(stats, on=[*g, "step"], how="left", nulls_equal=True)
    else:
        grid = grid.with_columns(
            pl.lit(None, pl.UInt32).alias("entered"),
            *[pl.lit(None, pl.Float64).alias(c) for c in _TIME_COLS],
        )
    cols = [
        *g, "step", "name", "entered", "conversion", "conversion_from_previous", "dropped",
        "drop_off_rate", *_TIME_COLS,
    ]  # fmt: skip
    grid = _rates(grid, g).select(cols).with_columns(pl.col("step").cast(pl.UInt32))
    if not g:
        return grid
    # biggest group first
    size = grid.filter(pl.col("step") == 1).select(g[0], pl.col("entered").alias("_n1"))
    return (
        grid.join(size, on=g, how="left", nulls_equal=True)
        .sort(["_n1", g[0], "step"], descending=[True, False, False], nulls_last=True)
        .drop("_n1")
    )


def _group_codes(best: pl.DataFrame, g: list[str]) -> tuple[np.ndarray, pl.DataFrame]:
    """Each journey's breakdown group as an integer (0 without a breakdown), and the
    groups' values (named ``g[0]``; null is a group of its own)."""
    if not g:
        return np.zeros(best.height, dtype=np.int64), pl.DataFrame()
    rows = (
        best.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("_rows"), "_bd")
        .group_by("_bd")
        .agg("_rows")
    )
    lens = rows.get_column("_rows").list.len().to_numpy()
    codes = np.empty(best.height, dtype=np.int64)
    codes[rows.get_column("_rows").explode().to_numpy()] = np.repeat(np.arange(len(lens)), lens)
    return codes, rows.select(pl.col("_bd").alias(g[0]))


def _quantile(x: np.ndarray, off: np.ndarray, n: np.ndarray, q: float) -> np.ndarray:
    """Per segment ``x[off:off + n]`` (sorted, n >= 1) Polars' ``quantile(q, "linear")``:
    ``lower + (index - floor(index)) * (upper - lower)`` at index ``(n - 1) * q``."""
    fi = (n - 1).astype(np.float64) * q
    lo = np.floor(fi)
    lower, upper = x[off + lo.astype(np.int64)], x[off + np.ceil(fi).astype(np.int64)]
    return np.where(lower == upper, lower, (fi - lo) * (upper - lower) + lower)


def _sorted_segments(
    key: np.ndarray, t: np.ndarray, nkeys: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``t`` (ns) in seconds (``float(t) / 1e9``) sorted by (key, t), and each key's offset
    and count there."""
    n = np.bincount(key, minlength=nkeys)
    lo = int(t.min()) if len(t) else 0
    tbits = (int(t.max()) - lo).bit_length() if len(t) else 0
    if tbits + max(nkeys - 1, 1).bit_length() <= 62:
        # the common case: (key, t - min) packed in one int64, one plain sort
        mask = (1 << tbits) - 1
        packed = np.sort((key << tbits) | (t - lo))
        ts = (packed & mask) + lo
    else:
        ts = t[np.lexsort((t, key))]
    return ts / _NS, np.cumsum(n) - n, n


def _time_stats(
    best: pl.DataFrame, k: int, codes: np.ndarray, groups: pl.DataFrame
) -> pl.DataFrame:
    """Per breakdown group and reached step: ``entered`` and the time columns (quantiles as
    Polars' linear ``quantile``; the mean summed over the sorted values, so it does not
    depend on the journeys' order: a hash grouping's, or the buckets' on Spark and on
    files). One numpy sort per column instead of a grouping per quantile."""
    reached = best.get_column("reached").to_numpy()
    t = [best.get_column(f"_t{i}").fill_null(0).to_numpy() for i in range(k)]
    sel = [np.flatnonzero(reached > i) for i in range(k)]
    nkeys = max(groups.height, 1) * k
    key = np.concatenate([codes[s] * k + i for i, s in enumerate(sel)])
    x, off, n = _sorted_segments(key, np.concatenate([t[i][s] for i, s in enumerate(sel)]), nkeys)
    has = np.flatnonzero(n)
    off, n = off[has], n[has]
    cols: dict[str, Any] = {"step": (has % k + 1).astype(np.uint32), "entered": n.astype(np.uint32)}
    for q in QUANTILES:
        cols[f"time_to_step_p{int(q * 100)}_s"] = _quantile(x, off, n, q)
    cols["mean_time_to_step_s"] = np.add.reduceat(x, off) / n if len(x) else x
    cols["median_time_to_step_s"] = cols["time_to_step_p50_s"]
    # time from the previous step: steps 2.. (step 1 has none)
    med = np.full(nkeys, np.nan)
    if k > 1:
        dt = np.concatenate([t[i][s] - t[i - 1][s] for i, s in enumerate(sel) if i])
        xp, offp, nump = _sorted_segments(key[len(sel[0]) :], dt, nkeys)
        ok = nump > 0
        med[ok] = _quantile(xp, offp[ok], nump[ok], 0.5)
    out = pl.DataFrame(cols).with_columns(
        pl.Series("median_time_from_previous_s", med[has]).fill_nan(None)
    )
    if groups.width:
        out = out.with_columns(groups.to_series().gather(pl.Series(has // k)))
    return out.select(groups.columns + ["step", "entered", *_TIME_COLS])


def _rates(grid: pl.DataFrame, g: list[str]) -> pl.DataFrame:
    """Conversion and drop-off per step, within each breakdown group."""
    e = pl.col("entered")

    def w(x: pl.Expr) -> pl.Expr:
        return x.over(g) if g else x

    first, prev, step1 = w(e.first()), w(e.shift(1)), pl.col("step") == 1
    return (
        grid.sort([*g, "step"], nulls_last=True)
        .with_columns(e.fill_null(0).cast(pl.UInt32))
        .with_columns(
            pl.when(first > 0).then(e / first).alias("conversion"),
            pl.when(step1)
            .then(pl.when(e > 0).then(1.0))
            .otherwise(pl.when(prev > 0).then(e / prev))
            .alias("conversion_from_previous"),
            pl.when(step1).then(0).otherwise(prev - e).cast(pl.UInt32).alias("dropped"),
            pl.when(step1)
            .then(0.0)
            .otherwise(pl.when(prev > 0).then((prev - e) / prev))
            .alias("drop_off_rate"),
        )
    )


#: Edges (seconds) of :func:`time_histogram`'s default bins.
TIME_BINS = (0, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 2 * 3600, 6 * 3600, 86400,
             2 * 86400, 7 * 86400)  # fmt: skip


def _label(s: float) -> str:
    if s < 60:
        return f"{s:g} s"
    if s < 3600:
        return f"{s / 60:g} min"
    if s < 86400:
        return f"{s / 3600:g} h"
    return f"{s / 86400:g} d"


def _range(a: float, b: float) -> str:
    la, lb = _label(a).split(" "), _label(b).split(" ")
    if a == 0:
        return f"0-{lb[0]} {lb[1]}"
    if la[1] == lb[1]:
        return f"{la[0]}-{lb[0]} {lb[1]}"
    return f"{_label(a)}-{_label(b)}"


def time_histogram(
    times: pl.DataFrame, *, step: int | None = None, bins: Sequence[float] = TIME_BINS
) -> pl.DataFrame:
    """Histogram data of time to convert from :func:`funnel_times`: one row per step (from
    step 2; ``step=`` picks one) and bin: ``step``, ``name``, ``bin`` (label such as
    ``"1-2 min"``, the last is open ``"7 d+"``), ``bin_start_s``, ``bin_end_s`` (null for the
    last), ``journeys``. A time equal to a bin edge falls in the bin that starts there. Every
    bin is listed (0 when empty).
    """
    edges = sorted(float(b) for b in bins)
    if not edges or edges[0] != 0:
        edges = [0.0, *[b for b in edges if b > 0]]
    if "time_to_step_s" not in times.columns or "step" not in times.columns:
        raise JourneyError("time_histogram takes the frame of funnel_times()")
    t = times.filter(pl.col("step") > 1)
    if step is not None:
        t = t.filter(pl.col("step") == step)
    labels = [_range(a, b) for a, b in zip(edges, edges[1:], strict=False)]
    labels.append(f"{_label(edges[-1])}+")
    idx = pl.Series(edges).search_sorted(t.get_column("time_to_step_s"), side="right") - 1
    counted = (
        t.select("step", "name")
        .with_columns(idx.cast(pl.Int64).alias("_b"))
        .group_by("step", "name", "_b")
        .agg(pl.len().cast(pl.UInt32).alias("journeys"))
    )
    grid = (
        counted.select("step", "name")
        .unique()
        .join(
            pl.DataFrame(
                {
                    "_b": list(range(len(edges))),
                    "bin": labels,
                    "bin_start_s": edges,
                    "bin_end_s": [*edges[1:], None],
                },
                schema={
                    "_b": pl.Int64,
                    "bin": pl.String,
                    "bin_start_s": pl.Float64,
                    "bin_end_s": pl.Float64,
                },
            ),
            how="cross",
        )
    )
    return (
        grid.join(counted, on=["step", "name", "_b"], how="left")
        .with_columns(pl.col("journeys").fill_null(0))
        .sort("step", "_b")
        .select("step", "name", "bin", "bin_start_s", "bin_end_s", "journeys")
    )
