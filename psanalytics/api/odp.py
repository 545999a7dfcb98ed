"""Client for the Optimizely Data Platform (ODP) REST API: events and customer profiles.

>>> from psanalytics.emulator import serve                        # doctest: +SKIP
>>> with serve() as srv, OdpApi(srv.url, api_key=srv.emulator.odp_api_key) as odp:  # doctest: +SKIP
...     odp.send_events([{"type": "pageview", "identifiers": {"vuid": "d1"}, "data": {}}])

``POST {url}/v3/events`` (one object or an array of at most 500) and ``POST
{url}/v3/profiles`` (at most 500 customers, and at most :attr:`OdpApi.profiles_per_s`
requests per second: 10, the documented limit), header ``x-api-key``. Retries
429/5xx/dropped connections with the shared policy (jittered backoff, ``Retry-After``;
re-sending events is safe: ODP recognises a repeated ``idempotence_id``). A 4xx is final
and raises :class:`OdpRejected` with the server's reason (the invalid objects and why,
when ODP lists them). The key is never printed: not in a repr, a log line or an error.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
import orjson

from psanalytics.api.http import (
    ApiError,
    RequestStats,
    RetryPolicy,
    Secret,
    SendResult,
    build_client,
    send_with_retries,
)
from psanalytics.errors import ArgumentError

__all__ = ["MAX_OBJECTS", "OdpApi", "OdpRejected", "PROFILES_PER_S", "api_key_from_env"]

#: Objects per request (events, profiles) the ODP API takes.
MAX_OBJECTS = 500
#: The documented rate limit of the profiles API (requests per second).
PROFILES_PER_S = 10.0
#: Environment variable the CLI reads the key from.
ENV_KEY = "PSANALYTICS_ODP_API_KEY"


def api_key_from_env() -> Secret | None:
    """The ODP key from ``PSANALYTICS_ODP_API_KEY`` (None when unset or empty)."""
    v = os.environ.get(ENV_KEY, "").strip()
    return Secret(v) if v else None


class OdpRejected(ApiError):
    """ODP answered 4xx for a request: final, not retried. ``invalids`` holds the
    server's ``[{"event"|"profile": index, "message": ...}]`` when it sent them."""

    invalids: list[dict[str, Any]]


def _reason(exc: ApiError) -> tuple[str, list[dict[str, Any]]]:
    try:
        data = orjson.loads(exc.body or b"")
    except orjson.JSONDecodeError:
        return exc.server_message, []
    detail = data.get("detail") if isinstance(data, dict) else None
    if isinstance(detail, dict) and isinstance(detail.get("invalids"), list):
        inv = [i for i in detail["invalids"] if isinstance(i, dict)]
        parts = []
        for i in inv[:5]:
            idx = i.get("event", i.get("profile"))
            parts.append(f"[{idx}] {i.get('message')}")
        more = f" (+{len(inv) - 5} more)" if len(inv) > 5 else ""
        return "invalid objects: " + "; ".join(parts) + more, inv
    if isinstance(detail, str):
        return detail, []
    return exc.server_message, []


class OdpApi:
    """Send events and customer updates to ODP (or the emulator's ODP routes).

    ``url``: the API host (``https://api.zaius.com``, or the emulator's ``serve().url``);
    with ``transport`` and no url, requests go to the in-process emulator. ``api_key``:
    the ODP key (a str or :class:`~psanalytics.api.http.Secret`; default from
    ``PSANALYTICS_ODP_API_KEY``). ``profiles_per_s``: the profiles rate cap (the clock and
    sleep are injectable). Thread-safe: many workers may share one instance.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | Secret | None = None,
        transport: httpx.BaseTransport | None = None,
        policy: RetryPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
        profiles_per_s: float | None = PROFILES_PER_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if url is None:
            if transport is None:
                raise ArgumentError("OdpApi needs a url: the ODP host (https://api.zaius.com) or the "
                                 "emulator's (serve().url)")
            url = "http://psanalytics-emulator"
        key = api_key if api_key is not None else api_key_from_env()
        if not key:
            raise ArgumentError(f"OdpApi needs an API key: api_key=... or the {ENV_KEY} environment variable")
        self._key = key if isinstance(key, Secret) else Secret(str(key))
        u = httpx.URL(url)
        self.url = str(u.copy_with(path=u.path.rstrip("/").removesuffix("/v3/events") or "/")).rstrip("/")
        self.policy = policy or RetryPolicy()
        self.stats = RequestStats()
        self.profiles_per_s = profiles_per_s
        self._clock, self._sleep = clock, sleep
        self._next_profile = 0.0
        self._rate_lock = threading.Lock()
        self._client = build_client("", api_key=self._key, transport=transport, timeout=timeout,
                                    headers={"Content-Type": "application/json"}, auth="x-api-key")

    def __repr__(self) -> str:
        return f"OdpApi(url={self.url!r}, api_key=***)"

    def _post(self, path: str, body: bytes | Sequence[Any] | Mapping[str, Any]) -> SendResult:
        data = bytes(body) if isinstance(body, (bytes, bytearray, memoryview)) else orjson.dumps(body)
        url = self.url + path
        t0 = time.perf_counter()
        try:
            resp = send_with_retries(self._client, "POST", url, content=data, policy=self.policy,
                                     stats=self.stats)
        except ApiError as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status not in (408, 429):
                reason, invalids = _reason(exc)
                rej = OdpRejected(f"POST {exc.url} failed: HTTP {exc.status}: {reason}", status=exc.status,
                                  method="POST", url=exc.url, server_message=reason, attempts=exc.attempts)
                rej.body = exc.body
                rej.invalids = invalids
                raise rej from None
            raise
        attempts = int(resp.extensions.get("psanalytics_attempts", 1))
        return SendResult(status=resp.status_code, attempts=attempts, retries=attempts - 1,
                          elapsed_s=time.perf_counter() - t0)

    def send_events(self, body: bytes | Sequence[Any] | Mapping[str, Any]) -> SendResult:
        """POST one event or a JSON array of events (encoded bytes or Python objects) to
        ``/v3/events``. Raises :class:`OdpRejected` on 4xx, :class:`ApiError` when retries
        run out."""
        return self._post("/v3/events", body)

    def send_profiles(self, body: bytes | Sequence[Any] | Mapping[str, Any]) -> SendResult:
        """POST customer updates (``{"attributes": {...}}`` or an array) to ``/v3/profiles``,
        at most ``profiles_per_s`` requests per second across threads."""
        if self.profiles_per_s:
            with self._rate_lock:
                now = self._clock()
                slot = max(now, self._next_profile)
                self._next_profile = slot + 1.0 / self.profiles_per_s
            if slot > now:
                self._sleep(slot - now)
        return self._post("/v3/profiles", body)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OdpApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
