"""The client's page parser never wraps an out-of-range EventTime (issue 19, item 8)."""

from __future__ import annotations

import httpx
import orjson
import pytest

import psanalytics as ps
from psanalytics.api.http import ApiError, RetryPolicy
from psanalytics.errors import SchemaError
from psanalytics.wire.api_json import parse_items, parse_page

EV = {"TrackId": "a", "DeviceId": "d", "EventType": "x", "Value": "v", "EventTime": "2024-03-01T00:00:00.0000000Z"}
MSG = "EventTime at row 1 is outside what a nanosecond time holds (1677-09-21 .. 2262-04-11): "


@pytest.mark.parametrize("t", ["0001-01-01T00:00:00.0000000Z", "9999-12-31T23:59:59.9999999Z",
                               "1677-09-21T00:12:43.1452241Z"])
def test_parse_page_and_items_raise_on_out_of_range_times(t):
    items = [EV, {**EV, "TrackId": "b", "EventTime": t}]
    for body in (orjson.dumps({"items": items, "total": 2}), orjson.dumps(items)):
        with pytest.raises(SchemaError) as info:
            parse_page(body)
        assert str(info.value) == MSG + repr(t)
    with pytest.raises(SchemaError):
        parse_items(items)


def test_the_edges_parse_exactly():
    items = [{**EV, "EventTime": "1677-09-21T00:12:43.1452242Z"}, {**EV, "EventTime": "2262-04-11T23:47:16.8547758Z"}]
    frame, total = parse_page(orjson.dumps({"items": items, "total": 2}))
    assert frame.get_column("EventTime").dt.epoch("ns").to_list() == [-9223372036854775800, 9223372036854775800]


def test_a_client_gets_one_clear_error_not_retries():
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(200, content=orjson.dumps({"items": [EV, {**EV, "EventTime": "0001-01-01T00:00:00Z"}],
                                                         "total": 2}))

    st = ps.connect("http://ps.test", "key-abc", transport=httpx.MockTransport(handler), progress=False,
                    policy=RetryPolicy.fast(6))
    with pytest.raises(ps.errors.PsaError) as info:
        st.events(start="2024-01-01", end="2024-12-31")
    assert "outside what a nanosecond time holds" in str(info.value) and "0001-01-01" in str(info.value)
    assert len(calls) <= 2  # (the pipelined first page may be asked once more), never 6 retries
    assert not isinstance(info.value, ApiError) or info.value.attempts == 1
