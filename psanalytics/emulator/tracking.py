"""The Tracking API's bodies (``POST api/v1.0/Track`` and ``TrackBulk``), as the emulator
reads them: checks, the stored record of each event, and the country of an IP.

The limits here are the emulator's own copy of ``shared/spec/apis.md`` (see ``app.py``).
"""

from __future__ import annotations

import ipaddress
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from psanalytics._time import instant_or_none
from psanalytics.errors import TimeError

__all__ = ["MAX_BULK", "MAX_TRACK_BYTES", "MAX_TRACK_ID", "SCOPE_RE", "country_for_ip",
           "track_records"]

MAX_BULK = 100
MAX_TRACK_BYTES = 256 * 1024
SCOPE_RE = re.compile(r"^[a-z0-9_]{1,64}$")
#: Longer client trackIds are cut to this many characters (shared/spec/apis.md section 5).
MAX_TRACK_ID = 64


def _now_ns() -> int:
    return time.time_ns()


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


def track_records(raw: bytes, *, bulk: bool, header_ip: str,
                  track_ids: str) -> tuple[list[dict[str, Any]], str | None]:
    """The records a Track (``bulk=False``) or TrackBulk body asks to store, or the 400
    message that refuses it whole."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return [], f"the body is not JSON: {exc}"
    if bulk:
        if not isinstance(body, list):
            return [], "TrackBulk takes a JSON array of events"
        if len(body) > MAX_BULK:
            return [], f"TrackBulk takes at most {MAX_BULK} events, got {len(body)}"
        items = body
    else:
        if not isinstance(body, dict):
            return [], "Track takes one JSON object"
        if len(raw) > MAX_TRACK_BYTES:
            return [], f"the event is {len(raw):,} bytes; at most {MAX_TRACK_BYTES:,}"
        items = [body]
    records: list[dict[str, Any]] = []
    errors: list[str] = []
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
        rec, err = track_record(item, header_ip, track_ids)
        if err:
            errors.append(f"{where}: {err}")
        else:
            records.append(rec)
    if errors:
        more = f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""
        return [], "; ".join(errors[:20]) + more
    return records, None


def track_record(item: dict[str, Any], header_ip: str,
                 track_ids: str) -> tuple[dict[str, Any], str | None]:
    """One camelCase event -> the stored record (``_sent_track_id`` marks a client
    trackId, the dedupe key), or the reason it is refused."""
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
    if not track_id and track_ids == "assign":
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
