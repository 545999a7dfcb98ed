"""The emulator as a server people point things at (issue 19): admin routes off loopback,
SIGTERM keeps the snapshot, the daily purge."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import orjson
import pytest

from psanalytics.emulator import Emulator, serve
from psanalytics.emulator.server import is_loopback


def test_admin_routes_need_the_key_when_bound_off_loopback(small):
    with pytest.warns(UserWarning, match="not loopback"), serve(small, api_key="adm-key-1", host="0.0.0.0") as srv:
        base = f"http://127.0.0.1:{srv.port}"
        for method, path in (("GET", "/_emulator/state"), ("POST", "/_emulator/reset"),
                             ("GET", "/_emulator/faults"), ("POST", "/_emulator/faults"),
                             ("POST", "/_emulator/purge")):
            r = httpx.request(method, base + path, content=b"error_rate=1.0")
            assert r.status_code == 401, (method, path)
            assert "admin routes need the API key" in r.json()["error"]["message"]
        assert srv.emulator.faults is None  # the refused POST changed nothing
        assert httpx.get(base + "/_emulator/health").status_code == 200
        assert httpx.get(base + "/_emulator/docs").status_code == 200
        ok = httpx.get(base + "/_emulator/state", params={"limit": 1},
                       headers={"Authorization": "epi-single adm-key-1"})
        assert ok.status_code == 200 and ok.json()["events"] == 62


def test_loopback_admin_routes_stay_open_and_an_admin_token_works(small):
    with serve(small, api_key="k1") as srv:
        assert httpx.get(srv.url + "/_emulator/state").status_code == 200
    emu = Emulator(small, api_key="k2", admin_token="tok-admin")
    c = httpx.Client(base_url=emu.url, transport=emu.transport())
    assert c.post("/_emulator/reset").status_code == 401
    assert c.post("/_emulator/reset", headers={"Authorization": "epi-single tok-admin"}).json() == \
        {"ok": True, "events": 62}
    assert c.get("/_emulator/state", headers={"Ocp-Apim-Subscription-Key": "k2"}).status_code == 200
    # the admin token is not an API key
    assert c.get("/api/v2.0/TrackEvents", headers={"Authorization": "epi-single tok-admin"}).status_code == 401


@pytest.mark.parametrize(("host", "loop"), [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True),
                                            ("localhost", True), ("0.0.0.0", False), ("::", False),
                                            ("192.168.1.4", False), ("example.org", False)])
def test_is_loopback(host, loop):
    assert is_loopback(host) is loop


def test_cli_serve_writes_the_snapshot_on_sigterm(tmp_path, small):
    data = tmp_path / "ev.parquet"
    small.write_parquet(data)
    snap = tmp_path / "snap"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from psanalytics.cli import main; main()", "serve", "--data", str(data),
         "--port", "0", "--api-key", "cli-key-2", "--snapshot", str(snap)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        out = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not out.endswith("press Ctrl-C to stop\n"):
            line = proc.stdout.readline()
            if not line:
                break
            out += line
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", out).group(1)
        tid = small.get_column("TrackId")[0]
        r = httpx.delete(f"{url}/api/v2.0/TrackEvents/default/{tid}", headers={"Authorization": "epi-single cli-key-2"})
        assert r.status_code in (200, 404)
        os.kill(proc.pid, signal.SIGTERM)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f"snapshot written to {snap}" in rest
    meta = orjson.loads((snap / "_emulator_snapshot.json").read_bytes())
    assert meta["events"] == 62 - (r.status_code == 200)


def _body(uuid: str) -> dict:
    return {"account_id": "1", "visitors": [{"visitor_id": "v", "attributes": [], "snapshots": [
        {"decisions": [], "events": [{"entity_id": "7", "key": "k", "uuid": uuid, "timestamp": 1709546400000}]}]}]}


def test_from_a_snapshot_the_event_api_log_is_kept_and_deletions_wait_for_midnight(tmp_path):
    Emulator(api_key="k").snapshot(tmp_path)
    emu = Emulator(tmp_path, api_key="k")
    c = httpx.Client(base_url=emu.url, transport=emu.transport(), headers={"Authorization": "epi-single k"})
    assert c.post("/v1/events", json=_body("u-1")).status_code == 204
    c.get("/api/v2.0/TrackEvents", params={"$top": 1})
    assert emu.state()["event_api"]["accepted"] == 1 and emu.accepted_events().height == 1
    tid = emu.events().get_column("TrackId")[0]
    assert c.delete(f"/api/v2.0/TrackEvents/default/{tid}").status_code == 200
    c.get("/api/v2.0/TrackEvents", params={"$top": 1})
    assert (emu.state()["pending_deletions"], emu.state()["purged_total"]) == (1, 0)
    emu._state.next_purge = 0  # UTC midnight has passed
    c.get("/api/v2.0/TrackEvents", params={"$top": 1})
    assert (emu.state()["pending_deletions"], emu.state()["purged_total"]) == (0, 1)
    assert emu.accepted_events().height == 1
