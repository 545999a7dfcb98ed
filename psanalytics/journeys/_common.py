"""What every journey function shares: the vocabulary, the journey key, step levels."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import polars as pl

from psanalytics import _time
from psanalytics.errors import JourneyError, PsaWarning
from psanalytics.sessions import sessionize, stitch

#: What one journey is. ``within=`` everywhere (``path=`` is the deprecated spelling).
Within = Literal["session", "device", "user"]
WITHIN = ("session", "device", "user")

#: Default ``level`` of every journey function and chart builder.
DEFAULT_LEVEL = "event_type"

#: Named levels: the column each reads (``page_path``/``page_type`` are derived from
#: ``PageUri`` with :func:`psanalytics.journeys.clean_url` / :func:`page_type`).
LEVELS = {
    "page": "PageUri",
    "event_type": "EventType",
    "title": "PageTitle",
    "page_path": "PageUri",
    "page_type": "PageUri",
}

_UNSET: Any = object()


class DeprecatedArgumentWarning(PsaWarning, FutureWarning):
    """An old argument name (or default) that still works for one release: ``path=`` (now
    ``within=``), ``n=`` (now ``top=``), ``level`` defaulting to ``"page"``."""


def deprecated(old: str, new: str, fn: str) -> None:
    """Warn that ``old=`` is the deprecated spelling of ``new=``."""
    warnings.warn(
        f"{fn}({old}=...) is deprecated and will be removed in the next release; use {new}=...",
        DeprecatedArgumentWarning,
        stacklevel=4,
    )


def duration(value: object, name: str) -> int:
    """A non-negative duration in ns (the one parser of :mod:`psanalytics._time`)."""
    ns = _time.parse_duration(value, name=name)  # type: ignore[arg-type]
    if ns < 0:
        raise JourneyError(f"{name} must not be negative, got {value!r}")
    return ns


def settle(fn: str, new_name: str, new: Any, old_name: str, old: Any, default: Any) -> Any:
    """Resolve a renamed argument: the new name wins; the old one warns; both is an error."""
    if old is not _UNSET:
        if new is not _UNSET:
            raise JourneyError(f"{fn}: give {new_name}= only ({old_name}= is its old name)")
        deprecated(old_name, new_name, fn)
        return old
    return default if new is _UNSET else new


def frame(events: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    if isinstance(events, pl.LazyFrame):
        return events.collect()
    if isinstance(events, pl.DataFrame):
        return events
    raise JourneyError(
        f"events must be a polars DataFrame or LazyFrame, got {type(events).__name__}"
    )


def level_expr(schema: pl.Schema, level: str) -> pl.Expr:
    """The step value of each event at ``level``, as a String expression."""
    col = LEVELS.get(level, level)
    if col not in schema:
        raise JourneyError(
            f"level={level!r} needs column {col!r}; use 'event_type', 'page', 'page_path', "
            "'page_type', 'title' or a column of the frame"
        )
    e = pl.col(col).cast(pl.String).fill_null("")
    if level == "page_path":
        from psanalytics.journeys._urls import clean_url

        return clean_url(e)
    if level == "page_type":
        from psanalytics.journeys._urls import page_type

        return page_type(e)
    return e


def journey_key(df: pl.DataFrame, within: str) -> tuple[pl.DataFrame, pl.Expr]:
    """The frame (possibly with helper columns) and the expression of each event's journey."""
    if within == "session":
        if "session_key" in df.schema:
            return df, pl.col("session_key").cast(pl.Int64)
        if "DeviceId" not in df.schema:
            raise JourneyError("within='session' needs session_key or the DeviceId column")
        idx = sessionize(df, columns="minimal").events.get_column("session_index")
        df = df.with_columns(idx.alias("_session_index"))
        return df, pl.concat_str(
            [pl.col("DeviceId"), pl.lit("\x1f"), pl.col("_session_index").cast(pl.String)]
        )
    if within == "device":
        if "DeviceId" not in df.schema:
            raise JourneyError("within='device' needs the DeviceId column")
        return df, pl.col("DeviceId")
    if within == "user":
        return user_key(df, "within='user'")
    raise JourneyError(f"within must be 'session', 'device' or 'user', got {within!r}")


def user_key(df: pl.DataFrame, what: str) -> tuple[pl.DataFrame, pl.Expr]:
    """The frame with the stitched ``user_email`` of each event's device
    (:func:`psanalytics.stitch`) and the user expression: the e-mail, or ``"device:<id>"``
    for a device without one."""
    if "DeviceId" not in df.schema or "User" not in df.schema:
        raise JourneyError(f"{what} needs the DeviceId and User columns")
    m = stitch(df).select("device_id", "user_email")
    df = df.join(m, left_on="DeviceId", right_on="device_id", how="left", maintain_order="left")
    return df, pl.coalesce(pl.col("user_email"), pl.lit("device:") + pl.col("DeviceId"))


def ordered(df: pl.DataFrame, within: str, columns: Sequence[str | pl.Expr]) -> pl.DataFrame:
    """Frame with ``_path`` (journey key), ``_t`` and ``columns``, ordered by
    (journey, time, input row)."""
    if "EventTime" not in df.schema:
        raise JourneyError("journeys need the EventTime column")
    df, key = journey_key(df, within)
    out = df.select(
        key.alias("_path"),
        pl.col("EventTime").alias("_t"),
        *[pl.col(c) if isinstance(c, str) else c for c in columns],
    )
    return out.with_row_index("_row").sort(["_path", "_t", "_row"], maintain_order=True)
