"""Profile Store profiles on the wire: ``GET api/v2.0/Profiles`` pages in and out.

A profile as the API returns it (the vendor's profile-methods page)::

    {"ProfileId": "6243d1c0-...", "DeviceIds": ["9f4447e4-..."], "Name": "Nikki A Blomqvist",
     "ProfileManager": null, "FirstSeen": "2017-12-01T12:34:56", "LastSeen": "2018-05-19T11:33:12",
     "Visits": 1150, "UpdateTime": "2019-03-06T21:29:38.4088275Z", "Scope": "DefaultScope",
     "Info": {"Email": "...", "Website": "..."}, "ContactInformation": ["Mailable"],
     "Payload": {"customField": 14}}

The profiles frame (:data:`PROFILE_SCHEMA`) keeps every one of those fields: times as
``Datetime("ns", "UTC")`` (text without an offset is UTC), ``Info`` and ``Payload`` as
JSON text (their keys differ per site), ``DeviceIds`` and ``ContactInformation`` as lists,
and any other key of the item, as JSON object text, in ``Extra`` (null when there is
none): nothing the API returns is dropped. :func:`parse_profiles_page` reads a page body,
:func:`profiles_json_lines` writes each row back as API JSON, :func:`read_profiles` reads
a file of them, and :func:`profiles_from_events` derives the profiles a store of events
implies (the emulator serves those when it is given no profiles; the rule is in its
docstring and in docs/odp.md).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from psanalytics._time import format_ns
from psanalytics.errors import InputError
from psanalytics.schema import parse_time_expr

__all__ = [
    "PROFILE_COLUMNS",
    "PROFILE_NAMESPACE",
    "PROFILE_SCHEMA",
    "ProfileFormatError",
    "empty_profiles",
    "parse_profiles_page",
    "profiles_frame",
    "profiles_from_events",
    "profiles_json_lines",
    "read_profiles",
]

_TIME = pl.Datetime("ns", "UTC")

#: The profiles frame: the API's own names, in the order the vendor's page lists them.
PROFILE_SCHEMA: dict[str, pl.DataType] = {
    "ProfileId": pl.String(),
    "DeviceIds": pl.List(pl.String()),
    "Name": pl.String(),
    "ProfileManager": pl.String(),
    "FirstSeen": _TIME,
    "LastSeen": _TIME,
    "Visits": pl.Int64(),
    "UpdateTime": _TIME,
    "Scope": pl.String(),
    "Info": pl.String(),
    "ContactInformation": pl.List(pl.String()),
    "Payload": pl.String(),
    "Extra": pl.String(),
}
PROFILE_COLUMNS = list(PROFILE_SCHEMA)
_TIMES = ("FirstSeen", "LastSeen", "UpdateTime")
_JSON = ("Info", "Payload")
_LISTS = ("DeviceIds", "ContactInformation")
_KNOWN = frozenset(PROFILE_COLUMNS) - {"Extra"}

#: Namespace of the ProfileId of a profile derived from events (uuid5; stable).
PROFILE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/psanalytics/profile")
#: A visit ends after this long without an event (Profile Store's ``Visits`` rule).
VISIT_GAP = "15m"


class ProfileFormatError(InputError):
    """A profile (or a page of them) is not what the Profiles API returns; says where."""


def empty_profiles() -> pl.DataFrame:
    """An empty profiles frame."""
    return pl.DataFrame(schema=PROFILE_SCHEMA)


def _text_list(value: Any, key: str, where: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProfileFormatError(f"{where}: {key} must be a list of strings, got {orjson.dumps(value).decode()[:80]}")
    return value


def profiles_frame(items: Iterable[Mapping[str, Any]], *, where: str = "profiles",
                   positions: list[str] | None = None) -> pl.DataFrame:
    """API profile objects -> the profiles frame (every field kept; see the module doc).

    Raises :class:`ProfileFormatError` naming the item (``where`` + index) and the field
    when an item is not an object, a time is not ISO 8601, ``Visits`` is not an integer
    or a list field holds something other than strings (``positions``: each item's own
    place, e.g. ``file:line``)."""
    cols: dict[str, list[Any]] = {c: [] for c in PROFILE_COLUMNS}
    for i, item in enumerate(items):
        at = positions[i] if positions else f"{where} item {i}"
        if not isinstance(item, Mapping):
            raise ProfileFormatError(f"{at}: a profile must be a JSON object, got {type(item).__name__}")
        for key in ("ProfileId", "Name", "ProfileManager", "Scope"):
            v = item.get(key)
            if v is not None and not isinstance(v, str):
                raise ProfileFormatError(f"{at}: {key} must be a string, got {orjson.dumps(v).decode()[:80]}")
            cols[key].append(v)
        for key in _LISTS:
            cols[key].append(_text_list(item.get(key), key, at))
        for key in _TIMES:
            v = item.get(key)
            if v is not None and not isinstance(v, str):
                raise ProfileFormatError(f"{at}: {key} must be ISO 8601 text, got {orjson.dumps(v).decode()[:80]}")
            cols[key].append(v)
        v = item.get("Visits")
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            raise ProfileFormatError(f"{at}: Visits must be an integer, got {orjson.dumps(v).decode()[:80]}")
        cols["Visits"].append(v)
        for key in _JSON:
            cols[key].append(None if item.get(key) is None else orjson.dumps(item[key]).decode())
        extra = {k: v for k, v in item.items() if k not in _KNOWN}
        cols["Extra"].append(orjson.dumps(extra).decode() if extra else None)
    raw = {c: cols[c] for c in PROFILE_COLUMNS}
    text_schema = {c: (pl.String() if c in _TIMES else dt) for c, dt in PROFILE_SCHEMA.items()}
    frame = pl.DataFrame(raw, schema=text_schema)
    parsed = frame.with_columns(parse_time_expr(pl.col(c)).alias(c) for c in _TIMES)
    for c in _TIMES:
        bad = parsed.get_column(c).is_null() & frame.get_column(c).is_not_null()
        if bad.any():
            i = int(bad.arg_true()[0])
            at = positions[i] if positions else f"{where} item {i}"
            raise ProfileFormatError(f"{at}: {c} {frame.get_column(c)[i]!r} is not an ISO 8601 time")
    return parsed.select(PROFILE_COLUMNS)


def parse_profiles_page(body: bytes) -> tuple[pl.DataFrame, int]:
    """A ``GET api/v2.0/Profiles`` body (``{"items": [...], "total": N}``; ``Items``/
    ``Total`` too, or a bare array) -> (profiles frame, total)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"the Profiles page is not JSON: {exc}") from None
    if isinstance(doc, list):
        return profiles_frame(doc, where="Profiles page"), len(doc)
    if not isinstance(doc, dict):
        raise ProfileFormatError(f"a Profiles page must be a JSON object, got {type(doc).__name__}")
    items = doc.get("items", doc.get("Items"))
    if not isinstance(items, list):
        raise ProfileFormatError('a Profiles page needs an "items" array (keys: '
                                 f"{', '.join(sorted(doc)) or 'none'})")
    frame = profiles_frame(items, where="Profiles page")
    total = doc.get("total", doc.get("Total"))
    return frame, int(total) if isinstance(total, int) else frame.height


def _time_text(value: Any) -> str | None:
    if value is None:
        return None
    return format_ns(int(value))


def profiles_json_lines(frame: pl.DataFrame) -> list[str]:
    """Each profile as the API's JSON object text (``Extra`` keys back at the top level;
    times in the API's 7-digit UTC form)."""
    out = []
    epoch = frame.with_columns(pl.col(c).dt.epoch("ns") for c in _TIMES)
    for row in epoch.iter_rows(named=True):
        obj: dict[str, Any] = {}
        for c in PROFILE_COLUMNS:
            v = row[c]
            if c == "Extra":
                if v is not None:
                    obj.update(orjson.loads(v))
                continue
            if c in _TIMES:
                v = _time_text(v)
            elif c in _JSON:
                v = None if v is None else orjson.Fragment(v)
            obj[c] = v
        out.append(orjson.dumps(obj).decode())
    return out


def read_profiles(source: str | os.PathLike[str] | pl.DataFrame | Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """Profiles from a frame, API objects, or a file: ``.parquet`` (a profiles frame),
    ``.json`` (an array or a page ``{"items": [...]}``) or ``.ndjson``/``.jsonl`` (one
    profile per line; errors name ``file:line``)."""
    if isinstance(source, pl.DataFrame):
        missing = [c for c in PROFILE_COLUMNS if c not in source.columns and c != "Extra"]
        if missing:
            raise ProfileFormatError(f"a profiles frame needs the columns {', '.join(missing)}")
        out = source if "Extra" in source.columns else source.with_columns(pl.lit(None, pl.String).alias("Extra"))
        return out.select(PROFILE_COLUMNS).cast(PROFILE_SCHEMA)  # type: ignore[arg-type]
    if not isinstance(source, (str, os.PathLike)):
        return profiles_frame(list(source))
    path = Path(source)
    name = path.name.lower()
    if name.endswith(".parquet"):
        return read_profiles(pl.read_parquet(path))
    data = path.read_bytes()
    if name.endswith((".ndjson", ".jsonl")):
        items, where = [], []
        for n, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise ProfileFormatError(f"{path}:{n}: not JSON ({exc})") from None
            where.append(f"{path}:{n}")
        return profiles_frame(items, where=str(path), positions=where)
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProfileFormatError(f"{path}: not JSON ({exc})") from None
    if isinstance(doc, dict):
        items = doc.get("items", doc.get("Items"))
        if not isinstance(items, list):
            raise ProfileFormatError(f'{path}: expected an array of profiles or {{"items": [...]}}')
        doc = items
    if not isinstance(doc, list):
        raise ProfileFormatError(f"{path}: expected an array of profiles")
    return profiles_frame(doc, where=str(path))


def profiles_from_events(events: pl.DataFrame) -> pl.DataFrame:
    """The profiles a canonical events frame implies (what the emulator serves when it is
    given no profiles).

    Rule (decided; Profile Store builds profiles server-side and does not document how):
    a device belongs to the ``User.Email`` of its latest event that carries one, and all
    devices of one address (per ``Scope``) are one profile; a device never seen with an
    address is a profile of its own. ``ProfileId`` = uuid5 of scope and address (or
    device); ``DeviceIds`` sorted; ``Name`` the latest non-empty ``User.Name``;
    ``FirstSeen``/``LastSeen`` the first and last event; ``UpdateTime`` = ``LastSeen``;
    ``Visits`` counts a new visit after more than 15 minutes without an event (the
    documented Profile Store rule); ``Info`` = ``{"Email": address}`` (``{}`` without
    one); ``ContactInformation`` ``["Mailable"]`` with an address, else ``["Anonymous"]``;
    ``ProfileManager`` and ``Payload`` null.
    """
    if events.height == 0:
        return empty_profiles()
    email = pl.col("User").struct.field("Email")
    ev = events.select("Scope", "DeviceId", "EventTime", email.alias("email"),
                       pl.col("User").struct.field("Name").alias("name"))
    owner = (ev.filter(pl.col("email") != "").sort("EventTime")
             .group_by("Scope", "DeviceId").agg(pl.col("email").last().alias("owner")))
    ev = ev.join(owner, on=["Scope", "DeviceId"], how="left").with_columns(
        pl.when(pl.col("owner").is_not_null()).then(pl.lit("email:") + pl.col("owner"))
        .otherwise(pl.lit("device:") + pl.col("DeviceId")).alias("key"))
    gap = pl.duration(minutes=15)
    per = ev.sort("EventTime").group_by("Scope", "key").agg(
        pl.col("DeviceId").unique().sort().alias("DeviceIds"),
        pl.col("name").filter(pl.col("name") != "").last().alias("Name"),
        pl.col("EventTime").min().alias("FirstSeen"),
        pl.col("EventTime").max().alias("LastSeen"),
        ((pl.col("EventTime").diff() > gap).sum() + 1).cast(pl.Int64).alias("Visits"),
        pl.col("owner").first().alias("owner"),
    ).sort("FirstSeen", "Scope", "key")
    ids = [str(uuid.uuid5(PROFILE_NAMESPACE, f"{s}\x1f{k}")) for s, k in per.select("Scope", "key").iter_rows()]
    info = [orjson.dumps({"Email": o} if o else {}).decode() for o in per.get_column("owner")]
    return per.select(
        pl.Series("ProfileId", ids, pl.String),
        "DeviceIds",
        pl.col("Name").fill_null(""),
        pl.lit(None, pl.String).alias("ProfileManager"),
        "FirstSeen", "LastSeen", "Visits",
        pl.col("LastSeen").alias("UpdateTime"),
        "Scope",
        pl.Series("Info", info, pl.String),
        pl.when(pl.col("owner").is_not_null()).then(pl.lit(["Mailable"])).otherwise(pl.lit(["Anonymous"]))
        .alias("ContactInformation"),
        pl.lit(None, pl.String).alias("Payload"),
        pl.lit(None, pl.String).alias("Extra"),
    ).cast(PROFILE_SCHEMA)  # type: ignore[arg-type]
