"""The funnel's fast paths against plain-Python models: the hash-sort grouping of rows by
journey (every branch forced with hand-made hashes) and the per-group time statistics
(numpy sorts) against Polars' own quantile on the same seconds."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import polars as pl
import pytest

from psanalytics import journeys
from psanalytics.journeys import _attribution, _common, _funnel, _retention

NS = 1_000_000_000


def _groups(perm: np.ndarray, ends: np.ndarray) -> list[list[int]]:
    gid = _common.group_ids(perm, ends)
    starts = [0, *ends[:-1].tolist()]
    for j, (a, b) in enumerate(zip(starts, ends.tolist(), strict=True)):
        assert gid[perm[a:b]].tolist() == [j] * (b - a)  # each row knows its group
    return sorted(perm[a:b].tolist() for a, b in zip(starts, ends.tolist(), strict=True))


def _model_groups(values: list[object]) -> list[list[int]]:
    rows: dict[object, list[int]] = {}
    for i, v in enumerate(values):
        rows.setdefault(v, []).append(i)
    return sorted(rows.values())


def _strings(rng: random.Random, n: int, keys: int) -> list[str | None]:
    return [None if rng.random() < 0.05 else f"k{rng.randrange(keys)}" for _ in range(n)]


def _num(s: pl.Series) -> np.ndarray:
    return np.array([0 if v is None else int(v[1:]) + 1 for v in s.to_list()], dtype=np.uint64)


@pytest.mark.parametrize(
    ("name", "hash_"),
    [
        ("polars hash", _common._hash),
        # every key's hash in the low bits only: one run of high bits holds all of them,
        # split by the full hash (no two keys share a hash)
        ("low bits only", _num),
        # three runs of high bits, each holding several full hashes
        ("shared high bits", lambda s: (_num(s) % np.uint64(3)) << np.uint64(60) | _num(s)),
        # true collisions (keys of one length share a hash): Polars' exact grouping
        ("collisions", lambda s: s.str.len_bytes().fill_null(99).cast(pl.UInt64).to_numpy()),
    ],
)
@pytest.mark.parametrize("parts", [1, 2, 4])
def test_group_rows_every_branch_gives_the_exact_groups(name, hash_, parts, monkeypatch):
    # parts: threads sharing the work (from 8 rows on here; from PARALLEL_ROWS in use)
    monkeypatch.setattr(_common, "_parts", lambda n: parts if n >= 8 else 1)
    rng = random.Random(18)
    for n, keys in [(1, 1), (2, 1), (7, 3), (200, 30), (1000, 400), (3000, 5)]:
        values = _strings(rng, n, keys)
        s = pl.Series("k", values, dtype=pl.String)
        perm, ends = _common.group_rows(s, hash_)
        assert _groups(perm, ends) == _model_groups(values), (name, n)
        assert ends[-1] == n and perm.dtype == ends.dtype == np.int64


def test_group_rows_in_threads_from_parallel_rows_on(monkeypatch):
    monkeypatch.setattr(_common, "PARALLEL_ROWS", 100)
    threads = pl.thread_pool_size()
    assert _common._parts(99) == 1
    assert _common._parts(100) == (4 if threads >= 4 else min(threads, 2))
    values = _strings(random.Random(7), 5000, 700)
    perm, ends = _common.group_rows(pl.Series("k", values, dtype=pl.String))
    assert _groups(perm, ends) == _model_groups(values)
    # the gathers by perm in threads too (each a slice)
    ints = np.arange(5000, dtype=np.int64) * 7 - 3
    flags = ints % 3 == 0
    assert _common.take(ints, perm).tolist() == [int(ints[i]) for i in perm]
    assert _common.take(flags, perm).tolist() == [bool(flags[i]) for i in perm]
    assert _common.take(ints[:99], perm[:0]).tolist() == []


def test_group_rows_on_chunked_and_integer_keys():
    rng = random.Random(5)
    values = [rng.randrange(50) for _ in range(500)]
    chunked = pl.concat([pl.Series("k", values[:200]), pl.Series("k", values[200:])], rechunk=False)
    assert chunked.n_chunks() == 2
    assert _groups(*_common.group_rows(chunked)) == _model_groups(values)
    empty = _common.group_rows(pl.Series("k", [], dtype=pl.String))
    assert [a.tolist() for a in empty] == [[], []]
    assert _common.group_ids(*empty).tolist() == []


def _quantile(xs: list[float], q: float) -> float:
    fi = (len(xs) - 1) * q
    lo, hi = xs[int(fi // 1)], xs[-int(-fi // 1)]
    return lo if lo == hi else (fi - fi // 1) * (hi - lo) + lo


def _model_stats(best: dict[str, list], k: int) -> dict[tuple, dict[str, object]]:
    """{(group, step): the time columns} from plain lists: seconds are float(t) / 1e9,
    quantiles interpolate linearly between the sorted neighbours."""
    cells: dict[tuple, list[int]] = {}
    prev: dict[tuple, list[int]] = {}
    for j, reached in enumerate(best["reached"]):
        for i in range(reached):
            g = (best["_bd"][j], i + 1)
            cells.setdefault(g, []).append(best[f"_t{i}"][j])
            if i:
                prev.setdefault(g, []).append(best[f"_t{i}"][j] - best[f"_t{i - 1}"][j])
    out = {}
    for g, ts in cells.items():
        xs = sorted(float(t) / NS for t in ts)
        row: dict[str, object] = {"entered": len(xs)}
        for q in _funnel.QUANTILES:
            row[f"time_to_step_p{int(q * 100)}_s"] = _quantile(xs, q)
            # the same as Polars' own linear quantile of those seconds
            assert pl.Series(xs).quantile(q, "linear") == row[f"time_to_step_p{int(q * 100)}_s"]
        row["mean_time_to_step_s"] = float(Fraction(sum(ts), len(ts) * NS))
        row["median_time_to_step_s"] = row["time_to_step_p50_s"]
        row["median_time_from_previous_s"] = (
            _quantile(sorted(float(d) / NS for d in prev[g]), 0.5) if g in prev else None
        )
        out[g] = row
    return out


@pytest.mark.parametrize("span", [10**6, 10**15, 2**61])  # 2**61 ns: the lexsort path
def test_funnel_time_columns_against_a_plain_model(span):
    rng = random.Random(span)
    k, n = 4, 600
    best: dict[str, list] = {"reached": [], "_bd": []}
    for i in range(k):
        best[f"_t{i}"] = []
    for _ in range(n):
        reached = rng.randrange(1, k + 1)
        ts = [0, *sorted(rng.randrange(span) for _ in range(k - 1))]
        best["reached"].append(reached)
        best["_bd"].append(rng.choice([None, *[f"c{x}" for x in range(40)]]))
        for i in range(k):
            best[f"_t{i}"].append(ts[i] if i < reached else None)
    frame = pl.DataFrame(best, schema={"reached": pl.Int64, "_bd": pl.String,
                                       **{f"_t{i}": pl.Int64 for i in range(k)}})  # fmt: skip
    spec = _funnel._spec(pl.Schema({"G": pl.String, "EventType": pl.String}),
                         ["a", "b", "c", "d"], level="event_type", window=None,
                         step_windows=None, exclude_=None, order="ordered", breakdown="G")  # fmt: skip
    got = _funnel._aggregate(frame, spec)
    want = _model_stats(best, k)
    assert got.height == len({g for g in best["_bd"]}) * k
    for row in got.iter_rows(named=True):
        w = want.get((row["G"], row["step"]))
        if w is None:  # a group where nobody reached this step
            assert row["entered"] == 0 and row["time_to_step_p50_s"] is None
            continue
        for c, v in w.items():
            if c == "mean_time_to_step_s":
                assert row[c] == pytest.approx(v, rel=1e-15, abs=0), (row["G"], row["step"])
            else:
                assert row[c] == v, (c, row["G"], row["step"])


def _retention_via_polars(ev: pl.DataFrame, period: str, **kw: pl.Expr) -> pl.DataFrame:
    """The same triangle through Polars' groupings (the path of events without a period)."""
    cols = [pl.col("DeviceId").alias("_k"), _retention._period_index(period).alias("_p")]
    if "cohort" in kw:
        cols.append(kw["cohort"].fill_null(False).alias("_c"))
    if "returning" in kw:
        cols.append(kw["returning"].fill_null(False).alias("_r"))
    e = ev.select(cols)
    last = e.get_column("_p").max()
    return _retention._empty() if last is None else _retention._polars(e, last, period)


def test_retention_numpy_counts_equal_the_polars_groupings():
    rng = random.Random(14)
    checked = 0
    for _ in range(60):
        n = rng.randrange(0, 250)
        span = rng.choice([3600, 3 * 86400, 40 * 86400, 400 * 86400])
        t0 = rng.choice([0, 1_700_000_000, -200_000_000])  # before 1970 too
        ev = pl.DataFrame(
            {
                "DeviceId": _strings(rng, n, rng.randrange(1, 40)),
                "EventTime": [(t0 + rng.randrange(span)) * NS + rng.randrange(NS) for _ in range(n)],
                "EventType": [rng.choice(["a", "b", "order"]) for _ in range(n)],
            },
            schema={"DeviceId": pl.String, "EventTime": pl.Int64, "EventType": pl.String},
        ).with_columns(pl.col("EventTime").cast(pl.Datetime("ns", "UTC")))
        for period in _retention.PERIODS:
            for kw in (
                {},
                {"returning": pl.col("EventType") == "a"},
                {"cohort": pl.col("EventType") == "order"},
                {"cohort": pl.col("EventType") == "order", "returning": pl.col("EventType") != "b"},
            ):
                want = _retention_via_polars(ev, period, **kw)
                # in time order each visitor's (visitor, period) pairs come sorted: no sort
                for events in (ev, ev.sort("EventTime")):
                    got = journeys.retention(events, period=period, **kw)
                    assert got.schema == want.schema
                    assert got.equals(want), (period, kw)
                    checked += got.height
    assert checked > 1000


def test_retention_counts_a_null_key_as_one_visitor_in_both_paths():
    day = 86400 * NS
    ev = pl.DataFrame(
        {"DeviceId": [None, "a", None, "a", "b"], "EventTime": [0, 0, day, 2 * day, 2 * day]},
        schema={"DeviceId": pl.String, "EventTime": pl.Int64},
    ).with_columns(pl.col("EventTime").cast(pl.Datetime("ns", "UTC")))
    rows = [(0, 2, 2), (1, 2, 1), (2, 2, 1), (0, 1, 1)]  # (period, cohort_size, returning)
    for r in (journeys.retention(ev, period="day"), _retention_via_polars(ev, "day")):
        assert r.select("period", "cohort_size", "returning").rows() == rows
    # an event without a time: Polars' groupings (its period is null), the same counts and
    # its visitor in a null cohort (as before the numpy path)
    no_time = pl.DataFrame({"DeviceId": ["c"], "EventTime": [None]}, schema=ev.schema)
    r = journeys.retention(pl.concat([ev, no_time]), period="day")
    assert r.select("period", "cohort_size", "returning").rows() == [(None, 1, 0), *rows]


_SHARED_HASHES = {
    # "d7" -> 7: small hashes, so all keys share the high bits (one run)
    "one run": lambda s: s.str.slice(1).cast(pl.UInt64).to_numpy(),
    # "d1" and "d3" share one full hash, "d2" and "d4" another...
    "collisions": lambda s: (s.str.slice(1).cast(pl.UInt64) % 2 + (1 << 40)).to_numpy(),
}


def test_single_touch_numpy_path_equals_the_as_of_joins():
    """First and last touch through the merged numpy stream against the as-of joins, on
    seeded tables with many equal start times (ties keep the table's order), conversions
    at a session's instant and exactly ``lookback`` after one, keys without sessions."""
    rng = random.Random(30)
    compared = 0
    declined = dict.fromkeys(_SHARED_HASHES, 0)
    agreed = dict.fromkeys(_SHARED_HASHES, 0)
    for _ in range(150):
        nd, ns, nc = rng.randrange(1, 10), rng.randrange(1, 60), rng.randrange(0, 25)
        grid = rng.choice([NS, 3600 * NS, 86400 * NS])  # coarse grids: many ties
        span = rng.choice([5, 40])
        s = pl.DataFrame(
            {
                "_k": [f"d{rng.randrange(nd)}" for _ in range(ns)],
                "_st": [rng.randrange(span) * grid for _ in range(ns)],
                "_by": [rng.choice(["Email", "Direct", "Display", "Referral"]) for _ in range(ns)],
            }
        ).with_columns(pl.col("_st").cast(pl.Datetime("ns", "UTC")))
        if rng.random() < 0.5:
            s = s.sort("_st")
        c = pl.DataFrame(
            {
                "_k": [f"d{rng.randrange(nd + 2)}" for _ in range(nc)],
                "_t": [rng.randrange(span) * grid for _ in range(nc)],
                "_rev": [float(rng.randrange(100)) for _ in range(nc)],
                "_cur": [rng.choice(["SEK", "EUR"]) for _ in range(nc)],
            },
            schema={"_k": pl.String, "_t": pl.Int64, "_rev": pl.Float64, "_cur": pl.String},
        ).with_columns(pl.col("_t").cast(pl.Datetime("ns", "UTC")))
        c = c.with_row_index("_conv")
        lb = rng.choice([0, grid, 3 * grid, 30 * 86400 * NS])
        for model in ("first", "last"):
            got = _attribution._merged_touch(c, s, model, lb)
            assert got is not None
            want = _attribution._single_touch(c, s, model, lb).sort("_conv")
            assert got.sort("_conv").equals(want), (model, lb)
            compared += got.get_column("_by").is_not_null().sum()
            # keys sharing hashes (every key in one run of high bits, or true collisions):
            # the same touches, or None (a found session of another key) and the as-of joins
            for name, hash_ in _SHARED_HASHES.items():
                forced = _attribution._merged_touch(c, s, model, lb, hash_)
                if forced is None:
                    declined[name] += 1
                else:
                    assert forced.sort("_conv").equals(want), (name, model, lb)
                    agreed[name] += 1
    assert compared > 500
    for name in _SHARED_HASHES:
        assert declined[name] > 20 and agreed[name] > 20, (name, declined, agreed)
    # null keys or times, or no sessions: the as-of joins do it
    c = pl.DataFrame({"_conv": [0], "_k": [None], "_t": [0], "_rev": [1.0], "_cur": ["SEK"]},
                     schema={"_conv": pl.UInt32, "_k": pl.String, "_t": pl.Datetime("ns", "UTC"),
                             "_rev": pl.Float64, "_cur": pl.String})  # fmt: skip
    s = pl.DataFrame({"_k": ["a"], "_st": [0], "_by": ["Email"]}).with_columns(
        pl.col("_st").cast(pl.Datetime("ns", "UTC"))
    )
    assert _attribution._merged_touch(c, s, "last", 0) is None
    keyed = c.with_columns(pl.lit("a").alias("_k"))
    assert _attribution._merged_touch(keyed, s.clear(), "last", 0) is None
    assert _attribution._merged_touch(keyed, s, "last", 0) is not None
    assert _attribution._merged_touch(keyed, s, "first", 2**63 - 1) is not None  # t - lb: -2**63 + 1
    before = keyed.with_columns(pl.lit(-2).cast(pl.Datetime("ns", "UTC")).alias("_t"))
    assert _attribution._merged_touch(before, s, "first", 2**63 - 1) is None  # would wrap
