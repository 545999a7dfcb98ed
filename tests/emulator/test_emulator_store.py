"""The store (sorting, slicing, appends, deletion), faults parsing, countries, encoding."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import orjson
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from psanalytics import schema
from psanalytics.emulator import Emulator, Faults, FaultsError, country_for_ip
from psanalytics.emulator import store as store_mod
from psanalytics.emulator.app import encode_generic
from psanalytics.emulator.store import EventStore
from psanalytics.query.odata import filter_frame, split_filter

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def test_unsorted_input_is_sorted_and_sorted_input_kept(small):
    shuffled = small.sample(fraction=1.0, shuffle=True, seed=4)
    st_ = EventStore(shuffled)
    exp = small.sort(["EventTime", "TrackId"])
    assert st_.events().equals(exp)
    st2 = EventStore(exp)
    assert st2._main.frame is exp  # no copy when already in order


def test_appends_in_the_middle_and_merge(small, monkeypatch):
    st_ = EventStore(small)
    extra = schema.normalize([{"TrackId": f"x{i}", "EventTime": T0 + timedelta(hours=30, minutes=i),
                               "EventType": "late"} for i in range(5)])
    st_.append(extra)
    assert st_.events().equals(pl.concat([small, extra]).sort(["EventTime", "TrackId"]))
    got = st_.query("EventType eq late and EventTime ge 2024-03-02T06:02:00Z", top=10).page
    assert got.get_column("TrackId").to_list() == ["x2", "x3", "x4"]
    monkeypatch.setattr(store_mod, "_DELTA_MAX", 6)
    assert st_.delete("default", "x0") is True and st_.pending_deletions == 1
    st_.append(extra.with_columns(pl.col("TrackId") + "b"))  # 9 visible in the side segment -> merge
    assert st_._delta.frame.height == 0 and len(st_) == 62 + 9
    assert st_.events().equals(
        pl.concat([small, extra.slice(1), extra.with_columns(pl.col("TrackId") + "b")]).sort(["EventTime", "TrackId"]))
    assert st_.pending_deletions == 0 and st_.purged_total == 1


def test_delete_hides_then_purge(small):
    st_ = EventStore(small)
    v = st_.version
    assert st_.delete("default", "t-003") and not st_.delete("default", "t-003")
    assert not st_.delete("shop", "t-003") and not st_.delete("default", "nope")
    assert st_.version > v and len(st_) == 61
    assert "t-003" not in st_.query(None, top=1000).page.get_column("TrackId").to_list()
    assert st_.query(None).total == 61
    assert st_.purge() == 1 and st_.purge() == 0 and st_._main.frame.height == 61


FILTER_TERMS = [
    "EventType eq order", "EventType ne home", "Scope eq shop", "User.Email ne ''",
    "Payload.epi.language eq sv", "Payload.total ge 20", "not (EventType eq epiPageView)",
    "(EventType eq order or Value eq v7)", "EventTime ne 2024-03-02",
    "(EventTime lt 2024-03-02 or EventTime gt 2024-03-03T05:00:00Z)",
]
TIMES = ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-02T05:00:00.0000020Z",
         "2024-03-01T10:00:00.0000010Z", "2024-03-03T18:00:00.0000058Z", "2024-02-01T00:00:00Z"]


@settings(max_examples=120, deadline=None)
@given(
    terms=st.lists(st.sampled_from(FILTER_TERMS), max_size=2),
    bounds=st.lists(st.tuples(st.sampled_from(["eq", "lt", "le", "gt", "ge"]), st.sampled_from(TIMES)),
                    max_size=2),
    flip=st.booleans(),
)
def test_sliced_queries_equal_full_filter(small, terms, bounds, flip):
    parts = [f"{t} {op} EventTime" if flip else f"EventTime {op} {t}" for op, t in
             [({"lt": "gt", "gt": "lt", "le": "ge", "ge": "le"}.get(o, o) if flip else o, t) for o, t in bounds]]
    parts += terms
    if not parts:
        return
    text = " and ".join(parts)
    st_ = EventStore(small)
    got = st_.query(text, top=1000).page
    assert got.equals(filter_frame(small.sort(["EventTime", "TrackId"]), text)), text


def test_split_filter_absorbs_only_exact_time_terms():
    (lo, lo_inc, hi, hi_inc), rest = split_filter("EventTime ge 2024-03-01 and EventTime lt 2024-03-02T00:00:00Z")
    assert (lo, lo_inc, hi, hi_inc) == (1709251200000000000, True, 1709337600000000000, False) and rest is None
    _, rest = split_filter("EventTime ge 2024-03-01 and EventType eq x")
    assert rest is not None


def test_faults_parsing_and_validation():
    f = Faults.parse("error_rate=0.1,latency=0.01-0.05,seed=3,error_statuses=500/503,routes=trackevents/preview,"
                     "retry_after=none")
    assert (f.error_rate, f.latency, f.seed, f.error_statuses, f.routes, f.retry_after) == (
        0.1, (0.01, 0.05), 3, (500, 503), ("trackevents", "preview"), None)
    assert Faults.parse({"latency": [0, 0.1]}).latency == (0.0, 0.1)
    for bad, msg in [("error_rate=2", "between 0 and 1"), ("drop_rate=0.6,error_rate=0.6", "add up to 1.200"),
                     ("routes=nope", "unknown route name"), ("bogus=1", "unknown fault key 'bogus'"),
                     ("latency=-1", "latency must be >= 0"), ("error_statuses=200", "HTTP error codes"),
                     ("seed", "expected key=value")]:
        with pytest.raises(FaultsError, match=msg):
            Faults.parse(bad)
    # decisions are reproducible and only on the chosen routes
    f1, f2 = Faults(seed=9, error_rate=0.5, drop_rate=0.2), Faults(seed=9, error_rate=0.5, drop_rate=0.2)
    assert [f1.decide("events").kind for _ in range(50)] == [f2.decide("events").kind for _ in range(50)]
    assert Faults(error_rate=1.0, routes=("preview",)).decide("trackevents").kind is None
    assert Faults(error_rate=1.0).decide(None).kind is None  # admin / unknown routes
    assert Faults(truncate_rate=1.0).decide("delete").kind is None  # never on writes


def test_country_table():
    assert [country_for_ip(ip) for ip in ["::1", "127.0.0.1", "10.1.2.3", "192.168.0.1", "81.2.3.4",
                                          "8.8.8.8", "nonsense", ""]] == [
        "Localhost", "Localhost", "", "", "SE", "US", "", ""]
    assert country_for_ip("2a00:1450::1") == country_for_ip("2a00:1450::1") != ""


def test_encode_generic_projections():
    f = pl.DataFrame({"n": [1, 2], "t": [datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC), None],
                      "Payload": ['{"a":1}', None], "s": ["x", None]})
    assert [orjson.loads(x) for x in encode_generic(f)] == [
        {"n": 1, "t": "2024-01-01T00:00:00.1234560Z", "s": "x", "Payload": {"a": 1}},
        {"n": 2, "t": None, "s": None, "Payload": None}]
    assert encode_generic(pl.DataFrame({"Payload": ['{"b":2}']})) == ['{"Payload":{"b":2}}']


def test_mirror_max_events_and_state(small):
    buf = io.StringIO()
    emu = Emulator(small, api_key="k", mirror=buf, max_events=63)
    import httpx

    with httpx.Client(base_url=emu.url, transport=emu.transport(), headers={"Authorization": "epi-single k"}) as c:
        assert c.post("/api/v1.0/Track", json={"deviceId": "d", "eventType": "t", "value": "v"}).status_code == 202
        r = c.post("/api/v1.0/Track", json={"deviceId": "d", "eventType": "t", "value": "v"})
        assert r.status_code == 429 and "at most 63 events" in r.json()["error"]["message"]
    line = orjson.loads(buf.getvalue().splitlines()[0])
    assert (line["DeviceId"], line["EventType"], line["Scope"]) == ("d", "t", "default")
    s = emu.state()
    assert s["events"] == 63 and s["tracked_total"] == 1
    assert [j["status"] for j in s["journal"]] == [202, 429]
    emu.reset()
    assert emu.state()["events"] == 62 and emu.state()["journal"] == []
    with pytest.raises(ValueError, match="exceed max_events"):
        Emulator(small, max_events=10)


def test_add_events_growing_head_and_late_arrivals(small):
    emu = Emulator(small, api_key="k")
    late = schema.normalize([{"TrackId": "late-1", "EventTime": "2024-03-01T00:30:00Z", "EventType": "late"}])
    head = schema.normalize([{"TrackId": "head-1", "EventTime": "2024-03-09T00:00:00Z", "EventType": "new"}])
    assert emu.add_events(late) == 1 and emu.add_events(head) == 1
    ids = emu.events().get_column("TrackId").to_list()
    assert ids[1] == "late-1" and ids[-1] == "head-1" and len(ids) == 64
    emu.reset()
    assert len(emu.events()) == 62


def test_sync_transport_inside_a_running_loop_and_from_threads(small):
    """Jupyter runs an event loop; the sync transport must still work there and from threads."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    emu = Emulator(small, api_key="k")

    def count(i: int) -> int:
        with httpx.Client(base_url=emu.url, transport=emu.transport(),
                          headers={"Authorization": "epi-single k"}) as c:
            return c.get("/api/v2.0/TrackEvents", params={"$filter": f"Value eq v{i}"}).json()["total"]

    async def inside_loop() -> int:
        return count(3)

    assert asyncio.run(inside_loop()) == 1
    with ThreadPoolExecutor(8) as ex:
        assert list(ex.map(count, range(40))) == [1] * 40
    assert emu.state()["requests"] == 41


def test_unexpected_handler_error_is_a_500_envelope(small, monkeypatch):
    import httpx

    emu = Emulator(small, api_key="k")

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(emu.store, "query", boom)
    with httpx.Client(base_url=emu.url, transport=emu.transport(), headers={"Authorization": "epi-single k"}) as c:
        r = c.get("/api/v2.0/TrackEvents")
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "InternalServerError",
                                  "message": "internal error in the emulator: RuntimeError: disk on fire"}}


def _source_ready(st_: EventStore) -> None:
    import time

    deadline = time.monotonic() + 30
    while st_._main.source is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert st_._main.source is not None


@pytest.mark.parametrize("flt,orderby,skip,top", [
    (None, None, 0, 1000),
    (None, None, 7, 5),
    ("EventTime ge 2024-03-02T00:00:00Z and EventTime lt 2024-03-03T00:00:00Z", None, 0, 1000),
    ("EventType eq order", None, 0, 1000),
    ("EventType ne home and EventTime ge 2024-03-01T05:00:00Z", [("Value", True)], 2, 9),
    ("EventType eq nothing", None, 0, 10),
])
def test_stored_source_pages_are_byte_identical_to_encoding(small, flt, orderby, skip, top):
    """The emulator serves pages from each event's stored JSON text once encoded: the bytes
    must be exactly what encoding the page gives, also after deletes, appends and purges."""
    st_ = EventStore(small)
    _source_ready(st_)

    def both() -> tuple[bytes, bytes]:
        fast = st_.query(flt, orderby=orderby, skip=skip, top=top, with_source=True)
        slow = st_.query(flt, orderby=orderby, skip=skip, top=top)
        assert fast.page.equals(slow.page) and fast.total == slow.total
        assert store_mod.SOURCE_COLUMN not in fast.page.columns
        body = schema.to_api_json(slow.page, envelope=True, total=slow.total)
        if fast.source is None:
            return body, body
        return schema.join_api_json(fast.source, envelope=True, total=fast.total), body

    assert st_.query(flt, orderby=orderby, skip=skip, top=top, with_source=True).source is not None
    a, b = both()
    assert a == b
    assert st_.delete("default", "t-004") and st_.delete("shop", "t-010")
    a, b = both()
    assert a == b
    st_.append(schema.normalize([{"TrackId": "z1", "EventType": "order",
                                  "EventTime": "2024-03-02T01:00:00.5Z"}]))
    a, b = both()  # the side segment has no stored text: the page is encoded
    assert a == b
    st_.purge()
    a, b = both()
    assert a == b


def test_stored_source_page_over_http_equals_encoded(small):
    emu = Emulator(small, api_key="k")
    _source_ready(emu.store)
    import httpx

    with httpx.Client(transport=emu.transport(), base_url="http://emu") as c:
        r = c.get("/api/v2.0/TrackEvents", params={"$top": "50", "$skip": "3"},
                  headers={"Authorization": "epi-single k"})
    res = emu.store.query(None, skip=3, top=50)
    assert r.content == schema.to_api_json(res.page, envelope=True, total=res.total)
