"""Bounded memory: sessionize a large input in device hash buckets, streaming to files.

Sessions are per device, so they partition perfectly. :func:`sessionize_to_files`

1. streams the input once (Polars' streaming engine) into ``ceil(n / per_bucket)`` hash
   buckets of the device key on a spill directory, each row tagged with its global input
   row, gathering the whole data's time window and ``EventType`` set on the way. The spill
   holds only the columns the kernel reads (``Payload`` only where it can hold UTM keys);
2. runs the one in-memory kernel (:func:`~psanalytics.sessions._table.sessionize_rules`)
   on each bucket (its files in batch order are its rows in input order: no sort), with
   that window and type set, so every value is the one the in-memory path computes; each
   bucket's sessions and per-event session columns go to spill files;
3. ranks all sessions by (start, input row of the first event) from two small arrays
   (16 bytes a session), which gives the global ``session_key``, and writes the outputs in
   slices: sessions in key order; events in input order, the input streamed a second time
   next to the session columns read back from the buckets by position (every bucket's part
   of a slice is one contiguous range; ``_bucket_out`` writes both files).

Peak memory follows the bucket (and the slice), not the input. The spill directory is
removed on every way out (errors, Ctrl-C, SIGTERM). :func:`device_buckets` is the reusable
driver: it yields the input's rows bucket by bucket, every device whole, in input order,
for any per-device computation (journeys, stitching).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

from psanalytics._config import progress_enabled
from psanalytics.sessions._bucket_out import (
    _EV_COLS,
    _EV_NUMERIC,
    ROW,
    _EventCols,
    _global_keys,
    _write_events,
    _write_sessions,
    together,
)
from psanalytics.sessions._columns import payload_for_utm
from psanalytics.sessions._rules import Rules, SessionizeError
from psanalytics.sessions._table import (
    SessionizedFiles,
    _is_source,
    kernel_columns,
    sessionize_rules,
)
from psanalytics.sessions._writing import check_out_path, write_direct

#: Default memory budget of the bucketed path.
DEFAULT_MEMORY = 2 * 1024**3
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


def _per_bucket(row_bytes: float, budget: int, *, minimal: bool) -> int:
    """Events one bucket may hold within ``budget``: the in-memory kernel's peak per event
    was measured at about 3x the frame's own bytes per row plus 150 bytes of work arrays
    for the full table (1.5x + 60 for ``minimal``); half the budget goes to that, the rest
    is headroom for the allocator and the output slices."""
    per_event = 1.5 * row_bytes + 60 if minimal else 3.0 * row_bytes + 150
    return max(100, int(budget * 0.5 / per_event))


def _size(lf: pl.LazyFrame) -> tuple[int, pl.DataFrame]:
    """(rows of the input, a sample of its first rows to measure bytes per row)."""
    with _lean_scans():
        n = int(lf.select(pl.len()).collect(engine="streaming").item())
        return n, lf.head(20_000).collect()


def _row_bytes(sample: pl.DataFrame) -> float:
    return sample.estimated_size() / max(sample.height, 1)


@dataclass
class _Partitioned:
    root: Path
    n: int
    parts: list[list[Path]]  # per (non-empty) bucket: its spill files, in input order
    sizes: list[int]  # rows per bucket


#: Polars' streaming Parquet scan reads many row groups ahead and several files at once:
#: about 1.4 GB buffered while our 10 M-event input was streamed batch by batch (the same at
#: 20 M), most of the bounded path's peak. Polars reads these two settings per query; with
#: them the same scan peaked at 0.5 GB (measured 2026-12-03, docs/sessions.md).
_LEAN_SCAN_ENV = {"POLARS_MAX_CONCURRENT_SCANS": "1", "POLARS_ROW_GROUP_PREFETCH_SIZE": "2"}


@contextmanager
def _lean_scans() -> Iterator[None]:
    """Bound Polars' read-ahead while the input is streamed (:data:`_LEAN_SCAN_ENV`); a
    setting the caller's environment already has is left as it is, and ours are removed
    on the way out."""
    ours = [k for k in _LEAN_SCAN_ENV if k not in os.environ]
    for k in ours:
        os.environ[k] = _LEAN_SCAN_ENV[k]
    try:
        yield
    finally:
        for k in ours:
            os.environ.pop(k, None)


class _Terminated(BaseException):
    """SIGTERM arrived during a bucketed run: raised by our handler so the spill is removed."""


@contextmanager
def _term_as_exception() -> Iterator[None]:
    """On the main thread, while SIGTERM has its default action: turn SIGTERM into
    :class:`_Terminated` (so ``finally`` blocks remove the spill), then deliver it again
    with the default action, so the process still ends by SIGTERM as its parent expects."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise _Terminated

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def _spill_root(spill: Path | None) -> Iterator[Path]:
    """A fresh ``psa-buckets-*`` directory, removed on the way out, whatever the way: an
    error, Ctrl-C (KeyboardInterrupt) or SIGTERM (see :func:`_term_as_exception`)."""
    with _term_as_exception():
        root = Path(tempfile.mkdtemp(prefix="psa-buckets-", dir=spill))
        try:
            yield root
        finally:
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def _partitioned(
    lf: pl.LazyFrame,
    keys: Sequence[str],
    per_bucket: int,
    n: int,
    spill: Path | None,
    observe: Callable[[pl.DataFrame], None] | None = None,
) -> Iterator[_Partitioned]:
    """Stream ``lf`` once into ``ceil(n / per_bucket)`` hash buckets of the device key on a
    spill directory, each row tagged with its global input row (``observe`` sees every
    streamed batch first). One small Parquet file per (bucket, batch): a bucket's files in
    batch order are its rows in input order, so reading a bucket needs no sort. (Arrow IPC
    spill files measured worse: 13x the bytes, as Parquet dictionary-encodes the repeated
    strings, and more CPU; so did fewer, larger files: docs/sessions.md.) (Polars'
    partitioned sink buffered the partitions it could not keep open, which grew with the
    input: 3.5 GB at 10 M events; here memory is three batches: one being partitioned, two
    being written.) One device is never split:
    a huge bot device makes its bucket bigger than ``per_bucket``."""
    with _spill_root(spill) as root:
        n_buckets = max(1, math.ceil(n / per_bucket))
        files: list[list[Path]] = [[] for _ in range(n_buckets)]
        sizes = [0] * n_buckets
        row = 0
        batch_rows = max(10_000, min(per_bucket // 4, 250_000))
        part_expr = (_key_expr(keys).hash(0x5EED) % n_buckets).cast(pl.Int64).alias(_PART)

        books = threading.Lock()  # files and sizes, updated by both writers

        def write(i: int, by_part: dict[tuple[object, ...], pl.DataFrame]) -> None:
            for (p,), sub in by_part.items():
                f = root / f"b{p:05d}-{i:06d}.parquet"
                sub.write_parquet(f, compression="lz4", statistics=False)
                with books:
                    files[p].append(f)  # type: ignore[index]
                    sizes[p] += sub.height  # type: ignore[index]

        # A batch's spill files are written on worker threads while the next batches are
        # streamed and partitioned (Polars' writer releases the GIL): two batches in flight.
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="psa-spill")
        pending: list[Future[None]] = []
        try:
            with _lean_scans():
                batches = lf.collect_batches(chunk_size=batch_rows, maintain_order=True)
                for i, batch in enumerate(batches):
                    if batch.height == 0:
                        continue
                    if observe is not None:
                        observe(batch)
                    batch = batch.with_columns(
                        pl.int_range(row, row + batch.height, dtype=pl.UInt32).alias(ROW),
                        part_expr,
                    )
                    row += batch.height
                    by_part = batch.partition_by(
                        _PART, as_dict=True, include_key=False, maintain_order=True
                    )
                    del batch
                    if len(pending) == 2:
                        pending.pop(0).result()
                    pending.append(pool.submit(write, i, by_part))
                    del by_part
                for f in pending:
                    f.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # before the spill is removed
        for names in files:
            names.sort()  # batch order (two writers may finish out of order)
        keep = [b for b in range(n_buckets) if sizes[b]]
        yield _Partitioned(root, row, [files[b] for b in keep], [sizes[b] for b in keep])


def _read_bucket(files: list[Path]) -> pl.DataFrame:
    """A bucket's spill files in order, as one contiguous frame: the kernel's gathers on
    the ~60 chunks of a 10 M-event run's bucket cost more than the copy (0.53-0.72 against
    0.37-0.44 CPU s for a 685 k-event bucket; the copy 0.06 s)."""
    df = pl.scan_parquet(files).collect().rechunk()
    if not df.get_column(ROW).is_sorted():  # pragma: no cover - batches are in input order
        df = df.sort(ROW)
    return df


def _read_ahead(parts: list[list[Path]]) -> Iterator[pl.DataFrame]:
    """The buckets' frames in order, the next one read on a worker thread while the caller
    works on this one (Parquet decoding releases the GIL; the sessions kernel is mostly one
    thread): at 10 M events, 16 buckets, 6.9 s of reading no longer adds to the kernels'
    6.3 s. One bucket in flight (a few hundred MB at the default budget: below the peak of
    the streaming phase). The generator waits for its read when it is closed early."""
    if not parts:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="psa-read") as pool:
        ahead = pool.submit(_read_bucket, parts[0])
        try:
            for files in parts[1:]:
                frame = ahead.result()
                ahead = pool.submit(_read_bucket, files)
                yield frame
                del frame
            yield ahead.result()
        finally:
            ahead.cancel()


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

    ``key`` may also be several columns (their values are joined). ``columns`` limits the
    columns read (the key columns are always kept). An input that fits the budget is one
    bucket, read in memory without a spill.
    """
    lf = _lazy(events)
    keys = [key] if isinstance(key, str) else list(key)
    if columns is not None:
        lf = lf.select(list(dict.fromkeys([*keys, *columns])))
    budget = parse_memory(memory)
    n, sample = _size(lf)
    per_bucket = _per_bucket(_row_bytes(sample), budget, minimal=False)
    del sample
    if n <= per_bucket:
        whole = lf.collect().with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).alias(ROW))
        yield iter([whole])
        return
    spill = Path(spill_dir) if spill_dir is not None else None
    with _partitioned(lf, keys, per_bucket, n, spill) as plan:

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
        n, sample = _size(lf)
    except pl.exceptions.PolarsError as exc:
        _locate_bad_input(files)
        raise SessionizeError(f"cannot read the events: {exc}") from None
    if n <= _per_bucket(_row_bytes(sample), budget, minimal=rules.minimal):
        # Fits: the in-memory kernel on the whole input, written directly.
        del sample
        res = sessionize_rules(lf.collect(), replace(rules, select=None))
        n_dev = int((res.sessions.get_column("session_index") == 1).sum())
        if out_p is not None:
            sessions = res.sessions if rules.select is None else res.sessions.select(rules.select)
            write_direct(sessions, out_p)
        if ev_p is not None:
            write_direct(res.events, ev_p)
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
    # The spill holds only what the kernel reads (Payload only where it can hold UTM keys);
    # the events file takes the input's own columns from a second read of the input.
    kernel_lf = lf.select(kernel_columns(rules, names))
    if "Payload" in kernel_lf.collect_schema():
        kernel_lf = kernel_lf.with_columns(payload_for_utm("Payload"))
    # Sized from the input's whole rows, not the spill's narrower ones: the events file is
    # written from whole rows, and Polars' streaming reads of them buffer several batches.
    per_bucket = _per_bucket(_row_bytes(sample), budget, minimal=rules.minimal)
    del sample
    stats = _Stats(rules)
    spill = Path(spill_dir) if spill_dir is not None else None
    try:
        with _partitioned(kernel_lf, rules.key, per_bucket, n, spill, stats.observe) as plan:
            return _run_buckets(lf, plan, rules, stats, out_p, ev_p, per_bucket, budget, progress)
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


class _Stats:
    """What every bucket must see of the whole data, gathered from the streamed batches:
    the time window (``truncated_*``) and the ``EventType`` set (``event_counts`` fields)."""

    def __init__(self, rules: Rules) -> None:
        self._rules = rules
        self.lo: int | None = None
        self.hi: int | None = None
        self.types: set[str] | None = None

    def observe(self, batch: pl.DataFrame) -> None:
        t = batch.get_column(self._rules.time_col)
        if isinstance(t.dtype, pl.Datetime) and t.null_count() < t.len():
            ns = t.dt.cast_time_unit("ns").to_physical()
            lo, hi = int(ns.min()), int(ns.max())  # type: ignore[arg-type]
            self.lo = lo if self.lo is None else min(self.lo, lo)
            self.hi = hi if self.hi is None else max(self.hi, hi)
        if not self._rules.minimal and "EventType" in batch.schema:
            self.types = (self.types or set()) | set(
                batch.get_column("EventType").fill_null("").unique().to_list()
            )

    def rules(self) -> tuple[Rules, list[str] | None]:
        wlo, whi = self._rules.window_ns if self._rules.window_ns is not None else (None, None)
        brules = replace(
            self._rules,
            select=None,  # applied when writing: the ranking needs start_time
            window_ns=(self.lo if wlo is None else wlo, self.hi if whi is None else whi),
        )
        return brules, None if self.types is None else sorted(self.types)


def _run_buckets(
    lf: pl.LazyFrame,
    plan: _Partitioned,
    rules: Rules,
    stats: _Stats,
    out_p: Path | None,
    ev_p: Path | None,
    per_bucket: int,
    budget: int,
    progress: bool | None,
) -> SessionizedFiles:
    # Long because: the three phases after the spill (the kernel per bucket with its
    # read-ahead, the global keys, the two outputs) share a dozen running lists and sizes.
    brules, types = stats.rules()
    n = plan.n
    slice_rows = max(1000, min(per_bucket // 4, 250_000))
    bounds = np.append(np.arange(0, n, slice_rows, dtype=np.int64), n)
    work = plan.root / "out"
    work.mkdir()
    starts: list[np.ndarray] = []
    firsts: list[np.ndarray] = []
    s_files: list[Path] = []
    s_chunk = 0
    sess_schema = pl.Schema()
    ev_cols: _EventCols | None = None
    text_sid = len(rules.key) > 1  # one key column: session_id is rebuilt from it
    n_dev = 0
    frames = _read_ahead(plan.parts)
    try:
        for b, (_, frame) in enumerate(
            zip(_progress(plan.parts, progress, "sessionize"), frames, strict=True)
        ):
            res = sessionize_rules(frame, brules, event_types=types, carry=(ROW,))
            del frame
            s = res.sessions
            n_dev += int((s.get_column("session_index") == 1).sum())
            starts.append(s.get_column("start_time").dt.cast_time_unit("ns").to_physical().to_numpy())
            firsts.append(s.get_column(ROW).cast(pl.Int64).to_numpy())
            sess_schema = s.schema
            if out_p is not None:
                if not s_chunk:
                    # every bucket's cursor holds one chunk while the sessions file is written:
                    # together at most an eighth of the budget
                    row = s.estimated_size() / max(s.height, 1)
                    s_chunk = int(min(16 * 1024, max(1024, budget / 8 / (len(plan.parts) * row))))
                s_files.append(work / f"s{b}.parquet")
                s.write_parquet(s_files[-1], compression="lz4", row_group_size=s_chunk)
            del s
            if ev_p is not None:
                # only the new columns: the input's own are streamed from the input again
                if ev_cols is None:
                    names = [c for c in _EV_COLS if c in res.events.columns]
                    ev_cols = _EventCols(names, [c for c in _EV_NUMERIC if c in names])
                ev_cols.spill(res.events, work / f"e{b}.u32", bounds, text_sid)
            del res
    finally:
        frames.close()  # waits for a read in flight: before the spill is removed
    gk = _global_keys(starts, firsts)
    del starts, firsts
    keep = None if rules.select is None else list(rules.select)

    def sessions_file(stop: threading.Event | None = None) -> None:
        assert out_p is not None
        step = max(1000, slice_rows // 2)
        _write_sessions(out_p, gk, s_files, s_chunk, sess_schema, keep, step, stop)

    def events_file() -> None:
        assert ev_p is not None and ev_cols is not None
        with _lean_scans():  # the input is streamed a second time
            _write_events(lf, ev_p, bounds, ev_cols, gk, rules.key, work, n)

    if out_p is not None and ev_p is not None and pl.thread_pool_size() > 2:
        together(sessions_file, events_file)
    elif out_p is not None and ev_p is not None:
        # Two cores: Polars' events sink already uses both, and the sessions file written
        # alongside only contended with it (10 M events, idle box: the two phases 21 s
        # together, 17.4 s one after the other). Events first, as `together` leaves it
        # when the sessions file fails.
        events_file()
        sessions_file()
    elif out_p is not None:
        sessions_file()
    elif ev_p is not None:
        events_file()
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
