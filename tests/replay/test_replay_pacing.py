from __future__ import annotations

import pytest

from psanalytics.replay import Pacer, PacingError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


ORIG = [0.0, 0.5, 0.75, 3.0, 3.0, 10.0, 10.2, 40.0]


@pytest.mark.parametrize("speed", [1.0, 2.0, 10.0, 0.5])
def test_speed_keeps_relative_spacing(speed):
    clk = FakeClock()
    p = Pacer(speed=speed, max_idle=1000.0, clock=clk, sleep=clk.sleep)
    sent = []
    for t in ORIG:
        p.wait(t)
        sent.append(clk.now)
        clk.now += 0.001  # sending takes a little time
    for i in range(1, len(ORIG)):
        want = (ORIG[i] - ORIG[0]) / speed
        got = sent[i] - sent[0]
        assert got == pytest.approx(want, rel=0.01, abs=0.002)


def test_idle_gap_capped():
    clk = FakeClock()
    p = Pacer(speed=1.0, max_idle=2.0, clock=clk, sleep=clk.sleep)
    sent = []
    for t in ORIG:
        p.wait(t)
        sent.append(clk.now - 1000.0)
    assert sent == pytest.approx([0.0, 0.5, 0.75, 2.75, 2.75, 4.75, 4.95, 6.95])
    assert p.idle_capped == pytest.approx((3.0 - 0.75 - 2.0) + (10.0 - 3.0 - 2.0) + (40.0 - 10.2 - 2.0))


def test_rate_cap_events_per_second():
    clk = FakeClock()
    p = Pacer(rate=1000.0, clock=clk, sleep=clk.sleep)
    sizes = [100, 250, 50, 600, 1000, 1]
    starts = []
    for n in sizes:
        p.wait(0.0, n)
        starts.append(clk.now - 1000.0)
    # batch i may start once the events before it fit the budget
    expect = [sum(sizes[:i]) / 1000.0 for i in range(len(sizes))]
    assert starts == pytest.approx(expect, rel=0.01)


def test_rate_and_speed_together_and_requests_cap():
    clk = FakeClock()
    p = Pacer(speed=1.0, rate=10.0, clock=clk, sleep=clk.sleep)
    p.wait(0.0, 100)  # 10 s of budget
    p.wait(1.0, 1)
    assert clk.now - 1000.0 == pytest.approx(10.0)
    clk2 = FakeClock()
    q = Pacer(requests_per_s=4.0, clock=clk2, sleep=clk2.sleep)
    for _ in range(9):
        q.wait(0.0, 1)
    assert clk2.now - 1000.0 == pytest.approx(2.0)


def test_no_pacing_never_sleeps():
    clk = FakeClock()
    p = Pacer(clock=clk, sleep=clk.sleep)
    for t in ORIG:
        p.wait(t)
    assert clk.sleeps == []


@pytest.mark.parametrize("kw,msg", [({"speed": 0}, "speed must be > 0"), ({"rate": -1}, "rate must be > 0"),
                                    ({"max_idle": -1}, "max_idle must be >= 0")])
def test_bad_options(kw, msg):
    with pytest.raises(PacingError, match=msg):
        Pacer(**kw)
