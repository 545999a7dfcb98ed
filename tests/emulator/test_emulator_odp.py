"""The emulator's ODP routes (POST /v3/events, /v3/profiles) over a real loopback server,
driven by the official optimizely-sdk's ODP event client where it can be."""

from __future__ import annotations

import httpx
import orjson
import pytest
from optimizely.odp.odp_event import OdpEvent
from optimizely.odp.odp_event_api_manager import OdpEventApiManager

from psanalytics.emulator import Emulator, serve
from psanalytics.schema import empty_frame

ODP_KEY = "odp-test-key-55aa"


@pytest.fixture(scope="module")
def srv():
    with serve(empty_frame(), api_key="ps-key", odp_api_key=ODP_KEY) as s:
        yield s


@pytest.fixture(autouse=True)
def _fresh(srv):
    srv.emulator.reset()
    srv.emulator.set_faults(None)


def post(srv, path: str, body, key: str | None = ODP_KEY) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["x-api-key"] = key
    return httpx.post(srv.url + path, content=orjson.dumps(body), headers=headers)


def ev(i: int, **kw) -> dict:
    e = {"type": "pageview", "action": "", "identifiers": {"vuid": f"d{i}"},
         "data": {"idempotence_id": f"id-{i}", "page": "/p", "ts": 1709251200 + i}}
    e.update(kw)
    return e


def test_official_sdk_send_odp_events_is_accepted(srv):
    events = [
        OdpEvent("fullstack", "identified", {"vuid": "v-123", "fs-user-id": "u-1"}, {"source": "test"}),
        OdpEvent("pageview", "", {"vuid": "v-123", "email": "a@example.com"}, {"page": "/home", "ts": 1709251200}),
    ]
    mgr = OdpEventApiManager()
    should_retry = mgr.send_odp_events(ODP_KEY, srv.url, events)
    assert should_retry is False
    st = srv.emulator.odp.state()
    assert st["accepted"] == 2 and st["rejected_requests"] == 0
    assert st["by_type"] == {"fullstack/identified": 1, "pageview": 1}
    got = srv.emulator.odp.events_frame()
    assert got.get_column("type").to_list() == ["fullstack", "pageview"]
    # the SDK renames fs-user-id and adds its common data; we keep what it sent
    assert orjson.loads(got["identifiers"][0]) == {"vuid": "v-123", "fs_user_id": "u-1"}
    d0 = orjson.loads(got["data"][0])
    assert d0["data_source"] == "python-sdk" and d0["data_source_type"] == "sdk" and d0["source"] == "test"
    assert got["idempotence_id"][0] == d0["idempotence_id"]
    assert srv.emulator.odp.customers() == {"a@example.com": {"email": "a@example.com", "vuids": ["v-123"]}}
    # sending the same OdpEvent objects again: same idempotence ids -> duplicates, not new events
    assert mgr.send_odp_events(ODP_KEY, srv.url, events) is False
    st = srv.emulator.odp.state()
    assert st["accepted"] == 2 and st["duplicates"] == 2


def test_official_sdk_sees_4xx_as_final_and_5xx_as_retryable(srv):
    mgr = OdpEventApiManager()
    e = [OdpEvent("pageview", "", {"vuid": "v"}, {})]
    assert mgr.send_odp_events("wrong-key", srv.url, e) is False  # 403: final
    srv.emulator.set_faults({"error_rate": 1.0, "error_statuses": [503], "routes": ["odp_events"]})
    assert mgr.send_odp_events(ODP_KEY, srv.url, e) is True  # 503: retry
    assert srv.emulator.odp.state()["accepted"] == 0


def test_accepted_body_and_single_object(srv):
    r = post(srv, "/v3/events", ev(1))
    assert r.status_code == 202
    body = r.json()
    assert body["title"] == "Accepted" and body["status"] == 202
    assert body["timestamp"].endswith("Z") and body["timestamp"][10] == "T"
    r = post(srv, "/v3/events", [ev(2), ev(3)])
    assert r.status_code == 202
    assert srv.emulator.odp.state()["accepted"] == 3


def test_auth_missing_is_401_wrong_is_403_and_nothing_is_stored(srv):
    r = post(srv, "/v3/events", ev(1), key=None)
    assert r.status_code == 401 and r.json()["detail"] == "missing x-api-key header"
    r = post(srv, "/v3/events", ev(1), key="ps-key")  # the Profile Store key is not the ODP key
    assert r.status_code == 403 and r.json()["title"] == "Forbidden"
    assert srv.emulator.odp.state()["accepted"] == 0


def test_odp_key_defaults_to_the_emulator_key():
    emu = Emulator(empty_frame(), api_key="k1")
    assert emu.odp_api_key == "k1"
    assert Emulator(empty_frame(), api_key="k1", odp_api_key="k2").odp_api_key == "k2"


def test_invalid_events_refuse_the_whole_request_with_every_reason(srv):
    body = [ev(0), {"action": "x", "identifiers": {"vuid": "d"}}, ev(2, identifiers={}),
            ev(3, data={"nested": {"a": 1}}), ev(4, identifiers={"vuid": ""}), ev(5, data={"ts": "yesterday"})]
    r = post(srv, "/v3/events", body)
    assert r.status_code == 400
    assert r.json()["detail"]["invalids"] == [
        {"event": 1, "message": "type is required (a non-empty string)"},
        {"event": 2, "message": 'identifiers are required: an object with at least one identifier, e.g. {"vuid": "..."}'},
        {"event": 3, "message": "data.nested: field values must be strings, numbers, booleans or null (no objects or arrays)"},
        {"event": 4, "message": "at least one identifier must have a non-empty string value"},
        {"event": 5, "message": "data.ts must be the event time in epoch seconds (a non-negative number)"},
    ]
    st = srv.emulator.odp.state()
    assert st["accepted"] == 0 and st["rejected_requests"] == 1 and st["rejected_objects"] == 5


def test_batch_over_500_is_refused_and_500_is_fine(srv):
    r = post(srv, "/v3/events", [ev(i) for i in range(501)])
    assert r.status_code == 400
    assert r.json()["detail"] == "501 events in one request; at most 500 are allowed"
    assert post(srv, "/v3/events", [ev(i) for i in range(500)]).status_code == 202
    assert post(srv, "/v3/events", []).json()["detail"] == "no events in the request"
    r = httpx.post(srv.url + "/v3/events", content=b"{nope", headers={"x-api-key": ODP_KEY})
    assert r.status_code == 400 and r.json()["detail"].startswith("the body is not JSON")


def test_dedupe_on_idempotence_id_and_counts_per_type(srv):
    post(srv, "/v3/events", [ev(1), ev(2), ev(1)])
    post(srv, "/v3/events", [ev(2), ev(3, type="order", action="purchase")])
    st = srv.emulator.odp.state()
    assert (st["accepted"], st["duplicates"]) == (3, 2)
    assert st["by_type"] == {"order/purchase": 1, "pageview": 2}
    # visible over HTTP too
    s = httpx.get(srv.url + "/_emulator/state").json()["odp"]
    assert s["accepted"] == 3 and s["by_type"] == {"order/purchase": 1, "pageview": 2}


def test_profiles_upsert_customers(srv):
    r = post(srv, "/v3/profiles", [
        {"attributes": {"email": "a@example.com", "vuid": "d1", "first_name": "Ann"}},
        {"attributes": {"email": "a@example.com", "vuid": "d2", "last_name": "Lee"}},
    ])
    assert r.status_code == 202 and r.json()["title"] == "Accepted"
    assert srv.emulator.odp.customers() == {
        "a@example.com": {"email": "a@example.com", "first_name": "Ann", "last_name": "Lee", "vuids": ["d1", "d2"]}}
    r = post(srv, "/v3/profiles", {"attributes": {"first_name": "NoId"}})
    assert r.status_code == 400
    assert r.json()["detail"]["invalids"][0]["message"].startswith("attributes must hold at least one identifier")
    assert srv.emulator.odp.state()["profiles_updated"] == 2


def test_faults_apply_to_odp_routes_and_never_store(srv):
    srv.emulator.set_faults({"rate_limit_rate": 1.0, "retry_after": "0", "routes": ["odp_events"]})
    r = post(srv, "/v3/events", ev(1))
    assert r.status_code == 429 and r.headers["retry-after"] == "0"
    assert post(srv, "/v3/profiles", {"attributes": {"email": "x@example.com"}}).status_code == 202
    assert srv.emulator.odp.state()["accepted"] == 0


def test_reset_clears_odp_state(srv):
    post(srv, "/v3/events", ev(1))
    srv.emulator.reset()
    st = srv.emulator.odp.state()
    assert st["accepted"] == 0 and st["by_type"] == {} and st["customers"] == 0
    assert post(srv, "/v3/events", ev(1)).status_code == 202  # the id is new again after a reset


def test_snapshot_keeps_the_odp_state_and_a_resend_is_still_a_duplicate(tmp_path):
    from psanalytics.api.odp import OdpApi

    emu = Emulator(empty_frame(), odp_api_key=ODP_KEY,
                   profiles=[{"ProfileId": "p1", "DeviceIds": ["d1"], "FirstSeen": "2024-03-01T00:00:00Z"}])
    api = OdpApi(api_key=ODP_KEY, transport=emu.transport(), profiles_per_s=None)
    batch = [ev(1), ev(2, identifiers={"vuid": "d2", "email": "a@example.com"}), ev(3, type="order", action="purchase")]
    api.send_events(batch)
    api.send_events([ev(1)])  # a re-send: a duplicate
    api.send_profiles([{"attributes": {"email": "a@example.com", "first_name": "Ann", "vuid": "d9"}}])
    before = emu.odp.state()
    emu.snapshot(tmp_path / "snap")
    meta = orjson.loads((tmp_path / "snap" / "_emulator_snapshot.json").read_bytes())
    assert (meta["odp"]["accepted"], meta["odp"]["duplicates"], meta["odp"]["customers"]) == (3, 1, 1)

    back = Emulator(tmp_path / "snap", odp_api_key=ODP_KEY)
    assert back.odp.state() == before
    assert back.odp.events_frame().equals(emu.odp.events_frame())
    assert back.odp.customers() == emu.odp.customers() == {
        "a@example.com": {"email": "a@example.com", "first_name": "Ann", "vuids": ["d2", "d9"]}}
    assert back.odp.duplicates() == {"id-1": 1}
    assert back.profiles.frame().equals(emu.profiles.frame())
    # the restored idempotence ids still recognise a re-send; a new event is accepted
    api2 = OdpApi(api_key=ODP_KEY, transport=back.transport(), profiles_per_s=None)
    api2.send_events([ev(2), ev(4)])
    st = back.odp.state(limit=0)
    assert (st["accepted"], st["duplicates"], st["by_type"]) == (4, 2, {"order/purchase": 1, "pageview": 3})
    back.reset()  # back to the snapshot's state, as for the Event API log
    assert back.odp.state() == before
    # a snapshot written before ODP state was saved still loads (no ODP state)
    import shutil

    shutil.rmtree(tmp_path / "snap" / "odp")
    assert Emulator(tmp_path / "snap", odp_api_key=ODP_KEY).odp.state(limit=0)["accepted"] == 0
