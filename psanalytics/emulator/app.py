"""The emulator: Profile Store (query, preview, delete), Tracking API and Event API over one
Starlette app, with fault injection, a request journal and admin routes.

The room: ``routes.py`` (the one route table), ``middleware.py`` (connection, journal,
version header, faults, body cap), ``state.py`` (what changes while serving: reset,
restore, purge), ``event_api.py`` and ``tracking.py`` (the bodies those APIs take),
``store.py`` (the events), ``odp.py`` (ODP). This module holds :class:`Emulator`: its
settings, its public methods and one handler per route name.

See ``docs/emulator.md`` for what is emulated and what is not.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import polars as pl
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from psanalytics import schema
from psanalytics.emulator import tracking
from psanalytics.emulator.encoding import encode_generic
from psanalytics.emulator.event_api import (
    ACCEPTED_SCHEMA,
    REJECTED_SCHEMA,
    records_frame,
    validate_event_body,
)
from psanalytics.emulator.faults import Faults
from psanalytics.emulator.middleware import (
    BodyLimitMiddleware,
    BodyTooLarge,
    ConnectionMiddleware,
    FaultMiddleware,
    JournalMiddleware,
    VersionHeaderMiddleware,
    error_body,
)
from psanalytics.emulator.odp import OdpService
from psanalytics.emulator.paging import BadQuery, page_query
from psanalytics.emulator.profiles import ProfilesService
from psanalytics.emulator.routes import ROUTES, ApiRoute, Route, route_docs
from psanalytics.emulator.state import SNAPSHOT_META, EmulatorState, load_events
from psanalytics.emulator.tracking import SCOPE_RE, country_for_ip
from psanalytics.errors import ArgumentError
from psanalytics.query.odata import ODataError, parse_orderby
from psanalytics.wire import api_json

if TYPE_CHECKING:
    import httpx

try:
    from psanalytics import __version__ as _PSA_VERSION
except ImportError:  # pragma: no cover
    _PSA_VERSION = "0"

__all__ = ["Emulator", "EMULATOR_VERSION", "VERSION_HEADER", "IN_PROCESS_URL", "country_for_ip",
           "encode_generic", "error_body"]

EMULATOR_VERSION = f"psanalytics-emulator/{_PSA_VERSION}"
VERSION_HEADER = "X-Psanalytics-Emulator"
IN_PROCESS_URL = "http://psanalytics-emulator"

# The API's limits, kept here (and in tracking.py, paging.py) on purpose apart from
# psanalytics.wire.limits (the client's copy): the emulator is an independent oracle of
# shared/spec/apis.md, so a wrong client-side number fails the tests instead of being
# shared by both sides.
MAX_EVENT_API_BYTES = 3_500_000
MAX_CUSTOM_SCOPES = 20

def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(error_body(status, message), status_code=status, headers=dict(headers or {}),
                    media_type="application/json")


def _json(data: bytes, status: int = 200) -> Response:
    return Response(data, status_code=status, media_type="application/json; charset=utf-8")


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's router found no route (404) or not for this method (405)."""
    assert isinstance(exc, HTTPException)
    where = f"{request.method} {request.url.path}"
    message = {404: f"no such route: {where}",
               405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
    return _error(exc.status_code, message, headers=exc.headers)


# --------------------------------------------------------------------------- Emulator


class Emulator:
    """In-memory emulator of the Profile Store, Tracking and Event APIs.

    ``events``: None -> the committed sample data; a frame; or a path read with
    ``psanalytics.exports.read_events``. ``api_key`` None -> a random key (see
    ``.api_key``). ``faults``: a :class:`Faults`, a dict, or ``"error_rate=0.1,seed=3"``.
    ``strict``: Event API validation answers 400 only with ``X-Optimizely-Strict: true``
    when True (the real service); with False the header is ignored. ``lenient`` accepts
    ``contains/startswith/endswith/in`` in ``$filter``. ``lenient_window`` (default True)
    allows ``$skip + $top == 10000``: shipped callers sent ``$top=10000`` and got 200
    (``shared/spec/apis.md`` section 5; the store behind the API reads "from + size <=
    10,000"); False answers 400 for it, the current docs' literal "less than 10000".
    Query parameters other than ``$filter``, ``$orderby``, ``$skip``, ``$top`` are
    ignored, as ASP.NET did.

    ``.app`` is the ASGI app; ``.transport()`` / ``.async_transport()`` give httpx
    transports that call it in-process (no sockets); ``serve()`` runs it on a real port.
    """

    url = IN_PROCESS_URL

    def __init__(
        self,
        events: pl.DataFrame | str | Path | None = None,
        *,
        api_key: str | None = None,
        tracking_key: str | None = None,
        faults: Faults | Mapping[str, Any] | str | None = None,
        strict: bool = True,
        lenient: bool = False,
        lenient_window: bool = True,
        pending_delete_limit: int = 1_000_000,
        preview_timeout_s: float = 120.0,
        preview_row_cap: int = 1000,
        preview_workers: int = 2,
        preview_queue: int = 4,
        preview_max_bytes: int = 64 * 1024 * 1024,
        max_body_bytes: int = 32 * 1024 * 1024,
        journal_size: int = 10_000,
        max_events: int | None = None,
        mirror: Any = None,
        odp_api_key: str | None = None,
        admin_auth: bool = False,
        admin_token: str | None = None,
        track_ids: str = "keep",
        profiles: Any = None,
    ):
        if track_ids not in ("keep", "assign"):
            raise ValueError(f"track_ids must be 'keep' or 'assign', not {track_ids!r}")
        #: "keep" (the real service): an event tracked without a trackId keeps TrackId "";
        #: "assign": the emulator gives it a random one (handy for deleting it later).
        self.track_ids = track_ids
        faults_initial = Faults.parse(faults)  # bad fault specs fail before loading data
        initial = load_events(events)
        snapshot = (Path(events) if isinstance(events, (str, Path))
                    and (Path(events) / SNAPSHOT_META).is_file() else None)
        if max_events is not None and initial.height > max_events:
            raise ArgumentError(f"{initial.height:,} events exceed max_events={max_events:,}")
        self.__key = api_key or secrets.token_urlsafe(18)
        self.__tracking_key = tracking_key
        self.__admin_token = admin_token
        #: When True, the admin routes that read or change state (state, reset, faults,
        #: purge) need the API key or ``admin_token``; ``serve()`` turns it on whenever it
        #: binds anything but loopback. Health and docs stay open.
        self.admin_auth = bool(admin_auth or admin_token)
        self.__odp_key = odp_api_key
        self.odp = OdpService(lambda: self.odp_api_key)
        self._snapshot_dir = snapshot
        self.strict = strict
        self.lenient = lenient
        self.lenient_window = lenient_window
        self.pending_delete_limit = int(pending_delete_limit)
        self.preview_timeout_s = float(preview_timeout_s)
        self.preview_row_cap = int(preview_row_cap)
        #: Previews running at once, and waiting beyond those; more are answered 429.
        self.preview_workers = max(1, int(preview_workers))
        self.preview_queue = max(0, int(preview_queue))
        #: Largest preview answer (encoded JSON); a larger one is 400.
        self.preview_max_bytes = int(preview_max_bytes)
        #: Largest request body read; Content-Length above it (or a body that grows past
        #: it) is answered 413 before it is read whole.
        self.max_body_bytes = int(max_body_bytes)
        self._previews = 0
        self._preview_slots = threading.BoundedSemaphore(self.preview_workers)
        self.max_events = max_events
        self.mirror = mirror
        #: Everything that changes while serving (store, faults, logs, journal).
        self._state = EmulatorState(initial, lenient=lenient, faults=faults_initial,
                                    journal_size=journal_size, odp=self.odp, snapshot=snapshot)
        #: GET api/v2.0/Profiles: ``profiles`` (a file, API objects or a profiles frame),
        #: else the profiles the events imply (psanalytics/emulator/profiles.py).
        self.profiles = ProfilesService(self.events, self._events_version, self._load_profiles(profiles))
        self.started_at = datetime.now(UTC)
        routes = [ApiRoute(spec, self._endpoint(spec)) for spec in ROUTES]
        router = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
        router.router.redirect_slashes = False  # routes take an optional trailing slash
        app: Any = BodyLimitMiddleware(router, lambda: self.max_body_bytes)
        app = FaultMiddleware(app, self._state)
        app = VersionHeaderMiddleware(app, VERSION_HEADER, EMULATOR_VERSION)
        app = JournalMiddleware(app, self._state)
        self.app = ConnectionMiddleware(app, routes)

    def _load_profiles(self, profiles: Any) -> pl.DataFrame | None:
        from psanalytics.wire.profiles import read_profiles

        if profiles is None and self._snapshot_dir is not None:
            saved = self._snapshot_dir / "profiles" / "profiles.parquet"
            return read_profiles(saved) if saved.is_file() else None
        return None if profiles is None else read_profiles(profiles)

    def _events_version(self) -> tuple[int, ...]:
        st = self.store
        return (id(st), len(st), st.tracked_total, st.deleted_total, st.purged_total)

    @property
    def store(self):  # noqa: ANN201 - EventStore
        """The event store (replaced by :meth:`reset`)."""
        return self._state.store

    @property
    def faults(self) -> Faults | None:
        return self._state.faults

    @property
    def api_key(self) -> str:
        """The key requests must send (``Authorization: epi-single <key>``)."""
        return self.__key

    @property
    def tracking_key(self) -> str:
        return self.__tracking_key or self.__key

    @property
    def odp_api_key(self) -> str:
        """The ``x-api-key`` ODP routes take: ``odp_api_key=`` if given, else ``api_key``."""
        return self.__odp_key or self.__key

    def __repr__(self) -> str:
        return (f"Emulator(events={len(self.store):,}, strict={self.strict}, "
                f"lenient={self.lenient}, faults={'on' if self.faults else 'off'})")

    # ------------------------------------------------------------------ public API
    def transport(self) -> httpx.BaseTransport:
        """A sync httpx transport that calls the app in-process (no sockets)."""
        from psanalytics.emulator.transport import InProcessTransport

        return InProcessTransport(self.app)

    def async_transport(self) -> httpx.AsyncBaseTransport:
        """An async httpx transport that calls the app in-process."""
        from psanalytics.emulator.transport import AsyncInProcessTransport

        return AsyncInProcessTransport(self.app)

    def events(self) -> pl.DataFrame:
        """The visible events (deleted ones hidden), sorted by EventTime then TrackId."""
        return self.store.events()

    def add_events(self, events: pl.DataFrame | list[dict[str, Any]]) -> int:
        """Add events behind the API's back (late arrivals, a growing head, bursts): they
        are queryable at once and kept in order. Returns how many were added."""
        return self.store.append(schema.normalize(events))

    def accepted_events(self) -> pl.DataFrame:
        """Event API events kept (after dedupe), one row per event, in arrival order."""
        with self._state.lock:
            rows = list(self._state.accepted)
        return records_frame(rows, ACCEPTED_SCHEMA)

    def rejected_events(self) -> pl.DataFrame:
        """Event API events (or whole bodies) dropped, with ``path`` and ``reason``."""
        with self._state.lock:
            rows = list(self._state.rejected)
        return records_frame(rows, REJECTED_SCHEMA)

    def set_faults(self, faults: Faults | Mapping[str, Any] | str | None) -> None:
        """Replace the fault settings (None turns faults off); the RNG restarts at the seed."""
        self._state.faults = Faults.parse(faults)

    def reset(self) -> None:
        """Back to the seeded events, no deletions, empty Event API log (or the
        snapshot's), empty journal, and the faults given at construction."""
        self._state.reset()

    def purge(self) -> int:
        """Run the daily clean-up now: deleted events are dropped for good."""
        return self._state.purge()

    def snapshot(self, folder: str | Path) -> Path:
        """Write the visible events and the Event API log to a Parquet folder.

        Layout: ``events/events.parquet``, ``event_api/accepted.parquet``,
        ``event_api/rejected.parquet``, ``odp/events.ndjson`` and ``odp/state.json`` (what
        ODP accepted, idempotence ids, customers), ``profiles/profiles.parquet`` (when the
        emulator was given profiles) and ``_emulator_snapshot.json``. ``Emulator(folder)``
        (or ``psanalytics serve --data folder``) starts from it again, Event API log and
        ODP state included.
        """
        out = self._state.snapshot(Path(folder), self.events(), self.accepted_events(),
                                   self.rejected_events(), EMULATOR_VERSION)
        if self.profiles.loaded is not None:
            (out / "profiles").mkdir(exist_ok=True)
            self.profiles.loaded.write_parquet(out / "profiles" / "profiles.parquet")
        return out

    def state(self, *, limit: int | None = None) -> dict[str, Any]:
        """Counts, Event API accepted/rejected events, the request journal and the faults.

        ``limit`` caps the lists (the latest entries are kept)."""
        st = self._state
        with st.lock:
            acc, rej, journal = list(st.accepted), list(st.rejected), list(st.journal_entries)
            ev = dict(st.event_api)
        if limit is not None:
            acc, rej, journal = (acc[-limit:], rej[-limit:], journal[-limit:]) if limit else ([], [], [])
        return {
            "version": EMULATOR_VERSION,
            "events": len(self.store),
            "pending_deletions": self.store.pending_deletions,
            "deleted_total": self.store.deleted_total,
            "purged_total": self.store.purged_total,
            "tracked_total": self.store.tracked_total,
            "event_api": ev,
            "accepted": acc,
            "rejected": rej,
            "requests": st.seq,
            "journal": journal,
            "faults": self.faults.to_dict() if self.faults else None,
            "odp": self.odp.state(limit=limit),
            "settings": {
                "strict": self.strict, "lenient": self.lenient,
                "lenient_window": self.lenient_window,
                "pending_delete_limit": self.pending_delete_limit,
                "preview_timeout_s": self.preview_timeout_s,
                "preview_row_cap": self.preview_row_cap,
            },
        }

    # ------------------------------------------------------------------ routing
    def _endpoint(self, spec: Route) -> Callable[[Request], Any]:
        """The Starlette endpoint for one table row: its auth check, the daily clean-up
        for the keyed API routes, then ``self._<name>``; any error still answers in the
        API's envelope (413 for a body past the cap, 500 for an emulator bug)."""
        handler = getattr(self, f"_{spec.name}")
        key: Callable[[], str] | None = {"key": lambda: self.api_key,
                                         "tracking": lambda: self.tracking_key}.get(spec.auth)

        async def endpoint(request: Request) -> Response:
            try:
                if spec.auth == "admin" and not self._admin_allowed(request):
                    return _error(401, "the emulator's admin routes need the API key (or the admin "
                                       "token) when it is not bound to loopback: send "
                                       "'Authorization: epi-single <key>'")
                if key is not None:
                    if not _authorized(request, key()):
                        return _error(401, "missing or invalid API key: send 'Authorization: "
                                           "epi-single <key>' or 'Ocp-Apim-Subscription-Key: <key>'")
                    self._state.purge_if_due(time.time())
                return await handler(request)
            except BodyTooLarge as exc:
                return _error(413, str(exc), headers={"Connection": "close"})
            except Exception as exc:  # noqa: BLE001 - an emulator bug must still answer like the API
                return _error(500, f"internal error in the emulator: {type(exc).__name__}: {exc}")

        return endpoint

    def _admin_allowed(self, request: Request) -> bool:
        return (not self.admin_auth or _authorized(request, self.api_key)
                or bool(self.__admin_token and _authorized(request, self.__admin_token)))

    # ------------------------------------------------------------------ Profile Store
    async def _trackevents(self, request: Request) -> Response:
        try:
            page = page_query(request, lenient_window=self.lenient_window)
            orderby = parse_orderby(page.orderby)
        except (BadQuery, ODataError) as exc:
            return _error(400, str(exc))
        ftext = page.filter if page.filter is not None and page.filter.strip() else None
        skip, top = page.skip, page.top

        def run() -> bytes:
            res = self.store.query(ftext, orderby=orderby, skip=skip, top=top, with_source=True)
            if res.source is not None:  # the rows' JSON was ready: no encoding
                return api_json.join_api_json(res.source, envelope=True, total=res.total)
            return api_json.to_api_json(res.page, envelope=True, total=res.total)

        try:
            body = await run_in_threadpool(run)
        except ODataError as exc:
            return _error(400, str(exc))
        return _json(body)

    async def _profiles(self, request: Request) -> Response:
        return await self.profiles.get(request, lenient=self.lenient, lenient_window=self.lenient_window)

    async def _preview(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return _error(400, f"the body is not JSON: {exc}")
        if not isinstance(body, dict):
            return _error(400, 'the body must be a JSON object {"Query": "...", "Scope": "..."}')
        low = {str(k).lower(): v for k, v in body.items()}
        query = low.get("query")
        scope = low.get("scope") or "default"
        if not isinstance(query, str) or not query.strip():
            return _error(400, 'the body needs "Query": a KQL query over the table Events')
        if not isinstance(scope, str) or not SCOPE_RE.match(scope):
            return _error(400, f"invalid scope {scope!r}: up to 64 lower-case letters, digits or _")
        from psanalytics.query import kql as kqlmod

        with self._state.lock:
            if self._previews >= self.preview_workers + self.preview_queue:
                return _error(429, f"{self._previews} previews are running or waiting (at most "
                                   f"{self.preview_workers} at once, {self.preview_queue} waiting); "
                                   "retry shortly", headers={"Retry-After": "1"})
            self._previews += 1
        try:
            data = await run_in_threadpool(self._run_preview, query, scope)
        except kqlmod.KqlError as exc:
            return _error(400, str(exc))
        except pl.exceptions.PanicException as exc:  # a BaseException: not an emulator crash
            first = (str(exc).strip().splitlines() or ["no message"])[0][:300]
            return _error(400, f"the query failed while running: the engine (Polars) panicked: {first}")
        finally:
            with self._state.lock:
                self._previews -= 1
        if len(data) > self.preview_max_bytes:
            return _error(400, f"the result is {len(data):,} bytes, over the preview cap of "
                               f"{self.preview_max_bytes:,}: project fewer columns or take fewer rows")
        return _json(data)

    def _run_preview(self, query: str, scope: str) -> bytes:
        """One preview, on a worker thread: at most ``preview_workers`` run at once, and a
        run is stopped (Polars' cancellation) at ``preview_timeout_s``."""
        from psanalytics.query import kql as kqlmod

        with self._preview_slots:
            frame = self.store.events()
            sc = frame.get_column("Scope")
            mask = (sc == scope) | (sc == "") if scope == "default" else (sc == scope)
            visible = frame.filter(mask)
            res = kqlmod.execute(query, {"Events": visible}, limit=self.preview_row_cap,
                                 timeout_s=self.preview_timeout_s)
            lines = encode_generic(res.frame)
            return ('{"items":[' + ",".join(lines) + f'],"count":{len(lines)}}}').encode()

    async def _delete(self, request: Request) -> Response:
        params = request.path_params
        return await run_in_threadpool(self._delete_one, params["scope"], params["id"])

    def _delete_one(self, scope: str, track_id: str) -> Response:
        if not SCOPE_RE.match(scope):
            return _error(400, f"invalid scope {scope!r}: up to 64 lower-case letters, digits or _")
        with self._state.lock:
            if self.store.pending_deletions + 1 > self.pending_delete_limit:
                retry = max(1, int(self._state.next_purge - time.time()))
                return _error(
                    429,
                    f"more than {self.pending_delete_limit:,} deletions would be pending before "
                    f"the next clean-up; retry after {retry} s",
                    headers={"Retry-After": str(retry)},
                )
            ok = self.store.delete(scope, track_id)
        if not ok:
            return _error(404, f"no tracking event {track_id!r} in scope {scope!r}")
        return Response(b"", status_code=200)

    # ------------------------------------------------------------------ Tracking API
    async def _track(self, request: Request) -> Response:
        return await self._store_tracked(request, bulk=False)

    async def _trackbulk(self, request: Request) -> Response:
        return await self._store_tracked(request, bulk=True)

    async def _store_tracked(self, request: Request, *, bulk: bool) -> Response:
        raw = await request.body()
        records, err = tracking.track_records(raw, bulk=bulk, track_ids=self.track_ids,
                                              header_ip=request.headers.get("epi-user-ip-address", ""))
        if err is not None:
            return _error(400, err)
        scopes = {rec["Scope"] for rec in records}
        existing = set(self.store.events().get_column("Scope").unique().to_list()) if scopes - {"default"} else set()
        custom = (existing | scopes) - {"default", ""}
        if len(custom) > MAX_CUSTOM_SCOPES:
            return _error(400, f"at most {MAX_CUSTOM_SCOPES} custom scopes; this would make {len(custom)}")
        if self.max_events is not None and len(self.store) + len(records) > self.max_events:
            return _error(429, f"the emulator holds at most {self.max_events:,} events (max_events)",
                          headers={"Retry-After": "60"})
        records = self._state.skip_repeated_track_ids(records, tracking._now_ns())
        frame = schema.normalize(records)
        await run_in_threadpool(self.store.append, frame)
        if self.mirror is not None:
            self._mirror(api_json.api_json_lines(frame).to_list())
        return Response(b"", status_code=202)

    def _mirror(self, lines: list[str]) -> None:
        target = self.mirror
        text = "".join(line + "\n" for line in lines)
        try:
            if hasattr(target, "write"):
                target.write(text)
                if hasattr(target, "flush"):
                    target.flush()
            else:
                with open(target, "a", encoding="utf-8") as fh:
                    fh.write(text)
        except OSError:  # pragma: no cover - mirroring is best effort
            pass

    # ------------------------------------------------------------------ Event API, ODP
    async def _events(self, request: Request) -> Response:
        raw = await request.body()
        with self._state.lock:
            self._state.event_api["requests"] += 1
        if len(raw) > MAX_EVENT_API_BYTES:
            return _error(400, f"the body is {len(raw):,} bytes; the Event API takes at most "
                               f"{MAX_EVENT_API_BYTES:,} (3.5 MB)")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return _error(400, f"the body is not JSON: {exc}")
        strict_hdr = request.headers.get("x-optimizely-strict", "").strip().lower() == "true"
        accepted, rejected, errors = validate_event_body(body)
        if strict_hdr and self.strict and errors:
            return Response(orjson.dumps({"errors": [{"path": p, "message": m} for p, m in errors]}),
                            status_code=400, media_type="application/json")
        self._state.record_event_api(accepted, rejected,
                                     datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        return Response(b"", status_code=204)

    async def _odp_events(self, request: Request) -> Response:
        return await self.odp.events(request)

    async def _odp_profiles(self, request: Request) -> Response:
        return await self.odp.profiles(request)

    # ------------------------------------------------------------------ admin
    async def _admin_state(self, request: Request) -> Response:
        lim = request.query_params.get("limit")
        try:
            limit = 1000 if lim is None else int(lim)
        except ValueError:
            return _error(400, f"limit must be an integer, got {lim!r}")
        return _json(orjson.dumps(self.state(limit=limit), option=orjson.OPT_NON_STR_KEYS))

    async def _admin_reset(self, request: Request) -> Response:
        self.reset()
        return _json(orjson.dumps({"ok": True, "events": len(self.store)}))

    async def _admin_faults(self, request: Request) -> Response:
        raw = await request.body()
        try:
            spec = orjson.loads(raw) if raw.strip() else None
            if isinstance(spec, str):
                spec = spec or None
            self.set_faults(spec)
        except orjson.JSONDecodeError:
            try:
                self.set_faults(raw.decode())
            except Exception as exc:  # noqa: BLE001
                return _error(400, str(exc))
        except Exception as exc:  # noqa: BLE001
            return _error(400, str(exc))
        return await self._admin_faults_get(request)

    async def _admin_faults_get(self, request: Request) -> Response:
        return _json(orjson.dumps({"faults": self.faults.to_dict() if self.faults else None}))

    async def _admin_purge(self, request: Request) -> Response:
        n = await run_in_threadpool(self.purge)
        return _json(orjson.dumps({"purged": n}))

    async def _admin_docs(self, request: Request) -> Response:
        return _json(orjson.dumps({
            "version": EMULATOR_VERSION,
            "routes": route_docs(),
            "not_emulated": "see docs/emulator.md: other Profile Store resources, Headers and "
                            "User.Info, real geolocation, Event API processing, real rate limits",
        }))

    async def _admin_health(self, request: Request) -> Response:
        return _json(orjson.dumps({
            "status": "ok", "version": EMULATOR_VERSION, "events": len(self.store),
            "started_at": self.started_at.isoformat(),
        }))


def _authorized(request: Request, key: str) -> bool:
    auth = request.headers.get("authorization", "")
    parts = auth.split(None, 1)
    if len(parts) == 2 and parts[0].lower() == "epi-single" and secrets.compare_digest(
        parts[1].strip().encode(), key.encode()
    ):
        return True
    sub = request.headers.get("ocp-apim-subscription-key")
    return bool(sub) and secrets.compare_digest(sub.strip().encode(), key.encode())
