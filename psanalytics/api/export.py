"""Export to partitioned Parquet with a checkpoint, resumable.

``export(pager, path, ...)`` writes ``path/<YYYY-MM-DD>/part-<window>.parquet`` (one file
per planned window, under the day it starts) and ``path/_checkpoint.json`` (arguments,
planned windows, finished windows); :meth:`ProfileStore.export
<psanalytics.api.profile_store.ProfileStore.export>` is the public entry.

The checkpoint is the one shared format (``psanalytics/_checkpoint.py``: JSON lines,
fsynced append): a header with the plan (``version``, ``args``, ``windows``, and
``top_up`` / ``overflow`` when there are), one ``{"done": key, "file", "rows", ...}`` line
per finished window, and ``{"complete": bool}`` when the run ends. :func:`read_checkpoint`
folds it into one dict; checkpoints written before (one JSON object) still load.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from psanalytics import schema
from psanalytics._checkpoint import CheckpointFile, fsync_path, read_lines
from psanalytics._time import format_ns, from_ns, parse_duration, to_ns
from psanalytics.api._paging import (
    FilterLike,
    Pager,
    TimeLike,
    WindowReport,
    _filter_text,
    settled_end,
)
from psanalytics.api.http import RequestStats, redact
from psanalytics.api.windows import Window, WindowOverflowError
from psanalytics.errors import ArgumentError, PsaError

__all__ = ["ExportReport", "ExportError", "export", "read_checkpoint", "CHECKPOINT", "LOCK"]

#: The checkpoint's file name inside an export folder.
CHECKPOINT = "_checkpoint.json"
#: The lock file an export holds while it writes (two exports never share a folder).
LOCK = "_export.lock"


class ExportError(PsaError):
    """The export cannot write where it was asked to (a folder that is not ours, another
    export writing there); the message says what to do."""


@dataclass
class ExportReport:
    """Outcome of :meth:`ProfileStore.export`.

    ``windows`` holds one :class:`WindowReport` per planned window (``resumed=True`` for
    windows finished by an earlier run and not fetched again). ``rows`` counts all rows in
    the export, ``fetched_rows`` those fetched by this run.
    """

    path: Path
    windows: list[WindowReport]
    rows: int
    fetched_rows: int
    requests: int
    retries: int
    duration_s: float
    resumed_windows: int
    duplicates: int
    files: list[Path] = field(default_factory=list)
    #: Part files (relative to ``path``) found damaged on resume and fetched again.
    repaired: list[str] = field(default_factory=list)
    #: A top-up's record (from where it fetched again, the look-back, the windows it
    #: replaced); None for a plain export.
    top_up: dict[str, Any] | None = None

    def scan(self) -> pl.LazyFrame:
        """The exported events, lazily, in the canonical schema (time order)."""
        if not self.files:
            return schema.empty_frame().lazy()
        return pl.scan_parquet([str(f) for f in self.files], glob=False)

    def read(self) -> pl.DataFrame:
        """The exported events as one frame."""
        return self.scan().collect()

    def __repr__(self) -> str:
        return (
            f"ExportReport(path={str(self.path)!r}, windows={len(self.windows)}, rows={self.rows:,}, "
            f"fetched_rows={self.fetched_rows:,}, resumed_windows={self.resumed_windows}, "
            f"requests={self.requests}, retries={self.retries}, duplicates={self.duplicates}, "
            f"duration_s={self.duration_s:.2f})"
        )


def export(
    pager: Pager,
    path: str | os.PathLike[str],
    filter: FilterLike = None,
    *,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    resume: bool = True,
    settle: Any = None,
    progress: bool | None = None,
    concurrency: int | None = None,
    overwrite: bool = False,
    top_up: bool = False,
    look_back: Any = "1h",
    _after_window: Callable[[int], None] | None = None,
) -> ExportReport:
    """Write the matching events to ``path`` as Parquet, one file per window.

    Layout: ``path/<YYYY-MM-DD>/part-<window>.parquet`` (the day the window starts) and
    ``path/_checkpoint.json`` (the plan and the windows finished). If an earlier run
    with the same filter and range was interrupted and ``resume`` is true, finished
    windows are kept and not fetched again. Otherwise (``resume=False``, different
    arguments, or an export that had completed) the old part files are removed and
    everything is fetched again, so re-running never duplicates rows. Files are
    written atomically; read them back with ``report.scan()`` or
    ``pl.scan_parquet(f"{path}/*/*.parquet")``. ``settle="5m"`` exports only what is at
    least that old; a resumed export keeps the end its plan was made with.

    Only files our checkpoint lists are ever deleted, never through a symbolic link or
    outside ``path``; a non-empty folder without our checkpoint is refused unless
    ``overwrite=True`` (write alongside). Finished parts are fsynced (file and folder)
    before the checkpoint names them; a resume checks each listed part (size and row
    count) and fetches a damaged one again (``report.repaired``). An instant holding more
    events than one query returns does not stop the rest: everything else is written and
    checkpointed, then :class:`WindowOverflowError` names the instant (``.report`` holds
    the report). A lock file (``_export.lock``) keeps a second export out of the folder.

    ``top_up=True`` on a finished export with the same filter and start and a later
    ``end`` fetches only what it does not have: the windows after the old end, and the
    last ``look_back`` (default ``"1h"``; a duration or seconds) of what it has, again,
    for events that arrived late. The windows that reach into the look-back are replaced
    exactly (their parts are re-planned from the first of them on); everything before is
    kept untouched and not fetched. The checkpoint records the top-up (``top_up``: from
    where, the look-back, the windows replaced), so a killed top-up resumes like any
    export. Without a finished export to extend it behaves as a normal export.
    """
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise ExportError(f"{root} is a file, not a folder: export writes a folder of Parquet parts")
    root.mkdir(parents=True, exist_ok=True)
    with _Lock(root):
        return _export(pager, root, filter, start=start, end=end, resume=resume, settle=settle,
                       progress=progress, concurrency=concurrency, overwrite=overwrite,
                       top_up=top_up, look_back=look_back, _after_window=_after_window)


@dataclass
class _Plan:
    """What one export run does: its checkpoint header (``state``) and what is done."""

    state: dict[str, Any]
    windows: list[Window]
    done: dict[str, dict[str, Any]]
    overflow: list[Window]
    repaired: list[str]


def _export(pager: Pager, root: Path, filter: FilterLike, *, start: TimeLike | None,
            end: TimeLike | None, resume: bool, settle: Any, progress: bool | None,
            concurrency: int | None, overwrite: bool, top_up: bool = False,
            look_back: Any = "1h", _after_window: Callable[[int], None] | None = None
            ) -> ExportReport:
    t0 = time.perf_counter()
    ftext = _filter_text(filter)
    stats = RequestStats()
    plan = _plan_export(pager, root, ftext, start=start, end=end, resume=resume, settle=settle,
                        overwrite=overwrite, top_up=top_up, look_back=look_back, stats=stats)
    done = plan.done
    ck = CheckpointFile(root / CHECKPOINT)
    ck.start(plan.state, [{"done": k, **v} for k, v in done.items()])
    todo = [w for w in plan.windows if w.key not in done]
    finished = [0]

    def write(i: int, w: Window, frame: pl.DataFrame, rep: WindowReport) -> None:
        rel = _part_name(w)
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        frame.write_parquet(tmp)
        fsync_path(tmp)
        os.replace(tmp, target)
        fsync_path(target.parent)  # the rename itself is durable before the checkpoint says so
        rep.file = rel
        done[w.key] = {"file": rel, "rows": frame.height, "bytes": target.stat().st_size,
                       "requests": rep.requests, "retries": rep.retries}
        ck.append({"done": w.key, **done[w.key]})
        finished[0] += 1
        if _after_window is not None:
            _after_window(finished[0])

    try:
        fetched = pager._run_windows(ftext, todo, on_done=write, progress=progress,
                                    concurrency=concurrency, desc="export")
        ck.append({"complete": not plan.overflow})
    finally:
        ck.close()
    return _report(root, plan, fetched, stats, t0)


def _plan_export(pager: Pager, root: Path, ftext: str | None, *, start: TimeLike | None,
                 end: TimeLike | None, resume: bool, settle: Any, overwrite: bool, top_up: bool,
                 look_back: Any, stats: RequestStats) -> _Plan:
    """Resume the checkpoint's plan, top it up, or plan afresh (removing our old parts)."""
    ck_path = root / CHECKPOINT
    args = {
        "filter": ftext,
        "start": None if start is None else format_ns(to_ns(start)),
        "end": None if end is None else format_ns(to_ns(end)),
        "url": redact(pager.url),
    }
    if settle is not None:  # (absent otherwise: checkpoints from before it still resume)
        args["settle"] = str(settle)
    old = _read_checkpoint(ck_path)
    if old is None and not overwrite and any(p.name not in (LOCK, CHECKPOINT) for p in root.iterdir()):
        raise ExportError(
            f"{root} is not empty and holds no psanalytics export ({ck_path}): refusing to write "
            "into it; choose an empty folder, or pass overwrite=True to write alongside (nothing "
            "that is not ours is ever deleted)")
    windows: list[Window]
    top: dict[str, Any] | None = None
    done: dict[str, dict[str, Any]] = {}
    repaired: list[str] = []
    overflow: list[Window] = []
    if resume and old and old.get("args") == args and not old.get("complete"):
        windows = [Window(int(w["start"]), int(w["end"]), w.get("count")) for w in old["windows"]]
        overflow = [Window(int(w["start"]), int(w["end"]), w.get("count")) for w in old.get("overflow_windows", [])]
        for k, v in old.get("done", {}).items():
            problem = _part_problem(root, v)
            if problem is None:
                done[k] = v
            elif problem != "missing":
                repaired.append(str(v["file"]))
                _unlink_ours(root, str(v["file"]))
        if repaired:
            warnings.warn(f"export {root}: {len(repaired)} finished part file"
                          f"{'s were' if len(repaired) > 1 else ' was'} damaged "
                          f"({', '.join(repaired[:3])}{', ...' if len(repaired) > 3 else ''}); "
                          "fetching those windows again", stacklevel=4)
    elif top_up and old and old.get("complete") and _extends(old.get("args"), args):
        windows, done, top = _top_up_plan(pager, root, old, ftext, settled_end(end, settle),
                                          look_back, stats, overflow)
    else:
        _clean_export(root, old)
        windows, _ = pager._plan(ftext, start, settled_end(end, settle), stats, overflow=overflow)
    _clean_tmp(root)
    state: dict[str, Any] = {
        "version": 1,
        "args": args,
        "windows": [{"start": w.start, "end": w.end, "count": w.count, "key": w.key,
                     "file": _part_name(w)} for w in windows],
    }
    if top is not None:
        state["top_up"] = top
    elif old and old.get("top_up") and old.get("args") == args and not old.get("complete"):
        state["top_up"] = old["top_up"]  # a top-up resumed: still that top-up
    if overflow:
        state["overflow_windows"] = [{"start": w.start, "end": w.end, "count": w.count} for w in overflow]
        state["overflow"] = [{"instant": format_ns(w.start), "count": w.count} for w in overflow]
    return _Plan(state, windows, done, overflow, repaired)


def _report(root: Path, plan: _Plan, fetched: list[WindowReport], stats: RequestStats,
            t0: float) -> ExportReport:
    """The run's report; :class:`WindowOverflowError` (carrying it) when an instant overflowed."""
    windows, done, overflow = plan.windows, plan.done, plan.overflow
    by_key = {r.key: r for r in fetched}
    reports: list[WindowReport] = []
    for w in windows:
        if w.key in by_key:
            reports.append(by_key[w.key])
        else:
            d = done[w.key]
            reports.append(WindowReport(key=w.key, start=w.start_time, end=w.end_time,
                                        planned=w.count, rows=d["rows"], file=d["file"],
                                        resumed=True))
    files = [root / done[w.key]["file"] for w in windows if w.key in done]
    rows = sum(done[w.key]["rows"] for w in windows if w.key in done)
    duplicates = 0
    if files:
        # Informational: events identical in every field to another one here. The source
        # may hold such pairs (tracked twice without a TrackId); they are kept, not dropped.
        ids = pl.scan_parquet([str(f) for f in files], glob=False).select(
            n=pl.len(), u=pl.struct(pl.all()).hash().n_unique()).collect()
        duplicates = int(ids["n"][0] - ids["u"][0])
    report = ExportReport(
        path=root, windows=reports, rows=rows,
        fetched_rows=sum(r.rows for r in fetched),
        requests=stats.requests + sum(r.requests for r in fetched),
        retries=stats.retries + sum(r.retries for r in fetched),
        duration_s=time.perf_counter() - t0,
        resumed_windows=sum(w.key not in by_key for w in windows), duplicates=duplicates, files=files,
        repaired=plan.repaired, top_up=plan.state.get("top_up"),
    )
    if overflow:
        w = max(overflow, key=lambda o: o.count or 0)
        err = WindowOverflowError(w.start, w.count or 0, pager_limit())
        more = (f" ({len(overflow) - 1} more such instant{'s' if len(overflow) > 2 else ''}: see "
                f"{CHECKPOINT} 'overflow')" if len(overflow) > 1 else "")
        err.args = (f"{err}{more} every other window was exported: {rows:,} events in "
                    f"{len(files)} files under {root}; the checkpoint keeps the instant(s) open, so "
                    "an export with the same arguments fetches nothing again and says this again.",)
        err.report = report  # type: ignore[attr-defined]
        err.overflow = [(o.start, o.count) for o in overflow]  # type: ignore[attr-defined]
        raise err
    return report


def _extends(old_args: Any, args: dict[str, Any]) -> bool:
    """The same export (filter, start, url, settle) with a later end."""
    if not isinstance(old_args, dict):
        return False
    same = {k: v for k, v in old_args.items() if k != "end"} == {k: v for k, v in args.items() if k != "end"}
    if not same:
        return False
    if args.get("end") is None:
        return True
    return old_args.get("end") is None or to_ns(args["end"]) > to_ns(old_args["end"])


def _top_up_plan(pager: Pager, root: Path, old: dict[str, Any], ftext: str | None,
                 end: TimeLike | None, look_back: Any, stats: RequestStats,
                 overflow: list[Window]) -> tuple[list[Window], dict[str, dict[str, Any]], dict[str, Any]]:
    """(windows, done, record) of a top-up: the old windows before the look-back kept as
    they are, the rest re-planned from the first window reaching into the look-back."""
    lag = parse_duration(look_back, name="look_back")
    if lag < 0:
        raise ArgumentError(f"look_back must not be negative, got {look_back!r}")
    old_windows = sorted((Window(int(w["start"]), int(w["end"]), w.get("count")) for w in old["windows"]),
                         key=lambda w: w.start)
    old_done = old.get("done") or {}
    if old_windows:
        old_hi = max(w.end for w in old_windows)
        if old["args"].get("end") is not None:
            old_hi = max(old_hi, to_ns(old["args"]["end"]))
        cut = old_hi - lag
        kept = [w for w in old_windows if w.end <= cut]
        replaced = [w for w in old_windows if w.end > cut]
        lo = min(w.start for w in replaced) if replaced else old_hi
    else:
        start = old["args"].get("start")
        kept, replaced, lo = [], [], (None if start is None else to_ns(start))
    for w in replaced:  # fetched again below; the source still holds them
        d = old_done.get(w.key)
        if isinstance(d, dict) and d.get("file"):
            _unlink_ours(root, str(d["file"]))
    new, _ = pager._plan(ftext, lo, end, stats, overflow=overflow)
    done = {w.key: old_done[w.key] for w in kept if w.key in old_done}
    record = {"from": None if lo is None else format_ns(lo), "look_back": str(look_back),
              "replaced": [w.key for w in replaced], "previous_end": old["args"].get("end")}
    return kept + new, done, record


def pager_limit() -> int:
    from psanalytics.api.windows import RESULT_WINDOW

    return RESULT_WINDOW


def _part_name(w: Window) -> str:
    """Where a window's part file goes, relative to the export folder."""
    return f"{from_ns(w.start).strftime('%Y-%m-%d')}/part-{w.key}.parquet"


def _part_problem(root: Path, entry: dict[str, Any]) -> str | None:
    """None when a finished part is there and whole (size and row count as recorded),
    else "missing" or what is wrong with it."""
    target = _our_path(root, str(entry.get("file", "")))
    if target is None or not target.exists():
        return "missing"
    size = entry.get("bytes")
    if size is not None and target.stat().st_size != size:
        return f"{target.stat().st_size} bytes, expected {size}"
    try:
        import pyarrow.parquet as pq

        n = pq.ParquetFile(target).metadata.num_rows
    except Exception as exc:  # noqa: BLE001 - any unreadable footer is a broken part
        return f"unreadable ({type(exc).__name__})"
    if n != entry.get("rows"):
        return f"{n} rows, expected {entry.get('rows')}"
    return None


class _Lock:
    """An exclusive lock on ``root/_export.lock`` (flock: released when the process
    ends, however it ends); a second export of the same folder is refused at once."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK
        self.fd: int | None = None

    def __enter__(self) -> _Lock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown process"
            os.close(fd)
            raise ExportError(f"another export is writing into {self.path.parent} ({holder}); wait "
                              "for it to finish, or export somewhere else") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the flock
            self.fd = None

# ------------------------------------------------------------------ preview


def read_checkpoint(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """An export folder's checkpoint as one dict (``version``, ``args``, ``windows``,
    ``done`` {key: part}, ``complete``, and ``top_up`` / ``overflow`` when recorded), or
    None when there is none. Reads the shared JSON-lines format and the single JSON object
    earlier versions wrote."""
    return _read_checkpoint(Path(folder) / CHECKPOINT)


def _read_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:  # earlier versions: one JSON object, rewritten whole per window
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict) and "checkpoint" not in data:
        return data
    header, records = read_lines(path)
    if header is None:
        return None
    state = {k: v for k, v in header.items() if k != "checkpoint"}
    state["done"] = {}
    state["complete"] = False
    for rec in records:
        if "done" in rec:
            state["done"][rec["done"]] = {k: v for k, v in rec.items() if k != "done"}
        elif "complete" in rec:
            state["complete"] = bool(rec["complete"])
    return state


_DAY_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


_PART = re.compile(r"^\d{4}-\d{2}-\d{2}/part-\d+_\d+\.parquet$")


def _our_path(root: Path, rel: str) -> Path | None:
    """``root/rel`` when ``rel`` has the shape of one of our part files and nothing on the
    way is a symbolic link (a checkpoint must never lead a delete elsewhere); else None."""
    if not _PART.match(rel):
        return None
    day = root / rel.split("/", 1)[0]
    if day.is_symlink() or (day.exists() and not day.is_dir()):
        return None
    return root / rel


def _unlink_ours(root: Path, rel: str) -> None:
    target = _our_path(root, rel)
    if target is not None and not target.is_symlink():
        target.unlink(missing_ok=True)
        try:
            target.parent.rmdir()  # only when empty: the user may keep files there
        except OSError:
            pass


def _clean_export(root: Path, old: dict[str, Any] | None) -> None:
    """Remove the part files an earlier export of ours wrote: exactly those its
    checkpoint lists (finished or planned), never anything else."""
    if old is None:
        return
    names = {str(v.get("file", "")) for v in (old.get("done") or {}).values() if isinstance(v, dict)}
    names |= {str(w.get("file", "")) for w in (old.get("windows") or []) if isinstance(w, dict)}
    for rel in sorted(names):
        _unlink_ours(root, rel)
    (root / CHECKPOINT).unlink(missing_ok=True)


def _clean_tmp(root: Path) -> None:
    """Remove temporary files a killed export of ours left (our names only, no links)."""
    for d in root.iterdir():
        if d.is_dir() and not d.is_symlink() and _DAY_DIR.match(d.name):
            for f in d.iterdir():
                if re.fullmatch(r"part-\d+_\d+\.parquet\.tmp\d+", f.name) and not f.is_symlink():
                    f.unlink(missing_ok=True)
    for f in root.iterdir():
        if re.fullmatch(re.escape(CHECKPOINT) + r"\.tmp\d+\.\d+", f.name):
            f.unlink(missing_ok=True)

