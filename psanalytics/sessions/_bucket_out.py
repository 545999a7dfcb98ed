"""The bounded path's outputs: the sessions file in ``session_key`` order and the events
file in input order, built slice by slice from the buckets' spill (see ``_buckets``).

Every output slice takes a contiguous run of each bucket's rows (the buckets are in input
order and ranked keys increase inside a bucket), so each spill file is read front to back
once: the sessions through a :class:`_Cursor`, the per-event numbers as raw ``uint32``
ranges (:class:`_EventCols`). The events file streams through one Polars query
(:func:`_write_events`); the sessions file is appended slice by slice, after it on two
cores, beside it on a worker thread (:func:`together`) when Polars has more threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from psanalytics.sessions._rules import SessionizeError
from psanalytics.sessions._writing import Writer, csv_ready

#: The global input row carried through the buckets.
ROW = "__psa_row"
_EV_COLS = ("session_key", "session_id", "session_index", "event_index_in_session")
_EV_NUMERIC = ("session_key", "session_index", "event_index_in_session")
_CHANGED = "the input changed while it was being sessionized (row count differs between reads)"


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


class _Stopped(Exception):
    """The other output failed: the sessions file is abandoned."""


def together(first: Callable[[threading.Event], None], second: Callable[[], None]) -> None:
    """Run ``first(stop)`` on a worker thread while ``second()`` runs here (the sessions
    file while Polars streams the events file: they share nothing). If ``second`` fails or
    is interrupted (Ctrl-C, SIGTERM arrive on this thread), ``stop`` is set and ``first`` is
    waited for, so it has removed its partial file before the error goes on."""
    stop = threading.Event()
    box: list[BaseException] = []

    def run() -> None:
        try:
            first(stop)
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the main thread
            box.append(exc)

    worker = threading.Thread(target=run, name="psa-sessions-file", daemon=True)
    worker.start()
    try:
        second()
    except BaseException:
        stop.set()
        worker.join()
        raise
    worker.join()
    if box:
        raise box[0]


class _Cursor:
    """Reads one spill file front to back in chunks of ``chunk`` rows (its row groups), so
    every row group is decoded once however the output slices cut it: the outputs take
    each bucket's rows in order, a contiguous run per slice."""

    def __init__(self, path: Path, chunk: int) -> None:
        self.path, self.chunk, self.pos = path, chunk, 0
        self.buf: pl.DataFrame | None = None

    def take(self, n: int) -> pl.DataFrame:
        parts = []
        while n > 0:
            if self.buf is None or self.buf.height == 0:
                self.buf = pl.scan_parquet(self.path).slice(self.pos, self.chunk).collect()
                self.pos += self.buf.height
                if self.buf.height == 0:  # pragma: no cover - the spill is ours
                    raise SessionizeError(f"spill file {self.path.name} ended early")
            k = min(n, self.buf.height)
            parts.append(self.buf.head(k))
            self.buf = self.buf.slice(k)
            n -= k
        return parts[0] if len(parts) == 1 else pl.concat(parts, rechunk=False)


def _write_sessions(
    out_p: Path,
    gk: list[np.ndarray],
    s_files: list[Path],
    chunk: int,
    schema: pl.Schema,
    keep: list[str] | None,
    step: int,
    stop: threading.Event | None = None,
) -> None:
    """The sessions file in ``session_key`` order, ``step`` keys at a time: each key range
    is one contiguous run of every bucket's sessions, read in order by a :class:`_Cursor`.
    ``stop`` set (the events file failed or was interrupted) abandons the file."""
    ns = sum(k.size for k in gk)
    cursors = [_Cursor(f, chunk) for f in s_files]
    w = Writer(out_p)
    try:
        for k0 in range(0, ns, step):
            if stop is not None and stop.is_set():
                raise _Stopped
            k1 = min(ns, k0 + step)
            pieces = []
            for b, keys_b in enumerate(gk):
                l0, l1 = np.searchsorted(keys_b, [k0, k1])
                if l1 > l0:
                    piece = cursors[b].take(int(l1 - l0))
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


@dataclass
class _EventCols:
    """Where the bounded path keeps the per-event session columns of every bucket until
    the events file is written: the numeric ones (``session_key`` still bucket-local,
    ``session_index``, ``event_index_in_session``) as raw ``uint32`` rows next to the input
    row (``ROW`` first), one file per bucket, read back range by range with
    :func:`numpy.fromfile` (no decoding, no per-slice sort); ``session_id`` is rebuilt from
    the input's key and ``session_index`` (what the kernel computes it from) when the key is
    one column, else spilled as text (``sid_files``) and read in order."""

    names: list[str]  # the session columns of the events file, in its order
    numeric: list[str]  # of those, the uint32 ones, in the files' column order (after ROW)
    files: list[Path] = field(default_factory=list)
    offsets: list[np.ndarray] = field(default_factory=list)  # per bucket: rows at bounds
    sid_files: list[Path] | None = None

    def spill(self, ev: pl.DataFrame, path: Path, bounds: np.ndarray, text_sid: bool) -> None:
        rows = ev.get_column(ROW).to_numpy()
        self.offsets.append(np.searchsorted(rows, bounds))
        arr = np.empty((ev.height, 1 + len(self.numeric)), dtype=np.uint32)
        arr[:, 0] = rows
        for j, c in enumerate(self.numeric, start=1):
            arr[:, j] = ev.get_column(c).to_numpy()
        arr.tofile(path)
        self.files.append(path)
        if text_sid:
            sid = path.with_suffix(".sid.parquet")
            ev.select("session_id").write_parquet(sid, compression="lz4", row_group_size=64 * 1024)
            if self.sid_files is None:
                self.sid_files = []
            self.sid_files.append(sid)

    def slice_cols(
        self, i: int, base: int, m: int, gk: list[np.ndarray], sid: list[_Cursor] | None
    ) -> tuple[np.ndarray, pl.Series | None]:
        """Rows ``base .. base+m`` of the numeric columns (global keys), and the text
        ``session_id`` if it is spilled."""
        width = 1 + len(self.numeric)
        out = np.empty((m, len(self.numeric)), dtype=np.uint32)
        kcol = self.numeric.index("session_key") if "session_key" in self.numeric else -1
        pos_parts, sid_parts = [], []
        for b, off in enumerate(self.offsets):
            l0, l1 = int(off[i]), int(off[i + 1])
            if l1 <= l0:
                continue
            a = np.fromfile(self.files[b], dtype=np.uint32, count=(l1 - l0) * width,
                            offset=l0 * width * 4).reshape(-1, width)  # fmt: skip
            pos = a[:, 0].astype(np.int64) - base
            vals = a[:, 1:]
            if kcol >= 0:
                vals[:, kcol] = gk[b][vals[:, kcol]]
            out[pos] = vals
            if sid is not None:
                pos_parts.append(pos)
                sid_parts.append(sid[b].take(l1 - l0).get_column("session_id"))
        if sid is None:
            return out, None
        where = np.empty(m, dtype=np.int64)  # input row -> its place in the pieces
        where[np.concatenate(pos_parts)] = np.arange(m, dtype=np.int64)
        return out, pl.concat(sid_parts).gather(where)


def _write_events(
    lf: pl.LazyFrame,
    ev_p: Path,
    bounds: np.ndarray,
    cols: _EventCols,
    gk: list[np.ndarray],
    key: Sequence[str],
    work: Path,
    n: int,
) -> None:
    """The events file in input order. First the buckets' session columns are put in input
    order, slice by slice, into small Arrow IPC files (keys made global); then one Polars
    streaming query reads the input again next to them (a horizontal concat) and sinks the
    file, so Polars' own writer encodes it (in parallel, as the in-memory path's
    ``write_parquet`` does). ``session_id`` is built in that query from the key, as the
    kernel builds it, unless it was spilled (a key of several columns)."""
    sid_cursors = None
    if cols.sid_files is not None:
        sid_cursors = [_Cursor(f, 64 * 1024) for f in cols.sid_files]
    side_files = []
    for i in range(len(bounds) - 1):
        base, m = int(bounds[i]), int(bounds[i + 1] - bounds[i])
        out, sid = cols.slice_cols(i, base, m, gk, sid_cursors)
        side = [pl.Series(c, out[:, j]) for j, c in enumerate(cols.numeric)]
        if sid is not None:
            side.append(sid.alias("session_id"))
        side_files.append(work / f"ev{i:06d}.arrow")
        pl.DataFrame(side).write_ipc(side_files[-1])
    names = lf.collect_schema().names()
    new = []
    for c in cols.names:
        if c == "session_id" and sid_cursors is None:
            # what the kernel builds: "{key}:{session_index}" (the key as text)
            new.append(
                pl.concat_str(
                    [
                        pl.col(key[0]).cast(pl.String),
                        pl.lit(":"),
                        pl.col("session_index").cast(pl.String),
                    ]  # fmt: skip
                ).alias("session_id")
            )
        else:
            new.append(pl.col(c))
    query = pl.concat([lf, pl.scan_ipc(side_files)], how="horizontal").select(*names, *new)
    sink(query, ev_p, n)


def sink(query: pl.LazyFrame, path: Path, n: int) -> None:
    """Stream ``query`` into ``path`` (Parquet, or CSV with nested columns as text) through
    ``<name>.partial``; it must give ``n`` rows (else the input changed between its reads)."""
    tmp = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        try:
            if path.suffix.lower() == ".csv":
                csv_ready(query).sink_csv(tmp)
                rows = int(pl.scan_csv(tmp).select(pl.len()).collect().item())
            else:
                query.sink_parquet(tmp)
                rows = int(pl.scan_parquet(tmp).select(pl.len()).collect().item())
        except pl.exceptions.ShapeError:
            # the horizontal concat of a query reading the input again next to columns of
            # the first read's length (Polars 2 refuses unequal heights, never pads)
            raise SessionizeError(_CHANGED) from None
        if rows != n:
            raise SessionizeError(_CHANGED)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
