"""Chart builders: exact aggregates shipped to the browser, and the row cap."""

from __future__ import annotations

from datetime import UTC, datetime

import altair as alt
import polars as pl
import pytest

from psanalytics import samples
from psanalytics.jupyter import charts as C


def _utc(h: int, m: int = 0) -> datetime:
    return datetime(2024, 3, 4, h, m, tzinfo=UTC)


def test_events_over_time_exact_bins_with_zero_fill(small_events):
    chart = C.events_over_time(small_events, every="1h")
    assert isinstance(chart, alt.Chart)
    data = chart.data
    assert data.columns == ["time", "EventType", "events"]
    got = {(r["time"], r["EventType"]): r["events"] for r in data.iter_rows(named=True)}
    assert got == {
        (_utc(10), "basket"): 1,
        (_utc(10), "home"): 2,
        (_utc(10), "order"): 1,
        (_utc(10), "product"): 2,
        (_utc(11), "basket"): 0,
        (_utc(11), "home"): 0,
        (_utc(11), "order"): 0,
        (_utc(11), "product"): 0,
        (_utc(12), "basket"): 0,
        (_utc(12), "home"): 1,
        (_utc(12), "order"): 0,
        (_utc(12), "product"): 1,
    }
    assert chart.to_dict()["title"] == "Events per 1h by EventType"


def test_events_over_time_lumps_rare_types_into_other(small_events):
    data = C.events_over_time(small_events, every="1h", top=2).data
    assert sorted(set(data["EventType"])) == ["(other)", "home", "product"]
    at10 = data.filter(pl.col("time") == _utc(10)).sort("EventType")
    assert at10["events"].to_list() == [2, 2, 2]  # (other) = basket + order


def test_events_over_time_single_line_and_lazy_input(small_events):
    data = C.events_over_time(small_events.lazy(), every="1h", by=None).data
    assert data["events"].to_list() == [6, 0, 2]


def test_events_over_time_auto_bin_respects_cap():
    big = samples.generate(30_000, seed=3, days=14)
    big = big.with_columns(
        (pl.col("EventType") + pl.col("TrackId").str.slice(0, 1)).alias("EventType")
    )
    chart = C.events_over_time(big, top=40)
    assert C.chart_rows(chart) <= C.MAX_ROWS
    assert chart.data.height == C.chart_rows(chart)
    with pytest.raises(C.ChartDataError, match="coarser bin"):
        C.events_over_time(big, every="1m")


def test_events_over_time_errors(small_events):
    with pytest.raises(C.ChartDataError, match="no column.*Nope"):
        C.events_over_time(small_events, by="Nope")
    with pytest.raises(C.ChartDataError, match="no events"):
        C.events_over_time(small_events.head(0))
    with pytest.raises(C.ChartDataError, match="expected a Polars"):
        C.events_over_time([1, 2])


def test_top_pages_exact_and_skips_empty_pages(small_events):
    data = C.top_pages(small_events).data
    assert data.rows() == [
        ("https://example.com/", 3, 2, "/"),
        ("https://example.com/p1", 2, 2, "/p1"),
        ("https://example.com/basket", 1, 1, "/basket"),
        ("https://example.com/p2", 1, 1, "/p2"),
    ]
    only = C.top_pages(small_events, event_type=["product"], top=1).data
    assert only.rows() == [("https://example.com/p1", 2, 2, "/p1")]


def test_top_pages_label_by_path_full_url_in_tooltip():
    # the axis cut URLs to the host ("https://www.northwind-outdoor.…"): pages looked alike
    frame = pl.DataFrame(
        {"PageUri": ["https://a.com/x?q=1", "https://a.com/x?q=1", "https://b.org/x?q=1", "https://a.com/"]}
    )
    chart = C.top_pages(frame)
    assert chart.data["page"].to_list() == ["a.com/x?q=1", "/", "b.org/x?q=1"]
    spec = chart.to_dict()
    assert spec["encoding"]["y"]["field"] == "page"
    assert {"field": "PageUri", "type": "nominal"} in spec["encoding"]["tooltip"]


def test_country_bars_events_and_visitors(small_events):
    assert C.country_bars(small_events).data.rows() == [
        ("SE", 5, 1),
        ("DE", 2, 1),
        ("(none)", 1, 1),
    ]
    by_visitors = C.country_bars(small_events, metric="visitors")
    assert by_visitors.data["CountryCode"].to_list() == ["(none)", "DE", "SE"]
    assert by_visitors.to_dict()["encoding"]["x"]["field"] == "visitors"
    with pytest.raises(C.ChartDataError, match="metric"):
        C.country_bars(small_events, metric="bytes")


def test_top_pages_from_pandas(small_events):
    data = C.top_pages(small_events.drop("User").to_pandas(), top=1).data
    assert data.rows() == [("https://example.com/", 3, 2, "/")]


def test_session_length_histogram_from_events_and_sessions_table(small_events):
    data = C.session_length_histogram(small_events).data
    assert data.select("events per session", "sessions").rows() == [("1", 0), ("2", 1), ("3", 2)]
    table = pl.DataFrame({"n_events": [1, 1, 2, 500], "duration_s": [0.0, 0.0, 5.0, 9000.0]})
    data = C.session_length_histogram(table).data
    # p99 ('higher') of [1, 1, 2, 500] is 500: one bar per 13 events (500 / 40 bars)
    assert data["events per session"][0] == "1-13"
    assert data["sessions"].sum() == 4
    table = pl.DataFrame({"n_events": [1] * 200 + [2, 900], "duration_s": [0.0] * 202})
    data = C.session_length_histogram(table).data
    # p99 is 1: everything longer is the one "2+" tail bar
    assert data.select("events per session", "sessions").rows() == [("1", 200), ("2+", 2)]


def test_session_duration_histogram_bins(small_events):
    data = C.session_duration_histogram(small_events).data
    nonzero = data.filter(pl.col("sessions") > 0).rows()
    # a: 15 min, b: 60 s (lands in 1-2 min: bins are [lo, hi)), c: 2 min
    assert nonzero == [("1-2 min", 1), ("2-5 min", 1), ("10-30 min", 1)]
    assert data.height == 14 and data["duration"][0] == "0 s"
    single = pl.DataFrame({"n_events": [1], "duration_s": [0.0]})
    assert C.session_duration_histogram(single).data["sessions"][0] == 1


def test_session_histograms_reject_other_frames():
    with pytest.raises(C.ChartDataError, match="sessions table"):
        C.session_length_histogram(pl.DataFrame({"x": [1]}))


def test_funnel_shares_and_layers():
    frame = pl.DataFrame({"step": ["home", "product", "order"], "reached": [200, 50, 10]})
    chart = C.funnel(frame)
    assert isinstance(chart, alt.LayerChart)
    data = chart.data
    assert data["label"].to_list() == ["200 (100.0%)", "50 (25.0%)", "10 (5.0%)"]
    assert data["of_previous"].to_list() == [1.0, 0.25, 0.2]
    with pytest.raises(C.ChartDataError, match="pass step= and count="):
        C.funnel(pl.DataFrame({"a": ["x"], "b": [1]}))
    assert (
        C.funnel(pl.DataFrame({"a": ["x"], "b": [1]}), step="a", count="b").data["of_first"][0]
        == 1.0
    )


def test_transition_heatmap_from_events(small_events):
    data = C.transition_heatmap(small_events).data
    assert data.rows() == [
        ("home", "product", 3, 1.0),
        ("product", "basket", 1, 0.5),
        ("product", "order", 1, 0.5),
    ]
    lumped = C.transition_heatmap(small_events, top=2).data
    assert lumped.rows() == [("home", "product", 3, 1.0), ("product", "(other)", 2, 1.0)]


def test_transition_heatmap_from_transitions_frame():
    frame = pl.DataFrame({"from": ["a", "a", "b"], "to": ["b", "c", "c"], "count": [3, 1, 4]})
    data = C.transition_heatmap(frame).data
    assert data.rows() == [("a", "b", 3, 0.75), ("a", "c", 1, 0.25), ("b", "c", 4, 1.0)]


def test_visitor_timeline_sessions_and_current(small_events):
    frame = C.visitor_frame(small_events, "d1")
    assert frame["session"].to_list() == [1, 1, 1, 2, 2]
    assert frame["step"].to_list() == [0, 1, 2, 3, 4]
    chart = C.visitor_timeline(small_events, "d1", current=3)
    rules, points, ring = chart.layer
    assert rules.data["session"].to_list() == ["1", "2"]
    assert rules.data["EventTime"].to_list() == [_utc(10, 5), _utc(12, 5)]
    assert points.data["EventType"].to_list() == ["home", "product", "basket", "home", "product"]
    assert ring.data["step"].to_list() == [3]
    assert chart.to_dict()["title"] == "Visitor d1: 5 events in 2 session(s)"
    # pages as paths, the full URL beside them in the tooltip
    assert points.data["page"].to_list() == ["/", "/p1", "/basket", "/", "/p2"]
    assert points.data["PageUri"][2] == "https://example.com/basket"
    fields = [t["field"] for t in points.to_dict()["encoding"]["tooltip"]]
    assert fields[-4:] == ["page", "PageUri", "PageTitle", "Value"]
    with pytest.raises(C.ChartDataError, match="no events for DeviceId 'nobody'"):
        C.visitor_frame(small_events, "nobody")


def test_url_paths_keep_empty_and_the_host_only_where_paths_collide():
    urls = pl.Series(
        ["https://a.com/p1", "https://a.com/p1", "https://b.com/p1", "", None, "https://a.com"]
    )
    assert C.url_paths(urls).to_list() == ["a.com/p1", "a.com/p1", "b.com/p1", "", None, "/"]
    one_host = pl.Series(["https://a.com/p1", "https://a.com/p1?x=1", "https://a.com"])
    assert C.url_paths(one_host).to_list() == ["/p1", "/p1?x=1", "/"]


def test_visitor_timeline_caps_events():
    big = samples.generate(20_000, seed=5)
    device = big.group_by("DeviceId").len().sort("len", descending=True)["DeviceId"][0]
    total = big.filter(pl.col("DeviceId") == device).height
    assert total > 50
    chart = C.visitor_timeline(big, device, max_events=50, current=10)
    assert chart.layer[1].data.height == 50
    assert f"(showing 50 of {total})" in chart.to_dict()["title"]
    assert C.chart_rows(chart) <= C.MAX_ROWS


def test_pick_visitor_prefers_human_looking_devices(small_events):
    assert C.pick_visitor(small_events) == "d1"
    assert C.pick_visitor(small_events, max_events=3) == "d2"


def test_render_timechart_with_series(small_events):
    frame = (
        small_events.group_by(pl.col("EventTime").dt.truncate("1h"), "EventType")
        .agg(pl.len().alias("count_"))
        .sort("EventTime", "EventType")
    )
    chart = C.render(frame, "timechart", {"title": "per hour"})
    spec = chart.to_dict()
    assert spec["mark"]["type"] == "line"
    assert (
        spec["encoding"]["x"]["field"] == "EventTime"
        and spec["encoding"]["x"]["type"] == "temporal"
    )
    assert spec["title"] == "per hour"
    assert chart.data.columns == ["EventTime", "series", "value"]
    assert chart.data.height == frame.height
    assert sorted(set(chart.data["series"])) == ["basket", "home", "order", "product"]


def test_render_bar_column_pie(small_events):
    frame = small_events.group_by("CountryCode").agg(pl.len().alias("count_")).sort("CountryCode")
    bar = C.render(frame, "barchart").to_dict()
    assert (
        bar["encoding"]["y"]["field"] == "CountryCode" and bar["encoding"]["x"]["field"] == "value"
    )
    col = C.render(frame, "columnchart").to_dict()
    assert (
        col["encoding"]["x"]["field"] == "CountryCode" and col["encoding"]["y"]["field"] == "value"
    )
    pie = C.render(frame, "piechart")
    assert pie.to_dict()["mark"]["type"] == "arc"
    assert pie.data.select("CountryCode", "value").rows() == [("", 1), ("DE", 2), ("SE", 5)]


def test_render_spec_object_and_errors():
    class Spec:
        kind = "columnchart"
        properties = {"ytitle": "n", "ycolumns": "b"}

    frame = pl.DataFrame({"k": ["x", "y"], "a": [1, 2], "b": [3, 4]})
    chart = C.render(frame, Spec())
    assert chart.data["value"].to_list() == [3, 4]
    assert chart.to_dict()["encoding"]["y"]["title"] == "n"
    with pytest.raises(C.ChartDataError, match="not supported"):
        C.render(frame, "radar")
    with pytest.raises(C.ChartDataError, match="no numeric column"):
        C.render(pl.DataFrame({"k": ["x"]}), "barchart")
    with pytest.raises(C.ChartDataError, match="'zz' named in with"):
        C.render(frame, "barchart", {"ycolumns": "zz"})


def test_render_caps_rows_sorted_on_x_and_says_partial():
    # the cut kept an arbitrary subset of unsorted bins, with no mark on the chart
    n = C.MAX_ROWS + 10
    xs = list(range(n))[::-1]  # the result arrives unsorted (e.g. summarize by bin)
    frame = pl.DataFrame({"x": xs, "y": xs})
    chart = C.render(frame, "linechart")
    assert C.chart_rows(chart) == C.MAX_ROWS
    assert chart.data["x"].to_list() == list(range(C.MAX_ROWS))
    assert chart.to_dict()["title"] == f"linechart (partial: the first 5,000 of {n:,} points by x)"
    capped = C.render(frame.head(1000), "timechart", partial="1,000-row cap")
    assert capped.to_dict()["title"] == "timechart (partial: the result was cut at the 1,000-row cap)"


def test_bar_chart_keeps_the_results_order():
    frame = pl.DataFrame({"k": ["b", "a", "c"], "n": [3, 2, 1]})
    assert C.render(frame, "barchart").data["k"].to_list() == ["b", "a", "c"]


def test_funnel_and_heatmap_from_journeys(small_events):
    import psanalytics as ps
    from psanalytics import journeys

    s = ps.sessionize(small_events)
    f = journeys.funnel(s.events, ["home", "product", "basket"])
    data = C.funnel(f).data
    assert data.select("name", "entered").rows() == [("home", 3), ("product", 3), ("basket", 1)]
    t = journeys.transitions(s.events, level="event_type")
    heat = C.transition_heatmap(t).data
    assert heat.filter(pl.col("from") == "home").rows() == [("home", "product", 3, 1.0)]
    assert C.session_length_histogram(s).data.select("events per session", "sessions").rows() == [
        ("1", 0),
        ("2", 1),
        ("3", 2),
    ]
