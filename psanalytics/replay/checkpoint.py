"""The replay checkpoint: an append-only JSON-lines log of resolved batches."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from psanalytics.replay._errors import ReplayError
from psanalytics.replay.batching import Batch

__all__ = ["Checkpoint"]


class Checkpoint:
    """Append-only log of resolved batches (JSON lines), so a replay can resume.

    Each line: ``{"batch": id, "status": "ok"|"rejected", "events": n, "offsets": [lo, hi],
    "at": iso-time}``. A resumed run skips every batch the log names; nothing else is
    ever rewritten. A torn last line (a crash mid-write) is ignored.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fh: IO[bytes] | None = None
        self.done: dict[str, str] = {}
        self.header: dict[str, Any] | None = None
        if self.path.exists():
            for line in self.path.read_bytes().splitlines():
                if not line.strip():
                    continue
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # torn write
                if "checkpoint" in rec:
                    self.header = rec
                elif "batch" in rec:
                    self.done[rec["batch"]] = rec.get("status", "ok")

    def check_header(self, header: Mapping[str, Any]) -> None:
        """Refuse to resume a checkpoint written for another account, sink or input."""
        if self.header is None:
            return
        for k in ("sink", "account_id", "events"):
            if k in header and k in self.header and self.header[k] != header[k]:
                raise ReplayError(
                    f"checkpoint {self.path} was written for {k}={self.header[k]!r}, this replay "
                    f"has {k}={header[k]!r}; use another checkpoint file (or delete it to start over)"
                )

    def open(self, header: Mapping[str, Any]) -> None:
        self.check_header(header)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        if self.header is None:
            self.header = dict(header)
            self._write({"checkpoint": 1, **header})

    def _write(self, rec: Mapping[str, Any]) -> None:
        assert self._fh is not None
        with self._lock:
            self._fh.write(orjson.dumps(rec) + b"\n")
            self._fh.flush()

    def record(self, batch: Batch, status: str) -> None:
        self.done[batch.id] = status
        self._write({"batch": batch.id, "status": status, "events": batch.events,
                     "offsets": [batch.offset_min, batch.offset_max],
                     "at": datetime.now(UTC).isoformat(timespec="milliseconds")})

    def __contains__(self, batch_id: object) -> bool:
        return batch_id in self.done

    def close(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.flush()
                os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
