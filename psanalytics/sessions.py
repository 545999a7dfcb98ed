"""Sessionize track events and stitch devices to users.

``sessionize(events)`` cuts each device's events into sessions with the rules of
``spec/sessions.md`` §5.1 and returns a :class:`Sessionized` with

* ``.events``: the input rows, in the input's order, plus ``session_key`` (dense global
  integer), ``session_id`` (``"{DeviceId}:{session_index}"``), ``session_index`` (1-based per
  device) and ``event_index_in_session`` (1-based);
* ``.sessions``: one row per session (the §5.2 schema), ordered by start (ties by the
  input order of the first event), so ``session_key`` equals the row number.

Rules (defaults first):

* per ``DeviceId`` (``key=``); events ordered by (``EventTime``, input order), stable;
* a new session when the gap to the device's previous event is **more than** ``timeout``
  (30 min; exactly 30 min stays in the session); ``timeout="profile_store_visits"`` is the
  15-minute rule of Profile Store's ``Visits``;
* ``max_duration`` (24 h): the first event **after** ``session start + 24 h`` opens a new
  session, which is re-anchored at that event (PostHog semantics), applied exactly;
* ``split_at_midnight="Europe/Stockholm"``: a new session when the local date changes;
* ``split_on_campaign=True``: a new session when the campaign parsed from ``PageUri``
  (``utm_source``, ``utm_medium``, ``utm_campaign``, ``utm_term``, ``utm_content``,
  ``gclid``) is non-empty and differs from the last non-empty campaign seen earlier in the
  session (including: the session had none so far);
* ``split_on_identity_change=True``: a new session when a non-empty ``User.Email``
  (trimmed, lower-cased) differs from the last non-empty e-mail seen earlier in the
  session (logging in on an anonymous session is not a change).

The splits are evaluated in the order inactivity, midnight, campaign, identity,
max_duration; ``split_reason`` names the first rule that fired.

How it is fast (spec §5.3): device keys are hashed to integers, only one packed ``uint64``
key (device hash, time-ordered row) is sorted, boundaries are found with shifted compares
on the whole sorted array (never ``over()``), per-session values are read by position at
the session starts and ends, and the string columns are never reordered: only the few
values at session boundaries are gathered.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from psanalytics.errors import PsaError

__all__ = [
    "PROFILE_STORE_VISITS",
    "SPLIT_REASONS",
    "SessionizeError",
    "Sessionized",
    "parse_duration",
    "sessionize",
    "stitch",
]

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
_MASK32 = np.uint64(0xFFFFFFFF)


_TRACE = bool(os.environ.get("PSA_MEMTRACE"))


def _trace(label: str) -> None:  # pragma: no cover - debugging aid
    if _TRACE:
        vals = {}
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(("VmHWM", "VmRSS")):
                    vals[line.split(":")[0]] = int(line.split()[1]) // 1024
        import time

        print(
            f"[mem] {label:20s} peak {vals.get('VmHWM')} now {vals.get('VmRSS')} t {time.perf_counter():.3f}",
            flush=True,
        )


class SessionizeError(PsaError, ValueError):
    """Bad arguments or input for :func:`sessionize`, :func:`stitch` or the journeys."""


@dataclass(frozen=True)
class Sessionized:
    """Result of :func:`sessionize`.

    Attributes:
        events: the input rows in the input order plus ``session_key``, ``session_id``,
            ``session_index`` and ``event_index_in_session``.
        sessions: one row per session (row ``i`` has ``session_key == i``).
        timeout_s, max_duration_s: the rules applied, in seconds (``max_duration_s`` None
            when there is no cap).
    """

    events: pl.DataFrame
    sessions: pl.DataFrame
    timeout_s: float
    max_duration_s: float | None

    def __repr__(self) -> str:
        return (
            f"Sessionized({self.events.height:,} events, {self.sessions.height:,} sessions, "
            f"timeout={self.timeout_s:g}s, max_duration={self.max_duration_s}s)"
        )


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


# --------------------------------------------------------------------------- the core


@dataclass
class _Cut:
    perm: np.ndarray  # int64: sorted position -> input row
    t: np.ndarray  # int64 ns, sorted order
    starts: np.ndarray  # int64 positions of session starts (sorted order)
    ends: np.ndarray  # int64 positions of session ends
    sid: np.ndarray  # int64 per sorted event: session number in sorted order
    reason: np.ndarray  # uint8 per session
    dev_start: np.ndarray  # bool per session: first session of its device
    new_dev: np.ndarray  # bool per sorted event
    rows_time_ordered: bool  # input rows were already in time order


def _to_np(series: pl.Series, dtype: type | None = None) -> np.ndarray:
    """A numpy copy of a numeric Series, built chunk by chunk: no n-sized buffer is left in
    Polars' allocator (which keeps freed memory), only one numpy array (returned to the OS
    when dropped)."""
    if series.n_chunks() == 1:
        a = series.to_numpy()
        return a if dtype is None else a.astype(dtype, copy=False)
    parts = series.get_chunks()
    first = parts[0].to_numpy()
    out = np.empty(series.len(), dtype=dtype or first.dtype)
    pos = 0
    for part in parts:
        a = part.to_numpy()
        out[pos : pos + a.size] = a
        pos += a.size
    return out


def _hash_np(series: pl.Series, seed: int) -> np.ndarray:
    """``series.hash(seed)`` as a numpy ``uint64`` array, hashed chunk by chunk."""
    if series.n_chunks() == 1:
        return series.hash(seed=seed).to_numpy()
    out = np.empty(series.len(), dtype=np.uint64)
    pos = 0
    for part in series.get_chunks():
        out[pos : pos + part.len()] = part.hash(seed=seed).to_numpy()
        pos += part.len()
    return out


def _packed_sort(hi32: np.ndarray) -> np.ndarray:
    """Sort ``(hi32 << 32) | row`` (uint64) in place and return it: rows grouped by ``hi32``,
    in row order inside a group. ``hi32`` (uint64 holding 32-bit values) is consumed."""
    k = hi32
    k <<= np.uint64(32)
    step = 1 << 20
    for i in range(0, k.size, step):  # chunked: no n-sized temporary
        k[i : i + step] |= np.arange(i, min(i + step, k.size), dtype=np.uint64)
    k.sort()
    return k


def _split_packed(k: np.ndarray) -> np.ndarray:
    """From sorted packed keys: return perm (int64 view of the low halves); ``k`` keeps the
    high halves (shifted down in place)."""
    perm = (k & _MASK32).view(np.int64)
    k >>= np.uint64(32)
    return perm


def _device_order(
    keyser: pl.Series, n: int, *, exact: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Sort rows (already time-ordered) by device, stable. Returns (perm, new_dev).

    Only one ``uint64`` array is sorted: (device key, row). A ``String`` key is hashed; the
    high 32 bits of the hash group the rows and the full 64 bits separate the devices (rare
    32-bit collisions are regrouped). ``sessionize`` then checks that every session's key
    string equals its device's first one, and redoes the cut with exact dictionary codes
    (``exact=True``) if a 64-bit collision ever merged two devices.
    """
    new_dev = np.empty(n, dtype=bool)
    if n == 0:
        return np.empty(0, dtype=np.int64), new_dev
    new_dev[0] = True
    if exact and not isinstance(keyser.dtype, pl.Categorical | pl.Enum):
        keyser = keyser.cast(pl.String).cast(pl.Categorical)
    if isinstance(keyser.dtype, pl.Categorical | pl.Enum):
        k = _packed_sort(_to_np(keyser.to_physical(), np.uint64))
        perm = _split_packed(k)
        np.not_equal(k[1:], k[:-1], out=new_dev[1:])
        return perm, new_dev
    if keyser.dtype != pl.String:
        keyser = keyser.cast(pl.String)
    h = _hash_np(keyser, 0x5EED)
    _trace("hash")
    k = _packed_sort(h >> np.uint64(32))
    _trace("packed sort")
    k &= _MASK32  # the high halves are h[perm] >> 32: no need to keep them
    perm = k.view(np.int64)
    del k
    hs = h[perm]
    _trace("hs")
    del h
    np.not_equal(hs[1:], hs[:-1], out=new_dev[1:])
    _trace("new_dev")
    # 32-bit collisions: two devices share the high half; regroup those blocks by the full hash.
    bounds = np.flatnonzero(new_dev[1:]) + 1
    coll = bounds[(hs[bounds] >> np.uint64(32)) == (hs[bounds - 1] >> np.uint64(32))]
    del bounds
    if coll.size:
        # hs is ordered by its high half, so "hs < v << 32" is monotone: binary search works.
        for v in np.unique(hs[coll] >> np.uint64(32)):
            a = int(np.searchsorted(hs, v << np.uint64(32), "left"))
            b = (
                n
                if v == 0xFFFFFFFF
                else int(np.searchsorted(hs, (v + np.uint64(1)) << np.uint64(32), "left"))
            )
            o = np.lexsort((perm[a:b], hs[a:b]))
            perm[a:b] = perm[a:b][o]
            hs[a:b] = hs[a:b][o]
        np.not_equal(hs[1:], hs[:-1], out=new_dev[1:])
    _trace("collisions")
    return perm, new_dev


def _segment_start_pos(is_new: np.ndarray) -> np.ndarray:
    """Per position: the position of the session start it belongs to."""
    idx = np.where(is_new, np.arange(is_new.size, dtype=np.int64), 0)
    return np.maximum.accumulate(idx) if idx.size else idx


def _change_split(codes: np.ndarray, is_new: np.ndarray, *, from_empty: bool) -> np.ndarray:
    """Positions (bool) where a non-null code (>= 0) differs from the last non-null code seen
    earlier in the same session; with ``from_empty`` also when the session had none."""
    n = codes.size
    nonnull = codes >= 0
    ar = np.arange(n, dtype=np.int64)
    last = np.maximum.accumulate(np.where(nonnull, ar, -1))
    prev = np.empty(n, dtype=np.int64)
    prev[0] = -1
    prev[1:] = last[:-1]
    seg = _segment_start_pos(is_new)
    has_prev = prev >= seg
    prev_code = codes[np.maximum(prev, 0)]
    differs = np.where(has_prev, prev_code != codes, from_empty)
    return nonnull & ~is_new & differs


def _codes_of(values: pl.Series) -> np.ndarray:
    """Dense int64 codes of a String series, -1 for null/empty."""
    s = values.replace("", None) if values.dtype == pl.String else values
    codes = s.rank("dense").fill_null(0).cast(pl.Int64).to_numpy() - 1
    return codes


def _campaign_series(page: pl.Series) -> pl.Series:
    parts = [page.str.extract(rf"[?&#]{k}=([^&#]*)", 1).fill_null("") for k in _CAMPAIGN_KEYS]
    df = pl.DataFrame({f"p{i}": p for i, p in enumerate(parts)})
    key = df.select(pl.concat_str(pl.all(), separator="\x1f").alias("c")).to_series()
    empty = "\x1f" * (len(_CAMPAIGN_KEYS) - 1)
    return key.replace(empty, None)


def _email_series(df: pl.DataFrame) -> pl.Series:
    if "User" not in df.schema:
        raise SessionizeError(
            "split_on_identity_change needs the User column (Struct{Email, Name})"
        )
    return df.select(
        pl.col("User").struct.field("Email").fill_null("").str.strip_chars().str.to_lowercase()
    ).to_series()


def _cut(
    df: pl.DataFrame,
    *,
    keyser: pl.Series,
    time_col: str,
    timeout_ns: int,
    max_ns: int | None,
    midnight_tz: str | None,
    campaign: bool,
    identity: bool,
    exact: bool = False,
) -> _Cut:
    n = df.height
    if n >= 2**32:
        raise SessionizeError(f"sessionize handles up to 4,294,967,295 events per call, got {n:,}")
    tser = _time_series(df, time_col)
    pre: np.ndarray | None = None
    if n and not tser.is_sorted():
        # Not time-ordered: order by (time, row) first; then the device sort below is stable.
        t_in = _to_np(tser)
        pre = np.argsort(t_in, kind="stable")
        keyser = keyser.gather(pre)
        t = t_in[pre]
        del t_in
    _trace("before device order")
    perm, new_dev = _device_order(keyser, n, exact=exact)
    _trace("device order")
    t = t[perm] if pre is not None else _to_np(tser)[perm]
    if pre is not None:
        perm = pre[perm]

    # inactivity: gap > timeout (chunked, so no n-sized int64 temporary)
    is_new = new_dev.copy()
    step = 1 << 20
    for i in range(1, n, step):
        j = min(i + step, n)
        is_new[i:j] |= (t[i:j] - t[i - 1 : j - 1]) > timeout_ns
    reason_ev = (~new_dev).view(np.uint8)  # _R_FIRST = 0, _R_INACT = 1
    _trace("inactivity")
    if midnight_tz is not None:
        try:
            day = (
                pl.Series(t, dtype=pl.Int64)
                .cast(pl.Datetime("ns", "UTC"))
                .dt.convert_time_zone(midnight_tz)
                .dt.date()
                .to_physical()
                .to_numpy()
            )
        except Exception as exc:  # polars raises ComputeError for unknown zones
            raise SessionizeError(
                f"split_at_midnight={midnight_tz!r} is not a known time zone: {exc}"
            ) from exc
        mid = np.zeros(n, dtype=bool)
        if n:
            mid[1:] = day[1:] != day[:-1]
        mid &= ~is_new
        reason_ev[mid] = _R_MIDNIGHT
        is_new |= mid
    if campaign:
        _check_columns(df, ["PageUri"], "split_on_campaign")
        codes = _codes_of(_campaign_series(df.get_column("PageUri")))[perm]
        camp = _change_split(codes, is_new, from_empty=True)
        reason_ev[camp] = _R_CAMPAIGN
        is_new |= camp
    if identity:
        codes = _codes_of(_email_series(df))[perm]
        ident = _change_split(codes, is_new, from_empty=False)
        reason_ev[ident] = _R_IDENTITY
        is_new |= ident

    starts = np.flatnonzero(is_new)
    if max_ns is not None and starts.size:
        ends = np.empty_like(starts)
        ends[:-1] = starts[1:] - 1
        ends[-1] = n - 1
        long = np.flatnonzero(t[ends] - t[starts] > max_ns)
        if long.size:
            for k in long:
                s, e = int(starts[k]), int(ends[k])
                seg = t[s : e + 1]
                anchor = s
                while True:
                    j = s + int(np.searchsorted(seg, t[anchor] + max_ns, side="right"))
                    if j > e:
                        break
                    is_new[j] = True
                    reason_ev[j] = _R_MAXDUR
                    anchor = j
            starts = np.flatnonzero(is_new)
    ends = np.empty_like(starts)
    if starts.size:
        ends[:-1] = starts[1:] - 1
        ends[-1] = n - 1
    sid = np.cumsum(is_new, dtype=np.uint32)
    sid -= np.uint32(1)
    return _Cut(
        perm=perm,
        t=t,
        starts=starts,
        ends=ends,
        sid=sid,
        reason=reason_ev[starts],
        dev_start=new_dev[starts],
        new_dev=new_dev,
        rows_time_ordered=pre is None,
    )


# --------------------------------------------------------------------------- public API


def sessionize(
    events: pl.DataFrame | pl.LazyFrame,
    *,
    timeout: str | timedelta | float = "30m",
    max_duration: str | timedelta | float | None = "24h",
    split_at_midnight: str | None = None,
    split_on_campaign: bool = False,
    split_on_identity_change: bool = False,
    key: str | Sequence[str] = "DeviceId",
    minimal: bool = False,
    window: tuple[datetime | None, datetime | None] | None = None,
    pageview_types: Sequence[str] = ("epiPageView",),
    conversion_types: Sequence[str] = ("order",),
    engaged_after: str | timedelta | float = "10s",
    time_col: str = "EventTime",
) -> Sessionized:
    """Cut events into sessions per device and describe each session.

    Args:
        events: canonical events (DataFrame or LazyFrame; a LazyFrame is collected). Needs
            the ``key`` column(s), ``EventTime`` and ``PageUri``; the full table also reads
            ``PageTitle``, ``EventType``, ``User``, ``SessionId``, ``CountryCode``, ``City``,
            ``Scope`` and ``Payload`` when present.
        timeout: inactivity that ends a session (strictly more than this): ``"30m"``,
            ``"15m"``, a ``timedelta``, seconds, or ``"profile_store_visits"`` (15 min).
        max_duration: cap on a session's length (``None`` for no cap). The first event after
            ``start + max_duration`` starts a new session.
        split_at_midnight: an IANA time zone name; a new session when the local date changes.
        split_on_campaign: a new session when the ``utm_*``/``gclid`` campaign of ``PageUri``
            changes to a new non-empty value.
        split_on_identity_change: a new session when a different non-empty ``User.Email``
            appears on the device within a session.
        key: the column (or columns, e.g. ``["DeviceId", "Scope"]``) sessions are cut by.
        minimal: only the benchmark's outputs: ``.events`` gets ``session_index`` only; ``.sessions`` has ``session_key``, ``device_id``,
            ``session_index``, ``start_time``, ``end_time``, ``duration_s``, ``n_events``,
            ``entry_page`` and ``exit_page``.
        window: ``(start, end)`` of the data window for ``truncated_start``/``truncated_end``
            (default: the first and last ``EventTime`` in the data; either may be None).
        pageview_types: ``EventType`` values that count as page views.
        conversion_types: ``EventType`` values that make a session engaged.
        engaged_after: a session this long (or longer) is engaged (GA4: 10 s).
        time_col: the event time column.

    Returns:
        :class:`Sessionized` with ``.events`` (input order) and ``.sessions`` (by start).

    Raises:
        SessionizeError: a missing column, a null time, a bad duration or time zone.
    """
    timeout_ns = parse_duration(timeout, name="timeout")
    if timeout_ns is None:
        raise SessionizeError("timeout cannot be None: sessions need an inactivity timeout")
    max_ns = parse_duration(max_duration, name="max_duration")
    engaged_ns = parse_duration(engaged_after, name="engaged_after")
    df = _collect(events)
    _check_columns(df, [time_col, "PageUri"], "sessionize")
    args = dict(
        timeout_ns=timeout_ns,
        max_ns=max_ns,
        engaged_ns=engaged_ns,
        split_at_midnight=split_at_midnight,
        split_on_campaign=split_on_campaign,
        split_on_identity_change=split_on_identity_change,
        key=key,
        minimal=minimal,
        window=window,
        pageview_types=pageview_types,
        conversion_types=conversion_types,
        time_col=time_col,
    )
    try:
        return _sessionize(df, exact=False, **args)  # type: ignore[arg-type]
    except _HashClash:  # pragma: no cover - two DeviceIds share a 64-bit hash
        return _sessionize(df, exact=True, **args)  # type: ignore[arg-type]


class _HashClash(Exception):
    """Two different keys were grouped together by the hash: redo with exact codes."""


def _sessionize(
    df: pl.DataFrame,
    *,
    exact: bool,
    timeout_ns: int,
    max_ns: int | None,
    engaged_ns: int | None,
    split_at_midnight: str | None,
    split_on_campaign: bool,
    split_on_identity_change: bool,
    key: str | Sequence[str],
    minimal: bool,
    window: tuple[datetime | None, datetime | None] | None,
    pageview_types: Sequence[str],
    conversion_types: Sequence[str],
    time_col: str,
) -> Sessionized:
    keys, keyser = _key_series(df, key)
    cut = _cut(
        df,
        keyser=keyser,
        time_col=time_col,
        timeout_ns=timeout_ns,
        max_ns=max_ns,
        midnight_tz=split_at_midnight,
        campaign=split_on_campaign,
        identity=split_on_identity_change,
        exact=exact,
    )
    n = df.height
    ns = cut.starts.size
    perm, starts, ends, t = cut.perm, cut.starts, cut.ends, cut.t

    _trace("cut")
    # Sessions in the order of their first event (time, input order): rank = session_key.
    order = _session_order(cut)
    identity_order = bool(ns == 0 or np.array_equal(order, np.arange(ns)))
    if not identity_order:
        starts = starts[order]
        ends = ends[order]
        rank = np.empty(ns, dtype=np.uint32)
        rank[order] = np.arange(ns, dtype=np.uint32)
        sid_key = rank[cut.sid]
        reason = cut.reason[order]
    else:
        sid_key = cut.sid
        reason = cut.reason
    # session_index per device: sessions of one device are contiguous in sorted order.
    sorted_sess = np.arange(ns, dtype=np.int64)
    dev_first = (
        np.maximum.accumulate(np.where(cut.dev_start, sorted_sess, 0)) if ns else sorted_sess
    )
    sess_index_sorted = (sorted_sess - dev_first + 1).astype(np.uint32)
    sess_index = sess_index_sorted[order] if not identity_order else sess_index_sorted

    # Per-event columns back in input order (scatter by perm).
    ev_key = np.empty(0, dtype=np.uint32)
    if not minimal:
        ev_key = np.empty(n, dtype=np.uint32)
        ev_key[perm] = sid_key
    ev_index = np.empty(n, dtype=np.uint32)
    ev_index[perm] = sess_index_sorted[cut.sid]

    _trace("per-event arrays")
    first_rows = perm[starts].astype(np.uint32)
    last_rows = perm[ends].astype(np.uint32)
    start_t = t[starts]
    end_t = t[ends]
    n_events = (ends - starts + 1).astype(np.uint32)
    del starts, ends
    # per output session: the output row of the device's first session (and, for the full
    # table, the device ordinal)
    dev_first_out = dev_first if identity_order else rank[dev_first[order]]
    dev_ord: np.ndarray | None = None
    if not minimal:
        dev_ord_sorted = np.cumsum(cut.dev_start, dtype=np.int64) - 1
        dev_ord = dev_ord_sorted if identity_order else dev_ord_sorted[order]
        del dev_ord_sorted
    del dev_first
    if minimal:  # free the n-sized work arrays before the string gathers
        del cut, perm, t, sid_key, order
        rank = None
    _trace("freed")
    first_rows_s = pl.Series(first_rows)
    last_rows_s = pl.Series(last_rows)
    start_keys = keyser.gather(first_rows_s)
    _trace("start keys")
    if not exact and keyser.dtype == pl.String and ns:
        # A 64-bit hash collision would put two devices in one run: their session starts
        # would then carry different key strings.
        sh = start_keys.hash(seed=0xC0FFEE).to_numpy()
        if not np.array_equal(sh, sh[dev_first_out]):
            raise _HashClash
    device_id = start_keys if len(keys) == 1 else None
    tdt = pl.Datetime("ns", "UTC")
    cols: dict[str, pl.Series] = {
        "session_key": pl.Series("session_key", np.arange(ns, dtype=np.uint32))
    }
    if device_id is not None:
        cols["device_id"] = device_id.cast(pl.String).alias("device_id")
    else:
        for k in keys:
            cols[k] = df.get_column(k).gather(first_rows_s)
    cols["session_index"] = pl.Series("session_index", sess_index, dtype=pl.UInt32)
    start_s = pl.Series("start_time", start_t, dtype=pl.Int64).cast(tdt)
    end_s = pl.Series("end_time", end_t, dtype=pl.Int64).cast(tdt)
    duration = pl.Series("duration_s", (end_t - start_t) / 1e9, dtype=pl.Float64)
    page = df.get_column("PageUri")

    if minimal:
        cols.update(
            start_time=start_s,
            end_time=end_s,
            duration_s=duration,
            n_events=pl.Series("n_events", n_events),
            entry_page=page.gather(first_rows_s).alias("entry_page"),
            exit_page=page.gather(last_rows_s).alias("exit_page"),
        )
        sessions = pl.DataFrame(list(cols.values()))
        _trace("sessions table")
        ev = df.with_columns(pl.Series("session_index", ev_index))
        return Sessionized(ev, sessions, timeout_ns / 1e9, None if max_ns is None else max_ns / 1e9)

    # ------------------------------------------------------------------ full schema
    has = df.schema.__contains__
    ctx = _Ctx(df=df, cut=cut, order=None if identity_order else order, n=n, ns=ns, key=sid_key)
    key_text = cols["device_id"] if device_id is not None else _joined_key(df, keys, first_rows_s)
    sess_id = (
        pl.DataFrame([key_text.alias("k"), cols["session_index"]])
        .select(
            pl.concat_str(
                [pl.col("k"), pl.lit(":"), pl.col("session_index").cast(pl.String)]
            ).alias("session_id")
        )
        .to_series()
    )
    # The per-session aggregates are independent: one worker thread computes them (numpy and
    # Polars release the GIL) while this thread gathers the boundary values. (Two workers
    # measured no faster on the 2-core box.)
    pool = ThreadPoolExecutor(max_workers=1)
    f_types = pool.submit(_type_counts, ctx, pageview_types, conversion_types)
    f_pages = pool.submit(_unique_pages, ctx, page)
    f_src = pool.submit(_source_session_ids, ctx)
    f_user = (
        pool.submit(_stitched, df, time_col, ev_key, dev_ord)
        if has("User") and dev_ord is not None
        else None
    )
    f_evidx = pool.submit(_event_index, cut, n, perm)
    gap_prev = _gap_before(ctx)
    lo = int(start_t.min()) if ns else 0
    hi = int(end_t.max()) if ns else 0
    if window is not None:
        wlo, whi = window
        if wlo is not None:
            lo = _dt_ns(wlo)
        if whi is not None:
            hi = _dt_ns(whi)

    # One multi-column gather per boundary (Polars runs the columns in parallel).
    first_cols = [
        c for c in ("PageUri", "PageTitle", "CountryCode", "City", "Scope", "Payload") if has(c)
    ]
    last_cols = [c for c in ("PageUri", "PageTitle") if has(c)]
    at_first = df.select(first_cols)[first_rows_s]
    at_last = df.select(last_cols)[last_rows_s]

    def at(frame: pl.DataFrame, col: str, name: str) -> pl.Series:
        if col in frame.columns:
            return frame.get_column(col).alias(name)
        return pl.repeat("", ns, dtype=pl.String, eager=True).alias(name)

    entry_page = at_first.get_column("PageUri").alias("entry_page")
    utm = _entry_utm(entry_page, at_first.get_column("Payload") if has("Payload") else None)
    dur_ns = end_t - start_t
    ev_key_s = pl.Series("session_key", ev_key)
    ev_sid = sess_id.gather(ev_key_s).alias("session_id")
    try:
        n_pv, n_conv, event_counts = f_types.result()
        uniq_pages = f_pages.result()
        source_ids = f_src.result()
        user_cols = f_user.result() if f_user is not None else None
        ev_in_session = f_evidx.result()
    finally:
        pool.shutdown()
    head: list[pl.Series] = [sess_id, cols["session_key"]]
    head += [cols["device_id"]] if device_id is not None else [cols[k] for k in keys]
    head.append(cols["session_index"])
    sessions = pl.DataFrame(head)
    if user_cols is not None:
        sessions = sessions.with_columns(user_cols)
    else:
        sessions = sessions.with_columns(
            pl.lit(None, pl.String).alias("user_email"),
            pl.lit(None, pl.String).alias("user_name"),
            pl.lit(0, pl.UInt8).alias("n_user_emails"),
        )
    npv = n_pv.astype(np.uint32)
    rest = [
        start_s,
        end_s,
        duration,
        pl.Series("n_events", n_events),
        pl.Series("n_pageviews", npv),
        pl.Series("n_unique_pages", uniq_pages.astype(np.uint32)),
    ]
    if event_counts is not None:
        rest.append(event_counts)
    rest += [
        entry_page,
        at(at_first, "PageTitle", "entry_title"),
        at(at_last, "PageUri", "exit_page"),
        at(at_last, "PageTitle", "exit_title"),
        *utm,
        at(at_first, "CountryCode", "country_code"),
        at(at_first, "City", "city"),
        pl.Series("is_bounce", (npv == 1) & (n_events == 1)),
        pl.Series("is_engaged", (dur_ns >= (engaged_ns or 0)) | (npv >= 2) | (n_conv > 0)),
        pl.Series("gap_before_s", gap_prev, dtype=pl.Float64, nan_to_null=True),
        pl.Series("split_reason", list(SPLIT_REASONS), dtype=SPLIT_REASON_DTYPE).gather(reason),
        pl.Series("truncated_start", start_t - lo <= timeout_ns),
        pl.Series("truncated_end", hi - end_t <= timeout_ns),
        source_ids,
    ]
    if has("Scope"):
        rest.append(at(at_first, "Scope", "scope"))
    sessions = sessions.with_columns(rest)
    ev = df.with_columns(
        ev_key_s,
        ev_sid,
        pl.Series("session_index", ev_index),
        pl.Series("event_index_in_session", ev_in_session),
    )
    return Sessionized(ev, sessions, timeout_ns / 1e9, None if max_ns is None else max_ns / 1e9)


def _stitched(
    df: pl.DataFrame, time_col: str, ev_key: np.ndarray, dev_ord: np.ndarray
) -> list[pl.Series]:
    """``user_email``, ``user_name``, ``n_user_emails`` per session (output order), with the
    rules of :func:`stitch`, computed on the few rows that carry an e-mail, keyed by the
    device ordinal of each row's session (no string join)."""
    ns = dev_ord.size
    user = df.get_column("User")
    email = user.struct.field("Email")
    rows = (email.str.len_bytes() > 0).fill_null(False).arg_true()
    n_dev = int(dev_ord.max()) + 1 if ns else 0
    if rows.len() == 0 or ns == 0:
        return [
            pl.repeat(None, ns, dtype=pl.String, eager=True).alias("user_email"),
            pl.repeat(None, ns, dtype=pl.String, eager=True).alias("user_name"),
            pl.Series("n_user_emails", np.zeros(ns, np.uint8)),
        ]
    r = rows.to_numpy()
    sub = (
        pl.DataFrame(
            {
                "dev": dev_ord[ev_key[r]],
                "row": r,
                "t": df.get_column(time_col).gather(rows),
                "email": email.gather(rows).str.strip_chars().str.to_lowercase(),
                "name": user.struct.field("Name").gather(rows),
            }
        )
        .filter(pl.col("email") != "")
        .sort(["t", "row"])
        .group_by("dev")
        .agg(
            pl.col("email").last(),
            pl.col("name").last().fill_null("").str.strip_chars().replace("", None),
            pl.col("email").n_unique().alias("n"),
        )
    )
    dev_idx = sub.get_column("dev").cast(pl.UInt32)
    per_dev_email = pl.repeat(None, n_dev, dtype=pl.String, eager=True).scatter(
        dev_idx, sub.get_column("email")
    )
    per_dev_name = pl.repeat(None, n_dev, dtype=pl.String, eager=True).scatter(
        dev_idx, sub.get_column("name")
    )
    per_dev_n = np.zeros(n_dev, dtype=np.uint8)
    per_dev_n[dev_idx.to_numpy()] = np.minimum(sub.get_column("n").to_numpy(), 255)
    take = pl.Series(dev_ord.astype(np.uint32))
    return [
        per_dev_email.gather(take).alias("user_email"),
        per_dev_name.gather(take).alias("user_name"),
        pl.Series("n_user_emails", per_dev_n[dev_ord]),
    ]


@dataclass
class _Ctx:
    df: pl.DataFrame
    cut: _Cut
    order: np.ndarray | None  # sorted-session order -> output order (None: identity)
    n: int
    ns: int
    key: np.ndarray  # per sorted event: its session's output row (session_key)

    def out(self, per_sorted_session: np.ndarray) -> np.ndarray:
        return per_sorted_session if self.order is None else per_sorted_session[self.order]


def _type_counts(
    ctx: _Ctx, pageview_types: Sequence[str], conversion_types: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, pl.Series | None]:
    """Per session: page views, conversions and the ``event_counts`` struct (fields sorted by name)."""
    ns = ctx.ns
    if "EventType" not in ctx.df.schema:
        return np.zeros(ns, np.int64), np.zeros(ns, np.int64), None
    et = ctx.df.get_column("EventType").fill_null("")
    names = sorted(et.unique().to_list())
    k = len(names)
    if k == 0:
        return np.zeros(ns, np.int64), np.zeros(ns, np.int64), None
    # codes via the hash: the names' own hashes are the lookup table
    name_h = pl.Series(names, dtype=pl.String).hash(seed=13).to_numpy()
    small = np.uint8 if k < 256 else np.int64
    if np.unique(name_h).size == k:
        # codes in input order (sequential), then one gather of small codes by perm
        by_hash = np.argsort(name_h)
        codes = by_hash.astype(small)[np.searchsorted(name_h[by_hash], _hash_np(et, 13))]
    else:  # pragma: no cover - two type names share a 64-bit hash
        codes = _to_np(et.cast(pl.Enum(names)).to_physical(), small)
    idx = ctx.key.astype(np.int64)
    idx *= k
    idx += codes[ctx.cut.perm]
    del codes
    counts = np.bincount(idx, minlength=ns * k).reshape(ns, k)
    del idx
    pv = [i for i, nm in enumerate(names) if nm in set(pageview_types)]
    conv = [i for i, nm in enumerate(names) if nm in set(conversion_types)]
    n_pv = counts[:, pv].sum(axis=1) if pv else np.zeros(ns, np.int64)
    n_conv = counts[:, conv].sum(axis=1) if conv else np.zeros(ns, np.int64)
    ct = np.ascontiguousarray(counts.T, dtype=np.uint32)
    struct = pl.DataFrame([pl.Series(nm, ct[i]) for i, nm in enumerate(names)]).to_struct(
        "event_counts"
    )
    return n_pv, n_conv, struct


def _unique_pages(ctx: _Ctx, page: pl.Series) -> np.ndarray:
    """Distinct ``PageUri`` per session: sort packed (session, page code) keys once."""
    n, ns = ctx.n, ctx.ns
    if n == 0:
        return np.zeros(0, np.int64)
    # Page codes: the high 32 bits of a 64-bit hash when they are injective over the
    # distinct pages of the data (checked), else exact dictionary codes.
    ph = page.hash(seed=11)
    u = ph.unique()
    if pl.Series(u.to_numpy() >> np.uint64(32)).n_unique() == u.len():
        pcode = ph.to_numpy()[ctx.cut.perm]
        pcode >>= np.uint64(32)
    else:
        pcode = page.cast(pl.Categorical).to_physical().to_numpy().astype(np.uint64)[ctx.cut.perm]
    del ph, u
    pk = ctx.key.astype(np.uint64)
    pk <<= np.uint64(32)
    pk |= pcode
    del pcode
    pk.sort()
    distinct = np.empty(n, dtype=bool)
    distinct[0] = True
    np.not_equal(pk[1:], pk[:-1], out=distinct[1:])
    return np.bincount((pk[distinct] >> np.uint64(32)).astype(np.int64), minlength=ns)


def _source_session_ids(ctx: _Ctx) -> pl.Series:
    """Distinct Profile Store ``SessionId`` values per session (UInt16, saturating)."""
    n, ns, cut = ctx.n, ctx.ns, ctx.cut
    if "SessionId" not in ctx.df.schema:
        return pl.Series("source_session_ids", np.zeros(ns, np.uint16))
    hs = ctx.df.get_column("SessionId").hash(seed=7).to_numpy()[cut.perm]
    change = np.zeros(n, dtype=bool)
    if n:
        np.not_equal(hs[1:], hs[:-1], out=change[1:])
    change[cut.starts] = False
    src = np.ones(ns, dtype=np.int64)
    multi = np.zeros(ns, dtype=bool)
    multi[ctx.key[change]] = True
    if multi.any():
        # Only sessions whose id changes need a distinct count.
        sel = multi[ctx.key]
        agg = (
            pl.DataFrame({"s": ctx.key[sel], "h": hs[sel]})
            .group_by("s")
            .agg(pl.col("h").n_unique())
        )
        src[agg["s"].to_numpy()] = agg["h"].to_numpy()
    return pl.Series("source_session_ids", np.minimum(src, 65535).astype(np.uint16))


def _gap_before(ctx: _Ctx) -> np.ndarray:
    """Seconds since the same device's previous session ended (NaN for a device's first)."""
    cut = ctx.cut
    gap = np.full(ctx.ns, np.nan)
    if ctx.ns > 1:
        gap[1:] = (cut.t[cut.starts[1:]] - cut.t[cut.ends[:-1]]) / 1e9
    gap[cut.dev_start] = np.nan
    return ctx.out(gap)


def _session_order(cut: _Cut) -> np.ndarray:
    """Order of the sessions (sorted by device) by (start time, input row of first event)."""
    ns = cut.starts.size
    if ns == 0:
        return np.empty(0, dtype=np.int64)
    rows = cut.perm[cut.starts]
    if cut.rows_time_ordered:
        packed = (rows.astype(np.uint64) << np.uint64(32)) | np.arange(ns, dtype=np.uint64)
        return (np.sort(packed) & _MASK32).astype(np.int64)
    return np.lexsort((rows, cut.t[cut.starts]))


def _joined_key(df: pl.DataFrame, keys: list[str], rows: pl.Series) -> pl.Series:
    sub = df.select(keys)[rows] if rows.len() else df.select(keys).head(0)
    return sub.select(
        pl.concat_str([pl.col(k).cast(pl.String) for k in keys], separator="|").alias("key")
    ).to_series()


def _dt_ns(value: datetime) -> int:
    if value.tzinfo is None:
        raise SessionizeError(f"window bounds must be timezone-aware datetimes, got {value!r}")
    return pl.Series([value]).dt.convert_time_zone("UTC").dt.cast_time_unit("ns").to_physical()[0]


def _event_index(cut: _Cut, n: int, perm: np.ndarray) -> np.ndarray:
    out = np.empty(n, dtype=np.uint32)
    out[perm] = np.arange(1, n + 1, dtype=np.int64) - cut.starts[cut.sid]
    return out


def _entry_utm(entry_page: pl.Series, payload: pl.Series | None) -> list[pl.Series]:
    """Entry UTM source/medium/campaign from the first ``PageUri`` query string, else from the
    ``Payload`` JSON (``"utm_source": ...``); the referrer host from ``Payload.referrer``."""
    names = ("entry_utm_source", "entry_utm_medium", "entry_utm_campaign", "entry_referrer_host")
    ns = entry_page.len()
    frame = pl.DataFrame(
        {
            "p": entry_page,
            "j": payload
            if payload is not None
            else pl.repeat(None, ns, dtype=pl.String, eager=True),
        }
    )
    cand = frame.select(
        pl.col("p").str.contains("utm_", literal=True)
        | pl.col("j").str.contains("utm_|referr").fill_null(False)
    ).to_series()
    idx = cand.arg_true()
    empty = [pl.repeat(None, ns, dtype=pl.String, eager=True).alias(nm) for nm in names]
    if idx.len() == 0:
        return empty

    def from_url(k: str) -> pl.Expr:
        return (
            pl.col("p")
            .str.extract(rf"[?&]{k}=([^&#]*)", 1)
            .str.replace_all(r"\+", " ")
            .replace("", None)
        )

    def from_json(k: str) -> pl.Expr:
        return pl.col("j").str.extract(rf'"{k}"\s*:\s*"([^"]*)"', 1).replace("", None)

    res = frame[idx].select(
        pl.coalesce(from_url("utm_source"), from_json("utm_source")).alias(names[0]),
        pl.coalesce(from_url("utm_medium"), from_json("utm_medium")).alias(names[1]),
        pl.coalesce(from_url("utm_campaign"), from_json("utm_campaign")).alias(names[2]),
        pl.coalesce(from_json("referrer"), from_json("referer"))
        .str.extract(r"^[a-zA-Z][a-zA-Z0-9+.-]*://([^/:?#]+)", 1)
        .str.to_lowercase()
        .alias(names[3]),
    )
    out = []
    for nm, full, part in zip(names, empty, res.get_columns(), strict=True):
        if (
            nm != "entry_referrer_host"
            and part.null_count() < part.len()
            and part.str.contains("%").any()
        ):
            from urllib.parse import unquote_plus

            part = part.map_elements(unquote_plus, return_dtype=pl.String)
        out.append(full.scatter(idx, part).alias(nm))
    return out


def stitch(
    events: pl.DataFrame | pl.LazyFrame,
    *,
    key: str | Sequence[str] = "DeviceId",
    time_col: str = "EventTime",
    _keyser: pl.Series | None = None,
) -> pl.DataFrame:
    """Map each device to a user: the device's most recent non-empty ``User.Email``.

    E-mails are trimmed and lower-cased. Ties in time are decided by input order (the later
    row wins). Only devices with at least one e-mail appear.

    Returns:
        A frame with ``device_id``, ``user_email`` (latest), ``user_name`` (the ``User.Name``
        on that latest event, or null when empty), ``n_emails`` (distinct e-mails, UInt32),
        ``first_identified_at``, ``last_identified_at`` and ``is_shared`` (``n_emails > 1``),
        sorted by ``device_id``.
    """
    df = _collect(events)
    _check_columns(df, ["User", time_col], "stitch")
    keys, keyser = (None, _keyser) if _keyser is not None else _key_series(df, key)
    frame = pl.DataFrame(
        {
            "device_id": keyser.cast(pl.String),
            "t": df.get_column(time_col),
            "email": df.get_column("User").struct.field("Email"),
            "name": df.get_column("User").struct.field("Name"),
        }
    )
    return (
        frame.with_row_index("_row")
        .filter(pl.col("email").str.len_bytes() > 0)  # cheap pre-filter: most events are anonymous
        .with_columns(pl.col("email").str.strip_chars().str.to_lowercase())
        .filter(pl.col("email") != "")
        .sort(["t", "_row"])
        .group_by("device_id")
        .agg(
            pl.col("email").last().alias("user_email"),
            pl.col("name")
            .last()
            .fill_null("")
            .str.strip_chars()
            .replace("", None)
            .alias("user_name"),
            pl.col("email").n_unique().cast(pl.UInt32).alias("n_emails"),
            pl.col("t").min().alias("first_identified_at"),
            pl.col("t").max().alias("last_identified_at"),
        )
        .with_columns((pl.col("n_emails") > 1).alias("is_shared"))
        .sort("device_id")
    )
