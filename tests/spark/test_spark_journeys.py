"""psanalytics.spark's funnels and transitions are exactly the local ones: the same Polars
functions run per journey bucket on the executors."""

from __future__ import annotations

import polars as pl
import pytest
from spark_session import spark_fixture  # noqa: F401 (the `spark` fixture)

from psanalytics import samples
from psanalytics.journeys import exclude, funnel, transitions

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def traffic():
    """Ties (times cut to the minute), shared devices with several e-mails; shuffled rows
    (the input order is ``_row``)."""
    g = samples.generate(1_500, n_devices=120, days=2, seed=5)
    g = g.with_columns(pl.col("EventTime").dt.truncate("1m"))
    return g.sample(fraction=1.0, shuffle=True, seed=2)


@pytest.fixture(scope="module")
def sdf(spark, traffic):
    g = traffic.with_row_index("_row").with_columns(
        pl.col("_row").cast(pl.Int64),
        pl.col("EventTime").dt.cast_time_unit("ns").to_physical().alias("EventTimeNs"),
        pl.col("EventTime").dt.cast_time_unit("us"),
    )
    return spark.createDataFrame(g.to_arrow(compat_level=pl.CompatLevel.oldest())).cache()


@pytest.mark.parametrize(
    "opts,steps",
    [
        ({"within": "session", "breakdown": "CountryCode"}, ["home", "category", "product"]),
        ({"within": "user", "window": "2h", "exclude": [exclude("epiSearch")]},
         ["category", "product", "checkout"]),
        ({"within": "device", "order": "any"}, ["product", "wishlist"]),
    ],
    ids=["session-breakdown", "user-window-exclusion", "device-any-order"],
)  # fmt: skip
def test_spark_funnel_is_the_local_funnel(sdf, traffic, opts, steps):
    from psanalytics import spark as pss

    local = funnel(traffic, steps, **opts)
    assert local["entered"][0] > 0
    got = pss.funnel(sdf, steps, order_by="_row", buckets=3, **opts)
    assert got.equals(local)


@pytest.mark.parametrize(
    "opts",
    [
        {"level": "event_type", "within": "session"},
        {"level": "page_type", "within": "user", "collapse_repeats": True},
    ],
    ids=["event-session", "pagetype-user-collapsed"],
)
def test_spark_transitions_are_the_local_transitions(sdf, traffic, opts):
    from psanalytics import spark as pss

    local = transitions(traffic, **opts)
    assert local.height > 20
    got = pss.transitions(sdf, order_by="_row", buckets=3, **opts)
    assert got.equals(local)


def test_spark_journeys_need_the_input_order(sdf):
    from psanalytics import spark as pss
    from psanalytics.sessions import SessionizeError

    with pytest.raises(SessionizeError, match=r"spark.transitions needs the input order"):
        pss.transitions(sdf.drop("_row"))
    with pytest.raises(SessionizeError, match=r"order_by: no column 'nope' in the frame"):
        pss.funnel(sdf, ["home"], order_by="nope")
