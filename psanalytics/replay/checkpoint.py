"""The replay checkpoint: one line per resolved batch, in the one checkpoint format
(``psanalytics/_checkpoint.py``: JSON lines, fsynced append)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from psanalytics._checkpoint import CheckpointFile, read_lines
from psanalytics.replay._errors import ReplayError
from psanalytics.replay.batching import Batch

__all__ = ["Checkpoint"]


class Checkpoint:
    """Append-only log of resolved batches, so a replay can resume.

    First line: ``{"checkpoint": 1, "sink": ..., "account_id": ..., "events": ...}``. Each
    further line: ``{"batch": id, "status": "ok"|"rejected", "events": n, "offsets":
    [lo, hi], "at": iso-time}``, on disk (fsynced) before the replay goes on. A resumed run
    skips every batch the log names; nothing is ever rewritten. A torn last line (a crash
    mid-write) is ignored. Files written before the format was shared are the same format.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file = CheckpointFile(self.path)
        self.header, records = read_lines(self.path)
        self.done: dict[str, str] = {r["batch"]: r.get("status", "ok") for r in records if "batch" in r}

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
        if self.header is None:
            self.header = dict(header)
            self._file.start(header)
        else:
            self._file.resume()

    def record(self, batch: Batch, status: str) -> None:
        self.done[batch.id] = status
        self._file.append({"batch": batch.id, "status": status, "events": batch.events,
                           "offsets": [batch.offset_min, batch.offset_max],
                           "at": datetime.now(UTC).isoformat(timespec="milliseconds")})

    def __contains__(self, batch_id: object) -> bool:
        return batch_id in self.done

    def close(self) -> None:
        self._file.close()
