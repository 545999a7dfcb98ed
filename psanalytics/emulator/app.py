"""The emulator: Profile Store (query, preview, delete), Tracking API and Event API over one
Starlette app, with fault injection, a request journal and admin routes.

See ``docs/emulator.md`` for what is emulated and what is not.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import polars as pl
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from psanalytics import schema
from psanalytics._time import instant_or_none
from psanalytics.emulator.faults import Decision, DroppedConnection, Faults
from psanalytics.emulator.odp import OdpService
from psanalytics.emulator.profiles import ProfilesService
from psanalytics.emulator.store import EventStore
from psanalytics.errors import ArgumentError, TimeError
from psanalytics.query.odata import ODataError, parse_orderby

if TYPE_CHECKING:
    import httpx

try:
    from psanalytics import __version__ as _PSA_VERSION
except ImportError:  # pragma: no cover
    _PSA_VERSION = "0"

EMULATOR_VERSION = f"psanalytics-emulator/{_PSA_VERSION}"
VERSION_HEADER = "X-Psanalytics-Emulator"
IN_PROCESS_URL = "http://psanalytics-emulator"

# The API's limits, kept here on purpose apart from psanalytics.wire.limits (the client's
# copy): the emulator is an independent oracle of shared/spec/apis.md, so a wrong
# client-side number fails the tests instead of being shared by both sides.
WINDOW = 10_000
DEFAULT_TOP = 100
MAX_BULK = 100
MAX_TRACK_BYTES = 256 * 1024
MAX_EVENT_API_BYTES = 3_500_000
SCOPE_RE = re.compile(r"^[a-z0-9_]{1,64}$")
MAX_CUSTOM_SCOPES = 20

_ERROR_CODES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                405: "MethodNotAllowed", 413: "PayloadTooLarge", 429: "TooManyRequests",
                500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable",
                504: "GatewayTimeout"}

# Route table: (name, method, regex on the lower-cased path). Names match Faults.routes.
_ROUTES: list[tuple[str, str, re.Pattern[str]]] = [
    ("trackevents", "GET", re.compile(r"^/api/v(?:2\.0|1\.0)/trackevents/?$")),
    ("profiles", "GET", re.compile(r"^/api/v(?:2\.0|1\.0)/profiles/?$")),
    ("preview", "POST", re.compile(r"^/api/v2\.0/trackevents/preview/?$")),
    ("delete", "DELETE", re.compile(r"^/api/v2\.0/trackevents/(?P<scope>[^/]+)/(?P<id>[^/]+)/?$")),
    ("delete", "DELETE", re.compile(r"^/api/v1\.0/trackingevents/(?P<scope>[^/]+)/(?P<id>[^/]+)/?$")),
    ("track", "POST", re.compile(r"^/api/v1\.0/track/?$")),
    ("trackbulk", "POST", re.compile(r"^/api/v1\.0/trackbulk/?$")),
    ("events", "POST", re.compile(r"^/v1/events/?$")),
    ("odp_events", "POST", re.compile(r"^/v3/events/?$")),
    ("odp_profiles", "POST", re.compile(r"^/v3/profiles/?$")),
    ("admin_state", "GET", re.compile(r"^/_emulator/state/?$")),
    ("admin_reset", "POST", re.compile(r"^/_emulator/reset/?$")),
    ("admin_faults", "POST", re.compile(r"^/_emulator/faults/?$")),
    ("admin_faults_get", "GET", re.compile(r"^/_emulator/faults/?$")),
    ("admin_purge", "POST", re.compile(r"^/_emulator/purge/?$")),
    ("admin_health", "GET", re.compile(r"^/_emulator/health/?$")),
    ("admin_docs", "GET", re.compile(r"^/_emulator/docs/?$")),
]

#: What /_emulator/docs lists: (method, path, auth, what it does).
ROUTE_DOCS: list[tuple[str, str, str, str]] = [
    ("GET", "/api/v2.0/TrackEvents", "epi-single", "$filter, $orderby, $skip, $top (skip+top < 10000); "
     '{"items","total","count"}'),
    ("GET", "/api/v1.0/trackevents", "epi-single", "same as v2"),
    ("GET", "/api/v2.0/Profiles", "epi-single", "profiles (given, or derived from the events); "
     "same parameters and window as TrackEvents"),
    ("POST", "/api/v2.0/TrackEvents/preview", "epi-single", '{"Query","Scope"} -> KQL over Events, '
     "at most 1,000 rows"),
    ("DELETE", "/api/v2.0/TrackEvents/{scope}/{id}", "epi-single", "200, 404, 429 + Retry-After"),
    ("DELETE", "/api/v1.0/trackingevents/{scope}/{id}", "epi-single", "same as v2"),
    ("POST", "/api/v1.0/Track", "epi-single", "one camelCase event -> 202"),
    ("POST", "/api/v1.0/TrackBulk", "epi-single", "<= 100 events of <= 256 KB -> 202"),
    ("POST", "/v1/events", "none", "Event API: 204; 400 non-JSON, > 3.5 MB, or strict errors"),
    ("POST", "/v3/events", "x-api-key", "ODP events: object or array of <= 500 -> 202; 400 lists invalids"),
    ("POST", "/v3/profiles", "x-api-key", "ODP customers: {attributes} or array of <= 500 -> 202"),
    ("GET", "/_emulator/state?limit=N", "none (key off loopback)", "counts, Event API log, journal, faults"),
    ("POST", "/_emulator/reset", "none (key off loopback)", "back to the seeded events"),
    ("GET|POST", "/_emulator/faults", "none (key off loopback)", "read / set faults (JSON object or key=value text)"),
    ("POST", "/_emulator/purge", "none (key off loopback)", "drop deleted events now"),
    ("GET", "/_emulator/health", "none", "status, version, event count"),
    ("GET", "/_emulator/docs", "none", "this list"),
]
_ADMIN_PREFIX = "/_emulator/"
#: Admin routes that stay open when the admin routes need a key (they reveal nothing).
_OPEN_ADMIN = frozenset({"admin_health", "admin_docs"})


class _BodyTooLarge(Exception):
    """A request body without (or with a false) Content-Length grew past the cap."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the request body is larger than the {limit:,} bytes the emulator reads")


async def _send_error(send: Any, status: int, message: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": error_body(status, message)})


#: Tracking API: a repeated trackId in one scope within this long is skipped ...
TRACK_ID_WINDOW_NS = 72 * 3600 * 10**9
#: ... and longer ids are cut to this many characters (shared/spec/apis.md section 5).
MAX_TRACK_ID = 64


#: The query parameters TrackEvents reads (lower case); any other is ignored.
_QUERY_PARAMS = frozenset({"$filter", "$orderby", "$skip", "$top"})


def error_body(status: int, message: str, code: str | None = None) -> bytes:
    return orjson.dumps({"error": {"code": code or _ERROR_CODES.get(status, "Error"), "message": message}})


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(error_body(status, message), status_code=status, headers=dict(headers or {}),
                    media_type="application/json")


def _json(data: bytes, status: int = 200) -> Response:
    return Response(data, status_code=status, media_type="application/json; charset=utf-8")


# --------------------------------------------------------------------------- countries

# A small deterministic IP -> country table (first octet ranges of public IPv4 space).
_COUNTRY_TABLE: list[tuple[int, int, str]] = [
    (1, 2, "AU"), (3, 4, "US"), (5, 5, "DE"), (8, 8, "US"), (13, 13, "US"), (31, 31, "NL"),
    (37, 37, "FR"), (46, 46, "SE"), (62, 62, "GB"), (77, 77, "NO"), (78, 79, "DK"),
    (80, 80, "GB"), (81, 81, "SE"), (82, 82, "FI"), (83, 83, "ES"), (84, 84, "DE"),
    (85, 85, "NL"), (86, 86, "GB"), (87, 87, "IT"), (88, 88, "FR"), (89, 89, "PL"),
    (90, 90, "FR"), (91, 91, "DE"), (92, 92, "GB"), (93, 93, "IT"), (94, 94, "SE"),
    (95, 95, "RU"), (101, 101, "CN"), (103, 103, "SG"), (110, 126, "JP"), (130, 169, "US"),
    (170, 191, "BR"), (193, 195, "DE"), (196, 197, "ZA"), (200, 201, "AR"), (202, 203, "IN"),
    (204, 216, "US"),
]
_COUNTRY_FALLBACK = ("US", "GB", "DE", "SE", "FR", "NL", "NO", "DK", "FI", "ES")


def country_for_ip(ip: str) -> str:
    """CountryCode for an IP: ``Localhost`` for loopback, "" for private or bad addresses,
    else a deterministic table lookup (first-octet ranges; IPv6 by a stable hash)."""
    if not ip:
        return ""
    try:
        addr = ipaddress.ip_address(ip.strip().strip("[]"))
    except ValueError:
        return ""
    if addr.is_loopback:
        return "Localhost"
    if addr.is_private or addr.is_link_local or addr.is_unspecified or addr.is_multicast:
        return ""
    if addr.version == 4:
        first = int(str(addr).split(".")[0])
        for lo, hi, cc in _COUNTRY_TABLE:
            if lo <= first <= hi:
                return cc
        return _COUNTRY_FALLBACK[first % len(_COUNTRY_FALLBACK)]
    return _COUNTRY_FALLBACK[int(addr) % len(_COUNTRY_FALLBACK)]


# --------------------------------------------------------------------------- encoding


def encode_generic(frame: pl.DataFrame) -> list[str]:
    """JSON object text per row for any frame (datetimes as 7-digit ``Z`` text; a String
    ``Payload`` column is embedded as JSON, as the API does)."""
    if frame.height == 0:
        return []
    if frame.schema == schema.EVENTS_SCHEMA:
        return schema.api_json_lines(frame).to_list()
    exprs = []
    payload = "Payload" in frame.columns and frame.schema["Payload"] == pl.String
    for name, dtype in frame.schema.items():
        if payload and name == "Payload":
            continue
        col = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            if dtype.time_zone is None:
                col = col.dt.replace_time_zone("UTC")
            col = schema.format_time_expr(col.dt.cast_time_unit("ns"))
        elif isinstance(dtype, (pl.Date, pl.Time)):
            col = col.cast(pl.String)
        elif isinstance(dtype, pl.Duration):
            col = col.dt.total_microseconds().cast(pl.Float64) / 1e6
        elif dtype == pl.Object or dtype == pl.Decimal:
            col = col.cast(pl.String)
        exprs.append(col.alias(name))
    if not exprs:
        head = pl.Series(["{}"] * frame.height)
    else:
        head = frame.select(pl.struct(exprs).struct.json_encode().alias("j")).to_series()
    if payload:
        pl_text = frame.get_column("Payload").fill_null("null")
        joined = pl.select(
            pl.when(pl.lit(head) == "{}")
            .then('{"Payload":' + pl.lit(pl_text) + "}")
            .otherwise(pl.lit(head).str.head(-1) + ',"Payload":' + pl.lit(pl_text) + "}")
        ).to_series()
        return joined.to_list()
    return head.to_list()


def _now_ns() -> int:
    return time.time_ns()


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
        self._faults_initial = Faults.parse(faults)  # bad fault specs fail before loading data
        self._initial = self._load(events)
        self._snapshot_dir = (Path(events) if isinstance(events, (str, Path))
                              and (Path(events) / "_emulator_snapshot.json").is_file() else None)
        if max_events is not None and self._initial.height > max_events:
            raise ArgumentError(f"{self._initial.height:,} events exceed max_events={max_events:,}")
        self.__key = api_key or secrets.token_urlsafe(18)
        self.__tracking_key = tracking_key
        self.__admin_token = admin_token
        #: When True, the admin routes that read or change state (state, reset, faults,
        #: purge) need the API key or ``admin_token``; ``serve()`` turns it on whenever it
        #: binds anything but loopback. Health and docs stay open.
        self.admin_auth = bool(admin_auth or admin_token)
        self.__odp_key = odp_api_key
        self.odp = OdpService(lambda: self.odp_api_key)
        #: GET api/v2.0/Profiles: ``profiles`` (a file, API objects or a profiles frame),
        #: else the profiles the events imply (psanalytics/emulator/profiles.py).
        self.profiles = ProfilesService(self.events, self._events_version, self._load_profiles(profiles))
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
        self._journal_size = journal_size
        self._lock = threading.RLock()
        self._reset_state(self._faults_initial)
        self.started_at = datetime.now(UTC)
        self._starlette = Starlette(routes=[Route("/{path:path}", self._dispatch, methods=[
            "GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"])])
        self.app = _OuterApp(self)

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _load(events: Any) -> pl.DataFrame:
        if events is None:
            from psanalytics import samples

            return schema.normalize(samples.default_events())
        if isinstance(events, (str, Path)):
            from psanalytics import exports

            p = Path(events)
            if (p / "_emulator_snapshot.json").is_file():
                return schema.normalize(pl.read_parquet(p / "events" / "events.parquet"))
            return schema.normalize(exports.read_events(events))
        return schema.normalize(events)

    def _load_profiles(self, profiles: Any) -> pl.DataFrame | None:
        from psanalytics.wire.profiles import read_profiles

        if profiles is None and self._snapshot_dir is not None:
            saved = self._snapshot_dir / "profiles" / "profiles.parquet"
            return read_profiles(saved) if saved.is_file() else None
        return None if profiles is None else read_profiles(profiles)

    def _events_version(self) -> tuple[int, ...]:
        st = self.store
        return (id(st), len(st), st.tracked_total, st.deleted_total, st.purged_total)

    def _reset_state(self, faults: Faults | None) -> None:
        self.store = EventStore(self._initial, lenient=self.lenient)
        self.faults: Faults | None = Faults.parse(faults.to_dict()) if faults is not None else None
        self._accepted: list[dict[str, Any]] = []
        self._accepted_keys: set[tuple[Any, Any, Any]] = set()
        #: (scope, trackId) -> when it was last tracked (ns): the Tracking API's dedupe.
        self._tracked_ids: dict[tuple[str, str], int] = {}
        self._rejected: list[dict[str, Any]] = []
        self._event_api = {"requests": 0, "accepted": 0, "rejected": 0, "duplicates": 0}
        self._journal: deque[dict[str, Any]] = deque(maxlen=self._journal_size)
        self._seq = 0
        self._next_purge = self._next_midnight()
        self.odp.reset()
        if getattr(self, "_snapshot_dir", None) is not None:
            self._restore_event_api(self._snapshot_dir)

    @staticmethod
    def _next_midnight() -> float:
        now = time.time()
        return now - (now % 86_400) + 86_400

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
        with self._lock:
            rows = list(self._accepted)
        return _records_frame(rows, _ACCEPTED_SCHEMA)

    def rejected_events(self) -> pl.DataFrame:
        """Event API events (or whole bodies) dropped, with ``path`` and ``reason``."""
        with self._lock:
            rows = list(self._rejected)
        return _records_frame(rows, _REJECTED_SCHEMA)

    def set_faults(self, faults: Faults | Mapping[str, Any] | str | None) -> None:
        """Replace the fault settings (None turns faults off); the RNG restarts at the seed."""
        self.faults = Faults.parse(faults)

    def reset(self) -> None:
        """Back to the seeded events, no deletions, empty Event API log, empty journal,
        and the faults given at construction."""
        with self._lock:
            self._reset_state(self._faults_initial)

    def purge(self) -> int:
        """Run the daily clean-up now: deleted events are dropped for good."""
        return self.store.purge()

    def snapshot(self, folder: str | Path) -> Path:
        """Write the visible events and the Event API log to a Parquet folder.

        Layout: ``events/events.parquet``, ``event_api/accepted.parquet``,
        ``event_api/rejected.parquet`` and ``_emulator_snapshot.json``. ``Emulator(folder)``
        (or ``psanalytics serve --data folder``) starts from it again, Event API log included.
        """
        out = Path(folder)
        (out / "events").mkdir(parents=True, exist_ok=True)
        (out / "event_api").mkdir(parents=True, exist_ok=True)
        self.events().write_parquet(out / "events" / "events.parquet")
        self.accepted_events().write_parquet(out / "event_api" / "accepted.parquet")
        self.rejected_events().write_parquet(out / "event_api" / "rejected.parquet")
        meta = {"version": EMULATOR_VERSION, "written_at": datetime.now(UTC).isoformat(),
                "events": len(self.store), "event_api": self._event_api}
        (out / "_emulator_snapshot.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
        return out

    def _restore_event_api(self, folder: Path) -> None:
        acc = pl.read_parquet(folder / "event_api" / "accepted.parquet")
        rej = pl.read_parquet(folder / "event_api" / "rejected.parquet")
        self._accepted = acc.to_dicts()
        self._accepted_keys = {(r["entity_id"], r["uuid"], r["timestamp"]) for r in self._accepted}
        self._rejected = rej.to_dicts()
        self._event_api.update(accepted=len(self._accepted), rejected=len(self._rejected))

    def state(self, *, limit: int | None = None) -> dict[str, Any]:
        """Counts, Event API accepted/rejected events, the request journal and the faults.

        ``limit`` caps the lists (the latest entries are kept)."""
        with self._lock:
            acc = list(self._accepted)
            rej = list(self._rejected)
            journal = list(self._journal)
            ev = dict(self._event_api)
        if limit is not None:
            acc, rej, journal = acc[-limit:] if limit else [], rej[-limit:] if limit else [], journal[-limit:] if limit else []
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
            "requests": self._seq,
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

    # ------------------------------------------------------------------ plumbing
    def route_of(self, method: str, path: str) -> tuple[str | None, dict[str, str], bool]:
        """(route name, path params, path known for another method)."""
        low = path.lower()
        other = False
        for name, m, rx in _ROUTES:
            hit = rx.match(low)
            if hit:
                if m == method or (m == "GET" and method == "HEAD"):
                    # Path params keep the request's own case.
                    orig = rx.match(low)
                    params = {}
                    if orig and orig.groupdict():
                        # Recover original-case values by span.
                        for g in orig.groupdict():
                            s, e = orig.span(g)
                            params[g] = path[s:e]
                    return name, params, False
                other = True
        return None, {}, other

    def journal(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            entry["seq"] = self._seq
            self._journal.append(entry)

    def _authorized(self, request: Request, key: str) -> bool:
        auth = request.headers.get("authorization", "")
        parts = auth.split(None, 1)
        if len(parts) == 2 and parts[0].lower() == "epi-single" and secrets.compare_digest(
            parts[1].strip().encode(), key.encode()
        ):
            return True
        sub = request.headers.get("ocp-apim-subscription-key")
        return bool(sub) and secrets.compare_digest(sub.strip().encode(), key.encode())

    def _maybe_daily_purge(self) -> None:
        """The daily clean-up: at the first request after UTC midnight, deleted events
        are dropped for good (the Event API log is never touched)."""
        if time.time() >= self._next_purge:
            self._next_purge = self._next_midnight()
            self.store.purge()

    async def _dispatch(self, request: Request) -> Response:
        try:
            return await self._dispatch_inner(request)
        except _BodyTooLarge as exc:
            return _error(413, str(exc), headers={"Connection": "close"})
        except Exception as exc:  # noqa: BLE001 - an emulator bug must still answer like the API
            return _error(500, f"internal error in the emulator: {type(exc).__name__}: {exc}")

    async def _dispatch_inner(self, request: Request) -> Response:
        name = request.scope.get("psa.route")
        params = request.scope.get("psa.params", {})
        if name is None:
            if request.scope.get("psa.other_method"):
                return _error(405, f"{request.method} is not allowed on {request.url.path}")
            return _error(404, f"no such route: {request.method} {request.url.path}")
        if name.startswith("admin_"):
            if (self.admin_auth and name not in _OPEN_ADMIN
                    and not self._authorized(request, self.api_key)
                    and not (self.__admin_token and self._authorized(request, self.__admin_token))):
                return _error(401, "the emulator's admin routes need the API key (or the admin token) "
                                   "when it is not bound to loopback: send 'Authorization: "
                                   "epi-single <key>'")
            return await getattr(self, f"_{name}")(request)
        if name == "events":
            return await self._event_api_post(request)
        if name == "odp_events":
            return await self.odp.events(request)
        if name == "odp_profiles":
            return await self.odp.profiles(request)
        key = self.tracking_key if name in ("track", "trackbulk") else self.api_key
        if not self._authorized(request, key):
            return _error(401, "missing or invalid API key: send 'Authorization: epi-single <key>' "
                               "or 'Ocp-Apim-Subscription-Key: <key>'")
        self._maybe_daily_purge()
        if name == "trackevents":
            return await self._get_trackevents(request)
        if name == "profiles":
            return await self.profiles.get(request, lenient=self.lenient, lenient_window=self.lenient_window)
        if name == "preview":
            return await self._preview(request)
        if name == "delete":
            return await run_in_threadpool(self._delete, params["scope"], params["id"])
        return await self._track(request, bulk=name == "trackbulk")

    # ------------------------------------------------------------------ Profile Store
    async def _get_trackevents(self, request: Request) -> Response:
        q: dict[str, str] = {}
        for k, v in request.query_params.multi_items():
            lk = k.lower()
            if lk not in _QUERY_PARAMS:
                # ASP.NET ignores parameters an action does not bind, and shipped callers
                # sent some (appKey=..., a bare 0): answered as if they were not there.
                continue
            if lk in q:
                return _error(400, f"query parameter {k} given more than once")
            q[lk] = v
        try:
            skip = int(q.get("$skip", "0"))
            top = int(q.get("$top", str(DEFAULT_TOP)))
        except ValueError:
            return _error(400, f"$skip and $top must be integers (got $skip={q.get('$skip')!r}, "
                               f"$top={q.get('$top')!r})")
        if skip < 0 or top < 0:
            return _error(400, "$skip and $top must not be negative")
        limit_ok = skip + top <= WINDOW if self.lenient_window else skip + top < WINDOW
        if not limit_ok:
            bound = f"at most {WINDOW:,}" if self.lenient_window else f"less than {WINDOW:,}"
            return _error(400, f"the result window is too large: $skip + $top = {skip + top:,} must be "
                               f"{bound} (skip={skip}, top={top})")
        ftext = q.get("$filter")
        if ftext is not None and not ftext.strip():
            ftext = None
        try:
            orderby = parse_orderby(q.get("$orderby"))
        except ODataError as exc:
            return _error(400, str(exc))

        def run() -> bytes:
            res = self.store.query(ftext, orderby=orderby, skip=skip, top=top, with_source=True)
            if res.source is not None:  # the rows' JSON was ready: no encoding
                return schema.join_api_json(res.source, envelope=True, total=res.total)
            return schema.to_api_json(res.page, envelope=True, total=res.total)

        try:
            body = await run_in_threadpool(run)
        except ODataError as exc:
            return _error(400, str(exc))
        return _json(body)

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
        try:
            from psanalytics.query import kql as kqlmod
        except ImportError:  # pragma: no cover - the KQL engine is part of the package
            return _error(500, "the KQL engine is not available")

        with self._lock:
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
            with self._lock:
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

    def _delete(self, scope: str, track_id: str) -> Response:
        if not SCOPE_RE.match(scope):
            return _error(400, f"invalid scope {scope!r}: up to 64 lower-case letters, digits or _")
        with self._lock:
            if self.store.pending_deletions + 1 > self.pending_delete_limit:
                retry = max(1, int(self._next_purge - time.time()))
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
    async def _track(self, request: Request, *, bulk: bool) -> Response:
        raw = await request.body()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return _error(400, f"the body is not JSON: {exc}")
        if bulk:
            if not isinstance(body, list):
                return _error(400, "TrackBulk takes a JSON array of events")
            if len(body) > MAX_BULK:
                return _error(400, f"TrackBulk takes at most {MAX_BULK} events, got {len(body)}")
            items = body
        else:
            if not isinstance(body, dict):
                return _error(400, "Track takes one JSON object")
            if len(raw) > MAX_TRACK_BYTES:
                return _error(400, f"the event is {len(raw):,} bytes; at most {MAX_TRACK_BYTES:,}")
            items = [body]
        header_ip = request.headers.get("epi-user-ip-address", "")
        records: list[dict[str, Any]] = []
        errors: list[str] = []
        scopes: set[str] = set()
        for i, item in enumerate(items):
            where = f"event [{i}]" if bulk else "the event"
            if not isinstance(item, dict):
                errors.append(f"{where} is not a JSON object")
                continue
            if bulk:
                size = len(orjson.dumps(item))
                if size > MAX_TRACK_BYTES:
                    errors.append(f"{where} is {size:,} bytes; at most {MAX_TRACK_BYTES:,}")
                    continue
            rec, err = self._track_record(item, header_ip)
            if err:
                errors.append(f"{where}: {err}")
            else:
                records.append(rec)
                scopes.add(rec["Scope"])
        if errors:
            return _error(400, "; ".join(errors[:20]) + (f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""))
        existing = set(self.store.events().get_column("Scope").unique().to_list()) if scopes - {"default"} else set()
        custom = (existing | scopes) - {"default", ""}
        if len(custom) > MAX_CUSTOM_SCOPES:
            return _error(400, f"at most {MAX_CUSTOM_SCOPES} custom scopes; this would make {len(custom)}")
        if self.max_events is not None and len(self.store) + len(records) > self.max_events:
            return _error(429, f"the emulator holds at most {self.max_events:,} events (max_events)",
                          headers={"Retry-After": "60"})
        records = self._skip_repeated_track_ids(records)
        frame = schema.normalize(records)
        await run_in_threadpool(self.store.append, frame)
        if self.mirror is not None:
            self._mirror(schema.api_json_lines(frame).to_list())
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

    def _skip_repeated_track_ids(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The Tracking API's dedupe: an event whose trackId was tracked in the same scope
        within the last 72 hours is skipped silently (events without one are all kept)."""
        now = _now_ns()
        kept = []
        with self._lock:
            for rec in records:
                tid = rec["TrackId"] if rec.pop("_sent_track_id", False) else ""
                if tid:
                    key = (rec["Scope"], tid)
                    seen = self._tracked_ids.get(key)
                    if seen is not None and now - seen < TRACK_ID_WINDOW_NS:
                        continue
                    self._tracked_ids[key] = now
                kept.append(rec)
        return kept

    def _track_record(self, item: dict[str, Any], header_ip: str) -> tuple[dict[str, Any], str | None]:
        low = {str(k).lower(): v for k, v in item.items()}
        missing = [k for k in ("deviceId", "eventType", "value") if low.get(k.lower()) in (None, "")]
        if missing:
            return {}, f"missing required field(s) {', '.join(missing)}"
        for k in ("deviceid", "eventtype", "value", "pageuri", "pagetitle", "remoteaddress", "scope"):
            v = low.get(k)
            if v is not None and not isinstance(v, str):
                return {}, f"{k} must be a string, got {type(v).__name__}"
        scope = low.get("scope") or "default"
        if not SCOPE_RE.match(scope):
            return {}, f"invalid scope {scope!r}: up to 64 lower-case letters, digits or _"
        et = low.get("eventtime")
        if et in (None, ""):
            ns = _now_ns()
        else:
            try:
                ns = instant_or_none(et) if isinstance(et, str) else None
            except TimeError as exc:
                return {}, f"eventTime: {exc}"
            if ns is None:
                return {}, f"eventTime {et!r} is not an ISO 8601 time"
        user = low.get("user")
        if user is not None and not isinstance(user, dict):
            return {}, "user must be an object {name, email, info}"
        ulow = {str(k).lower(): v for k, v in (user or {}).items()}
        payload = low.get("payload")
        ip = low.get("remoteaddress") or header_ip or ""
        t = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
        sent = low.get("trackid")
        if sent is not None and not isinstance(sent, str):
            return {}, f"trackId must be a string, got {type(sent).__name__}"
        track_id = (sent or "")[:MAX_TRACK_ID]  # longer ids are cut, as the service does
        if not track_id and self.track_ids == "assign":
            track_id = str(uuid.uuid4())
        return {
            "_sent_track_id": bool(sent),
            "TrackId": track_id,
            "DeviceId": low["deviceid"],
            "EventType": low["eventtype"],
            "Value": low["value"],
            "Scope": scope,
            "PageUri": low.get("pageuri") or "",
            "PageTitle": low.get("pagetitle") or "",
            "RemoteAddress": ip,
            "CountryCode": country_for_ip(ip),
            "City": "",
            "SessionId": str(low.get("sessionid") or ""),
            "EventTime": t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ns % 1_000_000_000:09d}Z",
            "User": {"Email": str(ulow.get("email") or ""), "Name": str(ulow.get("name") or ""),
                     # 2017-era bodies sent ``user.information`` for what is now ``user.info``
                     **({"Info": info} if (info := ulow.get("info", ulow.get("information"))) is not None
                        else {})},
            "Payload": None if payload is None else orjson.dumps(payload).decode(),
        }, None

    # ------------------------------------------------------------------ Event API
    async def _event_api_post(self, request: Request) -> Response:
        raw = await request.body()
        with self._lock:
            self._event_api["requests"] += 1
        if len(raw) > MAX_EVENT_API_BYTES:
            return _error(400, f"the body is {len(raw):,} bytes; the Event API takes at most "
                               f"{MAX_EVENT_API_BYTES:,} (3.5 MB)")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return _error(400, f"the body is not JSON: {exc}")
        strict_hdr = request.headers.get("x-optimizely-strict", "").strip().lower() == "true"
        strict = strict_hdr and self.strict
        accepted, rejected, errors = _validate_event_body(body)
        if strict and errors:
            return Response(orjson.dumps({"errors": [{"path": p, "message": m} for p, m in errors]}),
                            status_code=400, media_type="application/json")
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        dup = 0
        with self._lock:
            for rec in accepted:
                key = (rec["entity_id"], rec["uuid"], rec["timestamp"])
                if key in self._accepted_keys:
                    dup += 1
                    continue
                self._accepted_keys.add(key)
                rec["received_at"] = now
                self._accepted.append(rec)
            for rec in rejected:
                rec["received_at"] = now
                self._rejected.append(rec)
            self._event_api["accepted"] += len(accepted) - dup
            self._event_api["duplicates"] += dup
            self._event_api["rejected"] += len(rejected)
        return Response(b"", status_code=204)

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
        return _json(orjson.dumps({"faults": self.faults.to_dict() if self.faults else None}))

    async def _admin_faults_get(self, request: Request) -> Response:
        return _json(orjson.dumps({"faults": self.faults.to_dict() if self.faults else None}))

    async def _admin_purge(self, request: Request) -> Response:
        n = await run_in_threadpool(self.purge)
        return _json(orjson.dumps({"purged": n}))

    async def _admin_docs(self, request: Request) -> Response:
        return _json(orjson.dumps({
            "version": EMULATOR_VERSION,
            "routes": [{"method": m, "path": p, "auth": a, "what": w} for m, p, a, w in ROUTE_DOCS],
            "not_emulated": "see docs/emulator.md: other Profile Store resources, Headers and "
                            "User.Info, real geolocation, Event API processing, real rate limits",
        }))

    async def _admin_health(self, request: Request) -> Response:
        return _json(orjson.dumps({
            "status": "ok", "version": EMULATOR_VERSION, "events": len(self.store),
            "started_at": self.started_at.isoformat(),
        }))


# --------------------------------------------------------------------------- outer ASGI layer


class _OuterApp:
    """Outermost ASGI layer: routing lookup, faults, journal and the version header.

    It must be the outermost app: dropping a connection closes uvicorn's transport, which
    it reaches through the ``send`` callable uvicorn hands to the app.
    """

    def __init__(self, emulator: Emulator):
        self.emulator = emulator

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        emu = self.emulator
        method, path = scope["method"], scope["path"]
        name, params, other = emu.route_of(method, path)
        scope = dict(scope)
        scope["psa.route"], scope["psa.params"], scope["psa.other_method"] = name, params, other
        faults = emu.faults
        decision = faults.decide(name) if faults is not None and not path.lower().startswith(_ADMIN_PREFIX) else Decision()
        t0 = time.perf_counter()
        entry: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(),
            "method": method,
            "path": path,
            "query": scope.get("query_string", b"").decode("latin-1"),
            "route": name,
            "fault": decision.kind,
        }
        status_box: list[int] = [0]
        recorded = False

        def record() -> None:
            # The journal is written BEFORE the last byte of the response goes out, so a
            # client that has its answer always finds its request in /_emulator/state.
            nonlocal recorded
            if not recorded:
                recorded = True
                entry.setdefault("status", status_box[0] or None)
                entry["duration_ms"] = round((time.perf_counter() - t0) * 1000, 3)
                emu.journal(entry)

        if decision.delay:
            await asyncio.sleep(decision.delay)

        async def send_v(message):
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((VERSION_HEADER.lower().encode(), EMULATOR_VERSION.encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and (
                not message.get("more_body") or decision.kind == "truncate"
            ):
                record()  # a truncated body is the last the client gets: record before it
            await send(message)

        try:
            if decision.kind == "drop":
                entry["status"] = None
                # Read the whole request first: closing with request bytes still unread
                # makes the kernel send a reset, which a client sees as a read error at a
                # random point; this way every drop is "disconnected without a response".
                await _drain(receive)
                record()
                _drop(send)
                return
            if decision.kind in ("rate_limit", "error"):
                status = 429 if decision.kind == "rate_limit" else int(decision.status or 500)
                headers = [(b"content-type", b"application/json")]
                if status == 429 and faults is not None and faults.retry_after is not None:
                    headers.append((b"retry-after", faults.retry_after.encode()))
                msg = ("too many requests (injected fault)" if status == 429
                       else "injected fault: the server failed")
                body = error_body(status, msg)
                await send_v({"type": "http.response.start", "status": status, "headers": headers})
                await send_v({"type": "http.response.body", "body": body})
                return
            if decision.kind == "truncate":
                await self._truncated(scope, receive, send_v, send, decision)
                return
            if decision.kind == "drip":
                await self._drip(scope, receive, send_v, faults.drip_seconds if faults else 1.0)
                return
            limit = emu.max_body_bytes
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and length.strip().isdigit() and int(length) > limit:
                await _send_error(send_v, 413, f"the request body is {int(length):,} bytes; the "
                                               f"emulator reads at most {limit:,}")
                return
            got = [0]

            async def capped_receive():
                message = await receive()
                if message.get("type") == "http.request":
                    got[0] += len(message.get("body", b""))
                    if got[0] > limit:
                        raise _BodyTooLarge(limit)
                return message

            await emu._starlette(scope, capped_receive, send_v)
        finally:
            record()  # an app error or a client gone before the end

    async def _drip(self, scope, receive, send_v, seconds: float) -> None:
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def collect(message):
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.emulator._starlette(scope, receive, collect)
        body = b"".join(chunks)
        await send_v(start)
        step = max(1, -(-len(body) // 10))
        pieces = [body[i:i + step] for i in range(0, len(body), step)] or [b""]
        for i, piece in enumerate(pieces):
            await asyncio.sleep(seconds / len(pieces))
            await send_v({"type": "http.response.body", "body": piece,
                          "more_body": i < len(pieces) - 1})

    async def _truncated(self, scope, receive, send_v, raw_send, decision: Decision) -> None:
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def collect(message):
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.emulator._starlette(scope, receive, collect)
        body = b"".join(chunks)
        if start.get("status") != 200 or len(body) < 2:
            await send_v(start)
            await send_v({"type": "http.response.body", "body": body})
            return
        keep = max(1, min(len(body) - 1, int(len(body) * decision.cut)))
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send_v({"type": "http.response.start", "status": 200, "headers": headers})
        if _socket_of(raw_send) is None:  # in-process: the transport sees the short body
            await send_v({"type": "http.response.body", "body": body[:keep]})
            return
        await send_v({"type": "http.response.body", "body": body[:keep], "more_body": True})
        _drop(raw_send, started=True)


async def _drain(receive) -> None:
    """Consume the request body (until its last chunk, or the client going away)."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def _socket_of(send) -> Any:
    return getattr(getattr(send, "__self__", None), "transport", None)


def _drop(send, *, started: bool = False) -> None:
    """Close the client connection without (the rest of) a response."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None:
        try:
            cycle.disconnected = True  # uvicorn then sends no 500 of its own
            if started:
                cycle.response_complete = True
        except AttributeError:  # pragma: no cover
            pass
        transport.close()
        return
    raise DroppedConnection("connection dropped (injected fault)")


# --------------------------------------------------------------------------- Event API validation

_ACCEPTED_SCHEMA = {
    "account_id": pl.String, "project_id": pl.String, "client_name": pl.String,
    "client_version": pl.String, "anonymize_ip": pl.Boolean, "visitor_id": pl.String,
    "session_id": pl.String, "entity_id": pl.String, "key": pl.String, "type": pl.String,
    "uuid": pl.String, "timestamp": pl.Int64, "value": pl.Float64, "revenue": pl.Int64,
    "quantity": pl.Int64, "tags": pl.String, "properties": pl.String, "decisions": pl.String,
    "attributes": pl.String, "received_at": pl.String,
}
_REJECTED_SCHEMA = {"path": pl.String, "reason": pl.String, "visitor_id": pl.String,
                    "uuid": pl.String, "event": pl.String, "received_at": pl.String}


def _records_frame(rows: list[dict[str, Any]], sch: dict[str, Any]) -> pl.DataFrame:
    cols = {k: [r.get(k) for r in rows] for k in sch}
    return pl.DataFrame(cols, schema=sch)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _validate_event_body(body: Any) -> tuple[list[dict], list[dict], list[tuple[str, str]]]:
    """Split an Event API body into accepted event records, rejected records and the
    field errors (path, message) that strict mode answers with."""
    errors: list[tuple[str, str]] = []
    accepted: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []

    def reject(path: str, reason: str, **kw: Any) -> None:
        errors.append((path, reason))
        rejected.append({"path": path, "reason": reason, **kw})

    if not isinstance(body, dict):
        reject("", "the body must be a JSON object")
        return accepted, rejected, errors
    head_ok = True
    if not _is_str(body.get("account_id")) or not body.get("account_id"):
        reject("account_id", "required: a non-empty string")
        head_ok = False
    for k in ("project_id", "client_name", "client_version", "revision"):
        if k in body and body[k] is not None and not _is_str(body[k]):
            reject(k, f"must be a string, got {type(body[k]).__name__}")
            head_ok = False
    for k in ("anonymize_ip", "enrich_decisions"):
        if k in body and not isinstance(body[k], bool):
            reject(k, f"must be a boolean, got {type(body[k]).__name__}")
            head_ok = False
    visitors = body.get("visitors")
    if not isinstance(visitors, list) or not visitors:
        reject("visitors", "required: a non-empty array of visitors")
        return accepted, rejected, errors
    base = {
        "account_id": body.get("account_id") if _is_str(body.get("account_id")) else None,
        "project_id": body.get("project_id") if _is_str(body.get("project_id")) else None,
        "client_name": body.get("client_name") if _is_str(body.get("client_name")) else None,
        "client_version": body.get("client_version") if _is_str(body.get("client_version")) else None,
        "anonymize_ip": body.get("anonymize_ip", True) if isinstance(body.get("anonymize_ip", True), bool) else True,
    }
    for vi, visitor in enumerate(visitors):
        vp = f"visitors[{vi}]"
        if not isinstance(visitor, dict):
            reject(vp, "must be an object")
            continue
        vid = visitor.get("visitor_id")
        v_ok = head_ok
        if not _is_str(vid) or not vid:
            reject(f"{vp}.visitor_id", "required: a non-empty string")
            v_ok = False
        sid = visitor.get("session_id")
        if sid is not None and not _is_str(sid):
            reject(f"{vp}.session_id", "must be a string")
            v_ok = False
        attrs = visitor.get("attributes", [])
        if not isinstance(attrs, list):
            reject(f"{vp}.attributes", "must be an array")
            v_ok = False
            attrs = []
        for ai, a in enumerate(attrs):
            ap = f"{vp}.attributes[{ai}]"
            if not isinstance(a, dict):
                reject(ap, "must be an object")
                v_ok = False
                continue
            if not _is_str(a.get("type")) or not a.get("type"):
                reject(f"{ap}.type", "required: a string such as 'custom'")
                v_ok = False
            if "value" not in a or not isinstance(a["value"], (str, int, float, bool)):
                reject(f"{ap}.value", "required: a string, number or boolean")
                v_ok = False
        snaps = visitor.get("snapshots")
        if not isinstance(snaps, list) or not snaps:
            reject(f"{vp}.snapshots", "required: a non-empty array")
            continue
        for si, snap in enumerate(snaps):
            sp = f"{vp}.snapshots[{si}]"
            if not isinstance(snap, dict):
                reject(sp, "must be an object")
                continue
            s_ok = v_ok
            decisions = snap.get("decisions", [])
            if not isinstance(decisions, list):
                reject(f"{sp}.decisions", "must be an array")
                decisions, s_ok = [], False
            for di, d in enumerate(decisions):
                dp = f"{sp}.decisions[{di}]"
                if not isinstance(d, dict):
                    reject(dp, "must be an object")
                    s_ok = False
                    continue
                for k in ("campaign_id", "experiment_id", "variation_id"):
                    if not _is_str(d.get(k)):
                        reject(f"{dp}.{k}", "required: a string")
                        s_ok = False
                if "is_campaign_holdback" in d and not isinstance(d["is_campaign_holdback"], bool):
                    reject(f"{dp}.is_campaign_holdback", "must be a boolean")
                    s_ok = False
            events = snap.get("events")
            if not isinstance(events, list) or not events:
                reject(f"{sp}.events", "required: a non-empty array")
                continue
            for ei, ev in enumerate(events):
                ep = f"{sp}.events[{ei}]"
                if not isinstance(ev, dict):
                    reject(ep, "must be an object")
                    continue
                problems: list[tuple[str, str]] = []
                ts = ev.get("timestamp")
                if not _is_int(ts):
                    problems.append((f"{ep}.timestamp", "required: epoch milliseconds as an integer"))
                elif not 1_000_000_000_000 <= ts < 10_000_000_000_000:
                    problems.append((f"{ep}.timestamp", f"must be epoch milliseconds (13 digits), got {ts}"))
                if not _is_str(ev.get("uuid")) or not ev.get("uuid"):
                    problems.append((f"{ep}.uuid", "required: a non-empty string"))
                for k in ("entity_id", "key", "type"):
                    if ev.get(k) is not None and not _is_str(ev[k]):
                        problems.append((f"{ep}.{k}", "must be a string"))
                if ev.get("value") is not None and not _is_num(ev["value"]):
                    problems.append((f"{ep}.value", "must be a number"))
                for k in ("revenue", "quantity"):
                    if ev.get(k) is not None and not _is_int(ev[k]):
                        problems.append((f"{ep}.{k}", "must be an integer" + (" (cents)" if k == "revenue" else "")))
                tags = ev.get("tags")
                if tags is not None and (not isinstance(tags, dict) or any(
                        isinstance(v, (dict, list)) for v in tags.values())):
                    problems.append((f"{ep}.tags", "must be an object of scalar values"))
                props = ev.get("properties")
                if props is not None and not isinstance(props, dict):
                    problems.append((f"{ep}.properties", "must be an object"))
                if problems or not s_ok:
                    for p, m in problems:
                        reject(p, m, visitor_id=vid if _is_str(vid) else None,
                               uuid=ev.get("uuid") if _is_str(ev.get("uuid")) else None,
                               event=orjson.dumps(ev).decode())
                    if not problems:
                        rejected.append({"path": ep, "reason": "its visitor, snapshot or body is invalid",
                                         "visitor_id": vid if _is_str(vid) else None,
                                         "uuid": ev.get("uuid") if _is_str(ev.get("uuid")) else None,
                                         "event": orjson.dumps(ev).decode()})
                    continue
                accepted.append({
                    **base,
                    "visitor_id": vid,
                    "session_id": sid,
                    "entity_id": ev.get("entity_id"),
                    "key": ev.get("key"),
                    "type": ev.get("type"),
                    "uuid": ev["uuid"],
                    "timestamp": ts,
                    "value": float(ev["value"]) if ev.get("value") is not None else None,
                    "revenue": ev.get("revenue"),
                    "quantity": ev.get("quantity"),
                    "tags": orjson.dumps(tags).decode() if tags is not None else None,
                    "properties": orjson.dumps(props).decode() if props is not None else None,
                    "decisions": orjson.dumps(decisions).decode() if decisions else None,
                    "attributes": orjson.dumps(attrs).decode() if attrs else None,
                })
    return accepted, rejected, errors
