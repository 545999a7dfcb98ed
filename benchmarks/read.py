"""Read throughput: ``read_events`` vs plain Polars readers, measured in the same run.

    uv run python benchmarks/read.py [--events 2000000] [--repeat 3]

Writes the same generated events as NDJSON (API shape) and Parquet under
``benchmarks/_work/``, then times, interleaved and best-of-``repeat``:

* NDJSON: ``psanalytics.read_events(path)`` (canonical frame: exact Payload text, parsed
  7-digit times, User struct, no nulls) vs ``pl.read_ndjson(path, schema=...)``. Plain
  schema inference cannot read these files at all (Payload objects differ per event type),
  so the reference gets the minimal schema it needs: every field as text, User a struct.
  It leaves EventTime as text: the reference does strictly less work.
* Parquet: ``read_events(path)`` vs ``pl.read_parquet(path)``.

Target (issue 2): within 1.5x of the plain reader, normalisation included.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import polars as pl

from psanalytics import exports, samples, schema

WORK = Path(__file__).resolve().parent / "_work"

PLAIN_NDJSON_SCHEMA = {c: pl.String for c in schema.API_ORDER}
PLAIN_NDJSON_SCHEMA["User"] = pl.Struct({"Email": pl.String, "Name": pl.String})


def best(fn, repeat: int) -> tuple[float, object]:
    times = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    nd = WORK / f"read-{args.events}.ndjson"
    pq = WORK / f"read-{args.events}.parquet"
    frame = samples.generate(args.events, seed=1)
    if not nd.exists():
        exports.write_events(frame, nd)
    if not pq.exists():
        exports.write_events(frame, pq)
    mb = nd.stat().st_size / 1e6
    print(f"polars {pl.__version__}, threads {pl.thread_pool_size()}, {args.events:,} events; "
          f"NDJSON {mb:,.0f} MB, Parquet {pq.stat().st_size / 1e6:,.0f} MB")
    try:
        pl.read_ndjson(nd, n_rows=50_000)
        print("plain pl.read_ndjson with schema inference: ok")
    except Exception as exc:  # documents why the reference needs a schema
        print(f"plain pl.read_ndjson with schema inference fails: {type(exc).__name__}: "
              f"{str(exc)[:80]}")

    rows = []
    for name, ours, ref in [
        ("NDJSON", lambda: exports.read_events(nd),
         lambda: pl.read_ndjson(nd, schema=PLAIN_NDJSON_SCHEMA)),
        ("Parquet", lambda: exports.read_events(pq), lambda: pl.read_parquet(pq)),
    ]:
        t_ref = t_ours = float("inf")
        got = None
        for _ in range(args.repeat):  # interleave so load changes hit both alike
            t, _r = best(ref, 1)
            t_ref = min(t_ref, t)
            t, got = best(ours, 1)
            t_ours = min(t_ours, t)
        assert isinstance(got, pl.DataFrame) and got.equals(frame), "read back differs"
        ratio = t_ours / t_ref
        rows.append((name, t_ours, t_ref, ratio))
        print(f"{name:8s} read_events {t_ours:6.2f} s ({args.events / t_ours:>12,.0f} ev/s)  "
              f"plain {t_ref:6.2f} s ({args.events / t_ref:>12,.0f} ev/s)  "
              f"ratio {ratio:.2f}x  {'OK' if ratio <= 1.5 else 'OVER'} (target <= 1.5x)")


if __name__ == "__main__":
    main()
