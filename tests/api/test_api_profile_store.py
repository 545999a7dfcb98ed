"""ProfileStore against a fake server (MockTransport): exact paging, splitting, export,
resume, deletes, tracking, preview, redaction."""

from __future__ import annotations

import re
import warnings

import httpx
import orjson
import polars as pl
import pytest
from api_fakes import KEY, FakeStore, make_events

from psanalytics import schema
from psanalytics._connect import connect
from psanalytics.api.export import read_checkpoint
from psanalytics.api.http import ApiError, RetryPolicy
from psanalytics.api.profile_store import PreviewTruncatedWarning, ProfileStore
from psanalytics.api.tracking import _batches
from psanalytics.api.windows import RESULT_WINDOW, WindowOverflowError, format_ns, to_ns
from psanalytics.wire.api_json import parse_items
from psanalytics.wire.limits import MAX_EVENT_BYTES
from psanalytics.wire.tracking import tracking_bodies

FAST = RetryPolicy(max_attempts=6, backoff_initial=0.001, backoff_max=0.002, max_retry_after=1)
T0 = to_ns("2024-03-01T00:00:00Z")
SEC = 1_000_000_000


def store_for(fake: FakeStore, **kw) -> ProfileStore:
    kw.setdefault("policy", FAST)
    kw.setdefault("progress", False)
    return ProfileStore("http://ps.test", KEY, transport=fake.transport(), **kw)


def dense_events(n: int = 25_000) -> pl.DataFrame:
    # n events over ~2 hours, with many exact ties (groups of 3 on the same 100 ns tick).
    return make_events([T0 + (i // 3) * 700_000_000 for i in range(n)],
                       ["order" if i % 4 == 0 else "home" for i in range(n)])


def check_queries(fake: FakeStore) -> None:
    for r in fake.gets():
        q = r.url.params
        assert int(q["$skip"]) + int(q["$top"]) <= RESULT_WINDOW
        assert q["$orderby"] in ("EventTime asc,TrackId asc", "EventTime desc,TrackId desc")


def test_parse_items_round_trip():
    df = dense_events(50)
    assert parse_items(orjson.loads(schema.to_api_json(df))).equals(df)
    assert parse_items([]).schema == schema.EVENTS_SCHEMA
    # camelCase or odd shapes go through normalize()
    f = parse_items([{"trackId": "a", "eventTime": "2024-01-01T00:00:00Z", "eventType": "x"}])
    assert f.select("TrackId", "EventType").row(0) == ("a", "x")


def test_events_past_the_window_exactly_once():
    df = dense_events()
    fake = FakeStore(df)
    got = store_for(fake, concurrency=3).events()
    assert got.equals(df)
    check_queries(fake)


def test_events_with_filter_builder_like_object_and_range():
    df = dense_events()
    fake = FakeStore(df)

    class Built:
        def render(self):
            return "EventType eq 'order'"

    s = store_for(fake, page_size=1000)
    start, end = "2024-03-01T00:30:00Z", "2024-03-01T01:10:00Z"
    got = s.events(Built(), start=start, end=end)
    exp = df.filter((pl.col("EventType") == "order")
                    & (pl.col("EventTime") >= pl.lit(to_ns(start)).cast(pl.Datetime("ns", "UTC")))
                    & (pl.col("EventTime") < pl.lit(to_ns(end)).cast(pl.Datetime("ns", "UTC"))))
    assert got.equals(exp)
    assert s.count("EventType eq order", start=start, end=end) == exp.height
    filters = [r.url.params["$filter"] for r in fake.gets()]
    assert filters[0] == ("(EventType eq 'order') and EventTime ge 2024-03-01T00:30:00.0000000Z "
                          "and EventTime lt 2024-03-01T01:10:00.0000000Z")
    # Each query is the range's filter, continued by key past the page before it.
    assert all(re.fullmatch(r"(\()?\(EventType eq '?order'?\) and EventTime ge \S+ and EventTime lt \S+"
                            r"(?(1)\) and EventTime ge \S+)", f) for f in filters)
    assert any(f.count("EventTime ge") == 2 for f in filters)
    check_queries(fake)
    with pytest.raises(TypeError, match="filter must be a \\$filter string or a psanalytics.F expression, not int"):
        s.events(3)


def test_limit_orderby_and_empty():
    df = dense_events(12_000)
    fake = FakeStore(df)
    s = store_for(fake)
    assert s.events(limit=5).equals(df.head(5))
    assert s.events(limit=11_000).equals(df.head(11_000))
    desc = s.events(orderby="EventTime desc, TrackId desc", limit=3)
    assert desc.equals(df.sort(["EventTime", "TrackId"], descending=True).head(3))
    assert s.events("EventType eq nothing").equals(schema.empty_frame())
    assert s.count("EventType eq nothing") == 0
    assert s.events(limit=0).height == 0


def test_instant_overflow_raises_clear_error():
    df = make_events([T0] * 10_000 + [T0 + SEC] * 3)
    s = store_for(FakeStore(df))
    with pytest.raises(WindowOverflowError, match=r"10,000 matching events share the single instant EventTime = 2024-03-01T00:00:00.0000000Z"):
        s.events()
    # 9,999 on one instant is still exact.
    df = make_events([T0] * 9_999 + [T0 + SEC] * 3)
    assert store_for(FakeStore(df)).events().equals(df)


def test_faults_are_retried_and_result_exact():
    df = dense_events(15_000)
    fake = FakeStore(df)

    def fault(req, n):
        if n % 5 == 0:
            return httpx.Response(503, json={"error": {"code": "Busy", "message": "try again"}})
        if n % 7 == 0:
            return httpx.Response(429, headers={"Retry-After": "0"})
        if n % 11 == 0:
            raise httpx.RemoteProtocolError("dropped")
        if n % 13 == 0 and req.method == "GET":
            return httpx.Response(200, content=b'{"items": [{"TrackId": "x", "Ev')  # truncated
        return None

    fake.fault = fault
    s = store_for(fake, concurrency=4)
    got = s.events()
    assert got.equals(df)
    assert s.stats.retries > 0


def test_window_growing_past_the_result_window_while_paging_is_paged_on_exactly():
    df = dense_events(9_000)
    # 3,000 events arrive ahead of the pages read so far (the window then holds 12,000).
    extra = make_events([T0 + SEC * 2000 + i * 100 for i in range(3_000)]).with_columns(
        pl.col("TrackId").str.replace("^t", "x"))
    fake = FakeStore(df)
    s = store_for(fake, page_size=2000)
    original_get = fake.get
    grown = {"done": False}

    def get(req):
        # After the first page (the second one continues by key), 3,000 events arrive.
        q = req.url.params
        if not grown["done"] and q["$top"] == "2000" and "EventTime ge" in q.get("$filter", ""):
            fake.frame = pl.concat([fake.frame, extra]).sort(["EventTime", "TrackId"])
            grown["done"] = True
        return original_get(req)

    fake.get = get  # type: ignore[method-assign]
    got = s.events()
    assert got.equals(fake.frame)
    assert got.height == 12_000
    check_queries(fake)


def test_out_of_order_server_is_detected():
    df = dense_events(100)
    fake = FakeStore(df)
    original = fake.get

    def shuffled(req):
        r = original(req)
        d = orjson.loads(r.content)
        d["items"] = d["items"][::-1]
        return httpx.Response(200, content=orjson.dumps(d))

    fake.get = shuffled  # type: ignore[method-assign]
    from psanalytics.api.profile_store import OrderError

    with pytest.raises(OrderError, match="rows came back out of EventTime order"):
        store_for(fake).events(start=T0, end=T0 + 10**12)


def test_pages_concatenate_to_events():
    df = dense_events(21_000)
    s = store_for(FakeStore(df))
    pages = list(s.pages())
    assert len(pages) >= 3
    assert pl.concat(pages).equals(df)


def test_plan_is_a_dry_run():
    df = dense_events(21_000)
    fake = FakeStore(df)
    plan = store_for(fake).plan()
    assert sum(w.count for w in plan) == 21_000 and all(w.count <= RESULT_WINDOW for w in plan)
    assert all(r.url.params["$top"] == "1" for r in fake.gets())


def test_export_resume_and_rerun(tmp_path):
    df = dense_events(25_000)
    fake = FakeStore(df)
    s = store_for(fake, concurrency=1)
    out = tmp_path / "exp"

    class Boom(Exception):
        pass

    def stop_after(n):
        if n == 2:
            raise Boom

    with pytest.raises(Boom):
        s.export(out, _after_window=stop_after)
    ck = read_checkpoint(out)
    assert len(ck["done"]) == 2 and not ck["complete"]
    before = len(fake.gets())
    rep = s.export(out)
    assert rep.resumed_windows == 2 and rep.duplicates == 0
    assert rep.rows == 25_000 and rep.fetched_rows == 25_000 - sum(w.rows for w in rep.windows if w.resumed)
    assert rep.read().sort(["EventTime", "TrackId"]).equals(df)
    # Resume fetched only the unfinished windows (one page each, no counts).
    assert len(fake.gets()) - before == len(rep.windows) - 2
    # Re-running a complete export overwrites; never appends.
    rep2 = s.export(out)
    assert rep2.resumed_windows == 0 and rep2.rows == 25_000
    files = sorted(out.glob("*/*.parquet"))
    assert len(files) == len(rep2.windows)
    assert pl.scan_parquet(str(out / "*/*.parquet")).collect().height == 25_000
    # A different filter replaces the export.
    rep3 = s.export(out, "EventType eq order")
    assert rep3.read().equals(df.filter(pl.col("EventType") == "order"))
    assert pl.scan_parquet(str(out / "*/*.parquet")).collect().height == df.filter(pl.col("EventType") == "order").height
    assert all(w.requests >= 1 for w in rep3.windows)


def test_delete_and_delete_many():
    df = dense_events(10)
    fake = FakeStore(df)
    calls = {"n": 0}

    def fault(req, n):
        if req.method == "DELETE":
            calls["n"] += 1
            if calls["n"] == 1:
                return httpx.Response(429, headers={"Retry-After": "0.001"})
            if calls["n"] == 2:
                return httpx.Response(500)
        return None

    fake.fault = fault
    s = store_for(fake)
    assert s.delete("default", "t00000") is True
    assert s.delete("default", "t00000") is False
    rep = s.delete_many(df.head(4))
    assert sorted(rep.deleted) == [("default", "t00001"), ("default", "t00002"), ("default", "t00003")]
    assert rep.not_found == [("default", "t00000")] and rep.failed == []
    assert s.events().height == 6
    paths = [r.url.path for r in fake.requests if r.method == "DELETE"]
    assert paths[0] == "/api/v2.0/TrackEvents/default/t00000"


def test_track_batches_by_count_and_size():
    df = dense_events(250)
    fake = FakeStore(df)
    rep = store_for(fake).track(df)
    assert (rep.events, rep.batches) == (250, 3)
    assert [len(b) for b in fake.tracked] == [100, 100, 50]
    first = fake.tracked[0][0]
    # trackId is sent: the service's dedupe key, so a re-sent batch is skipped, not doubled
    assert first == {"trackId": "t00000", "deviceId": "d0", "eventType": "order", "value": "", "eventTime": "2024-03-01T00:00:00.0000000Z",
                     "user": {"email": "u0@x.se", "name": ""}, "payload": {"i": 0, "n": {"a": [1, "x"]}}}
    big = [{"deviceId": "d", "eventType": "x", "value": "v" * 100_000}] * 5
    sizes = [len(b) for b in _batches(big)]
    assert sizes == [2, 2, 1]
    with pytest.raises(ValueError, match="event 0 is 262,187 bytes encoded, over the Tracking API's 262,144-byte limit"):
        list(_batches([{"deviceId": "d", "eventType": "x", "value": "v" * MAX_EVENT_BYTES}]))
    with pytest.raises(ValueError, match="TrackBulk takes at most 100 events, got 101"):
        store_for(fake).track_batch([{"deviceId": "d"}] * 101)
    assert tracking_bodies(df.head(1))[0]["deviceId"] == "d0"


def test_preview_truncation_and_projection():
    df = dense_events(1000)
    fake = FakeStore(df)
    fake.preview_items = orjson.loads(schema.to_api_json(df))
    s = store_for(fake)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        got = s.preview("Events | take 5000", validate=False)
    assert got.equals(df) and got.truncated is True
    assert any(issubclass(x.category, PreviewTruncatedWarning) for x in w)
    body = orjson.loads([r for r in fake.requests if r.method == "POST"][0].content)
    assert body == {"Query": "Events | take 5000", "Scope": "default"}
    fake.preview_items = [{"EventType": "home", "n": 3}, {"EventType": "order", "n": 1}]
    got = s.preview("Events | summarize n=count() by EventType", validate=False, scope="b2b")
    assert got.to_dicts() == fake.preview_items and got.truncated is False


def test_errors_name_request_and_hide_key():
    df = dense_events(10)
    fake = FakeStore(df)
    fake.fault = lambda req, n: httpx.Response(400, json={"error": {"code": "BadRequest", "message": f"bad filter; key {KEY}"}})
    s = store_for(fake)
    with pytest.raises(ApiError) as ei:
        s.events("EventType eq")
    msg = str(ei.value)
    assert msg.startswith("GET http://ps.test/api/v2.0/TrackEvents?")
    assert "HTTP 400: BadRequest: bad filter; key ***" in msg and KEY not in msg
    assert KEY not in repr(s) and repr(s) == "ProfileStore(url='http://ps.test', scope='default', api_key=***)"
    bad = ProfileStore("http://ps.test", "wrong-key-123", transport=fake.transport(), policy=FAST, progress=False)
    fake.fault = None
    with pytest.raises(ApiError) as ei:
        bad.count()
    assert ei.value.status == 401 and ei.value.attempts == 1
    assert "wrong-key-123" not in str(ei.value)


def test_connect_reads_environment(monkeypatch):
    fake = FakeStore(dense_events(5))
    monkeypatch.setenv("PSANALYTICS_URL", "http://env.test")
    monkeypatch.setenv("PSANALYTICS_API_KEY", KEY)
    s = connect(transport=fake.transport(), policy=FAST, progress=False)
    assert s.url == "http://env.test" and s.count() == 5
    monkeypatch.delenv("PSANALYTICS_URL")
    with pytest.raises(ValueError, match="an API key was given but no url"):
        connect()


def test_parse_page_fast_path_is_exact_and_tolerant():
    from psanalytics.wire.api_json import parse_page

    df = dense_events(30)
    # Awkward strings: quotes, escapes, unicode, and a Payload with escapes and odd spacing.
    df = df.with_columns(
        pl.when(pl.int_range(pl.len()) == 1).then(pl.lit('Sagt "hej" \\ åäö 🎉')).otherwise(pl.col("Value")).alias("Value"),
        pl.when(pl.int_range(pl.len()) == 2).then(pl.lit('{"a": "x\\"y",  "é": [1.50, null]}')).otherwise(pl.col("Payload")).alias("Payload"),
    )
    body = schema.to_api_json(df, envelope=True, total=1234)
    frame, total = parse_page(body)
    assert total == 1234 and frame.equals(df)
    assert frame["Payload"][2] == '{"a": "x\\"y",  "é": [1.50, null]}'  # raw text, untouched
    empty, zero = parse_page(b'{"items": [], "total": 0}')
    assert empty.equals(schema.empty_frame()) and empty.schema == schema.EVENTS_SCHEMA and zero == 0
    # A bare array is read the same way; camelCase and odd shapes take the careful path.
    arr = schema.to_api_json(df)
    f2, t2 = parse_page(arr)
    assert f2.equals(df) and t2 == 30
    camel = orjson.dumps({"items": [{"trackId": "a", "eventTime": "2024-01-01T00:00:00Z", "eventType": "x"}]})
    f3, t3 = parse_page(camel)
    assert f3.select("TrackId", "EventType").row(0) == ("a", "x") and t3 == 1
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_page(body[:-40])


def test_real_filter_builder_and_progress_bar(capsys):
    from psanalytics.query.odata import F

    df = dense_events(21_000)
    fake = FakeStore(df)
    s = store_for(fake, progress=True)
    got = s.events(F.EventType == "order")
    assert got.equals(df.filter(pl.col("EventType") == "order"))
    assert all(r.url.params["$filter"].startswith(("(EventType eq 'order')", "EventType eq 'order'")) for r in fake.gets())
    # 5,250 orders fit the result window: two pages (3,333 + 1,917, the second asked for
    # while the first is parsed), no planning, and no bar for a fetch that small.
    assert capsys.readouterr().err == ""
    reqs = fake.gets()
    assert [(r.url.params["$skip"], r.url.params["$top"]) for r in reqs] == [("0", "3333"), ("0", "3333")]
    # The second page continues after the last EventTime of the first (no $skip).
    last = df.filter(pl.col("EventType") == "order")["EventTime"][3332]
    assert reqs[1].url.params["$filter"] == f"(EventType eq 'order') and EventTime ge {format_ns(to_ns(last))}"
    s.events()
    err = capsys.readouterr().err
    assert "21.0k/21.0k" in err and "windows 3/3" in err
    store_for(fake, progress=False).events()
    assert capsys.readouterr().err == ""


def test_ties_over_several_pages_are_taken_whole_whatever_the_servers_tie_order():
    # 30 events on one instant; a server that orders ties differently on every request.
    df = make_events([T0] * 30 + [T0 + SEC] * 5)
    fake = FakeStore(df)
    original = fake.get
    calls = {"n": 0}

    def unstable(req):
        calls["n"] += 1
        if req.url.params.get("$top") == "9999":
            return original(req)
        # Shuffle the tie group deterministically per call, then slice the page.
        q = req.url.params
        skip, top = int(q["$skip"]), int(q["$top"])
        rows = fake.frame.sample(fraction=1.0, shuffle=True, seed=calls["n"]).sort("EventTime", maintain_order=True)
        page = rows.slice(skip, top)
        return httpx.Response(200, content=schema.to_api_json(page, envelope=True, total=rows.height))

    fake.get = unstable  # type: ignore[method-assign]
    s = store_for(fake, page_size=10)
    got = s.events(start=T0, end=T0 + 2 * SEC, limit=None)
    assert got.sort("TrackId").equals(df.sort("TrackId"))
    assert got.get_column("TrackId").n_unique() == 35
    # A page of one instant continues at that instant; when the instant holds more than
    # a page (counted: the "1"), it is asked for again with the largest page.
    assert [r.url.params["$top"] for r in fake.gets()] == ["10", "10", "1", "9999"]


def test_delete_many_stops_at_the_pending_deletion_limit():
    df = dense_events(20)
    fake = FakeStore(df)
    deletes = {"n": 0}

    def fault(req, n):
        if req.method == "DELETE":
            deletes["n"] += 1
            if deletes["n"] > 5:
                return httpx.Response(429, headers={"Retry-After": "86400"},
                                      json={"error": {"code": "TooManyRequests", "message": "over 1,000,000 pending"}})
        return None

    fake.fault = fault
    rep = store_for(fake, concurrency=1).delete_many(df)
    assert len(rep.deleted) == 5 and rep.not_found == [] and len(rep.failed) == 15
    assert "Retry-After 86400 s, longer than max_retry_after=1 s" in rep.failed[0][2]
    assert all(f[2].startswith("not sent: ") for f in rep.failed[1:])
    assert deletes["n"] == 6  # stopped asking after the first long Retry-After
    assert [tid for _, tid in rep.deleted] == [f"t{i:05d}" for i in range(5)]


def test_parse_page_keeps_headers_and_user_info_on_the_fast_path(monkeypatch):
    from psanalytics.wire import api_json as ps

    df = dense_events(40)
    recs = orjson.loads(schema.to_api_json(df))
    for r in recs:
        r["Headers"] = {"User-Agent": "x", "n": [1, 2]}
        r["User"]["Info"] = {"Market": "SE"}
    want = df.with_columns(
        pl.lit('{"User-Agent":"x","n":[1,2]}').alias("Headers"),
        pl.struct(pl.col("User").struct.field("Email"), pl.col("User").struct.field("Name"),
                  pl.lit('{"Market":"SE"}').alias("Info")).alias("User"),
    )

    def no_slow_path(body):
        raise AssertionError("slow path used")

    monkeypatch.setattr(ps, "_slow_page", no_slow_path)
    frame, total = ps.parse_page(orjson.dumps({"items": recs, "total": 77, "count": 40}))
    assert frame.equals(want) and total == 77
    frame, total = ps.parse_page(orjson.dumps(recs))
    assert frame.equals(want) and total == 40
    assert orjson.loads(schema.to_api_json(frame)) == recs


def test_parse_page_keeps_fields_outside_the_schema(monkeypatch):
    from psanalytics.wire import api_json as ps

    df = dense_events(5)
    recs = orjson.loads(schema.to_api_json(df))
    recs[3]["Channel"] = {"name": "web"}  # one event, late in the page
    recs[4]["PageTitle"] = 'a "quoted": title'  # a ": inside a value: still exact
    frame, total = ps.parse_page(orjson.dumps({"items": recs, "total": 5, "count": 5}))
    assert frame.get_column("Extras").to_list() == [None, None, None, '{"Channel":{"name":"web"}}', None]
    assert frame.item(4, "PageTitle") == 'a "quoted": title'
    assert orjson.loads(schema.to_api_json(frame)) == recs


def test_small_range_pages_are_pipelined_and_exact_when_rows_arrive_mid_way():
    """A range that fits the window comes in 3,333-row pages, the next asked for while the
    last is parsed (continued by key, never by offset); rows added ahead between two pages
    are read, and nothing is read twice."""
    df = dense_events(8_000)
    extra = make_events([T0 + SEC * 1500 + i * 1000 for i in range(50)]).with_columns(
        pl.col("TrackId").str.replace("^t", "x"))
    fake = FakeStore(df)
    original_get = fake.get
    grown = {"done": False}

    def get(req):
        if not grown["done"] and "EventTime ge" in req.url.params.get("$filter", ""):
            fake.frame = pl.concat([fake.frame, extra]).sort(["EventTime", "TrackId"])
            grown["done"] = True
        return original_get(req)

    fake.get = get  # type: ignore[method-assign]
    s = store_for(fake)
    got = s.events()
    assert got.equals(fake.frame) and got.height == 8_050
    check_queries(fake)
    # Untouched, the same range is three requests, one after the other.
    fake2 = FakeStore(df)
    assert store_for(fake2).events().equals(df)
    assert [(r.url.params["$skip"], r.url.params["$top"]) for r in fake2.gets()] == [("0", "3333")] * 3
    assert [r.url.params.get("$filter", "").count("EventTime ge") for r in fake2.gets()] == [0, 1, 1]


def test_body_that_ends_well_but_is_not_json_is_fetched_again():
    df = dense_events(5_000)
    fake = FakeStore(df)

    def fault(req, n):
        if n == 2:  # the second page: looks complete, is not JSON
            return httpx.Response(200, content=b'{"items":[{"TrackId":"x"],"total":5000}')
        return None

    fake.fault = fault
    s = store_for(fake)
    assert s.events().equals(df)
    assert s.stats.retries == 1


@pytest.mark.parametrize("text,arrow_reads_it", [
    ("2024-03-04T00:00:00.1234567Z", True), ("2024-03-04T01:00:00+01:00", True),
    ("2024-03-04T00:00:00", True), ("2024-03-04 00:00:00Z", True), ("2024-03-04", True),
    ("2024-03-04T00:00:00.123456789Z", True), ("2024-03-04T00:00:00.1234567891Z", False),
    ("2024-13-04T00:00:00Z", False),
])
def test_page_times_read_by_arrow_equal_the_careful_path(text, arrow_reads_it):
    """The fast path lets Arrow read EventTime; any form must come out as the careful path
    (normalize) reads it, or raise the same way."""
    from psanalytics.wire.api_json import _slow_page, parse_page

    body = (b'{"items":[{"TrackId":"a","EventType":"x","EventTime":' + orjson.dumps(text)
            + b',"Payload":{"a":1.50}}],"total":1}')
    try:
        slow = _slow_page(body)
    except Exception as exc:  # noqa: BLE001
        with pytest.raises(type(exc)):
            parse_page(body)
        return
    fast = parse_page(body)
    assert fast[0].drop("Payload").equals(slow[0].drop("Payload")) and fast[1] == slow[1] == 1
    # The fast path keeps Payload's text as sent (the careful path re-encodes it: 1.5).
    assert fast[0]["Payload"].to_list() == ['{"a":1.50}' if arrow_reads_it else '{"a":1.5}']


def test_settle_reads_only_what_is_old_enough(tmp_path):
    """``settle`` moves the end back to now - settle: a store being written to right now is
    read only where it is done (events, count, plan, pages and export alike)."""
    import time as _time
    from datetime import timedelta

    from psanalytics.api._paging import settled_end

    now = _time.time_ns()
    now -= now % 100
    minute = 60 * SEC
    # the last 30 minutes, half a minute off the whole minutes (the cutoff is taken at the
    # call: any test run shorter than 30 s sees the same split)
    times = [now - 30 * minute + i * minute + 30 * SEC for i in range(30)]
    df = make_events(times)
    fake = FakeStore(df)
    s = store_for(fake)
    old = df.filter(pl.col("EventTime") < pl.lit(now - 10 * minute).cast(pl.Datetime("ns", "UTC")))
    assert old.height == 20
    assert s.events(settle="10m").equals(old)
    assert s.events(settle=timedelta(minutes=10)).equals(old)
    assert s.count(settle=600) == 20
    assert sum(w.count for w in s.plan(settle="10m")) == 20
    assert pl.concat(list(s.pages(settle="10m"))).equals(old)
    rep = s.export(tmp_path / "out", settle="10m")
    assert rep.rows == 20 and rep.read().equals(old)
    # An earlier end is kept; a later one moves back.
    assert settled_end(5, "1m", now_ns=now) == 5
    assert settled_end(now, "1m", now_ns=now) == now - minute
    assert settled_end(None, None) is None
    with pytest.raises(ValueError, match=r"settle='soon' is not a duration: use e.g. '30m'"):
        s.events(settle="soon")
