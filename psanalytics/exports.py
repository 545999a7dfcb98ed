"""Read and write track-event exports: NDJSON, JSON (array or API pages), CSV, Parquet.

``read_events(source)`` accepts a file, a folder (read recursively; files whose name starts
with ``_`` or ``.`` such as checkpoints are ignored), a glob (``exports/*.ndjson.gz``) or a
list of those, and returns the canonical events frame of :mod:`psanalytics.schema`.

Formats are chosen from the file name (after an optional ``.gz`` or ``.zst``):

============================ ===================================================================
``.ndjson`` ``.jsonl``        one event object per line (API PascalCase or Tracking camelCase);
                              a line may also be a saved API page ``{"items": [...]}``
``.json``                     a JSON array of events, one API page ``{"items": [...]}``, or a
                              list of pages (NDJSON content named ``.json`` is detected)
``.csv``                      one column per field; nested fields flattened as ``User.Email``
``.parquet`` ``.pq``          any column layout that :func:`psanalytics.schema.normalize` accepts
============================ ===================================================================

Bad input raises :class:`~psanalytics.errors.InputError` naming the file and the line.
With ``on_error="skip"`` bad lines (or bad items of a JSON array) are left out, counted
and reported: one :class:`SkippedInputWarning` says how many and where, and
:func:`read_events_with_report` returns the full :class:`ReadReport` next to the frame.
Nothing is dropped: ``Headers`` and ``User.Info`` are kept as JSON text, and fields that
are not part of the schema are kept in the ``Extras`` column (one JSON object per event,
by the fields' own names); writing the frame back gives the same keys and values.

Why this file is long: every input format's reader (NDJSON, JSON, CSV, Parquet,
compressed or not) reports bad input one way (``ReadReport``, ``on_error``, file:line),
and the writers mirror the readers; they change together. The NDJSON parsing itself
lives in :mod:`psanalytics.wire.ndjson`.
"""

from __future__ import annotations

import csv
import glob as _glob
import gzip
import io
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
import polars as pl

from psanalytics import _files, schema
from psanalytics._files import read_bytes
from psanalytics.errors import ArgumentError, InputError, PsaWarning, SchemaError
from psanalytics.wire import api_json, ndjson

__all__ = [
    "FORMATS",
    "ReadReport",
    "SkippedInputWarning",
    "SkippedLine",
    "detect_format",
    "expand_sources",
    "read_events",
    "read_events_with_report",
    "scan_events",
    "write_events",
]

Format = Literal["ndjson", "json", "pages", "csv", "parquet"]
OnError = Literal["raise", "skip"]
#: Formats understood by :func:`read_events` / :func:`write_events`.
FORMATS: tuple[str, ...] = ("ndjson", "json", "pages", "csv", "parquet")
_SUFFIXES: dict[str, str] = {
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_COMPRESSIONS = (".gz", ".zst")
_MAX_LISTED = 20

PathLike = str | os.PathLike[str]
Source = PathLike | Sequence[PathLike]


class SkippedInputWarning(PsaWarning):
    """Emitted once per read when ``on_error="skip"`` left bad lines out.

    The full :class:`ReadReport` is available as the ``report`` attribute of the warning.
    """

    def __init__(self, message: str, report: ReadReport):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class SkippedLine:
    """One input record that was left out: where, and why."""

    path: str
    line: int | None
    reason: str
    item: int | None = None  # 0-based index inside a JSON array/page, when not line-based

    def where(self) -> str:
        if self.line is not None:
            return f"{self.path}:{self.line}"
        if self.item is not None:
            return f"{self.path}[item {self.item}]"
        return self.path


@dataclass
class ReadReport:
    """What a read did: files read, rows returned, records skipped."""

    files: list[str] = field(default_factory=list)
    rows: int = 0
    skipped: list[SkippedLine] = field(default_factory=list)

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def summary(self) -> str:
        """One line: ``skipped 2 bad records: a.ndjson:3 (not valid JSON ...), ...``."""
        if not self.skipped:
            return f"read {self.rows} events from {len(self.files)} file(s); nothing skipped"
        shown = ", ".join(f"{s.where()} ({s.reason})" for s in self.skipped[:_MAX_LISTED])
        more = f", and {self.n_skipped - _MAX_LISTED} more" if self.n_skipped > _MAX_LISTED else ""
        return f"skipped {self.n_skipped} bad record(s): {shown}{more}"

    def __str__(self) -> str:
        return self.summary()


# --------------------------------------------------------------------------- sources


def _split_suffix(name: str) -> tuple[str, str | None]:
    """``'a.ndjson.gz'`` -> (``'.ndjson'``, ``'.gz'``)."""
    lower = name.lower()
    comp = next((c for c in _COMPRESSIONS if lower.endswith(c)), None)
    if comp:
        lower = lower[: -len(comp)]
    return Path(lower).suffix, comp


def detect_format(path: PathLike) -> str | None:
    """Format name for a file name (``ndjson``, ``json``, ``csv``, ``parquet``) or None."""
    suffix, _ = _split_suffix(os.fspath(path))
    return _SUFFIXES.get(suffix)


def _is_data_file(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(("_", ".")) and detect_format(p) is not None


def expand_sources(source: Source) -> list[Path]:
    """The files a source names: a file, a folder (recursive), a glob, or a list of those."""
    items: Iterable[PathLike]
    if isinstance(source, (str, os.PathLike)):
        items = [source]
    else:
        items = list(source)
    out: list[Path] = []
    for item in items:
        text = os.fspath(item)
        p = Path(text).expanduser()
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if _is_data_file(q))
            if not found:
                raise InputError("folder holds no NDJSON, JSON, CSV or Parquet files", path=text)
            out.extend(found)
        elif p.is_file():
            out.append(p)
        elif _glob.has_magic(text):
            found = sorted(
                Path(m) for m in _glob.glob(os.path.expanduser(text), recursive=True)
                if Path(m).is_file()
            )
            if not found:
                raise InputError("no files match this pattern", path=text)
            out.extend(found)
        else:
            raise InputError("no such file or folder", path=text)
    return out


def _read_bytes(path: Path) -> bytes:
    """The one reader of (maybe) compressed files (``_files.read_bytes``), with this
    module's decompression-bomb caps (read at call time, so tests can lower them)."""
    return read_bytes(path, max_ratio=MAX_RATIO, min_cap=MIN_CAP)


#: A compressed file may expand to at most this many times its size (or MIN_CAP bytes,
#: whichever is more): event JSON compresses 10-30x, a decompression bomb 1,000-30,000x.
MAX_RATIO = _files.MAX_RATIO
MIN_CAP = _files.MIN_CAP


# --------------------------------------------------------------------------- per format


def _line_of_row(data: bytes, row: int) -> int:
    """1-based line number of the ``row``-th (0-based) non-blank line."""
    seen = -1
    for i, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            seen += 1
            if seen == row:
                return i
    return row + 1


def _bad_ndjson_lines(data: bytes) -> list[tuple[int, str]]:
    """Every bad line: not JSON, not an object, a field of the wrong type, or an
    EventTime that is not a time (or one a nanosecond time cannot hold)."""
    bad = ndjson.first_bad_ndjson_lines(data, limit=None)
    bad += ndjson.wrong_type_lines(data, limit=None)
    bad_set = {b[0] for b in bad}
    lines: list[int] = []
    times: list[str | None] = []
    for i, raw in enumerate(data.split(b"\n"), start=1):
        if i in bad_set or not raw.strip():
            continue
        obj = orjson.loads(raw)
        t = obj.get("EventTime", obj.get("eventTime", obj.get("eventtime")))
        if isinstance(t, str):
            lines.append(i)
            times.append(t)
    if times:
        for row, reason in schema.time_problems(pl.Series(times, dtype=pl.String)):
            bad.append((lines[row], reason))
    return sorted(bad)


def _drop_lines(data: bytes, numbers: set[int]) -> bytes:
    return b"\n".join(raw for i, raw in enumerate(data.split(b"\n"), start=1) if i not in numbers)


def _records_frame(records: list[Any], path: str, on_error: OnError, report: ReadReport,
                   unknown: set[str], *, lines: list[int] | None = None) -> pl.DataFrame:
    """Normalise decoded event objects; bad items raise or are skipped."""
    good: list[dict[str, Any]] = []
    where: list[int] = []  # index of each good record in ``records``
    for i, rec in enumerate(records):
        if isinstance(rec, dict) and (not rec or any(schema.canonical_name(k) for k in rec)):
            good.append(rec)
            where.append(i)
        elif isinstance(rec, dict):
            shown = ", ".join(list(rec)[:10]) + (", ..." if len(rec) > 10 else "")
            _bad_item(path, on_error, report, lines, i, f"none of the fields is an event field ({shown})")
        else:
            _bad_item(path, on_error, report, lines, i,
                      f"expected an event object, got {type(rec).__name__}")
    if not good:
        return schema.empty_frame()
    frame, _extra = schema._records_to_frame(good)
    if frame.schema["EventTime"] == pl.String:
        problems = schema.time_problems(frame.get_column("EventTime"))
        for r, reason in problems:
            _bad_item(path, on_error, report, lines, where[r], reason)
        bad_rows = [r for r, _ in problems]
        if bad_rows:
            frame = frame.with_row_index("_r").filter(~pl.col("_r").is_in(bad_rows)).drop("_r")
    try:
        return schema._frame_to_canonical(frame)
    except SchemaError as exc:
        raise InputError(_reason(exc), path=path) from None


def _bad_item(path: str, on_error: OnError, report: ReadReport, lines: list[int] | None,
              i: int, reason: str) -> None:
    line = lines[i] if lines is not None else None
    if on_error == "raise":
        raise InputError(reason if line is not None else f"item {i}: {reason}", path=path,
                         line=line)
    report.skipped.append(SkippedLine(path, line, reason, None if line is not None else i))


def _read_ndjson(data: bytes, path: str, on_error: OnError, report: ReadReport,
                 unknown: set[str]) -> pl.DataFrame:
    keys, _ = ndjson._sample_keys(data, 20)
    if keys and {k.lower() for k in keys} & {"items"} and not any(
        schema.canonical_name(k) for k in keys
    ):
        return _read_page_lines(data, path, on_error, report, unknown)
    try:
        return _ndjson_frame(data, unknown)
    except ndjson.NdjsonError as exc:
        if on_error == "raise":
            raise InputError(_reason(exc), path=path, line=exc.line) from None
    except SchemaError as exc:
        row = getattr(exc, "row", None)
        if on_error == "raise":
            line = _line_of_row(data, row) if row is not None else None
            raise InputError(_reason(exc, located=line is not None), path=path, line=line) from None
    bad = _bad_ndjson_lines(data)
    for line, reason in bad:
        report.skipped.append(SkippedLine(path, line, reason))
    cleaned = _drop_lines(data, {b[0] for b in bad})
    return _read_ndjson(cleaned, path, "raise", report, unknown)


def _ndjson_frame(data: bytes, unknown: set[str]) -> pl.DataFrame:
    return ndjson.ndjson_to_frame(data)


def _reason(exc: Exception, *, located: bool = False) -> str:
    """The error's text for an InputError; ``located``: the caller names the line, so a
    frame row number ("at row 12") would only confuse."""
    text = str(exc)
    if not text:
        return type(exc).__name__
    if located:
        text = re.sub(r"^(\w+) at row \d+ ", r"\1 ", text)
    first = re.match(r"[\w.]+", text)
    if first and schema.canonical_name(first.group(0)) is not None:
        return text  # starts with a field name: keep its case
    return text[0].lower() + text[1:]


def _read_page_lines(data: bytes, path: str, on_error: OnError, report: ReadReport,
                     unknown: set[str]) -> pl.DataFrame:
    """NDJSON whose lines are saved API pages ``{"items": [...], ...}``."""
    frames: list[pl.DataFrame] = []
    for i, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            page = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if on_error == "raise":
                raise InputError(f"not valid JSON ({exc})", path=path, line=i) from None
            report.skipped.append(SkippedLine(path, i, f"not valid JSON ({exc})"))
            continue
        items = _items_of(page)
        if items is None:
            reason = "expected an API page {\"items\": [...]}"
            if on_error == "raise":
                raise InputError(reason, path=path, line=i)
            report.skipped.append(SkippedLine(path, i, reason))
            continue
        frames.append(_records_frame(items, path, on_error, report, unknown,
                                     lines=[i] * len(items)))
    return pl.concat(frames) if frames else schema.empty_frame()


def _items_of(obj: Any) -> list[Any] | None:
    if isinstance(obj, dict):
        for k in ("items", "Items", "value"):
            if k in obj and isinstance(obj[k], list):
                return obj[k]
        if any(schema.canonical_name(k) for k in obj):
            return [obj]
        return None
    if isinstance(obj, list):
        return obj
    return None


def _read_json(data: bytes, path: str, on_error: OnError, report: ReadReport,
               unknown: set[str]) -> pl.DataFrame:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # NDJSON saved under a .json name: several top-level values, one per line.
        head = data.lstrip()[:1]
        if head == b"{" and b"\n" in data.strip():
            try:
                orjson.loads(data.lstrip().split(b"\n", 1)[0])
            except orjson.JSONDecodeError:
                pass
            else:
                return _read_ndjson(data, path, on_error, report, unknown)
        line = getattr(exc, "lineno", None)
        col = getattr(exc, "colno", None)
        msg = f"not valid JSON: {exc.msg if hasattr(exc, 'msg') else exc}"
        if col is not None:
            msg += f" (column {col})"
        raise InputError(msg, path=path, line=line) from None
    if isinstance(doc, list) and doc and any(
        isinstance(x, dict) and ("items" in x or "Items" in x) for x in doc
    ):
        # A list of saved API pages: a page that is not one is an error, never events.
        frames = []
        for i, page in enumerate(doc):
            items = _items_of(page) if isinstance(page, dict) and ("items" in page or "Items" in page) else None
            if items is None:
                got = (f"'items' is a {type(page.get('items', page.get('Items'))).__name__}"
                       if isinstance(page, dict) and ("items" in page or "Items" in page)
                       else f"got {type(page).__name__}")
                _bad_item(path, on_error, report, None, i, f'expected an API page {{"items": [...]}}, {got}')
                continue
            frames.append(_records_frame(items, path, on_error, report, unknown))
        return pl.concat(frames) if frames else schema.empty_frame()
    items = _items_of(doc)
    if items is None:
        raise InputError(
            'expected a JSON array of events or an API page {"items": [...]}', path=path
        )
    return _records_frame(items, path, on_error, report, unknown)


def _read_csv(data: bytes, path: str, on_error: OnError, report: ReadReport,
              unknown: set[str]) -> pl.DataFrame:
    try:
        frame = pl.read_csv(data, infer_schema=False, truncate_ragged_lines=False)
    except Exception as exc:
        bad = _bad_csv_rows(data)
        if not bad:
            raise InputError(f"not valid CSV ({exc})", path=path) from None
        if on_error == "raise":
            raise InputError(bad[0][1], path=path, line=bad[0][0]) from None
        for line, reason in bad:
            report.skipped.append(SkippedLine(path, line, reason))
        return _read_csv(_drop_lines(data, {b[0] for b in bad}), path, "raise", report, unknown)
    try:
        return schema._frame_to_canonical(frame)
    except SchemaError as exc:
        row = getattr(exc, "row", None)
        line = _csv_line_of_row(data, row) if row is not None else None
        if on_error == "raise" or line is None:
            raise InputError(_reason(exc, located=line is not None), path=path, line=line) from None
        report.skipped.append(SkippedLine(path, line, _reason(exc, located=True)))
        return _read_csv(_drop_lines(data, {line}), path, on_error, report, unknown)


def _bad_csv_rows(data: bytes) -> list[tuple[int, str]]:
    text = data.decode("utf-8", errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""))
    bad: list[tuple[int, str]] = []
    width: int | None = None
    for row in reader:
        if width is None:
            width = len(row)
            continue
        if row and len(row) != width:
            bad.append((reader.line_num, f"expected {width} fields, found {len(row)}"))
    return bad


def _csv_line_of_row(data: bytes, row: int) -> int | None:
    reader = csv.reader(io.StringIO(data.decode("utf-8", errors="replace"), newline=""))
    next(reader, None)
    for i, r in enumerate(reader):
        if not r:
            continue
        if i >= row:
            return reader.line_num
    return None


def _read_parquet(path: Path, report: ReadReport, unknown: set[str]) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(path, glob=False)
    except Exception as exc:
        raise InputError(f"not a readable Parquet file ({exc})", path=str(path)) from None
    if frame.schema == schema.EVENTS_SCHEMA:
        return frame
    try:
        return schema._frame_to_canonical(frame)
    except SchemaError as exc:
        raise InputError(_reason(exc), path=str(path)) from None


# --------------------------------------------------------------------------- public: read


def _check_args(format: str | None, on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ArgumentError(f'on_error must be "raise" or "skip", got {on_error!r}')
    if format is not None and format not in FORMATS and format != "jsonl":
        raise ArgumentError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")


def _read_one(path: Path, fmt: str | None, on_error: OnError, report: ReadReport,
              unknown: set[str]) -> pl.DataFrame:
    name = str(path)
    fmt = fmt or detect_format(path)
    if fmt is None:
        raise InputError(
            "cannot tell the format from the file name; pass format= "
            "(ndjson, json, csv or parquet)",
            path=name,
        )
    if fmt == "parquet":
        return _read_parquet(path, report, unknown)
    data = _read_bytes(path)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if fmt in ("ndjson", "jsonl"):
        return _read_ndjson(data, name, on_error, report, unknown)
    if fmt in ("json", "pages"):
        return _read_json(data, name, on_error, report, unknown)
    return _read_csv(data, name, on_error, report, unknown)


def read_events_with_report(
    source: Source, *, format: str | None = None, on_error: OnError = "raise"
) -> tuple[pl.DataFrame, ReadReport]:
    """Like :func:`read_events`, and also return the :class:`ReadReport` (skips, files).

    No :class:`SkippedInputWarning` is emitted: the caller has the report.
    """
    _check_args(format, on_error)
    files = expand_sources(source)
    report = ReadReport(files=[str(f) for f in files])
    unknown: set[str] = set()
    frames = [_read_one(f, format, on_error, report, unknown) for f in files]
    frame = pl.concat(frames, how="vertical") if len(frames) != 1 else frames[0]
    report.rows = frame.height
    return frame, report


def read_events(
    source: Source, *, format: str | None = None, on_error: OnError = "raise"
) -> pl.DataFrame:
    """Read exported track events into the canonical events frame.

    Args:
        source: a file, a folder (all data files in it, recursively, in name order), a glob
            pattern, or a list of those. ``.gz`` and ``.zst`` files are decompressed.
        format: ``"ndjson"``, ``"json"``, ``"csv"`` or ``"parquet"``; default: from each
            file's name.
        on_error: ``"raise"`` (default): the first bad line raises
            :class:`~psanalytics.errors.InputError` naming ``file:line``. ``"skip"``: bad
            lines are left out; one :class:`SkippedInputWarning` says how many and where
            (its ``report`` attribute holds the :class:`ReadReport`; or call
            :func:`read_events_with_report`).

    Returns:
        The events of all files, in file order, with :data:`psanalytics.schema.EVENTS_SCHEMA`.

    Example (a round trip through a compressed NDJSON export):

    >>> import pathlib, tempfile
    >>> from psanalytics import normalize
    >>> ev = normalize([{"TrackId": "a", "DeviceId": "d1", "EventType": "home",
    ...                  "EventTime": "2024-03-04T10:00:00.1234567Z"}])
    >>> path = write_events(ev, pathlib.Path(tempfile.mkdtemp()) / "events.ndjson.gz")
    >>> read_events(path).equals(ev)
    True
    """
    frame, report = read_events_with_report(source, format=format, on_error=on_error)
    if report.skipped:
        warnings.warn(SkippedInputWarning(report.summary(), report), stacklevel=2)
    return frame


def _ndjson_scan_schema(path: Path) -> tuple[dict[str, pl.DataType], dict[str, str], list[str]]:
    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    if len(head) == 1 << 20:
        head = head[: head.rfind(b"\n") + 1] or head
    keys, examples = ndjson._sample_keys(head, 1000)
    read_schema, rename, unread, payload_key = ndjson.ndjson_read_plan(keys, examples)
    if payload_key is not None:
        read_schema[payload_key] = pl.String
    return read_schema, rename, unread


def scan_events(source: Source, *, format: str | None = None) -> pl.LazyFrame:
    """A lazy canonical events frame over exports; Parquet and NDJSON are not loaded eagerly.

    Uncompressed Parquet, NDJSON and CSV files are scanned with Polars' lazy readers, so
    filters and projections are pushed down and a large export never has to fit in memory.
    Compressed (``.gz``/``.zst``) and JSON array/page files are read eagerly (use
    :func:`read_events` for them). Errors in lazily scanned files surface when the frame is
    collected; :func:`read_events` names the exact ``file:line``. Payload text from a lazy
    NDJSON scan is compact JSON re-encoded by Polars (``1.0`` may read back as ``1``).
    Columns outside the schema (Parquet, CSV) are folded into ``Extras``. An NDJSON file
    whose first 1 MB shows ``Headers``, ``User.Info`` or fields outside the schema is read
    eagerly (exactly, as :func:`read_events` does); a lazily scanned NDJSON file reads the
    fields its first 1 MB shows, so for a file whose shape changes further in use
    :func:`read_events`, which checks by a key count that nothing else was there.
    """
    _check_args(format, "raise")
    files = expand_sources(source)
    lazies: list[pl.LazyFrame] = []
    for f in files:
        fmt = format or detect_format(f)
        _, comp = _split_suffix(f.name)
        if comp is None and fmt == "parquet":
            lf = pl.scan_parquet(f, glob=False)
            names = lf.collect_schema().names()
            lazies.append(_lazy_canonical(lf, names, str(f)))
        elif (comp is None and fmt in ("ndjson", "jsonl") and not _glob.has_magic(str(f))
              and not (plan := _ndjson_scan_schema(f))[2]):
            # (scan_ndjson has no glob=False: a literal '[' in the path would match nothing
            # and read 0 rows, so such paths are read eagerly below; so are files whose
            # first 1 MB shows fields the lazy plan cannot read)
            read_schema, rename, _unread = plan
            lf = pl.scan_ndjson(f, schema=read_schema).rename(rename)
            if "Payload" in rename.values():
                lf = lf.with_columns(pl.col("Payload").str.json_path_match("$"))
            lazies.append(schema.normalize_lazy(lf, source=str(f)))
        elif comp is None and fmt == "csv":
            lf = pl.scan_csv(f, infer_schema=False, glob=False)
            names = lf.collect_schema().names()
            lazies.append(_lazy_canonical(lf, names, str(f)))
        else:
            frame, _ = read_events_with_report(f, format=fmt)
            lazies.append(frame.lazy())
    return pl.concat(lazies, how="vertical") if len(lazies) != 1 else lazies[0]


def _lazy_canonical(lf: pl.LazyFrame, names: list[str], source: str | None = None) -> pl.LazyFrame:
    rename: dict[str, str] = {}
    for n in names:
        c = schema.canonical_name(n)
        if c is not None and c not in rename.values() and n != c:
            rename[n] = c
    # Columns outside the schema stay: normalize_lazy folds them into Extras.
    return schema.normalize_lazy(lf.rename(rename), source=source)


# --------------------------------------------------------------------------- public: write


def _compress(data: bytes, comp: str | None, name: str) -> bytes:
    if comp == ".gz":
        buf = io.BytesIO()
        # Deterministic: no file name, mtime 0, fixed level.
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
            gz.write(data)
        return buf.getvalue()
    if comp == ".zst":
        import zstandard

        return zstandard.ZstdCompressor(level=19 if len(data) < 64 << 20 else 9).compress(data)
    return data


def to_csv_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """The canonical frame flattened for CSV: ``User.Email``/``User.Name``/``User.Info``,
    7-digit times; ``Payload``, ``Headers``, ``User.Info`` and ``Extras`` as JSON text
    (an empty cell: absent)."""
    df = schema.normalize(frame)
    return df.select(
        [
            pl.col(c)
            for c in schema.COLUMNS
            if c not in ("EventTime", "User", "Payload", "Headers", schema.EXTRAS)
        ]
        + [
            schema.format_time_expr(pl.col("EventTime")).alias("EventTime"),
            pl.col("User").struct.field("Email").alias("User.Email"),
            pl.col("User").struct.field("Name").alias("User.Name"),
            pl.col("User").struct.field("Info").alias("User.Info"),
            pl.col("Payload"),
            pl.col("Headers"),
            pl.col(schema.EXTRAS),
        ]
    )


def write_events(frame: pl.DataFrame, path: PathLike, *, format: str | None = None) -> Path:
    """Write events to ``path`` in a format chosen from its name (or ``format``).

    ``.ndjson``/``.jsonl``: one API-shaped JSON object per line (7-digit ``Z`` times,
    ``Payload`` as a JSON object). ``.json``: a JSON array; a name ending in ``.page.json``
    or ``format="pages"``: one API page ``{"items": [...], "total": n, "count": n}``.
    ``.csv``: flattened (``User.Email``, ``User.Name``; ``Payload`` as JSON text).
    ``.parquet``: the canonical frame. A trailing ``.gz`` or ``.zst`` compresses; output
    is deterministic (gzip with mtime 0 and no file name), so the same frame always
    gives the same bytes. Returns the path written.
    """
    p = Path(path)
    _check_args(format, "raise")
    fmt = format or detect_format(p)
    if fmt is None:
        raise InputError(
            "cannot tell the format from the file name; use .ndjson, .json, .csv or "
            ".parquet (optionally + .gz/.zst), or pass format=",
            path=str(p),
        )
    _, comp = _split_suffix(p.name)
    if fmt == "json" and (p.name.lower().split(".json")[0].endswith((".page", ".pages"))):
        fmt = "pages"
    df = schema.normalize(frame)
    p.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        if comp:
            raise InputError("Parquet is compressed internally; drop the .gz/.zst", path=str(p))
        df.write_parquet(p, compression="zstd", statistics=True)
        return p
    if fmt in ("ndjson", "jsonl"):
        lines = api_json.api_json_lines(df)
        data = (lines.str.join("\n").item() + "\n").encode() if len(lines) else b""
    elif fmt == "json":
        data = api_json.to_api_json(df)
    elif fmt == "pages":
        data = api_json.to_api_json(df, envelope=True)
    else:
        buf = io.BytesIO()
        to_csv_frame(df).write_csv(buf)
        data = buf.getvalue()
    p.write_bytes(_compress(data, comp, p.name))
    return p
