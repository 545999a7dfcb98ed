"""The emulator's ASGI middleware, outermost first:

1. :class:`ConnectionMiddleware` names the route (from the one route table) and owns the
   server's ``send``: it is the only layer that can close the client's connection, which
   the others ask for with a ``{"type": "psanalytics.drop"}`` message.
2. :class:`JournalMiddleware` records every request in the journal *before* the last byte
   of its answer (or the drop) goes out, so a client holding its answer always finds its
   request in ``/_emulator/state``.
3. :class:`VersionHeaderMiddleware` adds ``X-Psanalytics-Emulator`` to every answer,
   injected faults included.
4. :class:`FaultMiddleware` draws the request's fault before any handler runs (a faulted
   request never changes the store) and plays it: delay, drop, 429/5xx, a truncated or a
   dripped body.
5. :class:`BodyLimitMiddleware` answers 413 for a declared body over the cap and stops a
   body that grows past it.

The connection layer must be the outermost: dropping a connection closes uvicorn's
transport, reached through the ``send`` callable uvicorn hands to the app.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from psanalytics.emulator.faults import Decision, DroppedConnection
from psanalytics.emulator.routes import ADMIN_PREFIX, ApiRoute, route_name

if TYPE_CHECKING:
    from psanalytics.emulator.state import EmulatorState

__all__ = ["BodyTooLarge", "ConnectionMiddleware", "JournalMiddleware", "VersionHeaderMiddleware",
           "FaultMiddleware", "BodyLimitMiddleware", "error_body", "ROUTE_KEY", "FAULT_KEY"]

#: Scope keys: the route's name (set by the connection layer) and the fault drawn for the
#: request (set by the fault layer, read by the journal).
ROUTE_KEY = "psanalytics.route"
FAULT_KEY = "psanalytics.fault"
#: The message a layer sends to have the connection closed (``started``: after a
#: response start, i.e. a truncated body).
DROP = "psanalytics.drop"

_ERROR_CODES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                405: "MethodNotAllowed", 413: "PayloadTooLarge", 429: "TooManyRequests",
                500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable",
                504: "GatewayTimeout"}

Scope = dict[str, Any]
App = Callable[..., Any]


def error_body(status: int, message: str, code: str | None = None) -> bytes:
    """The API's error envelope: ``{"error": {"code": ..., "message": ...}}``."""
    return orjson.dumps({"error": {"code": code or _ERROR_CODES.get(status, "Error"), "message": message}})


class BodyTooLarge(Exception):
    """A request body without (or with a false) Content-Length grew past the cap."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the request body is larger than the {limit:,} bytes the emulator reads")


async def _send_error(send: Any, status: int, message: str,
                      headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *(headers or [])]})
    await send({"type": "http.response.body", "body": error_body(status, message)})


class ConnectionMiddleware:
    def __init__(self, app: App, routes: list[ApiRoute]):
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = dict(scope)
        scope[ROUTE_KEY] = route_name(self.routes, scope)

        async def send_or_drop(message: dict[str, Any]) -> None:
            if message["type"] != DROP:
                await send(message)
            elif _socket_of(send) is not None:
                _drop(send, started=message.get("started", False))
            elif message.get("started"):
                # In-process: end the short body; the transport sees fewer bytes than
                # Content-Length and raises as a client on a cut connection would.
                await send({"type": "http.response.body", "body": b""})
            else:
                raise DroppedConnection("connection dropped (injected fault)")

        await self.app(scope, receive, send_or_drop)


class JournalMiddleware:
    def __init__(self, app: App, state: EmulatorState):
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        entry: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(),
            "method": scope["method"],
            "path": scope["path"],
            "query": scope.get("query_string", b"").decode("latin-1"),
            "route": scope.get(ROUTE_KEY),
            "fault": None,
        }
        status = 0
        recorded = False

        def record() -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                entry["fault"] = scope.get(FAULT_KEY, Decision()).kind
                entry["status"] = status or None
                entry["duration_ms"] = round((time.perf_counter() - t0) * 1000, 3)
                self.state.journal(entry)

        async def send_recorded(message: dict[str, Any]) -> None:
            nonlocal status
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
            elif kind == DROP or (kind == "http.response.body" and not message.get("more_body")):
                record()  # before the last byte (or the drop) reaches the client
            await send(message)

        try:
            await self.app(scope, receive, send_recorded)
        finally:
            record()  # an app error or a client gone before the end


class VersionHeaderMiddleware:
    def __init__(self, app: App, name: str, version: str):
        self.app = app
        self.header = (name.lower().encode(), version.encode())

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_versioned(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, send_versioned)


class FaultMiddleware:
    def __init__(self, app: App, state: EmulatorState):
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        faults = self.state.faults
        admin = scope["path"].lower().startswith(ADMIN_PREFIX)
        decision = faults.decide(scope.get(ROUTE_KEY)) if faults is not None and not admin else Decision()
        scope[FAULT_KEY] = decision
        if decision.delay:
            await asyncio.sleep(decision.delay)
        if decision.kind == "drop":
            # Read the whole request first: closing with request bytes still unread makes
            # the kernel send a reset, which a client sees as a read error at a random
            # point; this way every drop is "disconnected without a response".
            await _drain(receive)
            await send({"type": DROP})
        elif decision.kind in ("rate_limit", "error"):
            status = 429 if decision.kind == "rate_limit" else int(decision.status or 500)
            headers = []
            if status == 429 and faults is not None and faults.retry_after is not None:
                headers.append((b"retry-after", faults.retry_after.encode()))
            await _send_error(send, status, "too many requests (injected fault)" if status == 429
                              else "injected fault: the server failed", headers)
        elif decision.kind == "truncate":
            await self._truncated(scope, receive, send, decision.cut)
        elif decision.kind == "drip":
            await self._drip(scope, receive, send, faults.drip_seconds if faults else 1.0)
        else:
            await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Any) -> tuple[dict[str, Any], bytes]:
        """Run the app and collect its whole answer (response start, body)."""
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def collect(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, collect)
        return start, b"".join(chunks)

    async def _drip(self, scope: Scope, receive: Any, send: Any, seconds: float) -> None:
        start, body = await self._answer(scope, receive)
        await send(start)
        step = max(1, -(-len(body) // 10))
        pieces = [body[i:i + step] for i in range(0, len(body), step)] or [b""]
        for i, piece in enumerate(pieces):
            await asyncio.sleep(seconds / len(pieces))
            await send({"type": "http.response.body", "body": piece, "more_body": i < len(pieces) - 1})

    async def _truncated(self, scope: Scope, receive: Any, send: Any, cut: float) -> None:
        start, body = await self._answer(scope, receive)
        if start.get("status") != 200 or len(body) < 2:
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        keep = max(1, min(len(body) - 1, int(len(body) * cut)))
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body[:keep], "more_body": True})
        await send({"type": DROP, "started": True})


class BodyLimitMiddleware:
    def __init__(self, app: App, limit: Callable[[], int]):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.strip().isdigit() and int(length) > limit:
            await _send_error(send, 413, f"the request body is {int(length):,} bytes; the "
                                         f"emulator reads at most {limit:,}",
                              [(b"connection", b"close")])
            return
        got = 0

        async def capped_receive() -> dict[str, Any]:
            nonlocal got
            message = await receive()
            if message.get("type") == "http.request":
                got += len(message.get("body", b""))
                if got > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, capped_receive, send)


async def _drain(receive: Any) -> None:
    """Consume the request body (until its last chunk, or the client going away)."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def _socket_of(send: Any) -> Any:
    return getattr(getattr(send, "__self__", None), "transport", None)


def _drop(send: Any, *, started: bool = False) -> None:
    """Close the client connection without (the rest of) a response."""
    cycle = getattr(send, "__self__", None)
    try:
        cycle.disconnected = True  # uvicorn then sends no 500 of its own
        if started:
            cycle.response_complete = True
    except AttributeError:  # pragma: no cover
        pass
    cycle.transport.close()
