"""Drawing a KQL result the way its ``| render`` operator asks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from psanalytics.jupyter.charts._base import (
    HEIGHT,
    MAX_ROWS,
    WIDTH,
    ChartDataError,
    alt,
)

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


_LINE_LIKE = ("timechart", "linechart", "areachart", "scatterchart")


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
    kind, props = _spec(frame, kind, properties)
    xcol, ycols, series_cols = _axes(frame, kind, props)
    long, notes = _long(frame, kind, xcol, ycols, series_cols, partial)
    title = props.get("title")
    heading = f"{title or kind} ({'; '.join(notes)})" if notes else (title or None)
    if xcol in ("series", "value"):  # pragma: no cover - exotic column names
        raise ChartDataError(
            f"render: rename the column {xcol!r}, it clashes with the chart's own fields"
        )
    ytitle = props.get("ytitle") or (ycols[0] if len(ycols) == 1 else "value")
    xtitle = props.get("xtitle") or xcol
    schema = frame.schema
    x_type = "T" if _is_time(schema[xcol]) else ("Q" if schema[xcol].is_numeric() else "N")
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
    if kind in _LINE_LIKE:
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
    column = kind == "columnchart"
    cat_type = "T" if x_type == "T" and column else "N" if x_type != "Q" else "O"
    cat = (alt.X if column else alt.Y)(f"{xcol}:{cat_type}", title=xtitle, sort=None)
    val = (alt.Y if column else alt.X)("value:Q", title=ytitle)
    enc = {"x": cat, "y": val} if column else {"y": cat, "x": val}
    enc["tooltip"] = tooltip
    if show_color:
        enc["color"] = color
    height = HEIGHT if column else alt.Step(18)
    return chart.mark_bar().encode(**enc).properties(width=WIDTH, height=height)


def _spec(
    frame: pl.DataFrame, kind: str | Any, properties: Mapping[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    """The render kind (lower case) and its ``with(...)`` properties (lower-case keys);
    a kind there is no chart for, or a result with no columns, is a ChartDataError."""
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
    if kind == "table":
        raise ChartDataError("render table: shown as the table itself, there is no chart to draw")
    return kind, props


def _is_time(dtype: pl.DataType) -> bool:
    return dtype.is_temporal() and not isinstance(dtype, pl.Duration)


def _axes(
    frame: pl.DataFrame, kind: str, props: dict[str, Any]
) -> tuple[str, list[str], list[str]]:
    """The x column, the y columns and the series columns, from ``with(...)`` or Kusto's
    defaults for ``kind``."""
    schema = frame.schema
    numeric = [c for c, t in schema.items() if t.is_numeric()]
    temporal = [c for c, t in schema.items() if _is_time(t)]
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
    if kind in _LINE_LIKE:
        xcol = xcol or (temporal[0] if temporal else frame.columns[0])
    else:
        xcol = xcol or (strings[0] if strings else (temporal[0] if temporal else frame.columns[0]))
    ycols = ycols or [c for c in numeric if c != xcol]
    series_cols = series_cols or [c for c in strings if c != xcol]
    if kind == "piechart":
        ycols = ycols[:1]
    if not ycols:
        raise ChartDataError(
            f"render {kind}: the result has no numeric column to draw ({', '.join(frame.columns)})"
        )
    return xcol, ycols, series_cols


def _long(
    frame: pl.DataFrame,
    kind: str,
    xcol: str,
    ycols: list[str],
    series_cols: list[str],
    partial: str | None,
) -> tuple[pl.DataFrame, list[str]]:
    """The chart's data in long form (``xcol``, ``series``, ``value``), sorted on x and cut
    at :data:`MAX_ROWS`, and the notes the title carries when it is partial."""
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
        color = pl.concat_str(["_series", "_measure"], separator=" / ")
    else:
        color = pl.col("_series" if series_cols else "_measure")
    long = long.with_columns(color.alias("_color"))
    notes = []
    if partial:
        notes.append(f"partial: the result was cut at the {partial}")
    if kind in _LINE_LIKE or long.height > MAX_ROWS:  # a cut keeps the first x values, not any rows
        long = long.sort(xcol, "_color", nulls_last=True, maintain_order=True)
    if long.height > MAX_ROWS:
        long = long.head(MAX_ROWS)
        notes.append(
            f"partial: the first {MAX_ROWS:,} of {frame.height * len(ycols):,} points by {xcol}"
        )
    long = long.select(xcol, "_color", "_value").rename({"_color": "series", "_value": "value"})
    return long, notes
