"""Bounded memory: sessionize a large input in device hash buckets, streaming to files.

Sessions are per device, so they partition perfectly. :func:`sessionize_to_files`

1. streams the input once (Polars' streaming engine) into ``P`` hash partitions of the
   device key on a spill directory, each row tagged with its global input row;
2. groups consecutive partitions into buckets that fit the memory budget and runs the one
   in-memory kernel (:func:`~psanalytics.sessions._table.sessionize_rules`) on each bucket,
   with the whole data's time window and ``EventType`` set, so every value is the one the
   in-memory path computes; each bucket's sessions and events go to spill files;
3. ranks all sessions by (start, input row of the first event) from two small arrays
   (16 bytes a session), which gives the global ``session_key``, and writes the outputs in
   slices: sessions in key order, events in input order, each slice read back from the
   buckets' files by position (every bucket's part of a slice is one contiguous range).

Peak memory follows the bucket (and the slice), not the input. :func:`device_buckets` is
the reusable driver: it yields the input's rows bucket by bucket, every device whole, in
input order, for any per-device computation (journeys, stitching).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

from psanalytics._config import progress_enabled
from psanalytics.sessions._rules import Rules, SessionizeError
from psanalytics.sessions._table import SessionizedFiles, _is_source, sessionize_rules

#: Default memory budget of the bucketed path.
DEFAULT_MEMORY = 2 * 1024**3
ROW = "__psa_row"
_PART = "__psa_part"
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3,
          "gb": 1024**3, "t": 1024**4, "tb": 1024**4}  # fmt: skip
_MEM_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")


def parse_memory(value: str | int | None) -> int:
    """``"4GB"``, ``"800MB"``, ``"1.5g"`` or a number of bytes (None: the default, 2 GB)."""
    if value is None:
        return DEFAULT_MEMORY
    if isinstance(value, bool):
        raise SessionizeError(f"memory must be a size such as '4GB', got {value!r}")
    if isinstance(value, int | float):
        nbytes = int(value)
    else:
        m = _MEM_RE.match(str(value).lower())
        if not m or m.group(2) not in _UNITS:
            raise SessionizeError(
                f"memory={value!r} is not a size: use e.g. '4GB', '800MB' or a number of bytes"
            )
        nbytes = int(float(m.group(1)) * _UNITS[m.group(2)])
    if nbytes < 1024**2:
        raise SessionizeError(f"memory={value!r} is too small: give at least 1MB")
    return nbytes


def _lazy(events: object) -> pl.LazyFrame:
    if isinstance(events, pl.LazyFrame):
        return events
    if isinstance(events, pl.DataFrame):
        return events.lazy()
    if _is_source(events):
        from psanalytics.exports import scan_events

        return scan_events(events)  # type: ignore[arg-type]
    raise SessionizeError(
        f"events must be a polars DataFrame or LazyFrame, or export files, got {type(events).__name__}"
    )


def _key_expr(keys: Sequence[str]) -> pl.Expr:
    if len(keys) == 1:
        return pl.col(keys[0])
    return pl.concat_str([pl.col(k).cast(pl.String).fill_null("") for k in keys], separator="\x1f")


def _events_per_bucket(lf: pl.LazyFrame, budget: int, *, minimal: bool) -> tuple[int, int]:
    """(rows of the input, events one bucket may hold within ``budget``).

    The in-memory kernel's peak per event was measured at about 3x the frame's own bytes per
    row plus 150 bytes of work arrays for the full table (1.5x + 60 for ``minimal``); half
    the budget goes to that, the rest is headroom for the allocator and the output slices.
    """
    n = int(lf.select(pl.len()).collect(engine="streaming").item())
    sample = lf.head(20_000).collect()
    row_bytes = sample.estimated_size() / max(sample.height, 1)
    per_event = 1.5 * row_bytes + 60 if minimal else 3.0 * row_bytes + 150
    return n, max(100, int(budget * 0.5 / per_event))


@dataclass
class _Partitioned:
    root: Path
    n: int
    parts: list[list[Path]]  # per bucket: its partition files
    sizes: list[int]  # rows per bucket


@contextmanager
def _partitioned(
    lf: pl.LazyFrame, keys: Sequence[str], per_bucket: int, n: int, spill: Path
) -> Iterator[_Partitioned]:
    """Stream ``lf`` (with a global row column) into hash partitions of the device key, and
    group them into buckets of at most ``per_bucket`` rows (a partition larger than that is
    a bucket on its own: one device can never be split)."""
    root = Path(tempfile.mkdtemp(prefix="psa-buckets-", dir=spill))
    try:
        n_buckets = max(1, math.ceil(n / per_bucket))
        n_parts = min(1024, n_buckets * 4)
        # Our own loop over streamed batches, one small Parquet file per (batch, partition):
        # a partitioned sink buffers the partitions it cannot keep open, which grew with the
        # input (3.5 GB at 10 M events); here memory is one batch.
        src = root / "in"
        by_part: dict[int, list[Path]] = {}
        counts: dict[int, int] = {}
        row = 0
        batch_rows = max(10_000, min(per_bucket // 2, 250_000))
        part_expr = (_key_expr(keys).hash(0x5EED) % n_parts).cast(pl.Int32).alias(_PART)
        for i, batch in enumerate(lf.collect_batches(chunk_size=batch_rows, maintain_order=True)):
            if batch.height == 0:
                continue
            batch = batch.with_columns(
                pl.int_range(row, row + batch.height, dtype=pl.UInt32).alias(ROW), part_expr
            )
            row += batch.height
            for (p,), sub in batch.partition_by(_PART, as_dict=True, include_key=False).items():
                d = src / f"p{p:04d}"
                d.mkdir(parents=True, exist_ok=True)
                f = d / f"b{i:06d}.parquet"
                sub.write_parquet(f, compression="lz4", statistics=False)
                by_part.setdefault(int(p), []).append(f)
                counts[int(p)] = counts.get(int(p), 0) + sub.height
            del batch
        parts: list[list[Path]] = []
        sizes: list[int] = []
        for p in sorted(by_part):
            if parts and sizes[-1] + counts[p] <= per_bucket:
                parts[-1].extend(by_part[p])
                sizes[-1] += counts[p]
            else:
                parts.append(list(by_part[p]))
                sizes.append(counts[p])
        yield _Partitioned(root, sum(sizes), parts, sizes)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _read_bucket(files: list[Path]) -> pl.DataFrame:
    df = pl.concat([pl.read_parquet(f) for f in files], how="vertical", rechunk=False)
    if not df.get_column(ROW).is_sorted():
        df = df.sort(ROW)
    return df


@contextmanager
def device_buckets(
    events: pl.DataFrame | pl.LazyFrame | str | os.PathLike[str] | Sequence[str],
    *,
    key: str | Sequence[str] = "DeviceId",
    memory: str | int | None = None,
    columns: Sequence[str] | None = None,
    spill_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> Iterator[Iterator[pl.DataFrame]]:
    """Yield the input bucket by bucket: every device (every value of ``key``) whole in one
    bucket, rows in input order, with the global input row in column ``"__psa_row"``.

    The driver behind the bounded-memory paths; use it for any per-device computation whose
    results add up across devices::

        with device_buckets(scan_events("export/"), memory="2GB") as buckets:
            for frame in buckets:
                ...

    ``key`` may also be an expression's source columns (several columns are joined).
    ``columns`` limits the columns read (the key columns are always kept).
    """
    lf = _lazy(events)
    keys = [key] if isinstance(key, str) else list(key)
    if columns is not None:
        lf = lf.select(list(dict.fromkeys([*keys, *columns])))
    budget = parse_memory(memory)
    n, per_bucket = _events_per_bucket(lf, budget, minimal=False)
    spill = Path(spill_dir) if spill_dir is not None else None
    with _partitioned(lf, keys, per_bucket, n, spill) as plan:  # type: ignore[arg-type]

        def gen() -> Iterator[pl.DataFrame]:
            for files in _progress(plan.parts, progress, "buckets"):
                yield _read_bucket(files)

        yield gen()


def _progress(items: list, progress: bool | None, desc: str):  # type: ignore[no-untyped-def]
    show = progress_enabled(progress, default=len(items) > 1)
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="bucket")


# --------------------------------------------------------------------------- writing


def csv_ready(frame: pl.DataFrame) -> pl.DataFrame:
    """Struct columns as JSON text and list columns joined by ``|``: what CSV can hold."""
    nested = [c for c, t in frame.schema.items() if isinstance(t, pl.Struct | pl.List)]
    return frame.with_columns(
        pl.col(c).struct.json_encode()
        if isinstance(frame.schema[c], pl.Struct)
        else pl.col(c).cast(pl.List(pl.String)).list.join("|")
        for c in nested
    )


def check_out_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if p.suffix.lower() not in (".parquet", ".csv"):
        raise SessionizeError(f"{p}: write .parquet or .csv (got {p.suffix or 'no suffix'!r})")
    return p


class _Writer:
    """Appends frames to one Parquet (pyarrow writer, Polars dtypes kept) or CSV file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".partial")
        self.csv = path.suffix.lower() == ".csv"
        self._pq = None
        self._fh = None
        self.rows = 0

    def write(self, frame: pl.DataFrame) -> None:
        if self.csv:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.tmp, "wb")  # noqa: SIM115 - closed in close()
            csv_ready(frame).write_csv(self._fh, include_header=self.rows == 0)
        else:
            import pyarrow.parquet as pq

            table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())  # pyarrow writes these
            if self._pq is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._pq = pq.ParquetWriter(self.tmp, table.schema, compression="zstd")
            self._pq.write_table(table, row_group_size=256 * 1024)
        self.rows += frame.height

    def close(self, empty: pl.DataFrame) -> None:
        if self.rows == 0:
            self.write(empty)
        if self._pq is not None:
            self._pq.close()
        if self._fh is not None:
            self._fh.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        for h in (self._pq, self._fh):
            if h is not None:
                h.close()
        self.tmp.unlink(missing_ok=True)


def _write_direct(frame: pl.DataFrame, path: Path) -> None:
    w = _Writer(path)
    try:
        w.write(frame)
        w.close(frame)
    except BaseException:
        w.abort()
        raise


# --------------------------------------------------------------------------- sessionize


def sessionize_to_files(
    events: object,
    rules: Rules,
    *,
    out: str | os.PathLike[str] | None,
    events_out: str | os.PathLike[str] | None,
    memory: str | int | None = None,
    progress: bool | None = None,
    spill_dir: str | os.PathLike[str] | None = None,
) -> SessionizedFiles:
    """``sessionize(events, out=..., events_out=...)``: see the module docstring."""
    files = events if _is_source(events) else None
    out_p = check_out_path(out) if out is not None else None
    ev_p = check_out_path(events_out) if events_out is not None else None
    budget = parse_memory(memory)
    lf = _lazy(events)
    names = lf.collect_schema().names()
    needed = [*rules.key, rules.time_col, "PageUri"]
    missing = [c for c in needed if c not in names]
    if missing:
        raise SessionizeError(
            f"sessionize needs column(s) {', '.join(missing)}; the frame has {', '.join(names) or 'no columns'}"
        )
    try:
        n, per_bucket = _events_per_bucket(lf, budget, minimal=rules.minimal)
    except pl.exceptions.PolarsError as exc:
        _locate_bad_input(files)
        raise SessionizeError(f"cannot read the events: {exc}") from None
    if n <= per_bucket:
        # Fits: the in-memory kernel on the whole input, written directly.
        res = sessionize_rules(lf.collect(), replace(rules, select=None))
        n_dev = int((res.sessions.get_column("session_index") == 1).sum())
        if out_p is not None:
            sessions = res.sessions if rules.select is None else res.sessions.select(rules.select)
            _write_direct(sessions, out_p)
        if ev_p is not None:
            _write_direct(res.events, ev_p)
        return SessionizedFiles(
            None if out_p is None else str(out_p),
            None if ev_p is None else str(ev_p),
            res.events.height,
            res.sessions.height,
            n_dev,
            1,
            res.timeout_s,
            res.max_duration_s,
        )
    spill = Path(spill_dir) if spill_dir is not None else None
    try:
        with _partitioned(lf, rules.key, per_bucket, n, spill) as plan:  # type: ignore[arg-type]
            return _run_buckets(lf, plan, rules, out_p, ev_p, per_bucket, progress)
    except pl.exceptions.PolarsError as exc:
        _locate_bad_input(files)
        raise SessionizeError(f"cannot read the events: {exc}") from None


def _locate_bad_input(files: object) -> None:
    """A lazy scan failed: read the files one at a time with the eager reader, which raises
    :class:`~psanalytics.errors.InputError` naming the exact ``file:line``."""
    if files is None:
        return
    from psanalytics.exports import expand_sources, read_events_with_report

    for f in expand_sources(files):  # type: ignore[arg-type]
        read_events_with_report(f)


_EV_COLS = ("session_key", "session_id", "session_index", "event_index_in_session")


def _aligned(lf: pl.LazyFrame, bounds: np.ndarray) -> Iterator[pl.DataFrame]:
    """The input again, streamed in order, cut exactly at ``bounds`` (row numbers)."""
    buf: list[pl.DataFrame] = []
    have = 0
    i = 0
    last = len(bounds) - 1
    step = int(bounds[1] - bounds[0]) if last > 0 else 1
    for batch in lf.collect_batches(chunk_size=max(1, step), maintain_order=True):
        buf.append(batch)
        have += batch.height
        while i < last and have >= bounds[i + 1] - bounds[i]:
            need = int(bounds[i + 1] - bounds[i])
            cat = pl.concat(buf, rechunk=False) if len(buf) > 1 else buf[0]
            yield cat.head(need)
            rest = cat.slice(need)
            buf, have, i = [rest], rest.height, i + 1
    if i != last or have:
        raise SessionizeError(
            "the input changed while it was being sessionized (row count differs between reads)"
        )


def _bucket_rules(plan: _Partitioned, rules: Rules) -> tuple[Rules, list[str] | None]:
    """The rules every bucket runs with: the whole data's time window (``truncated_*``) and
    the whole data's ``EventType`` set (``event_counts`` fields), read from the spill."""
    scan = pl.scan_parquet([f for fs in plan.parts for f in fs])
    tcol = rules.time_col
    stats = scan.select(pl.col(tcol).min().alias("lo"), pl.col(tcol).max().alias("hi")).collect()
    types: list[str] | None = None
    if not rules.minimal and "EventType" in scan.collect_schema():
        types = sorted(
            scan.select(pl.col("EventType").fill_null("").unique()).collect().to_series().to_list()
        )
    to_ns = pl.Series(list(stats.row(0))).dt.cast_time_unit("ns").to_physical().to_list()
    wlo, whi = rules.window_ns if rules.window_ns is not None else (None, None)
    brules = replace(
        rules,
        select=None,  # applied when writing: the ranking needs start_time
        window_ns=(to_ns[0] if wlo is None else wlo, to_ns[1] if whi is None else whi),
    )
    return brules, types


def _global_keys(starts: list[np.ndarray], firsts: list[np.ndarray]) -> list[np.ndarray]:
    """Per bucket, the global ``session_key`` of its sessions: all sessions ranked by
    (start, input row of the first event). Increasing inside a bucket (a bucket's sessions
    are already in that order), so a key range is one contiguous range of each bucket."""
    sizes = [a.size for a in starts]
    all_start = np.concatenate(starts) if starts else np.empty(0, np.int64)
    all_first = np.concatenate(firsts) if firsts else np.empty(0, np.int64)
    order = np.lexsort((all_first, all_start))
    del all_start, all_first
    rank = np.empty(order.size, dtype=np.uint32)
    rank[order] = np.arange(order.size, dtype=np.uint32)
    del order
    offs = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return [rank[offs[b] : offs[b + 1]] for b in range(len(sizes))]


def _write_sessions(
    out_p: Path,
    gk: list[np.ndarray],
    s_files: list[Path],
    schema: pl.Schema,
    keep: list[str] | None,
    step: int,
) -> None:
    """The sessions file in ``session_key`` order, ``step`` keys at a time."""
    ns = sum(k.size for k in gk)
    w = _Writer(out_p)
    try:
        for k0 in range(0, ns, step):
            k1 = min(ns, k0 + step)
            pieces = []
            for b, keys_b in enumerate(gk):
                l0, l1 = np.searchsorted(keys_b, [k0, k1])
                if l1 > l0:
                    piece = pl.scan_parquet(s_files[b]).slice(int(l0), int(l1 - l0)).collect()
                    pieces.append(
                        piece.with_columns(pl.Series("session_key", keys_b[l0:l1], dtype=pl.UInt32))
                    )
            frame = pl.concat(pieces).sort("session_key").drop(ROW)
            w.write(frame if keep is None else frame.select(keep))
        empty = pl.DataFrame(schema=schema).drop(ROW)
        w.close(empty if keep is None else empty.select(keep))
    except BaseException:
        w.abort()
        raise


def _write_events(
    lf: pl.LazyFrame,
    ev_p: Path,
    bounds: np.ndarray,
    ev_offsets: list[np.ndarray],
    e_files: list[Path],
    gk: list[np.ndarray],
    schema: pl.Schema,
) -> None:
    """The events file in input order: the input streamed again, slice by slice, next to
    the four session columns read back from the buckets (keys made global)."""
    w = _Writer(ev_p)
    has_key = "session_key" in schema
    try:
        for i, chunk in enumerate(_aligned(lf, bounds)):
            pieces = []
            for b, off in enumerate(ev_offsets):
                l0, l1 = int(off[i]), int(off[i + 1])
                if l1 > l0:
                    piece = pl.scan_parquet(e_files[b]).slice(l0, l1 - l0).collect()
                    if has_key:
                        key = pl.Series(gk[b]).gather(piece.get_column("session_key"))
                        piece = piece.with_columns(key.alias("session_key"))
                    pieces.append(piece)
            cols = pl.concat(pieces).sort(ROW).drop(ROW)
            w.write(chunk.hstack(cols.get_columns()))
        empty = pl.DataFrame(schema=schema).drop(ROW).get_columns()
        w.close(lf.head(0).collect().hstack(empty))
    except BaseException:
        w.abort()
        raise


def _run_buckets(
    lf: pl.LazyFrame,
    plan: _Partitioned,
    rules: Rules,
    out_p: Path | None,
    ev_p: Path | None,
    per_bucket: int,
    progress: bool | None,
) -> SessionizedFiles:
    brules, types = _bucket_rules(plan, rules)
    n = plan.n
    slice_rows = max(1000, per_bucket // 4)
    bounds = np.append(np.arange(0, n, slice_rows, dtype=np.int64), n)
    work = plan.root / "out"
    work.mkdir()
    starts: list[np.ndarray] = []
    firsts: list[np.ndarray] = []
    ev_offsets: list[np.ndarray] = []
    s_files: list[Path] = []
    e_files: list[Path] = []
    sess_schema = ev_schema = pl.Schema()
    n_dev = 0
    for b, bucket_files in enumerate(_progress(plan.parts, progress, "sessionize")):
        res = sessionize_rules(_read_bucket(bucket_files), brules, event_types=types, carry=(ROW,))
        s = res.sessions
        n_dev += int((s.get_column("session_index") == 1).sum())
        starts.append(s.get_column("start_time").dt.cast_time_unit("ns").to_physical().to_numpy())
        firsts.append(s.get_column(ROW).cast(pl.Int64).to_numpy())
        sess_schema = s.schema
        if out_p is not None:
            s_files.append(work / f"s{b}.parquet")
            s.write_parquet(s_files[-1], compression="lz4", row_group_size=16 * 1024)
        del s
        if ev_p is not None:
            # only the new columns: the input's own are streamed from the input again
            e = res.events.select(ROW, *[c for c in _EV_COLS if c in res.events.columns])
            ev_offsets.append(np.searchsorted(e.get_column(ROW).cast(pl.Int64).to_numpy(), bounds))
            ev_schema = e.schema
            e_files.append(work / f"e{b}.parquet")
            e.write_parquet(e_files[-1], compression="lz4", row_group_size=16 * 1024)
            del e
        del res
    gk = _global_keys(starts, firsts)
    del starts, firsts
    if out_p is not None:
        keep = None if rules.select is None else list(rules.select)
        _write_sessions(out_p, gk, s_files, sess_schema, keep, max(1000, slice_rows // 2))
    if ev_p is not None:
        _write_events(lf, ev_p, bounds, ev_offsets, e_files, gk, ev_schema)
    return SessionizedFiles(
        None if out_p is None else str(out_p),
        None if ev_p is None else str(ev_p),
        n,
        sum(k.size for k in gk),
        n_dev,
        len(plan.parts),
        rules.timeout_ns / 1e9,
        None if rules.max_ns is None else rules.max_ns / 1e9,
    )
