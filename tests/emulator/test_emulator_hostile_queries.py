"""Queries that used to crash (issue 19, item 9): datetimes outside what a nanosecond time
holds, long and/or chains, a query that makes Polars panic. Each is a clear error locally
and a 400 with the API's error body from the emulator (never a 500 the client retries)."""

from __future__ import annotations

import httpx
import polars as pl
import pytest

import psanalytics as ps
from psanalytics.api.http import ApiError, RetryPolicy
from psanalytics.emulator import Emulator
from psanalytics.query.kql import KqlRuntimeError, kql
from psanalytics.query.odata import ODataError, filter_frame

RANGE = "is outside the times EventTime can hold (1677-09-21 .. 2262-04-11); for an open end leave the condition out"
PANIC = "Events | summarize count_distinct(1) by (1 in (0))"


@pytest.mark.parametrize(("text", "value", "pos"), [
    ("EventTime lt 9999-12-31", "9999-12-31", 14),
    ("EventTime ge 1600-01-01", "1600-01-01", 14),
    ("EventTime ge 0001-01-01", "0001-01-01", 14),
    ("EventType eq order or EventTime lt 2300-01-01T00:00:00Z", "2300-01-01T00:00:00Z", 36),
])
def test_filter_datetimes_out_of_range_are_clear_local_errors(small, text, value, pos):
    with pytest.raises(ODataError) as info:
        filter_frame(small, text)
    assert info.value.message == f"invalid $filter at position {pos}: {value} {RANGE}"
    assert info.value.position == pos


def test_the_emulator_answers_400_and_the_client_does_not_retry(small):
    emu = Emulator(small, api_key="k")
    seen = []

    class Counting(httpx.BaseTransport):
        def __init__(self) -> None:
            self.inner = emu.transport()

        def handle_request(self, request):
            seen.append(request.url.params.get("$filter"))
            return self.inner.handle_request(request)

    r = httpx.Client(base_url=emu.url, transport=emu.transport()).get(
        "/api/v2.0/TrackEvents", params={"$filter": "EventType eq order or EventTime lt 1600-01-01"},
        headers={"Authorization": "epi-single k"})
    assert r.status_code == 400
    assert r.json()["error"] == {"code": "BadRequest", "message": r.json()["error"]["message"]}
    assert f"1600-01-01 {RANGE}" in r.json()["error"]["message"]
    st = ps.connect("http://emu", "k", transport=Counting(), progress=False, policy=RetryPolicy.fast())
    with pytest.raises(ApiError) as info:
        st.count("EventType eq order or EventTime lt 1600-01-01")
    assert (info.value.status, info.value.attempts) == (400, 1)
    assert f"1600-01-01 {RANGE}" in info.value.server_message
    assert len(seen) == 1  # answered 400 once, not a 500 retried
    with pytest.raises(ApiError) as info:
        st.events(filter="EventTime lt 9999-12-31")
    assert (info.value.status, info.value.attempts) == (400, 1) and len(seen) == 2
    assert f"9999-12-31 {RANGE}" in info.value.server_message


def test_long_or_and_and_chains_compile_flat(small):
    ids = small.get_column("DeviceId").unique().sort().to_list()
    ors = " or ".join([f"DeviceId eq 'nobody-{i}'" for i in range(3000)] + [f"DeviceId eq '{ids[0]}'"])
    assert filter_frame(small, ors).equals(small.filter(small["DeviceId"] == ids[0]))
    ands = " and ".join(f"Value ne 'nothing-{i}'" for i in range(3000))
    assert filter_frame(small, ands).equals(small)
    k_or = "Events | where " + " or ".join([f"DeviceId == 'nobody-{i}'" for i in range(3000)]
                                          + [f"DeviceId == '{ids[0]}'"])
    assert kql(k_or, small).get_column("TrackId").sort().to_list() == \
        small.filter(small["DeviceId"] == ids[0]).get_column("TrackId").sort().to_list()
    k_and = "Events | where " + " and ".join(f"Value != 'nothing-{i}'" for i in range(1500)) + " | count"
    assert kql(k_and, small).item() == small.height
    # the emulator compiles a chain of 1,200 (and slices by time) without a 500
    short = " or ".join([f"Value eq x{i}" for i in range(1200)] + [f"DeviceId eq '{ids[0]}'"])
    emu = Emulator(small, api_key="k")
    r = httpx.Client(base_url=emu.url, transport=emu.transport()).get(
        "/api/v2.0/TrackEvents", params={"$filter": "EventTime ge 2024-03-01 and (" + short + ")", "$top": 1000},
        headers={"Authorization": "epi-single k"})
    assert r.status_code == 200 and r.json()["total"] == small.filter(small["DeviceId"] == ids[0]).height


def test_a_filter_longer_than_the_cap_is_refused_before_lexing(small):
    assert filter_frame(small, "Value eq '" + "a" * 1_000_000 + "'").height == 0
    with pytest.raises(ODataError, match=r"the filter is 2,000,011 characters long; at most 2,000,000 are read"):
        filter_frame(small, "Value eq '" + "a" * 2_000_000 + "'")


def test_a_polars_panic_is_a_kql_runtime_error_and_a_400(small):
    with pytest.raises(KqlRuntimeError) as info:
        kql(PANIC, small)
    assert "the engine (Polars) panicked" in str(info.value)
    # the emulator's previews run in Polars' background engine (stoppable), which computes
    # this query; a panic there (simulated) is a 400 with the API's body, not a crash
    emu = Emulator(small, api_key="k")
    c = httpx.Client(base_url=emu.url, transport=emu.transport(), headers={"Authorization": "epi-single k"})
    r = c.post("/api/v2.0/TrackEvents/preview", json={"Query": PANIC})
    assert r.status_code == 200 and r.json()["items"] == [{"Column1": False, "count_distinct_": 1}]

    def panics(query, scope):
        raise pl.exceptions.PanicException("called `Option::unwrap()` on a `None` value")

    emu._run_preview = panics
    r = c.post("/api/v2.0/TrackEvents/preview", json={"Query": "Events | take 1"})
    assert r.status_code == 400
    assert r.json()["error"] == {"code": "BadRequest", "message": "the query failed while running: the engine "
                                 "(Polars) panicked: called `Option::unwrap()` on a `None` value"}
    st = ps.connect("http://emu", "k", transport=emu.transport(), progress=False)
    with pytest.raises(KqlRuntimeError, match=r"the engine \(Polars\) panicked: called `Option::unwrap\(\)`"):
        st.preview("Events | take 1", validate=False)
