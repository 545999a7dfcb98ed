"""Replayer behaviour against an in-memory Event API (httpx.MockTransport)."""

from __future__ import annotations

import random
import threading

import httpx
import orjson
import polars as pl
import pytest

from psanalytics.api.event_api import EventApi
from psanalytics.api.http import RetryPolicy
from psanalytics.replay import (
    Checkpoint,
    EventApiSink,
    Replayer,
    ReplayError,
    from_visitor_log,
)
from psanalytics.samples import generate


class FakeEventApi:
    """Dedupes on (entity_id, uuid, timestamp); faults; strict 400 on short timestamps."""

    def __init__(self, error_rate: float = 0.0, rate_limit_rate: float = 0.0, seed: int = 0) -> None:
        self.kept: dict[tuple, dict] = {}
        self.received = 0
        self.requests = 0
        self.bodies: list[bytes] = []
        self.rng = random.Random(seed)
        self.error_rate = error_rate
        self.rate_limit_rate = rate_limit_rate
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests += 1
            r = self.rng.random()
            if r < self.error_rate:
                return httpx.Response(503, json={"error": {"code": "ServiceUnavailable", "message": "try later"}})
            if r < self.error_rate + self.rate_limit_rate:
                return httpx.Response(429, headers={"Retry-After": "0"})
            body = orjson.loads(request.content)
            strict = request.headers.get("X-Optimizely-Strict") == "true"
            if strict:
                errors = [
                    {"path": f"visitors[{i}].snapshots[{j}].events[{k}].timestamp",
                     "message": "timestamp must be epoch milliseconds (13 digits)"}
                    for i, v in enumerate(body["visitors"]) for j, s in enumerate(v["snapshots"])
                    for k, e in enumerate(s["events"]) if len(str(e["timestamp"])) != 13
                ]
                if errors:
                    return httpx.Response(400, json={"errors": errors})
            self.bodies.append(request.content)
            for v in body["visitors"]:
                for s in v["snapshots"]:
                    for e in s["events"]:
                        self.received += 1
                        self.kept.setdefault((e["entity_id"], e["uuid"], e["timestamp"]), e)
            return httpx.Response(204)


def sink_for(fake: FakeEventApi, strict: bool = False) -> EventApiSink:
    return EventApiSink(api=EventApi(transport=httpx.MockTransport(fake), strict=strict,
                                     policy=RetryPolicy.fast(10)))


@pytest.fixture(scope="module")
def sample() -> pl.DataFrame:
    return generate(4000, seed=11)


def test_every_event_arrives_once_despite_faults(sample):
    fake = FakeEventApi(error_rate=0.1, rate_limit_rate=0.1, seed=3)
    rep = Replayer(sink_for(fake), account_id="42", max_visitors=5, workers=3, progress=False)
    report = rep.run(sample)
    assert len(fake.kept) == sample.height == report.events
    assert report.retries > 0 and report.retries == fake.requests - report.batches
    assert report.rejected == report.failed == report.quarantined == 0
    assert report.statuses == {204: report.batches}
    assert report.ok
    assert len(report.latencies_s) == report.batches and report.latency(0.95) >= report.latency(0.5) > 0
    assert "request latency p50" in str(report)


class Killer:
    """Wraps a sink; lets ``n`` sends through, then raises (simulates a crash).

    A send takes its slot before it starts: checking the acknowledged count instead let
    two workers both pass at n - 1 and acknowledge n + 1 (the flake issue 12 found)."""

    def __init__(self, sink: EventApiSink, n: int) -> None:
        self.sink, self.n, self.kind, self.sent = sink, n, sink.kind, []
        self.started = 0
        self.lock = threading.Lock()

    def send(self, batch):
        with self.lock:
            if self.started >= self.n:
                raise RuntimeError("killed")
            self.started += 1
        res = self.sink.send(batch)
        with self.lock:
            self.sent.append(batch.id)
        return res

    def close(self):
        pass


def test_killed_then_resumed_sends_no_acknowledged_batch_again(sample, tmp_path):
    fake = FakeEventApi(error_rate=0.1, seed=5)
    ck = tmp_path / "run.ckpt"
    killer = Killer(sink_for(fake), 6)
    with pytest.raises(RuntimeError, match="killed"):
        Replayer(killer, account_id="42", max_visitors=10, workers=2, checkpoint=ck, progress=False).run(sample)
    acked = set(Checkpoint(ck).done)
    assert set(killer.sent) == acked and len(acked) == 6
    second = Killer(sink_for(fake), 10**9)
    report = Replayer(second, account_id="42", max_visitors=10, workers=2, checkpoint=ck, progress=False).run(sample)
    assert not acked & set(second.sent)
    assert report.skipped == 6
    assert report.events + report.skipped_events == sample.height
    assert len(fake.kept) == sample.height
    # same input, another account: refuse
    with pytest.raises(ReplayError, match="account_id='42'"):
        Replayer(sink_for(fake), account_id="43", checkpoint=ck, progress=False).run(sample)
    with pytest.raises(ReplayError, match="resume=False"):
        Replayer(sink_for(fake), account_id="42", checkpoint=ck, resume=False, progress=False).run(sample)


def test_strict_400_is_isolated_reported_and_the_rest_continues(sample, tmp_path):
    bad_dev = sample.get_column("DeviceId")[0]
    n_bad = sample.filter(pl.col("DeviceId") == bad_dev).height
    broken = sample.with_columns(
        pl.when(pl.col("DeviceId") == bad_dev)
        .then(pl.lit(0, pl.Int64).cast(pl.Datetime("ns", "UTC")) + pl.duration(seconds=5))
        .otherwise(pl.col("EventTime")).alias("EventTime")
    )
    fake = FakeEventApi()
    report = Replayer(sink_for(fake, strict=True), account_id="42", max_visitors=8, progress=False,
                      checkpoint=tmp_path / "c.ckpt", validate=False).run(broken)
    assert report.rejected == 1 and report.rejected_events == n_bad
    rej = report.rejections[0]
    assert rej.status == 400
    assert "13 digits" in rej.reason
    assert rej.errors[0]["path"] == "visitors[0].snapshots[0].events[0].timestamp"
    assert len(fake.kept) == sample.height - n_bad == report.events
    lines = (tmp_path / "c.rejected.jsonl").read_bytes().splitlines()
    assert len(lines) == 1
    kept_aside = orjson.loads(lines[0])
    assert kept_aside["status"] == 400 and kept_aside["body"]["visitors"][0]["visitor_id"] == bad_dev
    assert report.files["rejected"] == str(tmp_path / "c.rejected.jsonl")


def test_exhausted_retries_go_to_failed_file_and_are_not_acked(sample, tmp_path):
    fake = FakeEventApi(error_rate=1.0)
    sink = EventApiSink(api=EventApi(transport=httpx.MockTransport(fake), policy=RetryPolicy.fast(2)))
    ck = tmp_path / "f.ckpt"
    report = Replayer(sink, account_id="42", max_visitors=2000, checkpoint=ck, progress=False).run(sample.head(50))
    assert report.failed == 1 and "try later" in report.failures[0]
    assert report.failed_events == 50 and report.events == 0
    assert Checkpoint(ck).done == {}
    assert (tmp_path / "f.failed.jsonl").exists()
    assert not report.ok


def test_dry_run_writes_exact_bodies_and_summary(sample, tmp_path):
    fake = FakeEventApi()
    live = Replayer(sink_for(fake), account_id="42", max_visitors=50, workers=1, progress=False).run(sample)
    out = tmp_path / "bodies.jsonl.gz"
    dry = Replayer(None, account_id="42", max_visitors=50, dry_run=out, progress=False).run(sample)
    import gzip

    lines = gzip.decompress(out.read_bytes()).splitlines()
    assert lines == fake.bodies  # workers=1: same order, byte for byte
    assert (dry.events, dry.batches, dry.bytes, dry.visitors) == (live.events, live.batches, live.bytes, live.visitors)
    summary = orjson.loads((tmp_path / "bodies.jsonl.summary.json").read_bytes())
    assert (summary["events"], summary["batches"], summary["bytes"]) == (dry.events, dry.batches, dry.bytes)
    assert from_visitor_log(out).height == sample.height


def test_quarantine_file(sample, tmp_path):
    fake = FakeEventApi()
    report = Replayer(sink_for(fake), account_id="42", max_bytes=20_000, quarantine=tmp_path / "q.jsonl",
                      progress=False).run(sample)
    assert report.quarantined > 0
    recs = [orjson.loads(x) for x in (tmp_path / "q.jsonl").read_bytes().splitlines()]
    assert len(recs) == report.quarantined
    assert sum(r["events"] for r in recs) == report.quarantined_events
    assert report.events + report.quarantined_events == sample.height == len(fake.kept) + report.quarantined_events
    assert all(r["bytes"] > 20_000 and r["visitor"]["visitor_id"] == r["visitor_id"] for r in recs)


def test_rate_cap_with_fake_clock(sample):
    class Clock:
        now = 0.0

        def __call__(self):
            return self.now

        def sleep(self, s):
            self.now += s

    clk = Clock()
    fake = FakeEventApi()
    report = Replayer(sink_for(fake), account_id="42", max_visitors=20, rate=500.0, workers=1,
                      progress=False, clock=clk, sleep=clk.sleep).run(sample)
    # the last batch left once every event before it fitted the 500 events/s budget
    assert report.events == sample.height
    assert clk.now == pytest.approx((sample.height - fake_last_events(fake)) / 500.0, rel=0.01)


def fake_last_events(fake: FakeEventApi) -> int:
    body = orjson.loads(fake.bodies[-1])
    return sum(len(s["events"]) for v in body["visitors"] for s in v["snapshots"])


def test_bad_sink_and_missing_account(sample):
    with pytest.raises(ReplayError, match="no sink"):
        Replayer(None, account_id="1")
    with pytest.raises(ReplayError, match="not a replay sink"):
        Replayer(object(), account_id="1")
    from psanalytics.replay import MappingError

    with pytest.raises(MappingError, match="account_id is required"):
        Replayer(None, dry_run="x.jsonl").run(sample)


class FakeStore:
    """Stands in for ProfileStore: records TrackBulk calls."""

    url = "http://fake-store"

    def __init__(self) -> None:
        self.calls: list[list[dict]] = []
        self.lock = threading.Lock()

    def track_batch(self, bodies):
        from psanalytics.api.http import SendResult

        assert len(bodies) <= 100 and len(orjson.dumps(bodies)) <= 256 * 1024
        with self.lock:
            self.calls.append(list(bodies))
        return SendResult(status=202, attempts=1, retries=0, elapsed_s=0.0)


def test_tracking_sink_posts_trackbulk_batches(sample):
    from psanalytics.replay import TrackingSink

    store = FakeStore()
    report = Replayer(TrackingSink(store), truncate_ips=True, workers=1, progress=False).run(sample.head(1234))
    assert [len(c) for c in store.calls] == [100] * 12 + [34]
    sent = [b for c in store.calls for b in c]
    head = sample.head(1234).sort("EventTime", maintain_order=True)
    assert [b["deviceId"] for b in sent] == head.get_column("DeviceId").to_list()
    assert [b["eventType"] for b in sent] == head.get_column("EventType").to_list()
    ips = {b["remoteAddress"] for b in sent}
    assert all(ip.endswith(".0") or ip.endswith("::") for ip in ips)
    assert report.events == 1234 and report.batches == 13 and report.statuses == {202: 13}
    assert sent[0]["payload"] == orjson.loads(head.get_column("Payload")[0])


def test_cli_dry_run(tmp_path, sample):
    from typer.testing import CliRunner

    from psanalytics.cli import app
    from psanalytics.exports import write_events

    src = write_events(sample.head(300), tmp_path / "in.ndjson")
    out = tmp_path / "bodies.jsonl"
    res = CliRunner().invoke(app, ["replay", str(src), "--dry-run", str(out), "--account-id", "77",
                                   "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    rep = orjson.loads(res.stdout)
    assert (rep["events"], rep["dry_run"]) == (300, True)
    assert from_visitor_log(out).get_column("account_id").unique().to_list() == ["77"]
    res = CliRunner().invoke(app, ["replay", str(src), "--speed", "2", "--rate", "5", "--account-id", "1"])
    assert res.exit_code == 2 and "give --speed or --rate, not both" in res.output
    res = CliRunner().invoke(app, ["replay", str(src), "--dry-run", str(out), "--no-progress"])
    assert res.exit_code == 1 and "account_id is required" in res.output


def test_local_validation_keeps_bad_visitors_aside(sample, tmp_path):
    bad_dev = sample.get_column("DeviceId")[0]
    n_bad = sample.filter(pl.col("DeviceId") == bad_dev).height
    broken = sample.with_columns(
        pl.when(pl.col("DeviceId") == bad_dev)
        .then(pl.lit(0, pl.Int64).cast(pl.Datetime("ns", "UTC")) + pl.duration(seconds=5))
        .otherwise(pl.col("EventTime")).alias("EventTime")
    )
    fake = FakeEventApi()
    report = Replayer(sink_for(fake, strict=True), account_id="42", progress=False,
                      rejected=tmp_path / "rej.jsonl").run(broken)
    assert (report.invalid, report.invalid_events, report.rejected) == (1, n_bad, 0)
    assert len(fake.kept) == sample.height - n_bad and not report.ok
    (line,) = (tmp_path / "rej.jsonl").read_bytes().splitlines()
    rec = orjson.loads(line)
    assert rec["visitor_id"] == bad_dev and rec["reason"].startswith("local validation: event timestamps")
    assert rec["events"] == n_bad and len(rec["offsets"]) == n_bad


def test_sample_by_visitor_hash_and_time_shift(sample):
    from datetime import timedelta

    a, b = FakeEventApi(), FakeEventApi()
    ra = Replayer(sink_for(a), account_id="1", sample=0.3, progress=False).run(sample)
    rb = Replayer(sink_for(b), account_id="1", sample=0.3, progress=False).run(sample)
    assert set(a.kept) == set(b.kept) and 0 < ra.visitors < sample.get_column("DeviceId").n_unique()
    assert ra.events == rb.events == len(a.kept)
    vids = {orjson.loads(x)["visitors"][i]["visitor_id"] for x in a.bodies
            for i in range(len(orjson.loads(x)["visitors"]))}
    assert ra.events == sample.filter(pl.col("DeviceId").is_in(list(vids))).height
    c = FakeEventApi()
    Replayer(sink_for(c), account_id="1", time_shift=timedelta(days=1), progress=False).run(sample.head(10))
    d = FakeEventApi()
    Replayer(sink_for(d), account_id="1", progress=False).run(sample.head(10))
    assert sorted(k[2] for k in c.kept) == sorted(k[2] + 86_400_000 for k in d.kept)
    with pytest.raises(ReplayError, match="sample must be a fraction"):
        Replayer(None, dry_run="x", sample=1.5)


def test_dry_run_does_not_sleep_and_gives_an_eta(sample, tmp_path):
    slept = []
    out = tmp_path / "b.jsonl"
    rep = Replayer(None, account_id="1", dry_run=out, rate=1000.0, max_visitors=20, progress=False,
                   sleep=slept.append).run(sample)
    assert slept == []
    summary = orjson.loads((tmp_path / "b.jsonl.summary.json").read_bytes())
    assert summary["eta_s"] == pytest.approx(sample.height / 1000.0, rel=0.01)
    assert rep.events == sample.height


def test_resume_after_a_split_rejection_skips_resolved_halves(sample, tmp_path):
    bad_dev = sample.get_column("DeviceId")[0]
    broken = sample.with_columns(
        pl.when(pl.col("DeviceId") == bad_dev)
        .then(pl.lit(0, pl.Int64).cast(pl.Datetime("ns", "UTC")) + pl.duration(seconds=5))
        .otherwise(pl.col("EventTime")).alias("EventTime")
    )
    ck = tmp_path / "s.ckpt"
    fake = FakeEventApi()
    first = Replayer(sink_for(fake, strict=True), account_id="42", max_visitors=8, validate=False,
                     checkpoint=ck, progress=False).run(broken)
    assert first.rejected == 1
    posted = len(fake.bodies)
    again = Replayer(sink_for(fake, strict=True), account_id="42", max_visitors=8, validate=False,
                     checkpoint=ck, progress=False).run(broken)
    # only the unresolved parent batch is posted again (and answered 400); its halves are skipped
    assert len(fake.bodies) == posted and again.events == 0 and again.rejected == 0
    assert again.skipped_events == sample.height


def test_speed_pacing_through_the_replayer_keeps_spacing(sample):
    class Clock:
        now = 50.0

        def __call__(self):
            return self.now

        def sleep(self, s):
            self.now += s

    clk = Clock()
    sends: list[tuple[float, int]] = []

    class Recorder:
        kind = "event-api"

        def send(self, batch):
            from psanalytics.api.http import SendResult

            return SendResult(status=204, attempts=1, retries=0, elapsed_s=0.0005)

        def close(self):
            pass

    def on_batch(batch, outcome):
        sends.append((batch.released_at, batch.first_ms))
        clk.now += 0.0005  # time passes while requests are made

    speed = 500.0
    report = Replayer(Recorder(), account_id="1", speed=speed, max_idle=10_000.0, workers=1,
                      sessions="SessionId", progress=False, clock=clk, sleep=clk.sleep,
                      on_batch=on_batch).run(sample)
    assert report.events == sample.height and len(sends) > 50
    sends.sort()
    t0, m0 = sends[0]
    for t, m in sends[1:]:
        want = (m - m0) / 1000.0 / speed
        assert t - t0 == pytest.approx(want, rel=0.01, abs=0.002)
    # the whole replay took the original span / speed
    assert sends[-1][0] - t0 == pytest.approx((sends[-1][1] - m0) / 1000 / speed, rel=0.01)


def test_resend_a_dry_run_file_and_a_failed_file(sample, tmp_path):
    out = tmp_path / "bodies.jsonl.gz"
    Replayer(None, account_id="42", max_visitors=30, dry_run=out, progress=False).run(sample)
    fake = FakeEventApi(error_rate=0.1, seed=9)
    rep = Replayer(sink_for(fake), account_id="42", progress=False).resend(out)
    assert rep.events == sample.height and len(fake.kept) == sample.height
    assert rep.batches == len(fake.bodies)
    # a failed run's file is re-sendable later
    down = FakeEventApi(error_rate=1.0)
    sink = EventApiSink(api=EventApi(transport=httpx.MockTransport(down), policy=RetryPolicy.fast(2)))
    failed = Replayer(sink, account_id="42", max_visitors=30, failed=tmp_path / "failed.jsonl",
                      progress=False).run(sample.head(300))
    assert failed.failed_events == 300
    up = FakeEventApi()
    again = Replayer(sink_for(up), progress=False).resend(tmp_path / "failed.jsonl")
    assert again.events == 300 and len(up.kept) == 300
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"nope": 1}\n')
    from psanalytics.errors import InputError

    with pytest.raises(InputError, match="bad.jsonl:1: not an Event API body"):
        Replayer(sink_for(up), progress=False).resend(bad)


def test_retries_option_applies_to_a_given_sink_and_progress_bar_runs(sample, capsys):
    fake = FakeEventApi(error_rate=1.0)
    sink = EventApiSink(api=EventApi(transport=httpx.MockTransport(fake), policy=RetryPolicy.fast(8)))
    report = Replayer(sink, account_id="1", retries=RetryPolicy.fast(3), progress=True).run(sample.head(20))
    assert fake.requests == 3 and report.failed == 1
    assert "replay" in capsys.readouterr().err  # tqdm writes to stderr
