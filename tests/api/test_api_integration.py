"""The client against the emulator as a real HTTP server on 127.0.0.1.

50,000 events with a burst of 12,000 in one minute and many equal timestamps; with and
without faults (5xx, 429 + Retry-After, dropped connections, truncated bodies, latency)
``events()`` and a killed-and-resumed ``export()`` return exactly the emulator's events.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import orjson
import polars as pl
import pytest

from psanalytics import samples, schema
from psanalytics._connect import connect
from psanalytics.api.export import read_checkpoint
from psanalytics.api.http import ApiError, RetryPolicy
from psanalytics.api.profile_store import PreviewTruncatedWarning, ProfileStore

emulator = pytest.importorskip("psanalytics.emulator")

pytestmark = pytest.mark.http

KEY = "itest-secret-key-5b1e"
POLICY = RetryPolicy(max_attempts=12, backoff_initial=0.001, backoff_max=0.01, max_retry_after=2)
FAULTS = dict(seed=11, latency=(0.0, 0.003), error_rate=0.10, error_statuses=(500, 502, 503),
              rate_limit_rate=0.05, retry_after="0.01", drop_rate=0.03, truncate_rate=0.03)


@pytest.fixture(scope="module")
def events() -> pl.DataFrame:
    return samples.generate(38_000, burst=True, seed=3)  # 38,000 + a 12,000-event burst


@pytest.fixture(scope="module")
def server(events):
    with emulator.serve(events, api_key=KEY) as srv:
        yield srv


@pytest.fixture
def srv(server):
    server.reset()
    server.set_faults(None)
    yield server
    server.set_faults(None)


def store(srv, **kw) -> ProfileStore:
    kw.setdefault("policy", POLICY)
    kw.setdefault("progress", False)
    return connect(srv.url, KEY, **kw)


def expected(srv) -> pl.DataFrame:
    return srv.emulator.events().sort(["EventTime", "TrackId"])


def assert_exact(got: pl.DataFrame, exp: pl.DataFrame) -> None:
    assert got.schema == schema.EVENTS_SCHEMA
    assert got.get_column("TrackId").is_duplicated().sum() == 0
    assert set(got.get_column("TrackId").to_list()) == set(exp.get_column("TrackId").to_list())
    assert got.sort(["EventTime", "TrackId"]).equals(exp)


def test_data_has_a_burst_past_the_window_and_ties(events):
    assert events.height == 50_000
    per_min = events.group_by(pl.col("EventTime").dt.truncate("1m")).len()
    assert per_min.get_column("len").max() > 10_000
    assert events.group_by("EventTime").len().get_column("len").max() > 1


def test_events_exact_without_faults(srv):
    s = store(srv, concurrency=4)
    got = s.events()
    assert_exact(got, expected(srv))
    assert got.equals(got.sort(["EventTime", "TrackId"]))  # delivered in order
    assert s.count() == 50_000


def test_events_exact_under_faults(srv):
    srv.set_faults(FAULTS)
    s = store(srv, concurrency=4)
    got = s.events()
    assert_exact(got, expected(srv))
    assert s.stats.retries > 10  # the faults really happened


def test_filtered_range_under_faults(srv, events):
    srv.set_faults(FAULTS)
    s = store(srv)
    start, end = "2024-03-08T00:00:00Z", "2024-03-12T00:00:00Z"
    from psanalytics.api.windows import to_ns

    lo = pl.lit(to_ns(start)).cast(pl.Datetime("ns", "UTC"))
    hi = pl.lit(to_ns(end)).cast(pl.Datetime("ns", "UTC"))
    exp = expected(srv).filter((pl.col("EventType") != "epiPageView") & (pl.col("EventTime") >= lo)
                               & (pl.col("EventTime") < hi))
    got = s.events("EventType ne 'epiPageView'", start=start, end=end)
    assert_exact(got, exp)


_KILLABLE = textwrap.dedent(
    """
    import sys
    from psanalytics.api.http import RetryPolicy
    from psanalytics._connect import connect
    url, key, out = sys.argv[1:4]
    s = connect(url, key, progress=False, concurrency=1,
                policy=RetryPolicy(max_attempts=12, backoff_initial=0.001, backoff_max=0.01, max_retry_after=2))
    s.export(out)
    print("finished")
    """
)


def test_export_killed_midway_then_resumed_is_exact(srv, tmp_path):
    srv.set_faults({**FAULTS, "latency": (0.01, 0.03)})
    out = tmp_path / "export"
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, srv.url, KEY, str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    done = 0
    try:
        while time.monotonic() < deadline:
            state = read_checkpoint(out)  # a torn last line is skipped
            if state is not None:
                done = len(state["done"])
                if done >= 2:
                    break
            if proc.poll() is not None:
                break
            time.sleep(0.01)
        assert proc.poll() is None, proc.communicate()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    state = read_checkpoint(out)
    assert not state["complete"] and 2 <= len(state["done"]) < len(state["windows"])
    killed_done = set(state["done"])

    rep = store(srv, concurrency=3).export(out)
    assert rep.resumed_windows >= len(killed_done)
    assert {w.key for w in rep.windows if w.resumed} >= killed_done
    assert rep.duplicates == 0
    assert_exact(rep.read(), expected(srv))
    on_disk = pl.scan_parquet(str(out / "*" / "*.parquet")).collect()
    assert_exact(on_disk, expected(srv))
    # Files of resumed windows were not rewritten.
    assert rep.fetched_rows == rep.rows - sum(w.rows for w in rep.windows if w.resumed)


def test_export_interrupted_by_exception_then_resumed(srv, tmp_path):
    srv.set_faults(FAULTS)
    s = store(srv, concurrency=2)

    def stop(n: int) -> None:
        if n == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        s.export(tmp_path / "x", _after_window=stop)
    rep = s.export(tmp_path / "x")
    assert rep.resumed_windows >= 3 and rep.duplicates == 0
    assert_exact(rep.read(), expected(srv))


def test_wrong_key_is_401_and_never_shown(srv):
    bad = "wrong-secret-key-9981"
    s = connect(srv.url, bad, policy=POLICY, progress=False)
    with pytest.raises(ApiError) as ei:
        s.count()
    assert ei.value.status == 401 and ei.value.attempts == 1
    assert bad not in str(ei.value) and bad not in repr(s) and KEY not in repr(store(srv))


def test_bad_filter_names_request_and_server_message(srv):
    s = store(srv)
    with pytest.raises(ApiError) as ei:
        s.count("EventType eq 'a' and")
    e = ei.value
    assert e.status == 400 and e.attempts == 1
    assert str(e).startswith(f"GET {srv.url}/api/v2.0/TrackEvents?") and e.server_message


def test_delete_and_track_round_trip(srv):
    s = store(srv)
    first = s.events(limit=3)
    assert s.delete(first["Scope"][0] or "default", first["TrackId"][0]) is True
    assert s.delete(first["Scope"][0] or "default", first["TrackId"][0]) is False
    rep = s.delete_many(first)
    assert len(rep.deleted) == 2 and len(rep.not_found) == 1 and rep.failed == []
    assert s.count() == 50_000 - 3
    new = samples.generate(250, seed=99)
    tr = s.track(new)
    assert (tr.events, tr.batches) == (250, 3)
    assert s.count() == 50_000 - 3 + 250


def test_preview_validates_locally_and_reports_truncation(srv):
    kql = pytest.importorskip("psanalytics.query.kql")
    s = store(srv)
    before = s.stats.requests
    with pytest.raises(kql.KqlError) as ei:
        s.preview("Events | wher EventType == 'order'")
    assert s.stats.requests == before  # no request was sent
    assert ei.value.line == 1
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        got = s.preview("Events | take 5000")
    assert got.height == 1000 and got.truncated is True
    assert any(issubclass(x.category, PreviewTruncatedWarning) for x in w)
    assert got.schema == schema.EVENTS_SCHEMA
    small = s.preview("Events | where EventType == 'order' | take 5")
    assert small.height == 5 and small.truncated is False
    assert set(small["EventType"].to_list()) == {"order"}


def test_connect_without_config_uses_in_process_emulator(monkeypatch, capsys):
    monkeypatch.delenv("PSANALYTICS_URL", raising=False)
    monkeypatch.delenv("PSANALYTICS_API_KEY", raising=False)
    s = connect(progress=False)
    err = capsys.readouterr().err
    n = samples.default_events().height
    assert err == ("psanalytics: no url or API key configured (PSANALYTICS_URL / PSANALYTICS_API_KEY): "
                   f"using the in-process emulator with {n:,} sample events\n")
    assert s.count() == n
    assert s.events(limit=10).equals(samples.default_events().sort(["EventTime", "TrackId"]).head(10))


def test_cli_fetch_folder_and_file(srv, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from psanalytics.cli import app

    monkeypatch.setenv("PSANALYTICS_URL", srv.url)
    monkeypatch.setenv("PSANALYTICS_API_KEY", KEY)
    runner = CliRunner()
    r = runner.invoke(app, ["fetch", str(tmp_path / "f.parquet"), "--filter", "EventType eq order", "--no-progress"])
    assert r.exit_code == 0, r.output
    exp = expected(srv).filter(pl.col("EventType") == "order")
    assert pl.read_parquet(tmp_path / "f.parquet").equals(exp)
    assert f"{exp.height:,} events -> " in r.output
    r = runner.invoke(app, ["fetch", str(tmp_path / "folder"), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert_exact(pl.scan_parquet(str(tmp_path / "folder" / "*" / "*.parquet")).collect(), expected(srv))
    assert KEY not in r.output
    r = runner.invoke(app, ["fetch", str(tmp_path / "o.ndjson"), "-f", "EventType eq order", "--no-progress"])
    assert r.exit_code == 0, r.output
    from psanalytics.exports import read_events

    assert read_events(tmp_path / "o.ndjson").equals(exp)
    # Files are written by exports.write_events: the same bytes as writing the frame there,
    # compressed and CSV forms included.
    from psanalytics.exports import write_events

    for name in ("o.csv", "o.ndjson.gz", "o.page.json"):
        r = runner.invoke(app, ["fetch", str(tmp_path / name), "-f", "EventType eq order", "--no-progress"])
        assert r.exit_code == 0, r.output
        ref = write_events(exp, tmp_path / "ref" / name)
        assert (tmp_path / name).read_bytes() == ref.read_bytes(), name
        assert read_events(tmp_path / name).equals(exp), name
    r = runner.invoke(app, ["fetch", str(tmp_path / "g.parquet"), "--filter", "EventType eq"])
    assert r.exit_code == 1 and "error: GET " in r.output and "HTTP 400" in r.output
    r = runner.invoke(app, ["fetch", str(tmp_path / "s.parquet"), "--settle", "soon", "--no-progress"])
    assert r.exit_code == 1 and "error: settle='soon' is not a duration" in r.output
    # The sample data is in the past: settling 5 minutes keeps every event.
    r = runner.invoke(app, ["fetch", str(tmp_path / "s.parquet"), "--settle", "5m", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert_exact(pl.read_parquet(tmp_path / "s.parquet"), expected(srv))


def test_plan_dry_run_counts_match(srv):
    s = store(srv)
    plan = s.plan()
    assert sum(w.count for w in plan) == 50_000
    assert all(w.count <= 9_999 for w in plan)
    assert all(a.end <= b.start for a, b in zip(plan, plan[1:], strict=False))


def test_keys_not_in_files(tmp_path, srv):
    s = store(srv)
    s.export(tmp_path / "e", start="2024-03-05", end="2024-03-06")
    for p in Path(tmp_path / "e").rglob("*"):
        if p.is_file():
            assert KEY.encode() not in p.read_bytes()


def test_sync_calls_work_inside_a_running_event_loop(srv, monkeypatch):
    """As in a Jupyter cell: a loop is running in this thread while we call the sync API."""
    import asyncio

    monkeypatch.delenv("PSANALYTICS_URL", raising=False)
    monkeypatch.delenv("PSANALYTICS_API_KEY", raising=False)

    async def cell():
        local = connect(progress=False, quiet=True)  # in-process emulator transport
        remote = store(srv)
        a = local.events(limit=5)
        b = remote.events(limit=5)
        c = await remote.aevents(limit=5)
        n = await remote.acount()
        return a, b, c, n

    a, b, c, n = asyncio.run(cell())
    assert a.height == 5 and b.equals(c) and b.equals(expected(srv).head(5))
    assert n == expected(srv).height


def test_cli_preview_and_dry_run(srv, tmp_path, monkeypatch):
    pytest.importorskip("psanalytics.query.kql")
    from typer.testing import CliRunner

    from psanalytics.cli import app

    monkeypatch.setenv("PSANALYTICS_URL", srv.url)
    monkeypatch.setenv("PSANALYTICS_API_KEY", KEY)
    runner = CliRunner()
    r = runner.invoke(app, ["preview", "Events | take 5000", "--output", str(tmp_path / "p.parquet")])
    assert r.exit_code == 0, r.output
    assert "1,000 rows -> " in r.output
    assert "note: the API returned its cap of 1,000 rows; more rows may match" in r.output
    assert pl.read_parquet(tmp_path / "p.parquet").height == 1000
    r = runner.invoke(app, ["preview", "Events | summarize n=count() by EventType | order by n desc | take 3"])
    assert r.exit_code == 0, r.output
    assert "EventType" in r.output and "note:" not in r.output
    r = runner.invoke(app, ["preview", "Events\n| wher EventType == 'order'"])
    assert r.exit_code == 2
    assert r.output.startswith("error: unknown operator 'wher'")
    assert "at line 2, column 3\n| wher EventType == 'order'\n  ^^^^" in r.output
    r = runner.invoke(app, ["fetch", str(tmp_path / "d"), "--dry-run"])
    assert r.exit_code == 0, r.output
    last = r.output.strip().splitlines()[-1]
    assert last.endswith(f"{expected(srv).height:,} events, about {last.split()[0]} page requests")
    assert not (tmp_path / "d").exists()


_EV_BODY = {
    "account_id": "12345", "project_id": "678", "anonymize_ip": True,
    "client_name": "psanalytics/tests", "client_version": "0.1", "enrich_decisions": True,
    "visitors": [{"visitor_id": "v1", "attributes": [], "snapshots": [{"decisions": [], "events": [
        {"entity_id": "e1", "key": "order", "timestamp": 1709251200000,
         "uuid": "0b4f0c0e-0000-4000-8000-000000000001", "type": "order", "revenue": 1299}]}]}],
}


def test_event_api_against_emulator_strict_and_faults(srv):
    from psanalytics.api.event_api import EventApi, EventApiRejected

    srv.set_faults({"seed": 2, "error_rate": 0.3, "rate_limit_rate": 0.2, "retry_after": "0",
                    "drop_rate": 0.1, "routes": ["events"]})
    api = EventApi(srv.url, strict=True, policy=POLICY)
    results = [api.send(_EV_BODY) for _ in range(20)]
    assert all(r.status == 204 for r in results)
    assert sum(r.retries for r in results) > 5
    # Re-sends of the same (entity_id, uuid, timestamp) are kept once by the service.
    assert srv.emulator.accepted_events().height == 1
    srv.set_faults(None)
    bad = orjson.loads(orjson.dumps(_EV_BODY))
    bad["visitors"][0]["snapshots"][0]["events"][0]["timestamp"] = 1709251200
    with pytest.raises(EventApiRejected) as ei:
        api.send(bad)
    assert ei.value.attempts == 1
    assert ei.value.errors == [{"path": "visitors[0].snapshots[0].events[0].timestamp",
                                "message": "must be epoch milliseconds (13 digits), got 1709251200"}]


def test_retry_after_forms_over_a_real_socket(srv):
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    from psanalytics.api.http import RetryAfterTooLong

    s = store(srv)
    n = expected(srv).height
    # HTTP-date form, about a second ahead: honoured (then it is in the past: backoff).
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=1), usegmt=True)
    srv.set_faults({"seed": 4, "rate_limit_rate": 0.5, "retry_after": when, "routes": ["trackevents"]})
    assert [s.count() for _ in range(4)] == [n] * 4
    # The waits the client chose (not the wall clock): the date's ~1 s, then short backoffs.
    assert s.stats.retries >= 1 and 0 < s.stats.waited_s < 2 + 2 * s.stats.retries
    # Longer than the policy allows: fails at once, naming the wait.
    srv.set_faults({"seed": 4, "rate_limit_rate": 1.0, "retry_after": "3600", "routes": ["trackevents"]})
    with pytest.raises(RetryAfterTooLong) as ei:
        s.count()
    assert ei.value.retry_after == 3600 and ei.value.attempts == 1
    assert "Retry-After 3600 s, longer than max_retry_after=2 s" in str(ei.value)


def test_track_sends_track_id_and_session_id_to_a_separate_tracking_host(tmp_path):
    """connect(..., tracking_url=, tracking_key=): the query API and the Tracking API are
    two hosts with two keys; track() sends trackId and sessionId, so a re-send is skipped
    by the service's dedupe instead of duplicating events."""
    with emulator.serve(samples.generate(10, seed=1), api_key=KEY) as query, \
            emulator.serve(schema.empty_frame(), api_key="tracking-host-key") as tracking:
        s = connect(query.url, KEY, tracking_url=tracking.url, tracking_key="tracking-host-key",
                    policy=POLICY, progress=False)
        new = samples.generate(5, seed=2).with_columns(
            pl.Series("TrackId", ["", "k1", "k2", "", "k3"]),
            pl.Series("SessionId", ["s1", "s1", "", "s2", "s2"]))
        assert s.track(new).events == 5
        assert s.track(new).events == 5  # sent again: the three with a trackId are skipped
        got = tracking.emulator.events()
        assert sorted(got["TrackId"].to_list()) == ["", "", "", "", "k1", "k2", "k3"]
        assert sorted(set(got["SessionId"].to_list())) == ["", "s1", "s2"]
        assert query.emulator.events().height == 10  # nothing went to the query host
