"""Loader benchmark: psanalytics' ProfileStore.events() vs a plain reference client.

Both fetch from the emulator over loopback HTTP in the same run. The emulator runs in a
child process (``python benchmarks/loader.py --serve N``) so the client's CPU is not
shared with the server's GIL.

Reference client ("as the vendor's docs suggest"): one query, sequential ``$skip/$top``
pages (``$top=1000``; ``$skip + $top < 10,000``), each page's JSON through
``pandas.json_normalize`` and concatenated. It cannot go past 9,999 rows, so it is given a
range holding just under 10,000 events; it runs with ``$top=1000`` pages (the fastest
plain setting) and with the API's default ``$top=100``. psanalytics fetches the same range.
The three take turns for 5 rounds (best round kept, so background load hits them alike),
then run once more for peak memory. Then psanalytics fetches all 1,000,000 events three
times (windows planned under the limit, 4 at a time; best run kept, peak memory of the
first run). The emulator has each event's JSON ready before any client starts.

Prints events/s, requests, peak RSS growth, client CPU seconds and per event, and two
parse figures for psanalytics:
- parse CPU / wall: CPU seconds in ``parse_page`` (``time.thread_time`` summed over
  threads) over wall seconds; pages parse on several threads at once, so it can pass 100%;
- parse cost on the critical path: the recorded GETs replayed with the same concurrency,
  bodies read and not parsed; (fetch time - replay time) / fetch time is the share of the
  wall time that parsing adds. For the reference both are the same thing (it is sequential).

    .venv/bin/python benchmarks/loader.py            # 1,000,000 events
    .venv/bin/python benchmarks/loader.py --events 200000
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

KEY = "bench-key-0000"


# --------------------------------------------------------------------------- server child


def serve_child(n: int, seed: int) -> None:
    from psanalytics import samples
    from psanalytics.emulator import serve

    events = samples.generate(n, seed=seed)
    with serve(events, api_key=KEY) as srv:
        # The emulator keeps each event's JSON text (encoded in the background): wait for
        # it, so that no client's timing includes the server's start-up work.
        srv.emulator.store.wait_encoded(120)
        print(srv.url, flush=True)
        sys.stdin.read()  # run until the parent closes our stdin


# --------------------------------------------------------------------------- measuring


class PeakRss:
    """Samples this process's RSS every 5 ms; ``peak - base`` is the growth."""

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 1e6


class Timer:
    """Thread-safe accumulated CPU seconds of the calling threads (``time.thread_time``):
    what parsing costs, not how long a thread waited for the GIL or a core."""

    def __init__(self) -> None:
        self.total = 0.0
        self.lock = threading.Lock()

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*a: Any, **k: Any) -> Any:
            t0 = time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                dt = time.thread_time() - t0
                with self.lock:
                    self.total += dt

        return timed


# --------------------------------------------------------------------------- reference


def reference_fetch(url: str, filter_text: str, page: int = 1000) -> tuple[Any, int, float]:
    """The plain client: sequential $skip/$top pages, json_normalize, concat."""
    import pandas as pd

    from psanalytics.api.http import build_client

    parse = 0.0
    frames = []
    requests = 0
    with build_client(url, api_key=KEY) as client:  # plain httpx client (no retries used)
        skip = 0
        while True:
            top = min(page, 9999 - skip)
            if top <= 0:
                break
            r = client.get("/api/v2.0/TrackEvents",
                           params={"$filter": filter_text, "$skip": skip, "$top": top})
            requests += 1
            r.raise_for_status()
            t0 = time.thread_time()
            items = r.json()["items"]
            frames.append(pd.json_normalize(items))
            parse += time.thread_time() - t0
            skip += len(items)
            if len(items) < top:
                break
    t0 = time.thread_time()
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    parse += time.thread_time() - t0
    return df, requests, parse


def replay_bytes(url: str, urls: list[str], concurrency: int) -> float:
    """Send the same GETs again (same concurrency), reading each body and parsing nothing:
    how long the fetch takes without client-side parsing. Returns wall seconds."""
    from concurrent.futures import ThreadPoolExecutor

    from psanalytics.api.http import build_client

    with build_client(url, api_key=KEY) as client:
        def get(u: str) -> int:
            r = client.get(u)
            r.raise_for_status()
            return len(r.content)

        t = time.perf_counter()
        if concurrency <= 1:
            for u in urls:
                get(u)
        else:
            with ThreadPoolExecutor(concurrency) as ex:
                list(ex.map(get, urls))
        return time.perf_counter() - t


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--page-size", type=int, default=None,
                    help="psanalytics page size (default: the library's)")
    ap.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve is not None:
        serve_child(args.serve, args.seed)
        return

    import pandas  # noqa: F401 - imported before any timing, so no client pays for it

    from psanalytics._connect import connect
    from psanalytics.api import _paging
    from psanalytics.api.windows import format_ns, to_ns

    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(args.events), "--seed", str(args.seed)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = child.stdout.readline().strip()  # type: ignore[union-attr]
        if not url.startswith("http://127.0.0.1"):
            raise SystemExit(f"emulator did not start: {url!r}")
        print(f"emulator: {args.events:,} events at {url} (child pid {child.pid}, "
              f"ready in {time.perf_counter() - t0:.1f} s)")

        parse_timer = Timer()
        _paging.parse_page = parse_timer.wrap(_paging.parse_page)  # type: ignore[assignment]
        opts = {} if args.page_size is None else {"page_size": args.page_size}
        store = connect(url, KEY, progress=False, concurrency=args.concurrency, **opts)
        sent: list[str] = []  # GET urls of the run being recorded (for the no-parse replay)
        store._client.event_hooks = {"request": [lambda req: sent.append(str(req.url))]}

        # A range the reference can fetch: the first 9,900 events.
        head = store.events(limit=9_900)
        lo = to_ns(head["EventTime"][0])
        hi = to_ns(head["EventTime"][-1]) + 100
        rng = f"EventTime ge {format_ns(lo)} and EventTime lt {format_ns(hi)}"
        n_small = store.count(rng)
        print(f"small range: {format_ns(lo)} .. {format_ns(hi)} holds {n_small:,} events\n")

        rows = []

        def record(name: str, n: int, secs: float, reqs: int, mem: float, parse: float,
                   cpu: float) -> None:
            rows.append((name, n, secs, n / secs, reqs, mem, parse / secs, cpu))

        # The small range: the clients take turns, 5 rounds (so background load hits them
        # alike); each keeps its best round. Then each runs once more under the RSS sampler.
        def run_reference(page: int) -> Callable[[], tuple[int, int, float]]:
            def run() -> tuple[int, int, float]:
                ref, reqs, parse = reference_fetch(url, rng, page)
                return len(ref), reqs, parse

            return run

        def run_ours() -> tuple[int, int, float]:
            parse_timer.total = 0.0
            before = store.stats.requests
            small = store.events(start=lo, end=hi)
            return small.height, store.stats.requests - before, parse_timer.total

        clients = [
            ("reference ($top=1000 pages, json_normalize), small range", run_reference(1000)),
            ("reference ($top=100, the API default), small range", run_reference(100)),
            ("psanalytics events(), small range", run_ours),
        ]
        best: dict[str, tuple[float, float, float, int, int]] = {}
        for _round in range(5):
            for name, run in clients:
                t, c = time.perf_counter(), time.process_time()
                n, reqs, parse = run()
                secs, cpu = time.perf_counter() - t, time.process_time() - c
                assert n == n_small, (name, n, n_small)
                if name not in best or secs < best[name][0]:
                    best[name] = (secs, cpu, parse, reqs, n)
        for name, run in clients:
            sent.clear()
            with PeakRss() as m:
                run()
            secs, cpu, parse, reqs, n = best[name]
            record(name, n, secs, reqs, m.growth_mb, parse, cpu)
        # The same requests with no parsing (one in flight, as the pages were): best of 5.
        small_urls = list(sent)
        small_replay = min(replay_bytes(url, small_urls, 1) for _ in range(5))

        # psanalytics on everything: 3 runs, the best kept (the small range is best of 5);
        # the first run is the one under the RSS sampler.
        best_full: tuple[float, float, float, int, list[str]] | None = None
        peak = 0.0
        for k in range(3):
            parse_timer.total = 0.0
            before = store.stats.requests
            sent.clear()
            with PeakRss() as m:
                t, c = time.perf_counter(), time.process_time()
                full = store.events()
                full_s, cpu = time.perf_counter() - t, time.process_time() - c
            if k == 0:
                peak = m.growth_mb
            assert full.height == args.events, full.height
            assert full["TrackId"].n_unique() == args.events
            del full
            if best_full is None or full_s < best_full[0]:
                best_full = (full_s, cpu, parse_timer.total, store.stats.requests - before, list(sent))
        full_s, cpu, parse, nreq, full_urls = best_full  # type: ignore[misc]
        record(f"psanalytics events(), all {args.events:,}", args.events, full_s, nreq, peak, parse, cpu)
        full_replay = min(replay_bytes(url, full_urls, args.concurrency) for _ in range(3))
    finally:
        if child.stdin:
            child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()

    w = max(len(r[0]) for r in rows)
    print(f"{'client':<{w}}  {'events':>9}  {'seconds':>8}  {'events/s':>9}  {'requests':>8}  "
          f"{'peak MB':>8}  {'client CPU s':>12}  {'parse share':>11}")
    for name, n, secs, eps, reqs, mem, share, cpu in rows:
        print(f"{name:<{w}}  {n:>9,}  {secs:>8.2f}  {eps:>9,.0f}  {reqs:>8}  {mem:>8.0f}  "
              f"{cpu:>12.2f}  {share:>10.0%}")
    ref_eps = rows[0][3]
    print()
    for name, n, _secs, _eps, _reqs, _mem, _share, cpu in rows:
        print(f"client CPU per event, {name}: {cpu / n * 1e6:.1f} us")
    print(f"speed-up vs the $top=1000 reference, same small range: {rows[2][3] / ref_eps:.1f}x "
          f"(vs the $top=100 reference: {rows[2][3] / rows[1][3]:.1f}x)")
    print(f"speed-up vs the $top=1000 reference, psanalytics on all {args.events:,} events: "
          f"{rows[3][3] / ref_eps:.1f}x (vs $top=100: {rows[3][3] / rows[1][3]:.1f}x)")
    print(f"psanalytics parse CPU / wall time (all events): {rows[3][6]:.0%} (threads parse at "
          "once, so this can pass 100%)")
    print()
    print("Parse cost on the critical path: the same GETs replayed with the same concurrency, "
          "bodies read and not parsed;\nwhat parsing adds to the wall time, as a share of it:")
    for label, secs, replay, nreq in (("small range", rows[2][2], small_replay, len(small_urls)),
                                      (f"all {args.events:,}", rows[3][2], full_replay, len(full_urls))):
        cost = max(0.0, secs - replay)
        print(f"  {label}: fetch {secs:.3f} s, same {nreq} requests without parsing {replay:.3f} s, "
              f"parse cost {cost:.3f} s = {cost / secs:.0%} of the total (target < 33%)")


if __name__ == "__main__":
    main()
