"""Session rules: the constants, the error, duration parsing, input checks and the frozen
:class:`Rules` object every engine (in memory, bucketed, Spark) runs with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from psanalytics import _time
from psanalytics.errors import SessionizeError

#: Preset name for Profile Store's own ``Visits`` rule (a new visit after > 15 minutes).
PROFILE_STORE_VISITS = "profile_store_visits"
#: Values of ``split_reason`` (an Enum in this order).
SPLIT_REASONS: tuple[str, ...] = (
    "first",
    "inactivity",
    "max_duration",
    "midnight",
    "campaign",
    "identity",
)
SPLIT_REASON_DTYPE = pl.Enum(list(SPLIT_REASONS))
_R_FIRST, _R_INACT, _R_MAXDUR, _R_MIDNIGHT, _R_CAMPAIGN, _R_IDENTITY = range(6)

_CAMPAIGN_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "gclid")


# --------------------------------------------------------------------------- arguments


def parse_duration(value: str | timedelta | float | None, *, name: str = "duration") -> int | None:
    """Turn ``"30m"``, ``"1h30m"``, ``"90s"``, ``"24h"``, ``"1d"``, a ``timedelta`` or a
    number of seconds into integer nanoseconds (None stays None).

    ``"profile_store_visits"`` means 15 minutes.
    """
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() == PROFILE_STORE_VISITS:
        return 15 * 60 * 1_000_000_000
    try:
        ns = _time.parse_duration(value, name=name)
    except _time.TimeError as exc:
        hint = f", or {PROFILE_STORE_VISITS!r}" if isinstance(value, str) else ""
        raise SessionizeError(f"{exc}{hint}") from None
    if ns <= 0:
        raise SessionizeError(f"{name} must be positive, got {value!r}")
    return ns


def _collect(events: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    if isinstance(events, pl.LazyFrame):
        return events.collect()
    if isinstance(events, pl.DataFrame):
        return events
    raise SessionizeError(
        f"events must be a polars DataFrame or LazyFrame, got {type(events).__name__} "
        "(use psanalytics.normalize() first)"
    )


def _check_columns(df: pl.DataFrame, needed: Sequence[str], what: str) -> None:
    missing = [c for c in needed if c not in df.schema]
    if missing:
        raise SessionizeError(
            f"{what} needs column(s) {', '.join(missing)}; the frame has {', '.join(df.columns) or 'no columns'}"
        )


def _time_series(df: pl.DataFrame, time_col: str) -> pl.Series:
    s = df.get_column(time_col)
    if not isinstance(s.dtype, pl.Datetime):
        raise SessionizeError(f"column {time_col!r} must be a Datetime, got {s.dtype}")
    if s.null_count():
        row = int(s.is_null().arg_true()[0])
        raise SessionizeError(
            f"column {time_col!r} has a null at row {row}: every event needs a time"
        )
    if s.dtype.time_unit != "ns":
        s = s.dt.cast_time_unit("ns")
    return s.to_physical()


def _key_series(df: pl.DataFrame, key: str | Sequence[str]) -> tuple[list[str], pl.Series]:
    keys = [key] if isinstance(key, str) else list(key)
    if not keys:
        raise SessionizeError("key must name at least one column")
    _check_columns(df, keys, "sessionize(key=...)")
    if len(keys) == 1:
        return keys, df.get_column(keys[0])
    return keys, df.select(
        pl.concat_str(
            [pl.col(k).cast(pl.String).fill_null("") for k in keys], separator="\x1f"
        ).alias("_key")
    ).to_series()


def _dt_ns(value: datetime) -> int:
    if value.tzinfo is None:
        raise SessionizeError(f"window bounds must be timezone-aware datetimes, got {value!r}")
    return _time.datetime_to_ns(value)


#: Choices of ``sessionize(columns=...)`` besides a list of sessions-table columns.
COLUMN_SETS = ("all", "minimal")
#: The sessions-table columns of ``columns="minimal"``.
MINIMAL_COLUMNS: tuple[str, ...] = (
    "session_key",
    "device_id",
    "session_index",
    "start_time",
    "end_time",
    "duration_s",
    "n_events",
    "entry_page",
    "exit_page",
)


@dataclass(frozen=True)
class Rules:
    """The session rules, parsed and checked once (durations in integer nanoseconds).

    Built by :meth:`Rules.of` from ``sessionize``'s keyword arguments; immutable and
    picklable, so the same object drives the in-memory kernel, the bucketed file path and
    the Spark executors.
    """

    timeout_ns: int = 30 * 60 * 1_000_000_000
    max_ns: int | None = 24 * 3600 * 1_000_000_000
    engaged_ns: int = 10 * 1_000_000_000
    split_at_midnight: str | None = None
    split_on_campaign: bool = False
    split_on_identity_change: bool = False
    key: tuple[str, ...] = ("DeviceId",)
    minimal: bool = False
    select: tuple[str, ...] | None = None  # sessions columns to keep (None: all of the set)
    window_ns: tuple[int | None, int | None] | None = None
    pageview_types: tuple[str, ...] = ("epiPageView",)
    conversion_types: tuple[str, ...] = ("order",)
    time_col: str = "EventTime"

    @classmethod
    def of(
        cls,
        *,
        timeout: str | timedelta | float = "30m",
        max_duration: str | timedelta | float | None = "24h",
        split_at_midnight: str | None = None,
        split_on_campaign: bool = False,
        split_on_identity_change: bool = False,
        key: str | Sequence[str] = "DeviceId",
        columns: str | Sequence[str] = "all",
        minimal: bool = False,
        window: tuple[datetime | None, datetime | None] | None = None,
        pageview_types: Sequence[str] = ("epiPageView",),
        conversion_types: Sequence[str] = ("order",),
        engaged_after: str | timedelta | float = "10s",
        time_col: str = "EventTime",
    ) -> Rules:
        """Parse and check ``sessionize``'s options (raises :class:`SessionizeError`)."""
        timeout_ns = parse_duration(timeout, name="timeout")
        if timeout_ns is None:
            raise SessionizeError("timeout cannot be None: sessions need an inactivity timeout")
        keys = (key,) if isinstance(key, str) else tuple(key)
        if not keys:
            raise SessionizeError("key must name at least one column")
        select: tuple[str, ...] | None = None
        if isinstance(columns, str):
            if columns not in COLUMN_SETS:
                raise SessionizeError(
                    f"columns={columns!r}: use 'all', 'minimal' or a list of sessions-table columns"
                )
            minimal = minimal or columns == "minimal"
        else:
            select = tuple(columns)
            if not select:
                raise SessionizeError("columns must name at least one sessions-table column")
            if minimal:
                raise SessionizeError("pass either minimal=True or a list of columns, not both")
            # the minimal kernel suffices when every asked column is one of its outputs
            minimal = set(select) <= set(MINIMAL_COLUMNS)
        window_ns = None
        if window is not None:
            wlo, whi = window
            window_ns = (
                None if wlo is None else _dt_ns(wlo),
                None if whi is None else _dt_ns(whi),
            )
        return cls(
            timeout_ns=timeout_ns,
            max_ns=parse_duration(max_duration, name="max_duration"),
            engaged_ns=parse_duration(engaged_after, name="engaged_after") or 0,
            split_at_midnight=split_at_midnight,
            split_on_campaign=bool(split_on_campaign),
            split_on_identity_change=bool(split_on_identity_change),
            key=keys,
            minimal=bool(minimal),
            select=select,
            window_ns=window_ns,
            pageview_types=tuple(pageview_types),
            conversion_types=tuple(conversion_types),
            time_col=time_col,
        )
