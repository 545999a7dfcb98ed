"""Chart builders for funnels by breakdown, time to convert, retention, Sankey, attribution."""

from __future__ import annotations

from datetime import UTC, datetime

import altair as alt
import polars as pl
import pytest

from psanalytics.jupyter import charts as C


def test_funnel_breakdown_lines_per_group_with_other():
    f = pl.DataFrame(
        {
            "CountryCode": ["SE", "SE", "NO", "NO", "DK", "DK"],
            "step": [1, 2, 1, 2, 1, 2],
            "name": ["a", "b"] * 3,
            "entered": [10, 5, 4, 1, 2, 2],
        }
    )
    data = C.funnel_breakdown(f, top=2).data
    assert data.sort("CountryCode", "step").rows() == [
        ("(other)", 1, "a", 2, 1.0),
        ("(other)", 2, "b", 2, 1.0),
        ("NO", 1, "a", 4, 1.0),
        ("NO", 2, "b", 1, 0.25),
        ("SE", 1, "a", 10, 1.0),
        ("SE", 2, "b", 5, 0.5),
    ]
    with pytest.raises(C.ChartDataError, match="no breakdown column; pass by="):
        C.funnel_breakdown(f.drop("CountryCode"))


def test_time_to_convert_bars():
    h = pl.DataFrame(
        {"step": [2, 2], "name": ["b", "b"], "bin": ["0-1 s", "1-5 s"], "journeys": [3, 0]}
    )
    chart = C.time_to_convert(h)
    assert chart.data["to step"].to_list() == ["2. b", "2. b"]
    assert chart.to_dict()["encoding"]["row"]["field"] == "to step"


def test_retention_heatmap_labels_and_size():
    r = pl.DataFrame(
        {
            "cohort": [datetime(2024, 3, 4, tzinfo=UTC)] * 2 + [datetime(2024, 3, 11, tzinfo=UTC)],
            "cohort_size": [4, 4, 2],
            "period": [0, 1, 0],
            "returning": [4, 1, 2],
            "rate": [1.0, 0.25, 1.0],
        }
    )
    chart = C.retention_heatmap(r)
    assert isinstance(chart, alt.LayerChart)
    data = chart.layer[0].data if chart.data is alt.Undefined else chart.data
    assert data["label"].to_list() == ["100%", "25%", "100%"]
    assert data["cohort (size)"].to_list() == ["2024-03-04 (4)", "2024-03-04 (4)", "2024-03-11 (2)"]
    assert C.retention_heatmap(r, value="returning").data["label"].to_list() == ["4", "1", "2"]


def test_sankey_nodes_and_bands():
    edges = pl.DataFrame(
        {
            "from_depth": [0, 0, 1],
            "from_step": ["home", "home", "product"],
            "to_step": ["product", "(exit)", "basket"],
            "count": [6, 2, 3],
        }
    )
    chart = C.sankey(edges, node_gap=0.0)
    band, rect, label = chart.layer
    nodes = rect.data.sort("depth", "y")
    # depth 0: home (8); depth 1: product (6), exit (2); depth 2: basket (3); scale = 8
    assert nodes.select("depth", "step", "y", "y2").rows() == [
        (0, "home", 0.0, 1.0),
        (1, "product", 0.0, 0.75),
        (1, "(exit)", 0.75, 1.0),
        (2, "basket", 0.0, 0.375),
    ]
    links = band.data
    assert links["link"].n_unique() == 3 and links.height == 3 * 16
    # each band keeps its width (journeys / scale) from end to end
    widths = links.with_columns((pl.col("y2") - pl.col("y")).round(9).alias("w"))
    assert widths.group_by("from", "to").agg(pl.col("w").unique()).sort("from", "to").rows() == [
        ("home", "(exit)", [0.25]),
        ("home", "product", [0.75]),
        ("product", "basket", [0.375]),
    ]
    assert C.chart_rows(chart) <= C.MAX_ROWS
    few = C.sankey(edges, top=2)
    assert "the 2 biggest of 3 links" in few.to_dict()["title"]


def test_attribution_bars_per_currency():
    a = pl.DataFrame(
        {
            "channel": ["Email", "Email", "Direct"],
            "currency": ["SEK", "EUR", "SEK"],
            "conversions": [1.0, 2.0, 3.0],
            "revenue": [100.0, 20.0, 300.0],
        }
    )
    conv = C.attribution(a)
    assert sorted(conv.data.rows()) == [("Direct", 3.0), ("Email", 3.0)]
    rev = C.attribution(a, value="revenue")
    assert sorted(rev.data.rows()) == [
        ("Direct", "SEK", 300.0),
        ("Email", "EUR", 20.0),
        ("Email", "SEK", 100.0),
    ]
    assert rev.to_dict()["encoding"]["column"]["field"] == "currency"


def test_top_is_the_name_and_n_warns(small_events):
    from psanalytics.journeys import DeprecatedArgumentWarning

    new = C.top_pages(small_events, top=1).data
    with pytest.warns(DeprecatedArgumentWarning, match=r"top_pages\(n=\.\.\.\) is deprecated"):
        old = C.top_pages(small_events, n=1).data
    assert old.equals(new)
    with pytest.raises(C.ChartDataError, match=r"country_bars: give top= only"):
        C.country_bars(small_events, top=1, n=1)
