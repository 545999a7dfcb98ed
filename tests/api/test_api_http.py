"""api/http.py: retries, Retry-After, never-retry statuses, error messages, redaction."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import orjson
import pytest

from psanalytics.api.http import (
    ApiError,
    RequestStats,
    RetryAfterTooLong,
    RetryPolicy,
    Secret,
    build_client,
    parse_retry_after,
    redact,
    send_json,
    send_with_retries,
)
from psanalytics.errors import PsaError

KEY = "sk-test-0123456789abcdef"
FAST = RetryPolicy(max_attempts=5, backoff_initial=0.001, backoff_max=0.002, max_retry_after=5)


class Script:
    """A MockTransport handler answering from a list of responses/exceptions in order."""

    def __init__(self, *steps):
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def client(script: Script, **kw) -> httpx.Client:
    return build_client("http://ps.test", api_key=KEY, transport=httpx.MockTransport(script), **kw)


def err(status: int, message: str, headers=None) -> httpx.Response:
    body = {"error": {"code": "X", "message": message}}
    return httpx.Response(status, json=body, headers=headers)


def test_auth_header_is_epi_single_and_subscription_key_variant():
    s = Script(httpx.Response(200, json={}), httpx.Response(200, json={}))
    c = client(s)
    send_with_retries(c, "GET", "/api/v2.0/TrackEvents", policy=FAST)
    assert s.requests[0].headers["Authorization"] == f"epi-single {KEY}"
    c2 = build_client("http://ps.test", api_key=KEY, transport=httpx.MockTransport(s),
                      auth="subscription-key")
    send_with_retries(c2, "GET", "/x", policy=FAST)
    assert s.requests[1].headers["Ocp-Apim-Subscription-Key"] == KEY
    assert "Authorization" not in s.requests[1].headers


def test_client_has_explicit_timeouts():
    c = build_client("http://ps.test")
    assert c.timeout.connect == 10.0 and c.timeout.read == 120.0 and c.timeout.pool == 60.0


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_retries_retryable_statuses_then_succeeds(status):
    s = Script(err(status, "busy"), err(status, "busy"), httpx.Response(200, json={"ok": 1}))
    stats = RequestStats()
    r = send_with_retries(client(s), "GET", "/a", policy=FAST, stats=stats)
    assert r.status_code == 200
    assert len(s.requests) == 3
    assert (stats.requests, stats.retries) == (3, 2)
    assert r.extensions["psanalytics_attempts"] == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_never_retries_client_errors(status):
    s = Script(err(status, "nope: bad $filter at 12"), httpx.Response(200))
    with pytest.raises(ApiError) as ei:
        send_with_retries(client(s), "GET", "/api/v2.0/TrackEvents", policy=FAST,
                          params={"$top": "5"})
    assert len(s.requests) == 1
    e = ei.value
    assert isinstance(e, PsaError)
    assert e.status == status and e.attempts == 1 and e.method == "GET"
    assert e.url == "http://ps.test/api/v2.0/TrackEvents?%24top=5"
    assert e.server_message == "X: nope: bad $filter at 12"
    assert str(e) == (
        f"GET http://ps.test/api/v2.0/TrackEvents?%24top=5 failed: HTTP {status}: "
        "X: nope: bad $filter at 12"
    )


def test_never_retry_even_if_policy_lists_it():
    p = RetryPolicy(max_attempts=3, backoff_initial=0.001, retry_statuses={404, 500})
    s = Script(err(404, "gone"), httpx.Response(200))
    with pytest.raises(ApiError):
        send_with_retries(client(s), "DELETE", "/x", policy=p)
    assert len(s.requests) == 1


def test_exhausted_retries_names_attempts_and_last_message():
    s = Script(*[err(503, f"down {i}") for i in range(5)])
    with pytest.raises(ApiError) as ei:
        send_with_retries(client(s), "GET", "/b", policy=FAST)
    assert ei.value.attempts == 5 and ei.value.status == 503
    assert str(ei.value) == "GET http://ps.test/b failed after 5 attempts: HTTP 503: X: down 4"


def test_connection_errors_retry_and_fail_with_reason():
    s = Script(httpx.ConnectError("refused"), httpx.RemoteProtocolError("peer closed"),
               httpx.Response(204))
    assert send_with_retries(client(s), "POST", "/c", policy=FAST).status_code == 204
    s = Script(*[httpx.ReadTimeout("timed out")] * 5)
    with pytest.raises(ApiError) as ei:
        send_with_retries(client(s), "POST", "/c", policy=FAST)
    assert ei.value.status is None and ei.value.attempts == 5
    assert ei.value.server_message == "ReadTimeout: timed out"
    assert str(ei.value) == "POST http://ps.test/c failed after 5 attempts: no response: ReadTimeout: timed out"


def test_decode_errors_are_retried_with_send_json():
    s = Script(httpx.Response(200, content=b'{"items": [1, 2'), httpx.Response(200, content=b'{"items": [1]}'))
    resp, data = send_json(client(s), "GET", "/d", policy=FAST, decode=lambda r: orjson.loads(r.content))
    assert data == {"items": [1]} and len(s.requests) == 2
    s = Script(*[httpx.Response(200, content=b"{")] * 5)
    with pytest.raises(ApiError) as ei:
        send_json(client(s), "GET", "/d", policy=FAST, decode=lambda r: orjson.loads(r.content))
    assert ei.value.status == 200 and ei.value.attempts == 5
    assert "response body could not be decoded (JSONDecodeError" in str(ei.value)


def test_retry_after_seconds_is_honoured():
    waits: list[float] = []
    s = Script(err(429, "slow down", {"Retry-After": "2"}), httpx.Response(200))
    send_with_retries(client(s), "GET", "/e", policy=FAST, sleep=waits.append)
    assert waits == [2.0]


def test_retry_after_http_date_is_honoured():
    waits: list[float] = []
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    s = Script(err(503, "maintenance", {"Retry-After": when}), httpx.Response(200))
    send_with_retries(client(s), "GET", "/e", policy=FAST, sleep=waits.append)
    assert len(waits) == 1 and 1.0 < waits[0] <= 3.0


@pytest.mark.parametrize("hint", ["0", "-5", "soon", ""])
def test_zero_negative_or_garbage_retry_after_means_backoff(hint):
    waits: list[float] = []
    s = Script(err(429, "x", {"Retry-After": hint}), httpx.Response(200))
    send_with_retries(client(s), "GET", "/e", policy=FAST, sleep=waits.append)
    assert len(waits) == 1 and 0.0005 <= waits[0] <= 0.001  # backoff 1 ms with jitter


def test_retry_after_past_the_maximum_fails_loudly_without_waiting():
    waits: list[float] = []
    s = Script(err(429, "quota", {"Retry-After": "3600"}), httpx.Response(200))
    with pytest.raises(RetryAfterTooLong) as ei:
        send_with_retries(client(s), "DELETE", "/api/v2.0/TrackEvents/default/t1", policy=FAST,
                          sleep=waits.append)
    assert waits == [] and len(s.requests) == 1
    assert ei.value.retry_after == 3600 and ei.value.status == 429
    assert str(ei.value) == (
        "DELETE http://ps.test/api/v2.0/TrackEvents/default/t1: server answered HTTP 429 with "
        "Retry-After 3600 s, longer than max_retry_after=5 s; not waiting. Try again later or "
        "raise RetryPolicy.max_retry_after (server said: X: quota)"
    )


def test_parse_retry_after_forms():
    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after(" 1.5 ", now=now) == 1.5
    assert parse_retry_after("Mon, 01 Jan 2024 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Mon, 01 Jan 2024 11:00:00 GMT", now=now) is None  # past
    assert parse_retry_after("0", now=now) is None
    assert parse_retry_after("-1", now=now) is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("nan") is None


def test_backoff_grows_is_jittered_and_capped():
    p = RetryPolicy(backoff_initial=1, backoff_max=4)
    for retry, (lo, hi) in {1: (0.5, 1), 2: (1, 2), 3: (2, 4), 4: (2, 4), 9: (2, 4)}.items():
        vals = {p.backoff(retry) for _ in range(50)}
        assert all(lo <= v <= hi for v in vals)
        assert len(vals) > 1  # jitter


def test_key_never_in_errors_repr_or_logs(caplog):
    caplog.set_level(logging.DEBUG)
    # A server that echoes the key back, and a URL carrying it.
    s = Script(httpx.Response(400, json={"error": {"code": "BadRequest", "message": f"bad key {KEY}"}}))
    c = client(s)
    with pytest.raises(ApiError) as ei:
        send_with_retries(c, "GET", f"/x?code={KEY}", policy=FAST)
    e = ei.value
    for text in (str(e), repr(e), e.url, e.server_message, caplog.text, repr(c.headers)):
        assert KEY not in text
    assert "***" in str(e)
    sec = Secret(KEY)
    assert KEY not in repr(sec) and KEY not in str(sec) and KEY not in f"{sec}"
    assert sec.reveal() == KEY
    assert redact(f"Authorization: epi-single {KEY}") == "Authorization: epi-single ***"


def test_error_body_formats():
    cases = [
        (httpx.Response(400, json={"errors": [{"path": "visitors[0].x", "message": "bad"}]}), "visitors[0].x: bad"),
        (httpx.Response(400, json={"message": "plain"}), "plain"),
        (httpx.Response(400, text="oops not json"), "oops not json"),
        (httpx.Response(400), "Bad Request"),
    ]
    for resp, expected in cases:
        with pytest.raises(ApiError) as ei:
            send_with_retries(client(Script(resp)), "POST", "/f", policy=FAST)
        assert ei.value.server_message == expected
