"""The two halves of a replay run, kept apart (dlt keeps a pipeline's steps and its state
apart the same way):

- :class:`Dispatcher`: sending. A thread pool with at most ``2 x workers`` batches in
  flight (the producer waits: backpressure), settling finished sends on the main thread,
  and a graceful stop that lets running requests finish.
- :class:`Recorder`: recording. The report, the checkpoint, the side files (rejected,
  failed, quarantine, dry run), the progress bar and the ``on_batch`` callback.

``Replayer._execute`` drives both; ``Replayer._settle`` classifies a finished send
(acknowledged, refused, retries exhausted, wrong key/URL) between them.
"""

from __future__ import annotations

import contextlib
import gzip
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import IO, Any

import orjson

from psanalytics.replay.batching import Batch, Quarantined

__all__ = ["Dispatcher", "Recorder"]


class JsonLines:
    """Append JSON lines to a file opened on first write (gzip when the name ends .gz)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fh: IO[bytes] | None = None
        self._lock = threading.Lock()
        self.count = 0

    def write(self, line: bytes | Mapping[str, Any]) -> None:
        if self.path is None:
            return
        data = line if isinstance(line, bytes) else orjson.dumps(line)
        with self._lock:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = (gzip.open(self.path, "ab") if self.path.suffix == ".gz"
                            else open(self.path, "ab"))  # noqa: SIM115
            self._fh.write(data)  # two writes: no copy of a large body to add the newline
            self._fh.write(b"\n")
            self.count += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


# --------------------------------------------------------------------------- dispatch


class Dispatcher:
    """Send batches on ``workers`` threads; ``settle(future, batch)`` (main thread) returns
    sub-batches to send (a refused batch split in two); ``resolved(batch)`` says a
    sub-batch was resolved before a resume (it is not sent again)."""

    def __init__(self, send: Callable[[Batch], Any], workers: int,
                 settle: Callable[[Future[Any], Batch], list[Batch]],
                 resolved: Callable[[Batch], bool]) -> None:
        self._send, self._settle, self._resolved = send, settle, resolved
        self.max_inflight = 2 * workers
        self.inflight: dict[Future[Any], Batch] = {}
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="psa-replay")

    def submit(self, batch: Batch) -> None:
        while len(self.inflight) >= self.max_inflight:  # backpressure
            self.drain(block=True)
        self.inflight[self._executor.submit(self._send, batch)] = batch

    def drain(self, block: bool) -> None:
        """Settle the finished sends (waiting for one when ``block``)."""
        if not self.inflight:
            return
        done, _ = wait(list(self.inflight), timeout=None if block else 0, return_when=FIRST_COMPLETED)
        # Take every finished future out first: settling may split a refused batch and
        # submit its halves, whose backpressure re-enters drain() (it must not see these).
        finished = [(fut, self.inflight.pop(fut)) for fut in done]
        for i, (fut, batch) in enumerate(finished):
            try:
                subs = self._settle(fut, batch)
            except BaseException:
                # the graceful stop must still record the acks of the others
                self.inflight.update(finished[i + 1:])
                raise
            for sub in subs:
                if not self._resolved(sub):
                    self.submit(sub)

    def finish(self) -> None:
        while self.inflight:
            self.drain(block=True)

    def stop(self, timeout: float | None = None) -> list[tuple[Batch, Any]]:
        """Graceful stop: cancel what has not started, wait for running requests, and
        return the (batch, result) of those that were acknowledged.

        No timeout by default: a request still running is acknowledged or not by the
        server, and its ack must reach the checkpoint (``shutdown()`` waits for it anyway,
        so a cap here only lost acks on a slow or loaded box)."""
        for fut in list(self.inflight):
            fut.cancel()
        running = [f for f in self.inflight if not f.cancelled()]
        wait(running, timeout=timeout)
        return [(self.inflight[f], f.result()) for f in running if f.done() and f.exception() is None]

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- recording


class Recorder:
    """Everything a run writes down: ``report``, checkpoint, side files, bar, callback."""

    def __init__(self, report: Any, *, checkpoint: Any, bar: Any,
                 on_batch: Callable[[Batch, Any], None] | None,
                 rejected: Path | None, failed: Path | None, quarantine: Path | None,
                 dry_run: Path | None) -> None:
        self.report, self.ckpt, self.bar, self.on_batch = report, checkpoint, bar, on_batch
        self.rejected_out = JsonLines(rejected)
        self.failed_out = JsonLines(failed)
        self.quarantine_out = JsonLines(quarantine)
        self.dry_out = JsonLines(dry_run)
        self.dry_run = dry_run

    # -- per batch
    def resolved_before(self, batch: Batch, *, advance: bool = True) -> bool:
        """True (and counted as skipped) when a resumed checkpoint names the batch."""
        if self.ckpt is None or batch.id not in self.ckpt:
            return False
        self.report._outcome(batch, "resumed-" + self.ckpt.done[batch.id])
        self.report.skipped += 1
        self.report.skipped_events += batch.events
        if advance:
            self._advance(batch)
        return True

    def _advance(self, batch: Batch, **postfix: Any) -> None:
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix(refresh=False, **postfix)
            self.bar.update(batch.events)

    def _count(self, batch: Batch) -> None:
        r = self.report
        r._outcome(batch, "sent")
        r.bytes += len(batch.body)
        if batch.kind == "odp-profiles":
            r.profiles += batch.events
            r.profile_batches += 1
            return
        r.batches += 1
        r.events += batch.events
        r.visitors += batch.visitors

    def status(self, status: int | None, retries: int) -> None:
        r = self.report
        r.statuses[status or 0] = r.statuses.get(status or 0, 0) + 1
        r.retries += retries

    def written(self, batch: Batch) -> None:
        """A dry run wrote the batch's body."""
        self.dry_out.write(batch.body)
        self._count(batch)
        self._advance(batch)
        if self.on_batch is not None:
            self.on_batch(batch, None)

    def sent(self, batch: Batch, result: Any) -> None:
        r = self.report
        elapsed = getattr(result, "elapsed_s", None)
        if isinstance(elapsed, (int, float)):
            r.latencies_s.append(float(elapsed))
        self._count(batch)
        if self.ckpt is not None:
            self.ckpt.record(batch, "ok")
        self._advance(batch, retries=r.retries, rejected=r.rejected, failed=r.failed)
        if self.on_batch is not None:
            self.on_batch(batch, result)

    def acked_on_stop(self, batch: Batch) -> None:
        """An in-flight batch acknowledged while the run was stopping."""
        self._count(batch)
        if self.ckpt is not None:
            self.ckpt.record(batch, "ok")

    def rejected(self, batch: Batch, rejection: Any, exc: BaseException) -> None:
        r = self.report
        r.rejected += 1
        r.rejected_events += batch.events
        r.rejections.append(rejection)
        r._outcome(batch, "rejected")
        self.rejected_out.write({"batch": batch.id, "status": rejection.status, "reason": rejection.reason,
                                 "errors": rejection.errors, "body": orjson.Fragment(batch.body)})
        if self.ckpt is not None:
            self.ckpt.record(batch, "rejected")
        self._advance(batch)
        if self.on_batch is not None:
            self.on_batch(batch, exc)

    def failed(self, batch: Batch, status: int | None, reason: str, exc: BaseException) -> None:
        """Retries ran out (5xx/429/timeouts): kept for a later resend, not acknowledged."""
        r = self.report
        r.failed += 1
        r.failed_events += batch.events
        r._outcome(batch, "failed")
        r.failures.append(f"{batch.id}: {reason}")
        self.failed_out.write({"batch": batch.id, "status": status, "reason": reason,
                               "body": orjson.Fragment(batch.body)})
        self._advance(batch)
        if self.on_batch is not None:
            self.on_batch(batch, exc)

    # -- at the end
    def close(self, quarantine: Iterable[Quarantined], invalid: Iterable[Quarantined]) -> None:
        r = self.report
        for q in invalid:
            r.invalid += 1
            r.invalid_events += q.events
            self.rejected_out.write({"visitor_id": q.visitor_id, "session_id": q.session_id, "status": None,
                                     "reason": q.reason, "events": q.events, "offsets": q.offsets,
                                     "visitor": orjson.Fragment(q.json)})
        for q in quarantine:
            r._q_offsets.extend(q.offsets)
            r.quarantined += 1
            r.quarantined_events += q.events
            self.quarantine_out.write({"visitor_id": q.visitor_id, "session_id": q.session_id,
                                       "events": q.events, "bytes": q.nbytes, "offsets": q.offsets,
                                       "visitor": orjson.Fragment(q.json)})
        for out, name in ((self.rejected_out, "rejected"), (self.failed_out, "failed"),
                          (self.quarantine_out, "quarantine"), (self.dry_out, "dry_run")):
            out.close()
            if out.count and out.path is not None:
                r.files[name] = str(out.path)
        if self.ckpt is not None:
            self.ckpt.close()
            if self.dry_run is None:
                r.files["checkpoint"] = str(self.ckpt.path)
        if self.bar is not None:
            with contextlib.suppress(Exception):
                self.bar.close()
