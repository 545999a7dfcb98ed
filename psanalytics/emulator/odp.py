"""Optimizely Data Platform (ODP) REST API, as the emulator serves it.

Routes (mounted on the same server as the Profile Store and the Event API, see
``app.py``; fault injection applies to them as to every API route, under the route names
``odp_events`` and ``odp_profiles``):

- ``POST /v3/events``: one event object or a JSON array of at most 500. Answer ``202``
  ``{"title":"Accepted","status":202,"timestamp":"..."}`` (the body the official SDK's
  comment shows). Events are immutable: one whose ``data.idempotence_id`` was accepted
  before is counted as a duplicate and not stored again.
- ``POST /v3/profiles``: one ``{"attributes": {...}}`` object or an array of at most 500;
  the attributes must hold at least one identifier (``email``, ``vuid``, ...). Upserts
  customers (a later value of a field replaces the earlier one). ``202`` as above.

Auth: header ``x-api-key``. Missing -> 401, wrong -> 403 (the SDK treats both as final).

A request with any invalid object is refused whole (400), nothing of it is stored, and
the body lists every invalid object with its index:
``{"title":"Bad Request","status":400,"timestamp":"...","detail":{"invalids":[{"event":3,
"message":"..."}]}}`` (``"profile"`` instead of ``"event"`` on ``/v3/profiles``). This
error shape is our decision where the vendor's pages show none; the limits (500 objects
per request) are the documented ones, kept here on purpose as an independent copy of the
spec (the client's copy is in ``psanalytics.api.odp``).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import polars as pl
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["MAX_OBJECTS", "OdpService", "IDENTIFIER_FIELDS"]

#: Objects per request (ODP's bulk limit, for events, profiles and objects alike).
MAX_OBJECTS = 500
#: Customer fields that identify a customer (identity resolution keys).
IDENTIFIER_FIELDS = frozenset({"email", "vuid", "fs_user_id", "customer_id", "phone", "zaius_id"})
_TITLES = {202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden"}

_EVENTS_SCHEMA = {
    "type": pl.String, "action": pl.String, "identifiers": pl.String, "data": pl.String,
    "idempotence_id": pl.String, "ts": pl.Float64, "received_at": pl.String,
}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _answer(status: int, detail: Any = None) -> Response:
    body: dict[str, Any] = {"title": _TITLES.get(status, "Error"), "status": status, "timestamp": _now()}
    if detail is not None:
        body["detail"] = detail
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


#: What JSON gives besides strings, numbers, booleans and null.
_NOT_SCALAR = (dict, list)


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _check_event(ev: Any) -> str | None:
    """Why one event is invalid, or None."""
    if not isinstance(ev, dict):
        return "an event must be a JSON object"
    t = ev.get("type")
    if not isinstance(t, str) or not t.strip():
        return "type is required (a non-empty string)"
    if "action" in ev and ev["action"] is not None and not isinstance(ev["action"], str):
        return "action must be a string"
    ids = ev.get("identifiers")
    if not isinstance(ids, dict) or not ids:
        return "identifiers are required: an object with at least one identifier, e.g. {\"vuid\": \"...\"}"
    if not any(isinstance(v, str) and v.strip() for v in ids.values()):
        return "at least one identifier must have a non-empty string value"
    for k, v in ids.items():
        if not isinstance(v, str):
            return f"identifiers.{k} must be a string"
    data = ev.get("data")
    if data is not None:
        if not isinstance(data, dict):
            return "data must be an object"
        for k, v in data.items():
            if isinstance(v, _NOT_SCALAR):  # inline (no call per field): the hot loop of a bulk send
                return f"data.{k}: field values must be strings, numbers, booleans or null (no objects or arrays)"
        ts = data.get("ts")
        if ts is not None and (isinstance(ts, bool) or not isinstance(ts, (int, float)) or ts < 0):
            return "data.ts must be the event time in epoch seconds (a non-negative number)"
        iid = data.get("idempotence_id")
        if iid is not None and (not isinstance(iid, str) or not iid):
            return "data.idempotence_id must be a non-empty string"
    unknown = set(ev) - {"type", "action", "identifiers", "data"}
    if unknown:
        return f"unknown event keys {sorted(unknown)}; allowed: type, action, identifiers, data"
    return None


def _check_profile(p: Any) -> str | None:
    if not isinstance(p, dict):
        return "a profile must be a JSON object {\"attributes\": {...}}"
    attrs = p.get("attributes")
    if not isinstance(attrs, dict) or not attrs:
        return "attributes are required (an object of customer fields)"
    if set(p) - {"attributes"}:
        return f"unknown profile keys {sorted(set(p) - {'attributes'})}; allowed: attributes"
    if not any(k in IDENTIFIER_FIELDS and isinstance(v, str) and v.strip() for k, v in attrs.items()):
        return (f"attributes must hold at least one identifier ({', '.join(sorted(IDENTIFIER_FIELDS))}) "
                "with a non-empty string value")
    for k, v in attrs.items():
        if not _scalar(v):
            return f"attributes.{k}: values must be strings, numbers, booleans or null"
    return None


class OdpService:
    """The ODP side of the emulator: accepted events, customers, counts.

    ``key`` returns the API key requests must send in ``x-api-key`` (a callable, so the
    emulator's key is read when a request arrives).
    """

    def __init__(self, key: Callable[[], str]) -> None:
        self._key = key
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._events: list[dict[str, Any]] = []
            self._seen: set[str] = set()
            self._dups: dict[str, int] = {}
            self._counts: dict[str, int] = {}
            self._customers: dict[str, dict[str, Any]] = {}
            self._links: set[tuple[str, str]] = set()
            self._stats = {"requests": 0, "accepted": 0, "duplicates": 0, "rejected_requests": 0,
                           "rejected_objects": 0, "profile_requests": 0, "profiles_updated": 0}

    # ------------------------------------------------------------------ snapshot
    def dump(self, folder: Path) -> None:
        """Write the ODP state to ``folder``: ``events.ndjson`` (each accepted event as
        kept, one per line) and ``state.json`` (counters, counts per type/action,
        duplicates per idempotence id, customers, identity links). :meth:`load` reads it."""
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            lines = [orjson.dumps(e) for e in self._events]
            meta = {"stats": dict(self._stats), "counts": dict(self._counts), "duplicates": dict(self._dups),
                    "customers": self._customers, "links": sorted(self._links)}
            meta_bytes = orjson.dumps(meta, option=orjson.OPT_INDENT_2)
        (folder / "events.ndjson").write_bytes(b"".join(line + b"\n" for line in lines))
        (folder / "state.json").write_bytes(meta_bytes)

    def load(self, folder: Path) -> None:
        """Replace the ODP state with what :meth:`dump` wrote: the accepted events and their
        idempotence ids (a re-send is still a duplicate), counters, customers, links."""
        meta = orjson.loads((folder / "state.json").read_bytes())
        events = [orjson.loads(line) for line in (folder / "events.ndjson").read_bytes().splitlines() if line]
        with self._lock:
            self._events = events
            self._seen = {e["idempotence_id"] for e in events if e.get("idempotence_id") is not None}
            self._dups = dict(meta["duplicates"])
            self._counts = dict(meta["counts"])
            self._customers = dict(meta["customers"])
            self._links = {(a, b) for a, b in meta["links"]}
            self._stats = dict(meta["stats"])

    # ------------------------------------------------------------------ HTTP
    def _auth(self, request: Request) -> Response | None:
        got = request.headers.get("x-api-key")
        if not got:
            return _answer(401, "missing x-api-key header")
        if not secrets.compare_digest(got.strip().encode(), self._key().encode()):
            return _answer(403, "the x-api-key was not accepted")
        return None

    async def _body(self, request: Request, what: str) -> tuple[list[Any] | None, Response | None]:
        raw = await request.body()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return None, _answer(400, f"the body is not JSON: {exc}")
        items = body if isinstance(body, list) else [body]
        if not items:
            return None, _answer(400, f"no {what}s in the request")
        if len(items) > MAX_OBJECTS:
            return None, _answer(400, f"{len(items)} {what}s in one request; at most {MAX_OBJECTS} are allowed")
        return items, None

    def _refuse(self, what: str, invalids: list[dict[str, Any]]) -> Response:
        with self._lock:
            self._stats["rejected_requests"] += 1
            self._stats["rejected_objects"] += len(invalids)
        return _answer(400, {"invalids": invalids})

    async def events(self, request: Request) -> Response:
        with self._lock:
            self._stats["requests"] += 1
        denied = self._auth(request)
        if denied is not None:
            return denied
        items, bad = await self._body(request, "event")
        if bad is not None:
            return bad
        assert items is not None
        invalids = [{"event": i, "message": m} for i, ev in enumerate(items) if (m := _check_event(ev))]
        if invalids:
            return self._refuse("event", invalids)
        now = _now()
        with self._lock:
            for ev in items:
                data = ev.get("data") or {}
                iid = data.get("idempotence_id")
                if iid is not None:
                    if iid in self._seen:
                        self._stats["duplicates"] += 1
                        self._dups[iid] = self._dups.get(iid, 0) + 1
                        continue
                    self._seen.add(iid)
                action = ev.get("action") or ""
                ids = ev["identifiers"]
                self._events.append({
                    "type": ev["type"], "action": action, "identifiers": ids, "data": data,
                    "idempotence_id": iid, "ts": data.get("ts"), "received_at": now,
                })
                k = f"{ev['type']}/{action}" if action else ev["type"]
                self._counts[k] = self._counts.get(k, 0) + 1
                email, vuid = ids.get("email"), ids.get("vuid")
                if email and vuid:
                    self._links.add((email, vuid))
                    self._customers.setdefault(email, {"email": email})
                self._stats["accepted"] += 1
        return _answer(202)

    async def profiles(self, request: Request) -> Response:
        with self._lock:
            self._stats["profile_requests"] += 1
        denied = self._auth(request)
        if denied is not None:
            return denied
        items, bad = await self._body(request, "profile")
        if bad is not None:
            return bad
        assert items is not None
        invalids = [{"profile": i, "message": m} for i, p in enumerate(items) if (m := _check_profile(p))]
        if invalids:
            return self._refuse("profile", invalids)
        with self._lock:
            for p in items:
                attrs = p["attributes"]
                key = attrs.get("email") or next(
                    str(attrs[k]) for k in sorted(IDENTIFIER_FIELDS) if isinstance(attrs.get(k), str) and attrs[k])
                cust = self._customers.setdefault(key, {})
                cust.update({k: v for k, v in attrs.items() if k != "vuid"})
                if attrs.get("vuid") and attrs.get("email"):
                    self._links.add((attrs["email"], attrs["vuid"]))
                self._stats["profiles_updated"] += 1
        return _answer(202)

    # ------------------------------------------------------------------ views
    def state(self, *, limit: int | None = None) -> dict[str, Any]:
        """Totals, accepted events per ``type/action``, customers and the latest events."""
        with self._lock:
            events = self._events[-limit:] if limit else ([] if limit == 0 else list(self._events))
            return {
                **self._stats,
                "by_type": dict(sorted(self._counts.items())),
                "customers": len(self._customers),
                "identity_links": len(self._links),
                "events": [dict(e) for e in events],
            }

    def events_frame(self) -> pl.DataFrame:
        """Accepted events, one row each (``identifiers`` and ``data`` as JSON text)."""
        with self._lock:
            rows = list(self._events)
        cols = {
            "type": [r["type"] for r in rows], "action": [r["action"] for r in rows],
            "identifiers": [orjson.dumps(r["identifiers"]).decode() for r in rows],
            "data": [orjson.dumps(r["data"]).decode() for r in rows],
            "idempotence_id": [r["idempotence_id"] for r in rows],
            "ts": [None if r["ts"] is None else float(r["ts"]) for r in rows],
            "received_at": [r["received_at"] for r in rows],
        }
        return pl.DataFrame(cols, schema=_EVENTS_SCHEMA)

    def customers(self) -> dict[str, dict[str, Any]]:
        """Customers by key (e-mail when known), with their fields and linked vuids."""
        with self._lock:
            out = {k: dict(v) for k, v in self._customers.items()}
            for email, vuid in self._links:
                if email in out:
                    out[email].setdefault("vuids", []).append(vuid)
        for v in out.values():
            if "vuids" in v:
                v["vuids"].sort()
        return out

    def duplicates(self) -> dict[str, int]:
        """How many times each ``idempotence_id`` arrived again after it was accepted."""
        with self._lock:
            return dict(self._dups)

    def counts(self) -> Mapping[str, int]:
        with self._lock:
            return dict(self._counts)
