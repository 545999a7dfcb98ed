"""Widgets driven from code: set control values, assert the charts' data and the table."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from psanalytics.errors import PsaError
from psanalytics.jupyter.widgets import EventExplorer, KqlConsole, VisitorPlayer


def _over_time_total(ex: EventExplorer) -> int:
    return int(ex.charts["over_time"].data["events"].sum())


def test_event_explorer_initial_state(small_events):
    ex = EventExplorer(small_events)
    assert ex.filtered.height == 8
    assert _over_time_total(ex) == 8
    assert [v for _, v in ex.types.options] == ["home", "product", "basket", "order"]
    assert [label for label, _ in ex.countries.options] == ["SE (5)", "DE (2)", "(none) (1)"]
    assert "8 rows" in ex.table.value
    assert ex.days.value == (date(2024, 3, 4), date(2024, 3, 4))
    assert len(ex.over_time.outputs) == 1 and len(ex.country_chart.outputs) == 1


def test_event_explorer_type_and_country_filters_update_charts_and_table(small_events):
    ex = EventExplorer(small_events)
    ex.types.value = ("product",)
    assert ex.filtered["EventType"].unique().to_list() == ["product"]
    assert _over_time_total(ex) == 3
    assert ex.charts["pages"].data.rows() == [
        ("https://example.com/p1", 2, 2, "/p1"),
        ("https://example.com/p2", 1, 1, "/p2"),
    ]
    assert "3 rows" in ex.table.value and "basket" not in ex.table.value
    ex.countries.value = ("DE",)
    assert ex.filtered.height == 1
    assert ex.charts["countries"].data.rows() == [("DE", 1, 1)]
    assert "<b>1</b> of 8 events" in ex.status.value
    ex.reset()
    assert ex.filtered.height == 8 and ex.where.value == ""


def test_event_explorer_kql_where_clause_and_errors(small_events):
    ex = EventExplorer(small_events)
    ex.where.value = 'PageUri contains "P1" and CountryCode != ""'
    ex.apply()
    assert ex.filtered.select("DeviceId", "EventType").rows() == [
        ("d1", "product"),
        ("d2", "product"),
    ]
    assert _over_time_total(ex) == 2
    before = ex.table.value
    ex.where.value = "CountryCod == 'SE'"
    ex.apply()
    assert ex.error is not None and "did you mean 'CountryCode'" in ex.error
    assert "^^^^^^^^^^" in ex.status.value
    assert ex.filtered.height == 2 and ex.table.value == before  # last good result kept


def test_event_explorer_date_range(small_events):
    extra = small_events.with_columns(
        (pl.col("EventTime") + pl.duration(days=2)).cast(pl.Datetime("ns", "UTC")),
        pl.col("TrackId") + "-later",
    )
    ex = EventExplorer(pl.concat([small_events, extra]))
    assert len(ex.days.options) == 3
    ex.days.value = (date(2024, 3, 6), date(2024, 3, 6))
    assert ex.filtered.height == 8
    assert ex.filtered["EventTime"].min().date() == date(2024, 3, 6)


def test_visitor_player_steps_and_marks_sessions(small_events):
    player = VisitorPlayer(small_events, "d1")
    assert player.frame["EventType"].to_list() == ["home", "product", "basket", "home", "product"]
    assert player.frame["session"].to_list() == [1, 1, 1, 2, 2]
    assert player.step.max == 4
    assert "new session starts here" in player.details.value
    assert player.chart.layer[2].data["step"].to_list() == [0]
    player.next()
    assert player.current["EventType"] == "product"
    assert "new session starts here" not in player.details.value
    assert player.chart.layer[2].data["step"].to_list() == [1]
    player.step.value = 3
    assert player.current["EventType"] == "home"
    assert "new session starts here" in player.details.value
    assert "1:45:00 after the previous event" in player.details.value
    player.step.value = 4
    player.next()
    assert player.step.value == 4
    player.previous()
    assert player.step.value == 3
    # the session boundaries on the chart
    assert player.chart.layer[0].data["session"].to_list() == ["1", "2"]


def test_visitor_player_switch_device(small_events):
    player = VisitorPlayer(small_events, "d1")
    player.step.value = 2
    player.device.value = "d2"
    assert player.step.value == 0 and player.step.max == 2
    assert player.frame["EventType"].to_list() == ["home", "product", "order"]
    assert "<b>3</b> events in <b>1</b> session(s)" in player.summary.value
    assert player.chart.layer[1].data.height == 3
    with pytest.raises(PsaError, match="no events for DeviceId 'zz'"):
        VisitorPlayer(small_events, "zz")


def test_visitor_player_default_device(small_events):
    assert VisitorPlayer(small_events).device.value == "d1"


def test_kql_console_local_result_chart_and_error(small_events):
    console = KqlConsole(small_events)
    console.query.value = "Events | summarize n = count() by EventType | sort by n desc, EventType asc | render columnchart"
    frame = console.run()
    assert frame.rows() == [("home", 3), ("product", 3), ("basket", 1), ("order", 1)]
    assert "kql local · 4 rows" in console.footer.value and "complete" in console.footer.value
    assert "basket" in console.table.value
    assert console.chart.to_dict()["mark"]["type"] == "bar"
    assert len(console.chart_out.outputs) == 1
    console.query.value = "Events\n| summarise count()"
    assert console.run() is None
    assert console.result is None and console.chart is None
    assert "| summarise count()\n  ^^^^^^^^^" in console.footer.value.replace("&#x27;", "'")
    assert "did you mean" in console.error
    assert console.table.value == "" and console.chart_out.outputs == ()


def test_visitor_player_keeps_its_step_in_the_kernel(small_events):
    # player.next() three times must leave the step at 3 and the Play widget with it: they
    # were linked in the browser (jslink), which echoed stale values back and lost steps.
    rows = [dict(r) for r in small_events.filter(pl.col("DeviceId") == "d1").iter_rows(named=True)]
    player = VisitorPlayer(small_events, "d1")
    for _ in range(3):
        player.next()
    assert (player.step.value, player.play.value) == (3, 3)
    assert player.current["EventTime"] == rows[3]["EventTime"]
    player.play.value = 1  # the Play button ticking in the browser moves the step
    assert (player.step.value, player.current["EventType"]) == (1, "product")
    assert player.chart.layer[2].data["step"].to_list() == [1]


def _bot_and_human():
    from datetime import UTC, datetime, timedelta

    from psanalytics import schema

    t0 = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)

    def ev(minutes: float, device: str, etype: str, session: str = "s") -> dict:
        t = t0 + timedelta(minutes=minutes)
        return {
            "TrackId": f"{device}-{etype}-{minutes}",
            "DeviceId": device,
            "EventType": etype,
            "EventTime": t.isoformat().replace("+00:00", "Z"),
            "SessionId": session,
        }

    rows = [ev(i * 0.25, "bot", "product", session="x") for i in range(250)]  # ~1 h, 250 events
    rows += [ev(i * 2.5, "bot", "category", session="x") for i in range(100, 130)]
    rows += [ev(m, "human", t) for m, t in ((0, "home"), (2, "product"), (5, "basket"))]
    rows += [ev(m, "human", t) for m, t in ((300, "home"), (303, "product"), (306, "order"))]
    rows += [ev(m, "one-visit", "home") for m in range(0, 40, 5)]
    return schema.normalize(rows).sort("EventTime")


def test_default_visitor_is_human_looking_by_the_documented_rule():
    from psanalytics.jupyter.charts import pick_visitor

    events = _bot_and_human()
    # the bot has the most events (<= 300) and "one-visit" more than "human": the rule wants
    # a device that came back (>= 2 sessions), every session under an hour and 60 events
    assert pick_visitor(events) == "human"
    assert VisitorPlayer(events).device.value == "human"
