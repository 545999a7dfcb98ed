"""The one module in psanalytics that builds httpx clients.

Everything that talks HTTP (the Profile Store client, the Event API client, the
benchmarks) gets its client here, so timeouts, connection-pool limits, the
``epi-single`` auth header, retries and secret redaction are decided in one place.

Retries (``send_with_retries``):

* retried: HTTP 429 and 5xx (``RetryPolicy.retry_statuses``), connection errors,
  timeouts, dropped connections, and responses whose body cannot be decoded (a
  truncated 200) when a ``decode`` function is given;
* never retried: 400, 401, 403, 404 and every other status not in ``retry_statuses``;
* waits: exponential backoff with jitter, or the server's ``Retry-After`` (seconds or
  an HTTP date). A hint of 0 or less means "no hint" (backoff is used); a hint longer
  than ``RetryPolicy.max_retry_after`` fails at once and loudly instead of sleeping.

Every error names the request (method and URL, never the key) and the server's message.
API keys passed to :func:`build_client` are registered for redaction: :func:`redact`
replaces them with ``***`` in every message this package produces.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import orjson

from psanalytics.api.secrets import MASK, Secret, _reveal, redact, register_secret
from psanalytics.errors import ArgumentError, PsaError

__all__ = [
    "ApiError",
    "ApiKeyError",
    "RetryAfterTooLong",
    "RetryPolicy",
    "RequestStats",
    "SendResult",
    "Secret",
    "build_client",
    "check_api_key",
    "mask_url",
    "send_with_retries",
    "send_json",
    "parse_retry_after",
    "redact",
    "register_secret",
    "server_message",
    "DEFAULT_TIMEOUT",
    "DEFAULT_LIMITS",
]

T = TypeVar("T")

#: connect 10 s, read 120 s (a 9,999-row page can be large and the server slow), write 60 s,
#: waiting for a pooled connection 60 s.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=120.0, write=60.0, pool=60.0)
#: Enough connections for the loader's concurrent windows (see ProfileStore ``concurrency``).
DEFAULT_LIMITS = httpx.Limits(max_connections=16, max_keepalive_connections=16, keepalive_expiry=30.0)

USER_AGENT = "psanalytics/0.1 (+httpx)"

# --------------------------------------------------------------------------- errors


def mask_url(url: str) -> str:
    """``url`` with a password in it shown as ``***`` (the user name is kept) and
    registered secrets redacted: for reprs and messages."""
    try:
        u = httpx.URL(str(url))
    except (httpx.InvalidURL, TypeError, ValueError):
        return redact(str(url))
    if u.password:
        register_secret(u.password)
        return redact(str(u.copy_with(username=u.username, password=MASK)))
    return redact(str(url))


def _masked_url(url: httpx.URL | str) -> str:
    u = httpx.URL(str(url))
    # Drop any userinfo; redact secrets that might sit in the query string.
    if u.userinfo:
        u = u.copy_with(username=None, password=None)
    return redact(str(u))


def server_message(response: httpx.Response, limit: int = 500) -> str:
    """The server's own explanation of an error response, as readable text.

    Understands ``{"error": {"code", "message"}}`` (Profile Store), ``{"errors":
    [{"path", "message"}]}`` (Event API strict mode) and ``{"message": ...}``; falls back to
    the start of the body text.
    """
    try:
        body = response.content
    except httpx.ResponseNotRead:  # pragma: no cover - we never stream
        return ""
    if not body:
        return response.reason_phrase or ""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:limit].decode("utf-8", "replace").strip()
        return redact(text)
    msg: str | None = None
    if isinstance(data, Mapping):
        err = data.get("error")
        if isinstance(err, Mapping):
            code = err.get("code")
            m = err.get("message")
            msg = f"{code}: {m}" if code and m else str(m or code or "")
        elif isinstance(err, str):
            msg = err
        errs = data.get("errors")
        if msg is None and isinstance(errs, list) and errs:
            parts = []
            for e in errs[:5]:
                if isinstance(e, Mapping):
                    p, m = e.get("path"), e.get("message")
                    parts.append(f"{p}: {m}" if p else str(m))
                else:
                    parts.append(str(e))
            more = f" (+{len(errs) - 5} more)" if len(errs) > 5 else ""
            msg = "; ".join(parts) + more
        if msg is None:
            for k in ("message", "Message", "detail", "title"):
                if isinstance(data.get(k), str):
                    msg = data[k]
                    break
    if msg is None:
        msg = body[:limit].decode("utf-8", "replace")
    return redact(msg[:limit])


class ApiError(PsaError):
    """An HTTP request failed (after any retries). The message names the request.

    Attributes: ``status`` (HTTP status, or None when no response came back), ``method``,
    ``url`` (with secrets redacted), ``server_message`` (what the server said, or the
    transport error), ``attempts`` (how many times the request was sent).
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        method: str = "",
        url: str = "",
        server_message: str = "",
        attempts: int = 1,
    ) -> None:
        self.status = status
        self.method = method
        self.url = redact(url)
        self.server_message = redact(server_message)
        self.attempts = attempts
        #: Raw error body (first 64 KB) when the server answered; None otherwise.
        self.body: bytes | None = None
        if message is None:
            what = f"HTTP {status}" if status is not None else "no response"
            tries = f" after {attempts} attempts" if attempts > 1 else ""
            message = f"{method} {self.url} failed{tries}: {what}"
            if self.server_message:
                message += f": {self.server_message}"
        super().__init__(redact(message))

    def __reduce__(self) -> Any:
        return (
            _rebuild_error,
            (type(self), str(self), self.status, self.method, self.url, self.server_message, self.attempts),
        )


def _rebuild_error(cls: type[ApiError], message: str, status: int | None, method: str, url: str,
                   server_message: str, attempts: int) -> ApiError:
    err = cls.__new__(cls)
    ApiError.__init__(err, message, status=status, method=method, url=url,
                      server_message=server_message, attempts=attempts)
    return err


class ApiKeyError(PsaError, ValueError):
    """The API key cannot be sent as an HTTP header (a line break read from a file, a
    control or non-ASCII character). The message says what is wrong, never the key."""


def check_api_key(key: str) -> None:
    """Refuse a key that cannot travel in an HTTP header, without echoing it."""
    name = "the API key"
    if key != key.rstrip():
        tail = key[len(key.rstrip()):]
        what = "a line break" if ("\n" in tail or "\r" in tail) else "white space"
        raise ApiKeyError(f"{name} ends with {what} (a key read from a file keeps its newline): "
                          "strip it, e.g. Path(...).read_text().strip()")
    if key != key.lstrip():
        raise ApiKeyError(f"{name} starts with white space: strip it")
    for i, ch in enumerate(key, 1):
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise ApiKeyError(f"{name} has a control character at position {i} "
                              f"({len(key)} characters in all): it cannot be sent in an HTTP header")
        if ord(ch) > 0x7E:
            raise ApiKeyError(f"{name} has a non-ASCII character at position {i} "
                              f"({len(key)} characters in all): it cannot be sent in an HTTP header")


class RetryAfterTooLong(ApiError):
    """The server asked us to wait longer than ``RetryPolicy.max_retry_after``."""

    def __init__(self, *, wait: float, limit: float, status: int | None, method: str, url: str,
                 server_message: str, attempts: int) -> None:
        self.retry_after = wait
        msg = (
            f"{method} {redact(url)}: server answered HTTP {status} with Retry-After {wait:.0f} s, "
            f"longer than max_retry_after={limit:g} s; not waiting. Try again later or raise "
            f"RetryPolicy.max_retry_after"
        )
        if server_message:
            msg += f" (server said: {redact(server_message)})"
        super().__init__(msg, status=status, method=method, url=url,
                         server_message=server_message, attempts=attempts)


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class RetryPolicy:
    """How requests are retried.

    ``max_attempts`` counts the first try. Backoff before retry *n* (1-based) is
    ``min(backoff_max, backoff_initial * 2**(n-1))`` with jitter (a uniform draw between
    half and all of it). ``max_retry_after`` is the longest ``Retry-After`` we honour;
    longer hints raise :class:`RetryAfterTooLong`. ``retry_after_min`` is added as a floor
    to an honoured hint (0 by default).
    """

    max_attempts: int = 6
    backoff_initial: float = 0.2
    backoff_max: float = 10.0
    max_retry_after: float = 120.0
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})
    retry_transport_errors: bool = True
    retry_decode_errors: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ArgumentError("RetryPolicy.max_attempts must be at least 1")
        if self.backoff_initial < 0 or self.backoff_max < 0 or self.max_retry_after < 0:
            raise ArgumentError("RetryPolicy waits must not be negative")
        object.__setattr__(self, "retry_statuses", frozenset(self.retry_statuses))

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based), jittered."""
        base = min(self.backoff_max, self.backoff_initial * (2 ** max(0, retry - 1)))
        r = (rng or random).random()
        return base * (0.5 + 0.5 * r)

    @classmethod
    def fast(cls, max_attempts: int = 8) -> RetryPolicy:
        """A policy with millisecond waits, for tests and local emulators."""
        return cls(max_attempts=max_attempts, backoff_initial=0.001, backoff_max=0.01, max_retry_after=1.0)


#: Never retried whatever ``retry_statuses`` says.
NEVER_RETRY = frozenset({400, 401, 403, 404})


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value, or None for "no hint".

    Accepts delta-seconds (``"2"``, ``"1.5"``) and an HTTP date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``). Zero, negative, past dates and unparseable
    values are "no hint".
    """
    if value is None:
        return None
    v = value.strip()
    if not v:
        return None
    try:
        secs = float(v)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(v)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        secs = (when - (now or datetime.now(UTC))).total_seconds()
    if secs != secs or secs <= 0:  # NaN or no hint
        return None
    return secs


# --------------------------------------------------------------------------- stats


@dataclass
class RequestStats:
    """Thread-safe counters: requests sent (attempts), retries, retry waits, bytes."""

    requests: int = 0
    retries: int = 0
    waited_s: float = 0.0
    bytes_in: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def _record(self, *, retried: bool = False, wait: float = 0.0, status: int | None = None,
                nbytes: int = 0) -> None:
        with self._lock:
            self.requests += 1
            if retried:
                self.retries += 1
                self.waited_s += wait
            if status is not None:
                self.statuses[status] = self.statuses.get(status, 0) + 1
            self.bytes_in += nbytes

    def note_retry(self) -> None:
        """Count a retry whose request is counted elsewhere (a body re-fetched after it
        failed to parse)."""
        with self._lock:
            self.retries += 1


@dataclass(frozen=True)
class SendResult:
    """Outcome of a successful POST: final ``status``, ``attempts`` (1 = first try worked),
    ``retries`` (= attempts - 1) and wall time ``elapsed_s`` including waits."""

    status: int
    attempts: int
    retries: int
    elapsed_s: float


# --------------------------------------------------------------------------- clients


def _auth_headers(api_key: str | Secret | None, auth: str) -> dict[str, str]:
    key = _reveal(api_key)
    if not key:
        return {}
    register_secret(key)
    check_api_key(key)
    if auth == "epi-single":
        return {"Authorization": f"epi-single {key}"}
    if auth == "subscription-key":
        return {"Ocp-Apim-Subscription-Key": key}
    if auth == "x-api-key":  # Optimizely Data Platform
        return {"x-api-key": key}
    raise ArgumentError(f"auth must be 'epi-single', 'subscription-key' or 'x-api-key', not {auth!r}")



def _client_kwargs(
    base_url: str,
    api_key: str | Secret | None,
    transport: Any,
    timeout: httpx.Timeout | float | None,
    headers: Mapping[str, str] | None,
    limits: httpx.Limits | None,
    auth: str,
) -> dict[str, Any]:
    """What the sync and the async client share: headers, auth, timeouts, limits."""
    h = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    h.update(_auth_headers(api_key, auth))
    if headers:
        h.update(headers)
    kwargs: dict[str, Any] = {
        "base_url": base_url or "",
        "headers": h,
        "timeout": DEFAULT_TIMEOUT if timeout is None else timeout,
        "follow_redirects": False,
    }
    if transport is not None:
        kwargs["transport"] = transport
    else:
        kwargs["limits"] = limits or DEFAULT_LIMITS
    return kwargs

def build_client(
    base_url: str,
    *,
    api_key: str | Secret | None = None,
    transport: httpx.BaseTransport | None = None,
    timeout: httpx.Timeout | float | None = None,
    headers: Mapping[str, str] | None = None,
    limits: httpx.Limits | None = None,
    auth: str = "epi-single",
) -> httpx.Client:
    """A configured ``httpx.Client``: base URL, explicit timeouts, pool limits, auth header.

    ``auth="epi-single"`` sends ``Authorization: epi-single <key>``;
    ``auth="subscription-key"`` sends ``Ocp-Apim-Subscription-Key`` for gateway
    deployments; ``auth="x-api-key"`` sends ODP's ``x-api-key`` header. ``transport`` lets tests and the in-process emulator answer without
    sockets. The key is registered for redaction.
    """
    return httpx.Client(**_client_kwargs(base_url, api_key, transport, timeout, headers, limits, auth))


# --------------------------------------------------------------------------- retries


def send_json(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    policy: RetryPolicy | None = None,
    decode: Callable[[httpx.Response], T],
    stats: RequestStats | None = None,
    sleep: Callable[[float], None] = time.sleep,
    ok: Callable[[httpx.Response], bool] | None = None,
    **kwargs: Any,
) -> tuple[httpx.Response, T]:
    """Send with retries and decode the body with ``decode``; a decode failure on a
    successful response (e.g. a body cut off mid-way) is retried like a 5xx.

    Returns ``(response, decoded)``. Raises :class:`ApiError` as :func:`send_with_retries`.
    """
    box: list[Any] = []
    resp = _send(client, method, url, policy=policy or RetryPolicy(), decode=decode, box=box,
                 stats=stats, sleep=sleep, ok=ok, **kwargs)
    return resp, box[0]


def send_with_retries(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    policy: RetryPolicy | None = None,
    stats: RequestStats | None = None,
    sleep: Callable[[float], None] = time.sleep,
    ok: Callable[[httpx.Response], bool] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """Send one request, retrying what is worth retrying (see the module docstring).

    Returns the first response that is not retryable if it is a success (2xx, or what
    ``ok(response)`` accepts). Otherwise raises :class:`ApiError` naming the method, the
    URL (secrets redacted), the status and the server's message, with ``attempts``.
    ``stats`` (a :class:`RequestStats`) counts requests and retries across threads.
    """
    return _send(client, method, url, policy=policy or RetryPolicy(), decode=None, box=None,
                 stats=stats, sleep=sleep, ok=ok, **kwargs)


def _send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    policy: RetryPolicy,
    decode: Callable[[httpx.Response], Any] | None,
    box: list[Any] | None,
    stats: RequestStats | None,
    sleep: Callable[[float], None],
    ok: Callable[[httpx.Response], bool] | None,
    **kwargs: Any,
) -> httpx.Response:
    method = method.upper()
    attempt = 0
    retried = False
    wait = 0.0
    while True:
        attempt += 1
        full_url = _masked_url(client.build_request(method, url, params=kwargs.get("params")).url)
        where = {"method": method, "url": full_url, "attempts": attempt}
        try:
            resp = client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            if stats is not None:
                stats._record(retried=retried, wait=wait)
            wait = _after_transport_error(exc, policy, where)
            retried = True
            sleep(wait)
            continue
        if stats is not None:
            stats._record(retried=retried, wait=wait, status=resp.status_code,
                          nbytes=len(resp.content))
        good = ok(resp) if ok is not None else resp.is_success
        if not good:
            wait = _after_bad_status(resp, policy, where)
        elif decode is None:
            resp.extensions["psanalytics_attempts"] = attempt
            return resp
        else:
            try:
                value = decode(resp)
            except Exception as exc:  # noqa: BLE001 - any decode failure is a bad body
                wait = _after_decode_error(exc, resp, policy, where)
            else:
                assert box is not None
                box.append(value)
                resp.extensions["psanalytics_attempts"] = attempt
                return resp
        retried = True
        sleep(wait)


# Each _after_* raises ApiError when the request is not to be sent again, else returns
# how long to wait before sending it again.


def _after_transport_error(exc: httpx.TransportError, policy: RetryPolicy,
                           where: dict[str, Any]) -> float:
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, (httpx.LocalProtocolError, httpx.UnsupportedProtocol)):
        # our own request is malformed: sending it again cannot help
        raise ApiError(status=None, server_message=reason + " (a local error in the request; not retried)",
                       **where) from None
    if not policy.retry_transport_errors or where["attempts"] >= policy.max_attempts:
        raise ApiError(status=None, server_message=reason, **where) from None
    return policy.backoff(where["attempts"])


def _after_decode_error(exc: Exception, resp: httpx.Response, policy: RetryPolicy,
                        where: dict[str, Any]) -> float:
    status = resp.status_code
    if isinstance(exc, PsaError):
        # the body was read whole and says something we cannot represent
        # (e.g. an EventTime past 2262): asking again gives the same answer
        raise ApiError(status=status, server_message=f"the response cannot be read: {exc}",
                       **where) from None
    if not policy.retry_decode_errors or where["attempts"] >= policy.max_attempts:
        raise ApiError(
            status=status,
            server_message=f"response body could not be decoded ({type(exc).__name__}: "
            f"{str(exc)[:200]}); {len(resp.content)} bytes received",
            **where,
        ) from None
    return policy.backoff(where["attempts"])


def _after_bad_status(resp: httpx.Response, policy: RetryPolicy, where: dict[str, Any]) -> float:
    status = resp.status_code
    msg = server_message(resp)
    retryable = status in policy.retry_statuses and status not in NEVER_RETRY
    if retryable:
        hint = parse_retry_after(resp.headers.get("Retry-After"))
        if hint is not None and hint > policy.max_retry_after:
            raise RetryAfterTooLong(wait=hint, limit=policy.max_retry_after, status=status,
                                    server_message=msg, **where)
        if where["attempts"] < policy.max_attempts:
            return hint if hint is not None else policy.backoff(where["attempts"])
    err = ApiError(status=status, server_message=msg, **where)
    err.body = resp.content[:65536]
    raise err
