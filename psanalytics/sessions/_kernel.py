"""The numpy cutting kernel: device order, session boundaries, the rules' splits and the cap.

Device keys are hashed to integers, only one packed ``uint64`` key (device hash,
time-ordered row) is sorted, and boundaries are shifted compares over the whole sorted
array (never ``over()``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from psanalytics.sessions._rules import (
    _CAMPAIGN_KEYS,
    _R_CAMPAIGN,
    _R_IDENTITY,
    _R_MAXDUR,
    _R_MIDNIGHT,
    SessionizeError,
    _check_columns,
    _time_series,
)

_MASK32 = np.uint64(0xFFFFFFFF)


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
    k = _packed_sort(h >> np.uint64(32))
    k &= _MASK32  # the high halves are h[perm] >> 32: no need to keep them
    perm = k.view(np.int64)
    del k
    hs = h[perm]
    del h
    np.not_equal(hs[1:], hs[:-1], out=new_dev[1:])
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
    if n:
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
    # Long because: the rules run here in their documented order (inactivity, midnight, campaign,
    # identity, cap), each an OR into the same is_new array over the same sorted arrays:
    # kept in one function so the order is visible in one place.
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
    perm, new_dev = _device_order(keyser, n, exact=exact)
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
