"""Every session rule and its boundary, on hand-built streams."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from sessions_streams import T0, ev, frame

from psanalytics import sessionize
from psanalytics.sessions import SPLIT_REASONS, SessionizeError, parse_duration

MIN = 60
H = 3600


def cuts(result) -> list[tuple[str, int]]:
    """(DeviceId, session_index) per event, in input order."""
    e = result.events
    return list(zip(e["DeviceId"].to_list(), e["session_index"].to_list(), strict=True))


def test_gap_of_exactly_the_timeout_stays_in_the_session():
    r = sessionize(frame([ev("a", 0), ev("a", 30 * MIN)]))
    assert r.sessions.height == 1
    assert r.events["session_index"].to_list() == [1, 1]
    assert r.sessions["duration_s"].to_list() == [1800.0]


def test_gap_of_timeout_plus_one_ns_starts_a_new_session():
    r = sessionize(frame([ev("a", 0), ev("a", 30 * MIN, ns=1)]))
    assert r.events["session_index"].to_list() == [1, 2]
    assert r.sessions["split_reason"].to_list() == ["first", "inactivity"]
    assert r.sessions["gap_before_s"].to_list() == [None, pytest.approx(1800.000000001)]


def test_profile_store_visits_preset_is_15_minutes():
    f = frame([ev("a", 0), ev("a", 15 * MIN), ev("a", 30 * MIN, ns=1)])
    r = sessionize(f, timeout="profile_store_visits")
    assert r.events["session_index"].to_list() == [1, 1, 2]
    assert r.timeout_s == 900.0
    assert sessionize(f).events["session_index"].to_list() == [1, 1, 1]


def test_timeouts_as_timedelta_and_seconds_are_the_same():
    f = frame([ev("a", 0), ev("a", 11 * MIN), ev("a", 30 * MIN)])
    a = sessionize(f, timeout="10m").events["session_index"].to_list()
    b = sessionize(f, timeout=timedelta(minutes=10)).events["session_index"].to_list()
    c = sessionize(f, timeout=600).events["session_index"].to_list()
    assert a == b == c == [1, 2, 3]


def test_max_duration_re_anchors_at_the_first_event_after_the_cap():
    # Events every 20 min for 50 h: never idle, so only the 24 h cap cuts.
    times = [i * 20 * MIN for i in range(151)]  # 0 .. 50 h
    r = sessionize(frame([ev("bot", t) for t in times]))
    s = r.sessions
    # first session: 0 .. 24h exactly (an event at exactly start + 24 h stays in)
    assert s["start_time"][0] == T0
    assert s["end_time"][0] == T0 + timedelta(hours=24)
    # second starts at 24h20m (first event after 24 h), re-anchored: ends at 48h20m
    assert s["start_time"][1] == T0 + timedelta(hours=24, minutes=20)
    assert s["end_time"][1] == T0 + timedelta(hours=48, minutes=20)
    assert s["start_time"][2] == T0 + timedelta(hours=48, minutes=40)
    assert s["end_time"][2] == T0 + timedelta(hours=50)
    assert s["split_reason"].to_list() == ["first", "max_duration", "max_duration"]
    assert s["n_events"].to_list() == [73, 73, 5]


def test_max_duration_boundary_in_nanoseconds():
    f = frame([ev("a", 0)] + [ev("a", i * 25 * MIN) for i in range(1, 58)] + [ev("a", 24 * H, ns=1)])
    f = f.sort("EventTime")
    r = sessionize(f)
    # the event at 24 h + 1 ns is the first after the cap
    assert r.sessions["n_events"].to_list()[0] == 58
    assert r.sessions["split_reason"].to_list() == ["first", "max_duration"]


def test_max_duration_none_keeps_long_sessions_and_12h_option():
    times = [i * 20 * MIN for i in range(100)]
    f = frame([ev("bot", t) for t in times])
    assert sessionize(f, max_duration=None).sessions.height == 1
    r = sessionize(f, max_duration="12h")
    assert r.sessions["n_events"].to_list() == [37, 37, 26]
    assert r.max_duration_s == 43200.0


def test_max_duration_restarts_after_an_inactivity_split():
    # 20 h busy, a 2 h break, then 20 h busy: inactivity cuts, the cap never fires.
    a = [i * 20 * MIN for i in range(61)]
    b = [22 * H + i * 20 * MIN for i in range(61)]
    r = sessionize(frame([ev("d", t) for t in a + b]))
    assert r.sessions["split_reason"].to_list() == ["first", "inactivity"]


def test_midnight_split_in_a_named_time_zone():
    # Stockholm is UTC+1 in March: local midnight is 23:00 UTC.
    f = frame(
        [
            ev("a", datetime(2024, 3, 4, 22, 50, tzinfo=UTC)),
            ev("a", datetime(2024, 3, 4, 22, 59, 59, tzinfo=UTC)),
            ev("a", datetime(2024, 3, 4, 23, 0, 0, tzinfo=UTC)),
            ev("a", datetime(2024, 3, 4, 23, 10, tzinfo=UTC)),
        ]
    )
    assert sessionize(f).sessions.height == 1
    r = sessionize(f, split_at_midnight="Europe/Stockholm")
    assert r.events["session_index"].to_list() == [1, 1, 2, 2]
    assert r.sessions["split_reason"].to_list() == ["first", "midnight"]
    # In UTC the same stream crosses no midnight.
    assert sessionize(f, split_at_midnight="UTC").sessions.height == 1


def test_midnight_unknown_zone_is_a_clear_error():
    with pytest.raises(SessionizeError, match="Mars/Olympus"):
        sessionize(frame([ev("a", 0), ev("a", 10)]), split_at_midnight="Mars/Olympus")


def test_campaign_change_splits_only_on_a_new_non_empty_campaign():
    u = "https://shop.example/"
    f = frame(
        [
            ev("a", 0, page=u + "?utm_source=news&utm_campaign=spring"),
            ev("a", 60, page=u + "p/1"),  # no campaign: no change
            ev("a", 120, page=u + "?utm_source=news&utm_campaign=spring"),  # same again
            ev("a", 180, page=u + "?utm_source=google&gclid=XYZ"),  # new campaign
            ev("a", 240, page=u + "p/2"),
            ev("b", 0, page=u),
            ev("b", 60, page=u + "?utm_source=ads"),  # direct -> campaign: new
        ]
    )
    assert sessionize(f).sessions.height == 2
    r = sessionize(f, split_on_campaign=True)
    assert cuts(r) == [("a", 1), ("a", 1), ("a", 1), ("a", 2), ("a", 2), ("b", 1), ("b", 2)]
    s = r.sessions.sort("device_id", "session_index")
    assert s["split_reason"].to_list() == ["first", "campaign", "first", "campaign"]
    assert s["entry_utm_source"].to_list() == ["news", "google", None, "ads"]
    assert s["entry_utm_campaign"].to_list() == ["spring", None, None, None]


def test_identity_change_splits_on_a_different_email_not_on_login():
    f = frame(
        [
            ev("a", 0),
            ev("a", 60, email="Anna@Example.com "),  # login: not a change
            ev("a", 120, email="anna@example.com"),  # same after trim/lower
            ev("a", 180),  # anonymous event: no change
            ev("a", 240, email="bo@example.com"),  # different: new session
            ev("a", 300, email="bo@example.com"),
        ]
    )
    assert sessionize(f).sessions.height == 1
    r = sessionize(f, split_on_identity_change=True)
    assert r.events["session_index"].to_list() == [1, 1, 1, 1, 2, 2]
    assert r.sessions["split_reason"].to_list() == ["first", "identity"]


def test_ties_in_event_time_are_stable_by_input_order():
    f = frame(
        [
            ev("a", 0, page="https://x/first"),
            ev("a", 0, page="https://x/second"),
            ev("a", 0, page="https://x/third"),
        ]
    )
    r = sessionize(f)
    s = r.sessions
    assert s["entry_page"].to_list() == ["https://x/first"]
    assert s["exit_page"].to_list() == ["https://x/third"]
    assert r.events["event_index_in_session"].to_list() == [1, 2, 3]
    rev = sessionize(f.reverse())
    assert rev.sessions["entry_page"].to_list() == ["https://x/third"]
    assert rev.events["event_index_in_session"].to_list() == [1, 2, 3]


def test_single_event_sessions():
    f = frame([ev("a", 0), ev("b", 5), ev("a", 2 * H)])
    r = sessionize(f)
    s = r.sessions
    assert s["device_id"].to_list() == ["a", "b", "a"]
    assert s["session_index"].to_list() == [1, 1, 2]
    assert s["n_events"].to_list() == [1, 1, 1]
    assert s["duration_s"].to_list() == [0.0, 0.0, 0.0]
    assert s["is_bounce"].to_list() == [True, True, True]
    assert s["is_engaged"].to_list() == [False, False, False]
    assert s["session_id"].to_list() == ["a:1", "b:1", "a:2"]
    assert r.events["session_key"].to_list() == [0, 1, 2]
    assert r.events["session_id"].to_list() == ["a:1", "b:1", "a:2"]


def test_window_edge_flags():
    f = frame(
        [
            ev("a", 0),
            ev("b", 30 * MIN),  # exactly one timeout after the window start: truncated
            ev("c", 30 * MIN + 1),
            ev("c", 31 * MIN),
            ev("d", 2 * H - 30 * MIN),  # exactly one timeout before the end: truncated
            ev("e", 2 * H),
        ]
    )
    s = sessionize(f).sessions.sort("device_id")
    assert s["truncated_start"].to_list() == [True, True, False, False, False]
    assert s["truncated_end"].to_list() == [False, False, False, True, True]
    w = sessionize(f, window=(T0 - timedelta(hours=1), T0 + timedelta(hours=3))).sessions
    assert w["truncated_start"].to_list() == [False] * 5
    assert w["truncated_end"].to_list() == [False] * 5


def test_sessions_table_schema_and_values():
    f = frame(
        [
            ev("a", 0, page="https://x/?utm_source=mail&utm_medium=email&utm_campaign=c1",
               title="Home", session_id="S1", email="a@x.se", name="Ann"),
            ev("a", 5, page="https://x/p", event_type="product", title="P", session_id="S1"),
            ev("a", 20, page="https://x/p", event_type="epiPageView", title="P", session_id="S2"),
            ev("a", 30, page="https://x/o", event_type="order", title="Order", session_id="S2"),
        ]
    )
    r = sessionize(f)
    s = r.sessions
    assert s.columns == [
        "session_id", "session_key", "device_id", "session_index", "user_email", "user_name",
        "n_user_emails", "start_time", "end_time", "duration_s", "n_events", "n_pageviews",
        "n_unique_pages", "event_counts", "entry_page", "entry_title", "exit_page", "exit_title",
        "entry_utm_source", "entry_utm_medium", "entry_utm_campaign", "entry_referrer_host",
        "country_code", "city", "is_bounce", "is_engaged", "gap_before_s", "split_reason",
        "truncated_start", "truncated_end", "source_session_ids", "scope",
    ]  # fmt: skip
    row = s.row(0, named=True)
    assert row["session_id"] == "a:1"
    assert row["user_email"] == "a@x.se" and row["user_name"] == "Ann" and row["n_user_emails"] == 1
    assert row["n_events"] == 4 and row["n_pageviews"] == 2 and row["n_unique_pages"] == 3
    assert row["event_counts"] == {"epiPageView": 2, "order": 1, "product": 1}
    assert (row["entry_title"], row["exit_page"], row["exit_title"]) == ("Home", "https://x/o", "Order")
    assert (row["entry_utm_source"], row["entry_utm_medium"], row["entry_utm_campaign"]) == (
        "mail", "email", "c1",
    )  # fmt: skip
    assert row["is_engaged"] is True and row["is_bounce"] is False
    assert row["source_session_ids"] == 2
    assert row["split_reason"] == "first" and row["scope"] == "default"
    assert s.schema["split_reason"] == pl.Enum(list(SPLIT_REASONS))
    assert s.schema["start_time"] == pl.Datetime("ns", "UTC")
    assert s.schema["session_key"] == pl.UInt32 and s.schema["n_user_emails"] == pl.UInt8
    assert s.schema["source_session_ids"] == pl.UInt16


def test_referrer_host_from_payload():
    p = '{"referrer": "https://www.Google.com/search?q=tent", "utm_source": "g"}'
    s = sessionize(frame([ev("a", 0, payload=p)])).sessions
    assert s["entry_referrer_host"].to_list() == ["www.google.com"]
    assert s["entry_utm_source"].to_list() == ["g"]


def test_engaged_rules():
    f = frame(
        [
            ev("long", 0, event_type="product"),
            ev("long", 10, event_type="product"),  # 10 s: engaged
            ev("short", 0, event_type="product"),
            ev("short", 9, event_type="product"),  # 9 s, 0 page views: not engaged
            ev("pv", 0),
            ev("pv", 1),  # 2 page views: engaged
            ev("conv", 0, event_type="order"),  # a conversion: engaged
        ]
    )
    s = sessionize(f).sessions.sort("device_id")
    assert dict(zip(s["device_id"], s["is_engaged"], strict=True)) == {
        "conv": True, "long": True, "pv": True, "short": False,
    }  # fmt: skip
    assert s["is_bounce"].to_list() == [False, False, False, False]


def test_minimal_mode_outputs():
    f = frame([ev("a", 0, page="https://x/1"), ev("a", 60, page="https://x/2"), ev("b", 30)])
    r = sessionize(f, minimal=True)
    assert r.sessions.columns == [
        "session_key", "device_id", "session_index", "start_time", "end_time",
        "duration_s", "n_events", "entry_page", "exit_page",
    ]  # fmt: skip
    assert r.sessions.rows() == [
        (0, "a", 1, T0, T0 + timedelta(minutes=1), 60.0, 2, "https://x/1", "https://x/2"),
        (1, "b", 1, T0 + timedelta(seconds=30), T0 + timedelta(seconds=30), 0.0, 1,
         "https://shop.example/", "https://shop.example/"),
    ]  # fmt: skip
    assert r.events.columns == [*f.columns, "session_index"]
    assert r.events["session_index"].to_list() == [1, 1, 1]


def test_multi_column_key_never_mixes_scopes():
    f = frame([ev("a", 0), ev("a", 10)]).with_columns(pl.Series("Scope", ["default", "b2b"]))
    r = sessionize(f, key=["DeviceId", "Scope"])
    assert r.sessions.height == 2
    assert r.sessions.select("DeviceId", "Scope").rows() == [("a", "default"), ("a", "b2b")]
    assert r.sessions["session_id"].to_list() == ["a|default:1", "a|b2b:1"]


def test_errors_are_clear():
    f = frame([ev("a", 0)])
    with pytest.raises(SessionizeError, match="timeout='30 minutes' is not a duration"):
        sessionize(f, timeout="30 minutes")
    with pytest.raises(SessionizeError, match="must be positive"):
        sessionize(f, timeout=0)
    with pytest.raises(SessionizeError, match="needs column.*Nope"):
        sessionize(f, key="Nope")
    with pytest.raises(SessionizeError, match="DataFrame or LazyFrame"):
        sessionize([{"DeviceId": "a"}])  # type: ignore[arg-type]
    bad = f.with_columns(pl.lit(None, pl.Datetime("ns", "UTC")).alias("EventTime"))
    with pytest.raises(SessionizeError, match="null at row 0"):
        sessionize(bad)


def test_parse_duration():
    assert parse_duration("1h30m") == 5400 * 10**9
    assert parse_duration("90s") == 90 * 10**9
    assert parse_duration("1d") == 86400 * 10**9
    assert parse_duration("250ms") == 250 * 10**6
    assert parse_duration(None) is None
    assert parse_duration("profile_store_visits") == 900 * 10**9


def test_empty_input():
    f = frame([ev("a", 0)]).head(0)
    r = sessionize(f)
    assert r.sessions.height == 0 and r.events.height == 0
    assert "session_id" in r.events.columns
