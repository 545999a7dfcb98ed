"""Emulator benchmark: 10 M events, one-hour windows, 1,000-event pages over real HTTP.

Prints, measured side by side in this run:
- median latency of ``GET TrackEvents`` for a 1,000-event page of a one-hour window
  (real uvicorn server on 127.0.0.1, httpx client), and of the same query in-process
  (store slice + filter + encode, no HTTP);
- the reference: median time to encode those same 1,000 events to API JSON
  (``wire.api_json.to_api_json``); target: page latency within 2x of it (i.e. no scanning);
- a full-scan reference: filtering the whole 10 M frame with the same filter once;
- pages/s of a sequential reader (``$skip`` paging inside windows, then window after window).

Usage: ``.venv/bin/python benchmarks/emulator.py [--events 10000000] [--pages 40]``.
Peak memory is about 6 GB at 10 M events (the data is generated in sorted chunks, so the
store keeps it without a copy).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import time
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import polars as pl

from psanalytics import samples, schema
from psanalytics.emulator import Emulator
from psanalytics.emulator.server import Server
from psanalytics.query.odata import compile_filter
from psanalytics.wire import api_json

START = datetime(2024, 3, 4, tzinfo=UTC)
DAYS = 14


def fmt(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def build(n: int, chunks: int) -> pl.DataFrame:
    """n events over 14 days, generated in time-ordered chunks, each sorted by (EventTime, TrackId)."""
    per = n // chunks
    span = timedelta(days=DAYS) / chunks
    parts = []
    for i in range(chunks):
        part = samples.generate(per, days=span.total_seconds() / 86_400, start=START + i * span, seed=100 + i)
        parts.append(part.sort(["EventTime", "TrackId"]))
        del part
    return pl.concat(parts, rechunk=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--pages", type=int, default=40, help="windows measured for latency")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    t0 = time.perf_counter()
    events = build(args.events, args.chunks)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    emu = Emulator(events, api_key="bench-key")
    t_load = time.perf_counter() - t0
    del events
    n = len(emu.store)
    print(f"events: {n:,} generated in {t_gen:.1f} s, store built in {t_load:.2f} s")

    rng = random.Random(args.seed)
    windows = []
    while len(windows) < args.pages:
        h = rng.randrange(0, DAYS * 24 - 1)
        lo = START + timedelta(hours=h)
        windows.append((lo, lo + timedelta(hours=1)))

    srv = Server(emu).start()
    try:
        client = httpx.Client(base_url=srv.url, headers={"Authorization": "epi-single bench-key"},
                              timeout=60)
        client.get("/api/v2.0/TrackEvents", params={"$top": "1000"})  # warm-up
        http_ms, inproc_ms, enc_ms, sizes, totals = [], [], [], [], []
        for lo, hi in windows:
            ftext = f"EventTime ge {fmt(lo)} and EventTime lt {fmt(hi)}"
            params = {"$filter": ftext, "$top": "1000", "$orderby": "EventTime asc,TrackId asc"}
            # in-process: the store's work plus encoding, no HTTP (different filter text
            # per window, so the store's small result cache never helps here)
            emu.store._cache.clear()
            t = time.perf_counter()
            res = emu.store.query(ftext, skip=0, top=1000)
            body = api_json.to_api_json(res.page, envelope=True, total=res.total)
            inproc_ms.append((time.perf_counter() - t) * 1000)
            page = res.page
            # reference: encoding the same 1,000 events to API JSON
            t = time.perf_counter()
            api_json.to_api_json(page, envelope=True, total=res.total)
            enc_ms.append((time.perf_counter() - t) * 1000)
            # real HTTP (cache cleared so the server does the window slice and filter again)
            emu.store._cache.clear()
            t = time.perf_counter()
            r = client.get("/api/v2.0/TrackEvents", params=params)
            http_ms.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.text
            assert r.content == body, "HTTP and in-process bodies differ"
            sizes.append(len(r.content))
            totals.append(res.total)
        med = statistics.median
        print(f"one-hour windows: {len(windows)}, matches per window median {med(totals):,.0f}, "
              f"page body median {med(sizes) / 1e6:.2f} MB (1,000 events)")
        print(f"reference  encode 1,000 events to JSON     median {med(enc_ms):8.2f} ms")
        print(f"emulator   in-process query + encode        median {med(inproc_ms):8.2f} ms  "
              f"ratio {med(inproc_ms) / med(enc_ms):.2f}x")
        print(f"emulator   GET over HTTP (uvicorn, httpx)   median {med(http_ms):8.2f} ms  "
              f"ratio {med(http_ms) / med(enc_ms):.2f}x  (target <= 2x)")

        # full-scan reference: the same filter evaluated over all rows (the time column is
        # rebuilt from numpy so Polars has no "sorted" flag to binary-search with), then
        # the matching rows gathered: what a page would cost without the sorted slicing
        lo, hi = windows[0]
        ftext = f"EventTime ge {fmt(lo)} and EventTime lt {fmt(hi)}"
        col = pl.Series("EventTime", emu.store._main.times).cast(schema.TIME_DTYPE)
        t = time.perf_counter()
        mask = pl.DataFrame([col]).select(compile_filter(ftext)).to_series()
        m = emu.store._main.frame.filter(mask).height
        t_scan = (time.perf_counter() - t) * 1000
        print(f"reference  full scan of {n:,} rows with the same filter: {t_scan:.1f} ms ({m:,} matches)")
        del col, mask

        # sequential reader: page through windows with $skip (as the client does)
        t = time.perf_counter()
        pages = 0
        rows = 0
        deadline = t + 20
        h = 0
        while time.perf_counter() < deadline and h < DAYS * 24:
            lo = START + timedelta(hours=h)
            ftext = f"EventTime ge {fmt(lo)} and EventTime lt {fmt(lo + timedelta(hours=1))}"
            skip = 0
            while True:
                r = client.get("/api/v2.0/TrackEvents", params={
                    "$filter": ftext, "$top": "1000", "$skip": str(skip),
                    "$orderby": "EventTime asc,TrackId asc"})
                body = orjson.loads(r.content)
                pages += 1
                rows += body["count"]
                skip += body["count"]
                if skip >= body["total"] or body["count"] == 0 or skip + 1000 >= 10_000:
                    break
            h += 1
        el = time.perf_counter() - t
        print(f"sequential reader over HTTP: {pages:,} pages of up to 1,000 in {el:.1f} s = "
              f"{pages / el:,.1f} pages/s, {rows / el:,.0f} events/s ({h} one-hour windows)")
        client.close()
    finally:
        srv.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"peak RSS: {rss:.2f} GB; load average at the end: {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs (figures are noisy when the machine is shared)")


if __name__ == "__main__":
    main()
