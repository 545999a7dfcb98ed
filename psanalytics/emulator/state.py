"""Everything an emulator changes while it serves, in one object with explicit lifecycle.

:class:`EmulatorState` holds the event store, the fault settings, the Event API log, the
Tracking API's dedupe table, the request journal and the daily clean-up's due time.
Its lifecycle is three explicit operations, and nothing else replaces its parts:

- :meth:`~EmulatorState.reset`: back to the seeded events and the faults given at
  construction, empty logs and journal; an emulator started from a snapshot gets the
  snapshot's Event API log back (:meth:`~EmulatorState.restore`).
- :meth:`~EmulatorState.restore`: load the Event API log a snapshot folder holds.
- :meth:`~EmulatorState.purge` (now) and :meth:`~EmulatorState.purge_if_due` (the daily
  clean-up at the first authorized request after UTC midnight): deleted events are
  dropped for good; the Event API log is never touched.

(The daily-purge bug of issue 13 came from a reset that rebuilt some of these and not
others, in several places; here one method resets them all.)
"""

from __future__ import annotations

import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from psanalytics import schema
from psanalytics.emulator.faults import Faults
from psanalytics.emulator.odp import OdpService
from psanalytics.emulator.store import EventStore

__all__ = ["EmulatorState", "SNAPSHOT_META", "TRACK_ID_WINDOW_NS", "load_events"]

#: The file that marks a snapshot folder.
SNAPSHOT_META = "_emulator_snapshot.json"
#: Tracking API: a repeated trackId in one scope within this long is skipped.
TRACK_ID_WINDOW_NS = 72 * 3600 * 10**9


def load_events(events: Any) -> pl.DataFrame:
    """The seed events: None -> the committed sample data; a frame; a snapshot folder
    (``Emulator.snapshot``); any other path is read with ``exports.read_events``."""
    if events is None:
        from psanalytics import samples

        return schema.normalize(samples.default_events())
    if isinstance(events, (str, Path)):
        from psanalytics import exports

        p = Path(events)
        if (p / SNAPSHOT_META).is_file():
            return schema.normalize(pl.read_parquet(p / "events" / "events.parquet"))
        return schema.normalize(exports.read_events(events))
    return schema.normalize(events)


def next_midnight(now: float) -> float:
    """The first UTC midnight after ``now`` (epoch seconds)."""
    return now - (now % 86_400) + 86_400


class EmulatorState:
    """The mutable part of an emulator (see the module docstring)."""

    def __init__(self, initial: pl.DataFrame, *, lenient: bool, faults: Faults | None,
                 journal_size: int, odp: OdpService, snapshot: Path | None = None):
        self._initial = initial
        self._lenient = lenient
        self._faults_initial = faults
        self._journal_size = journal_size
        self._snapshot = snapshot
        self.odp = odp
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Seeded events, the initial faults, empty logs (or the snapshot's Event API log)."""
        with self.lock:
            self.store = EventStore(self._initial, lenient=self._lenient)
            self.faults: Faults | None = (Faults.parse(self._faults_initial.to_dict())
                                          if self._faults_initial is not None else None)
            self.accepted: list[dict[str, Any]] = []
            self.accepted_keys: set[tuple[Any, Any, Any]] = set()
            #: (scope, trackId) -> when it was last tracked (ns): the Tracking API's dedupe.
            self.tracked_ids: dict[tuple[str, str], int] = {}
            self.rejected: list[dict[str, Any]] = []
            self.event_api = {"requests": 0, "accepted": 0, "rejected": 0, "duplicates": 0}
            self.journal_entries: deque[dict[str, Any]] = deque(maxlen=self._journal_size)
            self.seq = 0
            self.next_purge = next_midnight(time.time())
            self.odp.reset()
            if self._snapshot is not None:
                self.restore(self._snapshot)

    def restore(self, folder: Path) -> None:
        """Load the Event API log and the ODP state a snapshot folder holds
        (``Emulator.snapshot``; a folder written before ODP state was saved has none)."""
        if (folder / "odp" / "state.json").is_file():
            self.odp.load(folder / "odp")
        acc = pl.read_parquet(folder / "event_api" / "accepted.parquet").to_dicts()
        rej = pl.read_parquet(folder / "event_api" / "rejected.parquet").to_dicts()
        with self.lock:
            self.accepted = acc
            self.accepted_keys = {(r["entity_id"], r["uuid"], r["timestamp"]) for r in acc}
            self.rejected = rej
            self.event_api.update(accepted=len(acc), rejected=len(rej))

    def snapshot(self, out: Path, events: pl.DataFrame, accepted: pl.DataFrame,
                 rejected: pl.DataFrame, version: str) -> Path:
        """Write a snapshot folder that :func:`load_events` and :meth:`restore` read."""
        (out / "events").mkdir(parents=True, exist_ok=True)
        (out / "event_api").mkdir(parents=True, exist_ok=True)
        events.write_parquet(out / "events" / "events.parquet")
        accepted.write_parquet(out / "event_api" / "accepted.parquet")
        rejected.write_parquet(out / "event_api" / "rejected.parquet")
        self.odp.dump(out / "odp")
        meta = {"version": version, "written_at": datetime.now(UTC).isoformat(),
                "events": events.height, "event_api": self.event_api,
                "odp": self.odp.state(limit=0)}
        (out / SNAPSHOT_META).write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
        return out

    def purge(self) -> int:
        """The clean-up, now: deleted events are dropped for good. Returns how many."""
        return self.store.purge()

    def purge_if_due(self, now: float) -> None:
        """The daily clean-up: at the first call after UTC midnight, purge."""
        if now >= self.next_purge:
            self.next_purge = next_midnight(now)
            self.store.purge()

    def journal(self, entry: dict[str, Any]) -> None:
        """Append one request to the journal, numbered."""
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.journal_entries.append(entry)

    def record_event_api(self, accepted: list[dict[str, Any]], rejected: list[dict[str, Any]],
                         received_at: str) -> None:
        """Keep one Event API request's records: accepted ones once per (entity_id, uuid,
        timestamp), rejected ones all; count both."""
        dup = 0
        with self.lock:
            for rec in accepted:
                key = (rec["entity_id"], rec["uuid"], rec["timestamp"])
                if key in self.accepted_keys:
                    dup += 1
                    continue
                self.accepted_keys.add(key)
                rec["received_at"] = received_at
                self.accepted.append(rec)
            for rec in rejected:
                rec["received_at"] = received_at
                self.rejected.append(rec)
            self.event_api["accepted"] += len(accepted) - dup
            self.event_api["duplicates"] += dup
            self.event_api["rejected"] += len(rejected)

    def skip_repeated_track_ids(self, records: list[dict[str, Any]], now_ns: int) -> list[dict[str, Any]]:
        """The Tracking API's dedupe: an event whose trackId was tracked in the same scope
        within the last 72 hours is skipped silently (events without one are all kept)."""
        kept = []
        with self.lock:
            for rec in records:
                tid = rec["TrackId"] if rec.pop("_sent_track_id", False) else ""
                if tid:
                    key = (rec["Scope"], tid)
                    seen = self.tracked_ids.get(key)
                    if seen is not None and now_ns - seen < TRACK_ID_WINDOW_NS:
                        continue
                    self.tracked_ids[key] = now_ns
                kept.append(rec)
        return kept
