"""The sessions table: ``sessionize()`` and the per-session columns of spec §5.2.

Per-session values are read by position at the session starts and ends, and the string
columns are never reordered: only the few values at session boundaries are gathered.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl

from psanalytics.sessions._columns import (
    _Ctx,
    _entry_utm,
    _gap_before,
    _source_session_ids,
    _type_counts,
    _unique_pages,
)
from psanalytics.sessions._kernel import _MASK32, _Cut, _cut
from psanalytics.sessions._rules import (
    SPLIT_REASON_DTYPE,
    SPLIT_REASONS,
    Rules,
    SessionizeError,
    _check_columns,
    _key_series,
)
from psanalytics.sessions._stitch import _stitched


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


@dataclass(frozen=True)
class SessionizedFiles:
    """Result of :func:`sessionize` with ``out=``/``events_out=``: the files written.

    ``.sessions`` and ``.events`` scan them lazily (``None`` for a file not asked for).
    """

    sessions_path: str | None
    events_path: str | None
    n_events: int
    n_sessions: int
    n_devices: int
    n_buckets: int
    timeout_s: float
    max_duration_s: float | None

    @property
    def sessions(self) -> pl.LazyFrame | None:
        return None if self.sessions_path is None else _scan(self.sessions_path)

    @property
    def events(self) -> pl.LazyFrame | None:
        return None if self.events_path is None else _scan(self.events_path)

    def __repr__(self) -> str:
        return (
            f"SessionizedFiles({self.n_events:,} events, {self.n_sessions:,} sessions, "
            f"{self.n_devices:,} devices, "
            f"{self.n_buckets} bucket(s), sessions={self.sessions_path!r}, "
            f"events={self.events_path!r})"
        )


def _is_source(events: object) -> bool:
    """A path, folder, glob, or a list of those (not a frame)."""
    if isinstance(events, str | os.PathLike):
        return True
    return (
        isinstance(events, list | tuple)
        and bool(events)
        and all(isinstance(e, str | os.PathLike) for e in events)
    )


def _scan(path: str) -> pl.LazyFrame:
    return pl.scan_csv(path) if path.lower().endswith(".csv") else pl.scan_parquet(path)


# --------------------------------------------------------------------------- public API


def sessionize_rules(
    df: pl.DataFrame,
    rules: Rules,
    *,
    event_types: Sequence[str] | None = None,
    carry: Sequence[str] = (),
) -> Sessionized:
    """The in-memory kernel on one frame with parsed :class:`Rules`: what every engine runs
    (the bucketed path per bucket, Spark per device group).

    ``event_types`` fixes the fields of ``event_counts`` (a bucket must use the whole data's
    types); every column in ``carry`` is copied to the sessions table from each session's
    first event (the bucketed path carries the global input row).
    """
    _check_columns(df, [rules.time_col, "PageUri"], "sessionize")
    try:
        res = _sessionize(df, rules, exact=False, event_types=event_types, carry=carry)
    except _HashClash:  # pragma: no cover - two DeviceIds share a 64-bit hash
        res = _sessionize(df, rules, exact=True, event_types=event_types, carry=carry)
    if rules.select is not None:
        missing = [c for c in rules.select if c not in res.sessions.schema]
        if missing:
            raise SessionizeError(
                f"columns: no sessions-table column {', '.join(map(repr, missing))}; "
                f"the table has {', '.join(res.sessions.columns)}"
            )
        res = Sessionized(
            res.events,
            res.sessions.select(*rules.select, *carry),
            res.timeout_s,
            res.max_duration_s,
        )
    return res


#: Besides the key and the time, the columns the full sessions table reads when present.
_FULL_READS = ("PageUri", "PageTitle", "EventType", "User", "SessionId", "CountryCode", "City",
               "Scope", "Payload")  # fmt: skip


def kernel_columns(rules: Rules, names: Sequence[str]) -> list[str]:
    """The columns of ``names`` that :func:`sessionize_rules` reads under ``rules`` (the
    bucketed path spills only these)."""
    want = [*rules.key, rules.time_col, "PageUri"]
    if not rules.minimal:
        want += _FULL_READS
    elif rules.split_on_identity_change:
        want.append("User")
    return [c for c in dict.fromkeys(want) if c in names]


class _HashClash(Exception):
    """Two different keys were grouped together by the hash: redo with exact codes."""


def _sessionize(
    df: pl.DataFrame,
    rules: Rules,
    *,
    exact: bool,
    event_types: Sequence[str] | None,
    carry: Sequence[str],
) -> Sessionized:
    # Long because: one function on purpose: its n-sized work arrays (perm, times, per-event keys)
    # are deleted at the points where they stop being needed, before the string gathers,
    # which is what keeps the peak memory at spec 5.3's target; split into helpers, the
    # caller's frame would keep them alive.
    key, time_col, minimal = rules.key, rules.time_col, rules.minimal
    timeout_ns, max_ns = rules.timeout_ns, rules.max_ns
    keys, keyser = _key_series(df, key)
    cut = _cut(
        df,
        keyser=keyser,
        time_col=time_col,
        timeout_ns=timeout_ns,
        max_ns=max_ns,
        midnight_tz=rules.split_at_midnight,
        campaign=rules.split_on_campaign,
        identity=rules.split_on_identity_change,
        exact=exact,
    )
    n = df.height
    ns = cut.starts.size
    perm, starts, ends, t = cut.perm, cut.starts, cut.ends, cut.t

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
    first_rows_s = pl.Series(first_rows)
    last_rows_s = pl.Series(last_rows)
    start_keys = keyser.gather(first_rows_s)
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
        sessions = pl.DataFrame(
            [*cols.values(), *(df.get_column(c).gather(first_rows_s) for c in carry)]
        )
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
    f_types = pool.submit(
        _type_counts, ctx, rules.pageview_types, rules.conversion_types, event_types
    )
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
    if rules.window_ns is not None:
        wlo, whi = rules.window_ns
        if wlo is not None:
            lo = wlo
        if whi is not None:
            hi = whi

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
        pl.Series("is_engaged", (dur_ns >= rules.engaged_ns) | (npv >= 2) | (n_conv > 0)),
        pl.Series("gap_before_s", gap_prev, dtype=pl.Float64, nan_to_null=True),
        pl.Series("split_reason", list(SPLIT_REASONS), dtype=SPLIT_REASON_DTYPE).gather(reason),
        pl.Series("truncated_start", start_t - lo <= timeout_ns),
        pl.Series("truncated_end", hi - end_t <= timeout_ns),
        source_ids,
    ]
    if has("Scope"):
        rest.append(at(at_first, "Scope", "scope"))
    rest += [df.get_column(c).gather(first_rows_s) for c in carry]
    sessions = sessions.with_columns(rest)
    ev = df.with_columns(
        ev_key_s,
        ev_sid,
        pl.Series("session_index", ev_index),
        pl.Series("event_index_in_session", ev_in_session),
    )
    return Sessionized(ev, sessions, timeout_ns / 1e9, None if max_ns is None else max_ns / 1e9)


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


def _event_index(cut: _Cut, n: int, perm: np.ndarray) -> np.ndarray:
    out = np.empty(n, dtype=np.uint32)
    out[perm] = np.arange(1, n + 1, dtype=np.int64) - cut.starts[cut.sid]
    return out
