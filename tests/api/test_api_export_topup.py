"""Top-up exports: a user exports until the cut-over day, then again to pick up what
arrived since. Only the windows the export lacks are fetched, the last ``look_back`` again
(late events), and exactly those windows are replaced; a killed top-up resumes."""

from __future__ import annotations

import polars as pl
import pytest

from psanalytics import samples, schema
from psanalytics._connect import connect
from psanalytics._time import to_ns
from psanalytics.api.export import read_checkpoint
from psanalytics.emulator import Emulator

KEY = "topup-key"
DAY1, DAY2, DAY3 = "2024-03-04", "2024-03-05", "2024-03-06"


@pytest.fixture
def emu():
    return Emulator(samples.generate(30_000, days=2, seed=5), api_key=KEY)


def _store(emu, sent=None):
    s = connect("http://emu", KEY, transport=emu.transport(), progress=False, concurrency=2)
    if sent is not None:
        s._client.event_hooks = {"request": [lambda r: sent.append(dict(r.url.params))]}
    return s


def _between(frame, lo, hi):
    t = pl.col("EventTime")
    return frame.filter((t >= pl.lit(to_ns(lo)).cast(schema.TIME_DTYPE)) & (t < pl.lit(to_ns(hi)).cast(schema.TIME_DTYPE)))


def _same(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    key = list(schema.COLUMNS[:12])
    return a.sort(key).equals(b.sort(key))


def test_extending_the_end_fetches_only_what_is_missing(emu, tmp_path):
    first = _store(emu).export(tmp_path, start=DAY1, end=DAY2)
    parts = {p.name: p.read_bytes() for p in tmp_path.glob("*/*.parquet")}
    assert len(first.windows) >= 2
    sent: list[dict] = []
    rep = _store(emu, sent).export(tmp_path, start=DAY1, end=DAY3, top_up=True, look_back="1h")
    assert _same(rep.read(), _between(emu.events(), DAY1, DAY3))
    # Kept windows were neither fetched nor rewritten; only those reaching into the last
    # hour before the old end were replaced.
    replaced = set(rep.top_up["replaced"])
    assert replaced and len(replaced) < len(first.windows)
    kept = {w.key for w in first.windows} - replaced
    assert all(parts[f"part-{k}.parquet"] == (next(tmp_path.glob(f"*/part-{k}.parquet"))).read_bytes()
               for k in kept)
    assert rep.resumed_windows == len(kept)
    lo = to_ns(rep.top_up["from"])
    assert lo == min(to_ns(w.start) for w in first.windows if w.key in replaced) and lo > to_ns(DAY1)
    assert all("EventTime ge 2024-03-04T00:00:00" not in q.get("$filter", "") for q in sent)
    ck = read_checkpoint(tmp_path)
    assert ck["complete"] and ck["top_up"]["previous_end"] == "2024-03-05T00:00:00.0000000Z"
    assert ck["args"]["end"] == "2024-03-06T00:00:00.0000000Z"


def test_late_events_inside_the_look_back_are_picked_up(emu, tmp_path):
    _store(emu).export(tmp_path, start=DAY1, end=DAY2)
    late = schema.normalize([
        {"TrackId": "", "DeviceId": "late-inside", "EventType": "x", "Value": "v",
         "EventTime": "2024-03-04T23:50:00.0000000Z"},
        {"TrackId": "", "DeviceId": "late-outside", "EventType": "x", "Value": "v",
         "EventTime": "2024-03-04T01:00:00.0000000Z"},
    ])
    emu.add_events(late)
    rep = _store(emu).export(tmp_path, start=DAY1, end=DAY3, top_up=True, look_back="30m")
    devices = rep.read().get_column("DeviceId").to_list()
    assert devices.count("late-inside") == 1
    assert "late-outside" not in devices  # before the look-back: that part was kept as it was
    # A wide enough look-back reads it again too.
    rep = _store(emu).export(tmp_path, start=DAY1, end="2024-03-06T00:00:00.0000001Z", top_up=True,
                             look_back="2d")
    assert rep.read().get_column("DeviceId").to_list().count("late-outside") == 1
    assert _same(rep.read(), _between(emu.events(), DAY1, "2024-03-06T00:00:00.0000001Z"))


def test_a_killed_top_up_resumes_and_loses_nothing(emu, tmp_path):
    _store(emu).export(tmp_path, start=DAY1, end=DAY2)

    def kill(n: int) -> None:
        if n == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _store(emu).export(tmp_path, start=DAY1, end=DAY3, top_up=True, _after_window=kill)
    ck = read_checkpoint(tmp_path)
    assert not ck["complete"] and ck["top_up"]["replaced"]
    rep = _store(emu).export(tmp_path, start=DAY1, end=DAY3, top_up=True)
    assert rep.resumed_windows > 0 and rep.top_up == ck["top_up"]
    assert _same(rep.read(), _between(emu.events(), DAY1, DAY3))
    assert rep.rows == _between(emu.events(), DAY1, DAY3).height
