"""The funnel's fast paths against plain-Python models: the hash-sort grouping of rows by
journey (every branch forced with hand-made hashes) and the per-group time statistics
(numpy sorts) against Polars' own quantile on the same seconds."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import polars as pl
import pytest

from psanalytics.journeys import _attempts, _funnel

NS = 1_000_000_000


def _groups(perm: np.ndarray, ends: np.ndarray) -> list[list[int]]:
    starts = [0, *ends[:-1].tolist()]
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
        ("polars hash", _attempts._hash),
        # every key's hash in the low bits only: one run of high bits holds all of them,
        # split by the full hash (no two keys share a hash)
        ("low bits only", _num),
        # three runs of high bits, each holding several full hashes
        ("shared high bits", lambda s: (_num(s) % np.uint64(3)) << np.uint64(60) | _num(s)),
        # true collisions (keys of one length share a hash): Polars' exact grouping
        ("collisions", lambda s: s.str.len_bytes().fill_null(99).cast(pl.UInt64).to_numpy()),
    ],
)
def test_group_rows_every_branch_gives_the_exact_groups(name, hash_):
    rng = random.Random(18)
    for n, keys in [(1, 1), (2, 1), (7, 3), (200, 30), (1000, 400), (3000, 5)]:
        values = _strings(rng, n, keys)
        s = pl.Series("k", values, dtype=pl.String)
        perm, ends = _attempts.group_rows(s, hash_)
        assert _groups(perm, ends) == _model_groups(values), (name, n)
        assert ends[-1] == n and perm.dtype == np.int64


def test_group_rows_on_chunked_and_integer_keys():
    rng = random.Random(5)
    values = [rng.randrange(50) for _ in range(500)]
    chunked = pl.concat([pl.Series("k", values[:200]), pl.Series("k", values[200:])], rechunk=False)
    assert chunked.n_chunks() == 2
    assert _groups(*_attempts.group_rows(chunked)) == _model_groups(values)
    empty = _attempts.group_rows(pl.Series("k", [], dtype=pl.String))
    assert [a.tolist() for a in empty] == [[], []]


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
