"""Journeys over files and LazyFrames with bounded memory: device buckets give exactly the
in-memory funnels and transitions."""

from __future__ import annotations

import polars as pl
import pytest

from psanalytics import samples, sessionize
from psanalytics.journeys import exclude, funnel, funnel_times, step, transitions
from psanalytics.sessions import device_buckets


@pytest.fixture(scope="module")
def traffic():
    """Generated traffic with times cut to the minute (ties decided by input order), shared
    devices with several e-mails (so within='user' joins devices), bots."""
    g = samples.generate(4_000, n_devices=300, days=3, seed=11)
    return g.with_columns(pl.col("EventTime").dt.truncate("1m"))


def test_the_budget_really_splits_the_input(traffic):
    with device_buckets(traffic.lazy(), memory="1MB", progress=False) as buckets:
        assert sum(1 for _ in buckets) > 3


FUNNELS = [
    ({"within": "session"}, ["home", "category", "product", "checkout", "order"]),
    ({"within": "device", "breakdown": "CountryCode"}, ["home", "product", "order"]),
    ({"within": "user", "window": "1h"}, ["category", "product", "checkout"]),
    ({"within": "session", "order": "strict"}, ["category", "product", "product"]),
    ({"within": "device", "order": "any", "window": "2h"}, ["wishlist", "checkout", "product"]),
    (
        {"within": "device", "step_windows": ["30m", None], "exclude": [exclude("epiSearch")]},
        ["home", "product", "checkout"],
    ),
    (
        {"within": "user", "breakdown": pl.col("EventType").str.len_chars().alias("n")},
        [step(pl.col("PageUri").str.contains("/shop/"), name="a product page"), "order"],
    ),
]


@pytest.mark.parametrize("opts,steps", FUNNELS, ids=lambda x: None)
def test_funnel_in_buckets_is_the_in_memory_funnel(traffic, opts, steps):
    mem = funnel(traffic, steps, **opts)
    assert mem["entered"][0] > 0  # the funnel really has journeys
    got = funnel(traffic.lazy(), steps, memory="1MB", **opts)
    assert got.schema == mem.schema
    assert got.equals(mem)


def test_funnel_times_and_files_in_buckets(traffic, tmp_path):
    src = tmp_path / "events.parquet"
    traffic.write_parquet(src)
    steps = ["home", "product", "checkout"]
    mem = funnel_times(traffic, steps, within="user")
    assert mem.height > 100
    assert funnel_times(str(src), steps, within="user", memory="1MB").equals(mem)
    # files alone select the bucketed path too (one bucket: the default budget holds them)
    assert funnel(src, steps).equals(funnel(traffic, steps))


def test_funnel_on_sessionized_events_uses_their_session_key(traffic):
    ev = sessionize(traffic).events
    steps = ["category", "product", "order"]
    assert funnel(ev.lazy(), steps, memory="1MB").equals(funnel(ev, steps))


@pytest.mark.parametrize(
    "opts",
    [
        {"level": "event_type", "within": "session"},
        {"level": "page_type", "within": "user", "collapse_repeats": True},
        {"level": "page", "within": "device"},
    ],
    ids=["event-session", "pagetype-user-collapsed", "page-device"],
)
def test_transitions_in_buckets_are_the_in_memory_transitions(traffic, opts):
    mem = transitions(traffic, **opts)
    assert mem.height > 20
    got = transitions(traffic.lazy(), memory="1MB", **opts)
    assert got.schema == mem.schema
    assert got.equals(mem)


def test_journeys_on_files_name_a_missing_column(tmp_path):
    src = tmp_path / "e.parquet"
    pl.DataFrame({"EventType": ["a"], "EventTime": [0]}).write_parquet(src)
    from psanalytics.journeys import JourneyError

    with pytest.raises(JourneyError, match="within='device' needs the DeviceId column"):
        transitions(pl.read_parquet(src).lazy(), level="event_type", within="device", memory="1MB")
