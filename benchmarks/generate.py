"""Throughput of the synthetic event generator: ``samples.generate`` for 10 M events.

    uv run python benchmarks/generate.py [--events 10000000] [--repeat 1]

Prints events/s and peak RSS. Target (issue 2): 10 M events in under 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import resource
import time

import polars as pl

from psanalytics import samples


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--burst", action="store_true")
    args = ap.parse_args()
    print(f"polars {pl.__version__}, threads {pl.thread_pool_size()}")
    for i in range(args.repeat):
        t0 = time.perf_counter()
        df = samples.generate(args.events, seed=i, burst=args.burst)
        dt = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
        devices = df.get_column("DeviceId").n_unique()
        print(
            f"generate({args.events:,}{', burst' if args.burst else ''}): {df.height:,} events, "
            f"{devices:,} devices in {dt:.1f} s = {df.height / dt:,.0f} events/s; "
            f"frame {df.estimated_size() / 1e9:.2f} GB; peak RSS {rss:.2f} GB "
            f"({'OK' if dt < 60 else 'OVER'} the 60 s target)"
        )
        del df


if __name__ == "__main__":
    main()
