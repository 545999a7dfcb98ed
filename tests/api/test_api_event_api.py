"""EventApi against MockTransport: strict header, retries, rejections, size limit, threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson
import pytest

from psanalytics.api.event_api import MAX_BODY_BYTES, EventApi, EventApiRejected
from psanalytics.api.http import ApiError, RetryPolicy

FAST = RetryPolicy(max_attempts=4, backoff_initial=0.001, backoff_max=0.002, max_retry_after=1)
BODY = {"account_id": "123", "visitors": [{"visitor_id": "v1", "snapshots": []}]}


def test_url_required_unless_transport():
    with pytest.raises(ValueError, match=r"EventApi\(EventApi.US\)"):
        EventApi()
    api = EventApi(transport=httpx.MockTransport(lambda r: httpx.Response(204)))
    assert api.url == "http://psanalytics-emulator/v1/events"
    assert EventApi("http://127.0.0.1:9999").url == "http://127.0.0.1:9999/v1/events"
    assert EventApi(EventApi.EU).url == "https://eu.logx.optimizely.com/v1/events"


def test_send_posts_json_with_strict_header():
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(204)

    with EventApi("http://ev.test", strict=True, transport=httpx.MockTransport(handler), policy=FAST) as api:
        res = api.send(BODY)
    assert (res.status, res.attempts, res.retries) == (204, 1, 0)
    req = seen[0]
    assert req.method == "POST" and str(req.url) == "http://ev.test/v1/events"
    assert req.headers["X-Optimizely-Strict"] == "true"
    assert req.headers["Content-Type"] == "application/json"
    assert "Authorization" not in req.headers
    assert orjson.loads(req.content) == BODY

    api2 = EventApi("http://ev.test", transport=httpx.MockTransport(handler))
    api2.send(b'{"account_id":"1","visitors":[]}')
    assert "X-Optimizely-Strict" not in seen[1].headers
    assert seen[1].content == b'{"account_id":"1","visitors":[]}'


def test_retries_500_and_429_then_counts():
    answers = [httpx.Response(500), httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(204)]
    api = EventApi("http://ev.test", transport=httpx.MockTransport(lambda r: answers.pop(0)), policy=FAST)
    res = api.send(BODY)
    assert (res.status, res.attempts, res.retries) == (204, 3, 2)
    assert res.elapsed_s >= 0


def test_400_is_rejected_with_reason_and_not_retried():
    calls = []
    errors = [{"path": "visitors[0].snapshots[0].events[0].timestamp", "message": "must be epoch ms"}]

    def handler(req):
        calls.append(req)
        return httpx.Response(400, json={"errors": errors})

    api = EventApi("http://ev.test", strict=True, transport=httpx.MockTransport(handler), policy=FAST)
    with pytest.raises(EventApiRejected) as ei:
        api.send(BODY)
    assert len(calls) == 1
    e = ei.value
    assert isinstance(e, ApiError) and e.status == 400 and e.errors == errors
    assert str(e) == (
        "POST http://ev.test/v1/events failed: HTTP 400: "
        "visitors[0].snapshots[0].events[0].timestamp: must be epoch ms"
    )


def test_exhausted_retries_raise_api_error_not_rejected():
    api = EventApi("http://ev.test", transport=httpx.MockTransport(lambda r: httpx.Response(503)), policy=FAST)
    with pytest.raises(ApiError) as ei:
        api.send(BODY)
    assert not isinstance(ei.value, EventApiRejected)
    assert ei.value.attempts == 4 and ei.value.status == 503


def test_oversized_body_is_refused_locally():
    calls = []
    api = EventApi("http://ev.test", transport=httpx.MockTransport(lambda r: calls.append(r) or httpx.Response(204)))
    with pytest.raises(EventApiRejected, match=r"body is 3,500,001 bytes, over the Event API limit"):
        api.send(b"x" * (MAX_BODY_BYTES + 1))
    assert calls == []


def test_thread_safe_shared_instance():
    import threading

    lock = threading.Lock()
    got: list[bytes] = []

    def handler(req):
        with lock:
            got.append(req.content)
        return httpx.Response(204)

    api = EventApi("http://ev.test", transport=httpx.MockTransport(handler), policy=FAST)
    bodies = [{"account_id": str(i), "visitors": []} for i in range(200)]
    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(api.send, bodies))
    assert all(r.status == 204 for r in results)
    assert sorted(orjson.loads(b)["account_id"] for b in got) == sorted(str(i) for i in range(200))
    assert api.stats.requests == 200
