"""Funnels: orders, exclusions, windows at their boundary, breakdowns, names and times."""

from __future__ import annotations

import polars as pl
import pytest
from sessions_streams import ev, frame

from psanalytics import journeys, samples
from psanalytics.errors import JourneyError

M = 60
NS_1 = 1  # one nanosecond


def entered(df: pl.DataFrame) -> list[int]:
    return df["entered"].to_list()


def orders_stream() -> pl.DataFrame:
    return frame(
        [
            # u1: A, X, B, C: ordered completes; strict breaks at X
            ev("u1", 0, event_type="A"), ev("u1", 10, event_type="X"),
            ev("u1", 20, event_type="B"), ev("u1", 30, event_type="C"),
            # u2: B, A, C: ordered reaches A only; any order has all three
            ev("u2", 0, event_type="B"), ev("u2", 10, event_type="A"), ev("u2", 20, event_type="C"),
            # u3: A, B, C back to back: every order completes
            ev("u3", 0, event_type="A"), ev("u3", 10, event_type="B"), ev("u3", 20, event_type="C"),
            # u4: no A at all: never enters
            ev("u4", 0, event_type="C"), ev("u4", 10, event_type="B"),
        ]
    )  # fmt: skip


def test_ordered_strict_and_any_order():
    f = orders_stream()
    steps = ["A", "B", "C"]
    assert entered(journeys.funnel(f, steps, within="device")) == [3, 2, 2]
    assert entered(journeys.funnel(f, steps, within="device", order="strict")) == [3, 1, 1]
    assert entered(journeys.funnel(f, steps, within="device", order="any")) == [3, 3, 3]
    # any order: times run from u2's first matched event (B at 0) to the moment steps 1..k
    # had all happened: A at 10, A and B at 10, A, B and C at 20
    t = journeys.funnel_times(f, steps, within="device", order="any")
    assert t.filter(pl.col("journey") == "u2").select("step", "time_to_step_s").rows() == [
        (1, 10.0), (2, 10.0), (3, 20.0)
    ]  # fmt: skip


def test_strict_needs_the_very_next_event():
    f = frame([ev("u", 0, event_type="A"), ev("u", 1, event_type="A"), ev("u", 2, event_type="B")])
    # the second A is directly followed by B: that attempt converts
    assert entered(journeys.funnel(f, ["A", "B"], within="device", order="strict")) == [1, 1]
    g = frame([ev("u", 0, event_type="A"), ev("u", 1, event_type="Z"), ev("u", 2, event_type="B")])
    assert entered(journeys.funnel(g, ["A", "B"], within="device", order="strict")) == [1, 0]


def test_exclusion_between_steps():
    f = frame(
        [
            # r1: A, R, B: the exclusion stops the attempt before B
            ev("r1", 0, event_type="A"), ev("r1", 10, event_type="R"), ev("r1", 20, event_type="B"),
            # r2: A, R, A, B: a new attempt after the exclusion converts
            ev("r2", 0, event_type="A"), ev("r2", 10, event_type="R"), ev("r2", 20, event_type="A"),
            ev("r2", 30, event_type="B"),
            # r3: R before A: not between the steps
            ev("r3", 0, event_type="R"), ev("r3", 10, event_type="A"), ev("r3", 20, event_type="B"),
        ]
    )  # fmt: skip
    r = journeys.funnel(f, ["A", "B"], within="device", exclude=["R"])
    assert entered(r) == [3, 2]
    t = journeys.funnel_times(f, ["A", "B"], within="device", exclude=["R"])
    assert t.filter(pl.col("step") == 2)["journey"].to_list() == ["r2", "r3"]
    # an exclusion event at the same position as the step event is not "between"
    g = frame([ev("u", 0, event_type="A"), ev("u", 10, event_type="B")])
    assert entered(journeys.funnel(g, ["A", "B"], within="device", exclude=["B"])) == [1, 1]


def test_exclusion_between_chosen_steps():
    f = frame(
        [
            # e1: A, B, R, C: R is between steps 2 and 3 -> stops before C
            ev("e1", 0, event_type="A"), ev("e1", 10, event_type="B"), ev("e1", 20, event_type="R"),
            ev("e1", 30, event_type="C"),
            # e2: A, R, B, C: R is between steps 1 and 2, not 2 and 3 -> completes
            ev("e2", 0, event_type="A"), ev("e2", 10, event_type="R"), ev("e2", 20, event_type="B"),
            ev("e2", 30, event_type="C"),
        ]
    )  # fmt: skip
    steps = ["A", "B", "C"]
    between_2_3 = [journeys.exclude("R", between=(2, 3))]
    assert entered(journeys.funnel(f, steps, within="device", exclude=between_2_3)) == [2, 2, 1]
    assert entered(journeys.funnel(f, steps, within="device", exclude=[("R", 2, 3)])) == [2, 2, 1]
    # default: between the first and the last step -> both stop before C
    assert entered(journeys.funnel(f, steps, within="device", exclude=["R"])) == [2, 2, 0]
    # an expression as exclusion
    r = journeys.funnel(f, steps, within="device", exclude=[pl.col("EventType") == "R"])
    assert entered(r) == [2, 2, 0]


def test_step_windows_at_the_boundary():
    f = frame(
        [
            # exactly 10 min to B, exactly 5 min to C: converts
            ev("ok", 0, event_type="A"), ev("ok", 10 * M, event_type="B"),
            ev("ok", 15 * M, event_type="C"),
            # 10 min to B, then 5 min + 1 ns to C: stops at B
            ev("late", 0, event_type="A"), ev("late", 10 * M, event_type="B"),
            ev("late", 15 * M, event_type="C", ns=NS_1),
            # 10 min + 1 ns to B: stops at A
            ev("slow", 0, event_type="A"), ev("slow", 10 * M, event_type="B", ns=NS_1),
        ]
    )  # fmt: skip
    r = journeys.funnel(f, ["A", "B", "C"], within="device", step_windows=["10m", "5m"])
    assert entered(r) == [3, 2, 1]
    # None: no limit for that step
    r = journeys.funnel(f, ["A", "B", "C"], within="device", step_windows=[None, "5m"])
    assert entered(r) == [3, 3, 1]


def test_window_at_the_boundary():
    f = frame(
        [
            ev("ok", 0, event_type="A"), ev("ok", 15 * M, event_type="B"),
            ev("late", 0, event_type="A"), ev("late", 15 * M, event_type="B", ns=NS_1),
        ]
    )  # fmt: skip
    r = journeys.funnel(f, ["A", "B"], within="device", window="15m")
    assert entered(r) == [2, 1]
    r = journeys.funnel(f, ["A", "B"], within="device", window="15m", order="any")
    assert entered(r) == [2, 1]


def test_breakdown_is_read_on_the_credited_attempt_and_adds_up():
    f = frame(
        [
            ev("d1", 0, event_type="A", page="/se"), ev("d1", 10, event_type="B", page="/se"),
            # d2: its first A (on /no) never converts; the attempt from the A on /se does
            ev("d2", 0, event_type="A", page="/no"), ev("d2", 2 * 3600, event_type="A", page="/se"),
            ev("d2", 2 * 3600 + 60, event_type="B", page="/no"),
            ev("d3", 0, event_type="A", page="/no"),
        ]
    )  # fmt: skip
    r = journeys.funnel(f, ["A", "B"], within="device", window="1h", breakdown="PageUri")
    assert r.select("PageUri", "step", "entered", "conversion").rows() == [
        ("/se", 1, 2, 1.0),
        ("/se", 2, 2, 1.0),
        ("/no", 1, 1, 1.0),
        ("/no", 2, 0, 0.0),
    ]
    # an expression breakdown is named by its alias
    r = journeys.funnel(
        f, ["A", "B"], within="device", window="1h",
        breakdown=(pl.col("PageUri") == "/se").alias("swedish"),
    )  # fmt: skip
    assert r.columns[0] == "swedish"


def test_breakdown_totals_add_up_to_the_unbroken_funnel_on_the_sample():
    e = samples.default_events()
    steps = ["product", "basket", "checkout", "order"]
    plain = journeys.funnel(e, steps, within="device", window="7d")
    by = journeys.funnel(e, steps, within="device", window="7d", breakdown="CountryCode")
    sums = by.group_by("step").agg(pl.col("entered").sum(), pl.col("dropped").sum()).sort("step")
    assert sums["entered"].to_list() == plain["entered"].to_list()
    assert sums["dropped"].to_list() == plain["dropped"].to_list()
    assert plain["entered"][0] > plain["entered"][3] > 0
    assert by["CountryCode"].n_unique() == 8


def test_step_names():
    f = frame([ev("u", 0, event_type="A", page="/a"), ev("u", 1, event_type="B", page="/b/1")])
    r = journeys.funnel(
        f,
        [
            (pl.col("PageUri") == "/a").alias("landing"),
            journeys.step(pl.col("PageUri").str.starts_with("/b/"), name="product page"),
            journeys.step("B", name="B again"),
        ],
        within="device",
    )
    assert r["name"].to_list() == ["landing", "product page", "B again"]
    plain = journeys.funnel(f, [pl.col("PageUri") == "/a"], within="device")
    assert plain["name"].to_list() == ['(col("PageUri")) == ("/a")']


def test_time_quantiles_and_histogram():
    f = frame(
        [e for i, d in enumerate([10, 20, 30, 40, 60]) for e in
         (ev(f"u{i}", 0, event_type="A"), ev(f"u{i}", d, event_type="B"))]
    )  # fmt: skip
    r = journeys.funnel(f, ["A", "B"], within="device")
    row = r.row(1, named=True)
    q = [row[f"time_to_step_p{p}_s"] for p in (25, 50, 75, 90)]
    assert q == pytest.approx([20.0, 30.0, 40.0, 52.0], abs=1e-9)  # linear interpolation
    assert row["mean_time_to_step_s"] == 32.0
    assert row["median_time_to_step_s"] == pytest.approx(30.0, abs=1e-9)
    times = journeys.funnel_times(f, ["A", "B"], within="device")
    assert times.columns == ["journey", "step", "name", "time_to_step_s", "time_from_previous_s"]
    h = journeys.time_histogram(times)
    got = {b: n for b, n in h.select("bin", "journeys").rows() if n}
    # 60 s is exactly a bin edge: it falls in the bin that starts there
    assert got == {"10-30 s": 2, "30 s-1 min": 2, "1-2 min": 1}
    assert h["bin"].to_list()[0] == "0-1 s" and h["bin"].to_list()[-1] == "7 d+"
    assert h["journeys"].sum() == 5


def test_funnel_argument_errors():
    f = orders_stream()
    with pytest.raises(
        JourneyError, match="order must be 'ordered', 'strict' or 'any', got 'random'"
    ):
        journeys.funnel(f, ["A"], order="random")  # type: ignore[arg-type]
    with pytest.raises(
        JourneyError, match=r"step_windows needs one entry per step after the first \(2\), got 1"
    ):
        journeys.funnel(f, ["A", "B", "C"], step_windows=["1m"])
    with pytest.raises(JourneyError, match="exclusions need an ordered funnel"):
        journeys.funnel(f, ["A", "B"], order="any", exclude=["X"])
    with pytest.raises(
        JourneyError, match=r"between steps 1 <= from < to <= 2, got between=\(2, 2\)"
    ):
        journeys.funnel(f, ["A", "B"], exclude=[journeys.exclude("X", between=(2, 2))])
    with pytest.raises(JourneyError, match="breakdown='Nope' is not a column of the events"):
        journeys.funnel(f, ["A"], breakdown="Nope")
    with pytest.raises(JourneyError, match="window must not be negative"):
        journeys.funnel(f, ["A"], window=-5)


def test_events_without_a_time_are_an_error():
    f = frame([ev("u", 0, event_type="A"), ev("u", 1, event_type="B")]).with_columns(
        pl.when(pl.col("EventType") == "B")
        .then(None)
        .otherwise(pl.col("EventTime"))
        .alias("EventTime")
    )
    with pytest.raises(
        JourneyError, match="funnels need EventTime on every event: 1 of the events"
    ):
        journeys.funnel(f, ["A", "B"], within="device")


def test_at_most_64_steps_and_exclusions():
    f = frame([ev("u", 0, event_type="A")])
    with pytest.raises(JourneyError, match="at most 64 steps and exclusions, got 65"):
        journeys.funnel(f, ["A"] * 60, exclude=[("B", 1, 2)] * 5, within="device")
    assert journeys.funnel(f, ["A"] * 63, exclude=[("B", 1, 2)], within="device")["entered"][0] == 1
