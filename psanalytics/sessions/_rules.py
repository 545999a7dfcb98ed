"""Session rules: the constants, the error, duration parsing and input checks."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta

import polars as pl

from psanalytics.errors import PsaError

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
_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "min": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
    "d": 86400 * 1_000_000_000,
}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ns|us|ms|min|s|m|h|d)")


class SessionizeError(PsaError, ValueError):
    """Bad arguments or input for :func:`sessionize`, :func:`stitch` or the journeys."""


# --------------------------------------------------------------------------- arguments


def parse_duration(value: str | timedelta | float | None, *, name: str = "duration") -> int | None:
    """Turn ``"30m"``, ``"1h30m"``, ``"90s"``, ``"24h"``, ``"1d"``, a ``timedelta`` or a
    number of seconds into integer nanoseconds (None stays None).

    ``"profile_store_visits"`` means 15 minutes.
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        ns = (value.days * 86400 + value.seconds) * 1_000_000_000 + value.microseconds * 1000
    elif isinstance(value, bool):
        raise SessionizeError(f"{name} must be a duration such as '30m', got {value!r}")
    elif isinstance(value, int | float):
        ns = int(round(float(value) * 1_000_000_000))
    elif isinstance(value, str):
        text = value.strip().lower()
        if text == PROFILE_STORE_VISITS:
            return 15 * 60 * 1_000_000_000
        pos, ns = 0, 0
        compact = text.replace(" ", "")
        for m in _DURATION_RE.finditer(compact):
            if m.start() != pos:
                break
            ns += int(round(float(m.group(1)) * _UNITS_NS[m.group(2)]))
            pos = m.end()
        if pos != len(compact) or not compact:
            raise SessionizeError(
                f"{name}={value!r} is not a duration: use e.g. '30m', '1h30m', '90s', '24h', "
                f"a timedelta, a number of seconds, or {PROFILE_STORE_VISITS!r}"
            )
    else:
        raise SessionizeError(
            f"{name} must be a duration such as '30m', got {type(value).__name__}"
        )
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
    return pl.Series([value]).dt.convert_time_zone("UTC").dt.cast_time_unit("ns").to_physical()[0]
