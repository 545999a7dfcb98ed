"""What every journey function shares: the vocabulary, the journey key, step levels."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
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


def _hash(key: pl.Series) -> np.ndarray:
    return key.hash().to_numpy()


#: Below this many rows :func:`group_rows` works in one thread (the tests lower it).
PARALLEL_ROWS = 1 << 20
_POOL: list[ThreadPoolExecutor] = []


def _parts(n: int) -> int:
    """How many threads share a grouping of ``n`` rows: 1, 2 or 4 (a power of two: the
    parts split the hashes by their top bits), no more than Polars' thread pool."""
    if n < max(PARALLEL_ROWS, 8):
        return 1
    return 4 if pl.thread_pool_size() >= 4 else min(pl.thread_pool_size(), 2)


def _in_threads(fns: Sequence[Callable[[], Any]]) -> list[Any]:
    """``[f() for f in fns]``, the first in this thread and the others in a shared pool
    (numpy's sorts and gathers and Polars' kernels release the GIL)."""
    if len(fns) == 1:
        return [fns[0]()]
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(max_workers=3, thread_name_prefix="psa-group"))
    futures = [_POOL[0].submit(f) for f in fns[1:]]
    return [fns[0](), *[f.result() for f in futures]]


def _cuts(n: int, parts: int) -> list[tuple[int, int]]:
    at = [n * i // parts for i in range(parts + 1)]
    return list(zip(at[:-1], at[1:], strict=True))


def hashes(
    key: pl.Series, hash_: Callable[[pl.Series], np.ndarray] = _hash, parts: int | None = None
) -> np.ndarray:
    """The keys' 64-bit hashes (uint64), from :data:`PARALLEL_ROWS` on in threads, each
    hashing one slice of the rows."""
    parts = _parts(len(key)) if parts is None else parts
    if len(key) == 0:
        return np.zeros(0, dtype=np.uint64)
    return np.concatenate(
        _in_threads(
            [
                lambda a=a, b=b: hash_(key.slice(a, b - a)).astype(np.uint64, copy=False)
                for a, b in _cuts(len(key), parts)
            ]
        )
    )


def take(values: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """``values[perm]`` for a permutation ``perm`` of ``values``' positions (such as
    :func:`group_rows`' ``perm``), from :data:`PARALLEL_ROWS` on in threads, each one slice
    (at 10 M int64: 55-67 ms wall instead of 124-144 at load 3)."""
    parts = _parts(len(perm))
    if parts == 1:
        return values[perm]
    out = np.empty(len(perm), dtype=values.dtype)
    # mode="clip" lets numpy write into ``out`` directly ("raise" buffers it); every index
    # of a permutation is in range, so nothing is clipped
    _in_threads(
        [
            lambda a=a, b=b: np.take(values, perm[a:b], out=out[a:b], mode="clip")
            for a, b in _cuts(len(perm), parts)
        ]
    )
    return out


def runs(sorted_: np.ndarray) -> np.ndarray:
    """Where each run of equal values starts in a sorted array (``np.unique``'s
    ``return_index`` without its sort or hashing: numpy 2.4's ``unique`` hashes, and takes
    seconds at 10 M values)."""
    if len(sorted_) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, sorted_[1:] != sorted_[:-1]])


def group_rows(
    key: pl.Series, hash_: Callable[[pl.Series], np.ndarray] = _hash
) -> tuple[np.ndarray, np.ndarray]:
    """The rows grouped by ``key`` (null is a key of its own), each group's rows ascending:
    ``(perm, ends)``, ``perm[ends[j - 1]:ends[j]]`` the rows of group ``j``
    (:func:`group_ids` numbers each row by its group).

    What Polars' ``group_by(key).agg(row)`` gives, in about half its time: the high bits of
    the key's 64-bit hash with the row number in the low bits are one integer, so one plain
    numpy sort puts every key's rows together and in order. Exact: the keys in that order
    are compared with their neighbours; two neighbours in different runs of high bits have
    different hashes, so different keys, and the runs hold one key each exactly when the
    neighbours differ only there. Keys whose hashes share those high bits (a few in a
    hundred calls at 10 M rows) are split apart by their full hash, and a true collision
    (two keys, one 64-bit hash) falls back to Polars' grouping. ``hash_`` exists for the
    tests, which force both with hand-made hashes.

    From :data:`PARALLEL_ROWS` rows on, two (or four) threads share the work: each hashes a
    slice of the rows, sorts the rows whose hashes start with its top bit(s) (the parts'
    sorted integers, one after the other, are the whole sorted array) and compares the keys
    of a slice of the sorted order.
    """
    n = len(key)
    if n == 0:
        return (np.zeros(0, dtype=np.int64),) * 2
    key = key.rechunk()
    parts = _parts(n)
    h = hashes(key, hash_, parts)
    bits = np.uint64(max(n - 1, 1).bit_length())

    def sorted_part(part: int) -> np.ndarray:
        if parts == 1:
            rows = np.arange(n, dtype=np.uint64)
            packed = (h >> bits << bits) | rows
        else:
            top = np.uint64(64 - (parts.bit_length() - 1))
            rows = np.flatnonzero((h >> top) == np.uint64(part)).astype(np.uint64)
            packed = (h[rows] >> bits << bits) | rows
        packed.sort()
        return packed

    packed = np.concatenate(_in_threads([lambda i=i: sorted_part(i) for i in range(parts)]))
    perm = (packed & ((np.uint64(1) << bits) - np.uint64(1))).view(np.int64)
    top = packed >> bits
    new = top[1:] != top[:-1]
    del packed, top
    ends = _checked(key, perm, new, parts)
    if ends is None:
        # runs of equal high bits holding several keys: order them by (full hash, row)
        hs = h[perm]
        split = (hs[1:] != hs[:-1]) & ~new
        run = np.cumsum(np.r_[False, new])
        bad = np.zeros(run[-1] + 1, dtype=bool)
        bad[run[1:][split]] = True
        pos = np.flatnonzero(bad[run])
        o = np.lexsort((perm[pos], hs[pos]))
        perm[pos], hs[pos] = perm[pos][o], hs[pos][o]
        ends = _checked(key, perm, hs[1:] != hs[:-1], parts)
    if ends is not None:
        return perm, ends
    # two keys with one hash: Polars' exact grouping
    rows = (
        pl.DataFrame({"_i": pl.int_range(n, dtype=pl.UInt32, eager=True), "_k": key})
        .group_by("_k")
        .agg("_i")
        .get_column("_i")
    )
    lens = rows.list.len().to_numpy().astype(np.int64)
    return rows.explode().to_numpy().astype(np.int64), np.cumsum(lens)


def _checked(key: pl.Series, perm: np.ndarray, new: np.ndarray, parts: int) -> np.ndarray | None:
    """The ends of the runs of ``perm`` (a new one after each true of ``new``) when each
    holds one key, else None. Neighbours across a run boundary have different keys (the
    caller's hashes differ there), so the runs hold one key each exactly when the keys in
    ``perm``'s order differ from their neighbours at the boundaries only: one comparison
    per row, in order (each of ``parts`` threads one slice, and the pairs across the slices),
    not a gather of each row's group's first key."""
    n = len(perm)
    ends = np.r_[np.flatnonzero(new) + 1, n]

    def differ(a: int, b: int) -> int:
        s = key.gather(perm[a:b])
        return int(s.slice(1).ne_missing(s.slice(0, b - a - 1)).sum()) if b - a > 1 else 0

    cuts = _cuts(n, parts)
    count = sum(_in_threads([lambda a=a, b=b: differ(a, b) for a, b in cuts]))
    for a, _ in cuts[1:]:
        count += differ(a - 1, a + 1)  # the pair across two slices
    return ends if count == len(ends) - 1 else None


def group_ids(perm: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Each row's group number from :func:`group_rows`' ``(perm, ends)``."""
    gid = np.empty(len(perm), dtype=np.int64)
    gid[perm] = np.repeat(np.arange(len(ends)), np.diff(ends, prepend=0))
    return gid
