"""Core behaviour of the local KQL engine: exact rows for each operator and trap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from psanalytics.query.kql import (
    KqlError,
    KqlSemanticError,
    KqlSyntaxError,
    KqlUnsupported,
    RenderSpec,
    execute,
    kql,
    validate,
)

NOW = datetime(2024, 1, 10, 12, 0, 0, tzinfo=UTC)




def run(q: str, frame: pl.DataFrame, **kw) -> pl.DataFrame:
    return kql(q, frame, now=NOW, **kw)


def col(q: str, frame: pl.DataFrame, name: str | None = None) -> list:
    out = run(q, frame)
    return out[name or out.columns[0]].to_list()


def test_seed_preview_example(events):
    q = """Events
        | where EventTime between (todatetime('2019-01-01') .. endofday(now()))
            and EventType == 'epiPageView'
            and User.Email != ''
        | take 2"""
    res = execute(q, {"Events": events}, now=NOW, limit=1000)
    assert res.frame["TrackId"].to_list() == ["t1", "t3"]
    assert res.frame.columns == events.columns
    assert res.truncated is False
    assert res.render is None


def test_limit_sets_truncated(events):
    res = execute("Events", {"Events": events}, limit=3)
    assert res.frame.height == 3 and res.truncated is True
    res = execute("Events", {"Events": events}, limit=5)
    assert res.frame.height == 5 and res.truncated is False


def test_where_equality_is_case_sensitive(events):
    assert col("Events | where EventType == 'epiPageView' | project TrackId", events) == ["t1", "t3"]
    assert col("Events | where EventType =~ 'epipageview' | project TrackId", events) == [
        "t1", "t3", "t5"]
    assert col("Events | where EventType !~ 'epipageview' | project TrackId", events) == [
        "t2", "t4"]


def test_in_and_in_tilde(events):
    assert col("Events | where CountryCode in ('SE', 'NO') | project TrackId", events) == [
        "t1", "t3", "t4"]
    assert col("Events | where CountryCode in~ ('se') | project TrackId", events) == [
        "t1", "t3", "t5"]
    assert col("Events | where CountryCode !in ('SE', 'NO') | project TrackId", events) == [
        "t2", "t5"]


def test_contains_startswith_case_insensitive(events):
    assert col("Events | where Value contains 'ORDER' | project TrackId", events) == ["t2"]
    assert col("Events | where Value contains_cs 'ORDER' | project TrackId", events) == []
    assert col("Events | where Value startswith 'viewed' | project TrackId", events) == ["t1"]
    assert col("Events | where Value endswith 'BASKET' | project TrackId", events) == ["t4"]
    assert col("Events | where Value !contains 'e' | project TrackId", events) == ["t5"]


def test_has_matches_whole_terms(events):
    assert col("Events | where Value has 'america' | project TrackId", events) == ["t1"]
    assert col("Events | where Value has 'amer' | project TrackId", events) == []
    assert col("Events | where Value has 'view' | project TrackId", events) == []
    assert col("Events | where PageUri has 'cart' | project TrackId", events) == ["t1"]
    assert col("Events | where PageUri has 'example.com' | project TrackId", events) == [
        "t1", "t2", "t3", "t4"]
    assert col("Events | where Value !has 'order' | project TrackId", events) == [
        "t1", "t3", "t4", "t5"]


def test_sort_defaults_desc_nulls_last(events):
    assert col("Events | sort by EventTime | project TrackId", events) == [
        "t4", "t3", "t2", "t1", "t5"]
    assert col("Events | order by EventTime asc | project TrackId", events) == [
        "t5", "t1", "t2", "t3", "t4"]
    assert col("Events | sort by EventTime asc nulls last | project TrackId", events) == [
        "t1", "t2", "t3", "t4", "t5"]
    assert col("Events | top 2 by EventTime | project TrackId", events) == ["t4", "t3"]


def test_summarize_names_and_empty_input(events):
    out = run("Events | summarize count(), dcount(DeviceId), countif(CountryCode == 'SE') "
              "by EventType", events)
    assert out.columns == ["EventType", "count_", "dcount_DeviceId", "countif_"]
    assert out.sort("EventType").rows() == [
        ("EPIPAGEVIEW", 1, 1, 0), ("basket", 1, 1, 0), ("epiPageView", 2, 1, 2),
        ("order", 1, 1, 0)]
    empty = run("Events | where EventType == 'nothing' | summarize count(), "
                "dcount(DeviceId), sum(toreal(Payload.price))", events)
    assert empty.rows() == [(0, 0, 0.0)]
    assert empty.columns == ["count_", "dcount_DeviceId", "sum_Payload_price"]
    by = run("Events | where EventType == 'nothing' | summarize count() by City", events)
    assert by.height == 0 and by.columns == ["City", "count_"]


def test_dynamic_access(events):
    out = run("Events | project Payload.name, n = Payload['name'], l = Payload.epi.language,"
              " User.Email", events)
    assert out.columns == ["Payload_name", "n", "l", "User_Email"]
    assert out["Payload_name"].to_list() == ["Home page", None, "Start", "Boots", ""]
    assert out["l"].to_list() == ["sv", None, "en", None, "sv"]
    assert out["User_Email"].to_list() == ["a@b.se", "", "A@B.se", "", ""]
    assert col("Events | where Payload.price > 5 | project TrackId", events) == ["t3", "t4"]
    assert col("Events | extend s = tostring(Payload.qty) | project s", events) == [
        "2", "", "", "1", ""]


def test_endofday_last_tick_and_between_timespan(events):
    out = run("Events | where TrackId == 't1' | project e = endofday(EventTime)", events)
    assert out["e"][0] == datetime(2024, 1, 1, 23, 59, 59, 999999, tzinfo=UTC)
    assert out["e"].cast(pl.Int64)[0] % 10**9 == 999_999_900
    assert col("Events | where EventTime between (datetime(2024-01-02) .. 1d) "
               "| project TrackId", events) == ["t2", "t3", "t4"]  # inclusive upper bound
    assert col("Events | where EventTime between (datetime(2024-01-02) .. "
               "datetime(2024-01-02 23:59:59.9999999)) | project TrackId", events) == [
        "t2", "t3"]
    assert col("Events | where EventTime !between (datetime(2024-01-02) .. 1d) "
               "| project TrackId", events) == ["t1"]


def test_now_and_ago_are_fixed(events):
    out = run("Events | take 1 | project a = now(), b = ago(1d), c = now(-1h)", events)
    assert out.row(0) == (NOW, NOW - timedelta(days=1), NOW - timedelta(hours=1))


def test_render_keeps_data(events):
    res = execute("Events | summarize count() by EventType | render barchart "
                  "with (title='Types')", {"Events": events})
    assert res.render == RenderSpec("barchart", {"title": "Types"})
    assert res.frame.columns == ["EventType", "count_"]


def test_params_are_typed_lets(events):
    out = kql("Events | where CountryCode == c and EventTime > t | project TrackId", events,
              params={"c": "SE", "t": datetime(2024, 1, 2, tzinfo=UTC)})
    assert out["TrackId"].to_list() == ["t3"]
    inj = kql("Events | where CountryCode == c | count", events,
              params={"c": "SE' or 1==1 //"})
    assert inj.rows() == [(0,)]


def test_errors_point_at_the_query():
    with pytest.raises(KqlSyntaxError) as ei:
        validate("Events\n| Where EventType == 'x'")
    e = ei.value
    assert (e.line, e.column, e.suggestion) == (2, 3, "where")
    assert e.snippet == "| Where EventType == 'x'\n  ^^^^^"
    with pytest.raises(KqlSemanticError) as ei:
        validate("Events | where EventTyp == 'x'")
    assert (ei.value.line, ei.value.column, ei.value.suggestion) == (1, 16, "EventType")
    with pytest.raises(KqlSemanticError) as ei:
        validate("Events | extend x = tolowr(City)")
    assert ei.value.suggestion == "tolower"
    with pytest.raises(KqlSemanticError) as ei:
        validate("Event | take 1")
    assert ei.value.suggestion == "Events"
    with pytest.raises(KqlUnsupported) as ei:
        validate("Events | evaluate bag_unpack(Payload)")
    assert (ei.value.line, ei.value.column) == (1, 10)
    assert "out of scope" in ei.value.message
    assert isinstance(ei.value, KqlError)
