import gzip
import warnings

import orjson
import polars as pl
import pytest

from psanalytics import exports, schema
from psanalytics.errors import InputError

GOOD = {
    "TrackId": "t1",
    "DeviceId": "d1",
    "EventType": "home",
    "EventTime": "2024-03-04T10:00:00.1234567Z",
    "Value": "Visited",
    "Scope": "default",
    "CountryCode": "SE",
    "City": "Stockholm",
    "PageUri": "https://x/",
    "PageTitle": "X",
    "RemoteAddress": "81.1.2.3",
    "SessionId": "s1",
    "User": {"Email": "a@example.com", "Name": "A"},
    "Payload": {"a": 1},
}


def _line(**over) -> bytes:
    return orjson.dumps(dict(GOOD, **over))


NAMES = [
    "e.ndjson", "e.jsonl", "e.ndjson.gz", "e.ndjson.zst", "e.json", "e.json.gz",
    "e.page.json", "e.page.json.zst", "e.csv", "e.csv.gz", "e.csv.zst", "e.parquet",
]


@pytest.mark.parametrize("name", NAMES)
def test_every_format_round_trips(small, tmp_path, name):
    path = exports.write_events(small, tmp_path / name)
    back = exports.read_events(path)
    assert back.schema == schema.EVENTS_SCHEMA
    assert back.equals(small)
    lazy = exports.scan_events(path)
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(small)


def test_written_shapes(small, tmp_path):
    head = small.head(3)
    page = orjson.loads(exports.write_events(head, tmp_path / "p.page.json").read_bytes())
    assert set(page) == {"items", "total", "count"} and page["count"] == 3
    assert list(page["items"][0]) == list(schema.API_ORDER)
    arr = orjson.loads(exports.write_events(head, tmp_path / "a.json").read_bytes())
    assert isinstance(arr, list) and arr == page["items"]
    nd = exports.write_events(head, tmp_path / "a.ndjson").read_text().splitlines()
    assert [orjson.loads(x) for x in nd] == arr
    csv_head = exports.write_events(head, tmp_path / "a.csv").read_text().splitlines()[0]
    assert csv_head.split(",")[-7:] == ["EventTime", "User.Email", "User.Name", "User.Info", "Payload",
                                        "Headers", "Extras"]
    fmt = exports.write_events(head, tmp_path / "x.data", format="pages")
    assert orjson.loads(fmt.read_bytes()) == page


def test_writers_are_deterministic(small, tmp_path):
    a = exports.write_events(small, tmp_path / "a" / "x.ndjson.gz").read_bytes()
    b = exports.write_events(small, tmp_path / "b" / "x.ndjson.gz").read_bytes()
    assert a == b
    assert a[4:8] == b"\x00\x00\x00\x00"  # gzip mtime 0
    z1 = exports.write_events(small, tmp_path / "a" / "x.json.zst").read_bytes()
    z2 = exports.write_events(small, tmp_path / "b" / "x.json.zst").read_bytes()
    assert z1 == z2


def test_glob_folder_and_list(small, tmp_path):
    parts = [small.slice(0, 700), small.slice(700, 700), small.slice(1400)]
    exports.write_events(parts[0], tmp_path / "d" / "2024" / "part-0.ndjson.gz")
    exports.write_events(parts[1], tmp_path / "d" / "2024" / "part-1.parquet")
    exports.write_events(parts[2], tmp_path / "d" / "part-2.csv")
    (tmp_path / "d" / "_checkpoint.json").write_text('{"done": 3}')
    (tmp_path / "d" / "notes.txt").write_text("ignored")
    folder = exports.read_events(tmp_path / "d")
    assert folder.equals(small)  # name order: 2024/part-0, 2024/part-1, part-2
    glob = exports.read_events(str(tmp_path / "d" / "**" / "part-*.*"))
    assert glob.equals(small)
    listed = exports.read_events([tmp_path / "d" / "part-2.csv", tmp_path / "d" / "2024"])
    assert listed.equals(pl.concat([parts[2], parts[0], parts[1]]))
    assert exports.scan_events(tmp_path / "d").collect().equals(small)
    assert exports.expand_sources(tmp_path / "d") == [
        tmp_path / "d" / "2024" / "part-0.ndjson.gz",
        tmp_path / "d" / "2024" / "part-1.parquet",
        tmp_path / "d" / "part-2.csv",
    ]


def test_scan_is_lazy_and_pushes_filters_down(small, tmp_path):
    pq = exports.write_events(small, tmp_path / "e.parquet")
    nd = exports.write_events(small, tmp_path / "e.ndjson")
    for path in (pq, nd):
        lf = exports.scan_events(path).filter(pl.col("EventType") == "order").select("TrackId")
        plan = lf.explain()
        assert "SCAN" in plan.upper()
        expected = small.filter(pl.col("EventType") == "order").select("TrackId")
        assert lf.collect().equals(expected)


def test_malformed_ndjson_line_names_file_and_line(tmp_path):
    p = tmp_path / "bad.ndjson"
    p.write_bytes(_line() + b"\n\n" + _line(TrackId="t2") + b'\n{"DeviceId": "x",\n' + _line())
    with pytest.raises(InputError) as info:
        exports.read_events(p)
    assert info.value.path == str(p) and info.value.line == 4
    assert str(info.value).startswith(f"{p}:4: not valid JSON")


def test_bad_event_time_and_non_object_lines(tmp_path):
    p = tmp_path / "t.ndjson.gz"
    p.write_bytes(gzip.compress(_line() + b"\n" + _line(EventTime="soon") + b"\n"))
    with pytest.raises(InputError, match=r"t\.ndjson\.gz:2: .*'soon'"):
        exports.read_events(p)
    q = tmp_path / "n.ndjson"
    q.write_bytes(_line() + b"\n[1, 2]\n")
    with pytest.raises(InputError, match=r"n\.ndjson:2: expected a JSON object, got list"):
        exports.read_events(q)


def test_skip_mode_counts_and_reports_where(tmp_path):
    p = tmp_path / "mixed.ndjson"
    p.write_bytes(
        b"\n".join(
            [_line(TrackId="a"), b"{broken", _line(TrackId="b"), b"42",
             _line(TrackId="c", EventTime="not a time"), _line(TrackId="d")]
        )
    )
    with pytest.warns(exports.SkippedInputWarning) as rec:
        df = exports.read_events(p, on_error="skip")
    assert df.get_column("TrackId").to_list() == ["a", "b", "d"]
    report = rec[0].message.report
    assert [(s.line, s.path) for s in report.skipped] == [(2, str(p)), (4, str(p)), (5, str(p))]
    assert report.n_skipped == 3
    assert f"skipped 3 bad record(s): {p}:2 (not valid JSON" in str(rec[0].message)
    df2, report2 = exports.read_events_with_report(p, on_error="skip")
    assert df2.equals(df) and report2.rows == 3 and report2.files == [str(p)]
    assert report2.skipped[2].reason == "EventTime is not an ISO 8601 time: 'not a time'"


def test_unknown_fields_kept_in_every_format(tmp_path):
    (tmp_path / "a.ndjson").write_bytes(_line(Foo=1, Headers={"h": 1}))
    (tmp_path / "b.ndjson").write_bytes(_line(Bar="x"))
    exports.write_events(schema.normalize([GOOD]), tmp_path / "c.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: nothing is dropped
        df = exports.read_events(tmp_path)
    assert df.get_column("Extras").to_list() == ['{"Foo":1}', '{"Bar":"x"}', None]
    assert df.get_column("Headers").to_list() == ['{"h":1}', None, None]
    # Written back in each format and read again: the same frame.
    for name in ("x.ndjson", "x.json", "x.page.json", "x.csv", "x.parquet", "x.ndjson.zst"):
        back = exports.read_events(exports.write_events(df, tmp_path / "out" / name))
        assert back.equals(df), name
    lines = (tmp_path / "out" / "x.ndjson").read_text().splitlines()
    assert orjson.loads(lines[0]) == orjson.loads(_line(Foo=1, Headers={"h": 1}))
    assert exports.scan_events(tmp_path / "out" / "x.parquet").collect().equals(df)
    assert exports.scan_events(tmp_path / "out" / "x.csv").collect().equals(df)


def test_json_shapes(tmp_path):
    page = {"items": [GOOD, dict(GOOD, TrackId="t2")], "total": 5, "count": 2}
    expected = schema.normalize([GOOD, dict(GOOD, TrackId="t2")])
    (tmp_path / "page.json").write_bytes(orjson.dumps(page))
    assert exports.read_events(tmp_path / "page.json").equals(expected)
    (tmp_path / "pages.json").write_bytes(orjson.dumps([page, page]))
    assert exports.read_events(tmp_path / "pages.json").equals(pl.concat([expected, expected]))
    (tmp_path / "pages.ndjson").write_bytes(orjson.dumps(page) + b"\n" + orjson.dumps(page))
    assert exports.read_events(tmp_path / "pages.ndjson").equals(pl.concat([expected, expected]))
    (tmp_path / "nd.json").write_bytes(_line() + b"\n" + _line(TrackId="t2") + b"\n")
    assert exports.read_events(tmp_path / "nd.json").equals(expected)
    (tmp_path / "bad.json").write_bytes(b'[\n  {"DeviceId": "a"},\n  {"DeviceId": }\n]')
    with pytest.raises(InputError, match=r"bad\.json:3: not valid JSON"):
        exports.read_events(tmp_path / "bad.json")
    (tmp_path / "items.json").write_bytes(orjson.dumps([GOOD, "oops", GOOD]))
    with pytest.raises(InputError, match=r"items\.json: item 1: expected an event object, got str"):
        exports.read_events(tmp_path / "items.json")
    with pytest.warns(exports.SkippedInputWarning, match=r"items\.json\[item 1\]"):
        assert exports.read_events(tmp_path / "items.json", on_error="skip").height == 2
    (tmp_path / "other.json").write_bytes(b'{"hello": 1}')
    with pytest.raises(InputError, match="expected a JSON array of events or an API page"):
        exports.read_events(tmp_path / "other.json")


def test_camel_case_ndjson_file(tmp_path):
    body = {"deviceId": "d", "eventType": "home", "value": "v",
            "eventTime": "2024-01-01T00:00:00Z", "user": {"email": "e", "name": "n"},
            "payload": {"z": [1.5]}}
    (tmp_path / "t.ndjson").write_bytes(orjson.dumps(body))
    df = exports.read_events(tmp_path / "t.ndjson")
    assert df.row(0, named=True)["User"] == {"Email": "e", "Name": "n", "Info": None}
    assert df.item(0, "Payload") == '{"z":[1.5]}'


def test_csv_flattened_user_and_errors(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text(
        "DeviceId,EventType,EventTime,User.Email,User.Name,Payload\n"
        'd1,home,2024-01-01T00:00:00.0000001Z,a@x,Ann,"{""a"":1}"\n'
        "d2,order,2024-01-02T00:00:00Z,,,\n"
    )
    df = exports.read_events(p)
    assert df.get_column("User").to_list() == [{"Email": "a@x", "Name": "Ann", "Info": None},
                                                {"Email": "", "Name": "", "Info": None}]
    assert df.get_column("Payload").to_list() == ['{"a":1}', None]
    assert df.select(pl.col("EventTime").dt.nanosecond()).item(0, 0) == 100
    bad = tmp_path / "bad.csv"
    bad.write_text("DeviceId,EventType\nd1,home\nd2,home,extra\nd3,home\n")
    with pytest.raises(InputError, match=r"bad\.csv:3: expected 2 fields, found 3"):
        exports.read_events(bad)
    with pytest.warns(exports.SkippedInputWarning, match=r"bad\.csv:3"):
        got = exports.read_events(bad, on_error="skip")
    assert got.get_column("DeviceId").to_list() == ["d1", "d3"]
    badt = tmp_path / "badt.csv"
    badt.write_text("DeviceId,EventTime\nd1,2024-01-01\nd2,tomorrow\n")
    with pytest.raises(InputError, match=r"badt\.csv:3: .*'tomorrow'"):
        exports.read_events(badt)


def test_source_errors(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        exports.read_events(tmp_path / "missing.ndjson")
    with pytest.raises(InputError, match="no files match this pattern"):
        exports.read_events(str(tmp_path / "*.ndjson"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="folder holds no NDJSON"):
        exports.read_events(tmp_path / "empty")
    (tmp_path / "x.txt").write_bytes(_line())
    with pytest.raises(InputError, match="pass format="):
        exports.read_events(tmp_path / "x.txt")
    assert exports.read_events(tmp_path / "x.txt", format="ndjson").height == 1
    (tmp_path / "broken.ndjson.gz").write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match=r"broken\.ndjson\.gz: cannot decompress \.gz"):
        exports.read_events(tmp_path / "broken.ndjson.gz")
    with pytest.raises(ValueError, match="on_error must be"):
        exports.read_events(tmp_path / "x.txt", format="ndjson", on_error="ignore")  # type: ignore[arg-type]
    (tmp_path / "empty.ndjson").write_bytes(b"\n\n")
    assert exports.read_events(tmp_path / "empty.ndjson").equals(schema.empty_frame())


def test_public_face():
    import psanalytics

    assert psanalytics.read_events is exports.read_events
    assert psanalytics.scan_events is exports.scan_events
