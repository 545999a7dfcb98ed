"""psanalytics.spark gives exactly ps.sessionize's sessions and events, on every rule's edges."""

from __future__ import annotations

import polars as pl
import pytest
from spark_session import ev, frame, spark_fixture  # noqa: F401 (the `spark` fixture)

from psanalytics import exports, samples, schema, sessionize

pytestmark = pytest.mark.spark
H = 3600


@pytest.fixture(scope="module")
def edgy():
    """Ties (times cut to the minute), a bot past the 24 h cap, shared devices, and devices
    for the midnight, campaign, identity and exact-timeout rules; shuffled rows."""
    g = samples.generate(1_500, n_devices=120, days=2, seed=5)
    g = g.with_columns(pl.col("EventTime").dt.truncate("1m"))
    hand = frame(
        [
            ev("mid", 22 * H + 50 * 60),
            ev("mid", 23 * H + 10 * 60),
            ev("camp", 0, page="https://x/?utm_source=a"),
            ev("camp", 60, page="https://x/?utm_source=b"),
            ev("id", 0, email="Ann@x.se", name="Ann"),
            ev("id", 60, email="bo@x.se"),
            ev("tie", 100, page="https://x/1"),
            ev("tie", 100, page="https://x/2"),
            ev("gap", 0),
            ev("gap", 1800, ns=100),  # 30 min + 100 ns: a new session (needs the nanoseconds)
            ev("gap", 3600 + 100, ns=100),  # exactly 30 min after: same session
            *[ev("bot", i * 1200) for i in range(80)],
        ]
    )
    return pl.concat([g, hand.select(g.columns)]).sample(fraction=1.0, shuffle=True, seed=1)


def to_spark(spark, f: pl.DataFrame):
    """A Spark DataFrame of ``f`` with ``_row`` (the input order) and the exact time."""
    g = f.with_row_index("_row").with_columns(
        pl.col("_row").cast(pl.Int64),
        pl.col("EventTime").dt.cast_time_unit("ns").to_physical().alias("EventTimeNs"),
        pl.col("EventTime").dt.cast_time_unit("us"),
    )
    return spark.createDataFrame(g.to_arrow(compat_level=pl.CompatLevel.oldest()))


def spark_types(df: pl.DataFrame) -> pl.DataFrame:
    from psanalytics.spark import _to_spark_dtypes

    return _to_spark_dtypes(df)


RULES = [
    {},
    {
        "split_at_midnight": "Europe/Stockholm",
        "split_on_campaign": True,
        "split_on_identity_change": True,
        "max_duration": "2h",
        "timeout": "profile_store_visits",
    },
]


@pytest.mark.parametrize("rules", RULES, ids=["defaults", "every-rule"])
def test_spark_sessions_equal_the_local_ones(spark, edgy, rules):
    from psanalytics import spark as pss

    local = sessionize(edgy, **rules).sessions
    got = pl.from_arrow(
        pss.sessionize(to_spark(spark, edgy), order_by="_row", buckets=3, **rules)
        .orderBy("session_key")
        .toArrow()
    )
    assert got.columns == local.columns
    assert got.equals(spark_types(local))
    if not rules:
        assert set(local["split_reason"]) == {"first", "inactivity", "max_duration"}
        assert (local["n_user_emails"] > 1).any()
    else:
        assert set(local["split_reason"]) >= {"midnight", "campaign", "identity"}


def test_spark_events_equal_the_local_ones(spark, edgy):
    from psanalytics import spark as pss

    local = sessionize(edgy).events.with_row_index("_row")
    got = pl.from_arrow(
        pss.sessionize_events(to_spark(spark, edgy), order_by="_row", buckets=3)
        .orderBy("_row")
        .toArrow()
    )
    cols = [
        "_row",
        "DeviceId",
        "session_key",
        "session_id",
        "session_index",
        "event_index_in_session",
    ]
    assert got.select(cols).equals(
        spark_types(local.select(pl.col("_row").cast(pl.Int64), *cols[1:]))
    )


def test_read_events_from_our_exports(spark, edgy, tmp_path):
    from psanalytics import spark as pss

    small = edgy.head(300)
    pq = tmp_path / "pq" / "date=2024-03-04"
    pq.mkdir(parents=True)
    exports.write_events(small.head(200), pq / "part-0.parquet")
    exports.write_events(small.tail(100), pq / "part-1.parquet")
    nd = tmp_path / "events.ndjson"
    nd.write_text("\n".join(schema.api_json_lines(small).to_list()) + "\n")
    local = sessionize(exports.read_events(nd), columns="minimal").sessions
    for src in (tmp_path / "pq", nd):
        sdf = pss.read_events(spark, str(src))
        assert sdf.columns == [*schema.EVENTS_SCHEMA.names(), "EventTimeNs", "_input_order"]
        back = pl.from_arrow(sdf.orderBy("_input_order").drop("_input_order").toArrow())
        assert (
            back["EventTimeNs"].to_list()
            == small["EventTime"].dt.cast_time_unit("ns").to_physical().to_list()
        )
        assert (
            back.select(schema.EVENTS_SCHEMA.names())
            .drop("EventTime", "Payload")
            .equals(small.drop("EventTime", "Payload"))
        )
    # the NDJSON path (times parsed from text to the nanosecond, order from the file)
    got = pl.from_arrow(pss.sessionize(sdf, columns="minimal").orderBy("session_key").toArrow())
    assert got.equals(spark_types(local))


def test_clear_errors(spark, edgy):
    from psanalytics import spark as pss
    from psanalytics.sessions import SessionizeError

    sdf = to_spark(spark, edgy.head(5))
    with pytest.raises(SessionizeError, match="needs the input order to decide ties in time"):
        pss.sessionize(sdf.drop("_row"))
    with pytest.raises(SessionizeError, match="timeout='soon' is not a duration"):
        pss.sessionize(sdf, order_by="_row", timeout="soon")
    with pytest.raises(SessionizeError, match="takes no out="):
        pss.sessionize(sdf, order_by="_row", out="x.parquet")
