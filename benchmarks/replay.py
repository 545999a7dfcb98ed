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

ODP (``--target odp`` or ``all``, the default), same run, same events:

4. dry run to ODP bodies (JSON arrays of <= 500 ODP events), target >= 200,000 events/s;
5. the Replayer to the emulator's ``POST /v3/events`` over loopback, against the SDK's
   ODP pattern: ``OdpEventApiManager.send_odp_events`` with one event per request,
   sequential (on ``--ref-events``, extrapolated); target >= 50x;
6. issue 16's move: ``--odp-fault-events`` (50,000) events under 10 % injected faults
   (5 % 500/503, 5 % 429), the run killed after 20 batches and resumed from its
   checkpoint; every event must be accepted exactly once and ``report.reconcile()``
   show no difference.

    .venv/bin/python benchmarks/replay.py [--events 1000000] [--ref-events 3000] [--target all]
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
    ap.add_argument("--target", choices=["event-api", "odp", "all"], default="all")
    ap.add_argument("--odp-fault-events", type=int, default=50_000)
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
    if args.target in ("odp", "all"):
        odp_section(args, events)
    if args.target == "odp":
        return 0

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


def odp_section(args, events) -> None:
    import orjson
    import polars as pl
    from optimizely.odp.odp_event import OdpEvent
    from optimizely.odp.odp_event_api_manager import OdpEventApiManager

    from psanalytics.api.http import RetryPolicy
    from psanalytics.emulator import serve
    from psanalytics.replay import Replayer, differences, encode_odp_events, replay
    from psanalytics.schema import empty_frame

    key = "odp-benchmark-key"
    print("\n== ODP ==")
    best = None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "odp.jsonl"
        for _ in range(args.repeat):
            c = time.process_time()
            dry = Replayer("odp", dry_run=out, progress=False).run(events)
            cpu = time.process_time() - c
            if best is None or dry.duration_s < best[0].duration_s:
                best = (dry, cpu)
        size = out.stat().st_size
    dry, cpu = best
    dry_rate = dry.events / dry.duration_s
    print(f"ODP dry run (best of {args.repeat}):  {dry_rate:>12,.0f} events/s  ({dry.duration_s:.2f} s wall, "
          f"{cpu:.2f} s CPU, {dry.batches:,} bodies, {size / 1e6:,.0f} MB)")

    with serve(empty_frame(), odp_api_key=key) as srv:
        # CPU seconds of this process count both sides (the emulator serves from a thread
        # of this process): a per-event cost that the machine's load does not change.
        t, c = time.perf_counter(), time.process_time()
        rep = replay(events, srv.url, to="odp", api_key=key, workers=args.workers, progress=False)
        wall, cpu_bulk = time.perf_counter() - t, time.process_time() - c
        kept = srv.emulator.odp.state(limit=0)["accepted"]
        rate = rep.events / wall
        print(f"Replayer -> ODP emulator: {rate:>10,.0f} events/s  ({wall:.1f} s wall incl. encoding, "
              f"{cpu_bulk:.1f} s CPU client+server = {rep.events / cpu_bulk:,.0f} events per CPU-second, "
              f"{rep.batches:,} requests; accepted {kept:,} of {events.height:,}: "
              f"{'OK' if kept == events.height else 'MISMATCH'})")
        srv.emulator.reset()
        sub = encode_odp_events(events.head(args.ref_events))
        odp_events = []
        for text in sub.get_column("json"):
            e = orjson.loads(text)
            odp_events.append(OdpEvent(e["type"], e.get("action", ""), e["identifiers"], e["data"]))
        mgr = OdpEventApiManager()
        t, c = time.perf_counter(), time.process_time()
        for e in odp_events:  # the SDK's pattern: one event per request, sequential
            mgr.send_odp_events(key, srv.url, [e])
        ref_s, ref_cpu = time.perf_counter() - t, time.process_time() - c
        ref_rate = len(odp_events) / ref_s
        ref_kept = srv.emulator.odp.state(limit=0)["accepted"]
        print(f"SDK send_odp_events x1:   {ref_rate:>10,.0f} events/s  ({len(odp_events):,} events in {ref_s:.1f} s, "
              f"{ref_cpu:.1f} s CPU = {len(odp_events) / ref_cpu:,.0f} events per CPU-second; accepted {ref_kept:,})")
    ratio = rate / ref_rate
    cpu_ratio = (rep.events / cpu_bulk) / (len(odp_events) / ref_cpu)
    print(f"ODP Replayer / SDK one-per-request: {ratio:,.0f}x wall, {cpu_ratio:,.0f}x per CPU-second "
          f"(target >= 50x): {'PASS' if ratio >= 50 else 'FAIL'} (wall)")
    print(f"ODP dry run: {dry_rate:,.0f} events/s (target >= 200,000): {'PASS' if dry_rate >= 200_000 else 'FAIL'}; "
          f"{dry.events / cpu:,.0f} events per CPU-second")

    # 6. the faulted, killed and resumed move ---------------------------------------------
    n = min(args.odp_fault_events, events.height)
    move = events.head(n)
    faults = {"error_rate": 0.05, "error_statuses": [500, 503], "rate_limit_rate": 0.05,
              "retry_after": "0", "seed": 16, "routes": ["odp_events", "odp_profiles"]}
    fast = RetryPolicy.fast(max_attempts=12)
    with tempfile.TemporaryDirectory() as tmp, serve(empty_frame(), odp_api_key=key, faults=faults) as srv:
        ck = Path(tmp) / "move.ckpt"
        calls = []

        def kill(batch, outcome):
            calls.append(1)
            if len(calls) == 20:
                raise KeyboardInterrupt

        try:
            replay(move, srv.url, to="odp", api_key=key, checkpoint=ck, retries=fast, progress=False,
                   on_batch=kill)
        except KeyboardInterrupt:
            pass
        before = srv.emulator.odp.state(limit=0)["accepted"]
        rep = replay(move, srv.url, to="odp", api_key=key, checkpoint=ck, retries=fast, progress=False,
                     profiles=True)
        table = rep.reconcile(srv)
        st = srv.emulator.odp.state(limit=0)
        ids = srv.emulator.odp.events_frame().get_column("idempotence_id")
        faulted = sum(1 for j in srv.state(limit=None)["journal"] if j.get("fault"))
    ok = (st["accepted"] == n and ids.n_unique() == n and differences(table).height == 0)
    totals = table.select(pl.sum("read"), pl.sum("sent"), pl.sum("accepted")).row(0)
    print(f"faulted move of {n:,} events: killed after 20 batches ({before:,} accepted), resumed "
          f"(skipped {rep.skipped_events:,} acknowledged events, {rep.retries:,} retries, ~{faulted:,} faulted requests "
          f"in the journal); accepted {st['accepted']:,} distinct, duplicates recognised {st['duplicates']:,}; "
          f"reconcile read/sent/accepted {totals}, differences {differences(table).height}: {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    raise SystemExit(main())
