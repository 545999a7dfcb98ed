"""psanalytics._time: the one home for instants, ticks and durations."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from psanalytics import _time as T
from psanalytics.errors import PsaError, TimeError

NS = 10**9
Y2020 = 1_577_836_800 * NS  # 2020-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2020-01-01T00:00:00.0000001Z", Y2020 + 100),  # the API's 7 digits
        ("2020-01-01T00:00:00.123456789Z", Y2020 + 123_456_789),
        ("2020-01-01T00:00:00.123456789012Z", Y2020 + 123_456_789),  # past 9: truncated
        ("2020-01-01T00:00:00.5z", Y2020 + 500_000_000),
        ("2020-01-01", Y2020),  # bare date: midnight UTC
        ("2020-01-01 00:00", Y2020),  # space for T, no seconds, no offset = UTC
        ("2020-01-01t00:00:00", Y2020),
        ("2020-1-1T0:00", Y2020),  # one-digit fields (KQL writes them)
        ("2020-01-01T02:00:00+02:00", Y2020),
        ("2020-01-01T02:00:00+0200", Y2020),
        ("2019-12-31T22:00:00-02", Y2020),
        ("  2020-01-01T00:00:00Z  ", Y2020),
    ],
)
def test_parse_instant_forms(text: str, ns: int) -> None:
    assert T.parse_instant(text) == ns
    assert T.instant_or_none(text) == ns


@pytest.mark.parametrize("text", ["yesterday", "2020-13-01", "2020-02-30", "2020-01-01T25:00", ""])
def test_not_an_instant(text: str) -> None:
    assert T.instant_or_none(text) is None
    with pytest.raises(TimeError) as ei:
        T.parse_instant(text)
    assert str(ei.value) == f"not an ISO 8601 time: {text!r}"
    assert isinstance(ei.value, PsaError) and isinstance(ei.value, ValueError)


def test_range_is_the_nanosecond_datetime_range() -> None:
    assert T.parse_instant("1677-09-21T00:12:43.145224192Z") == -(2**63)
    assert T.parse_instant("2262-04-11T23:47:16.854775807Z") == 2**63 - 1
    expected = (
        "'2262-04-12' is outside the range a nanosecond time can hold "
        "(1677-09-21T00:12:43.145224192Z .. 2262-04-11T23:47:16.854775807Z)"
    )
    with pytest.raises(TimeError) as ei:
        T.parse_instant("2262-04-12")
    assert str(ei.value) == expected
    with pytest.raises(TimeError, match="outside the range"):
        T.instant_or_none("1600-01-01T00:00:00Z")
    # the KQL parser asks for the raw value and reports the range itself
    assert T.instant_or_none("1600-01-01", check_range=False) < -(2**63)
    with pytest.raises(TimeError, match="outside the range"):
        T.to_ns(datetime(3000, 1, 1, tzinfo=UTC))


def test_to_ns_inputs() -> None:
    assert T.to_ns(datetime(2020, 1, 1)) == Y2020  # naive = UTC
    assert T.to_ns(datetime(2020, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == Y2020
    assert T.to_ns(date(2020, 1, 1)) == Y2020
    assert T.to_ns("2020-01-01") == Y2020
    assert T.to_ns(Y2020 + 7) == Y2020 + 7
    with pytest.raises(TypeError):
        T.to_ns(True)
    pd = pytest.importorskip("pandas")
    assert T.to_ns(pd.Timestamp("2020-01-01T00:00:00.000000123Z")) == Y2020 + 123


def test_ticks_and_formatting() -> None:
    assert (T.floor_tick(Y2020 + 199), T.ceil_tick(Y2020 + 101)) == (Y2020 + 100, Y2020 + 200)
    assert (T.floor_tick(-1), T.ceil_tick(-199)) == (-100, -100)
    assert T.format_ns(Y2020 + 1_234_567_800) == "2020-01-01T00:00:01.2345678Z"
    assert T.from_ns(Y2020 + 1_999) == datetime(2020, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    text = "2017-09-15T07:16:34.7957819Z"
    assert T.format_ns(T.parse_instant(text)) == text


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("90s", 90 * NS),
        ("1h30m", 5_400 * NS),
        ("1.5h", 5_400 * NS),
        ("30 min", 1_800 * NS),
        ("2hr", 7_200 * NS),
        ("10sec", 10 * NS),
        ("250ms", 250_000_000),
        ("7us", 7_000),
        ("7µs", 7_000),
        ("3ns", 3),
        ("1d", 86_400 * NS),
        ("2w", 14 * 86_400 * NS),
        ("1H", 3_600 * NS),
    ],
)
def test_duration_strings(text: str, ns: int) -> None:
    assert T.parse_duration(text) == ns


def test_duration_other_inputs_and_errors() -> None:
    assert T.parse_duration(timedelta(minutes=1, microseconds=3)) == 60 * NS + 3_000
    assert T.parse_duration(1.5) == 1_500_000_000
    for bad in ("30 minutes", "1x", "", "h", "1h 2"):
        with pytest.raises(TimeError) as ei:
            T.parse_duration(bad, name="timeout")
        assert str(ei.value) == (
            f"timeout={bad!r} is not a duration: use e.g. '30m', '1h30m', '90s', '24h', "
            "a timedelta or a number of seconds"
        )
    with pytest.raises(TimeError, match="timeout must be a duration such as '30m', got True"):
        T.parse_duration(True, name="timeout")


def test_one_unit_table_two_dialects() -> None:
    assert T.DURATION_UNITS <= set(T.UNITS_NS) and T.KQL_UNITS <= set(T.UNITS_NS)
    # KQL's literal names (the Kusto reference): long forms yes, ns/us/w no
    assert {"tick", "microsecond", "hours", "sec", "ms"} <= T.KQL_UNITS
    assert not {"ns", "us", "w"} & T.KQL_UNITS
    assert T.parse_timespan("1.02:03:04.5") == ((26 * 60 + 3) * 60 + 4) * NS + 500_000_000
    assert T.parse_timespan("-00:30") == -1_800 * NS
    assert T.parse_timespan("2") == 2 * 86_400 * NS
    assert T.parse_timespan("10 tick") == 1_000
    assert T.parse_timespan("1.5hours") == 5_400 * NS
    assert T.parse_timespan("1w") is None and T.parse_timespan("soon") is None
