"""Retention cohorts at period edges in UTC, cohort/returning expressions, user keys."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
from sessions_streams import ev, frame

from psanalytics import journeys
from psanalytics.errors import JourneyError

LAST_NS = 999_999_999  # 23:59:59 + this = the last nanosecond of a day


def at(y, mo, d, h=0, mi=0, s=0):
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def rows(r: pl.DataFrame):
    return [(c.date().isoformat(), n, p, k, rate) for c, n, p, k, rate in r.rows()]


def test_weekly_cohorts_at_the_monday_edge():
    f = frame(
        [
            # d1: last nanosecond of Sunday 2024-03-10 (week of Monday 03-04) ...
            ev("d1", at(2024, 3, 10, 23, 59, 59), ns=LAST_NS),
            # ... back at Monday 00:00 exactly: the next week
            ev("d1", at(2024, 3, 11)),
            # d2: first seen at Monday 00:00: the 03-11 cohort
            ev("d2", at(2024, 3, 11)),
            # d3: first seen Monday 03-04 00:00, back the same week only
            ev("d3", at(2024, 3, 4)), ev("d3", at(2024, 3, 10, 23, 59, 59), ns=LAST_NS),
        ]
    )  # fmt: skip
    r = journeys.retention(f, period="week")
    assert r.columns == ["cohort", "cohort_size", "period", "returning", "rate"]
    assert r.schema["cohort"] == pl.Datetime("us", "UTC")
    assert rows(r) == [
        ("2024-03-04", 2, 0, 2, 1.0),
        ("2024-03-04", 2, 1, 1, 0.5),
        ("2024-03-11", 1, 0, 1, 1.0),
    ]


def test_daily_and_monthly_edges():
    f = frame(
        [
            ev("a", at(2024, 1, 31, 23, 59, 59), ns=LAST_NS),
            ev("a", at(2024, 2, 1)),  # next day, next month
            ev("b", at(2024, 2, 1)),
            ev("b", at(2024, 2, 1, 23, 59, 59), ns=LAST_NS),  # same day
        ]
    )
    d = journeys.retention(f, period="day")
    assert rows(d) == [
        ("2024-01-31", 1, 0, 1, 1.0),
        ("2024-01-31", 1, 1, 1, 1.0),
        ("2024-02-01", 1, 0, 1, 1.0),
    ]
    m = journeys.retention(f, period="month")
    assert rows(m) == [
        ("2024-01-01", 1, 0, 1, 1.0),
        ("2024-01-01", 1, 1, 1, 1.0),
        ("2024-02-01", 1, 0, 1, 1.0),
    ]


def test_cohort_and_returning_expressions_and_the_triangle():
    f = frame(
        [
            ev("a", at(2024, 3, 4), event_type="epiPageView"),
            ev("a", at(2024, 3, 5), event_type="order"),  # cohort: first order, day 03-05
            ev("a", at(2024, 3, 6), event_type="epiPageView"),  # not an order: not returning
            ev("a", at(2024, 3, 7), event_type="order"),  # returning 2 days later
            ev("b", at(2024, 3, 5), event_type="epiPageView"),  # never orders: no cohort
        ]
    )
    r = journeys.retention(
        f,
        period="day",
        cohort=pl.col("EventType") == "order",
        returning=pl.col("EventType") == "order",
    )
    assert rows(r) == [
        ("2024-03-05", 1, 0, 1, 1.0),
        ("2024-03-05", 1, 1, 0, 0.0),
        ("2024-03-05", 1, 2, 1, 1.0),
    ]
    g = frame([ev("x", at(2024, 3, 4)), ev("x", at(2024, 3, 6)), ev("y", at(2024, 3, 5))])
    mat = journeys.retention_matrix(journeys.retention(g, period="day"), value="returning")
    assert mat.columns == ["cohort", "cohort_size", "0", "1", "2"]
    assert mat.select("cohort_size", "0", "1", "2").rows() == [(1, 1, 0, 1), (1, 1, 0, None)]


def test_user_key_joins_the_devices_of_one_person():
    f = frame(
        [
            ev("phone", at(2024, 3, 4), email="ann@x.se"),
            ev("laptop", at(2024, 3, 5), email="ann@x.se"),
            ev("anon", at(2024, 3, 5)),
        ]
    )
    by_device = journeys.retention(f, period="day")
    assert rows(by_device)[:2] == [("2024-03-04", 1, 0, 1, 1.0), ("2024-03-04", 1, 1, 0, 0.0)]
    by_user = journeys.retention(f, period="day", key="user")
    assert rows(by_user) == [
        ("2024-03-04", 1, 0, 1, 1.0),
        ("2024-03-04", 1, 1, 1, 1.0),
        ("2024-03-05", 1, 0, 1, 1.0),
    ]


def test_retention_errors():
    f = frame([ev("x", 0)])
    with pytest.raises(JourneyError, match="period must be 'day', 'week' or 'month', got 'year'"):
        journeys.retention(f, period="year")
    with pytest.raises(JourneyError, match="key='Nope' is not a column of the events"):
        journeys.retention(f, key="Nope")
    with pytest.raises(
        JourneyError, match="cohort must be 'first_seen' or a boolean polars expression"
    ):
        journeys.retention(f, cohort="first_order")
