"""``psanalytics sessionize INPUT --out OUT``."""

from __future__ import annotations

import polars as pl
from sessions_streams import ev, frame
from typer.testing import CliRunner

from psanalytics import schema
from psanalytics.cli import app

H = 3600


def write_ndjson(path, events):
    lines = schema.api_json_lines(frame(events)).to_list()
    path.write_text("\n".join(lines) + "\n")


def test_sessionize_writes_parquet_and_csv(tmp_path):
    src = tmp_path / "events.ndjson"
    write_ndjson(src, [ev("a", 0), ev("a", 60), ev("a", 2 * H), ev("b", 10)])
    out = tmp_path / "out" / "sessions.parquet"
    evs = tmp_path / "events.csv"
    res = CliRunner().invoke(app, ["sessionize", str(src), "--out", str(out), "--events-out", str(evs)])
    assert res.exit_code == 0, res.output
    assert "4 events -> 3 sessions (2 devices)" in res.output
    s = pl.read_parquet(out)
    assert s.select("device_id", "session_index", "n_events").rows() == [("a", 1, 2), ("b", 1, 1), ("a", 2, 1)]
    e = pl.read_csv(evs)
    assert e["session_id"].to_list() == ["a:1", "a:1", "a:2", "b:1"]

    csv = tmp_path / "s.csv"
    res = CliRunner().invoke(
        app, ["sessionize", str(src), "--out", str(csv), "--timeout", "1h", "--max-duration", "none", "--minimal"]
    )
    assert res.exit_code == 0, res.output
    assert pl.read_csv(csv)["n_events"].to_list() == [2, 1, 1]


def test_sessionize_clear_errors(tmp_path):
    src = tmp_path / "events.ndjson"
    write_ndjson(src, [ev("a", 0)])
    res = CliRunner().invoke(app, ["sessionize", str(src), "--out", str(tmp_path / "s.txt")])
    assert res.exit_code == 2
    assert "s.txt: write .parquet or .csv (got '.txt')" in res.output
    res = CliRunner().invoke(app, ["sessionize", str(src), "--out", str(tmp_path / "s.csv"), "--timeout", "soon"])
    assert res.exit_code == 2
    assert "timeout='soon' is not a duration" in res.output
    assert not (tmp_path / "s.csv").exists()
