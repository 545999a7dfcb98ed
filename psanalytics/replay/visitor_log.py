"""Reading visitor logs back: Event API bodies (dry-run files, SDK log events, listener
records) -> one row per event."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from psanalytics._files import read_bytes
from psanalytics.errors import InputError
from psanalytics.replay.event_map import MappingError

__all__ = ["from_visitor_log"]


def _iter_bodies(source: Any) -> Iterator[tuple[str, int | None, Any]]:
    """Yield (origin, line, body) for every body in ``source``."""
    if hasattr(source, "params") and isinstance(getattr(source, "params", None), Mapping):
        yield ("LogEvent", None, source.params)
        return
    if isinstance(source, Mapping):
        yield ("body", None, source)
        return
    if isinstance(source, (bytes, bytearray)):
        text = bytes(source)
        yield from _iter_text("<bytes>", text)
        return
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and not source.lstrip().startswith(("{", "["))):
        path = Path(source)
        if not path.exists():
            raise InputError("no such file", path=str(path))
        raw = read_bytes(path)  # .gz/.zst by name or magic
        yield from _iter_text(str(path), raw)
        return
    if isinstance(source, str):
        yield from _iter_text("<text>", source.encode())
        return
    if isinstance(source, Iterable):
        for i, item in enumerate(source):
            for origin, _, body in _iter_bodies(item):
                yield (origin, i, body)
        return
    raise MappingError(f"cannot read visitor logs from a {type(source).__name__}")


def _iter_text(origin: str, raw: bytes) -> Iterator[tuple[str, int | None, Any]]:
    stripped = raw.strip()
    if not stripped:
        return
    try:
        whole = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        whole = None
    if whole is not None:
        items = whole if isinstance(whole, list) else [whole]
        for i, b in enumerate(items):
            yield (origin, i + 1 if isinstance(whole, list) else 1, b)
        return
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield (origin, n, orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise InputError(f"not valid JSON: {exc}", path=origin, line=n) from None


_LOG_SCHEMA = {
    "account_id": pl.String,
    "project_id": pl.String,
    "visitor_id": pl.String,
    "session_id": pl.String,
    "snapshot": pl.Int64,
    "timestamp": pl.Datetime("ms", "UTC"),
    "uuid": pl.String,
    "entity_id": pl.String,
    "key": pl.String,
    "type": pl.String,
    "value": pl.Float64,
    "revenue": pl.Int64,
    "quantity": pl.Int64,
    "tags": pl.String,
    "decisions": pl.List(
        pl.Struct({"campaign_id": pl.String, "experiment_id": pl.String, "variation_id": pl.String,
                   "is_campaign_holdback": pl.Boolean})
    ),
    "attributes": pl.List(
        pl.Struct({"entity_id": pl.String, "key": pl.String, "type": pl.String, "value": pl.String})
    ),
    "source_line": pl.Int64,
}


def _s(v: Any) -> str | None:
    return None if v is None else str(v)


def from_visitor_log(source: Any) -> pl.DataFrame:
    """Event API bodies -> one row per event.

    ``source``: a path to a JSON-lines file of bodies (a dry-run file, optionally
    gzipped) or to one JSON body / array of bodies; JSON text or bytes; one body dict; a
    list of bodies; an SDK ``LogEvent`` (its ``.params``) or a list of them; a dict of a
    log-event listener's ``{"url", "params"}`` record.

    Columns: account_id, project_id, visitor_id, session_id, snapshot (index within the
    visitor), timestamp (Datetime ms UTC), uuid, entity_id, key, type, value, revenue
    (integer cents), quantity, tags (JSON text), decisions (list of structs: the
    snapshot's decisions), attributes (list of structs, values as text), source_line.
    """
    rows: dict[str, list[Any]] = {c: [] for c in _LOG_SCHEMA}
    for origin, line, body in _iter_bodies(source):
        if isinstance(body, Mapping) and "params" in body and "visitors" not in body:
            body = body["params"]
        if not isinstance(body, Mapping) or "visitors" not in body:
            raise InputError("not an Event API body (no 'visitors')", path=origin, line=line)
        acct, proj = _s(body.get("account_id")), _s(body.get("project_id"))
        for vis in body.get("visitors") or []:
            attrs = [
                {"entity_id": _s(a.get("entity_id")), "key": _s(a.get("key")), "type": _s(a.get("type")),
                 "value": _s(a.get("value")) if not isinstance(a.get("value"), bool) else str(a.get("value")).lower()}
                for a in vis.get("attributes") or []
            ]
            for si, snap in enumerate(vis.get("snapshots") or []):
                decs = [
                    {"campaign_id": _s(d.get("campaign_id")), "experiment_id": _s(d.get("experiment_id")),
                     "variation_id": _s(d.get("variation_id")), "is_campaign_holdback": d.get("is_campaign_holdback")}
                    for d in snap.get("decisions") or []
                ]
                for ev in snap.get("events") or []:
                    tags = ev.get("tags")
                    rows["account_id"].append(acct)
                    rows["project_id"].append(proj)
                    rows["visitor_id"].append(_s(vis.get("visitor_id")))
                    rows["session_id"].append(_s(vis.get("session_id")))
                    rows["snapshot"].append(si)
                    rows["timestamp"].append(ev.get("timestamp"))
                    rows["uuid"].append(_s(ev.get("uuid")))
                    rows["entity_id"].append(_s(ev.get("entity_id")))
                    rows["key"].append(_s(ev.get("key")))
                    rows["type"].append(_s(ev.get("type")))
                    rows["value"].append(ev.get("value"))
                    rows["revenue"].append(ev.get("revenue"))
                    rows["quantity"].append(ev.get("quantity"))
                    rows["tags"].append(None if tags is None else orjson.dumps(tags).decode())
                    rows["decisions"].append(decs)
                    rows["attributes"].append(attrs)
                    rows["source_line"].append(line)
    data = {}
    for c, dt in _LOG_SCHEMA.items():
        if c == "timestamp":
            data[c] = pl.Series(c, rows[c], pl.Int64, strict=False).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")
        else:
            data[c] = pl.Series(c, rows[c], dt, strict=False)
    return pl.DataFrame(data)
