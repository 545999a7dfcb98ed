"""The one route table and the one state object (issue 12 item 5): every route answers
from the table, paths match in any case with an optional trailing slash, the router's
404/405 come in the API's envelope, the docs list is the table, and ``reset`` puts every
part of the state back at once."""

from __future__ import annotations

import httpx
import pytest
from emulator_helpers import KEY

from psanalytics.emulator import Emulator
from psanalytics.emulator.faults import READ_ONLY_ROUTES, ROUTE_NAMES, Faults, FaultsError
from psanalytics.emulator.routes import ROUTES


@pytest.fixture(scope="module")
def emu(small):
    return Emulator(small, api_key=KEY)


@pytest.fixture
def client(emu):
    emu.reset()
    return httpx.Client(base_url=emu.url, transport=emu.transport(),
                        headers={"Authorization": f"epi-single {KEY}"})


def test_fault_route_names_and_read_only_routes_come_from_the_table():
    assert ROUTE_NAMES == ("trackevents", "profiles", "preview", "delete", "track", "trackbulk", "events",
                           "odp_events", "odp_profiles")
    assert READ_ONLY_ROUTES == frozenset({"trackevents", "profiles", "preview"})
    with pytest.raises(FaultsError, match="admin_reset"):
        Faults(routes=("admin_reset",))


def test_paths_match_in_any_case_with_or_without_a_trailing_slash(client):
    for path in ("/api/v2.0/TrackEvents", "/API/V2.0/TRACKEVENTS/", "/api/v1.0/trackevents/"):
        r = client.get(path, params={"$top": 1})
        assert (r.status_code, r.json()["count"]) == (200, 1), path
    # path parameters keep the request's own case: t-005 exists, T-005 does not
    assert client.delete("/API/v2.0/trackevents/default/T-005/").json()["error"]["message"] == (
        "no tracking event 'T-005' in scope 'default'")
    assert client.delete("/api/V1.0/TrackingEvents/default/t-005/").status_code == 200


def test_unknown_paths_and_methods_answer_in_the_error_envelope(client):
    r = client.get("/api/v2.0/TrackEvents/preview")
    assert (r.status_code, r.json()) == (405, {"error": {
        "code": "MethodNotAllowed", "message": "GET is not allowed on /api/v2.0/TrackEvents/preview"}})
    assert r.headers["allow"] == "POST"
    r = client.put("/_emulator/reset")
    assert (r.status_code, r.json()["error"]["code"]) == (405, "MethodNotAllowed")
    r = client.get("/nothing/here")
    assert (r.status_code, r.json()) == (404, {"error": {
        "code": "NotFound", "message": "no such route: GET /nothing/here"}})
    journal = client.get("/_emulator/state").json()["journal"]  # before this request's entry
    assert [(e["path"], e["route"], e["status"]) for e in journal] == [
        ("/api/v2.0/TrackEvents/preview", None, 405), ("/_emulator/reset", None, 405),
        ("/nothing/here", None, 404)]


def test_docs_list_every_row_of_the_table(client):
    docs = client.get("/_emulator/docs").json()["routes"]
    assert [(d["method"], d["path"]) for d in docs] == [(r.method, r.path) for r in ROUTES]
    assert {"method": "GET", "path": "/_emulator/state", "auth": "none (key off loopback)",
            "what": "?limit=N: counts, Event API log, journal, faults"} in docs


def test_reset_puts_every_part_of_the_state_back(emu, client):
    seeded = emu.events().height
    client.post("/api/v1.0/Track", json={"trackId": "x-1", "deviceId": "d", "eventType": "e", "value": "v"})
    client.delete("/api/v2.0/TrackEvents/default/t-001")
    client.post("/v1/events", json={"account_id": "1", "visitors": [{"visitor_id": "v", "snapshots": [
        {"events": [{"uuid": "u", "timestamp": 1709546400000}]}]}]})
    emu.set_faults("latency=0,seed=1")
    st = emu.state()
    assert (st["events"], st["pending_deletions"], st["event_api"]["accepted"], st["faults"] is None) == (
        seeded, 1, 1, False)
    emu.reset()
    st = emu.state()
    assert (st["events"], st["pending_deletions"], st["event_api"], st["journal"], st["requests"],
            st["faults"]) == (seeded, 0, {"requests": 0, "accepted": 0, "rejected": 0, "duplicates": 0},
                              [], 0, None)
    # the Tracking API's dedupe table was reset too: the same trackId is stored again
    client.post("/api/v1.0/Track", json={"trackId": "x-1", "deviceId": "d", "eventType": "e", "value": "v"})
    assert emu.state()["events"] == seeded + 1
