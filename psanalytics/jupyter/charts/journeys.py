"""Charts of journeys: funnels, time to convert, retention, paths (Sankey), attribution."""

from __future__ import annotations

from typing import Any

import polars as pl

from psanalytics.jupyter.charts._base import (
    HEIGHT,
    MAX_ROWS,
    OTHER,
    UNKNOWN,
    WIDTH,
    ChartDataError,
    _lazy,
    _pick,
    _require,
    _ship,
    alt,
)


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
    node_rows, rows = _sankey_layout(links, node_gap)
    depths = sorted({r["depth"] for r in node_rows})
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


def _sankey_layout(
    links: list[tuple[int, str, str, float]], node_gap: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Where :func:`sankey` draws each node (a ``rect`` row) and each link (16 ``area`` rows
    along a smoothstep curve), in units where the busiest depth is 1 high."""
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
    return node_rows, rows


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
