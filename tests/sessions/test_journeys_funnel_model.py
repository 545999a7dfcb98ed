"""The funnel kernel against a plain-Python model of the documented rules.

The model walks each journey's events in (time, input row) order with lists and loops: every
attempt (every step-1 event; every matching event for any order), the earliest next match,
windows, step windows and exclusions exactly as docs/journeys.md states them, then the best
attempt (most steps, then the earliest start). Streams are small and drawn from a seeded
generator, so the test is deterministic.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from sessions_streams import ev, frame

from psanalytics import journeys
from psanalytics.journeys import _attempts, _common

NS = 1_000_000_000
INF = float("inf")


def model(events, steps, order, win, step_wins, excl):
    """{device: [ns to step 1, 2, ...]} for the journeys that entered, per the rules."""
    out = {}
    for dev in sorted({d for d, _, _ in events}):
        run = [(t, typ) for d, t, typ in events if d == dev]  # input order is time order here
        run = sorted(enumerate(run), key=lambda x: (x[1][0], x[0]))
        ts = [t for _, (t, _) in run]
        ty = [typ for _, (_, typ) in run]
        best = None
        for i in range(len(run)):
            got = (_any if order == "any" else _ordered)(
                ts, ty, i, steps, order, win, step_wins, excl
            )
            if got and (best is None or len(got) > len(best)):
                best = got
        if best:
            out[dev] = best
    return out


def _ordered(ts, ty, i, steps, order, win, step_wins, excl):
    if ty[i] != steps[0]:
        return None
    pos, times = [i], [0]
    for k in range(1, len(steps)):
        cur = pos[-1]
        if order == "strict":
            nxt = cur + 1 if cur + 1 < len(ty) and ty[cur + 1] == steps[k] else None
        else:
            nxt = next((j for j in range(cur + 1, len(ty)) if ty[j] == steps[k]), None)
        if nxt is None:
            break
        if win is not None and ts[nxt] - ts[i] > win:
            break
        if step_wins and step_wins[k - 1] is not None and ts[nxt] - ts[cur] > step_wins[k - 1]:
            break
        if any(b == k + 1 and any(ty[x] == m for x in range(pos[a - 1], nxt)) for m, a, b in excl):
            break
        pos.append(nxt)
        times.append(ts[nxt] - ts[i])
    return times


def _any(ts, ty, i, steps, order, win, step_wins, excl):
    if ty[i] not in steps:
        return None
    delta = []
    for s in steps:
        j = next((j for j in range(i, len(ty)) if ty[j] == s), None)
        delta.append(INF if j is None else ts[j] - ts[i])
    cmax: list[float] = []
    for d in delta:
        c = max([d, *cmax[-1:]])
        if c == INF or (win is not None and c > win):
            break
        cmax.append(c)
    start = min(delta[: len(cmax)], default=0)
    return [c - start for c in cmax] or None


def draw(rng: random.Random):
    events = []
    for d in range(rng.randint(1, 5)):
        t = 0
        for _ in range(rng.randint(0, 9)):
            t += rng.choice([0, 0, 1, 5, 5, 10, 60]) * NS + rng.choice([0, 0, 0, 1])  # ties, 1 ns
            events.append((f"d{d}", t, rng.choice("ABCX")))
    k = rng.randint(1, 4)
    steps = [rng.choice("ABC") for _ in range(k)]
    order = rng.choice(["ordered", "ordered", "strict", "any"])
    win = rng.choice([None, 5 * NS, 10 * NS, 10 * NS + 1, 15 * NS])
    step_wins, excl = None, []
    if order != "any" and k > 1:
        if rng.random() < 0.4:
            step_wins = [rng.choice([None, 0, 5 * NS, 10 * NS]) for _ in range(k - 1)]
        if rng.random() < 0.5:
            a = rng.randint(1, k - 1)
            excl = [(rng.choice("XAB"), a, rng.randint(a + 1, k))]
    return events, steps, order, win, step_wins, excl


def _shared_high_bits(s):
    # eight hashes for all journeys: runs of high bits hold several journeys, and some
    # journeys share a full hash: the grouping splits them or falls back to Polars'
    return s.hash().to_numpy() >> np.uint64(61)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_kernel_matches_the_model(seed, shared, monkeypatch):
    if shared:
        monkeypatch.setattr(
            _attempts, "group_rows", lambda key: _common.group_rows(key, _shared_high_bits)
        )
    rng = random.Random(seed)
    for _ in range(12):
        events, steps, order, win, step_wins, excl = draw(rng)
        f = frame([ev(d, 0, event_type=typ, ns=t) for d, t, typ in events])
        kw = {"within": "device", "order": order, "exclude": excl or None}
        if win is not None:
            kw["window"] = f"{win}ns"
        if step_wins is not None:
            kw["step_windows"] = [None if w is None else f"{w}ns" for w in step_wins]
        got = journeys.funnel_times(f, steps, **kw)
        by_journey = {}
        if got.height:
            for j, t in got.select("journey", "time_to_step_s").rows():
                by_journey.setdefault(j, []).append(round(t * NS))
        want = model(events, steps, order, win, step_wins, excl)
        assert by_journey == want, (steps, kw, events)
