"""Client for the Optimizely Event API log endpoint (``POST /v1/events``).

>>> from psanalytics.emulator import serve            # doctest: +SKIP
>>> with serve() as srv, EventApi(srv.url, strict=True) as api:   # doctest: +SKIP
...     api.send({"account_id": "123", "visitors": [...]})

The production endpoints are only used when named explicitly
(``EventApi(EventApi.US)`` or ``EventApi(EventApi.EU)``). Retries 429/5xx and dropped
connections with jittered backoff and ``Retry-After`` (re-sending is safe because the
service deduplicates on ``(entity_id, uuid, timestamp)``); a 400 is never retried and
raises :class:`EventApiRejected` with the server's reason.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from psanalytics.api.http import (
    ApiError,
    RequestStats,
    RetryPolicy,
    SendResult,
    build_client,
    send_with_retries,
)
from psanalytics.errors import ArgumentError
from psanalytics.wire.limits import EVENT_API_MAX_BODY_BYTES

__all__ = ["EventApi", "EventApiRejected", "SendResult", "MAX_BODY_BYTES"]

#: The Event API refuses bodies over 3.5 MB.
MAX_BODY_BYTES = EVENT_API_MAX_BODY_BYTES
_EVENTS_PATH = "/v1/events"


class EventApiRejected(ApiError):
    """The Event API answered 400 (malformed body, or a field constraint in strict mode).

    ``errors`` holds the server's ``[{"path", "message"}]`` list when it sent one.
    """

    errors: list[dict[str, Any]]


def _endpoint(url: str) -> str:
    u = httpx.URL(url)
    if u.path in ("", "/"):
        return str(u.copy_with(path=_EVENTS_PATH))
    return str(u)


class EventApi:
    """Send Event API bodies (dicts or encoded JSON bytes), with retries.

    ``url`` is the endpoint (``https://logx.optimizely.com/v1/events``) or a server's base
    URL (``http://127.0.0.1:8765``; ``/v1/events`` is appended). With ``transport`` (e.g.
    the in-process emulator's) and no url, requests go to ``http://psanalytics-emulator``.
    ``strict=True`` sends ``X-Optimizely-Strict: true`` so invalid fields get a 400.
    Thread-safe: many workers may share one instance.
    """

    US = "https://logx.optimizely.com/v1/events"
    EU = "https://eu.logx.optimizely.com/v1/events"

    def __init__(
        self,
        url: str | None = None,
        *,
        strict: bool = False,
        transport: httpx.BaseTransport | None = None,
        policy: RetryPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
    ) -> None:
        if url is None:
            if transport is None:
                raise ArgumentError(
                    "EventApi needs a url: the emulator's (e.g. serve().url), or the production "
                    "endpoint named explicitly: EventApi(EventApi.US) or EventApi(EventApi.EU)"
                )
            url = "http://psanalytics-emulator"
        self.url = _endpoint(url)
        self.strict = strict
        self.policy = policy or RetryPolicy()
        self.stats = RequestStats()
        headers = {"Content-Type": "application/json"}
        if strict:
            headers["X-Optimizely-Strict"] = "true"
        self._client = build_client("", transport=transport, timeout=timeout, headers=headers)

    def __repr__(self) -> str:
        return f"EventApi(url={self.url!r}, strict={self.strict})"

    def send(self, body: Mapping[str, Any] | bytes) -> SendResult:
        """POST one body. Returns a :class:`SendResult` (status 204 normally).

        Raises :class:`EventApiRejected` on 400 (not retried) or when the encoded body is
        over 3.5 MB (not sent), and :class:`ApiError` when retries are exhausted.
        """
        data = body if isinstance(body, (bytes, bytearray, memoryview)) else orjson.dumps(body)
        data = bytes(data)
        if len(data) > MAX_BODY_BYTES:
            err = EventApiRejected(
                f"POST {self.url}: body is {len(data):,} bytes, over the Event API limit of "
                f"{MAX_BODY_BYTES:,} bytes; split it into smaller batches (not sent)",
                status=None, method="POST", url=self.url,
                server_message="body too large (checked locally)", attempts=0,
            )
            err.errors = []
            raise err
        t0 = time.perf_counter()
        try:
            resp = send_with_retries(self._client, "POST", self.url, content=data,
                                     policy=self.policy, stats=self.stats)
        except ApiError as exc:
            if exc.status == 400:
                rej = EventApiRejected(str(exc), status=400, method=exc.method, url=exc.url,
                                       server_message=exc.server_message, attempts=exc.attempts)
                rej.body = exc.body
                rej.errors = _errors_of(exc)
                raise rej from None
            raise
        attempts = _attempts_of(resp)
        return SendResult(status=resp.status_code, attempts=attempts, retries=attempts - 1,
                          elapsed_s=time.perf_counter() - t0)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> EventApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _errors_of(exc: ApiError) -> list[dict[str, Any]]:
    raw = exc.body
    if not raw:
        return []
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return []
    errs = data.get("errors") if isinstance(data, dict) else None
    return [e for e in errs if isinstance(e, dict)] if isinstance(errs, list) else []


def _attempts_of(resp: httpx.Response) -> int:
    return int(resp.extensions.get("psanalytics_attempts", 1))
