"""The canonical events frame: column order, dtypes, and ``normalize()``.

This module is the only place in psanalytics that decides dtypes. Every reader, the
emulator, the loader and the replayer turn their input into exactly this frame:

========== ============================== =============================================
column     dtype                          rule
========== ============================== =============================================
TrackId    String                         "" when the source has none
DeviceId.. String (10 columns)            never null: a missing string is ""
EventTime  Datetime("ns", "UTC")          all 7 fractional digits of the API are kept
User       Struct{Email: String,          missing fields ""
           Name: String}
Payload    String (JSON text) or null     keys differ per EventType
========== ============================== =============================================
"""

from __future__ import annotations

import re
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
import polars as pl

from psanalytics import _time
from psanalytics.errors import PsaWarning, SchemaError

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

USER_DTYPE = pl.Struct({"Email": pl.String, "Name": pl.String})
TIME_DTYPE = pl.Datetime("ns", "UTC")

#: The canonical schema, in column order.
EVENTS_SCHEMA: pl.Schema = pl.Schema(
    [(c, pl.String) for c in STRING_COLUMNS]
    + [("EventTime", TIME_DTYPE), ("User", USER_DTYPE), ("Payload", pl.String)]
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

# Source field name (any case style) -> canonical column. Lower-cased keys.
_ALIASES: dict[str, str] = {c.lower(): c for c in COLUMNS}
_ALIASES.update(
    {
        "trackid": "TrackId",
        "id": "TrackId",
        "user.email": "User.Email",
        "user.name": "User.Name",
        "user_email": "User.Email",
        "user_name": "User.Name",
    }
)
#: Fields the API sends that the canonical frame deliberately does not keep.
KNOWN_DROPPED: frozenset[str] = frozenset({"headers", "user.info", "info"})


class UnknownFieldsWarning(PsaWarning):
    """Input fields that are not part of the events schema were dropped (``fields`` names them)."""

    def __init__(self, fields: Iterable[str]):
        self.fields = sorted(set(fields))
        super().__init__(
            f"psanalytics: dropped fields not in the events schema: {', '.join(self.fields)}"
        )


def unknown_fields(names: Iterable[str]) -> list[str]:
    """The names that map to no canonical column (and are not known API extras)."""
    return [n for n in names if canonical_name(n) is None and n.lower() not in KNOWN_DROPPED]


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


def _user_column(series: pl.Series | None, email: pl.Series | None, name: pl.Series | None, n: int) -> pl.Series:
    if series is not None and isinstance(series.dtype, pl.Struct):
        fields = {f.name.lower(): f.name for f in series.dtype.fields}
        email = series.struct.field(fields["email"]) if "email" in fields else email
        name = series.struct.field(fields["name"]) if "name" in fields else name
    elif series is not None and series.dtype == pl.String:
        decoded = series.str.json_decode(pl.Struct({"Email": pl.String, "Name": pl.String}))
        email = decoded.struct.field("Email")
        name = decoded.struct.field("Name")
    e = _string_column(email) if email is not None else pl.Series("Email", [""] * n, pl.String)
    m = _string_column(name) if name is not None else pl.Series("Name", [""] * n, pl.String)
    return pl.DataFrame({"Email": e, "Name": m}).to_struct("User")


# --------------------------------------------------------------------------- normalize


def _records_to_frame(records: Sequence[Mapping[str, Any]]) -> tuple[pl.DataFrame, set[str]]:
    """Columnar build from dicts (PascalCase API objects or camelCase Tracking bodies)."""
    unknown: set[str] = set()
    keymap: dict[str, str] = {}
    for rec in records:  # every record: a field may first appear late
        for k in rec:
            if k not in keymap:
                c = canonical_name(k)
                keymap[k] = c or ""
    cols: dict[str, list[Any]] = {c: [] for c in COLUMNS if c != "User"}
    emails: list[Any] = []
    names: list[Any] = []
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
    user_keys = [k for k, v in keymap.items() if v == "User"]
    for r in records:
        u = None
        for k in user_keys:
            u = r.get(k)
            if u is not None:
                break
        if isinstance(u, Mapping):
            emails.append(u.get("Email", u.get("email")))
            names.append(u.get("Name", u.get("name")))
        else:
            emails.append(r.get("User.Email"))
            names.append(r.get("User.Name"))
    for k, v in keymap.items():
        if not v and k.lower() not in KNOWN_DROPPED:
            unknown.add(k)
    data: dict[str, pl.Series] = {}
    for c in COLUMNS:
        if c == "User":
            data[c] = _user_column(
                None,
                pl.Series("Email", [None if e is None else str(e) for e in emails], pl.String),
                pl.Series("Name", [None if e is None else str(e) for e in names], pl.String),
                n,
            )
        elif c == "Payload":
            data[c] = pl.Series(c, [_json_text(v) for v in cols[c]], pl.String)
        elif c == "EventTime":
            vals = cols[c]
            if vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals if v is not None):
                data[c] = pl.Series(c, vals, pl.Int64)
            else:
                data[c] = pl.Series(c, [None if v is None else str(v) if not isinstance(v, datetime) else v.isoformat() for v in vals], pl.String)
        else:
            data[c] = pl.Series(c, [None if v is None else str(v) for v in cols[c]], pl.String)
    return pl.DataFrame(data), unknown


def _frame_to_canonical(df: pl.DataFrame, *, warn: bool = True) -> pl.DataFrame:
    by_col: dict[str, str] = {}
    unknown: list[str] = []
    email_col = name_col = None
    for name in df.columns:
        c = canonical_name(name)
        if c == "User.Email":
            email_col = name
        elif c == "User.Name":
            name_col = name
        elif c is not None and c not in by_col:
            by_col[c] = name
        elif c is None and name.lower() not in KNOWN_DROPPED:
            unknown.append(name)
    if not by_col and email_col is None and name_col is None and df.width:
        shown = ", ".join(df.columns[:10]) + (", ..." if df.width > 10 else "")
        raise SchemaError(f"none of the columns is an event field ({shown}); "
                          "expected TrackId, EventTime, EventType, ...")
    if unknown and warn:
        warnings.warn(UnknownFieldsWarning(unknown), stacklevel=3)
    n = df.height
    out: dict[str, pl.Series] = {}
    for c in COLUMNS:
        src = by_col.get(c)
        s = df.get_column(src).alias(c) if src is not None else None
        if c == "User":
            out[c] = _user_column(
                s,
                df.get_column(email_col) if email_col else None,
                df.get_column(name_col) if name_col else None,
                n,
            ).alias("User")
        elif c == "EventTime":
            out[c] = _time_column(s) if s is not None else pl.Series(c, [None] * n, TIME_DTYPE)
        elif c == "Payload":
            out[c] = _payload_column(s) if s is not None else pl.Series(c, [None] * n, pl.String)
        else:
            out[c] = _string_column(s) if s is not None else pl.Series(c, [""] * n, pl.String)
    return pl.DataFrame(out)


def normalize(raw: Any, *, warn_unknown: bool = True) -> pl.DataFrame:
    """Turn any source of track events into the canonical events frame.

    ``raw`` may be an API page (``{"items": [...]}``), a list of event objects
    (PascalCase as the API returns them, or camelCase Tracking API bodies), JSON text or
    bytes of either, a Polars DataFrame/LazyFrame (any column case, ``User.Email``
    flattened columns, times as text or datetimes), or a pandas DataFrame.
    Fields that are not part of the schema are dropped with one warning naming them.

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
    ('', {'Email': '', 'Name': ''})
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
        return _frame_to_canonical(raw, warn=warn_unknown)
    # A pandas frame can only exist if pandas is imported: never import it (~1 s) to check.
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(raw, pd.DataFrame):
        return _frame_to_canonical(pl.from_pandas(raw), warn=warn_unknown)
    if isinstance(raw, Iterable):
        records = list(raw)
        if not records:
            return empty_frame()
        bad = next((i for i, r in enumerate(records) if not isinstance(r, Mapping)), None)
        if bad is not None:
            raise SchemaError(f"record {bad} is {type(records[bad]).__name__}, expected an event object")
        frame, unknown = _records_to_frame(records)
        if unknown and warn_unknown:
            warnings.warn(UnknownFieldsWarning(unknown), stacklevel=2)
        return _frame_to_canonical(frame, warn=False)
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

    Casts and fills lazily so ``scan_*`` readers never load the whole input. Columns that
    need nested decoding (User as JSON text, Payload as a struct) fall back to eager.
    An EventTime a nanosecond time cannot hold raises :class:`SchemaError` (naming
    ``source``) when the frame is collected.
    """
    schema = frame.collect_schema()
    if schema == EVENTS_SCHEMA:
        return frame
    exprs: list[pl.Expr] = []
    for c in COLUMNS:
        if c == "User":
            if c in schema and schema[c] == USER_DTYPE:
                exprs.append(
                    pl.struct(
                        pl.col("User").struct.field("Email").fill_null(""),
                        pl.col("User").struct.field("Name").fill_null(""),
                    ).alias("User")
                )
            elif c in schema and isinstance(schema[c], pl.Struct):
                names = {f.name.lower(): f.name for f in schema[c].fields}
                e = pl.col("User").struct.field(names["email"]).cast(pl.String) if "email" in names else pl.lit(None, pl.String)
                m = pl.col("User").struct.field(names["name"]).cast(pl.String) if "name" in names else pl.lit(None, pl.String)
                exprs.append(pl.struct(e.fill_null("").alias("Email"), m.fill_null("").alias("Name")).alias("User"))
            else:
                e = pl.col("User.Email").cast(pl.String) if "User.Email" in schema else pl.lit(None, pl.String)
                m = pl.col("User.Name").cast(pl.String) if "User.Name" in schema else pl.lit(None, pl.String)
                exprs.append(pl.struct(e.fill_null("").alias("Email"), m.fill_null("").alias("Name")).alias("User"))
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
        elif c == "Payload":
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


# --------------------------------------------------------------------------- API JSON out


def api_json_lines(frame: pl.DataFrame) -> pl.Series:
    """One JSON object per event, exactly as the API returns it (vectorised)."""
    df = normalize(frame)
    head = df.select(
        pl.struct(
            [
                (format_time_expr(pl.col(c)) if c == "EventTime" else pl.col(c)).alias(c)
                for c in API_ORDER
                if c != "Payload"
            ]
        )
        .struct.json_encode()
        .alias("head"),
        pl.col("Payload").fill_null("null"),
    )
    return head.select(
        (pl.col("head").str.head(-1) + ',"Payload":' + pl.col("Payload") + "}").alias("json")
    ).to_series()


def to_api_json(frame: pl.DataFrame, *, envelope: bool = False, total: int | None = None) -> bytes:
    """Events as the API writes them: a JSON array, or ``{"items","total","count"}``.

    EventTime is ``yyyy-MM-ddTHH:mm:ss.fffffffZ`` (7 digits), missing strings are "",
    a missing Payload is ``null``.
    """
    return join_api_json(api_json_lines(frame), envelope=envelope, total=total)


def join_api_json(lines: pl.Series, *, envelope: bool = False, total: int | None = None) -> bytes:
    """The response body for already encoded event objects (see :func:`to_api_json`),
    built in one pass (a page of 10,000 events is ~7 MB: no extra copies)."""
    n = len(lines)
    head, tail = "[", "]"
    if envelope:
        head = '{"items":['
        tail = f'],"total":{n if total is None else total},"count":{n}}}'
    if n == 0:
        return (head + tail).encode()
    return pl.select(
        pl.concat_str(pl.lit(head), pl.lit(lines).str.join(","), pl.lit(tail)).cast(pl.Binary)
    ).item()


def to_api_records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Events as a list of API-shaped dicts (Payload decoded)."""
    return orjson.loads(to_api_json(frame))


# --------------------------------------------------------------------------- NDJSON in


class NdjsonError(SchemaError):
    """A line of NDJSON text is not a JSON object; ``line`` is 1-based in the input."""

    def __init__(self, message: str, *, line: int | None = None):
        self.line = line
        super().__init__(message)


def _ndjson_lines(data: bytes) -> pl.Series:
    """The non-blank lines of NDJSON text as a String series (no JSON parsing)."""
    if not data or (len(data) < 4096 and not data.strip()):
        return pl.Series("line", [], pl.String)
    # 0x1F can never appear raw inside valid JSON, so it is a safe "no separator" here.
    lines = pl.read_csv(
        data,
        has_header=False,
        separator="\x1f",
        quote_char=None,
        schema={"line": pl.String},
        truncate_ragged_lines=False,
    ).get_column("line")
    lines = lines.drop_nulls()
    if lines.str.len_bytes().min() in (None, 0) or bool(lines.str.head(1).is_in([" ", "\t", "\r"]).any()):
        lines = lines.filter(lines.str.strip_chars() != "")
    return lines


def first_bad_ndjson_lines(data: bytes, *, limit: int | None = 1) -> list[tuple[int, str]]:
    """``(line_number, reason)`` of lines that are not JSON objects (1-based, blank lines ok)."""
    bad: list[tuple[int, str]] = []
    for i, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            bad.append((i, f"not valid JSON ({exc})"))
        else:
            if not isinstance(obj, dict):
                bad.append((i, f"expected a JSON object, got {type(obj).__name__}"))
            elif (t := obj.get("EventTime", obj.get("eventTime"))) is not None and not isinstance(
                t, (str, int)
            ):
                bad.append((i, f"EventTime is {type(t).__name__}, expected ISO 8601 text"))
        if limit is not None and len(bad) >= limit:
            break
    return bad


def wrong_type_lines(data: bytes, *, limit: int | None = 1) -> list[tuple[int, str]]:
    """``(line_number, reason)`` of JSON-object lines whose fields have a type the fast
    reader cannot take: a ``User`` that is not an object, or an integer ``EventTime``
    column (epoch ms) with a non-integer in it. Polars names neither the line nor the
    field, so the read plan is checked here, line by line (only after a failed read)."""
    keys, examples = _sample_keys(data)
    read_schema, _, _, _ = ndjson_read_plan(keys, examples, data)
    checks: list[tuple[str, str, Any]] = []
    for k, dtype in read_schema.items():
        if isinstance(dtype, pl.Struct):
            want = "an object {" + ", ".join(f.name for f in dtype.fields) + "}"
            checks.append((k, want, lambda v: isinstance(v, dict)))
        elif dtype == pl.Int64:
            checks.append((k, "an integer (epoch milliseconds, like the other lines)",
                           lambda v: isinstance(v, int) and not isinstance(v, bool)))
    bad: list[tuple[int, str]] = []
    if not checks:
        return bad
    for i, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            continue
        for k, want, ok in checks:
            v = obj.get(k)
            if v is not None and not ok(v):
                bad.append((i, f"{k} is {type(v).__name__}, expected {want}"))
                break
        if limit is not None and len(bad) >= limit:
            break
    return bad


def _sample_keys(data: bytes, n: int = 1000) -> tuple[list[str], dict[str, Any]]:
    """Keys (in first-seen order) and one example value per key from the first ``n`` lines."""
    keys: dict[str, Any] = {}
    seen = 0
    cut = 0
    for _ in range(n + 50):  # find the end of the first n + 50 lines without copying
        nxt = data.find(b"\n", cut)
        if nxt < 0:
            cut = len(data)
            break
        cut = nxt + 1
    head = data[:cut].split(b"\n")
    for raw in head:
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k not in keys or (keys[k] is None and v is not None):
                    keys[k] = v
        seen += 1
        if seen >= n:
            break
    return list(keys), keys


def ndjson_read_plan(
    keys: Sequence[str], examples: Mapping[str, Any], data: bytes | None = None
) -> tuple[dict[str, pl.DataType], dict[str, str], list[str], str | None]:
    """How to read NDJSON whose sampled lines have ``keys``: (Polars read schema without
    Payload, source -> canonical renames, unknown field names, the Payload key).

    Keys are sampled from the first lines; when ``data`` is given, canonical fields missing
    from the sample are looked for in the whole text (a fast byte search), so a field that
    first appears late in a file is still read.
    """
    keys = list(keys)
    if data is not None:
        have = {canonical_name(k) for k in keys}
        for c in COLUMNS:
            if c in have:
                continue
            for variant in (c, c[0].lower() + c[1:]):
                if data.find(f'"{variant}"'.encode()) >= 0:
                    keys.append(variant)
                    break
    read_schema: dict[str, pl.DataType] = {}
    rename: dict[str, str] = {}
    unknown: list[str] = []
    payload_key: str | None = None
    for k in keys:
        c = canonical_name(k)
        if c is None:
            if k.lower() not in KNOWN_DROPPED:
                unknown.append(k)
            continue
        if c in rename.values():
            continue
        rename[k] = c
        if c == "Payload":
            payload_key = k
        elif c == "User":
            ex = examples.get(k)
            fields = {f.lower(): f for f in ex} if isinstance(ex, dict) else {}
            read_schema[k] = pl.Struct(
                {fields.get("email", "Email"): pl.String, fields.get("name", "Name"): pl.String}
            )
        elif c == "EventTime" and isinstance(examples.get(k), int):
            read_schema[k] = pl.Int64
        else:
            read_schema[k] = pl.String
    return read_schema, rename, unknown, payload_key


def ndjson_to_frame(data: bytes, *, warn_unknown: bool = True) -> pl.DataFrame:
    """Parse NDJSON event objects (API PascalCase or camelCase Tracking bodies) fast.

    ``Payload`` keeps the exact JSON text of the line when the objects are laid out as the
    API writes them (``Payload`` last); otherwise it is re-encoded compactly. Unknown
    fields are dropped with one warning naming them. Raises :class:`NdjsonError` naming the
    first bad line when a line is not a JSON object.
    """
    if not data or (len(data) < 4096 and not data.strip()):
        return empty_frame()
    keys, examples = _sample_keys(data)
    if not keys:
        bad = first_bad_ndjson_lines(data)
        line, reason = bad[0] if bad else (1, "no JSON object found")
        raise NdjsonError(reason, line=line)
    read_schema, rename, unknown, payload_key = ndjson_read_plan(keys, examples, data)
    if not rename:
        shown = ", ".join(keys[:10]) + (", ..." if len(keys) > 10 else "")
        raise NdjsonError(f"none of the fields is an event field ({shown}); expected TrackId, "
                          "EventTime, EventType, ...", line=None)
    if unknown and warn_unknown:
        warnings.warn(UnknownFieldsWarning(unknown), stacklevel=2)
    try:
        frame = pl.read_ndjson(data, schema=read_schema)
        lines = _ndjson_lines(data) if payload_key is not None else None
    except Exception as exc:  # polars raises ComputeError without a line number
        bad = first_bad_ndjson_lines(data) or wrong_type_lines(data)
        if bad:
            raise NdjsonError(bad[0][1], line=bad[0][0]) from None
        raise NdjsonError(f"could not parse NDJSON: {exc}") from None
    if lines is not None and len(lines) != frame.height:
        bad = first_bad_ndjson_lines(data)
        raise NdjsonError(bad[0][1] if bad else "line count mismatch", line=bad[0][0] if bad else None)
    if payload_key is not None and lines is not None:
        others = (set(keys) | set(API_ORDER) | {"Headers"}) - {payload_key}
        payload = _payload_text(lines, payload_key, others)
        frame = frame.with_columns(payload.alias(payload_key))
    frame = frame.rename(rename)
    return _frame_to_canonical(frame, warn=False)


def _payload_text(lines: pl.Series, key: str, others: Iterable[str]) -> pl.Series:
    """The exact JSON text of each line's ``key`` value, without parsing it.

    Fast path (the API's layout, Payload last): the text between ``"Payload":`` and the
    line's closing ``}``. A line where that is not certainly right (the key appears more
    than once, or another top-level key name follows it) is parsed instead, and its
    Payload re-encoded compactly (with orjson, exactly; by Polars when more than 200,000
    lines need it, where float digits may be normalised).
    """
    needle = f'"{key}":'
    if not lines.str.ends_with("}").all():
        lines = lines.str.strip_chars_end()
    start = lines.str.find(needle, literal=True) + len(needle)  # a byte offset
    # Slice bytes (str.slice would count characters); the cut points are ASCII, so the
    # result is valid UTF-8.
    sliced = pl.select(
        pl.lit(lines).cast(pl.Binary).bin.slice(pl.lit(start)).bin.head(-1).cast(pl.String)
    ).to_series()
    if bool((sliced.str.starts_with(" ") | sliced.str.ends_with(" ")).any()):
        sliced = sliced.str.strip_chars()
    names = [f'"{k}"' for k in sorted(set(others) | {key})]
    ok = pl.select(
        (
            pl.lit(start).is_not_null()
            & pl.lit(lines).str.ends_with("}")
            & ~pl.lit(sliced).str.contains_any(names)
        ).fill_null(False)
    ).to_series()
    if not ok.all():
        idx = (~ok).arg_true()
        todo = lines.gather(idx)
        if len(idx) <= 200_000:
            # orjson is exact (floats, 1.0 vs 1) and matches normalize()'s Payload text.
            parsed = pl.Series(
                [_json_text(orjson.loads(t).get(key)) for t in todo.to_list()], dtype=pl.String
            )
        else:  # a whole file in another layout: stay vectorised
            parsed = todo.str.json_path_match(f"$.{key}")
        sliced = sliced.scatter(idx, parsed)
    return pl.select(
        pl.when(pl.lit(sliced) == "null").then(None).otherwise(pl.lit(sliced))
    ).to_series()
