"""psanalytics on Spark: the same sessions, computed by the same Polars kernel on executors.

Import this module only when you use it: it is the one module that imports ``pyspark``
(``pip install 'psanalytics[spark]'``; Spark needs Java 17 or 21).

* :func:`read_events` reads our exports (Parquet files or folders, NDJSON) into a Spark
  DataFrame with the canonical columns, plus ``EventTimeNs`` (the exact time in integer
  nanoseconds: Spark timestamps stop at microseconds, Profile Store sends 100 ns ticks) and
  ``_input_order`` (file, block, position: the input order that decides ties in time, as
  the row order does for :func:`psanalytics.sessionize`).
* :func:`sessionize` returns the sessions table, equal to ``ps.sessionize(...).sessions``
  (same columns, same values; Spark has no unsigned integers, enums or nanosecond
  timestamps, so ``UInt*`` columns are wider signed integers, ``split_reason`` is a string
  and ``start_time``/``end_time`` are microsecond timestamps);
  :func:`sessionize_events` the events with their session columns.

How it runs: rows are hashed by device into buckets, and each bucket goes through
``groupBy(bucket).applyInArrow(...)`` to the very kernel :func:`psanalytics.sessionize`
runs (one implementation of the rules), with the whole data's time window and event
types, so per-session values are the same as on one machine. The global ``session_key``
(sessions ranked by start, then input order of the first event) is a distributed sort plus
per-partition offsets. What scales with what: the kernel's memory is per bucket (raise
``buckets=`` when executors run short), the sort and the join with the cluster.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from psanalytics.sessions import Rules, SessionizeError, sessionize_rules

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "ORDER_COL",
    "TIME_NS_COL",
    "funnel",
    "read_events",
    "sessionize",
    "sessionize_events",
    "transitions",
]

#: Column read_events adds: struct(file, block, pos), the input order that decides ties.
ORDER_COL = "_input_order"
#: Column read_events adds: EventTime in integer nanoseconds (exact).
TIME_NS_COL = "EventTimeNs"
_BUCKET = "_psa_bucket"
_LOCAL = "_psa_local_key"
_START_NS = "_psa_start_ns"

_STRINGS = ("TrackId", "DeviceId", "EventType", "Value", "Scope", "PageUri", "PageTitle",
            "RemoteAddress", "CountryCode", "City", "SessionId")  # fmt: skip
_JSON_DDL = (
    ", ".join(f"{c} string" for c in _STRINGS)
    + ", EventTime string, User struct<Email: string, Name: string>, Payload string"
)


def _spark() -> Any:
    try:
        from pyspark.sql import functions as F  # noqa: N812
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SessionizeError(
            "psanalytics.spark needs pyspark: pip install 'psanalytics[spark]'"
        ) from exc
    return F


# --------------------------------------------------------------------------- reading


def _detect(paths: list[str], fmt: str | None) -> str:
    if fmt is not None:
        fmt = "ndjson" if fmt in ("jsonl", "json") else fmt
        if fmt not in ("parquet", "ndjson"):
            raise SessionizeError(f"format={fmt!r}: use 'parquet' or 'ndjson'")
        return fmt
    names: list[str] = []
    for p in paths:
        local = Path(p.removeprefix("file://"))
        if local.is_dir():
            names += [f.name for f in sorted(local.rglob("*")) if f.is_file()]
        else:
            names.append(local.name)
    kinds = {
        "parquet"
        if n.endswith(".parquet")
        else "ndjson"
        if n.endswith((".ndjson", ".jsonl"))
        else None
        for n in names
        if not n.startswith((".", "_"))
    }
    kinds.discard(None)
    if len(kinds) != 1:
        raise SessionizeError(
            f"cannot tell the format of {', '.join(paths)} (found {sorted(k for k in kinds if k) or 'no .parquet/.ndjson files'}): pass format='parquet' or 'ndjson'"
        )
    return kinds.pop()  # type: ignore[return-value]


def read_events(
    spark: SparkSession,
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    format: str | None = None,  # noqa: A002
) -> DataFrame:
    """Read exported events (Parquet files or partitioned folders, or NDJSON) into a Spark
    DataFrame with the canonical columns, ``EventTimeNs`` and ``_input_order``.

    Strings are never null (a missing one is ``""``, as in the canonical frame), ``User`` is
    ``struct<Email, Name>`` and ``Payload`` JSON text. ``EventTime`` is a Spark timestamp
    (microseconds); ``EventTimeNs`` keeps the exact nanoseconds. Parquet exports store
    nanosecond timestamps, which Spark reads only as integers: this sets the session option
    ``spark.sql.legacy.parquet.nanosAsLong=true``.
    """
    # Long because: one column expression per canonical column, for both formats, in
    # the canonical order (the frame's schema is this list).
    F = _spark()  # noqa: N806
    paths = (
        [os.fspath(path)] if isinstance(path, str | os.PathLike) else [os.fspath(p) for p in path]
    )
    fmt = _detect(paths, format)
    reader = spark.read.option("recursiveFileLookup", "true")
    if fmt == "parquet":
        spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
        raw = reader.parquet(*paths)
        et = dict(raw.dtypes).get("EventTime")
        if et is None:
            raise SessionizeError(f"{', '.join(paths)}: no EventTime column")
        if et in ("bigint", "long"):
            tns = F.col("EventTime")
        else:  # a timestamp (microseconds)
            tns = F.unix_micros(F.col("EventTime")) * 1000
    else:
        raw = reader.schema(_JSON_DDL).json(paths)
        text = F.col("EventTime")
        frac = F.regexp_extract(text, r"\.(\d+)", 1)
        extra = F.when(F.length(frac) > 6, F.rpad(F.substring(frac, 7, 3), 3, "0").cast("long"))
        tns = F.unix_micros(text.cast("timestamp")) * 1000 + F.coalesce(extra, F.lit(0))
    have = set(raw.columns)
    cols = []
    for c in _STRINGS:
        cols.append(
            F.coalesce(F.col(c).cast("string"), F.lit("")).alias(c)
            if c in have
            else F.lit("").alias(c)
        )
        if c == "SessionId":
            cols.append(F.timestamp_micros(F.floor(tns / 1000)).alias("EventTime"))

    def json_text(name: str, dtype: Any) -> Any:
        # JSON text as the canonical frame keeps it (Parquet: already text; NDJSON: Spark
        # inferred an object, written back as JSON)
        return (
            F.col(name).cast("string") if dtype.typeName() == "string" else F.to_json(F.col(name))
        )

    types = {f.name: f.dataType for f in raw.schema.fields}
    if "User" in have:
        fields = {f.name: f.dataType for f in getattr(types["User"], "fields", [])}
        info = (
            json_text("User.Info", fields["Info"])
            if "Info" in fields
            else F.lit(None).cast("string")
        )
        user = F.struct(
            F.coalesce(F.col("User.Email"), F.lit("")).alias("Email"),
            F.coalesce(F.col("User.Name"), F.lit("")).alias("Name"),
            info.alias("Info"),
        )
    else:
        user = F.struct(
            F.lit("").alias("Email"),
            F.lit("").alias("Name"),
            F.lit(None).cast("string").alias("Info"),
        )
    cols += [
        user.alias("User"),
        (
            F.col("Payload").cast("string") if "Payload" in have else F.lit(None).cast("string")
        ).alias("Payload"),
        *[
            (json_text(c, types[c]) if c in have else F.lit(None).cast("string")).alias(c)
            for c in ("Headers", "Extras")
        ],
        tns.cast("long").alias(TIME_NS_COL),
        F.struct(
            F.col("_metadata.file_path").alias("file"),
            F.col("_metadata.file_block_start").alias("block"),
            F.monotonically_increasing_id().alias("pos"),
        ).alias(ORDER_COL),
    ]
    return raw.select(*cols)


# --------------------------------------------------------------------------- the kernel on executors


def _to_spark_dtypes(df: pl.DataFrame) -> pl.DataFrame:
    """Polars types Spark lacks -> the nearest Spark-representable ones."""

    def conv(dt: pl.DataType) -> pl.DataType:
        if dt in (pl.UInt32,):
            return pl.Int64
        if dt in (pl.UInt16,):
            return pl.Int32
        if dt in (pl.UInt8,):
            return pl.Int16
        if isinstance(dt, pl.Enum | pl.Categorical):
            return pl.String
        if isinstance(dt, pl.Datetime):
            return pl.Datetime("us", "UTC")
        if isinstance(dt, pl.Struct):
            return pl.Struct({f.name: conv(f.dtype) for f in dt.fields})
        return dt

    return df.cast({c: conv(t) for c, t in df.schema.items() if conv(t) != t})


def _local(df: pl.DataFrame, order_cols: list[str], time_col: str = "EventTime") -> pl.DataFrame:
    """A bucket as the local functions see it: rows in input order (``order_cols``), the
    time column exact to the nanosecond (from ``EventTimeNs`` when present)."""
    keys: list[pl.Expr] = []
    for c in order_cols:
        dt = df.schema[c]
        if isinstance(dt, pl.Struct):
            keys += [pl.col(c).struct.field(f.name) for f in dt.fields]
        else:
            keys.append(pl.col(c))
    if keys and df.height:
        df = df.sort(keys, maintain_order=True)
    if TIME_NS_COL in df.columns:
        return df.with_columns(pl.col(TIME_NS_COL).cast(pl.Datetime("ns", "UTC")).alias(time_col))
    return df.with_columns(pl.col(time_col).dt.cast_time_unit("ns"))


def _kernel(
    table: pa.Table,
    *,
    rules: Rules,
    types: list[str] | None,
    order_cols: list[str],
    what: str,
    target: pa.Schema | None,
) -> pa.Table:
    """One bucket through :func:`sessionize_rules` (runs on an executor)."""
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    bucket = df.get_column(_BUCKET)[0] if df.height else 0
    df = _local(df.drop(_BUCKET), order_cols, rules.time_col)
    res = sessionize_rules(df, rules, event_types=types, carry=order_cols)
    if what == "sessions":
        out = res.sessions.with_columns(
            pl.col("start_time").dt.cast_time_unit("ns").to_physical().alias(_START_NS),
            pl.lit(bucket, pl.Int64).alias(_BUCKET),
        )
        if "session_key" in out.columns:
            out = out.with_columns(pl.col("session_key").alias(_LOCAL))
    else:
        out = res.events.with_columns(pl.lit(bucket, pl.Int64).alias(_BUCKET))
    arrow = _to_spark_dtypes(out).to_arrow(compat_level=pl.CompatLevel.oldest())
    return arrow if target is None else arrow.select(target.names).cast(target)


def _grouped_fn(fn: Any, target: pa.Schema) -> Any:
    """A plain function with type hints (pyspark infers the Arrow eval type from them; it
    cannot read a ``functools.partial``)."""
    import pyarrow as pa

    def run(table: pa.Table) -> pa.Table:
        return fn(table, target=target)

    run.__annotations__ = {"table": pa.Table, "return": pa.Table}
    return run


def _spark_schema(sdf: DataFrame, fn: Any) -> tuple[Any, pa.Schema]:
    """The Spark schema of ``fn``'s output: run it on an empty table of ``sdf``'s schema."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    tz = sdf.sparkSession.conf.get("spark.sql.session.timeZone") or "UTC"
    empty = to_arrow_schema(sdf.schema, timezone=tz).empty_table()
    out = fn(empty, target=None)
    st = from_arrow_schema(out.schema)
    return st, pa.schema(to_arrow_schema(st, timezone=tz))


def _order_cols(cols: list[str], order_by: str | Sequence[str] | None, fn: str) -> list[str]:
    if order_by is None:
        order_cols = [ORDER_COL] if ORDER_COL in cols else []
    else:
        order_cols = [order_by] if isinstance(order_by, str) else list(order_by)
    if not order_cols:
        raise SessionizeError(
            f"psanalytics.spark.{fn} needs the input order to decide ties in time: "
            f"read_events adds {ORDER_COL!r}; or pass order_by= (a column or columns)"
        )
    missing = [c for c in order_cols if c not in cols]
    if missing:
        raise SessionizeError(f"order_by: no column {', '.join(map(repr, missing))} in the frame")
    return order_cols


def _prepare(
    sdf: DataFrame, rules: Rules, order_by: str | Sequence[str] | None, buckets: int | None
) -> tuple[DataFrame, Rules, list[str] | None, list[str]]:
    F = _spark()  # noqa: N806
    cols = sdf.columns
    order_cols = _order_cols(cols, order_by, "sessionize")
    need = [*rules.key, rules.time_col, "PageUri", *order_cols]
    missing = [c for c in need if c not in cols]
    if missing:
        raise SessionizeError(
            f"sessionize needs column(s) {', '.join(missing)}; the frame has {', '.join(cols)}"
        )
    tns = F.col(TIME_NS_COL) if TIME_NS_COL in cols else F.unix_micros(F.col(rules.time_col)) * 1000
    want_types = not rules.minimal and "EventType" in cols
    agg = sdf.agg(
        F.min(tns).alias("lo"),
        F.max(tns).alias("hi"),
        (
            F.collect_set(F.coalesce(F.col("EventType"), F.lit(""))) if want_types else F.lit(None)
        ).alias("types"),
    ).collect()[0]
    wlo, whi = rules.window_ns if rules.window_ns is not None else (None, None)
    brules = replace(
        rules,
        select=None,
        window_ns=(agg["lo"] if wlo is None else wlo, agg["hi"] if whi is None else whi),
    )
    types = sorted(agg["types"]) if want_types else None
    n = buckets or max(2, 2 * sdf.sparkSession.sparkContext.defaultParallelism)
    keyed = sdf.withColumn(_BUCKET, F.pmod(F.xxhash64(*[F.col(k) for k in rules.key]), F.lit(n)))
    return keyed, brules, types, order_cols


def _ranked_sessions(
    keyed: DataFrame, brules: Rules, types: list[str] | None, order_cols: list[str]
) -> tuple[DataFrame, list[str]]:
    """Sessions with the global ``session_key``: ranked by (start, first event's input order)."""
    F = _spark()  # noqa: N806
    fn = functools.partial(
        _kernel, rules=brules, types=types, order_cols=order_cols, what="sessions"
    )
    st, target = _spark_schema(keyed, fn)
    sess = keyed.groupBy(_BUCKET).applyInArrow(_grouped_fn(fn, target), st)
    names = [c for c in st.names if c not in (_START_NS, _BUCKET, _LOCAL, *order_cols)]
    if brules.minimal and "session_key" not in names:  # pragma: no cover - minimal keeps it
        return sess, names
    ranked = sess.orderBy(F.col(_START_NS), *[F.col(c) for c in order_cols]).localCheckpoint(
        eager=True
    )
    counts = dict(ranked.groupBy(F.spark_partition_id().alias("p")).count().collect())
    offsets: dict[int, int] = {}
    total = 0
    for p in sorted(counts):
        offsets[p] = total
        total += counts[p]
    keyed_schema = ranked.schema
    arrow_target = target

    def number(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa
        from pyspark import TaskContext

        ctx = TaskContext.get()
        i = offsets.get(ctx.partitionId() if ctx else 0, 0)
        for b in batches:
            idx = b.schema.get_field_index("session_key")
            col = pa.array(range(i, i + b.num_rows), type=pa.int64())
            i += b.num_rows
            yield b.set_column(idx, "session_key", col).cast(arrow_target)

    return ranked.mapInArrow(number, keyed_schema), names


def _options(kw: dict[str, Any]) -> Rules:
    for bad in ("out", "events_out", "memory", "progress"):
        if bad in kw:
            raise SessionizeError(
                f"psanalytics.spark.sessionize takes no {bad}=: write the DataFrame with Spark"
            )
    return Rules.of(**kw)


def sessionize(
    sdf: DataFrame,
    *,
    order_by: str | Sequence[str] | None = None,
    buckets: int | None = None,
    **options: Any,
) -> DataFrame:
    """The sessions table of ``sdf``: equal to ``psanalytics.sessionize(events, **options)
    .sessions`` (same columns, same values, see the module docstring for the Spark types).

    Args:
        sdf: events with the canonical columns (from :func:`read_events`, or any DataFrame
            with them).
        order_by: the column(s) giving the input order, which decides ties in time (default:
            ``_input_order`` from :func:`read_events`).
        buckets: how many device buckets the kernel runs on (default: twice the default
            parallelism); each bucket's events must fit one executor's Python worker.
        options: every option of :func:`psanalytics.sessionize` (``timeout``,
            ``max_duration``, ``split_at_midnight``, ``columns``, ``key``, ...).

    Returns:
        A Spark DataFrame, one row per session; ``orderBy("session_key")`` gives the local
        row order.
    """
    rules = _options(options)
    keyed, brules, types, order_cols = _prepare(sdf, rules, order_by, buckets)
    ranked, names = _ranked_sessions(keyed, brules, types, order_cols)
    return ranked.select(*(rules.select or names))


def sessionize_events(
    sdf: DataFrame,
    *,
    order_by: str | Sequence[str] | None = None,
    buckets: int | None = None,
    **options: Any,
) -> DataFrame:
    """The events of ``sdf`` with ``session_key``, ``session_id``, ``session_index`` and
    ``event_index_in_session`` (``columns="minimal"``: ``session_index`` only), the values
    ``psanalytics.sessionize(events, **options).events`` has."""
    F = _spark()  # noqa: N806
    rules = _options(options)
    keyed, brules, types, order_cols = _prepare(sdf, rules, order_by, buckets)
    fn = functools.partial(_kernel, rules=brules, types=types, order_cols=order_cols, what="events")
    st, target = _spark_schema(keyed, fn)
    events = keyed.groupBy(_BUCKET).applyInArrow(_grouped_fn(fn, target), st)
    if "session_key" not in st.names:
        return events.drop(_BUCKET)
    ranked, _ = _ranked_sessions(keyed, brules, types, order_cols)
    keys = ranked.select(F.col(_BUCKET), F.col(_LOCAL), F.col("session_key").alias("_psa_global"))
    joined = events.join(
        keys, (events[_BUCKET] == keys[_BUCKET]) & (events["session_key"] == keys[_LOCAL])
    )
    out = [F.col("_psa_global").alias("session_key") if c == "session_key" else events[c]
           for c in st.names if c != _BUCKET]  # fmt: skip
    return joined.select(*out)


# --------------------------------------------------------------------------- journeys


def _part(table: pa.Table, *, order_cols: list[str], fn: Any, target: pa.Schema | None) -> pa.Table:
    """``fn`` (a local journeys function) on one bucket (runs on an executor)."""
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    out = fn(_local(df.drop(_BUCKET), order_cols))
    arrow = _to_spark_dtypes(out).to_arrow(compat_level=pl.CompatLevel.oldest())
    return arrow if target is None else arrow.select(target.names).cast(target)


def _stitch_part(df: pl.DataFrame) -> pl.DataFrame:
    from psanalytics.sessions import stitch

    return stitch(df).select("device_id", "user_email")


def _credited_part(df: pl.DataFrame, *, spec: Any, within: str) -> pl.DataFrame:
    from psanalytics.journeys._attempts import credited

    return credited(df, spec, within)


def _transitions_part(df: pl.DataFrame, **options: Any) -> pl.DataFrame:
    from psanalytics.journeys import transitions as local_transitions

    return local_transitions(df, **options).select("from_step", "to_step", "count")


def _per_bucket(keyed: DataFrame, order_cols: list[str], fn: Any) -> DataFrame:
    """``fn`` on every bucket of ``keyed`` through ``applyInArrow``."""
    part = functools.partial(_part, order_cols=order_cols, fn=fn)
    st, target = _spark_schema(keyed, part)
    return keyed.groupBy(_BUCKET).applyInArrow(_grouped_fn(part, target), st)


def _journey_buckets(
    sdf: DataFrame, within: str, order_by: str | Sequence[str] | None, buckets: int | None, fn: str
) -> tuple[DataFrame, list[str]]:
    """``sdf`` with a bucket column such that no journey spans two buckets: by ``DeviceId``,
    or for ``within="user"`` by the user each device is stitched to (the stitching rule, run
    per device bucket by :func:`psanalytics.stitch`, then joined back)."""
    from psanalytics.journeys._bounded import bucket_key

    F = _spark()  # noqa: N806
    order_cols = _order_cols(sdf.columns, order_by, fn)
    schema = pl.Schema({c: pl.String for c in sdf.columns})  # only the names are looked at
    key = bucket_key(schema, within)
    n = buckets or max(2, 2 * sdf.sparkSession.sparkContext.defaultParallelism)
    if key != "_psa_user":
        return sdf.withColumn(_BUCKET, F.pmod(F.xxhash64(F.col(key)), F.lit(n))), order_cols
    by_dev = sdf.withColumn(_BUCKET, F.pmod(F.xxhash64(F.col("DeviceId")), F.lit(n)))
    users = _per_bucket(by_dev, order_cols, _stitch_part).select(
        F.col("device_id").alias("_psa_dev"), F.col("user_email").alias("_psa_email")
    )
    joined = sdf.join(users, sdf["DeviceId"] == users["_psa_dev"], "left")
    user = F.coalesce(F.col("_psa_email"), F.concat(F.lit("device:"), F.col("DeviceId")))
    keyed = joined.withColumn(_BUCKET, F.pmod(F.xxhash64(user), F.lit(n)))
    return keyed.drop("_psa_dev", "_psa_email"), order_cols


def _local_schema(sdf: DataFrame, order_cols: list[str]) -> pl.Schema:
    """The Polars schema a bucket has on the executors."""
    from pyspark.sql.pandas.types import to_arrow_schema

    tz = sdf.sparkSession.conf.get("spark.sql.session.timeZone") or "UTC"
    empty = pl.from_arrow(to_arrow_schema(sdf.schema, timezone=tz).empty_table())
    assert isinstance(empty, pl.DataFrame)
    return _local(empty, order_cols).schema


def funnel(
    sdf: DataFrame,
    steps: Sequence[Any],
    *,
    within: str = "session",
    order_by: str | Sequence[str] | None = None,
    buckets: int | None = None,
    **options: Any,
) -> pl.DataFrame:
    """:func:`psanalytics.journeys.funnel` of ``sdf``: the same table.

    Each bucket of journeys goes through the local funnel kernel on the executors (the
    credited attempt of every journey that entered the funnel); those rows (about
    ``16 + 8 * len(steps)`` bytes a journey) are collected and aggregated on the driver,
    so the quantiles are exact. ``options``: ``window``, ``step_windows``, ``breakdown``,
    ``exclude``, ``order``, ``level`` as in the local function.
    """
    from psanalytics.journeys import DEFAULT_LEVEL, JourneyError
    from psanalytics.journeys._funnel import _aggregate, _spec

    keyed, order_cols = _journey_buckets(sdf, within, order_by, buckets, "funnel")
    opts: dict[str, Any] = {"level": DEFAULT_LEVEL, "window": None, "step_windows": None,
                            "exclude": None, "order": "ordered", "breakdown": None}  # fmt: skip
    unknown = sorted(set(options) - set(opts))
    if unknown:
        raise JourneyError(f"psanalytics.spark.funnel takes no {', '.join(unknown)}=")
    opts.update(options)
    opts["exclude_"] = opts.pop("exclude")
    spec = _spec(_local_schema(keyed.drop(_BUCKET), order_cols), steps, **opts)
    fn = functools.partial(_credited_part, spec=spec, within=within)
    best = pl.from_arrow(_per_bucket(keyed, order_cols, fn).toArrow())
    assert isinstance(best, pl.DataFrame)
    return _aggregate(best.rechunk(), spec)


def transitions(
    sdf: DataFrame,
    *,
    level: str = "event_type",
    within: str = "session",
    collapse_repeats: bool = False,
    order_by: str | Sequence[str] | None = None,
    buckets: int | None = None,
) -> pl.DataFrame:
    """:func:`psanalytics.journeys.transitions` of ``sdf``: the same table. Each bucket's
    pair counts come from the local function on the executors, are summed by Spark, and
    the (small) result gets its probabilities on the driver."""
    from psanalytics.journeys._paths import with_probability

    F = _spark()  # noqa: N806
    keyed, order_cols = _journey_buckets(sdf, within, order_by, buckets, "transitions")
    fn = functools.partial(
        _transitions_part, level=level, within=within, collapse_repeats=collapse_repeats
    )
    counts = (
        _per_bucket(keyed, order_cols, fn)
        .groupBy("from_step", "to_step")
        .agg(F.sum("count").alias("count"))
    )
    got = pl.from_arrow(counts.toArrow())
    assert isinstance(got, pl.DataFrame)
    return with_probability(got.with_columns(pl.col("count").cast(pl.UInt32)))
