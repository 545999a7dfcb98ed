"""Exactly once without a key: events(), pages() and export() return the store's multiset.

Real Profile Store data has no primary key: ``TrackId`` is "" for events tracked without
one and may repeat, and two events can be identical in every field. Stores drawn by
hypothesis (empty and repeated TrackIds, identical pairs, ties on one instant, pages of a
few rows so every fetch crosses page seams) come back exactly; with the emulator
deleting and adding events between page requests, every event that existed throughout
comes back exactly once and nothing comes back more often than it was ever stored.
"""

from __future__ import annotations

from collections import Counter

import httpx
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from psanalytics import schema
from psanalytics._connect import connect
from psanalytics.api.windows import format_ns
from psanalytics.emulator import Emulator

T0 = 1_709_251_200_000_000_000  # 2024-03-01T00:00:00Z
KEY = "exactly-once-key"


def _multiset(frame: pl.DataFrame) -> Counter[str]:
    return Counter(schema.api_json_lines(frame).to_list()) if frame.height else Counter()


@st.composite
def stores(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(1, 30))
    instants = draw(st.lists(st.integers(0, 20), min_size=1, max_size=6))  # few instants: ties
    rows = []
    for i in range(n):
        rows.append({
            "TrackId": draw(st.sampled_from(["", "", "", "r", "s", f"u{i}"])),
            "DeviceId": draw(st.sampled_from(["a@b.c", "d2"])),
            "EventType": "x",
            "Value": draw(st.sampled_from(["v", "w"])),
            "EventTime": T0 + draw(st.sampled_from(instants)) * 100,
            "User": {"Email": "", "Name": ""},
        })
    twins = draw(st.lists(st.integers(0, n - 1), max_size=5))  # identical pairs
    rows += [dict(rows[i]) for i in twins]
    return schema.normalize([dict(r, EventTime=format_ns(r["EventTime"])) for r in rows])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=stores(), page_size=st.integers(1, 7))
def test_events_pages_and_export_return_the_store_exactly(frame, page_size, tmp_path_factory):
    emu = Emulator(frame, api_key=KEY)
    store = connect("http://emu", KEY, transport=emu.transport(), progress=False,
                    page_size=page_size, concurrency=2)
    want = _multiset(emu.events())
    assert _multiset(store.events()) == want
    assert _multiset(pl.concat(list(store.pages()))) == want
    report = store.export(tmp_path_factory.mktemp("x"))
    assert _multiset(report.read()) == want and report.rows == emu.events().height


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=stores(), page_size=st.integers(1, 7), data=st.data())
def test_concurrent_inserts_and_deletes_lose_and_repeat_nothing(frame, page_size, data):
    # Deletable events (unique TrackIds) among the drawn ones; changes between page requests.
    extra = data.draw(st.lists(st.integers(0, 20), max_size=6))
    frame = pl.concat([frame, schema.normalize([
        {"TrackId": f"del{i}", "DeviceId": "d", "EventType": "x", "Value": "v",
         "EventTime": format_ns(T0 + t * 100)} for i, t in enumerate(extra)])])
    emu = Emulator(frame, api_key=KEY)
    before = _multiset(emu.events())
    ever = Counter(before)
    inner = emu.transport()
    plan = data.draw(st.lists(st.tuples(st.sampled_from(["add", "delete"]), st.integers(0, 20)),
                              max_size=8))
    added = [0]

    class Changing(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            resp = inner.handle_request(request)
            resp.read()
            if request.url.params.get("$top") not in (None, "1") and plan:
                op, t = plan.pop(0)
                if op == "delete":
                    ids = [i for i in emu.events().get_column("TrackId").to_list() if i.startswith("del")]
                    if ids:
                        emu.store.delete("default", ids[t % len(ids)])
                else:
                    added[0] += 1
                    new = schema.normalize([{"TrackId": "", "DeviceId": f"n{added[0]}", "EventType": "x",
                                             "Value": "v", "EventTime": format_ns(T0 + t * 100)}])
                    ever.update(_multiset(new))
                    emu.add_events(new)
            return resp

    store = connect("http://emu", KEY, transport=Changing(), progress=False, page_size=page_size,
                    concurrency=1)
    got = _multiset(store.events(start=T0, end=T0 + 10**9))
    after = _multiset(emu.events())
    throughout = before & after
    assert not (throughout - got), "lost events that existed throughout"
    assert not (got - ever), "returned more copies than were ever stored"
