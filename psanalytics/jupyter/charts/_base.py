"""What every chart builder shares: Altair (imported fast, drawing offline), the row cap,
the error, and the small frame helpers."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import polars as pl

from psanalytics import _time
from psanalytics.errors import PsaError
from psanalytics.jupyter.urls import url_path, url_paths  # noqa: F401 - charts use them from here


def _import_altair():  # noqa: ANN202
    """Import Altair, skipping jsonschema's optional ``rfc3987_syntax`` import.

    jsonschema (imported by Altair) imports ``rfc3987_syntax`` when it is installed (the
    Jupyter server stack brings it) only to check the ``iri`` string format; that module
    compiles a Lark grammar at import, which more than doubles Altair's import time (2.3 s
    -> 1 s here, 7 s -> 2.8 s on a loaded machine; it is paid by every notebook kernel).
    Altair never checks formats. When jsonschema is already imported nothing changes; else
    jsonschema in this process has no ``iri`` format checker.
    """
    if "jsonschema" in sys.modules or "rfc3987_syntax" in sys.modules:
        import altair

        return altair
    sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # ImportError on import
    try:
        import altair
    finally:
        if sys.modules.get("rfc3987_syntax", 0) is None:
            del sys.modules["rfc3987_syntax"]
    return altair


alt = _import_altair()


def _draw_offline() -> None:
    from psanalytics.jupyter import offline

    offline.enable()  # charts built here draw with no network (see offline.py)


#: Most rows any chart built here ships to the browser.
MAX_ROWS = 5_000

WIDTH = 600
HEIGHT = 260

OTHER = "(other)"
UNKNOWN = "(none)"

# Candidate time bins for events_over_time, smallest first.
_EVERY: tuple[tuple[str, timedelta], ...] = (
    ("1m", timedelta(minutes=1)),
    ("5m", timedelta(minutes=5)),
    ("15m", timedelta(minutes=15)),
    ("30m", timedelta(minutes=30)),
    ("1h", timedelta(hours=1)),
    ("3h", timedelta(hours=3)),
    ("6h", timedelta(hours=6)),
    ("12h", timedelta(hours=12)),
    ("1d", timedelta(days=1)),
    ("7d", timedelta(days=7)),
    ("30d", timedelta(days=30)),
)
_MAX_BINS = 150
# A bin polars reads as it is ("90m", "1h30m"); other durations are re-spelt with these units.
_POLARS_EVERY = re.compile(r"(\d+(ns|us|ms|s|m|h|d|w))+")
_POLARS_UNITS = tuple((u, _time.UNITS_NS[u]) for u in ("w", "d", "h", "m", "s", "ms", "us", "ns"))


class ChartDataError(PsaError, ValueError):
    """The data given to a chart builder cannot make that chart (missing column, empty, ...)."""


# --------------------------------------------------------------------------- helpers


def _lazy(data: Any, fn: str) -> pl.LazyFrame:
    """Accept a Polars/pandas frame, or an object carrying one (``.frame``/``.events``)."""
    if isinstance(data, pl.LazyFrame):
        return data
    if isinstance(data, pl.DataFrame):
        return data.lazy()
    for attr in ("frame", "events"):
        inner = getattr(data, attr, None)
        if isinstance(inner, pl.DataFrame | pl.LazyFrame):
            return inner.lazy()
    try:
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            return pl.from_pandas(data).lazy()
    except ImportError:  # pragma: no cover
        pass
    raise ChartDataError(f"{fn}: expected a Polars or pandas DataFrame, got {type(data).__name__}")


def _require(lf: pl.LazyFrame, columns: Sequence[str], fn: str) -> pl.Schema:
    schema = lf.collect_schema()
    missing = [c for c in columns if c not in schema]
    if missing:
        raise ChartDataError(
            f"{fn}: the frame has no column(s) {', '.join(missing)}; "
            f"it has: {', '.join(schema.names()) or '(none)'}"
        )
    return schema


def _pick(schema: pl.Schema, candidates: Sequence[str]) -> str | None:
    for name in candidates:
        if name in schema:
            return name
    return None


def _ship(frame: pl.DataFrame, fn: str) -> pl.DataFrame:
    """Guard: a chart's data never exceeds :data:`MAX_ROWS` rows."""
    if frame.height > MAX_ROWS:  # pragma: no cover - every builder aggregates below the cap
        raise ChartDataError(
            f"{fn}: {frame.height} rows would be sent to the browser (cap {MAX_ROWS})"
        )
    return frame


def chart_rows(chart: alt.TopLevelMixin) -> int:
    """Number of data rows a chart embeds (what the browser receives), summed over datasets."""
    spec = chart.to_dict()
    total = sum(len(rows) for rows in spec.get("datasets", {}).values())
    values = spec.get("data", {}).get("values")
    if isinstance(values, list):
        total += len(values)
    return total


def _lump(lf: pl.LazyFrame, column: str, top: int, weight: str | None = None) -> pl.LazyFrame:
    """Replace all but the ``top`` most frequent values of ``column`` by ``(other)``."""
    counts = lf.group_by(column).agg(
        pl.len().alias("_n") if weight is None else pl.col(weight).sum().alias("_n")
    )
    keep = counts.sort(["_n", column], descending=[True, False]).head(top).select(column)
    keep_list = keep.collect().get_column(column).to_list()
    return lf.with_columns(
        pl.when(pl.col(column).is_in(keep_list))
        .then(pl.col(column))
        .otherwise(pl.lit(OTHER))
        .alias(column)
    )


def _label_empty(column: str) -> pl.Expr:
    return (
        pl.when(pl.col(column) == "").then(pl.lit(UNKNOWN)).otherwise(pl.col(column)).alias(column)
    )


def _top(fn: str, top: int | None, n: int | None, default: int) -> int:
    """``top=`` is the name every builder uses; ``n=`` still works for one release."""
    if n is not None:
        if top is not None:
            raise ChartDataError(f"{fn}: give top= only (n= is its old name)")
        import warnings

        from psanalytics.journeys import DeprecatedArgumentWarning

        warnings.warn(
            f"{fn}(n=...) is deprecated and will be removed in the next release; use top=...",
            DeprecatedArgumentWarning,
            stacklevel=3,
        )
        return n
    return default if top is None else top


def _parse_every(every: str | timedelta) -> tuple[str, timedelta]:
    if isinstance(every, timedelta):
        us = int(every.total_seconds() * 1_000_000)
        return f"{us}us", every
    for name, delta in _EVERY:
        if name == every:
            return name, delta
    try:
        ns = _time.parse_duration(every)
    except _time.TimeError:
        ns = 0
    if ns <= 0:
        raise ChartDataError(
            f"events_over_time: every={every!r} is not a duration like '15m', '1h' or '1d'"
        )
    if not _POLARS_EVERY.fullmatch(every):  # e.g. "2hr", "1.5h": say it the way polars reads
        every = next(f"{ns // size}{unit}" for unit, size in _POLARS_UNITS if ns % size == 0)
    return every, timedelta(microseconds=ns / 1_000)
