"""The emulator's one route table: every route's name, method, path, auth, whether it is
read-only, and what it does.

Everything else is derived from :data:`ROUTES`: the Starlette router the app dispatches
with (:class:`ApiRoute`, case-insensitive paths with an optional trailing slash, as the
service's ASP.NET routing answers), the route names fault injection accepts
(:data:`ROUTE_NAMES`), the routes that may get truncated or dripped bodies
(:data:`READ_ONLY_ROUTES`), the auth each handler checks, and ``GET /_emulator/docs``.
A path that matches no route is 404, a path that matches only for other methods is 405
(Starlette's router decides both; the app answers them in the API's error envelope).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from starlette.routing import Match
from starlette.routing import Route as _StarletteRoute

__all__ = ["ROUTES", "ROUTE_NAMES", "READ_ONLY_ROUTES", "ADMIN_PREFIX", "ApiRoute", "Route",
           "route_docs", "route_name"]

#: Who may call a route: ``key`` = ``Authorization: epi-single <api key>`` (or
#: ``Ocp-Apim-Subscription-Key``); ``tracking`` = the same with the tracking key; ``none`` =
#: anyone (the Event API); ``x-api-key`` = ODP's header, checked by the ODP service;
#: ``admin`` = anyone on loopback, the key (or admin token) otherwise; ``open`` = anyone.
Auth = Literal["key", "tracking", "none", "x-api-key", "admin", "open"]

_AUTH_DOC = {"key": "epi-single", "tracking": "epi-single", "none": "none",
             "x-api-key": "x-api-key", "admin": "none (key off loopback)", "open": "none"}


@dataclass(frozen=True)
class Route:
    """One row of the table. ``name`` is what faults, the journal and the handler method
    (``Emulator._<name>``) use; several rows may share a name (API versions)."""

    name: str
    method: str
    path: str
    auth: Auth
    read_only: bool
    doc: str


ROUTES: tuple[Route, ...] = (
    Route("trackevents", "GET", "/api/v2.0/TrackEvents", "key", True,
          '$filter, $orderby, $skip, $top (skip+top < 10000); {"items","total","count"}'),
    Route("trackevents", "GET", "/api/v1.0/trackevents", "key", True, "same as v2"),
    Route("profiles", "GET", "/api/v2.0/Profiles", "key", True,
          "profiles (given, or derived from the events); same parameters and window as TrackEvents"),
    Route("profiles", "GET", "/api/v1.0/profiles", "key", True, "same as v2"),
    Route("preview", "POST", "/api/v2.0/TrackEvents/preview", "key", True,
          '{"Query","Scope"} -> KQL over Events, at most 1,000 rows'),
    Route("delete", "DELETE", "/api/v2.0/TrackEvents/{scope}/{id}", "key", False,
          "200, 404, 429 + Retry-After"),
    Route("delete", "DELETE", "/api/v1.0/trackingevents/{scope}/{id}", "key", False, "same as v2"),
    Route("track", "POST", "/api/v1.0/Track", "tracking", False, "one camelCase event -> 202"),
    Route("trackbulk", "POST", "/api/v1.0/TrackBulk", "tracking", False,
          "<= 100 events of <= 256 KB -> 202"),
    Route("events", "POST", "/v1/events", "none", False,
          "Event API: 204; 400 non-JSON, > 3.5 MB, or strict errors"),
    Route("odp_events", "POST", "/v3/events", "x-api-key", False,
          "ODP events: object or array of <= 500 -> 202; 400 lists invalids"),
    Route("odp_profiles", "POST", "/v3/profiles", "x-api-key", False,
          "ODP customers: {attributes} or array of <= 500 -> 202"),
    Route("admin_state", "GET", "/_emulator/state", "admin", True,
          "?limit=N: counts, Event API log, journal, faults"),
    Route("admin_reset", "POST", "/_emulator/reset", "admin", False, "back to the seeded events"),
    Route("admin_faults_get", "GET", "/_emulator/faults", "admin", True, "read the faults"),
    Route("admin_faults", "POST", "/_emulator/faults", "admin", False,
          "set faults (JSON object or key=value text)"),
    Route("admin_purge", "POST", "/_emulator/purge", "admin", False, "drop deleted events now"),
    Route("admin_health", "GET", "/_emulator/health", "open", True, "status, version, event count"),
    Route("admin_docs", "GET", "/_emulator/docs", "open", True, "this list"),
)

#: Every path under this prefix is the emulator's own (never faulted).
ADMIN_PREFIX = "/_emulator/"
#: The API route names (the ones faults may target), in table order.
ROUTE_NAMES: tuple[str, ...] = tuple(dict.fromkeys(r.name for r in ROUTES
                                                   if not r.path.startswith(ADMIN_PREFIX)))
#: API routes whose handler has no side effects: only these get truncated or dripped bodies.
READ_ONLY_ROUTES: frozenset[str] = frozenset(r.name for r in ROUTES if r.read_only
                                             and r.name in ROUTE_NAMES)


class ApiRoute(_StarletteRoute):
    """A Starlette route for one table row. The path matches in any case and with or
    without a trailing slash; path parameters keep the request's own case."""

    def __init__(self, spec: Route, endpoint: Callable[..., Any]):
        super().__init__(spec.path, endpoint, methods=[spec.method], name=spec.name)
        self.spec = spec
        pattern = self.path_regex.pattern
        if not pattern.endswith("$"):  # pragma: no cover - Starlette's compile_path ends with $
            raise AssertionError(f"unexpected route pattern {pattern!r}")
        self.path_regex = re.compile(pattern[:-1] + "/?$", re.IGNORECASE)


def route_name(routes: list[ApiRoute], scope: dict[str, Any]) -> str | None:
    """The name of the route that answers this request (None: 404 or 405)."""
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route.name
    return None


def route_docs() -> list[dict[str, str]]:
    """What ``GET /_emulator/docs`` lists, one entry per table row."""
    return [{"method": r.method, "path": r.path, "auth": _AUTH_DOC[r.auth], "what": r.doc}
            for r in ROUTES]
