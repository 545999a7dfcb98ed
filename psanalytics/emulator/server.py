"""Run the emulator on a real loopback port: ``with serve() as srv: ... srv.url``."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from psanalytics.emulator.app import Emulator
from psanalytics.emulator.faults import Faults


def is_loopback(host: str) -> bool:
    """True for the names and addresses of this machine's loopback interface."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _guarded_h11(header_timeout_s: float) -> type:
    """uvicorn's h11 protocol with a header timeout: a connection that has not sent a
    whole request head within ``header_timeout_s`` of opening (or of its last response)
    is closed, so idle or slow-header (slowloris) clients cannot hold connections open.
    (uvicorn itself closes idle keep-alive connections after ``timeout_keep_alive``.)"""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11(H11Protocol):  # type: ignore[misc]
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._psa_arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._psa_arm()

        def _psa_arm(self) -> None:
            timer = getattr(self, "_psa_timer", None)
            if timer is not None:
                timer.cancel()
            self._psa_cycle = self.cycle
            self._psa_timer = self.loop.call_later(header_timeout_s, self._psa_expire)

        def _psa_expire(self) -> None:
            if self.cycle is self._psa_cycle and not self.transport.is_closing():
                self.transport.close()  # no (new) request head arrived in time

        def connection_lost(self, exc: Exception | None) -> None:
            timer = getattr(self, "_psa_timer", None)
            if timer is not None:
                timer.cancel()
            super().connection_lost(exc)

    return GuardedH11


class Server:
    """A running emulator server: ``.url``, ``.api_key``, ``.state()``, ``.set_faults()``,
    ``.reset()``, ``.emulator``, ``.stop()``. ``header_timeout_s`` closes connections that
    send no whole request head in time; idle keep-alive connections close after
    ``idle_timeout_s``."""

    def __init__(self, emulator: Emulator, host: str = "127.0.0.1", port: int = 0, *,
                 header_timeout_s: float = 10.0, idle_timeout_s: float = 5.0):
        import uvicorn

        self.emulator = emulator
        self.host = host
        if not is_loopback(host):
            emulator.admin_auth = True  # anyone on the network could wipe or read the state
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit TCP_NODELAY: without it, headers and body written
        # separately wait ~40 ms for a delayed ACK (Nagle).
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind((host, port))
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(emulator.app, log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=2,
                                http=_guarded_h11(header_timeout_s),
                                timeout_keep_alive=idle_timeout_s,  # type: ignore[arg-type]
                                h11_max_incomplete_event_size=64 * 1024)
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._run, name="psanalytics-emulator-server",
                                        daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # pragma: no cover - reported by start()
            self._error = exc

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_key(self) -> str:
        return self.emulator.api_key

    def start(self, timeout: float = 10.0) -> Server:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the emulator server did not start: {self._error}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the emulator server did not start within {timeout} s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        with contextlib.suppress(OSError):
            self._sock.close()

    def state(self, **kw: Any) -> dict[str, Any]:
        return self.emulator.state(**kw)

    def set_faults(self, faults: Faults | Mapping[str, Any] | str | None) -> None:
        self.emulator.set_faults(faults)

    def reset(self) -> None:
        self.emulator.reset()

    def events(self) -> pl.DataFrame:
        return self.emulator.events()

    def __repr__(self) -> str:
        return f"Server(url={self.url!r}, {self.emulator!r})"


@contextlib.contextmanager
def serve(
    events: pl.DataFrame | str | Path | None = None,
    *,
    api_key: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    faults: Faults | Mapping[str, Any] | str | None = None,
    strict: bool = True,
    announce: bool = False,
    header_timeout_s: float = 10.0,
    idle_timeout_s: float = 5.0,
    real_shaped: bool = False,
    **kw: Any,
) -> Iterator[Server]:
    """Start the emulator on a real HTTP server in a background thread; stop it on exit.

    Binds ``host`` (127.0.0.1 unless told otherwise) on ``port`` (0 = a free port, read
    back into ``.url``). Other keywords go to :class:`Emulator` (``lenient``,
    ``lenient_window``, ``pending_delete_limit``, ``preview_timeout_s``, ...).
    ``announce=True`` prints the address it binds to stderr.

    ``real_shaped=True`` serves ``events`` (default: the sample) as the real service
    holds such data: :func:`psanalytics.samples.real_shaped` (three e-mail campaigns
    added, 30% of events without a TrackId, identical pairs, ``User.Info``,
    ``Headers: {}``, an unknown top-level field on some events).
    """
    if not is_loopback(host):
        warnings.warn(f"the emulator binds {host}, not loopback: other machines can reach it "
                      "(its admin routes need the API key)",
                      stacklevel=3)
    if real_shaped:
        from psanalytics import samples
        from psanalytics.emulator.state import load_events

        events = samples.real_shaped(load_events(events))
    emu = Emulator(events, api_key=api_key, faults=faults, strict=strict, **kw)
    srv = Server(emu, host=host, port=port, header_timeout_s=header_timeout_s,
                 idle_timeout_s=idle_timeout_s).start()
    if announce:
        print(f"psanalytics emulator listening on {srv.url} (bound to {host} only)", file=sys.stderr)
    try:
        yield srv
    finally:
        srv.stop()
