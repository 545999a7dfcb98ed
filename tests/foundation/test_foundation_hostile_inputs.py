"""Hostile input files (issue 19, items 5 and 8-9): every one is a clear InputError naming
file:line, or a correct read; nothing wraps around or vanishes silently."""

from __future__ import annotations

import datetime as dt
import gzip

import orjson
import polars as pl
import pytest
import zstandard

import psanalytics as ps
from psanalytics import exports, samples, schema
from psanalytics.errors import InputError, SchemaError

GOOD = {"TrackId": "t1", "DeviceId": "d1", "EventType": "order", "Value": "v",
        "EventTime": "2024-03-01T00:00:00Z"}
RANGE = "outside what a nanosecond time holds (1677-09-21 .. 2262-04-11)"


def ev(t: str, **kw) -> bytes:
    return orjson.dumps({**GOOD, "EventTime": t, **kw}) + b"\n"


@pytest.mark.parametrize("t", ["0001-01-01T00:00:00Z", "1600-01-01T00:00:00Z", "1677-09-21T00:12:43Z",
                               "2262-04-11T23:47:17Z", "9999-12-31T23:59:59.9999999Z", "0001-01-01"])
def test_ndjson_event_time_out_of_range_names_file_and_line(tmp_path, t):
    p = tmp_path / "t.ndjson"
    p.write_bytes(ev("2024-03-01T00:00:00Z") * 2 + ev(t) + ev("2024-03-02T00:00:00Z"))
    with pytest.raises(InputError) as info:
        ps.read_events(p)
    assert str(info.value) == f"{p}:3: EventTime is {RANGE}: {t!r}"
    with pytest.warns(exports.SkippedInputWarning):
        got = ps.read_events(p, on_error="skip")
    assert got.get_column("EventTime").dt.to_string("%Y-%m-%d").to_list() == ["2024-03-01"] * 2 + ["2024-03-02"]


def test_the_edges_of_the_range_are_read_exactly(tmp_path):
    p = tmp_path / "edge.ndjson"
    p.write_bytes(ev("1677-09-21T00:12:43.1452242Z") + ev("2262-04-11T23:47:16.8547758Z"))
    got = ps.read_events(p).get_column("EventTime").dt.epoch("ns").to_list()
    assert got == [-9223372036854775800, 9223372036854775800]


def test_json_csv_and_normalize_range_check(tmp_path):
    j = tmp_path / "a.json"
    j.write_bytes(orjson.dumps([GOOD, {**GOOD, "EventTime": "1500-05-05T00:00:00Z"}]))
    with pytest.raises(InputError) as info:
        ps.read_events(j)
    assert str(info.value) == f"{j}: item 1: EventTime is {RANGE}: '1500-05-05T00:00:00Z'"
    c = tmp_path / "a.csv"
    c.write_bytes(b"TrackId,EventTime\nt1,2024-03-01T00:00:00Z\nt2,3000-01-01T00:00:00Z\n")
    with pytest.raises(InputError) as info:
        ps.read_events(c)
    assert str(info.value) == f"{c}:3: EventTime is {RANGE}: '3000-01-01T00:00:00Z'"
    with pytest.raises(SchemaError, match="EventTime at row 0 is outside"):
        schema.normalize([{**GOOD, "EventTime": "0001-01-01T00:00:00Z"}])
    with pytest.raises(SchemaError, match="EventTime at row 1 is outside"):
        schema.normalize(pl.DataFrame({"TrackId": ["a", "b"], "EventTime": [
            dt.datetime(2000, 1, 1, tzinfo=dt.UTC), dt.datetime(1500, 1, 1, tzinfo=dt.UTC)]}))
    with pytest.raises(SchemaError, match="EventTime at row 0 is outside"):
        schema.normalize(pl.DataFrame({"TrackId": ["a"], "EventTime": [10**17]}))  # epoch ms


def test_parquet_with_out_of_range_times_names_the_file(tmp_path):
    p = tmp_path / "us.parquet"
    pl.DataFrame({"TrackId": ["a", "b"], "EventTime": [dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
                                                        dt.datetime(1500, 1, 1, tzinfo=dt.UTC)]}).write_parquet(p)
    with pytest.raises(InputError) as info:
        ps.read_events(p)
    assert str(info.value).startswith(f"{p}: EventTime at row 1 is outside") and "1500-01-01" in str(info.value)


def test_truncated_zst_is_detected_in_both_modes(tmp_path):
    df = samples.generate(3000, seed=1)
    exports.write_events(df, tmp_path / "big.ndjson.zst")
    raw = (tmp_path / "big.ndjson.zst").read_bytes()
    cut = tmp_path / "cut.ndjson.zst"
    cut.write_bytes(raw[: len(raw) // 2])
    for mode in ("raise", "skip"):
        with pytest.raises(InputError, match=r"cut\.ndjson\.zst: truncated \.zst"):
            ps.read_events(cut, on_error=mode)
    small = zstandard.ZstdCompressor().compress(ev("2024-03-01T00:00:00Z") * 3)
    s = tmp_path / "small.ndjson.zst"
    s.write_bytes(small[: len(small) // 2])
    with pytest.raises(InputError, match=r"small\.ndjson\.zst: truncated \.zst"):
        ps.read_events(s)
    # two whole frames one after the other are read whole
    two = tmp_path / "two.ndjson.zst"
    z = zstandard.ZstdCompressor()
    two.write_bytes(z.compress(ev("2024-03-01T00:00:00Z")) + z.compress(ev("2024-03-02T00:00:00Z")))
    assert ps.read_events(two).height == 2
    gz = tmp_path / "small.ndjson.gz"
    g = gzip.compress(ev("2024-03-01T00:00:00Z") * 3)
    gz.write_bytes(g[: len(g) // 2])
    with pytest.raises(InputError, match="cannot decompress .gz data"):
        ps.read_events(gz)


def test_a_list_of_pages_with_one_malformed_page_raises(tmp_path):
    p = tmp_path / "pages.json"
    p.write_bytes(orjson.dumps([{"items": [GOOD]}, {"items": "nope"}]))
    with pytest.raises(InputError) as info:
        ps.read_events(p)
    assert str(info.value) == f"{p}: item 1: expected an API page {{\"items\": [...]}}, 'items' is a str"
    with pytest.warns(exports.SkippedInputWarning):
        got = ps.read_events(p, on_error="skip")
    assert got.select("TrackId", "EventTime").rows() == [("t1", dt.datetime(2024, 3, 1, tzinfo=dt.UTC))]


def test_records_and_csv_with_no_event_field_raise(tmp_path):
    c = tmp_path / "nocols.csv"
    c.write_bytes(b"a,b\n1,2\n")
    with pytest.raises(InputError) as info:
        ps.read_events(c)
    assert str(info.value) == f"{c}: none of the columns is an event field (a, b); expected TrackId, EventTime, EventType, ..."
    j = tmp_path / "odd.json"
    j.write_bytes(orjson.dumps([GOOD, {"foo": 1}]))
    with pytest.raises(InputError) as info:
        ps.read_events(j)
    assert str(info.value) == f"{j}: item 1: none of the fields is an event field (foo)"
    n = tmp_path / "odd.ndjson"
    n.write_bytes(b'{"foo": 1}\n{"bar": 2}\n')
    for mode in ("raise", "skip"):
        with pytest.raises(InputError) as info:
            ps.read_events(n, on_error=mode)
        assert str(info.value) == f"{n}: none of the fields is an event field (foo, bar); expected TrackId, EventTime, EventType, ..."


def test_a_wrong_typed_field_is_skipped_with_its_line(tmp_path):
    p = tmp_path / "wrongtype.ndjson"
    p.write_bytes(ev("2024-03-01T00:00:00Z") * 3 + orjson.dumps({**GOOD, "User": 5}) + b"\n"
                  + ev("2024-03-02T00:00:00Z"))
    with pytest.raises(InputError) as info:
        ps.read_events(p)
    assert str(info.value) == f"{p}:4: User is int, expected an object {{Email, Name}}"
    got, report = exports.read_events_with_report(p, on_error="skip")
    assert got.height == 4
    assert [(s.line, s.reason) for s in report.skipped] == [(4, "User is int, expected an object {Email, Name}")]


def test_scan_events_raises_on_out_of_range_times_naming_the_file(tmp_path):
    n = tmp_path / "far.ndjson"
    n.write_bytes(ev("2024-03-01T00:00:00Z") + ev("0001-01-01T00:00:00Z"))
    c = tmp_path / "far.csv"
    c.write_bytes(b"TrackId,EventTime\nt1,9999-12-31T00:00:00Z\n")
    q = tmp_path / "far.parquet"
    pl.DataFrame({"TrackId": ["a"], "EventTime": [dt.datetime(1500, 1, 1, tzinfo=dt.UTC)]}).write_parquet(q)
    for path, shown in ((n, "'0001-01-01T00:00:00Z'"), (c, "'9999-12-31T00:00:00Z'"), (q, "1500-01-01 00:00:00+00:00")):
        lf = ps.scan_events(path)
        with pytest.raises(SchemaError) as info:
            lf.collect()
        assert str(info.value).startswith(f"{path}: EventTime ") and RANGE in str(info.value)
        assert shown in str(info.value)
    ok = tmp_path / "ok.ndjson"
    ok.write_bytes(ev("2024-03-01T00:00:00.1234567Z") + ev("2024-03-02T00:00:00Z"))
    assert ps.scan_events(ok).filter(pl.col("EventTime") > dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC)).collect().height == 1
    assert ps.scan_events(ok).collect().get_column("EventTime").dt.nanosecond().to_list() == [123456700, 0]


def test_paths_with_glob_characters_are_read_literally(tmp_path):
    d = tmp_path / "export [2024]"
    d.mkdir()
    (d / "a.ndjson").write_bytes(ev("2024-03-01T00:00:00Z") + ev("2024-03-02T00:00:00Z"))
    (d / "b.csv").write_bytes(b"TrackId,EventTime\nt9,2024-03-03T00:00:00Z\n")
    ps.read_events(d / "a.ndjson").write_parquet(d / "c.parquet")
    assert ps.read_events(d).height == 5
    for name, n in (("a.ndjson", 2), ("b.csv", 1), ("c.parquet", 2)):
        assert ps.scan_events(d / name).collect().height == n, name
    assert ps.scan_events(d).collect().height == 5


def test_decompression_bombs_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(exports, "MIN_CAP", 1_000_000)  # keep the test small: 1 MB or 1,000x
    blank = b" " * 50_000_000
    z = tmp_path / "bomb.ndjson.zst"
    z.write_bytes(zstandard.ZstdCompressor().compress(blank))  # declares its size
    with pytest.raises(InputError) as info:
        ps.read_events(z)
    size = z.stat().st_size
    assert str(info.value) == (f"{z}: .zst data expands past {max(1_000_000, 1000 * size):,} bytes (more than "
                               f"1,000 times its {size:,} bytes): refusing to read it (a decompression bomb?)")
    s = tmp_path / "stream.ndjson.zst"
    with open(s, "wb") as fh, zstandard.ZstdCompressor().stream_writer(fh) as w:  # no declared size
        w.write(blank)
    with pytest.raises(InputError, match=r"\.zst data expands past [\d,]+ bytes \(more than 1,000 times"):
        ps.read_events(s)
    g = tmp_path / "bomb.ndjson.gz"
    g.write_bytes(gzip.compress(blank))
    with pytest.raises(InputError, match=r"\.gz data expands past [\d,]+ bytes \(more than 1,000 times"):
        ps.read_events(g)
    ok = tmp_path / "ok.ndjson.gz"
    ok.write_bytes(gzip.compress(ev("2024-03-01T00:00:00Z")) + gzip.compress(ev("2024-03-02T00:00:00Z")))
    assert ps.read_events(ok).height == 2
