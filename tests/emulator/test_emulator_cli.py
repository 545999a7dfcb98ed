"""``psanalytics serve`` as a user runs it, and snapshots to a Parquet folder."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import orjson

from psanalytics.emulator import Emulator


def test_cli_serve_prints_url_and_key_and_stops_on_ctrl_c(tmp_path, small):
    data = tmp_path / "ev.parquet"
    small.write_parquet(data)
    snap = tmp_path / "snap"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from psanalytics.cli import main; main()", "serve", "--data", str(data),
         "--port", "0", "--api-key", "cli-key-1", "--faults", "seed=1", "--snapshot", str(snap)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = []
        # A deadline, not a timing: the server prints these lines once it listens. On a
        # loaded 2-core box starting Python and importing polars/uvicorn took over 30 s.
        t0 = time.monotonic()
        deadline = t0 + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("press Ctrl-C"):
                break
        out = "".join(lines)
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+) \(bound to 127\.0\.0\.1\)", out)
        waited = f"\n(after {time.monotonic() - t0:.0f} s)"
        assert m, out + proc.stderr.read() + waited if proc.poll() is not None else out + waited
        assert "api key: cli-key-1" in out and "events:  62" in out
        url = m.group(1)
        r = httpx.get(f"{url}/api/v2.0/TrackEvents", headers={"Authorization": "epi-single cli-key-1"})
        assert r.status_code == 200 and r.json()["total"] == 62
        httpx.post(f"{url}/v1/events", json={"account_id": "1", "visitors": [{"visitor_id": "v", "snapshots": [
            {"events": [{"uuid": "u", "timestamp": 1709546400000, "entity_id": "e"}]}]}]})
        os.kill(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "stopping" in rest and f"snapshot written to {snap}" in rest
    meta = orjson.loads((snap / "_emulator_snapshot.json").read_bytes())
    assert meta["events"] == 62
    again = Emulator(snap)
    assert again.events().equals(small.sort(["EventTime", "TrackId"]))
    assert again.accepted_events().get_column("uuid").to_list() == ["u"]


def test_cli_serve_bad_faults_exit_1():
    r = subprocess.run([sys.executable, "-c", "from psanalytics.cli import main; main()", "serve",
                        "--port", "0", "--faults", "explode=1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "error: unknown fault key 'explode'" in r.stderr


def test_cli_serve_real_shaped_in_process(tmp_path, monkeypatch, small):
    """``serve --real-shaped`` serves samples.real_shaped() of the data, on a real socket.

    In process (no second interpreter): the command's wait loop calls time.sleep once the
    server listens; the first such call (main thread, after serve() returned the server)
    queries the server and then stops it as Ctrl-C does.
    """
    import threading

    from typer.testing import CliRunner

    from psanalytics import samples
    from psanalytics.cli import app

    data = tmp_path / "ev.parquet"
    small.write_parquet(data)
    want = samples.real_shaped(small)
    started: list = []
    answers: list = []
    import psanalytics.emulator as emulator_pkg

    real_serve, real_sleep = emulator_pkg.serve, time.sleep

    def recording_serve(*args, **kw):
        ctx = real_serve(*args, **kw)
        enter = ctx.__enter__

        def entered():
            srv = enter()
            started.append(srv)
            return srv

        ctx.__enter__ = entered
        return ctx

    def first_sleep_queries_then_interrupts(seconds):
        if threading.current_thread() is not threading.main_thread() or answers or not started:
            return real_sleep(seconds)
        r = httpx.get(f"{started[0].url}/api/v2.0/TrackEvents", params={"$top": "9999"},
                      headers={"Authorization": "epi-single cli-key-2"})
        answers.append(r)
        raise KeyboardInterrupt

    monkeypatch.setattr(emulator_pkg, "serve", recording_serve)
    monkeypatch.setattr(time, "sleep", first_sleep_queries_then_interrupts)
    res = CliRunner().invoke(app, ["serve", "--data", str(data), "--port", "0", "--api-key",
                                   "cli-key-2", "--real-shaped"])
    assert res.exit_code == 0, res.output
    assert f"events:  {want.height}" in res.output and "stopping" in res.output
    items = answers[0].json()["items"]
    assert len(items) == want.height > small.height
    assert sum(e["TrackId"] == "" for e in items) == int((want["TrackId"] == "").sum()) > 0
    assert all(e["Headers"] == {} for e in items)
