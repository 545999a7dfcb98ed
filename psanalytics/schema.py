"""The canonical events frame: column order, dtypes, and ``normalize()``.

This module is the only place in psanalytics that decides dtypes. Every reader, the
emulator, the loader and the replayer turn their input into exactly this frame:

========== ============================== =============================================
column     dtype                          rule
========== ============================== =============================================
TrackId    String                         "" when the source has none
DeviceId.. String (10 columns)            never null: a missing string is ""
EventTime  Datetime("ns", "UTC")          all 7 fractional digits of the API are kept
User       Struct{Email: String,          Email/Name: missing ""; Info: the JSON text of
           Name: String, Info: String}    ``User.Info`` (an object), null when absent
Payload    String (JSON text) or null     keys differ per EventType
Headers    String (JSON text) or null     the event's ``Headers`` object; null when absent
Extras     String (JSON object) or null   every top-level field outside this schema, by
                                          its own name (``{"Channel": "web"}``); null
                                          when there is none
========== ============================== =============================================

The frame is lossless: :func:`psanalytics.wire.api_json.to_api_json` writes each event back with the same keys and
values the API (or the file) had, and API JSON -> frame -> API JSON -> frame is identical.
Nothing is dropped: a field the schema does not know goes to ``Extras`` by its own name.

Why this file is long: it is the one place that decides dtypes. Time parsing, value
columns and ``normalize()`` of every input shape (records, frames, lazy frames) share the
canonical rules above; the wire formats (API JSON out, NDJSON in) moved to
:mod:`psanalytics.wire`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
import polars as pl

from psanalytics import _time
from psanalytics.errors import SchemaError

#: String columns that are never null (KQL strings are never null; the API sends "").
STRING_COLUMNS: tuple[str, ...] = (
    "TrackId",
    "DeviceId",
    "EventType",
    "Value",
    "Scope",
    "PageUri",
    "PageTitle",
    "RemoteAddress",
    "CountryCode",
    "City",
    "SessionId",
)

USER_DTYPE = pl.Struct({"Email": pl.String, "Name": pl.String, "Info": pl.String})
#: Columns holding JSON text exactly as the source sent it (null: absent or JSON null for
#: Payload; absent for the others).
JSON_COLUMNS: tuple[str, ...] = ("Payload", "Headers", "Extras")
#: The column for top-level fields outside the schema: one JSON object, keys as sent.
EXTRAS = "Extras"
TIME_DTYPE = pl.Datetime("ns", "UTC")

#: The canonical schema, in column order.
EVENTS_SCHEMA: pl.Schema = pl.Schema(
    [(c, pl.String) for c in STRING_COLUMNS]
    + [("EventTime", TIME_DTYPE), ("User", USER_DTYPE), ("Payload", pl.String),
       ("Headers", pl.String), (EXTRAS, pl.String)]
)
COLUMNS: tuple[str, ...] = tuple(EVENTS_SCHEMA.names())

#: Order of properties in an event object as the API returns it.
API_ORDER: tuple[str, ...] = (
    "TrackId",
    "DeviceId",
    "EventType",
    "EventTime",
    "Value",
    "Scope",
    "CountryCode",
    "City",
    "PageUri",
    "PageTitle",
    "RemoteAddress",
    "SessionId",
    "User",
    "Payload",
)
# (``Headers``, when an event has it, follows ``Payload``; ``User.Info`` follows
# ``User.Name``; fields kept in ``Extras`` come last.)

# Source field name (any case style) -> canonical column. Lower-cased keys.
_ALIASES: dict[str, str] = {c.lower(): c for c in COLUMNS}
_ALIASES.update(
    {
        "trackid": "TrackId",
        "id": "TrackId",
        "user.email": "User.Email",
        "user.name": "User.Name",
        "user.info": "User.Info",
        "user_email": "User.Email",
        "user_name": "User.Name",
        "user_info": "User.Info",
    }
)
# In API JSON (records), "Extras" is not ours: a source field of that name is an unknown
# field like any other (kept inside Extras). In columnar sources (our CSV/Parquet) it is.
_RECORD_ALIASES = {k: v for k, v in _ALIASES.items() if v != EXTRAS}
#: Keys of the ``User`` object (any case) -> struct field.
_USER_KEYS = {"email": "Email", "name": "Name", "info": "Info", "information": "Info"}


def unknown_fields(names: Iterable[str]) -> list[str]:
    """The names that map to no canonical column: they are kept in ``Extras``."""
    return [n for n in names if canonical_name(n) is None]


def bad_time_rows(series: pl.Series) -> list[int]:
    """Row indexes of non-empty EventTime texts that are not ISO 8601 times."""
    if series.dtype != pl.String:
        return []
    parsed = series.str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_unit="ns", strict=False)
    if parsed.null_count() == series.null_count():
        return []
    slow = pl.select(parse_time_expr(pl.lit(series))).to_series()
    bad = slow.is_null() & series.is_not_null() & (series.str.strip_chars() != "")
    return bad.arg_true().to_list()


def time_problems(series: pl.Series) -> list[tuple[int, str]]:
    """``(row, reason)`` for every EventTime text that is not an ISO 8601 time or lies
    outside what a nanosecond time holds, in row order."""
    if series.dtype != pl.String:
        return []
    out = [(r, f"EventTime is not an ISO 8601 time: {series[r]!r}") for r in bad_time_rows(series)]
    out += [(r, f"EventTime is {OUT_OF_RANGE}: {series[r]!r}") for r in out_of_range_rows(series)]
    return sorted(out)


def key_marks(data: bytes) -> int:
    """How many ``":`` pairs ``data`` holds: one per key in compact JSON (plus any inside
    string values). Readers compare it with the keys they read, so a key they did not
    read can never go unnoticed."""
    import numpy as np

    a = np.frombuffer(data, np.uint8)
    colons = np.flatnonzero(a[1:] == 58)  # ':' at colons + 1
    return int(np.count_nonzero(a[colons] == 34))  # preceded by '"'


def key_marks_in(texts: pl.Series) -> pl.Series:
    """:func:`key_marks` of each text (null stays null)."""
    return texts.str.count_matches('":', literal=True)


def empty_frame() -> pl.DataFrame:
    """An empty frame with the canonical schema."""
    return pl.DataFrame(schema=EVENTS_SCHEMA)


def canonical_name(name: str) -> str | None:
    """Map a source field name (PascalCase, camelCase, lower case, dotted) to a column."""
    return _ALIASES.get(name.lower())


# --------------------------------------------------------------------------- time

#: What a Datetime("ns") column holds: int64 nanoseconds since 1970-01-01 UTC. A time
#: outside it would wrap around silently (Polars and Arrow do not check), so every
#: reader checks it and names the value.
NS_MIN, NS_MAX = _time.MIN_NS, _time.MAX_NS
TIME_RANGE = "1677-09-21 .. 2262-04-11"
OUT_OF_RANGE = f"outside what a nanosecond time holds ({TIME_RANGE})"


def _range_error(idx: int, value: Any) -> SchemaError:
    shown = repr(value) if isinstance(value, str) else str(value)
    err = SchemaError(f"EventTime at row {idx} is {OUT_OF_RANGE}: {shown}")
    err.row = idx  # type: ignore[attr-defined]
    return err


def _first_outside(ints: pl.Series, per_unit_ns: int) -> int | None:
    """First row whose integer count of ``per_unit_ns`` lies outside the ns range."""
    lo = -(-NS_MIN // per_unit_ns)  # ceil
    hi = NS_MAX // per_unit_ns
    mn, mx = ints.min(), ints.max()
    if mn is None or (lo <= mn and mx <= hi):  # type: ignore[operator]
        return None
    return int(((ints < lo) | (ints > hi)).fill_null(False).arg_max())  # type: ignore[arg-type]


def out_of_range_rows(series: pl.Series) -> list[int]:
    """Rows of ISO 8601 EventTime text whose instant a nanosecond time cannot hold.

    Cheap when nothing is near the edges (a string min/max); otherwise the candidates
    (4-digit year before 1678 or after 2261) are parsed at microsecond resolution, and
    the sub-microsecond digits added exactly at the edges.
    """
    lo, hi = series.min(), series.max()
    if lo is None or not (lo < "1678" or hi > "2261"):  # type: ignore[operator]
        return []
    st = series.str.strip_chars()
    year = st.str.slice(0, 4)
    cand = ((year < "1678") | (year > "2261")).fill_null(False)
    if not cand.any():
        return []
    idx = cand.arg_true()
    texts = st.gather(idx)
    us = pl.select(parse_time_expr(pl.lit(texts), time_unit="us")).to_series().dt.epoch("us")
    bad: list[int] = []
    for row, text, u in zip(idx.to_list(), texts.to_list(), us.to_list(), strict=True):
        if u is None:
            continue  # not a time at all: reported as such elsewhere
        m = re.search(r"[.,](\d+)", text[10:])
        sub = int((m.group(1)[6:9] if m else "").ljust(3, "0"))
        if not NS_MIN <= u * 1000 + sub <= NS_MAX:
            bad.append(row)
    return bad


def parse_time_expr(expr: pl.Expr, time_unit: str = "ns") -> pl.Expr:
    """ISO 8601 text -> Datetime("ns", "UTC"), keeping up to 9 fractional digits.

    Accepts ``2017-09-15T07:16:34.7957819Z``, offsets (``+02:00``), a space instead of
    ``T``, no fraction, and bare dates. Unparseable text becomes null (checked by the
    caller, which knows where the text came from).
    """
    s = expr.str.strip_chars()
    # Normalise: space -> T, trailing Z -> +00:00, bare date -> midnight.
    s = (
        s.str.replace(r"^(\d{4}-\d{2}-\d{2})$", "${1}T00:00:00")
        .str.replace(r"^(\d{4}-\d{2}-\d{2}) ", "${1}T")
        .str.replace(r"[zZ]$", "+00:00")
    )
    s = pl.when(s.str.contains(r"[+-]\d{2}:?\d{2}$")).then(s).otherwise(s + "+00:00")
    return s.str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.f%z", time_unit=time_unit, time_zone="UTC", strict=False  # type: ignore[arg-type]
    ).dt.convert_time_zone("UTC")


def _time_column(series: pl.Series) -> pl.Series:
    dtype = series.dtype
    if dtype == TIME_DTYPE:
        return series
    if isinstance(dtype, pl.Datetime):
        unit = dtype.time_unit or "us"
        if unit != "ns":
            bad = _first_outside(series.dt.epoch(unit), {"us": 1_000, "ms": 1_000_000}[unit])
            if bad is not None:
                raise _range_error(bad, series[bad])
        if dtype.time_zone is None:
            series = series.dt.replace_time_zone("UTC")
        return series.dt.convert_time_zone("UTC").dt.cast_time_unit("ns")
    if dtype == pl.Date:
        bad = _first_outside(series.cast(pl.Int32).cast(pl.Int64), 86_400 * 10**9)
        if bad is not None:
            raise _range_error(bad, series[bad])
        return series.cast(pl.Datetime("ns")).dt.replace_time_zone("UTC")
    if dtype == pl.String:
        # Fast path: the API's own shape (``...T07:16:34.7957819Z``) parses without regexes.
        parsed = series.str.to_datetime(
            "%Y-%m-%dT%H:%M:%S%.fZ", time_unit="ns", strict=False
        ).dt.replace_time_zone("UTC")
        if parsed.null_count() != series.null_count():
            slow = pl.select(parse_time_expr(pl.lit(series))).to_series()
            parsed = parsed.fill_null(slow)
        bad = parsed.is_null() & series.is_not_null() & (series.str.strip_chars() != "")
        far = out_of_range_rows(series)
        if bad.any() or far:
            idx = int(bad.arg_max()) if bad.any() else len(series)  # first bad row
            if far and far[0] < idx:
                raise _range_error(far[0], series[far[0]])
            err = SchemaError(f"EventTime at row {idx} is not an ISO 8601 time: {series[idx]!r}")
            err.row = idx  # type: ignore[attr-defined]
            raise err
        return parsed.alias(series.name)
    if dtype.is_integer():
        # Epoch milliseconds (13 digits) as the Event API writes them.
        ms = series.cast(pl.Int64)
        bad_row = _first_outside(ms, 1_000_000)
        if bad_row is not None:
            raise _range_error(bad_row, f"{series[bad_row]} ms since 1970")
        return (ms * 1_000_000).cast(TIME_DTYPE)
    if dtype == pl.Null:
        return series.cast(TIME_DTYPE)
    raise SchemaError(f"EventTime has dtype {dtype}; expected ISO 8601 text or a datetime")


def format_time_expr(expr: pl.Expr) -> pl.Expr:
    """Datetime -> API text: ``2017-09-15T07:16:34.7957819Z`` (always 7 digits)."""
    return expr.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.9f").str.slice(0, 27) + "Z"


# --------------------------------------------------------------------------- values


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _payload_column(series: pl.Series) -> pl.Series:
    dtype = series.dtype
    if dtype == pl.String:
        return series
    if dtype == pl.Null:
        return series.cast(pl.String)
    if isinstance(dtype, pl.Struct):
        # JSON-encode nested values; a null struct stays null.
        enc = series.struct.json_encode()
        return pl.select(pl.when(pl.lit(series).is_null()).then(None).otherwise(pl.lit(enc))).to_series().alias(series.name)
    if isinstance(dtype, (pl.List, pl.Array)):
        return pl.Series(series.name, [_json_text(v) for v in series.to_list()], pl.String)
    if dtype == pl.Object:
        return pl.Series(series.name, [_json_text(v) for v in series.to_list()], pl.String)
    return series.cast(pl.String)


def _string_column(series: pl.Series) -> pl.Series:
    if series.dtype != pl.String:
        if isinstance(series.dtype, pl.Datetime):
            series = pl.select(format_time_expr(pl.lit(series))).to_series().alias(series.name)
        else:
            series = series.cast(pl.String)
    return series.fill_null("")


def _json_object_text(series: pl.Series) -> pl.Series:
    """Any column holding JSON-ish values -> JSON text (null stays null)."""
    return _payload_column(series)


def _user_column(series: pl.Series | None, email: pl.Series | None, name: pl.Series | None,
                 n: int, info: pl.Series | None = None) -> tuple[pl.Series, pl.Series | None]:
    """(User struct, JSON text of the User fields outside Email/Name/Info or None)."""
    extra: pl.Series | None = None
    if series is not None and isinstance(series.dtype, pl.Struct):
        fields = {f.name.lower(): f.name for f in series.dtype.fields}
        email = series.struct.field(fields["email"]) if "email" in fields else email
        name = series.struct.field(fields["name"]) if "name" in fields else name
        ikey = fields.get("info", fields.get("information"))
        if ikey is not None:
            info = series.struct.field(ikey)
        others = [f for low, f in fields.items() if low not in _USER_KEYS]
        if others:
            sub = pl.DataFrame([series.struct.field(f) for f in others]).to_struct("u")
            extra = _payload_column(sub)
    elif series is not None and series.dtype == pl.String:
        decoded = series.str.json_decode(pl.Struct({"Email": pl.String, "Name": pl.String}))
        email = decoded.struct.field("Email")
        name = decoded.struct.field("Name")
        if bool(series.str.contains('"Info"', literal=True).any()):
            info = pl.Series("Info", [
                None if t is None or not isinstance(d := orjson.loads(t), dict) or "Info" not in d
                else _json_text(d["Info"]) for t in series.to_list()], pl.String)
    e = _string_column(email) if email is not None else pl.Series("Email", [""] * n, pl.String)
    m = _string_column(name) if name is not None else pl.Series("Name", [""] * n, pl.String)
    i = (_payload_column(info) if info is not None else pl.Series("Info", [None] * n, pl.String))
    user = pl.DataFrame({"Email": e, "Name": m, "Info": i.alias("Info")}).to_struct("User")
    return user, extra


def _merge_extras(extras: pl.Series | None, user_extra: pl.Series | None, n: int) -> pl.Series:
    """The Extras column: unknown top-level fields, plus ``"User"`` for unknown User fields."""
    if user_extra is None or user_extra.null_count() == n:
        return extras if extras is not None else pl.Series(EXTRAS, [None] * n, pl.String)
    base = extras.to_list() if extras is not None else [None] * n
    out = []
    for b, u in zip(base, user_extra.to_list(), strict=True):
        if u is None:
            out.append(b)
            continue
        d = orjson.loads(b) if b is not None else {}
        d["User"] = orjson.loads(u)
        out.append(orjson.dumps(d).decode())
    return pl.Series(EXTRAS, out, pl.String)


# --------------------------------------------------------------------------- normalize


def _records_to_frame(records: Sequence[Mapping[str, Any]]) -> tuple[pl.DataFrame, set[str]]:
    """Columnar build from dicts (PascalCase API objects or camelCase Tracking bodies).

    Returns the frame (canonical column names, not yet canonical dtypes) and the names of
    the fields kept in ``Extras`` (top-level fields outside the schema, and ``User.<x>``
    for fields of the User object other than Email, Name, Info).
    """
    extra_names: set[str] = set()
    keymap: dict[str, str] = {}
    for rec in records:  # every record: a field may first appear late
        for k in rec:
            if k not in keymap:
                keymap[k] = _RECORD_ALIASES.get(k.lower()) or ""
    cols: dict[str, list[Any]] = {c: [] for c in COLUMNS if c not in ("User", EXTRAS)}
    n = len(records)
    for c in cols:
        src = [k for k, v in keymap.items() if v == c]
        if not src:
            cols[c] = [None] * n
            continue
        if len(src) == 1:
            k = src[0]
            cols[c] = [r.get(k) for r in records]
        else:
            cols[c] = [next((r[k] for k in src if k in r), None) for r in records]
    headers_src = [k for k, v in keymap.items() if v == "Headers"]
    unknown_keys = [k for k, v in keymap.items() if not v]
    emails, names, infos, extras = _user_and_extras(records, keymap, unknown_keys, extra_names)
    extra_names.update(k for k in unknown_keys)
    data: dict[str, pl.Series] = {}
    for c in COLUMNS:
        if c == "User":
            data[c] = _user_column(
                None,
                pl.Series("Email", [None if e is None else str(e) for e in emails], pl.String),
                pl.Series("Name", [None if e is None else str(e) for e in names], pl.String),
                n,
                pl.Series("Info", [_json_text(v) for v in infos], pl.String),
            )[0]
        elif c == "Payload":
            data[c] = pl.Series(c, [_json_text(v) for v in cols[c]], pl.String)
        elif c == "Headers":
            if headers_src:  # present (even as JSON null) -> its JSON text; absent -> null
                k0 = headers_src
                data[c] = pl.Series(c, [
                    next((("null" if r[k] is None else _json_text(r[k])) for k in k0 if k in r), None)
                    for r in records], pl.String)
            else:
                data[c] = pl.Series(c, [None] * n, pl.String)
        elif c == EXTRAS:
            data[c] = pl.Series(c, extras, pl.String)
        elif c == "EventTime":
            vals = cols[c]
            if vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals if v is not None):
                data[c] = pl.Series(c, vals, pl.Int64)
            else:
                data[c] = pl.Series(c, [None if v is None else str(v) if not isinstance(v, datetime) else v.isoformat() for v in vals], pl.String)
        else:
            data[c] = pl.Series(c, [None if v is None else str(v) for v in cols[c]], pl.String)
    return pl.DataFrame(data), extra_names


def _user_and_extras(records: Sequence[Mapping[str, Any]], keymap: Mapping[str, str],
                     unknown_keys: list[str], extra_names: set[str]
                     ) -> tuple[list[Any], list[Any], list[Any], list[str | None]]:
    """Per record: User.Email, User.Name, User.Info and the Extras JSON (fields outside
    the schema, and User fields other than those three); adds their names to
    ``extra_names``."""
    user_keys = [k for k, v in keymap.items() if v == "User"]
    emails: list[Any] = []
    names: list[Any] = []
    infos: list[Any] = []
    extras: list[str | None] = [None] * len(records)
    for j, r in enumerate(records):
        u = None
        for k in user_keys:
            u = r.get(k)
            if u is not None:
                break
        extra: dict[str, Any] | None = None
        if isinstance(u, Mapping):
            email = name = info = None
            for k, v in u.items():
                f = _USER_KEYS.get(k.lower())
                if f == "Email":
                    email = v
                elif f == "Name":
                    name = v
                elif f == "Info":
                    info = _json_text(v) if v is not None else "null"
                else:
                    extra = extra or {}
                    extra.setdefault("User", {})[k] = v
                    extra_names.add(f"User.{k}")
            emails.append(email)
            names.append(name)
            infos.append(info)
        else:
            emails.append(r.get("User.Email"))
            names.append(r.get("User.Name"))
            infos.append(r.get("User.Info"))
        for k in unknown_keys:
            if k in r:
                extra = extra or {}
                extra[k] = r[k]
        if extra is not None:
            extras[j] = orjson.dumps(extra, option=orjson.OPT_NON_STR_KEYS).decode()
    return emails, names, infos, extras


def _frame_to_canonical(df: pl.DataFrame) -> pl.DataFrame:
    """A frame with any column names and dtypes -> the canonical frame. Columns outside
    the schema go to ``Extras`` (one JSON object per row, by column name, null values
    left out)."""
    by_col: dict[str, str] = {}
    unknown: list[str] = []
    email_col = name_col = info_col = None
    for name in df.columns:
        c = canonical_name(name)
        if c == "User.Email":
            email_col = name
        elif c == "User.Name":
            name_col = name
        elif c == "User.Info":
            info_col = name
        elif c is not None and c not in by_col:
            by_col[c] = name
        else:
            unknown.append(name)
    if not by_col and email_col is None and name_col is None and df.width:
        shown = ", ".join(df.columns[:10]) + (", ..." if df.width > 10 else "")
        raise SchemaError(f"none of the columns is an event field ({shown}); "
                          "expected TrackId, EventTime, EventType, ...")
    n = df.height
    out: dict[str, pl.Series] = {}
    user_extra: pl.Series | None = None
    for c in COLUMNS:
        src = by_col.get(c)
        s = df.get_column(src).alias(c) if src is not None else None
        if c == "User":
            out[c], user_extra = _user_column(
                s,
                df.get_column(email_col) if email_col else None,
                df.get_column(name_col) if name_col else None,
                n,
                df.get_column(info_col) if info_col else None,
            )
            out[c] = out[c].alias("User")
        elif c == "EventTime":
            out[c] = _time_column(s) if s is not None else pl.Series(c, [None] * n, TIME_DTYPE)
        elif c in JSON_COLUMNS:
            out[c] = _payload_column(s) if s is not None else pl.Series(c, [None] * n, pl.String)
            if c != "Payload" and s is not None:
                out[c] = out[c].replace("", None)
        else:
            out[c] = _string_column(s) if s is not None else pl.Series(c, [""] * n, pl.String)
    if unknown:
        out[EXTRAS] = _merge_extras_columns(out[EXTRAS], df.select(unknown))
    out[EXTRAS] = _merge_extras(out[EXTRAS], user_extra, n)
    return pl.DataFrame(out)


def _merge_extras_columns(extras: pl.Series, cols: pl.DataFrame) -> pl.Series:
    """Fold columns outside the schema into Extras (JSON object text; nulls left out)."""
    rows = cols.to_dicts()
    base = extras.to_list()
    out: list[str | None] = []
    for b, r in zip(base, rows, strict=True):
        d = orjson.loads(b) if b is not None else {}
        for k, v in r.items():
            if v is not None:
                d[k] = v.isoformat() if isinstance(v, datetime) else v
        out.append(orjson.dumps(d, option=orjson.OPT_NON_STR_KEYS).decode() if d else None)
    return pl.Series(EXTRAS, out, pl.String)


def normalize(raw: Any) -> pl.DataFrame:
    """Turn any source of track events into the canonical events frame.

    ``raw`` may be an API page (``{"items": [...]}``), a list of event objects
    (PascalCase as the API returns them, or camelCase Tracking API bodies), JSON text or
    bytes of either, a Polars DataFrame/LazyFrame (any column case, ``User.Email``
    flattened columns, times as text or datetimes), or a pandas DataFrame.
    Nothing is dropped: fields outside the schema are kept in ``Extras`` by name.

    >>> from psanalytics import normalize
    >>> ev = normalize([
    ...     {"TrackId": "a", "DeviceId": "d1", "EventType": "home",
    ...      "EventTime": "2024-03-04T10:00:00.1234567Z"},
    ...     {"TrackId": "b", "DeviceId": "d1", "EventType": "order",
    ...      "EventTime": "2024-03-04T10:05:00Z"},
    ...     {"TrackId": "c", "DeviceId": "d2", "EventType": "home",
    ...      "EventTime": "2024-03-04T11:00:00Z"},
    ... ])
    >>> ev.columns == list(EVENTS_SCHEMA)
    True
    >>> ev.get_column("EventTime").dt.epoch("ns").to_list()[:2]  # all 7 digits kept
    [1709546400123456700, 1709546700000000000]
    >>> ev.row(0, named=True)["PageUri"], ev.row(0, named=True)["User"]  # never null
    ('', {'Email': '', 'Name': '', 'Info': None})
    """
    if isinstance(raw, pl.LazyFrame):
        raw = raw.collect()
    if isinstance(raw, (bytes, bytearray, memoryview, str)):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise SchemaError(f"not valid JSON: {exc}") from None
    if isinstance(raw, Mapping):
        if "items" in raw or "Items" in raw:
            raw = raw.get("items", raw.get("Items")) or []
        else:
            raw = [raw]
    if isinstance(raw, pl.DataFrame):
        if raw.schema == EVENTS_SCHEMA:
            return raw
        return _frame_to_canonical(raw)
    # A pandas frame can only exist if pandas is imported: never import it (~1 s) to check.
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(raw, pd.DataFrame):
        return _frame_to_canonical(pl.from_pandas(raw))
    if isinstance(raw, Iterable):
        records = list(raw)
        if not records:
            return empty_frame()
        bad = next((i for i, r in enumerate(records) if not isinstance(r, Mapping)), None)
        if bad is not None:
            raise SchemaError(f"record {bad} is {type(records[bad]).__name__}, expected an event object")
        frame, _extra = _records_to_frame(records)
        return _frame_to_canonical(frame)
    raise SchemaError(f"cannot normalize a {type(raw).__name__} into track events")


def _lazy_time(source: str | None) -> Any:
    """A batch function for lazy frames: EventTime text or datetimes -> ns, raising a
    SchemaError (naming ``source``) for an instant a nanosecond time cannot hold."""
    where = f"{source}: " if source else ""

    def convert(s: pl.Series) -> pl.Series:
        if s.dtype == pl.String:
            far = out_of_range_rows(s)
            if far:
                raise SchemaError(f"{where}EventTime is {OUT_OF_RANGE}: {s[far[0]]!r} "
                                  "(read_events names the line)")
            return pl.select(parse_time_expr(pl.lit(s))).to_series()
        try:
            return _time_column(s)
        except SchemaError as exc:
            raise SchemaError(where + str(exc)) from None

    return convert


def normalize_lazy(frame: pl.LazyFrame, *, source: str | None = None) -> pl.LazyFrame:
    """Lazy normalisation for sources whose columns already have the canonical names.

    Casts and fills lazily so ``scan_*`` readers never load the whole input. Columns
    outside the schema are folded into ``Extras`` lazily (a JSON object of the non-null
    ones). An EventTime a nanosecond time cannot hold raises :class:`SchemaError` (naming
    ``source``) when the frame is collected.
    """
    schema = frame.collect_schema()
    if schema == EVENTS_SCHEMA:
        return frame
    exprs: list[pl.Expr] = []
    unknown = [n for n in schema.names() if n not in EVENTS_SCHEMA.names()
               and canonical_name(n) not in ("User.Email", "User.Name", "User.Info")]
    for c in COLUMNS:
        if c == "User":
            if c in schema and isinstance(schema[c], pl.Struct):
                names = {f.name.lower(): f.name for f in schema[c].fields}
                e = pl.col("User").struct.field(names["email"]).cast(pl.String) if "email" in names else pl.lit(None, pl.String)
                m = pl.col("User").struct.field(names["name"]).cast(pl.String) if "name" in names else pl.lit(None, pl.String)
                ik = names.get("info")
                if ik is None:
                    i = pl.lit(None, pl.String)
                elif isinstance(dict(schema[c].to_schema())[ik], pl.Struct):  # type: ignore[union-attr]
                    i = pl.col("User").struct.field(ik).struct.json_encode()
                else:
                    i = pl.col("User").struct.field(ik).cast(pl.String)
            else:
                e = pl.col("User.Email").cast(pl.String) if "User.Email" in schema else pl.lit(None, pl.String)
                m = pl.col("User.Name").cast(pl.String) if "User.Name" in schema else pl.lit(None, pl.String)
                i = pl.col("User.Info").cast(pl.String) if "User.Info" in schema else pl.lit(None, pl.String)
            exprs.append(pl.struct(e.fill_null("").alias("Email"), m.fill_null("").alias("Name"),
                                   i.alias("Info")).alias("User"))
        elif c == "EventTime":
            if c not in schema:
                exprs.append(pl.lit(None, TIME_DTYPE).alias(c))
            elif schema[c] == pl.String or (isinstance(schema[c], pl.Datetime)
                                             and schema[c].time_unit != "ns"):  # type: ignore[union-attr]
                exprs.append(pl.col(c).map_batches(_lazy_time(source), return_dtype=TIME_DTYPE,
                                                   is_elementwise=True).alias(c))
            elif isinstance(schema[c], pl.Datetime):
                col = pl.col(c)
                if schema[c].time_zone is None:  # type: ignore[union-attr]
                    col = col.dt.replace_time_zone("UTC")
                exprs.append(col.dt.convert_time_zone("UTC").dt.cast_time_unit("ns").alias(c))
            else:
                exprs.append(pl.col(c).cast(TIME_DTYPE).alias(c))
        elif c == EXTRAS and unknown:
            base = pl.col(c).cast(pl.String) if c in schema else pl.lit(None, pl.String)
            exprs.append(pl.struct(base.alias(c), *[pl.col(u) for u in unknown]).map_batches(
                lambda s: _merge_extras_columns(s.struct.field(EXTRAS), s.struct.unnest().drop(EXTRAS)),
                return_dtype=pl.String).alias(c))
        elif c in JSON_COLUMNS:
            if c not in schema:
                exprs.append(pl.lit(None, pl.String).alias(c))
            elif isinstance(schema[c], pl.Struct):
                exprs.append(
                    pl.when(pl.col(c).is_null()).then(None).otherwise(pl.col(c).struct.json_encode()).alias(c)
                )
            else:
                exprs.append(pl.col(c).cast(pl.String))
        else:
            exprs.append(
                (pl.col(c).cast(pl.String).fill_null("") if c in schema else pl.lit("")).alias(c)
            )
    return frame.select(exprs)


# --------------------------------------------------------------------------- API JSON out, NDJSON in
# Live in psanalytics.wire.api_json and psanalytics.wire.ndjson (one home per wire
# format); the names stay importable from here, loaded on first use (wire imports this
# module, not the reverse).

_MOVED_TO_WIRE = {
    **dict.fromkeys(("api_json_lines", "to_api_json", "join_api_json", "to_api_records"), "api_json"),
    **dict.fromkeys(("NdjsonError", "first_bad_ndjson_lines", "wrong_type_lines", "ndjson_read_plan",
                     "ndjson_to_frame", "_sample_keys"), "ndjson"),
}


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_WIRE:
        from psanalytics.wire import api_json, ndjson

        return getattr({"api_json": api_json, "ndjson": ndjson}[_MOVED_TO_WIRE[name]], name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- API JSON in


_PAGE_SCHEMA = {c: pl.String for c in STRING_COLUMNS}
_PAGE_SCHEMA["EventTime"] = pl.String
_PAGE_SCHEMA["User"] = pl.Struct({"Email": pl.String, "Name": pl.String})


def _payload_series(items: list[dict[str, Any]]) -> pl.Series:
    dumps = orjson.dumps
    vals = [
        None if (p := it.get("Payload")) is None else (p.encode() if isinstance(p, str) else dumps(p))
        for it in items
    ]
    return pl.Series("Payload", vals, pl.Binary).cast(pl.String)


def api_records_frame(items: list[dict[str, Any]]) -> pl.DataFrame:
    """API event objects (PascalCase) -> canonical frame, fast (Rust-side construction).

    ``Headers``, ``User.Info`` and fields outside the schema are kept (collected in one
    pass over the items). Falls back to :func:`psanalytics.schema.normalize` for other
    shapes (camelCase, odd time formats).
    """
    if not items:
        return empty_frame()
    shape = _shape(items)
    if shape is None:
        return normalize(items)
    try:
        frame = pl.from_dicts(items, schema=_PAGE_SCHEMA)
        if out_of_range_rows(frame.get_column("EventTime")):
            raise ValueError("an EventTime a ns time cannot hold")  # normalize() names it
        times = frame.get_column("EventTime").str.to_datetime(
            "%Y-%m-%dT%H:%M:%S%.fZ", time_unit="ns", time_zone="UTC", strict=True
        )
    except Exception:  # noqa: BLE001 - any surprise: take the careful path
        return normalize(items)
    headers, info, extras = _rich_columns(items) if shape == "rich" else (None, None, None)
    none = pl.lit(None, pl.String)
    frame = frame.with_columns(
        [pl.col(c).fill_null("") for c in STRING_COLUMNS]
        + [
            times.alias("EventTime"),
            pl.struct(
                pl.col("User").struct.field("Email").fill_null(""),
                pl.col("User").struct.field("Name").fill_null(""),
                (none if info is None else pl.lit(info)).alias("Info"),
            ).alias("User"),
            _payload_series(items),
            (none if headers is None else pl.lit(headers)).alias("Headers"),
            (none if extras is None else pl.lit(extras)).alias(EXTRAS),
        ]
    )
    return frame.select(COLUMNS)


_PLAIN_KEYS = frozenset(API_ORDER)
_PLAIN_USER = frozenset({"Email", "Name"})
_RICH_KEYS = _PLAIN_KEYS | {"Headers"}


def _shape(items: list[Any]) -> str | None:
    """"plain" (only the plain API keys: read whole by columns), "rich" (also Headers,
    User.Info or fields outside the schema: those collected apart), or None (not the
    API's PascalCase objects: normalize)."""
    shape = "plain"
    for it in items:
        if not isinstance(it, dict):
            return None
        keys = it.keys()
        if not keys <= _PLAIN_KEYS:
            for k in keys - _RICH_KEYS:
                if canonical_name(k) is not None:  # camelCase or another spelling
                    return None
            shape = "rich"
        u = it.get("User")
        if u is not None:
            if not isinstance(u, dict):
                return None
            if not u.keys() <= _PLAIN_USER:
                shape = "rich"
    return shape


def _rich_columns(items: list[dict[str, Any]]) -> tuple[pl.Series, pl.Series, pl.Series]:
    """(Headers, User.Info, Extras) JSON text of each item (null when absent)."""
    dumps = orjson.dumps
    headers: list[str | None] = []
    info: list[str | None] = []
    extras: list[str | None] = []
    for it in items:
        h = it.get("Headers", _MISSING)
        headers.append(None if h is _MISSING else dumps(h).decode())
        u = it.get("User")
        more: dict[str, Any] = {k: v for k, v in it.items() if k not in _RICH_KEYS}
        if isinstance(u, dict):
            i = u.get("Info", _MISSING)
            info.append(None if i is _MISSING else dumps(i).decode())
            other = {k: v for k, v in u.items() if k not in ("Email", "Name", "Info")}
            if other:
                more = {"User": other, **more}
        else:
            info.append(None)
        extras.append(dumps(more, option=orjson.OPT_NON_STR_KEYS).decode() if more else None)
    return (pl.Series("Headers", headers, pl.String), pl.Series("Info", info, pl.String),
            pl.Series(EXTRAS, extras, pl.String))


_MISSING = object()
