"""The replayer against the emulator served as a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import threading

import orjson
import polars as pl
import pytest

from psanalytics.api.http import RetryPolicy
from psanalytics.replay import Checkpoint, EventApiSink, Replayer, encode_visitors, replay
from psanalytics.samples import generate

pytestmark = pytest.mark.http



def kept_keys(srv) -> set[tuple[str, str, int]]:
    """(entity_id, uuid, timestamp) of every event the emulator's Event API kept."""
    acc = srv.emulator.accepted_events()
    if isinstance(acc, pl.DataFrame):
        rows = acc.select("entity_id", "uuid", "timestamp").rows()
        n = acc.height
    else:
        rows = [(e["entity_id"], e["uuid"], e["timestamp"]) for e in acc]
        n = len(acc)
    keys = {(str(a), str(b), int(c)) for a, b, c in rows}
    assert len(keys) == n, "the emulator kept a duplicate"
    return keys


def expected_keys(events: pl.DataFrame) -> set[tuple[str, str, int]]:
    out = set()
    for text in encode_visitors(events).get_column("json"):
        v = orjson.loads(text)
        for s in v["snapshots"]:
            for e in s["events"]:
                out.add((e["entity_id"], e["uuid"], e["timestamp"]))
    return out


FAULTS = {"error_rate": 0.1, "error_statuses": (500, 502, 503), "rate_limit_rate": 0.1,
          "retry_after": "0", "seed": 7, "routes": ("events",)}


@pytest.fixture(scope="module")
def sample() -> pl.DataFrame:
    return generate(6000, seed=21)


@pytest.fixture
def server():
    from psanalytics.emulator import serve
    from psanalytics.schema import empty_frame

    with serve(empty_frame(), faults=FAULTS) as srv:
        yield srv


def test_every_event_arrives_exactly_once_under_faults(server, sample):
    report = replay(sample, url=server.url, account_id="12345", max_visitors=4, workers=4,
                    retries=RetryPolicy.fast(12), progress=False)
    assert report.ok and report.events == sample.height
    assert report.retries > 0
    assert kept_keys(server) == expected_keys(sample)
    assert len(expected_keys(sample)) == sample.height


def test_resend_is_deduplicated(server, sample):
    head = sample.head(500)
    for _ in range(2):
        replay(head, url=server.url, account_id="12345", retries=RetryPolicy.fast(12), progress=False)
    assert kept_keys(server) == expected_keys(head)


class Killer:
    def __init__(self, sink, n):
        self.sink, self.n, self.kind, self.sent = sink, n, sink.kind, []
        self.lock = threading.Lock()

    def send(self, batch):
        with self.lock:
            if len(self.sent) >= self.n:
                raise KeyboardInterrupt  # as a user's Ctrl-C would
        res = self.sink.send(batch)
        with self.lock:
            self.sent.append(batch.id)
        return res

    def close(self):
        self.sink.close()


def test_killed_midway_and_resumed(server, sample, tmp_path):
    ck = tmp_path / "replay.ckpt"
    first = Killer(EventApiSink(server.url, policy=RetryPolicy.fast(12)), 8)
    rep = Replayer(first, account_id="12345", max_visitors=10, workers=3, checkpoint=ck, progress=False)
    with pytest.raises(KeyboardInterrupt):
        rep.run(sample)
    assert rep.report is not None and rep.report.interrupted
    acked = set(Checkpoint(ck).done)
    assert acked == set(first.sent) and len(acked) >= 8  # in-flight sends finish and are recorded
    second = Killer(EventApiSink(server.url, policy=RetryPolicy.fast(12)), 10**9)
    report = Replayer(second, account_id="12345", max_visitors=10, workers=3, checkpoint=ck,
                      progress=False).run(sample)
    assert acked.isdisjoint(second.sent)
    assert report.skipped == len(acked) and report.events + report.skipped_events == sample.height
    assert kept_keys(server) == expected_keys(sample)


def test_strict_400_reported_with_reason_and_rest_continues(server, sample, tmp_path):
    bad_dev = sample.get_column("DeviceId")[3]
    n_bad = sample.filter(pl.col("DeviceId") == bad_dev).height
    broken = sample.with_columns(
        pl.when(pl.col("DeviceId") == bad_dev)
        .then(pl.lit(0, pl.Int64).cast(pl.Datetime("ns", "UTC")) + pl.duration(seconds=5))
        .otherwise(pl.col("EventTime")).alias("EventTime")
    )
    report = replay(broken, url=server.url, account_id="12345", strict=True, validate=False,
                    max_visitors=20, retries=RetryPolicy.fast(12), progress=False,
                    rejected=tmp_path / "rejected.jsonl")
    assert (report.rejected, report.rejected_events) == (1, n_bad)
    rej = report.rejections[0]
    assert rej.status == 400 and "timestamp" in rej.reason
    rec = orjson.loads((tmp_path / "rejected.jsonl").read_bytes().splitlines()[0])
    assert rec["body"]["visitors"][0]["visitor_id"] == bad_dev and rec["status"] == 400
    good = sample.filter(pl.col("DeviceId") != bad_dev)
    assert kept_keys(server) == expected_keys(good)
    assert report.events == good.height


def test_tracking_sink_into_the_emulated_store(sample):
    from psanalytics.emulator import serve
    from psanalytics.schema import empty_frame

    with serve(empty_frame()) as srv:
        head = sample.head(730)
        report = replay(head, url=srv.url, to="tracking", api_key=srv.api_key, progress=False)
        assert report.ok and report.batches == 8 and report.events == 730
        got = srv.emulator.events()
        assert got.height == 730
        key = ["DeviceId", "EventType", "Value", "EventTime"]
        assert got.select(key).sort(key).equals(head.select(key).sort(key))


def test_default_target_is_an_in_process_emulator(sample):
    report = replay(sample.head(200), account_id="1", progress=False)
    assert report.ok and report.events == 200 and "psanalytics-emulator" in report.sink


def test_cli_replays_to_a_served_emulator(sample, tmp_path):
    from typer.testing import CliRunner

    from psanalytics.cli import app
    from psanalytics.emulator import serve
    from psanalytics.exports import write_events
    from psanalytics.schema import empty_frame

    src = write_events(sample.head(400), tmp_path / "in.ndjson")
    with serve(empty_frame()) as srv:
        res = CliRunner().invoke(app, ["replay", str(src), "--url", srv.url, "--account-id", "9",
                                       "--rate", "100000", "--no-progress", "--json"])
        assert res.exit_code == 0, res.output
        assert orjson.loads(res.stdout)["events"] == 400
        assert kept_keys(srv) == expected_keys(sample.head(400))
        res = CliRunner().invoke(app, ["replay", str(src), "--to", "tracking", "--url", srv.url,
                                       "--api-key", srv.api_key, "--no-progress"])
        assert res.exit_code == 0, res.output
        assert srv.emulator.events().height == 400


def test_cli_resends_a_dry_run_file(sample, tmp_path):
    from typer.testing import CliRunner

    from psanalytics.cli import app
    from psanalytics.emulator import serve
    from psanalytics.exports import write_events
    from psanalytics.schema import empty_frame

    src = write_events(sample.head(250), tmp_path / "in.ndjson")
    out = tmp_path / "bodies.jsonl"
    assert CliRunner().invoke(app, ["replay", str(src), "--dry-run", str(out), "--account-id", "9",
                                    "--no-progress"]).exit_code == 0
    with serve(empty_frame()) as srv:
        res = CliRunner().invoke(app, ["replay", str(out), "--bodies", "--url", srv.url, "--no-progress"])
        assert res.exit_code == 0, res.output
        assert kept_keys(srv) == expected_keys(sample.head(250))


def test_tracking_sink_keeps_events_whose_track_id_repeats(events):
    """The service dedupes trackIds on arrival: a TrackId the source holds twice (tracked
    more than 72 hours apart, or in another scope) must not cost the later event."""
    from psanalytics._connect import connect
    from psanalytics.emulator import Emulator
    from psanalytics.replay import Replayer, TrackingSink
    from psanalytics.schema import empty_frame
    from psanalytics.wire.tracking import repeated_track_ids

    long_id = "x" * 64
    src = events.with_columns(pl.Series("TrackId", ["t-1", "t-1", "", long_id + "a", long_id + "b", "t-1"]),
                              pl.Series("Scope", ["", "default", "", "", "", "b2b"]))
    assert repeated_track_ids(src) == 2  # the second t-1 in default, the second long id
    emu = Emulator(empty_frame(), api_key="k")
    store = connect("http://emu", "k", transport=emu.transport(), progress=False)
    report = Replayer(TrackingSink(store), workers=1, progress=False).run(src)
    assert report.ok and report.events == 6
    got = emu.events().sort("EventTime")
    assert got.height == 6  # nothing skipped as a repeat
    assert got.get_column("TrackId").to_list() == ["t-1", "", "", long_id, "", "t-1"]  # cut at 64
    assert got.get_column("Scope").to_list() == ["default", "default", "default", "default",
                                                 "default", "b2b"]
