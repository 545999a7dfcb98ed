"""What a replay did: :class:`ReplayReport` (and :class:`Rejection`), with ``reconcile()``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from psanalytics.replay.batching import Batch

__all__ = ["Rejection", "ReplayReport"]


@dataclass
class Rejection:
    """A batch the server refused (400), with its reason."""

    batch: str
    status: int | None
    reason: str
    errors: list[dict[str, Any]]
    visitors: int
    events: int


@dataclass
class ReplayReport:
    """What a replay did. ``str(report)`` is a short table."""

    sink: str
    visitors: int = 0
    events: int = 0
    batches: int = 0
    bytes: int = 0
    retries: int = 0
    rejected: int = 0
    rejected_events: int = 0
    failed: int = 0
    failed_events: int = 0
    quarantined: int = 0
    quarantined_events: int = 0
    skipped: int = 0
    skipped_events: int = 0
    invalid: int = 0
    invalid_events: int = 0
    duration_s: float = 0.0
    dry_run: bool = False
    statuses: dict[int, int] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    planned_events: int = 0
    idle_capped_s: float = 0.0
    interrupted: bool = False
    profiles: int = 0
    profile_batches: int = 0
    #: EventTypes no map named, sent as custom types (ODP), with their event counts
    unmapped: dict[str, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list, repr=False)
    _outcomes: list[tuple[int, int, str]] = field(default_factory=list, repr=False)
    _source: Any = field(default=None, repr=False)
    _q_offsets: list[int] = field(default_factory=list, repr=False)

    def _outcome(self, batch: Batch, status: str) -> None:
        """Record what happened to the rows a batch carries (ODP: for reconcile())."""
        if batch.rows is not None and batch.kind == "odp":
            self._outcomes.append((batch.rows[0], batch.rows[1], status))

    def reconcile(self, destination: Any = None) -> pl.DataFrame:
        """Source vs destination per day x event type (ODP replays): events ``read``,
        ``mapped``, ``skipped_by_map``, ``sent`` (acknowledged, this run or before a
        resume), ``rejected``, ``failed``, ``quarantined``, ``pending`` (not sent: the
        run stopped), ``accepted`` (found at the destination when ``destination`` is
        given: an ``Emulator``, a ``serve()`` server, or a frame with an
        ``idempotence_id`` column; else the acknowledged count), ``duplicates`` (re-sends
        the destination recognised, when it can tell) and ``difference`` (mapped -
        accepted). :func:`psanalytics.replay.reconcile.differences` keeps the rows that
        differ."""
        from psanalytics.replay.reconcile import reconcile

        return reconcile(self, destination)

    def latency(self, q: float) -> float | None:
        """Quantile ``q`` (0..1) of the acknowledged requests' wall time (retries included)."""
        if not self.latencies_s:
            return None
        xs = sorted(self.latencies_s)
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    @property
    def rate(self) -> float:
        """Achieved events per second (events sent / duration)."""
        return self.events / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        """True when every planned event was sent (or skipped as already sent)."""
        return (self.rejected == 0 and self.failed == 0 and self.quarantined == 0
                and self.invalid == 0 and not self.interrupted)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("latencies_s")
        d.pop("_outcomes")
        d.pop("_source")
        d.pop("_q_offsets")
        d["rate"] = self.rate
        d["latency_p50_s"] = self.latency(0.5)
        d["latency_p95_s"] = self.latency(0.95)
        return d

    def __str__(self) -> str:
        verb = "dry run (nothing sent)" if self.dry_run else f"replay to {self.sink}"
        lines = [
            f"{verb}: {self.events:,} events"
            + (f" from {self.visitors:,} visitors" if self.visitors else "") + " in "
            f"{self.batches:,} batches, {self.bytes:,} bytes, {self.duration_s:.2f} s "
            f"({self.rate:,.0f} events/s)",
            f"  retries {self.retries:,}  rejected {self.rejected:,} batches "
            f"({self.rejected_events:,} events)  failed {self.failed:,} ({self.failed_events:,} events)  "
            f"quarantined {self.quarantined:,} visitors ({self.quarantined_events:,} events)  "
            f"resumed-skip {self.skipped:,} batches ({self.skipped_events:,} events)"
            + (f"  invalid {self.invalid:,} visitors ({self.invalid_events:,} events)" if self.invalid else ""),
        ]
        if self.profiles or self.profile_batches:
            lines.append(f"  customer profiles {self.profiles:,} in {self.profile_batches:,} requests")
        if self.unmapped:
            lines.append("  unmapped types sent as custom types: "
                         + ", ".join(f"{k} ({v:,})" for k, v in sorted(self.unmapped.items())))
        if self.statuses:
            lines.append("  statuses " + ", ".join(f"{k}: {v:,}" for k, v in sorted(self.statuses.items())))
        if self.latencies_s:
            lines.append(f"  request latency p50 {self.latency(0.5) * 1000:,.1f} ms, "
                         f"p95 {self.latency(0.95) * 1000:,.1f} ms")
        for r in self.rejections[:5]:
            lines.append(f"  rejected {r.batch}: {r.status} {r.reason}")
        for name, path in self.files.items():
            lines.append(f"  {name}: {path}")
        if self.interrupted:
            lines.append("  INTERRUPTED: resume with the same checkpoint to finish")
        return "\n".join(lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython
        p.text(str(self))
