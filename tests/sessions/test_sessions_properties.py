"""sessionize() against a plain-Python reference, input-order independence, lazy == eager."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sessions_streams import T0, ev, frame

from psanalytics import samples, sessionize

MIN = 60


def reference(events: list[dict], *, timeout: int, cap: int | None, midnight: bool,
              campaign: bool, identity: bool) -> tuple[list[tuple[str, int]], dict]:
    """Straightforward loops over each device's events, rule pass by rule pass, in the
    documented order (inactivity, midnight, campaign, identity, then the cap)."""
    import re

    def camp(uri: str) -> str | None:
        vals = [re.search(rf"[?&#]{k}=([^&#]*)", uri) for k in
                ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "gclid")]
        key = "|".join(m.group(1) if m else "" for m in vals)
        return None if key == "|||||" else key

    out: list[tuple[str, int] | None] = [None] * len(events)
    reasons: dict[tuple[str, int], str] = {}
    by_dev: dict[str, list[int]] = {}
    for i, e in enumerate(events):
        by_dev.setdefault(e["DeviceId"], []).append(i)
    for dev, rows in by_dev.items():
        rows.sort(key=lambda i: (events[i]["_ns"], i))
        t = [events[i]["_ns"] for i in rows]
        why = {0: "first"}
        for j in range(1, len(rows)):
            if t[j] - t[j - 1] > timeout:
                why[j] = "inactivity"
            elif midnight and (t[j] + 3600 * 10**9) // (86400 * 10**9) != (t[j - 1] + 3600 * 10**9) // (86400 * 10**9):
                why[j] = "midnight"  # Europe/Stockholm in March/April 2024 before DST: UTC+1
        for rule, values, from_empty in (
            ("campaign", [camp(events[i]["PageUri"]) for i in rows], True),
            ("identity", [events[i]["User"]["Email"].strip().lower() or None for i in rows], False),
        ):
            if not (campaign if rule == "campaign" else identity):
                continue
            memory = None
            for j in range(len(rows)):
                v = values[j]
                if j in why:
                    memory = v
                    continue
                if v is None:
                    continue
                if (memory is None and from_empty) or (memory is not None and v != memory):
                    why[j] = rule
                memory = v
        if cap is not None:
            anchor = 0
            for j in range(len(rows)):
                if j in why:
                    anchor = j
                elif t[j] > t[anchor] + cap:
                    why[j] = "max_duration"
                    anchor = j
        idx = 0
        for j, i in enumerate(rows):
            if j in why:
                idx += 1
                reasons[(dev, idx)] = why[j]
            out[i] = (dev, idx)
    return out, reasons  # type: ignore[return-value]


PAGES = ["https://x/", "https://x/?utm_source=a", "https://x/?utm_source=b&gclid=1", "https://x/p"]
EMAILS = ["", "", "ann@x.se", "ANN@x.se ", "bo@x.se"]


@st.composite
def streams(draw):
    n = draw(st.integers(1, 40))
    evs = []
    for _ in range(n):
        dev = draw(st.sampled_from(["a", "b", "c"]))
        # minutes on a coarse grid so exact-timeout gaps and ties happen; +/- 1 ns jitter
        minute = draw(st.integers(0, 2000)) * 15  # stays before the DST change
        jitter = draw(st.sampled_from([0, 0, 0, 1, -1]))
        evs.append(ev(dev, minute * MIN, ns=max(jitter, 0) if minute == 0 else jitter,
                      page=draw(st.sampled_from(PAGES)), email=draw(st.sampled_from(EMAILS))))
    return evs


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    evs=streams(),
    timeout=st.sampled_from([15 * MIN, 30 * MIN, 45 * MIN]),
    cap=st.sampled_from([None, 2 * 3600, 24 * 3600]),
    midnight=st.booleans(),
    campaign=st.booleans(),
    identity=st.booleans(),
)
def test_matches_reference(evs, timeout, cap, midnight, campaign, identity):
    f = frame(evs)
    r = sessionize(
        f,
        timeout=timeout,
        max_duration=cap,
        split_at_midnight="Europe/Stockholm" if midnight else None,
        split_on_campaign=campaign,
        split_on_identity_change=identity,
    )
    exp, reasons = reference(evs, timeout=timeout * 10**9, cap=None if cap is None else cap * 10**9,
                             midnight=midnight, campaign=campaign, identity=identity)
    got = list(zip(r.events["DeviceId"], r.events["session_index"], strict=True))
    assert got == exp
    s = r.sessions
    assert dict(zip(zip(s["device_id"], s["session_index"], strict=True), s["split_reason"], strict=True)) == reasons
    # sessions are ordered by (start, input row of the first event) and keyed by row number
    assert s["session_key"].to_list() == list(range(s.height))
    firsts = r.events.with_row_index("row").group_by("session_key").agg(
        pl.col("EventTime").min(), pl.col("row").filter(pl.col("EventTime") == pl.col("EventTime").min()).min()
    ).sort("session_key")
    assert firsts.sort("EventTime", "row")["session_key"].to_list() == list(range(s.height))
    # per-event session_key and session_id agree with the sessions table
    j = r.events.join(s.select("session_key", "session_id", "device_id", "session_index"), on="session_key")
    assert (j["session_id"] == j["session_id_right"]).all()
    assert (j["DeviceId"] == j["device_id"]).all()
    assert (j["session_index"] == j["session_index_right"]).all()
    assert s["n_events"].sum() == f.height


@pytest.fixture(scope="module")
def sample():
    return samples.generate(20_000, n_devices=1_500, days=3, seed=3)


def test_lazy_and_eager_give_the_same_results(sample):
    a = sessionize(sample)
    b = sessionize(sample.lazy())
    assert a.sessions.equals(b.sessions)
    assert a.events.equals(b.events)
    am = sessionize(sample, minimal=True)
    bm = sessionize(sample.lazy(), minimal=True)
    assert am.sessions.equals(bm.sessions) and am.events.equals(bm.events)


def test_results_do_not_depend_on_input_row_order(sample):
    # make times unique so no tie can decide anything
    f = sample.with_columns(
        (pl.col("EventTime") + pl.duration(nanoseconds=pl.int_range(pl.len()) % 100)).alias("EventTime")
    ).unique("EventTime", keep="first").sort("EventTime")
    a = sessionize(f)
    shuffled = f.sample(fraction=1.0, shuffle=True, seed=7)
    b = sessionize(shuffled)
    assert a.sessions.equals(b.sessions)
    key_cols = ["TrackId", "session_key", "session_id", "session_index", "event_index_in_session"]
    assert a.events.select(key_cols).sort("TrackId").equals(b.events.select(key_cols).sort("TrackId"))
    # and the events keep the input's row order
    assert b.events["TrackId"].to_list() == shuffled["TrackId"].to_list()


def test_matches_idiomatic_polars_on_generated_data(sample):
    timeout = 30 * 60 * 10**9
    ref = (
        sample.with_row_index("row")
        .with_columns(pl.col("EventTime").to_physical().alias("t"))
        .sort("DeviceId", "t", "row")
        .with_columns(
            ((pl.col("t").diff().over("DeviceId").fill_null(timeout + 1)) > timeout)
            .cast(pl.UInt32).cum_sum().over("DeviceId").alias("idx")
        )
        .sort("row")
    )
    r = sessionize(sample, max_duration=None, minimal=True)
    assert r.events["session_index"].to_list() == ref["idx"].to_list()
    assert r.sessions.height == ref.select(pl.struct("DeviceId", "idx").n_unique()).item()


def test_max_duration_on_generated_bots(sample):
    r = sessionize(sample)
    assert r.sessions["duration_s"].max() <= 24 * 3600
    capped = r.sessions.filter(pl.col("split_reason") == "max_duration")
    assert capped.height > 0  # the generator's bots run around the clock
    # every capped session starts after the previous one of its device hit the cap
    prev = r.sessions.sort("device_id", "session_index").with_columns(
        pl.col("start_time").shift(1).over("device_id").alias("prev_start")
    ).filter(pl.col("split_reason") == "max_duration")
    assert (prev["start_time"] - prev["prev_start"] > timedelta(hours=24)).all()


def test_time_unordered_input(sample):
    shuffled = sample.sample(fraction=1.0, shuffle=True, seed=1)
    a = sessionize(sample)
    b = sessionize(shuffled)
    assert a.sessions.height == b.sessions.height
    assert a.sessions["n_events"].sum() == b.sessions["n_events"].sum() == sample.height
    assert T0  # keep the shared start importable


def test_hash_collision_falls_back_to_exact_codes(sample, monkeypatch):
    expected = sessionize(sample)
    real_hash = pl.Series.hash

    def constant_hash(self, *args, **kwargs):  # every DeviceId "collides" in the grouping hash
        h = real_hash(self, *args, **kwargs)
        return h * 0 if self.name == "DeviceId" and kwargs.get("seed") == 0x5EED else h

    monkeypatch.setattr(pl.Series, "hash", constant_hash)
    got = sessionize(sample)
    assert got.sessions.equals(expected.sessions)
    assert got.events.equals(expected.events)


def test_categorical_device_ids_give_the_same_sessions(sample):
    a = sessionize(sample)
    b = sessionize(sample.with_columns(pl.col("DeviceId").cast(pl.Categorical)))
    assert a.sessions.drop("device_id", "session_id").equals(b.sessions.drop("device_id", "session_id"))
    assert a.sessions["device_id"].to_list() == b.sessions["device_id"].cast(pl.String).to_list()
    assert a.events["session_id"].to_list() == b.events["session_id"].to_list()


def test_32_bit_hash_collisions_are_regrouped(sample, monkeypatch):
    expected = sessionize(sample)
    real_hash = pl.Series.hash

    def low_half_only(self, *args, **kwargs):  # every DeviceId shares the high 32 bits
        h = real_hash(self, *args, **kwargs)
        return h & 0xFFFFFFFF if self.name == "DeviceId" and kwargs.get("seed") == 0x5EED else h

    monkeypatch.setattr(pl.Series, "hash", low_half_only)
    got = sessionize(sample)
    assert got.sessions.equals(expected.sessions)
    assert got.events.equals(expected.events)
