"""Export to partitioned Parquet with a checkpoint, resumable.

``export(pager, path, ...)`` writes ``path/<YYYY-MM-DD>/part-<window>.parquet`` (one file
per planned window, under the day it starts) and ``path/_checkpoint.json`` (arguments,
planned windows, finished windows); :meth:`ProfileStore.export
<psanalytics.api.profile_store.ProfileStore.export>` is the public entry.
"""

from __future__ import annotations

import os
import re
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from psanalytics import schema
from psanalytics._time import format_ns, from_ns, to_ns
from psanalytics.api._paging import (
    FilterLike,
    Pager,
    TimeLike,
    WindowReport,
    _filter_text,
    settled_end,
)
from psanalytics.api.http import RequestStats, redact
from psanalytics.api.windows import Window

__all__ = ["ExportReport", "export", "CHECKPOINT"]

#: The checkpoint's file name inside an export folder.
CHECKPOINT = "_checkpoint.json"


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

    def scan(self) -> pl.LazyFrame:
        """The exported events, lazily, in the canonical schema (time order)."""
        if not self.files:
            return schema.empty_frame().lazy()
        return pl.scan_parquet([str(f) for f in self.files])

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
    """
    t0 = time.perf_counter()
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    ftext = _filter_text(filter)
    stats = RequestStats()
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
    windows: list[Window]
    done: dict[str, dict[str, Any]] = {}
    if resume and old and old.get("args") == args and not old.get("complete"):
        windows = [Window(int(w["start"]), int(w["end"]), w.get("count")) for w in old["windows"]]
        done = {k: v for k, v in old.get("done", {}).items() if (root / v["file"]).exists()}
    else:
        _clean_export(root, old)
        windows, _ = pager._plan(ftext, start, settled_end(end, settle), stats)
    for tmp in root.glob("*/*.tmp*"):
        tmp.unlink(missing_ok=True)
    state = {
        "version": 1,
        "args": args,
        "windows": [{"start": w.start, "end": w.end, "count": w.count, "key": w.key} for w in windows],
        "done": done,
        "complete": False,
    }
    _atomic_write(ck_path, orjson.dumps(state, option=orjson.OPT_INDENT_2))
    todo = [w for w in windows if w.key not in done]
    finished = [0]

    def write(i: int, w: Window, frame: pl.DataFrame, rep: WindowReport) -> None:
        day = from_ns(w.start).strftime("%Y-%m-%d")
        rel = f"{day}/part-{w.key}.parquet"
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        frame.write_parquet(tmp)
        os.replace(tmp, target)
        rep.file = rel
        done[w.key] = {"file": rel, "rows": frame.height, "requests": rep.requests,
                       "retries": rep.retries}
        _atomic_write(ck_path, orjson.dumps(state, option=orjson.OPT_INDENT_2))
        finished[0] += 1
        if _after_window is not None:
            _after_window(finished[0])

    fetched = pager._run_windows(ftext, todo, on_done=write, progress=progress,
                                concurrency=concurrency, desc="export")
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
        ids = pl.scan_parquet([str(f) for f in files]).select(
            n=pl.len(), u=pl.col("TrackId").filter(pl.col("TrackId") != "").n_unique(),
            e=(pl.col("TrackId") == "").sum(),
        ).collect()
        duplicates = int(ids["n"][0] - ids["u"][0] - ids["e"][0])
        if duplicates:
            warnings.warn(f"export {root}: {duplicates} duplicate TrackIds across windows "
                          "(events moved in time while exporting?)", stacklevel=2)
    state["complete"] = True
    _atomic_write(ck_path, orjson.dumps(state, option=orjson.OPT_INDENT_2))
    return ExportReport(
        path=root, windows=reports, rows=rows,
        fetched_rows=sum(r.rows for r in fetched),
        requests=stats.requests + sum(r.requests for r in fetched),
        retries=stats.retries + sum(r.retries for r in fetched),
        duration_s=time.perf_counter() - t0,
        resumed_windows=len(windows) - len(todo), duplicates=duplicates, files=files,
    )

# ------------------------------------------------------------------ preview


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.{threading.get_ident()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)



def _read_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


_DAY_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _clean_export(root: Path, old: dict[str, Any] | None) -> None:
    """Remove part files of an earlier export in ``root`` (only files we wrote)."""
    for d in root.iterdir():
        if d.is_dir() and _DAY_DIR.match(d.name):
            for f in d.glob("part-*.parquet*"):
                f.unlink()
            try:
                d.rmdir()
            except OSError:
                pass  # the user keeps other files there
    (root / CHECKPOINT).unlink(missing_ok=True)

