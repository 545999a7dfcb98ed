"""Retention cohorts: who comes back, per period after their cohort's period."""

from __future__ import annotations

import numpy as np
import polars as pl

from psanalytics.journeys._common import JourneyError, frame, group_rows, runs, take, user_key

PERIODS = ("day", "week", "month")
_DAY_NS = 86_400 * 1_000_000_000
# 1970-01-05 was a Monday: weeks start on Monday 00:00 UTC (ISO weeks).
_MONDAY_NS = 4 * _DAY_NS


def _period_index(period: str) -> pl.Expr:
    """Integer index of each event's period, in UTC."""
    t = pl.col("EventTime")
    ns = t.dt.epoch("ns")
    if period == "day":
        return ns.floordiv(_DAY_NS)
    if period == "week":
        return (ns - _MONDAY_NS).floordiv(7 * _DAY_NS)
    return t.dt.year().cast(pl.Int64) * 12 + t.dt.month().cast(pl.Int64) - 1


def _period_start(period: str, idx: pl.Expr) -> pl.Expr:
    if period == "day":
        ns = idx * _DAY_NS
    elif period == "week":
        ns = idx * (7 * _DAY_NS) + _MONDAY_NS
    else:
        return pl.datetime(idx.floordiv(12), idx.mod(12) + 1, 1, time_zone="UTC")
    return pl.from_epoch(ns, time_unit="ns").dt.replace_time_zone("UTC")


def retention(
    events: pl.DataFrame | pl.LazyFrame,
    *,
    cohort: str | pl.Expr = "first_seen",
    period: str = "week",
    returning: pl.Expr | None = None,
    key: str = "DeviceId",
) -> pl.DataFrame:
    """Cohort retention: of the keys whose cohort event fell in a period, how many had a
    returning event 1, 2, ... periods later.

    Args:
        cohort: ``"first_seen"`` (each key's first event in the data), or a boolean Polars
            expression: the key's first event where it is true (e.g. the first order);
            keys that never match are in no cohort.
        period: ``"day"``, ``"week"`` (ISO weeks, Monday 00:00 UTC) or ``"month"``
            (calendar months); all in UTC: an event at 23:59:59.999999999 on a Sunday is in
            that week, one at Monday 00:00 in the next.
        returning: a boolean expression for the events that count as coming back (default:
            any event). Events of the cohort period itself count only in period 0.
        key: the column that identifies a visitor (``"DeviceId"``), or ``"user"``: the
            stitched e-mail (:func:`psanalytics.stitch`), devices without one on their own.

    Returns:
        Long form, one row per cohort and period offset up to the last period the data
        reaches (the triangle): ``cohort`` (Datetime UTC, start of the cohort's period),
        ``cohort_size`` (UInt32), ``period`` (Int32 offset; 0 is the cohort period, where
        everyone counts), ``returning`` (UInt32, keys with a returning event in that period),
        ``rate`` (returning / cohort_size). Periods after the data's last event are absent;
        the last one present may be partly observed. :func:`retention_matrix` pivots it.
    """
    if period not in PERIODS:
        raise JourneyError(f"period must be 'day', 'week' or 'month', got {period!r}")
    df = frame(events)
    if "EventTime" not in df.schema:
        raise JourneyError("retention needs the EventTime column")
    df, k = _key(df, key)
    cols = [k.alias("_k"), _period_index(period).alias("_p")]
    if isinstance(cohort, pl.Expr):
        cols.append(cohort.fill_null(False).alias("_c"))
    elif cohort != "first_seen":
        raise JourneyError("cohort must be 'first_seen' or a boolean polars expression")
    if returning is not None:
        cols.append(returning.fill_null(False).alias("_r"))
    ev = df.select(cols)
    last = ev.get_column("_p").max()
    if last is None:
        return _empty()
    fast = _counted(ev, int(last))  # type: ignore[arg-type]
    if fast is not None:
        return _table(fast, period)
    return _polars(ev, last, period)  # type: ignore[arg-type]


def _polars(ev: pl.DataFrame, last: int, period: str) -> pl.DataFrame:
    """The triangle with Polars' groupings (events without a period: the numpy path's
    integer packing does not hold them)."""
    ret = ev.filter(pl.col("_r")) if "_r" in ev.columns else ev
    visits = ret.select("_k", "_p").unique()
    # the cohort period: the first period with a cohort event (any event: the distinct visits)
    if "_c" in ev.columns:
        src = ev.filter(pl.col("_c")).select("_k", "_p")
    else:
        src = visits if "_r" not in ev.columns else ev.select("_k", "_p").unique()
    first = src.group_by("_k").agg(pl.col("_p").min().alias("_cp"))
    return _triangle(visits, first, last, period)


def _key(df: pl.DataFrame, key: str) -> tuple[pl.DataFrame, pl.Expr]:
    """The frame (with the stitched e-mail for ``key="user"``) and the visitor expression."""
    if key == "user":
        return user_key(df, "key='user'")
    if key not in df.schema:
        raise JourneyError(f"key={key!r} is not a column of the events (or use key='user')")
    return df, pl.col(key)


def _triangle(visits: pl.DataFrame, first: pl.DataFrame, last: int, period: str) -> pl.DataFrame:
    """Cohort x period counts up to the data's last period, rates included."""
    back = (
        visits.join(first, on="_k", how="inner", nulls_equal=True)
        .filter(pl.col("_p") > pl.col("_cp"))
        .group_by("_cp", (pl.col("_p") - pl.col("_cp")).alias("period"))
        .agg(pl.len().cast(pl.UInt32).alias("returning"))
    )
    sizes = first.group_by("_cp").agg(pl.len().cast(pl.UInt32).alias("cohort_size"))
    grid = sizes.with_columns(
        pl.int_ranges(0, pl.lit(last, dtype=pl.Int64) - pl.col("_cp") + 1).alias("period")
    ).explode("period")
    out = (
        grid.join(back, on=["_cp", "period"], how="left")
        .with_columns(
            pl.when(pl.col("period") == 0)
            .then(pl.col("cohort_size"))
            .otherwise(pl.col("returning").fill_null(0))
            .cast(pl.UInt32)
            .alias("returning")
        )
        .sort("_cp", "period")
    )
    return _table(out, period)


def _table(counts: pl.DataFrame, period: str) -> pl.DataFrame:
    """The result from ``_cp`` (cohort period index), ``cohort_size``, ``period``,
    ``returning``, sorted by cohort and period."""
    # the rate divided by numpy: correctly rounded whichever way the counts were made
    # (Polars may multiply by the reciprocal, 1 ulp off)
    rate = counts.get_column("returning").to_numpy() / counts.get_column("cohort_size").to_numpy()
    return counts.select(
        _period_start(period, pl.col("_cp")).dt.cast_time_unit("us").alias("cohort"),
        "cohort_size",
        pl.col("period").cast(pl.Int32),
        "returning",
        pl.Series("rate", rate, dtype=pl.Float64),
    )


def _distinct(
    g: np.ndarray, q: np.ndarray, sel: np.ndarray | None, lo: int, bits: int
) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (visitor, period) pairs at the positions ``sel`` (all when None), sorted.
    ``g`` (visitor) and ``q`` (period) come grouped by visitor, each visitor's events in
    input order: on time-ordered events (exports are) the pairs are sorted already and the
    sort is skipped."""
    if sel is not None:
        g, q = g[sel], q[sel]
    u = (g << bits) | (q - lo)
    if len(u) > 1 and not (u[1:] >= u[:-1]).all():
        u.sort()
    u = u[runs(u)]
    return u >> bits, (u & ((1 << bits) - 1)) + lo


def _visits(q: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`_distinct` of every position without a visitor number per position: when each
    visitor's periods ``q`` (grouped by visitor, ``ends`` from :func:`group_rows`) come
    ascending, as on time-ordered events, a visit starts where the period changes or a
    visitor starts. None when some visitor's periods go down."""
    n = len(q)
    if n < 2:
        return None
    starts = np.r_[0, ends[:-1]]
    down = np.flatnonzero(q[1:] < q[:-1]) + 1  # must all be visitor starts
    at = np.minimum(np.searchsorted(starts, down), len(starts) - 1)
    if not (starts[at] == down).all():
        return None
    step = np.empty(n, dtype=bool)
    step[0] = True
    np.not_equal(q[1:], q[:-1], out=step[1:])
    step[starts] = True
    visit = np.flatnonzero(step)
    first = np.zeros(len(visit), dtype=np.int64)
    first[np.searchsorted(visit, starts)] = 1
    return np.cumsum(first) - 1, q[visit]


def _counted(ev: pl.DataFrame, last: int) -> pl.DataFrame | None:
    """The triangle's counts with numpy: the events grouped by visitor with
    :func:`group_rows`, each visitor's periods as one integer (visitor, period) so that one
    sort (none on time-ordered events, and no integer per event at all then when every
    event counts) gives the distinct visits in order (the first is the cohort), counts from
    the sorted pairs. None when a period is null or the numbers do not fit an int64 (then
    Polars' groupings do it)."""
    p_col = ev.get_column("_p")
    if p_col.null_count():
        return None
    p = p_col.to_numpy().astype(np.int64, copy=False)
    lo = int(p.min())
    bits = max(last - lo, 1).bit_length()
    perm, ends = group_rows(ev.get_column("_k"))
    if len(ends).bit_length() + bits > 62:
        return None
    q = take(p, perm)
    g: list[np.ndarray] = []

    def visitor() -> np.ndarray:  # each position's visitor, made when needed
        if not g:
            g.append(np.repeat(np.arange(len(ends)), np.diff(ends, prepend=0)))
        return g[0]

    r = take(ev.get_column("_r").to_numpy(), perm) if "_r" in ev.columns else None
    every = _visits(q, ends) or _distinct(visitor(), q, None, lo, bits)
    vg, vp = every if r is None else _distinct(visitor(), q, r, lo, bits)
    if "_c" in ev.columns:
        cg, cp = _distinct(visitor(), q, take(ev.get_column("_c").to_numpy(), perm), lo, bits)
    else:
        cg, cp = every
    first = runs(cg)
    cohort = np.full(len(ends), lo - 1, dtype=np.int64)  # lo - 1: in no cohort
    cohort[cg[first]] = cp[first]
    span = last - lo + 1
    sizes = np.bincount(cp[first] - lo, minlength=span)
    vc = cohort[vg]
    back = (vc >= lo) & (vp > vc)
    keys = np.sort((vc[back] - lo) * span + (vp[back] - vc[back]))
    at = runs(keys)
    counts, keys = np.diff(np.r_[at, len(keys)]), keys[at]
    cohorts = np.flatnonzero(sizes)
    n = last - lo - cohorts + 1  # periods 0 .. last of each cohort
    cp_rows = np.repeat(cohorts, n)
    offset = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    want = cp_rows * span + offset
    got = np.zeros(len(want), dtype=np.int64)
    if len(keys):
        at = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
        got = np.where(keys[at] == want, counts[at], 0)
    size = sizes[cp_rows]
    returning = np.where(offset == 0, size, got)
    return pl.DataFrame(
        {
            "_cp": cp_rows + lo,
            "cohort_size": size.astype(np.uint32),
            "period": offset.astype(np.int64),
            "returning": returning.astype(np.uint32),
        },
        schema={"_cp": pl.Int64, "cohort_size": pl.UInt32, "period": pl.Int64, "returning": pl.UInt32},
    )


def _empty() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "cohort": pl.Datetime("us", "UTC"),
            "cohort_size": pl.UInt32,
            "period": pl.Int32,
            "returning": pl.UInt32,
            "rate": pl.Float64,
        }
    )


def retention_matrix(table: pl.DataFrame, *, value: str = "rate") -> pl.DataFrame:
    """Pivot :func:`retention` into the classic matrix: one row per cohort (``cohort``,
    ``cohort_size``), one column per period offset (``"0"``, ``"1"``, ...) holding
    ``value`` (``"rate"`` or ``"returning"``); null where the data does not reach."""
    if value not in ("rate", "returning"):
        raise JourneyError("value must be 'rate' or 'returning'")
    return table.with_columns(pl.col("period").cast(pl.String)).pivot(
        on="period", index=["cohort", "cohort_size"], values=value, sort_columns=False
    )
