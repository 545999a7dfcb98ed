"""The $filter compiler, time_bounds, $orderby and the F builder on local frames."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
import pytest

from psanalytics.query.odata import (
    F,
    ODataError,
    compile_filter,
    filter_frame,
    parse_orderby,
    time_bounds,
    time_bounds_ns,
)


def ids(frame, text, **kw):
    return filter_frame(frame, text, **kw).get_column("TrackId").to_list()


def ref(frame, expr):
    return frame.filter(expr).get_column("TrackId").to_list()


@pytest.mark.parametrize("text", ["EventType eq order", "EventType eq 'order'", "eventtype EQ order"])
def test_unquoted_and_quoted_values(small, text):
    assert ids(small, text) == ref(small, pl.col("EventType") == "order")
    assert len(ids(small, text)) == 12


def test_upper_case_logic_and_parentheses(small):
    got = ids(small, "(EventType eq order OR EventType eq home) AND NOT (Scope eq shop)")
    exp = ref(small, pl.col("EventType").is_in(["order", "home"]) & (pl.col("Scope") != "shop"))
    assert got == exp and len(exp) == 26
    assert ids(small, "not(EventType eq order) and EventType eq home") == ref(small, pl.col("EventType") == "home")


def test_dotted_paths(small):
    assert ids(small, "User.Email eq 'u2@example.com'") == ref(
        small, pl.col("User").struct.field("Email") == "u2@example.com")
    sv = ids(small, "Payload.epi.language eq sv")
    assert sv == ref(small, pl.col("Payload").str.json_path_match("$.epi.language") == "sv") and len(sv) == 20
    assert ids(small, "Payload.total gt 50") == ["t-052", "t-053", "t-055", "t-056", "t-058", "t-059"]
    assert ids(small, "Payload eq null") == ref(small, pl.col("Payload").is_null())
    # A missing Payload path is false, and not-of-it true.
    assert len(ids(small, "not (Payload.epi.language eq sv)")) == 62 - 20


def test_bare_datetimes_and_dates(small):
    assert ids(small, "EventTime gt 2024-03-03T18:00:00.0000058Z") == ["t-059"]
    assert ids(small, "EventTime ge 2024-03-03T18:00:00.0000058Z") == ["t-058", "t-059"]
    day2 = ref(small, pl.col("EventTime").dt.date() == date(2024, 3, 2))
    assert ids(small, "EventTime eq 2024-03-02") == day2 and len(day2) == 22
    assert ids(small, "EventTime ne 2024-03-02") == ref(small, pl.col("EventTime").dt.date() != date(2024, 3, 2))
    assert ids(small, "EventTime le 2024-03-01") == ref(small, pl.col("EventTime").dt.date() <= date(2024, 3, 1))
    assert ids(small, "EventTime gt 2024-03-02") == ref(small, pl.col("EventTime").dt.date() > date(2024, 3, 2))
    # A literal on the left is flipped; a quoted time works too; offsets are honoured.
    assert ids(small, "2024-03-03T18:00:00.0000058Z lt EventTime") == ["t-059"]
    assert ids(small, "EventTime gt '2024-03-03T19:00:00.0000058+01:00'") == ["t-059"]


def test_guids_keywords_as_values_and_nulls(small):
    got = ids(small, "DeviceId eq 91687961-BC76-49a2-862c-e014441b8f6b")
    assert got == ref(small, pl.col("DeviceId") == "91687961-bc76-49a2-862c-e014441b8f6b") and len(got) == 20
    # Values that start with a keyword are values, not keywords.
    for word in ("anything", "allowed", "trueview", "nullable", "notice", "order"):
        assert compile_filter(f"EventType eq {word}") is not None
    assert ids(small, "PageTitle eq null") == small.get_column("TrackId").to_list()
    assert ids(small, "Value eq 'it''s'") == []
    assert ids(small, "Value eq v7") == ["t-007"]
    cities = small.head(3).with_columns(pl.Series("City", ["Göteborg", "Malmö", "Örebro"]))
    assert ids(cities, "City eq Örebro OR City eq Göteborg") == ["t-000", "t-002"]


@pytest.mark.parametrize(
    ("text", "pos", "reason"),
    [
        ("EventType eq", 11, "the filter ends after 'eq': a value or condition is missing"),
        ("EventType eq 'a' and", 18, "the filter ends after 'and': a value or condition is missing"),
        ("EventType eq a b", 16, "unexpected 'b'"),
        ("EventType eq a @ b", 16, "unexpected character '@'"),
        ("Foo eq 1", 1, "unknown property Foo"),
        ("User.Infos eq x", 1, "unknown property User.Infos"),
        ("EventTime gt yesterday", 14, "cannot compare a time with yesterday"),
        ("contains(Value, 'x')", 1, "the function contains() is not supported"),
        ("Value eq 'a' and startswith(Value, 'x')", 18, "the function startswith() is not supported"),
        ("endswith(Value,'x')", 1, "the function endswith() is not supported"),
        ("EventType in ('a', 'b')", 11, "the 'in' operator is not supported"),
        ("", 1, "the filter is empty"),
    ],
)
def test_errors_name_position_and_reason(text, pos, reason):
    with pytest.raises(ODataError) as ei:
        compile_filter(text)
    e = ei.value
    assert e.position == pos and e.reason.startswith(reason)
    assert str(e).startswith(f"invalid $filter at position {pos}: {reason}")
    if text:
        assert str(e).splitlines()[-2:] == ["  " + text, "  " + " " * (pos - 1) + "^"]


def test_lenient_functions(small):
    assert ids(small, "contains(Value, '5')", lenient=True) == ref(small, pl.col("Value").str.contains("5"))
    assert ids(small, "startswith(PageUri, 'https://example.com/p6')", lenient=True) == ref(
        small, pl.col("PageUri").str.ends_with("p6"))
    assert ids(small, "endswith(User.Email, '3@example.com')", lenient=True) == []
    assert ids(small, "EventType in ('order', home)", lenient=True) == ref(
        small, pl.col("EventType").is_in(["order", "home"]))


def test_time_bounds():
    t = "(EventType eq x or Value eq y) and EventTime ge 2024-03-08T00:00:00.1234567Z and EventTime lt 2024-03-09"
    assert time_bounds_ns(t) == (1709856000123456700, True, 1709942400000000000, False)
    lo, lo_inc, hi, hi_inc = time_bounds(t)
    assert (lo, lo_inc) == (datetime(2024, 3, 8, 0, 0, 0, 123456, tzinfo=UTC), True)
    assert (hi, hi_inc) == (datetime(2024, 3, 9, tzinfo=UTC), False)
    assert time_bounds("EventTime eq 2024-03-08") == (
        datetime(2024, 3, 8, tzinfo=UTC), True, datetime(2024, 3, 9, tzinfo=UTC), False)
    assert time_bounds("EventTime gt 2024-03-08T00:00:00Z or EventTime lt 2020-01-01") == (None, True, None, True)
    assert time_bounds("not (EventTime gt 2024-03-08T00:00:00Z)") == (None, True, None, True)
    # The tighter of two bounds wins; exclusive beats inclusive at the same instant.
    assert time_bounds_ns("EventTime ge 2024-01-01T00:00:00Z and EventTime gt 2024-01-01T00:00:00Z "
                          "and EventTime le 2024-01-03 and EventTime lt 2024-01-02T00:00:00Z") == (
        1704067200000000000, False, 1704153600000000000, False)


def test_orderby_parsing():
    assert parse_orderby("EventTime DESC, trackid,User.email Asc") == [
        ("EventTime", True), ("TrackId", False), ("User.Email", False)]
    with pytest.raises(ODataError) as ei:
        parse_orderby("EventTime, Payload.x desc")
    assert ei.value.position == 12 and "cannot order by 'Payload.x'" in str(ei.value)
    with pytest.raises(ODataError, match="expected 'Property"):
        parse_orderby("EventTime sideways")


def test_f_builder_renders_and_matches(small):
    f = (F.EventType == "order") & (F.EventTime >= datetime(2024, 3, 2, tzinfo=UTC))
    assert f.render() == "EventType eq 'order' and EventTime ge 2024-03-02T00:00:00.0000000Z"
    assert str(f) == f.render()
    g = (F.User.Email == "o'b") | ~(F.Payload.epi.language == "sv")
    assert str(g) == "User.Email eq 'o''b' or not (Payload.epi.language eq 'sv')"
    assert str(f & g) == f"{f} and ({g})"
    assert str(F.EventTime == date(2024, 3, 2)) == "EventTime eq 2024-03-02"
    assert str(F.Payload.total > 5) == "Payload.total gt 5"
    assert str(F["User.Email"] != None) == "User.Email ne null"  # noqa: E711
    assert ids(small, f) == ref(small, (pl.col("EventType") == "order")
                                & (pl.col("EventTime").dt.date() >= date(2024, 3, 2)))
    h = F.EventTime.between(datetime(2024, 3, 1, 5), datetime(2024, 3, 1, 7))
    assert ids(small, h) == ["t-005", "t-006"]
    with pytest.raises(AttributeError, match="not an event property"):
        F.Nope  # noqa: B018
    with pytest.raises(TypeError):
        bool(F.EventType == "x")
