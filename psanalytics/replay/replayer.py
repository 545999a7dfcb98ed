"""The replayer: batches, paces and sends visitor logs, with a checkpoint to resume.

>>> from psanalytics.emulator import serve                         # doctest: +SKIP
>>> with serve() as srv:                                            # doctest: +SKIP
...     report = replay(events, url=srv.url, account_id="12345")
...     print(report)

Sinks:

- :class:`EventApiSink` posts Event API bodies (``POST /v1/events``) through
  :class:`psanalytics.api.event_api.EventApi` (retries on 429/5xx/timeouts there);
- :class:`TrackingSink` posts ``TrackBulk`` arrays through
  :meth:`psanalytics.api.profile_store.ProfileStore.track_batch`;
- :class:`OdpSink` posts ODP event arrays and customer updates (``psanalytics.api.odp``);
- ``dry_run=path`` sends nothing and writes the exact bodies as JSON lines.

The room around it: ``sinks.py``, ``options.py`` (option groups), ``_run.py`` (dispatch
and recording), ``checkpoint.py``, ``report.py``, ``reconcile.py``; the mappings in
``event_map.py``/``encoder.py`` (Event API) and ``odp.py``. This file stays a little over
600 lines because it holds the one public class with its planning for three sinks, the
resend parser and the ``replay()``/``resend()`` entry points, which read best together.

Why this file is long: the ``Replayer`` plans per target (Event API, Tracking,
ODP) and resends over one set of grouped options; dispatch and recording already live in
``_run.py``, encoding in ``encoder.py`` and ``odp.py``, the options in ``options.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import orjson
import polars as pl

from psanalytics._files import read_bytes
from psanalytics.replay._errors import ReplayError
from psanalytics.replay._run import Dispatcher, Recorder
from psanalytics.replay.batching import (
    TRACK_BULK_MAX_BYTES,
    Batch,
    Quarantined,
    event_api_batches,
    tracking_batches,
    tracking_records,
)
from psanalytics.replay.checkpoint import Checkpoint
from psanalytics.replay.mapping import (
    MappingError,
    body_prefix,
    encode_visitor_chunks,
    sample_mask,
)
from psanalytics.replay.options import Files, Limits, MappingOptions, Pacing, split_options
from psanalytics.replay.pacing import Pacer
from psanalytics.replay.report import Rejection, ReplayReport
from psanalytics.replay.sinks import EventApiSink, OdpSink, Sink, TrackingSink, with_policy

__all__ = [
    "Checkpoint",
    "EventApiSink",
    "OdpSink",
    "ReplayError",
    "ReplayReport",
    "Replayer",
    "Sink",
    "TrackingSink",
    "replay",
    "resend",
]


_KINDS = ("tracking", "event-api", "odp")


# --------------------------------------------------------------------------- replayer


#: Statuses that say the key or the URL is wrong, not the batch: they stop the run.
_STOP_STATUSES = {401: "the key was refused", 403: "the key may not do this",
                  404: "no such endpoint: check the URL", 405: "this URL does not accept POST: check the URL"}


def _status_of(exc: BaseException) -> int | None:
    return getattr(exc, "status", None)


def _reason_of(exc: BaseException) -> str:
    msg = getattr(exc, "server_message", None)
    return str(msg) if msg else str(exc)


def _odp_kind(body: Any) -> str | None:
    """``odp`` for an array of ODP events, ``odp-profiles`` for customer updates, else None."""
    if not isinstance(body, list) or not body or not all(isinstance(o, dict) for o in body):
        return None
    if all("identifiers" in o and "type" in o for o in body):
        return "odp"
    if all(set(o) == {"attributes"} for o in body):
        return "odp-profiles"
    return None


def _resend_id(seq: int, body: bytes) -> str:
    return f"resend-{seq:07d}-{hashlib.sha1(body).hexdigest()[:16]}"


class Replayer:
    """Replays track events into a sink (Event API, Tracking API or ODP).

    ``sink``: an :class:`EventApiSink`, :class:`TrackingSink`, :class:`OdpSink`, an
    ``EventApi``, an ``OdpApi``, a ``ProfileStore`` (-> Tracking API), a URL string (->
    Event API), or a kind (``"event-api"``, ``"tracking"``, ``"odp"``) with ``dry_run``.

    Options, grouped (``psanalytics.replay.options``; each group's fields may also be
    given flat, by their old names: ``max_visitors=``, ``speed=``, ``checkpoint=``, ...):

    - ``account_id`` (Event API, required) and ``mapping``: an ``EventMap`` (Event API;
      ``event_map=`` is its old name) or an ``OdpMap`` (ODP); Event API visitor/body
      options (:class:`~psanalytics.replay.options.MappingOptions`): ``project_id``,
      ``revision``, ``sessions``, ``visitor_id``, ``anonymize_ip`` (default True),
      ``truncate_ips`` (zero the last IPv4 octet / 80 IPv6 bits locally before anything
      leaves; applies to Tracking bodies' ``remoteAddress``), ``client_name``,
      ``client_version``; ``profiles`` (ODP: also send customers: ``True`` from the
      events' users, or Profile Store profiles: a frame from ``store.profiles()``, API
      objects or a file);
    - ``limits=Limits(max_visitors=500, max_bytes=3_400_000, max_events=100, workers=4,
      chunk_events=250_000)``: objects and bytes per request, threads (at most
      ``2 x workers`` batches in flight, the producer blocks: backpressure);
    - ``pacing=Pacing(speed, rate, requests_per_s, max_idle=5, flush_interval=1, clock,
      sleep)``;
    - ``files=Files(checkpoint, resume=True, dry_run, rejected, failed, quarantine)``:
      ``checkpoint`` resumes by default when the file exists (``resume=False`` refuses
      an existing one), ``dry_run`` writes the bodies and sends nothing (``.gz`` ok; a
      ``<name>.summary.json`` too), side files are JSON lines next to the checkpoint or
      dry-run file unless named;
    - sending: ``retries`` (an int = max attempts, or an ``api.http.RetryPolicy``; for a
      sink passed in it applies to a copy, the caller's client is unchanged), ``strict``
      (ask for 400s on invalid fields; for a sink passed in, its own setting counts),
      ``split_rejected`` (bisect a refused batch to keep the good visitors/events and
      isolate the bad ones; default True);
    - ``validate`` (default True): visitors whose timestamps cannot be 13-digit epoch ms
      are kept aside locally (rejected file, ``report.invalid``) instead of being sent;
      ``sample`` (fraction of visitors, chosen by a hash of the visitor id: the same
      visitors on every run); ``time_shift`` (a ``timedelta`` added to every EventTime,
      for demos; original timestamps are kept by default);
    - ``progress`` (tqdm.auto bar; None = on when stderr is a terminal or in Jupyter),
      ``on_batch(batch, outcome)`` callback (main thread), ``time_limit`` seconds.
    """

    def __init__(
        self,
        sink: Any = None,
        *,
        account_id: str | None = None,
        mapping: Any = None,
        limits: Limits | Mapping[str, Any] | None = None,
        pacing: Pacing | Mapping[str, Any] | None = None,
        files: Files | Mapping[str, Any] | None = None,
        profiles: Any = False,
        retries: Any = None,
        strict: bool = False,
        split_rejected: bool = True,
        validate: bool = True,
        sample: float | None = None,
        time_shift: timedelta | None = None,
        progress: bool | None = None,
        on_batch: Callable[[Batch, Any], None] | None = None,
        time_limit: float | None = None,
        **options: Any,
    ) -> None:
        groups = split_options({"limits": limits, "pacing": pacing, "files": files}, options)
        lim: Limits = groups["limits"]
        pac: Pacing = groups["pacing"]
        fil: Files = groups["files"]
        mo: MappingOptions = groups["mapping_options"]
        self.limits, self.pacing, self.files, self.mapping_options = lim, pac, fil, mo
        if lim.workers < 1:
            raise ReplayError(f"workers must be >= 1 (got {lim.workers})")
        self.sink = self._coerce_sink(sink, strict=strict, retries=retries)
        if self.sink is None and fil.dry_run is None:
            raise ReplayError("no sink: pass an EventApiSink/TrackingSink/OdpSink/URL, or dry_run=path")
        self.kind = self.sink.kind if self.sink is not None else getattr(sink, "kind", "event-api")
        if isinstance(sink, str) and sink in _KINDS:
            self.kind = sink
        self.account_id = account_id
        self.mapping = mapping
        if profiles is not None and profiles is not False and self.kind != "odp":
            raise ReplayError(f"profiles= moves customers to ODP: it goes with to='odp', not {self.kind!r}")
        self.profiles = profiles
        self._reconcile_source: pl.DataFrame | None = None
        self._unmapped: dict[str, int] = {}
        # mapping= is the event map (Event API) or the OdpMap (ODP); event_map= is its old name
        self.event_map = mo.event_map if mo.event_map is not None or self.kind != "event-api" else mapping
        self.project_id, self.revision = mo.project_id, mo.revision
        self.sessions, self.visitor_id = mo.sessions, mo.visitor_id
        self.anonymize_ip, self.truncate_ips = mo.anonymize_ip, mo.truncate_ips
        self.client_name, self.client_version = mo.client_name, mo.client_version
        self.pacer = Pacer(speed=pac.speed, rate=pac.rate, requests_per_s=pac.requests_per_s,
                           max_idle=pac.max_idle, clock=pac.clock, sleep=pac.sleep)
        self.flush_interval = pac.flush_interval
        self.max_visitors, self.max_bytes, self.max_events = lim.max_visitors, lim.max_bytes, lim.max_events
        self.workers, self.chunk_events = lim.workers, lim.chunk_events
        self.split_rejected = split_rejected
        self._set_paths(fil)
        self.progress = progress
        self.on_batch = on_batch
        self.time_limit = time_limit
        if sample is not None and not 0 < sample <= 1:
            raise ReplayError(f"sample must be a fraction in (0, 1] (got {sample!r})")
        self.validate = validate
        self.sample = sample
        self.time_shift = time_shift
        self._eta = 0.0
        self._invalid: list[Quarantined] = []
        self.clock = pac.clock
        self.report: ReplayReport | None = None

    def _set_paths(self, fil: Files) -> None:
        """The checkpoint, dry-run and side files (rejected, failed, quarantine): given, or
        named after the checkpoint (else the dry run) as ``<stem>.<name>.jsonl``."""
        self.checkpoint_path = Path(fil.checkpoint) if fil.checkpoint is not None else None
        self.resume = fil.resume
        self.dry_run = Path(fil.dry_run) if fil.dry_run is not None else None
        base = self.checkpoint_path or self.dry_run
        stem = (base.name.removesuffix(".gz").rsplit(".", 1)[0] if base else None)

        def side(explicit: Any, name: str) -> Path | None:
            if explicit is not None:
                return Path(explicit)
            if base is None:
                return None
            return base.with_name(f"{stem}.{name}.jsonl")

        self.rejected_path = side(fil.rejected, "rejected")
        self.failed_path = side(fil.failed, "failed")
        self.quarantine_path = side(fil.quarantine, "quarantine")

    @staticmethod
    def _coerce_sink(sink: Any, *, strict: bool, retries: Any) -> Any:
        if sink is None or (isinstance(sink, str) and sink in _KINDS):
            return None
        policy = None
        if retries is not None:
            from psanalytics.api.http import RetryPolicy

            policy = retries if isinstance(retries, RetryPolicy) else RetryPolicy(max_attempts=int(retries))
        if isinstance(sink, str):
            return EventApiSink(sink, strict=strict, policy=policy)
        out: Any = None
        if hasattr(sink, "send") and hasattr(sink, "kind"):
            out = sink
        else:
            from psanalytics.api.event_api import EventApi
            from psanalytics.api.odp import OdpApi

            if isinstance(sink, EventApi):
                out = EventApiSink(api=sink)
            elif isinstance(sink, OdpApi):
                out = OdpSink(api=sink)
            elif hasattr(sink, "track_batch"):
                out = TrackingSink(sink)
        if out is None:
            raise ReplayError(f"not a replay sink: {type(sink).__name__}")
        # retries= applies to a sink built elsewhere too, on a copy: the caller's client
        # keeps its own policy
        return with_policy(out, policy)

    # ----------------------------------------------------------------- planning

    def _prepare(self, events: Any) -> pl.DataFrame:
        """Canonical frame (keeping a ``session_id`` column), with the time shift applied."""
        from psanalytics.replay.mapping import _as_frame

        frame, scol = _as_frame(events)
        if self.time_shift is not None:
            frame = frame.with_columns(pl.col("EventTime") + self.time_shift)
        if scol is not None:
            frame = frame.with_columns(scol.alias("session_id"))
        return frame

    def plan(self, events: Any, quarantine: list[Quarantined] | None = None) -> tuple[Iterator[Batch], dict[str, int]]:
        """Encode and batch; returns (batches, totals). Nothing is sent."""
        span = None
        if self.pacer.speed is not None:
            span = int(self.flush_interval * self.pacer.speed * 1000)
        frame = self._prepare(events)
        if self.kind == "odp":
            return self._plan_odp(frame, span, quarantine)
        if self.kind == "tracking":
            if self.sample is not None:
                frame = frame.filter(sample_mask(frame.get_column("DeviceId"), self.sample))
            recs = tracking_records(frame.drop("session_id", strict=False), truncate_ips=self.truncate_ips)
            totals = {"events": recs.height, "visitors": frame.get_column("DeviceId").n_unique()}
            return tracking_batches(recs, max_events=self.max_events,
                                    max_bytes=min(self.max_bytes, TRACK_BULK_MAX_BYTES),
                                    max_span_ms=span, quarantine=quarantine), totals
        if not str(self.account_id or "").strip():
            raise MappingError("account_id is required for the Event API (the Optimizely account)")
        n_events, parts = encode_visitor_chunks(
            frame, chunk_events=self._chunk(frame.height),
            event_map=self.event_map, sessions=self.sessions, visitor_id=self.visitor_id,
            truncate_ips=self.truncate_ips, sample=self.sample,
        )
        prefix = body_prefix(account_id=str(self.account_id), project_id=self.project_id,
                             revision=self.revision, anonymize_ip=self.anonymize_ip,
                             client_name=self.client_name, client_version=self.client_version)
        self._invalid = []

        def batches() -> Iterator[Batch]:
            seq = 0
            for vis in parts:
                if self.validate:
                    vis = self._set_aside_invalid(vis)
                for b in event_api_batches(vis, prefix, max_visitors=self.max_visitors,
                                           max_bytes=self.max_bytes, max_span_ms=span,
                                           quarantine=quarantine, start_seq=seq):
                    seq = b.seq + 1
                    yield b

        return batches(), {"events": n_events, "visitors": -1}

    def _plan_odp(self, frame: pl.DataFrame, span: int | None,
                  quarantine: list[Quarantined] | None) -> tuple[Iterator[Batch], dict[str, int]]:
        """ODP: events in time order, arrays of <= 500; then customer updates with
        ``profiles`` (True: from the events' users; Profile Store profiles: from them).
        Keeps the per-event source frame for :meth:`ReplayReport.reconcile`."""
        from psanalytics.replay.odp import (
            MAX_ODP_OBJECTS,
            OdpMap,
            _odp_records,
            encode_odp_customers,
            encode_odp_profiles,
            odp_batches,
        )

        self._invalid = []
        profs = None
        if self.profiles is True:
            profs = encode_odp_profiles(frame)
        elif self.profiles is not None and self.profiles is not False:
            # Profile Store profiles: read (and refused if unreadable) before anything is sent
            unsendable: list[tuple[str, str]] = []
            profs = encode_odp_customers(self.profiles, invalid_out=unsendable)
            for pid, text in unsendable:
                self._invalid.append(Quarantined(
                    pid, None, 0, len(text.encode()), text, [],
                    reason=f"profile {pid!r} has no Info.Email and no DeviceIds: ODP needs an identifier"))

        if self.sample is not None:
            frame = frame.filter(sample_mask(frame.get_column("DeviceId"), self.sample))
        frame = frame.drop("session_id", strict=False)
        unmapped: dict[str, int] = {}
        omap = OdpMap.of(self.mapping)
        # the texts are built a chunk of bodies at a time, while batching (``text``)
        recs, text = _odp_records(frame, odp_map=omap, unmapped_out=unmapped)
        self._unmapped = unmapped
        rows = recs.with_row_index("row").select("row", "offset", "idempotence_id")
        source = frame.select(
            pl.col("EventTime").dt.date().alias("day"), pl.col("EventType").alias("event_type"),
        ).with_row_index("offset").with_columns(pl.col("offset").cast(pl.Int64))
        self._reconcile_source = source.join(rows, on="offset", how="left", maintain_order="left")
        max_objects = min(self.max_visitors, MAX_ODP_OBJECTS)

        def batches() -> Iterator[Batch]:
            last = -1
            for b in odp_batches(recs, max_objects=max_objects, max_bytes=self.max_bytes,
                                 max_span_ms=span, quarantine=quarantine, text=text):
                last = b.seq
                yield b
            if profs is not None and profs.height:
                yield from odp_batches(profs.with_columns(pl.lit(-1, pl.Int64).alias("offset")),
                                       kind="odp-profiles", max_objects=max_objects,
                                       max_bytes=self.max_bytes, start_seq=last + 1)

        return batches(), {"events": recs.height, "visitors": -1}

    def _chunk(self, n: int) -> int:
        """Events per encoded part: one part under speed pacing (global time order); in a
        dry run at least 1,000,000 (nothing to overlap with); else ``chunk_events``."""
        if self.pacer.speed is not None:
            return n + 1
        if self.dry_run is not None:
            return max(self.chunk_events, 1_000_000)
        return self.chunk_events

    def _set_aside_invalid(self, vis: pl.DataFrame) -> pl.DataFrame:
        """Local checks before anything is sent: 13-digit ms timestamps (events are sorted
        within a visitor, so first/last bound them). Failing visitors go to ``_invalid``."""
        bad = (pl.col("first_ms").is_null() | (pl.col("first_ms") < 10**12)
               | (pl.col("last_ms") >= 10**13))
        for row in vis.filter(bad).iter_rows(named=True):
            self._invalid.append(Quarantined(
                row["visitor_id"], row["session_id"], row["events"], row["nbytes"], row["json"],
                row["offsets"],
                reason="local validation: event timestamps must be epoch milliseconds with 13 "
                       f"digits (this visitor's run from {row['first_ms']} to {row['last_ms']}: "
                       "EventTime before 2001-09-09 or after 2286-11-20)",
            ))
        return vis.filter(~bad)

    # ----------------------------------------------------------------- run

    def run(self, events: Any) -> ReplayReport:
        """Replay ``events`` (canonical frame, or anything ``schema.normalize`` / a path
        ``exports.read_events`` accepts). Returns a :class:`ReplayReport`; also kept in
        ``self.report`` when the run stops on an exception."""
        t0 = time.perf_counter()
        quarantine: list[Quarantined] = []
        batches, totals = self.plan(events, quarantine)
        return self._execute(batches, totals, quarantine, t0)

    def resend(self, source: str | os.PathLike[str]) -> ReplayReport:
        """Send bodies from a file again: a dry-run file (one body per line), or a
        ``rejected``/``failed`` file (``{"body": ...}`` lines). Bodies go as they are
        (same account, same uuids: the service deduplicates what it already has), with
        the same workers, retries, checkpoint and report as :meth:`run`."""
        from psanalytics.errors import InputError

        path = Path(source)
        if not path.exists():
            raise InputError("no such file", path=str(path))
        raw = read_bytes(path)  # .gz/.zst by name or magic
        t0 = time.perf_counter()
        self._reconcile_source, self._unmapped = None, {}
        batches: list[Batch] = []
        n_events = 0
        for line_no, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InputError(f"not valid JSON: {exc}", path=str(path), line=line_no) from None
            body = rec.get("body", rec) if isinstance(rec, dict) else rec
            odp_kind = _odp_kind(body)
            if odp_kind is not None:  # an ODP events or profiles array
                parts = [orjson.dumps(o).decode() for o in body]
                data = ("[" + ",".join(parts) + "]").encode()
                b = Batch(seq=len(batches), id=_resend_id(len(batches), data), body=data, visitors=0,
                          events=len(body), first_ms=0, last_ms=0, offset_min=-1, offset_max=-1,
                          kind=odp_kind, parts=parts, prefix=b"[", suffix=b"]")
            elif isinstance(body, list):  # a TrackBulk array
                data = orjson.dumps(body)
                b = Batch(seq=len(batches), id=_resend_id(len(batches), data), body=data, visitors=0,
                          events=len(body), first_ms=0, last_ms=0, offset_min=-1, offset_max=-1,
                          kind="tracking")
            elif isinstance(body, dict) and isinstance(body.get("visitors"), list):
                visitors = [orjson.dumps(v).decode() for v in body["visitors"]]
                head = {k: v for k, v in body.items() if k != "visitors"}
                prefix = orjson.dumps(head)[:-1] + (b',"visitors":[' if head else b'"visitors":[')
                counts = [sum(len(sn.get("events") or []) for sn in v.get("snapshots") or [])
                          for v in body["visitors"]]
                data = prefix + ",".join(visitors).encode() + b"]}"
                b = Batch(seq=len(batches), id=_resend_id(len(batches), data), body=data,
                          visitors=len(visitors), events=sum(counts), first_ms=0, last_ms=0,
                          offset_min=-1, offset_max=-1, parts=visitors, prefix=prefix,
                          part_events=counts, part_first_ms=[0] * len(visitors))
            else:
                raise InputError("not an Event API body or a TrackBulk array", path=str(path), line=line_no)
            if b.kind.split("-")[0] != self.kind.split("-")[0]:
                raise InputError(f"a {b.kind} body, but this replayer sends to {self.kind}",
                                 path=str(path), line=line_no)
            n_events += b.events
            batches.append(b)
        return self._execute(iter(batches), {"events": n_events, "visitors": -1}, [], t0)

    def _execute(self, batches: Iterator[Batch], totals: Mapping[str, int],
                 quarantine: list[Quarantined], t0: float) -> ReplayReport:
        """Drive a run: pacing releases each batch, the :class:`~._run.Dispatcher` sends it,
        :meth:`_settle` classifies the outcome and the :class:`~._run.Recorder` writes it
        down (report, checkpoint, side files, bar)."""
        report = ReplayReport(sink=self._sink_name(), dry_run=self.dry_run is not None)
        self.report = report
        report._source = self._reconcile_source
        report.unmapped = dict(self._unmapped)
        report.planned_events = totals["events"]
        rec = Recorder(report, checkpoint=self._open_checkpoint(totals), bar=self._bar(totals["events"]),
                       on_batch=self.on_batch, rejected=self.rejected_path, failed=self.failed_path,
                       quarantine=self.quarantine_path, dry_run=self.dry_run)
        if self.dry_run is not None and self.dry_run.exists():
            self.dry_run.unlink()  # a dry run always writes a fresh file
        deadline = None if self.time_limit is None else t0 + self.time_limit
        disp = None
        if self.dry_run is None:
            assert self.sink is not None
            disp = Dispatcher(self.sink.send, self.workers, lambda fut, b: self._settle(fut, b, rec),
                              lambda b: rec.resolved_before(b, advance=False))
        try:
            for batch in batches:
                if deadline is not None and time.perf_counter() > deadline:
                    report.interrupted = True
                    break
                if rec.resolved_before(batch):
                    continue
                self._release(batch)
                if disp is None:
                    rec.written(batch)
                    continue
                disp.submit(batch)
                disp.drain(block=False)
            if disp is not None:
                disp.finish()
        except BaseException:
            report.interrupted = True
            if disp is not None:  # graceful stop: record the acks of requests that finish
                for b, _ in disp.stop():
                    with contextlib.suppress(BaseException):
                        rec.acked_on_stop(b)
            raise
        finally:
            if disp is not None:
                disp.shutdown()
            report.duration_s = time.perf_counter() - t0
            report.idle_capped_s = self.pacer.idle_capped
            rec.close(quarantine, self._invalid)
            if self.dry_run is not None:
                self._write_summary(report, totals)
            if self.sink is not None and getattr(self, "_close_sink", False):
                self.sink.close()
        return report

    def _open_checkpoint(self, totals: Mapping[str, int]) -> Checkpoint | None:
        if self.checkpoint_path is None:
            return None
        if self.checkpoint_path.exists() and not self.resume:
            raise ReplayError(f"checkpoint {self.checkpoint_path} exists and resume=False; "
                              "delete it or pass resume=True")
        ckpt = Checkpoint(self.checkpoint_path)
        if self.dry_run is None:
            ckpt.open({"sink": self.kind, "account_id": self.account_id, "events": totals["events"]})
        return ckpt

    def _release(self, batch: Batch) -> None:
        """Pacing: wait until the batch is due (a dry run never sleeps: the schedule only
        gives the ETA)."""
        if self.dry_run is not None:
            if self.pacer.active:
                eta = self.pacer.due(batch.first_ms / 1000.0, batch.events) - (self.pacer._start or 0.0)
                self._eta = max(self._eta, eta + (batch.events / self.pacer.rate if self.pacer.rate else 0.0))
        else:
            self.pacer.wait(batch.first_ms / 1000.0, batch.events)
        batch.released_at = self.clock()

    def _settle(self, fut: Future[Any], batch: Batch, rec: Recorder) -> list[Batch]:
        """Classify one finished send (main thread); returns sub-batches to send."""
        exc = fut.exception()
        if exc is None:
            res = fut.result()
            rec.status(int(getattr(res, "status", 0) or 0), int(getattr(res, "retries", 0) or 0))
            rec.sent(batch, res)
            return []
        from psanalytics.api.http import ApiError

        if not isinstance(exc, ApiError):
            raise exc
        status = _status_of(exc)
        rec.status(status, max(0, int(getattr(exc, "attempts", 1) or 1) - 1))
        if status in _STOP_STATUSES:
            # the key or the URL is wrong: every batch would fail the same way. Stop,
            # record nothing (a resume with the right key or URL sends everything).
            raise ReplayError(
                f"replay stopped: {self._sink_name()} answered HTTP {status} "
                f"({_STOP_STATUSES[status]}): {_reason_of(exc)}; nothing was recorded as "
                "rejected: fix the key or URL and run again (with the same checkpoint, "
                "acknowledged batches are skipped)") from exc
        if status is not None and 400 <= status < 500 and status not in (408, 429):
            if self.split_rejected and batch.splittable and batch.kind in ("event-api", "odp", "odp-profiles"):
                return list(batch.split())
            rec.rejected(batch, Rejection(batch=batch.id, status=status, reason=_reason_of(exc),
                                          errors=list(getattr(exc, "errors", []) or []),
                                          visitors=batch.visitors, events=batch.events), exc)
            return []
        rec.failed(batch, status, _reason_of(exc), exc)
        return []

    def _sink_name(self) -> str:
        if self.sink is None:
            return self.kind
        url = getattr(self.sink, "url", None) or getattr(getattr(self.sink, "store", None), "url", None)
        return f"{self.kind} {url}" if url else self.kind

    def _bar(self, total: int) -> Any:
        import sys

        from psanalytics._config import progress_enabled

        show = progress_enabled(self.progress,
                                default=sys.stderr.isatty() or "ipykernel" in sys.modules)
        if not show:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, unit="ev", unit_scale=True, desc="replay", leave=True)

    def _write_summary(self, report: ReplayReport, totals: Mapping[str, int]) -> None:
        assert self.dry_run is not None
        eta = self._eta if self.pacer.active else None
        summary = {
            "dry_run": str(self.dry_run),
            "sink": self.kind,
            "visitors": report.visitors,
            "events": report.events,
            "batches": report.batches,
            "bytes": report.bytes,
            "quarantined": report.quarantined,
            "quarantined_events": report.quarantined_events,
            "max_bytes": self.max_bytes,
            "encode_s": report.duration_s,
            "eta_s": eta,  # seconds a live run would take under the pacing options (None: unpaced)
        }
        path = self.dry_run.with_name(self.dry_run.name.removesuffix(".gz") + ".summary.json")
        path.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
        report.files["summary"] = str(path)


def _make_replayer(url: str | None, to: str, api_key: str | None, transport: Any,
                   options: dict[str, Any]) -> tuple[Replayer, Any]:
    strict = bool(options.pop("strict", False))
    retries = options.pop("retries", None)
    policy = None
    if retries is not None:
        from psanalytics.api.http import RetryPolicy

        policy = retries if isinstance(retries, RetryPolicy) else RetryPolicy(max_attempts=int(retries))
    if to not in _KINDS:
        raise ReplayError(f"to must be 'event-api', 'tracking' or 'odp' (got {to!r})")
    emulator = None
    sink: Any
    if options.get("dry_run") is not None:
        sink = to
    elif to == "odp":
        if url is None and transport is None:
            from psanalytics.emulator import Emulator

            emulator = Emulator(odp_api_key=str(api_key) if api_key else None)
            transport = emulator.transport()
            api_key = api_key or emulator.odp_api_key
        sink = OdpSink(url, api_key=api_key, transport=transport, policy=policy)
    elif to == "event-api":
        if url is None and transport is None:
            from psanalytics.emulator import Emulator

            emulator = Emulator(strict=strict)
            transport = emulator.transport()
        sink = EventApiSink(url, strict=strict, transport=transport, policy=policy)
    else:
        store_options = {"policy": policy} if policy is not None else {}
        if url is None and transport is None:
            from psanalytics._connect import connect

            sink = TrackingSink(connect(quiet=True, **store_options))
        else:
            sink = TrackingSink(url=url, api_key=api_key, transport=transport, **store_options)
    rep = Replayer(sink, strict=strict, **options)
    rep._close_sink = True  # type: ignore[attr-defined]
    return rep, emulator


def replay(
    events: Any,
    url: str | None = None,
    *,
    to: Literal["event-api", "tracking", "odp"] = "event-api",
    api_key: str | None = None,
    transport: Any = None,
    **options: Any,
) -> ReplayReport:
    """Replay track events into the Event API (default), a Profile Store's Tracking API,
    or Optimizely Data Platform (``to="odp"``: events, and customers with ``profiles=True``
    or ``profiles=store.profiles()`` / a profiles file;
    ``api_key`` or ``PSANALYTICS_ODP_API_KEY``; ``mapping=`` an ``OdpMap``).

    ``url``: the target server. None -> an in-process emulator (nothing leaves the
    machine); ``"us"``/``"eu"`` or the full production URL -> Optimizely's Event API
    (explicit opt-in only). ``to="tracking"`` posts TrackBulk batches with ``api_key``.
    ``options`` are :class:`Replayer` options (``account_id``, ``speed``, ``rate``,
    ``checkpoint``, ``dry_run``, ``strict``, ``retries``, ``event_map``, ``sessions``, ...).

    >>> report = replay(events, url=srv.url, account_id="12345", rate=50_000)  # doctest: +SKIP
    """
    rep, emulator = _make_replayer(url, to, api_key, transport, dict(options))
    report = rep.run(events)
    if emulator is not None:
        report.files.setdefault("emulator", "in-process (replay(url=None))")
    return report


def resend(
    source: str | os.PathLike[str],
    url: str | None = None,
    *,
    to: Literal["event-api", "tracking", "odp"] = "event-api",
    api_key: str | None = None,
    transport: Any = None,
    **options: Any,
) -> ReplayReport:
    """Send the bodies of a dry-run, ``failed`` or ``rejected`` file (see
    :meth:`Replayer.resend`); target and options as for :func:`replay`."""
    rep, _ = _make_replayer(url, to, api_key, transport, dict(options))
    return rep.resend(source)
