"""Replay benchmark: psanalytics' Replayer vs the Optimizely SDK's default dispatch pattern.

Measured in the same run, against the same emulator served over loopback (serve()):

1. dry-run encoding: track events -> exact Event API bodies written as JSON lines
   (target >= 200,000 events/s);
2. replay of N events (default 1,000,000) to ``POST /v1/events`` with the Replayer
   (bounded worker threads, batches of visitors up to 3.4 MB), checked against the
   emulator's accepted (deduplicated) events;
3. the reference: the SDK's default pattern, one visitor (one event) per request, sent
   sequentially with ``optimizely.event_dispatcher.EventDispatcher.dispatch_event`` (a new
   requests.Session per event, as the SDK does). It runs on a subset (``--ref-events``,
   default 3,000) and its events/s is extrapolated: sending 1,000,000 events that way
   would take hours. Bodies are built with the SDK's own payload classes.

Target: Replayer events/s >= 50x the reference's.

    .venv/bin/python benchmarks/replay.py [--events 1000000] [--ref-events 3000]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def accepted_count(srv) -> int:
    st = srv.state()
    for path in (("event_api", "accepted"), ("event_api", "kept"), ("events_api", "accepted")):
        cur = st
        try:
            for k in path:
                cur = cur[k]
            if isinstance(cur, int):
                return cur
            if isinstance(cur, list):
                return len(cur)
        except (KeyError, TypeError):
            continue
    acc = srv.emulator.accepted_events()
    return getattr(acc, "height", None) or len(acc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--ref-events", type=int, default=3_000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--max-visitors", type=int, default=500)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=3, help="dry runs; the fastest is reported")
    args = ap.parse_args()

    import polars as pl
    from optimizely.event import payload
    from optimizely.event.log_event import LogEvent
    from optimizely.event_dispatcher import EventDispatcher

    from psanalytics import samples
    from psanalytics.emulator import serve
    from psanalytics.replay import Replayer, encode_visitors, replay
    from psanalytics.schema import empty_frame

    print(f"python {sys.version.split()[0]}, polars {pl.__version__}, cpus {os.cpu_count()}")
    t = time.perf_counter()
    events = samples.generate(args.events, seed=args.seed)
    print(f"generated {events.height:,} events in {time.perf_counter() - t:.1f} s")

    # 1. encoding ---------------------------------------------------------------------
    t, c = time.perf_counter(), time.process_time()
    vis = encode_visitors(events)
    enc_s, enc_cpu = time.perf_counter() - t, time.process_time() - c
    print(f"encode_visitors:        {events.height / enc_s:>12,.0f} events/s  ({enc_s:.2f} s wall, "
          f"{enc_cpu:.2f} s CPU, {vis.height:,} visitors)")
    best = None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bodies.jsonl"
        for _ in range(args.repeat):  # best of N: the machine is shared
            c = time.process_time()
            dry = Replayer(None, account_id="12345", dry_run=out, progress=False,
                           max_visitors=args.max_visitors).run(events)
            dry_cpu = time.process_time() - c
            if best is None or dry.duration_s < best[0].duration_s:
                best = (dry, dry_cpu)
        size = out.stat().st_size
    dry, dry_cpu = best
    dry_rate = dry.events / dry.duration_s
    print(f"dry run (encode+batch+write, best of {args.repeat}): {dry_rate:>10,.0f} events/s  ({dry.duration_s:.2f} s wall, "
          f"{dry_cpu:.2f} s CPU over all threads, {dry.batches:,} bodies, {size / 1e6:,.0f} MB)")
    del vis

    with serve(empty_frame()) as srv:
        # 2. Replayer over loopback ---------------------------------------------------
        t = time.perf_counter()
        report = replay(events, url=srv.url, account_id="12345", workers=args.workers,
                        max_visitors=args.max_visitors, progress=False)
        wall = time.perf_counter() - t
        kept = accepted_count(srv)
        print(f"Replayer -> emulator:   {report.events / wall:>12,.0f} events/s  ({wall:.1f} s wall incl. "
              f"encoding, {report.batches:,} requests, {report.bytes / 1e6:,.0f} MB, retries {report.retries})")
        print(f"  emulator accepted {kept:,} events (expected {events.height:,}): "
              f"{'OK' if kept == events.height else 'MISMATCH'}")

        # 3. reference: SDK default pattern on a subset -------------------------------
        srv.reset()
        sub = events.head(args.ref_events)
        sub_vis = encode_visitors(sub)
        import orjson

        logs = []
        for text in sub_vis.get_column("json"):
            v = orjson.loads(text)
            attrs = [payload.VisitorAttribute(a["entity_id"], a["key"], a["type"], a["value"])
                     for a in v["attributes"]]
            for s in v["snapshots"]:
                for e in s["events"]:
                    snap = payload.Snapshot([payload.SnapshotEvent(
                        e["entity_id"], e["uuid"], e["key"], e["timestamp"], e.get("revenue"), None, e.get("tags"))])
                    batch = payload.EventBatch("12345", "", "", "python-sdk", "5.7.0", True, True,
                                               [payload.Visitor([snap], attrs, v["visitor_id"])])
                    logs.append(LogEvent(srv.url.rstrip("/") + "/v1/events", batch.get_event_params(),
                                         "POST", {"Content-Type": "application/json"}))
        t = time.perf_counter()
        for le in logs:
            EventDispatcher.dispatch_event(le)
        ref_s = time.perf_counter() - t
        ref_rate = len(logs) / ref_s
        ref_kept = accepted_count(srv)
        print(f"SDK default dispatch:   {ref_rate:>12,.0f} events/s  ({len(logs):,} events in {ref_s:.1f} s, "
              f"one visitor per request, sequential; accepted {ref_kept:,}; extrapolated to "
              f"{events.height:,} events: {events.height / ref_rate / 3600:.1f} h)")

    ratio = (report.events / wall) / ref_rate
    print()
    print(f"Replayer / SDK default: {ratio:,.0f}x events/s  (target >= 50x): {'PASS' if ratio >= 50 else 'FAIL'}")
    print(f"dry-run encoding:       {dry_rate:,.0f} events/s (target >= 200,000): "
          f"{'PASS' if dry_rate >= 200_000 else 'FAIL'}")
    print(f"peak RSS {rss_mb():,.0f} MB; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          "(other processes share the machine: wall-clock rates are lower bounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
