"""The one home for time: instants, 100 ns ticks and durations (bottom layer).

Every module that turns text or a ``datetime`` into nanoseconds, or a duration such as
``"1h30m"`` into nanoseconds, calls this module; nothing else parses times.

Instants are ``int`` nanoseconds since the Unix epoch, UTC. The API sends 7 fractional
digits (100 ns, one *tick*); we keep up to 9 and read more as truncated. The range is
what a ``Datetime("ns")`` column holds (int64 nanoseconds): 1677-09-21 .. 2262-04-11; an
instant outside it is a :class:`~psanalytics.errors.TimeError`, never a wrapped-around
value.

Accepted instant text (ISO 8601, the forms users and the API write)::

    2017-09-15T07:16:34.7957819Z    the API's own form (7 digits)
    2017-09-15T07:16:34.795Z        any 1..12 fractional digits (past 9 truncated)
    2017-09-15 07:16:34             space for T; no offset means UTC
    2017-09-15T09:16+02:00          minutes only; offsets +hh:mm, +hhmm, +hh, Z or z
    2017-09-15                      a bare date: midnight UTC
    2017-9-5T7:16                   one-digit month, day and hour (KQL accepts them)

Durations have ONE unit table, :data:`UNITS_NS`. Duration strings (``"90s"``, ``"1h30m"``,
``"500ms"``, ``"2w"``) accept the short names in :data:`DURATION_UNITS`; KQL timespan
literals (``1d``, ``2hours``, ``10tick``) accept the Kusto reference's names in
:data:`KQL_UNITS`. Both are subsets of the same table, so a unit means the same everywhere.

>>> parse_instant("2017-09-15T07:16:34.7957819Z")
1505459794795781900
>>> format_ns(parse_instant("2017-09-15 07:16:34.7957819"))
'2017-09-15T07:16:34.7957819Z'
>>> parse_duration("1h30m") == 90 * 60 * 10**9
True
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from psanalytics.errors import TimeError

__all__ = [
    "TICK_NS",
    "MIN_NS",
    "MAX_NS",
    "UNITS_NS",
    "DURATION_UNITS",
    "KQL_UNITS",
    "TimeError",
    "parse_instant",
    "instant_or_none",
    "to_ns",
    "datetime_to_ns",
    "timedelta_to_ns",
    "from_ns",
    "format_ns",
    "floor_tick",
    "ceil_tick",
    "in_range",
    "parse_duration",
    "parse_timespan",
    "number_unit_ns",
]

#: The API's time resolution: 100 ns (7 fractional digits), one .NET/KQL tick.
TICK_NS = 100
#: The smallest and largest instant a ``Datetime("ns")`` holds (int64 nanoseconds).
MIN_NS = -(2**63)
MAX_NS = 2**63 - 1

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SEC = 1_000_000_000
_DAY = 86_400 * _SEC

#: Every duration unit we read, in nanoseconds. One table: the subsets below choose names.
UNITS_NS: dict[str, int] = {
    "ns": 1,
    "tick": TICK_NS, "ticks": TICK_NS,
    "us": 1_000, "µs": 1_000, "microsecond": 1_000, "microseconds": 1_000,
    "ms": 1_000_000, "milli": 1_000_000, "millis": 1_000_000,
    "millisecond": 1_000_000, "milliseconds": 1_000_000,
    "s": _SEC, "sec": _SEC, "second": _SEC, "seconds": _SEC,
    "m": 60 * _SEC, "min": 60 * _SEC, "minute": 60 * _SEC, "minutes": 60 * _SEC,
    "h": 3_600 * _SEC, "hr": 3_600 * _SEC, "hrs": 3_600 * _SEC,
    "hour": 3_600 * _SEC, "hours": 3_600 * _SEC,
    "d": _DAY, "day": _DAY, "days": _DAY,
    "w": 7 * _DAY,
}  # fmt: skip
#: Units of duration strings such as ``"1h30m"`` (sessions, settle, charts, ``%kql --param``).
DURATION_UNITS = frozenset({"ns", "us", "µs", "ms", "s", "sec", "m", "min", "h", "hr", "d", "w"})
#: Units of KQL timespan literals (``2d``, ``1.5hours``, ``10tick``), as the Kusto reference
#: names them; KQL has no ``ns``, ``us`` or ``w``.
KQL_UNITS = frozenset(UNITS_NS) - {"ns", "us", "µs", "w"}

_ISO_RE = re.compile(
    r"\s*(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:[Tt ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,12}))?)?)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?\s*"
)
_RANGE_TEXT = "1677-09-21T00:12:43.145224192Z .. 2262-04-11T23:47:16.854775807Z"


def in_range(ns: int) -> bool:
    """True when ``ns`` fits a ``Datetime("ns")`` (int64)."""
    return MIN_NS <= ns <= MAX_NS


def _check_range(ns: int, what: object) -> int:
    if not MIN_NS <= ns <= MAX_NS:
        raise TimeError(
            f"{what!r} is outside the range a nanosecond time can hold ({_RANGE_TEXT})"
        )
    return ns


def instant_or_none(text: str, *, check_range: bool = True) -> int | None:
    """ISO 8601 text -> ns since the epoch (UTC when no offset); None when it is not ISO 8601.

    With ``check_range`` (the default) an instant outside 1677..2262 raises
    :class:`TimeError`; without it the caller gets the exact integer and checks itself.

    >>> instant_or_none("2020-01-01T02:00:00+02:00")
    1577836800000000000
    >>> instant_or_none("yesterday") is None
    True
    """
    m = _ISO_RE.fullmatch(text)
    if not m:
        return None
    y, mo, d, hh, mm, ss, frac, tz = m.groups()
    try:
        base = datetime(int(y), int(mo), int(d), int(hh or 0), int(mm or 0), int(ss or 0))
    except ValueError:
        return None
    ns = datetime_to_ns(base, check_range=False)
    if frac:
        ns += int(frac[:9].ljust(9, "0"))
    if tz and tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        ns -= sign * (int(digits[:2]) * 3_600 + int(digits[2:] or 0) * 60) * _SEC
    return _check_range(ns, text) if check_range else ns


def parse_instant(text: str) -> int:
    """ISO 8601 text -> ns since the epoch; :class:`TimeError` names the text when it is not.

    >>> parse_instant("2020-01-01")
    1577836800000000000
    >>> parse_instant("yesterday")
    Traceback (most recent call last):
    ...
    psanalytics.errors.TimeError: not an ISO 8601 time: 'yesterday'
    """
    ns = instant_or_none(text)
    if ns is None:
        raise TimeError(f"not an ISO 8601 time: {text!r}")
    return ns


def datetime_to_ns(value: datetime, *, check_range: bool = True) -> int:
    """A datetime (naive = UTC) -> ns since the epoch; a ``pandas.Timestamp`` keeps its ns.

    >>> datetime_to_ns(datetime(2020, 1, 1, tzinfo=UTC))
    1577836800000000000
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    ns = timedelta_to_ns(value - EPOCH) + int(getattr(value, "nanosecond", 0) or 0)
    return _check_range(ns, value) if check_range else ns


def timedelta_to_ns(value: timedelta) -> int:
    """A timedelta -> int ns (exact: days, seconds and microseconds are integers)."""
    return (value.days * 86_400 + value.seconds) * _SEC + value.microseconds * 1_000


def to_ns(value: datetime | date | str | int) -> int:
    """A datetime (naive = UTC), a date (midnight UTC), ISO text or int ns -> int ns.

    >>> to_ns("2017-09-15T07:16:34.7957819Z") == to_ns(1505459794795781900)
    True
    """
    if isinstance(value, bool):
        raise TypeError("a time must be a datetime, ISO text or int nanoseconds")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return parse_instant(value)
    if isinstance(value, datetime):
        return datetime_to_ns(value)
    if isinstance(value, date):
        return datetime_to_ns(datetime(value.year, value.month, value.day, tzinfo=UTC))
    raise TypeError(f"cannot use {value!r} as a time: pass a datetime, ISO text or int ns")


def from_ns(ns: int) -> datetime:
    """int ns since the epoch -> aware UTC datetime (microsecond precision, floored)."""
    return EPOCH + timedelta(microseconds=ns // 1_000)


def format_ns(ns: int) -> str:
    """``2017-09-15T07:16:34.7957819Z``: the API's 7-digit form (exact for 100 ns ticks).

    >>> format_ns(1_577_836_800_000_000_100)
    '2020-01-01T00:00:00.0000001Z'
    """
    sec, rem = divmod(ns, _SEC)
    dt = EPOCH + timedelta(seconds=sec)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{rem // TICK_NS:07d}Z"


def floor_tick(ns: int) -> int:
    """Round down to a multiple of 100 ns. ``floor_tick(199) == 100``"""
    return ns - (ns % TICK_NS)


def ceil_tick(ns: int) -> int:
    """Round up to a multiple of 100 ns. ``ceil_tick(101) == 200``"""
    return -((-ns) // TICK_NS) * TICK_NS


# --------------------------------------------------------------------------- durations

_PART_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([a-zµ]+)")


def number_unit_ns(num: str, unit_ns: int) -> int:
    """``"1.5"`` of a unit -> ns, exactly (integer arithmetic, fraction floored to 1 ns)."""
    if "." in num:
        whole, frac = num.split(".", 1)
        frac = frac or "0"
        return int(whole or "0") * unit_ns + (int(frac) * unit_ns) // (10 ** len(frac))
    return int(num) * unit_ns


def _duration_text_ns(text: str) -> int | None:
    compact = text.strip().lower().replace(" ", "")
    pos, ns = 0, 0
    for m in _PART_RE.finditer(compact):
        if m.start() != pos or m.group(2) not in DURATION_UNITS:
            return None
        ns += number_unit_ns(m.group(1), UNITS_NS[m.group(2)])
        pos = m.end()
    return ns if compact and pos == len(compact) else None


def parse_duration(value: str | timedelta | float, *, name: str = "duration") -> int:
    """``"30m"``, ``"1h30m"``, ``"90s"``, ``"500ms"``, ``"2w"``, a timedelta or a number of
    seconds -> int ns. Units: :data:`DURATION_UNITS`; parts add up. Zero and negative
    values are returned as they are (callers decide what they allow).

    >>> parse_duration("1h30m") // 10**9
    5400
    >>> parse_duration("2w") == parse_duration("14d")
    True
    >>> parse_duration("30 minutes", name="timeout")
    Traceback (most recent call last):
    ...
    psanalytics.errors.TimeError: timeout='30 minutes' is not a duration: use e.g. '30m', '1h30m', '90s', '24h', a timedelta or a number of seconds
    """
    if isinstance(value, timedelta):
        return timedelta_to_ns(value)
    if isinstance(value, bool):
        raise TimeError(f"{name} must be a duration such as '30m', got {value!r}")
    if isinstance(value, int | float):
        return int(round(float(value) * _SEC))
    if isinstance(value, str):
        ns = _duration_text_ns(value)
        if ns is None:
            raise TimeError(
                f"{name}={value!r} is not a duration: use e.g. '30m', '1h30m', '90s', '24h', "
                "a timedelta or a number of seconds"
            )
        return ns
    raise TimeError(f"{name} must be a duration such as '30m', got {type(value).__name__}")


_CLOCK_SPAN_RE = re.compile(r"(-)?(?:(\d+)\.)?(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?")
_UNIT_SPAN_RE = re.compile(r"(-)?(\d+(?:\.\d+)?)\s*([A-Za-z]*)")


def parse_timespan(text: str) -> int | None:
    """A KQL timespan text -> ns, or None: ``[-][d.]hh:mm[:ss[.fffffff]]``, a bare number of
    days, ``N unit`` or ``Nunit`` with :data:`KQL_UNITS` (as ``time(...)`` and
    ``totimespan()`` read them).

    >>> parse_timespan("1.02:03:04") == parse_duration("1d2h3m4s")
    True
    >>> parse_timespan("2") == parse_duration("2d")
    True
    """
    t = text.strip()
    m = _CLOCK_SPAN_RE.fullmatch(t)
    if m:
        neg, d, hh, mm, ss, frac = m.groups()
        ns = ((int(d or 0) * 24 + int(hh)) * 60 + int(mm)) * 60 * _SEC + int(ss or 0) * _SEC
        if frac:
            ns += int(frac.ljust(9, "0"))
        return -ns if neg else ns
    m = _UNIT_SPAN_RE.fullmatch(t)
    if m:
        neg, num, unit = m.groups()
        if unit and unit not in KQL_UNITS:
            return None
        ns = number_unit_ns(num, UNITS_NS[unit or "d"])
        return -ns if neg else ns
    return None
