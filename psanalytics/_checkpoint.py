"""One checkpoint file for everything that resumes (``api.export``, ``replay``).

Format: JSON lines. The first line is the header, an object with ``"checkpoint": 1`` (the
format) and what the run was started with; every further line is one record (an export's
finished window, a replay's resolved batch, an end marker). Readers fold the records.

Write discipline, one for both users (decided here, issue 12): **fsynced append**.

- A checkpoint is *started* whole: header (and any records carried over from an earlier
  run) written to a temporary file, fsynced, renamed over the old file, folder fsynced.
  So a run that starts over never leaves a half-old, half-new file.
- After that every record is *appended* as one line, flushed and fsynced before
  :meth:`CheckpointFile.append` returns: a record the caller acted on survives a killed
  process and a power cut. A crash mid-append leaves at most a torn last line, which
  :func:`read_lines` skips.

Why append and not rewrite-per-record: a replay records one line per HTTP batch (tens of
thousands); rewriting the file each time would make a run quadratic in its batches. The
export's checkpoint used to be one JSON object rewritten per window; such files still
load (``api.export`` reads them and continues in this format).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import orjson

__all__ = ["FORMAT", "CheckpointFile", "read_lines", "fsync_path"]

#: The header's ``"checkpoint"`` value for this format.
FORMAT = 1


def fsync_path(path: Path) -> None:
    """fsync a file or a folder by path (a folder: so a rename in it is durable; where
    the OS allows it)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:  # e.g. folders on Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_lines(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(header, records) of a checkpoint; (None, []) when there is no file. Lines that
    do not parse as a JSON object (a torn write) are skipped."""
    if not path.exists():
        return None, []
    header: dict[str, Any] | None = None
    records: list[dict[str, Any]] = []
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # torn write
        if not isinstance(rec, dict):
            continue
        if header is None and "checkpoint" in rec:
            header = rec
        else:
            records.append(rec)
    return header, records


class CheckpointFile:
    """A checkpoint being written: :meth:`start` (whole, atomically) or :meth:`resume`
    (append to what is there), then :meth:`append` per record, then :meth:`close`.
    Appends from several threads are serialised."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fh: IO[bytes] | None = None

    def start(self, header: Mapping[str, Any], records: Iterable[Mapping[str, Any]] = ()) -> None:
        """Replace the file with ``header`` (``"checkpoint"`` added) and ``records``."""
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = b"".join(orjson.dumps(r) + b"\n" for r in ({"checkpoint": FORMAT, **header}, *records))
        tmp = self.path.with_name(self.path.name + f".tmp{os.getpid()}.{threading.get_ident()}")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        fsync_path(self.path.parent)
        self._fh = open(self.path, "ab")  # noqa: SIM115 - closed in close()

    def resume(self) -> None:
        """Append to the existing file (its header and records stay)."""
        self.close()
        self._fh = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        if self._fh.tell() and not self.path.read_bytes().endswith(b"\n"):
            self._write(b"\n")  # a torn last line stays a line of its own (skipped on read)

    def append(self, record: Mapping[str, Any]) -> None:
        """One record, on disk (fsynced) when this returns."""
        self._write(orjson.dumps(record) + b"\n")

    def _write(self, data: bytes) -> None:
        if self._fh is None:
            raise RuntimeError(f"checkpoint {self.path} is not open: call start() or resume() first")
        with self._lock:
            self._fh.write(data)
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None
