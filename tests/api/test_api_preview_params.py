"""ProfileStore.preview(params=...) against the in-process emulator: the params reach the
server as typed leading lets, and errors point at the query as written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from psanalytics import schema
from psanalytics._connect import connect
from psanalytics.api.profile_store import ProfileStore, with_params
from psanalytics.emulator import Emulator
from psanalytics.query.kql import KqlSemanticError, KqlSyntaxError


def _events() -> pl.DataFrame:
    rows = [
        # TrackId, EventType, CountryCode, EventTime
        ("t1", "order", "SE", "2024-03-04T10:00:00Z"),
        ("t2", "home", "NO", "2024-03-04T11:00:00Z"),
        ("t3", "order", "DK", "2024-03-04T12:00:00Z"),
        ("t4", "order", "NO", "2024-03-05T09:30:00Z"),
        ("t5", "o'x", "SE", "2024-03-05T10:00:00Z"),
        ("t6", "home", "FI", "2024-03-06T08:00:00Z"),
    ]
    return schema.normalize([
        {"TrackId": t, "DeviceId": f"d{i}", "EventType": e, "CountryCode": c, "EventTime": ts}
        for i, (t, e, c, ts) in enumerate(rows)
    ])


@pytest.fixture
def store() -> ProfileStore:
    emu = Emulator(_events())
    return connect(emu.url, emu.api_key, transport=emu.transport(), emulator=emu, progress=False)


def test_str_param(store):
    got = store.preview("Events | where EventType == kind | project TrackId, CountryCode",
                        params={"kind": "order"})
    assert got.rows() == [("t1", "SE"), ("t3", "DK"), ("t4", "NO")]
    # A quote in the value is data, not query text.
    got = store.preview("Events | where EventType == kind | project TrackId", params={"kind": "o'x"})
    assert got.rows() == [("t5",)]
    got = store.preview("Events | where EventType == kind | count",
                        params={"kind": "x' or 1 == 1 or 'a"})
    assert got.rows() == [(0,)]


def test_datetime_param(store):
    got = store.preview(
        "Events | where EventTime >= since and EventTime < since + span | project TrackId",
        params={"since": datetime(2024, 3, 4, 11, 0, tzinfo=UTC), "span": timedelta(days=1)},
    )
    assert got.rows() == [("t2",), ("t3",), ("t4",), ("t5",)]


def test_list_param(store):
    got = store.preview(
        "Events | where CountryCode in (countries) | project TrackId, CountryCode",
        params={"countries": ["SE", "NO"]},
    )
    assert got.rows() == [("t1", "SE"), ("t2", "NO"), ("t4", "NO"), ("t5", "SE")]


def test_params_without_local_validation_still_reach_the_server(store):
    got = store.preview("Events | where CountryCode in (countries) | count",
                        params={"countries": ["FI", "DK"]}, validate=False)
    assert got.rows() == [(2,)]


def test_without_params_the_query_is_refused_remotely(store):
    # The defect: the bare query was sent, so the server did not know the name.
    with pytest.raises(KqlSemanticError) as ei:
        store.preview("Events | where CountryCode in (countries) | count", validate=False)
    assert (ei.value.line, ei.value.column) == (1, 32)


def test_with_params_text():
    text = with_params(
        "Events | where EventType == t and EventTime >= since",
        {
            "t": "o'x",
            "since": datetime(2024, 3, 4, tzinfo=UTC),
            "kinds": ["a", "b"],
            "w": timedelta(hours=1),
            "n": 3,
        },
    )
    assert text.split("\n") == [
        'let t = "o\'x";',
        "let since = datetime(2024-03-04T00:00:00Z);",
        'let kinds = dynamic(["a", "b"]);',
        "let w = 1h;",
        "let n = 3;",
        "Events | where EventType == t and EventTime >= since",
    ]
    assert with_params("Events | take 1", {}) == "Events | take 1"
    assert with_params("Events | take 1", None) == "Events | take 1"
    assert with_params("Events\n| take 1", {"s": "a\nb"}) == 'let s = "a\\nb";\nEvents\n| take 1'
    with pytest.raises(KqlSemanticError, match="parameter name 'a b' is not a valid KQL identifier"):
        with_params("Events", {"a b": 1})


def test_local_error_points_at_the_query_as_written(store):
    with pytest.raises(KqlSemanticError) as ei:
        store.preview("Events\n| where CountryCod in (countries)", params={"countries": ["SE"]})
    err = ei.value
    assert (err.line, err.column) == (2, 9)
    assert err.snippet == "| where CountryCod in (countries)\n        ^^^^^^^^^^"
    assert err.suggestion == "CountryCode"
    with pytest.raises(KqlSyntaxError) as ei:
        store.preview("Events | where EventType == kind |", params={"kind": "order"})
    assert (ei.value.line, ei.value.column) == (1, 35)
    assert store.emulator.state()["requests"] == 0  # nothing was sent


def test_server_error_points_at_the_query_as_written(store):
    with pytest.raises(KqlSemanticError) as ei:
        store.preview("Events\n| where CountryCod in (countries)",
                      params={"countries": ["SE"], "since": datetime(2024, 1, 1, tzinfo=UTC)},
                      validate=False)
    err = ei.value
    assert (err.line, err.column) == (2, 9)
    assert err.snippet == "| where CountryCod in (countries)\n        ^^^^^^^^^^"
    (entry,) = [e for e in store.emulator.state()["journal"] if e["route"] == "preview"]
    assert entry["status"] == 400


def test_filter_definition_placeholders_are_filled_from_params(store):
    # the vendor's filter definitions write parameters as {{name}} (issue 13)
    q = "Events | where EventType == {{kind}} | sample 5 | project TrackId"
    sent = with_params(q + " // '{{kind}}' in a comment", {"kind": "order"})
    # columns after the placeholder keep their place; comments and strings are not touched
    assert sent.split("\n")[1] == ("Events | where EventType == kind     | sample 5 "
                                   "| project TrackId // '{{kind}}' in a comment")
    got = store.preview(q, params={"kind": "order"})
    assert got.columns == ["TrackId"] and 1 <= got.height <= 5
    with pytest.raises(KqlSemanticError) as ei:  # no value: a positioned error, no request
        store.preview("Events | where EventType == {{knd}}", params={"kind": "order"})
    assert (ei.value.line, ei.value.column) == (1, 29)
