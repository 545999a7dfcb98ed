import orjson
from typer.testing import CliRunner

from psanalytics import __version__, exports, samples, schema
from psanalytics.cli import app

runner = CliRunner()


def test_help_and_version():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    assert "samples" in res.output and "info" in res.output
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"psanalytics {__version__}"


def test_samples_writes_generated_events(tmp_path):
    out = tmp_path / "s.ndjson.gz"
    res = runner.invoke(app, ["samples", str(out), "-n", "500", "--seed", "3", "--days", "2",
                              "--devices", "40"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"wrote 500 events to {out} (")
    expected = samples.generate(500, seed=3, days=2, n_devices=40)
    assert exports.read_events(out).equals(expected)
    pq = tmp_path / "b.parquet"
    res = runner.invoke(app, ["samples", str(pq), "-n", "100", "--burst",
                              "--start", "2025-01-01T00:00:00Z"])
    assert res.exit_code == 0, res.output
    got = exports.read_events(pq)
    assert got.height == 100 + samples.BURST_EVENTS
    assert str(got.get_column("EventTime").min()).startswith("2025-01-0")


def test_samples_campaigns_and_real_shaped(tmp_path):
    out = tmp_path / "c.ndjson"
    res = runner.invoke(app, ["samples", str(out), "-n", "800", "--seed", "3", "--campaigns", "2"])
    assert res.exit_code == 0, res.output
    assert exports.read_events(out).equals(samples.generate(800, seed=3, campaigns=2))
    shaped = tmp_path / "r.ndjson"
    res = runner.invoke(app, ["samples", str(shaped), "-n", "800", "--seed", "3", "--real-shaped"])
    assert res.exit_code == 0, res.output
    want = samples.real_shaped(samples.generate(800, seed=3), seed=3)
    lines = [orjson.loads(x) for x in shaped.read_bytes().splitlines()]
    assert lines == schema.to_api_records(want)  # written as the API returned them, Headers and all
    assert sum(e["TrackId"] == "" for e in lines) > 0.29 * len(lines)
    assert {e["EventType"] for e in lines} >= {"epiCampaignMailingtouser", "epiCampaignOpen"}


def test_samples_bad_arguments(tmp_path):
    res = runner.invoke(app, ["samples", str(tmp_path / "x.ndjson"), "--start", "soon"])
    assert res.exit_code == 2 and "--start 'soon' is not an ISO 8601 time" in res.output
    res = runner.invoke(app, ["samples", str(tmp_path / "x.unknown"), "-n", "10"])
    assert res.exit_code == 1 and "cannot tell the format" in res.output


def test_info_summary_exact(tmp_path):
    base = {"DeviceId": "d1", "EventType": "home", "Scope": "default",
            "EventTime": "2024-03-04T10:00:00.1234567Z", "User": {"Email": "a@x", "Name": ""}}
    rows = [
        base,
        dict(base, DeviceId="d2", EventType="order", EventTime="2024-03-05T11:00:00Z"),
        dict(base, EventType="order", Scope="b2b", User={"Email": "", "Name": ""}),
    ]
    p = tmp_path / "e.ndjson"
    p.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    res = runner.invoke(app, ["info", str(p)])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines() == [
        "files:    1",
        "rows:     3",
        "from:     2024-03-04T10:00:00.1234567Z",
        "to:       2024-03-05T11:00:00.0000000Z",
        "devices:  2",
        "users:    1 (distinct User.Email)",
        "event types:",
        "  order                              2",
        "  home                               1",
        "scopes:",
        "  default                            2",
        "  b2b                                1",
    ]


def test_info_errors_and_skip(tmp_path):
    res = runner.invoke(app, ["info", str(tmp_path / "nope.ndjson")])
    assert res.exit_code == 1 and "nope.ndjson: no such file or folder" in res.output
    p = tmp_path / "bad.ndjson"
    p.write_bytes(b'{"DeviceId": "a", "EventTime": "2024-01-01T00:00:00Z"}\n{oops\n')
    res = runner.invoke(app, ["info", str(p)])
    assert res.exit_code == 1 and f"{p}:2: not valid JSON" in res.output
    res = runner.invoke(app, ["info", str(p), "--skip-bad"])
    assert res.exit_code == 0
    assert "rows:     1" in res.output
    assert f"skipped:  skipped 1 bad record(s): {p}:2" in res.output


def test_info_on_committed_sample():
    res = runner.invoke(app, ["info", str(samples.default_sample_path())])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[1] == "rows:     50,000"
    assert lines[4] == "devices:  2,500"
