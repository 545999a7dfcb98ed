"""The Tracking API as the real service behaves (shared/spec/apis.md section 5): a client
trackId is the dedupe key (a repeat in the same scope within 72 hours is skipped; longer
ids are cut at 64 characters), events without one keep TrackId "", sessionId and
user.info (2017: user.information) are kept."""

from __future__ import annotations

import httpx
import pytest

from psanalytics import schema
from psanalytics.emulator import Emulator
from psanalytics.emulator import tracking as tracking_module

KEY = "tracking-key"
HOUR = 3600 * 10**9


@pytest.fixture
def clock(monkeypatch):
    now = {"ns": 1_709_251_200 * 10**9}
    monkeypatch.setattr(tracking_module, "_now_ns", lambda: now["ns"])
    return now


def _client(**kw):
    emu = Emulator(schema.empty_frame(), api_key=KEY, **kw)
    return emu, httpx.Client(transport=emu.transport(), base_url="http://emu",
                             headers={"Authorization": f"epi-single {KEY}"})


def _tracked(emu, device):
    return emu.events().filter(emu.events()["DeviceId"] == device)


def test_track_id_dedupe_per_scope_over_72_hours(clock):
    emu, c = _client()
    body = {"trackId": "t-1", "deviceId": "dev", "eventType": "x", "value": "v"}
    assert c.post("/api/v1.0/Track", json=body).status_code == 202
    clock["ns"] += 71 * HOUR
    assert c.post("/api/v1.0/TrackBulk", json=[body, dict(body, scope="shop")]).status_code == 202
    got = _tracked(emu, "dev")
    assert sorted(got["Scope"].to_list()) == ["default", "shop"]  # the repeat was skipped
    clock["ns"] += 2 * HOUR  # 73 hours after the first
    assert c.post("/api/v1.0/Track", json=body).status_code == 202
    assert _tracked(emu, "dev").height == 3


def test_long_track_ids_are_cut_and_missing_ones_stay_empty(clock):
    emu, c = _client()
    long_id = "x" * 70
    c.post("/api/v1.0/TrackBulk", json=[
        {"trackId": long_id, "deviceId": "d1", "eventType": "x", "value": "v"},
        {"trackId": "x" * 64 + "different tail", "deviceId": "d1", "eventType": "x", "value": "v"},
        {"deviceId": "d2", "eventType": "x", "value": "v"},
        {"deviceId": "d2", "eventType": "x", "value": "v"},
    ])
    assert _tracked(emu, "d1")["TrackId"].to_list() == ["x" * 64]  # same first 64: a repeat
    assert _tracked(emu, "d2")["TrackId"].to_list() == ["", ""]  # no id: both kept


def test_session_id_and_user_info_are_kept(clock):
    emu, c = _client()
    c.post("/api/v1.0/TrackBulk", json=[
        {"deviceId": "d3", "eventType": "x", "value": "v", "sessionId": "s-1",
         "user": {"email": "a@b.c", "info": {"Market": "SE"}}},
        {"deviceId": "d4", "eventType": "x", "value": "v", "user": {"name": "N", "information": {"a": "1"}}},
    ])
    r3 = _tracked(emu, "d3").row(0, named=True)
    assert r3["SessionId"] == "s-1" and r3["User"] == {"Email": "a@b.c", "Name": "", "Info": '{"Market":"SE"}'}
    assert _tracked(emu, "d4").row(0, named=True)["User"] == {"Email": "", "Name": "N", "Info": '{"a":"1"}'}


def test_assign_switch_gives_events_without_an_id_a_random_one(clock):
    emu, c = _client(track_ids="assign")
    c.post("/api/v1.0/Track", json={"deviceId": "d5", "eventType": "x", "value": "v"})
    (tid,) = _tracked(emu, "d5")["TrackId"].to_list()
    assert len(tid) == 36
    with pytest.raises(ValueError, match="track_ids must be 'keep' or 'assign', not 'x'"):
        Emulator(schema.empty_frame(), track_ids="x")
