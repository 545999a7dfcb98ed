"""Event API (``POST /v1/events``) body validation, as the emulator applies it.

:func:`validate_event_body` splits a body into the event records it accepts, the records
it rejects (each with the JSON path and the reason) and the field errors strict mode
answers 400 with. An event is accepted only when it, its snapshot, its visitor and the
body's head are all valid; an event under an invalid parent is rejected with the reason
"its visitor, snapshot or body is invalid" (nothing sent is dropped without a record).
"""

from __future__ import annotations

from typing import Any

import orjson
import polars as pl

__all__ = ["ACCEPTED_SCHEMA", "REJECTED_SCHEMA", "records_frame", "validate_event_body"]

ACCEPTED_SCHEMA = {
    "account_id": pl.String, "project_id": pl.String, "client_name": pl.String,
    "client_version": pl.String, "anonymize_ip": pl.Boolean, "visitor_id": pl.String,
    "session_id": pl.String, "entity_id": pl.String, "key": pl.String, "type": pl.String,
    "uuid": pl.String, "timestamp": pl.Int64, "value": pl.Float64, "revenue": pl.Int64,
    "quantity": pl.Int64, "tags": pl.String, "properties": pl.String, "decisions": pl.String,
    "attributes": pl.String, "received_at": pl.String,
}
REJECTED_SCHEMA = {"path": pl.String, "reason": pl.String, "visitor_id": pl.String,
                   "uuid": pl.String, "event": pl.String, "received_at": pl.String}


def records_frame(rows: list[dict[str, Any]], sch: dict[str, Any]) -> pl.DataFrame:
    """A frame of ``sch``'s columns from dict rows (missing keys are null)."""
    cols = {k: [r.get(k) for r in rows] for k in sch}
    return pl.DataFrame(cols, schema=sch)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _str_or_none(v: Any) -> str | None:
    return v if _is_str(v) else None


class _Split:
    """The three outputs of a validation, filled in body order."""

    def __init__(self) -> None:
        self.accepted: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []
        self.errors: list[tuple[str, str]] = []

    def reject(self, path: str, reason: str, **kw: Any) -> None:
        self.errors.append((path, reason))
        self.rejected.append({"path": path, "reason": reason, **kw})


def validate_event_body(body: Any) -> tuple[list[dict], list[dict], list[tuple[str, str]]]:
    """Split an Event API body into accepted event records, rejected records and the
    field errors (path, message) that strict mode answers with."""
    out = _Split()
    if not isinstance(body, dict):
        out.reject("", "the body must be a JSON object")
        return out.accepted, out.rejected, out.errors
    head_ok = _check_head(body, out)
    visitors = body.get("visitors")
    if not isinstance(visitors, list) or not visitors:
        out.reject("visitors", "required: a non-empty array of visitors")
        return out.accepted, out.rejected, out.errors
    anonymize = body.get("anonymize_ip", True)
    base = {
        "account_id": _str_or_none(body.get("account_id")),
        "project_id": _str_or_none(body.get("project_id")),
        "client_name": _str_or_none(body.get("client_name")),
        "client_version": _str_or_none(body.get("client_version")),
        "anonymize_ip": anonymize if isinstance(anonymize, bool) else True,
    }
    for vi, visitor in enumerate(visitors):
        _visitor(visitor, f"visitors[{vi}]", head_ok, base, out)
    return out.accepted, out.rejected, out.errors


def _check_head(body: dict[str, Any], out: _Split) -> bool:
    ok = True
    if not _is_str(body.get("account_id")) or not body.get("account_id"):
        out.reject("account_id", "required: a non-empty string")
        ok = False
    for k in ("project_id", "client_name", "client_version", "revision"):
        if k in body and body[k] is not None and not _is_str(body[k]):
            out.reject(k, f"must be a string, got {type(body[k]).__name__}")
            ok = False
    for k in ("anonymize_ip", "enrich_decisions"):
        if k in body and not isinstance(body[k], bool):
            out.reject(k, f"must be a boolean, got {type(body[k]).__name__}")
            ok = False
    return ok


def _check_attributes(attrs: Any, vp: str, out: _Split) -> tuple[list[Any], bool]:
    if not isinstance(attrs, list):
        out.reject(f"{vp}.attributes", "must be an array")
        return [], False
    ok = True
    for ai, a in enumerate(attrs):
        ap = f"{vp}.attributes[{ai}]"
        if not isinstance(a, dict):
            out.reject(ap, "must be an object")
            ok = False
            continue
        if not _is_str(a.get("type")) or not a.get("type"):
            out.reject(f"{ap}.type", "required: a string such as 'custom'")
            ok = False
        if "value" not in a or not isinstance(a["value"], (str, int, float, bool)):
            out.reject(f"{ap}.value", "required: a string, number or boolean")
            ok = False
    return attrs, ok


def _visitor(visitor: Any, vp: str, head_ok: bool, base: dict[str, Any], out: _Split) -> None:
    if not isinstance(visitor, dict):
        out.reject(vp, "must be an object")
        return
    vid = visitor.get("visitor_id")
    ok = head_ok
    if not _is_str(vid) or not vid:
        out.reject(f"{vp}.visitor_id", "required: a non-empty string")
        ok = False
    sid = visitor.get("session_id")
    if sid is not None and not _is_str(sid):
        out.reject(f"{vp}.session_id", "must be a string")
        ok = False
    attrs, attrs_ok = _check_attributes(visitor.get("attributes", []), vp, out)
    ok = ok and attrs_ok
    snaps = visitor.get("snapshots")
    if not isinstance(snaps, list) or not snaps:
        out.reject(f"{vp}.snapshots", "required: a non-empty array")
        return
    owner = {**base, "visitor_id": vid, "session_id": sid}
    for si, snap in enumerate(snaps):
        _snapshot(snap, f"{vp}.snapshots[{si}]", ok, owner, attrs, out)


def _check_decisions(decisions: Any, sp: str, out: _Split) -> tuple[list[Any], bool]:
    if not isinstance(decisions, list):
        out.reject(f"{sp}.decisions", "must be an array")
        return [], False
    ok = True
    for di, d in enumerate(decisions):
        dp = f"{sp}.decisions[{di}]"
        if not isinstance(d, dict):
            out.reject(dp, "must be an object")
            ok = False
            continue
        for k in ("campaign_id", "experiment_id", "variation_id"):
            if not _is_str(d.get(k)):
                out.reject(f"{dp}.{k}", "required: a string")
                ok = False
        if "is_campaign_holdback" in d and not isinstance(d["is_campaign_holdback"], bool):
            out.reject(f"{dp}.is_campaign_holdback", "must be a boolean")
            ok = False
    return decisions, ok


def _snapshot(snap: Any, sp: str, visitor_ok: bool, owner: dict[str, Any], attrs: list[Any],
              out: _Split) -> None:
    if not isinstance(snap, dict):
        out.reject(sp, "must be an object")
        return
    decisions, dec_ok = _check_decisions(snap.get("decisions", []), sp, out)
    ok = visitor_ok and dec_ok
    events = snap.get("events")
    if not isinstance(events, list) or not events:
        out.reject(f"{sp}.events", "required: a non-empty array")
        return
    vid = owner["visitor_id"]
    for ei, ev in enumerate(events):
        ep = f"{sp}.events[{ei}]"
        if not isinstance(ev, dict):
            out.reject(ep, "must be an object")
            continue
        problems = _event_problems(ev, ep)
        if problems or not ok:
            about = {"visitor_id": _str_or_none(vid), "uuid": _str_or_none(ev.get("uuid")),
                     "event": orjson.dumps(ev).decode()}
            for p, m in problems:
                out.reject(p, m, **about)
            if not problems:
                out.rejected.append({"path": ep, "reason": "its visitor, snapshot or body is invalid",
                                     **about})
            continue
        out.accepted.append(_event_record(ev, owner, decisions, attrs))


def _event_problems(ev: dict[str, Any], ep: str) -> list[tuple[str, str]]:
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
    return problems


def _event_record(ev: dict[str, Any], owner: dict[str, Any], decisions: list[Any],
                  attrs: list[Any]) -> dict[str, Any]:
    tags, props = ev.get("tags"), ev.get("properties")
    return {
        **owner,
        "entity_id": ev.get("entity_id"),
        "key": ev.get("key"),
        "type": ev.get("type"),
        "uuid": ev["uuid"],
        "timestamp": ev["timestamp"],
        "value": float(ev["value"]) if ev.get("value") is not None else None,
        "revenue": ev.get("revenue"),
        "quantity": ev.get("quantity"),
        "tags": orjson.dumps(tags).decode() if tags is not None else None,
        "properties": orjson.dumps(props).decode() if props is not None else None,
        "decisions": orjson.dumps(decisions).decode() if decisions else None,
        "attributes": orjson.dumps(attrs).decode() if attrs else None,
    }
