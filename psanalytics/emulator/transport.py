"""httpx transports that call the emulator's ASGI app in-process (no sockets).

The sync transport runs the app on a private event loop in a daemon thread, so it works
inside Jupyter (whose own loop is already running) and from many threads at once.
Faults behave as on a real socket: a dropped connection raises
``httpx.RemoteProtocolError``, a truncated body raises it after the cut-off bytes.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx

from psanalytics.emulator.faults import DroppedConnection


def _check_length(request: httpx.Request, status: int, headers: httpx.Headers, body: bytes) -> None:
    cl = headers.get("content-length")
    if cl is not None and cl.isdigit() and int(cl) > len(body):
        raise httpx.RemoteProtocolError(
            f"peer closed connection without sending complete message body: received "
            f"{len(body)} bytes, expected {cl}", request=request)


class AsyncInProcessTransport(httpx.AsyncBaseTransport):
    """``httpx.ASGITransport`` over the emulator app, with socket-like fault behaviour."""

    def __init__(self, app: Any):
        self.app = app
        self._inner = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            resp = await self._inner.handle_async_request(request)
            body = await resp.aread()
        except DroppedConnection:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request) from None
        _check_length(request, resp.status_code, resp.headers, body)
        return httpx.Response(resp.status_code, headers=resp.headers, content=body,
                              extensions=resp.extensions)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _LoopThread:
    """One event loop in one daemon thread, shared by every sync transport."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def loop(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                t = threading.Thread(target=loop.run_forever, name="psanalytics-emulator-loop",
                                     daemon=True)
                t.start()
                cls._loop = loop
            return cls._loop


class InProcessTransport(httpx.BaseTransport):
    """A sync httpx transport that answers from the emulator app without sockets."""

    def __init__(self, app: Any):
        self.app = app
        self._async = AsyncInProcessTransport(app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        areq = httpx.Request(request.method, request.url, headers=request.headers, content=body,
                             extensions=request.extensions)
        fut = asyncio.run_coroutine_threadsafe(self._async.handle_async_request(areq),
                                               _LoopThread.loop())
        try:
            resp = fut.result()
        except httpx.TransportError as exc:
            raise type(exc)(str(exc), request=request) from None
        return httpx.Response(resp.status_code, headers=resp.headers, content=resp.content,
                              request=request)

    def close(self) -> None:
        pass
