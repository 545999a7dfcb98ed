"""Journeys benchmark: a 5-step funnel with a breakdown, weekly retention and last-touch
attribution, each against a hand-written Polars version (and DuckDB SQL for the funnel),
in one run, checking that all of them give identical numbers.

Usage::

    .venv/bin/python benchmarks/journeys.py                  # 10 M events, 500 k devices
    .venv/bin/python benchmarks/journeys.py --n 1000000      # 1 M events
    .venv/bin/python benchmarks/journeys.py --repeat 3       # best of 3 per engine

The stream is ``psanalytics.samples.generate(n, n_devices=n // 20)``, cached as Parquet under
``benchmarks/_work/``. Loading is not timed. What is timed:

* **funnel**: ``journeys.funnel(events, ["home", "product", "basket", "checkout", "order"],
  within="device", breakdown="CountryCode")`` (ordered steps per device, the breakdown read
  on the first step's event) vs a hand-written Polars chain (first step-1 event per device,
  then per step the earliest later event by (EventTime, row) through join + filter +
  first) vs the same chain in DuckDB SQL (``DISTINCT ON``). Without a window, following the
  first step-1 event is exactly psanalytics' best attempt, so the journeys entering each
  step per country must be equal.
* **retention**: ``journeys.retention(events, period="week")`` vs hand-written Polars
  (``dt.truncate("1w")``, first week per device, distinct device-weeks, counts).
* **attribution**: ``journeys.attribute(orders, sessions, model="last")`` vs a hand-written
  ``join_asof`` of orders on the last session start of the device within 30 days; the
  sessions table (``sessionize`` + ``channel``) and the orders are prepared once, untimed.

Each engine's best wall time (of ``--repeat``) and CPU time are printed with the ratio to
hand-written Polars. The box is shared: compare ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work"
STEPS = ["home", "product", "basket", "checkout", "order"]
COLUMNS = ["DeviceId", "EventTime", "EventType", "CountryCode", "PageUri", "Payload", "PageTitle",
           "User", "SessionId", "Scope", "City"]  # fmt: skip


def load(n: int) -> pl.DataFrame:
    path = WORK / f"journeys_events_{n}.parquet"
    if not path.exists():
        from psanalytics import samples

        WORK.mkdir(exist_ok=True)
        t = time.perf_counter()
        samples.generate(n, n_devices=max(n // 20, 1)).write_parquet(path)
        print(f"generated {n:,} events in {time.perf_counter() - t:.1f} s -> {path}", flush=True)
    return pl.read_parquet(path, columns=COLUMNS)


def timed(fn: Callable[[], pl.DataFrame], repeat: int) -> tuple[pl.DataFrame, float, float]:
    best_wall, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        best_wall = min(best_wall, time.perf_counter() - w)
        best_cpu = min(best_cpu, time.process_time() - c)
    assert out is not None
    return out, best_wall, best_cpu


# --------------------------------------------------------------------------- funnel


def funnel_psa(ev: pl.DataFrame) -> pl.DataFrame:
    from psanalytics import journeys

    f = journeys.funnel(ev, STEPS, within="device", breakdown="CountryCode")
    return f.select("CountryCode", "step", "entered").sort("CountryCode", "step")


def funnel_polars(ev: pl.DataFrame) -> pl.DataFrame:
    e = ev.select("DeviceId", "EventTime", "EventType", "CountryCode").with_row_index("row")
    prev = (
        e.filter(pl.col("EventType") == STEPS[0])
        .sort("EventTime", "row")
        .group_by("DeviceId", maintain_order=True)
        .first()
        .select("DeviceId", pl.col("EventTime").alias("t"), pl.col("row").alias("r"), "CountryCode")
    )
    counts = [prev.group_by("CountryCode").len().with_columns(pl.lit(1).alias("step"))]
    for k, name in enumerate(STEPS[1:], start=2):
        prev = (
            e.filter(pl.col("EventType") == name)
            .select("DeviceId", "EventTime", "row")
            .join(prev, on="DeviceId")
            .filter(
                (pl.col("EventTime") > pl.col("t"))
                | ((pl.col("EventTime") == pl.col("t")) & (pl.col("row") > pl.col("r")))
            )
            .sort("EventTime", "row")
            .group_by("DeviceId", maintain_order=True)
            .first()
            .select(
                "DeviceId", pl.col("EventTime").alias("t"), pl.col("row").alias("r"), "CountryCode"
            )
        )
        counts.append(prev.group_by("CountryCode").len().with_columns(pl.lit(k).alias("step")))
    return _funnel_grid(pl.concat(counts), ev)


def _funnel_grid(counts: pl.DataFrame, ev: pl.DataFrame) -> pl.DataFrame:
    groups = counts.filter(pl.col("step") == 1).select("CountryCode")
    grid = groups.join(pl.DataFrame({"step": list(range(1, len(STEPS) + 1))}), how="cross")
    return (
        grid.join(counts.select("CountryCode", pl.col("step").cast(pl.Int64), "len"),
                  on=["CountryCode", "step"], how="left")
        .select("CountryCode", pl.col("step").cast(pl.UInt32),
                pl.col("len").fill_null(0).cast(pl.UInt32).alias("entered"))
        .sort("CountryCode", "step")
    )  # fmt: skip


def funnel_duckdb(ev: pl.DataFrame) -> pl.DataFrame:
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads TO 2")
    e = ev.select("DeviceId", "EventTime", "EventType", "CountryCode").with_row_index("row")
    con.register("ev", e.to_arrow())
    ctes = [
        f"s1 AS (SELECT DISTINCT ON (DeviceId) DeviceId, EventTime AS t, row AS r, CountryCode "
        f"FROM ev WHERE EventType = '{STEPS[0]}' ORDER BY DeviceId, EventTime, row)"
    ]
    for k, name in enumerate(STEPS[1:], start=2):
        ctes.append(
            f"s{k} AS (SELECT DISTINCT ON (e.DeviceId) e.DeviceId, e.EventTime AS t, e.row AS r, "
            f"p.CountryCode FROM ev e JOIN s{k - 1} p USING (DeviceId) "
            f"WHERE e.EventType = '{name}' AND (e.EventTime > p.t OR (e.EventTime = p.t AND e.row > p.r)) "
            f"ORDER BY e.DeviceId, e.EventTime, e.row)"
        )
    union = " UNION ALL ".join(
        f"SELECT CountryCode, {k} AS step, count(*) AS len FROM s{k} GROUP BY CountryCode"
        for k in range(1, len(STEPS) + 1)
    )
    counts = pl.from_arrow(con.sql(f"WITH {', '.join(ctes)} {union}").to_arrow_table())
    con.close()
    return _funnel_grid(counts.with_columns(pl.col("step").cast(pl.Int64)), ev)


# --------------------------------------------------------------------------- retention


def retention_psa(ev: pl.DataFrame) -> pl.DataFrame:
    from psanalytics import journeys

    r = journeys.retention(ev, period="week")
    return r.select("cohort", "period", "cohort_size", "returning").sort("cohort", "period")


def retention_polars(ev: pl.DataFrame) -> pl.DataFrame:
    w = ev.select("DeviceId", pl.col("EventTime").dt.truncate("1w").alias("week")).unique()
    first = w.group_by("DeviceId").agg(pl.col("week").min().alias("cohort"))
    last = w.get_column("week").max()
    sizes = first.group_by("cohort").agg(pl.len().alias("cohort_size"))
    back = (
        w.join(first, on="DeviceId")
        .with_columns(((pl.col("week") - pl.col("cohort")).dt.total_days() // 7).alias("period"))
        .group_by("cohort", "period")
        .agg(pl.len().alias("returning"))
    )
    grid = sizes.with_columns(
        pl.int_ranges(0, (pl.lit(last) - pl.col("cohort")).dt.total_days() // 7 + 1).alias("period")
    ).explode("period")
    return (
        grid.join(back, on=["cohort", "period"], how="left")
        .select(
            pl.col("cohort").dt.cast_time_unit("us"),
            pl.col("period").cast(pl.Int32),
            pl.col("cohort_size").cast(pl.UInt32),
            pl.col("returning").fill_null(0).cast(pl.UInt32),
        )
        .sort("cohort", "period")
    )


# --------------------------------------------------------------------------- attribution


def attribution_psa(orders: pl.DataFrame, sessions: pl.DataFrame) -> pl.DataFrame:
    from psanalytics import journeys

    a = journeys.attribute(orders, sessions, model="last", lookback="30d")
    return a.select("channel", "currency", "conversions", "revenue").sort("channel", "currency")


def attribution_polars(orders: pl.DataFrame, sessions: pl.DataFrame) -> pl.DataFrame:
    s = sessions.select(pl.col("device_id").alias("DeviceId"), "start_time", "channel").sort(
        "start_time"
    )
    j = orders.sort("EventTime").join_asof(
        s, left_on="EventTime", right_on="start_time", by="DeviceId", strategy="backward",
        tolerance="30d", check_sortedness=False,
    )  # fmt: skip
    return (
        j.group_by(pl.col("channel").fill_null("(none)"), "currency")
        .agg(pl.len().cast(pl.Float64).alias("conversions"), pl.col("revenue").sum())
        .sort("channel", "currency")
    )


# --------------------------------------------------------------------------- main


def same(a: pl.DataFrame, b: pl.DataFrame, what: str) -> None:
    if a.columns != b.columns or a.height != b.height:
        raise SystemExit(f"{what}: shapes differ: {a.shape} {a.columns} vs {b.shape} {b.columns}")
    for c in a.columns:
        x, y = a.get_column(c), b.get_column(c)
        if x.dtype.is_float():
            if not ((x - y).abs() <= 1e-6 * (1 + y.abs())).all():
                raise SystemExit(f"{what}: column {c} differs")
        elif not x.equals(y, check_dtypes=False):
            raise SystemExit(f"{what}: column {c} differs:\n{a}\n{b}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    import os

    ev = load(args.n)
    print(f"{ev.height:,} events, {ev['DeviceId'].n_unique():,} devices; "
          f"load average {os.getloadavg()[0]:.1f} (shared box: compare ratios)", flush=True)  # fmt: skip
    # warm up (untimed): imports and Polars' first-call set-up would otherwise be charged to
    # whichever engine runs first
    small = ev.head(20_000)
    for warm in (funnel_psa, funnel_polars, retention_psa, retention_polars):
        warm(small)
    rows = []

    def run(task: str, engines: dict[str, Callable[[], pl.DataFrame]]) -> None:
        results = {}
        for name, fn in engines.items():
            out, wall, cpu = timed(fn, args.repeat)
            results[name] = (out, wall, cpu)
            print(f"  {task:12s} {name:18s} {wall:8.2f} s wall {cpu:8.2f} s cpu", flush=True)
        ref = results["hand-written Polars"]
        for name, (out, wall, cpu) in results.items():
            same(out, ref[0], f"{task}: {name} vs hand-written Polars")
            rows.append((task, name, wall, wall / ref[1], cpu, out.height))

    run("funnel", {
        "psanalytics": lambda: funnel_psa(ev),
        "hand-written Polars": lambda: funnel_polars(ev),
        "DuckDB SQL": lambda: funnel_duckdb(ev),
    })  # fmt: skip
    run("retention", {
        "psanalytics": lambda: retention_psa(ev),
        "hand-written Polars": lambda: retention_polars(ev),
    })  # fmt: skip
    from psanalytics import journeys, sessionize

    t = time.perf_counter()
    sessions = journeys.channel(sessionize(ev).sessions)
    orders = journeys.orders(ev)
    print(f"  (untimed) sessions + channels + orders: {time.perf_counter() - t:.1f} s, "
          f"{sessions.height:,} sessions, {orders.height:,} orders", flush=True)  # fmt: skip
    run("attribution", {
        "psanalytics": lambda: attribution_psa(orders, sessions),
        "hand-written Polars": lambda: attribution_polars(orders, sessions),
    })  # fmt: skip
    print("\n| task | engine | wall s | x hand-written Polars | CPU s | result rows |")
    print("|---|---|---|---|---|---|")
    for task, name, wall, ratio, cpu, h in rows:
        print(f"| {task} | {name} | {wall:.2f} | {ratio:.2f} | {cpu:.2f} | {h} |")
    print("\nAll engines gave identical numbers.")


if __name__ == "__main__":
    main()
