"""Stitching, transitions, top paths and funnels on hand-built streams."""

from __future__ import annotations

import polars as pl
import pytest
from sessions_streams import T0, ev, frame

from psanalytics import journeys, sessionize, stitch
from psanalytics.journeys import ENTRY, EXIT
from psanalytics.sessions import SessionizeError

H = 3600


# --------------------------------------------------------------------------- stitching


def test_stitch_latest_email_and_shared_devices():
    f = frame(
        [
            ev("shared", 0),
            ev("shared", 10, email=" Anna@Example.com", name="Anna"),
            ev("shared", 2 * H, email="bo@example.com", name="Bo"),
            ev("shared", 3 * H),  # anonymous later: the latest e-mail is still Bo's
            ev("solo", 50, email="cy@example.com"),
            ev("solo", 60, email="CY@example.com "),
            ev("anon", 0),
        ]
    )
    m = stitch(f)
    assert m.columns == [
        "device_id", "user_email", "user_name", "n_emails", "first_identified_at",
        "last_identified_at", "is_shared",
    ]  # fmt: skip
    assert m.rows() == [
        ("shared", "bo@example.com", "Bo", 2, T0.replace(second=10), T0.replace(hour=12), True),
        ("solo", "cy@example.com", None, 1, T0.replace(second=50), T0.replace(minute=1), False),
    ]  # fmt: skip


def test_stitch_ties_in_time_are_decided_by_input_order():
    f = frame([ev("d", 0, email="first@x.se"), ev("d", 0, email="second@x.se")])
    assert stitch(f)["user_email"].to_list() == ["second@x.se"]
    assert stitch(f.reverse())["user_email"].to_list() == ["first@x.se"]


def test_sessions_carry_the_stitched_user_retroactively():
    f = frame(
        [
            ev("d", 0),  # anonymous session before the login
            ev("d", 2 * H, email="ann@x.se", name="Ann"),
            ev("e", 0),
        ]
    )
    s = sessionize(f).sessions.sort("device_id", "session_index")
    assert s.select("device_id", "session_index", "user_email", "user_name", "n_user_emails").rows() == [
        ("d", 1, "ann@x.se", "Ann", 1),
        ("d", 2, "ann@x.se", "Ann", 1),
        ("e", 1, None, None, 0),
    ]


# --------------------------------------------------------------------------- transitions and paths


def journey_frame():
    return frame(
        [
            ev("a", 0, page="/home", event_type="home"),
            ev("a", 10, page="/p1", event_type="product"),
            ev("a", 20, page="/p1", event_type="basket"),
            ev("b", 0, page="/home", event_type="home"),
            ev("b", 5, page="/p2", event_type="product"),
            ev("a", 2 * H, page="/p1", event_type="product"),  # a's second session
        ]
    )


def test_transitions_by_page_with_entry_and_exit():
    t = journeys.transitions(journey_frame(), level="page")
    assert t.rows() == [
        (ENTRY, "/home", 2, 2 / 3),
        (ENTRY, "/p1", 1, 1 / 3),
        ("/home", "/p1", 1, 0.5),
        ("/home", "/p2", 1, 0.5),
        ("/p1", EXIT, 2, 2 / 3),
        ("/p1", "/p1", 1, 1 / 3),
        ("/p2", EXIT, 1, 1.0),
    ]
    c = journeys.transitions(journey_frame(), level="page", collapse_repeats=True)
    assert ("/p1", "/p1") not in {(r[0], r[1]) for r in c.rows()}


def test_transitions_by_event_type_per_device():
    t = journeys.transitions(journey_frame(), level="event_type", within="device")
    got = {(r[0], r[1]): r[2] for r in t.rows()}
    assert got == {
        (ENTRY, "home"): 2,
        ("home", "product"): 2,
        ("product", "basket"): 1,
        ("basket", "product"): 1,
        ("product", EXIT): 2,
    }
    # probabilities out of each step sum to one
    sums = t.group_by("from_step").agg(pl.col("probability").sum())
    assert all(abs(v - 1.0) < 1e-12 for v in sums["probability"])


def test_transitions_accept_sessionized_events():
    r = sessionize(journey_frame())
    assert journeys.transitions(r.events, level="page").equals(
        journeys.transitions(journey_frame(), level="page")
    )


def test_top_paths():
    p = journeys.top_paths(journey_frame(), level="event_type", top=5)
    assert p.rows() == [
        (["home", "product"], 2, 1, 1 / 3),
        (["home", "product", "basket"], 3, 1, 1 / 3),
        (["product"], 1, 1, 1 / 3),
    ]
    assert journeys.top_paths(journey_frame(), level="event_type", max_steps=1, top=1).rows() == [
        (["home"], 1, 2, 2 / 3)
    ]


# --------------------------------------------------------------------------- funnels


def funnel_rows(df):
    return df.select("step", "name", "entered", "dropped").rows()


def test_funnel_ordered_steps_with_repeats_and_out_of_order_events():
    f = frame(
        [
            # u1: repeated steps, completes A > B > C
            ev("u1", 0, event_type="A"), ev("u1", 10, event_type="A"), ev("u1", 20, event_type="B"),
            ev("u1", 30, event_type="B"), ev("u1", 40, event_type="C"),
            # u2: out of order: B before A, then C without a later B -> reaches A only
            ev("u2", 0, event_type="B"), ev("u2", 10, event_type="A"), ev("u2", 20, event_type="C"),
            # u3: B, A, B, C -> the B after A counts: completes
            ev("u3", 0, event_type="B"), ev("u3", 10, event_type="A"), ev("u3", 20, event_type="B"),
            ev("u3", 30, event_type="C"),
            # u4: never does A
            ev("u4", 0, event_type="B"), ev("u4", 10, event_type="C"),
        ]
    )  # fmt: skip
    r = journeys.funnel(f, ["A", "B", "C"], within="device")
    assert funnel_rows(r) == [(1, "A", 3, 0), (2, "B", 2, 1), (3, "C", 2, 0)]
    assert r["conversion"].to_list() == [1.0, pytest.approx(2 / 3), pytest.approx(2 / 3)]
    assert r["conversion_from_previous"].to_list() == [1.0, pytest.approx(2 / 3), 1.0]
    # u1: A at 0, B at 20, C at 40; u3: A at 10, B at 20, C at 30
    assert r["median_time_to_step_s"].to_list() == [0.0, 15.0, 30.0]
    assert r["median_time_from_previous_s"].to_list() == [None, 15.0, 15.0]


def test_funnel_one_event_never_counts_twice_and_ties_follow_input_order():
    f = frame([ev("u", 0, event_type="A"), ev("u", 0, event_type="B")])
    assert funnel_rows(journeys.funnel(f, ["A", "A"], within="device")) == [(1, "A", 1, 0), (2, "A", 0, 1)]
    assert funnel_rows(journeys.funnel(f, ["A", "B"], within="device"))[-1] == (2, "B", 1, 0)
    g = frame([ev("u", 0, event_type="B"), ev("u", 0, event_type="A")])
    assert funnel_rows(journeys.funnel(g, ["A", "B"], within="device"))[-1] == (2, "B", 0, 1)


def test_funnel_window_uses_the_best_start():
    f = frame(
        [
            ev("u", 0, event_type="A"),  # too early: B is 2 h later
            ev("u", 2 * H - 60, event_type="A"),  # this attempt completes within 10 min
            ev("u", 2 * H, event_type="B"),
        ]
    )
    assert funnel_rows(journeys.funnel(f, ["A", "B"], within="device"))[-1] == (2, "B", 1, 0)
    w = journeys.funnel(f, ["A", "B"], within="device", window="10m")
    assert funnel_rows(w)[-1] == (2, "B", 1, 0)
    assert w["median_time_to_step_s"].to_list() == [0.0, 60.0]
    assert funnel_rows(journeys.funnel(f, ["A", "B"], within="device", window="30s"))[-1] == (2, "B", 0, 1)


def test_funnel_within_session_and_expression_steps():
    f = frame(
        [
            ev("u", 0, event_type="A", page="/a"),
            ev("u", 2 * H, event_type="B", page="/b"),  # a new session: not in A's session
        ]
    )
    assert funnel_rows(journeys.funnel(f, ["A", "B"]))[-1] == (2, "B", 0, 1)
    assert funnel_rows(journeys.funnel(f, ["A", "B"], within="device"))[-1] == (2, "B", 1, 0)
    e = journeys.funnel(f, [pl.col("PageUri") == "/a", pl.col("PageUri").str.starts_with("/b")], within="device")
    assert e["entered"].to_list() == [1, 1]


def test_funnel_errors():
    f = frame([ev("u", 0)])
    with pytest.raises(SessionizeError, match="at least one step"):
        journeys.funnel(f, [])
    with pytest.raises(SessionizeError, match="within must be 'session', 'device' or 'user', got 'planet'"):
        journeys.funnel(f, ["A"], within="planet")  # type: ignore[arg-type]
    with pytest.raises(SessionizeError, match="level='nope' needs column 'nope'"):
        journeys.transitions(f, level="nope")
