"""TrackEvents API JSON, both ways: the one home of the API's event JSON.

In: :func:`parse_page` takes one response body (``{"items": [...], "total": n}`` or a
bare array); :func:`parse_items` takes already-decoded event objects. Both fall back to
:func:`psanalytics.schema.normalize` for shapes other than the documented one.

Out: :func:`api_json_lines` (one JSON object per event, exactly as the API writes it),
:func:`to_api_json` / :func:`join_api_json` (response bodies), :func:`to_api_records`.
(``psanalytics.schema`` still answers to these four names.)
"""

from __future__ import annotations

import io
import re
from typing import Any

import msgspec
import orjson
import polars as pl

from psanalytics import schema

__all__ = ["parse_page", "parse_items", "peek_total", "api_json_lines", "to_api_json",
           "join_api_json", "to_api_records"]



def parse_items(items: list[dict[str, Any]]) -> pl.DataFrame:
    """API event objects (PascalCase) -> canonical frame, fast (Rust-side construction).

    ``Headers``, ``User.Info`` and fields outside the schema are kept. Falls back to
    :func:`psanalytics.schema.normalize` for other shapes (camelCase, odd time formats).
    (The implementation is :func:`psanalytics.schema.api_records_frame`, which the NDJSON
    reader shares.)
    """
    return schema.api_records_frame(items)


class _PayloadItem(msgspec.Struct, gc=False):  # no GC tracking: 10,000 per page
    Payload: msgspec.Raw = msgspec.Raw(b"null")
    # the text, only to see (min/max) whether any instant lies outside what a ns time
    # holds: Arrow's timestamp parser wraps those around without a word
    EventTime: str | None = None


class _PayloadPage(msgspec.Struct, gc=False):
    items: list[_PayloadItem]
    total: int | None = None
    count: int | None = None


_PAYLOAD_DECODER = msgspec.json.Decoder(_PayloadPage)
_PAYLOAD_LIST_DECODER = msgspec.json.Decoder(list[_PayloadItem])

# The second pass, only for pages whose key count says there is more than the plain
# fields: the JSON text of Headers and User.Info (b"" when absent).
_ABSENT = msgspec.Raw(b"")


class _RichUser(msgspec.Struct, gc=False):
    Info: msgspec.Raw = _ABSENT


class _RichItem(msgspec.Struct, gc=False):
    User: _RichUser | None = None
    Headers: msgspec.Raw = _ABSENT


class _RichPage(msgspec.Struct, gc=False):
    items: list[_RichItem]


_RICH_DECODER = msgspec.json.Decoder(_RichPage)
_RICH_LIST_DECODER = msgspec.json.Decoder(list[_RichItem])


def _arrow_json() -> tuple[Any, Any, Any]:
    """(pyarrow.json, options for NDJSON items, options for a whole ``{"items": ...}`` page)."""
    global _ARROW
    if _ARROW is None:
        import pyarrow as pa
        import pyarrow.json as paj

        # EventTime is parsed by Arrow (ISO 8601, in C++); a value it cannot read sends the
        # page down the careful path.
        fields = [(c, pa.string()) for c in schema.STRING_COLUMNS] + [
            ("EventTime", pa.timestamp("ns", tz="UTC")),
            ("User", pa.struct([("Email", pa.string()), ("Name", pa.string())])),
        ]
        items = paj.ParseOptions(explicit_schema=pa.schema(fields), unexpected_field_behavior="ignore")
        page = paj.ParseOptions(
            explicit_schema=pa.schema([("items", pa.list_(pa.struct(fields)))]),
            unexpected_field_behavior="ignore",
        )
        _ARROW = (paj, items, page)
    return _ARROW


_ARROW: tuple[Any, Any, Any] | None = None


def _pool() -> Any:
    """The Arrow memory pool for page parsing: the system allocator. Arrow's default
    (mimalloc) hands its memory back and faults fresh huge pages in for every page,
    which cost ~15 % of the client's CPU on a million-event fetch; a page's Arrow buffers
    live only until the frame is built."""
    import pyarrow as pa

    return pa.system_memory_pool()


_RAW_LIST_DECODER = msgspec.json.Decoder(list[msgspec.Raw])


def parse_page(body: bytes) -> tuple[pl.DataFrame, int]:
    """One TrackEvents response body -> (canonical frame, total), exactly.

    Fast path for the documented shape (``{"items": [PascalCase events], "total": n}``
    or a bare array of events): msgspec hands over each ``Payload`` as its raw JSON text,
    untouched, without building Python objects for the rest; Arrow's JSON reader decodes
    the plain fields (C++, GIL released, on the calling thread: windows already
    parse in parallel) straight into columns. Anything else
    (camelCase, numbers where strings belong, odd times) goes through
    :func:`psanalytics.schema.normalize`. Raises ``ValueError`` on a body that is not
    valid JSON (the caller retries it like a dropped connection).
    """
    bare = body[:1] == b"["
    try:
        if bare:
            raw_items: list[msgspec.Raw] = _RAW_LIST_DECODER.decode(body)
            payloads = _PAYLOAD_LIST_DECODER.decode(body)
            total: int | None = None
            envelope_keys = 0
        else:
            page = _PAYLOAD_DECODER.decode(body)
            payloads, total = page.items, page.total
            envelope_keys = 1 + (total is not None) + (page.count is not None)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return _slow_page(body)
    n = len(payloads)
    if n == 0:
        return schema.empty_frame(), int(total or 0)
    try:
        texts = [it.EventTime for it in payloads]
        if min(texts) < "1678" or max(texts) > "2262":  # type: ignore[type-var,operator]
            return _slow_page(body)  # near or past the edges: checked exactly there
    except TypeError:  # a missing EventTime
        return _slow_page(body)
    read = _arrow_items(body, raw_items if bare else None)
    if read is None:
        return _slow_page(body)
    items, times = read
    if items.height != n or times.null_count() or items.get_column("TrackId").null_count() == n:
        return _slow_page(body)
    pay = pl.Series("Payload", [bytes(it.Payload) for it in payloads], pl.Binary).cast(pl.String)
    user = items.get_column("User")
    # Nothing dropped: every key in the body must be one this frame holds. Count the
    # ``":`` marks (one per key) against the keys read; any other key (Headers,
    # User.Info, a field outside the schema), a key holding null, or a string value
    # containing ``":`` makes the counts differ, and the page is read more carefully.
    plain = envelope_keys + n + int(schema.key_marks_in(pay).sum() or 0)
    plain += sum(n - items.get_column(c).null_count() for c in _ARROW_TOP)
    plain += (n - user.null_count()) + (n - user.struct.field("Email").null_count()) + (
        n - user.struct.field("Name").null_count())
    rich = _headers_and_info(body, bare, plain)
    if rich is None:
        return _slow_page(body)
    headers, info = rich
    fix = [pl.col(c).fill_null("") for c in schema.STRING_COLUMNS
           if items.get_column(c).null_count()]
    fix.append(pl.struct(
        pl.col("User").struct.field("Email").fill_null(""),
        pl.col("User").struct.field("Name").fill_null(""),
        (info if info is not None else pl.lit(None, pl.String)).alias("Info"),
    ).alias("User"))
    frame = items.with_columns(
        fix + [times.alias("EventTime"), pl.when(pay == "null").then(None).otherwise(pay).alias("Payload"),
               (headers if headers is not None else pl.lit(None, pl.String)).alias("Headers"),
               pl.lit(None, pl.String).alias(schema.EXTRAS)]
    ).select(schema.COLUMNS)
    return frame, int(total if total is not None else n)


def _arrow_items(body: bytes, raw_items: list[msgspec.Raw] | None) -> tuple[pl.DataFrame, pl.Series] | None:
    """The plain fields of a page's events read by Arrow (``raw_items`` for a bare array,
    None for the envelope), with EventTime as the canonical dtype; None when Arrow
    cannot (the careful path then reads the page)."""
    try:
        paj, item_opts, page_opts = _arrow_json()
        if raw_items is not None:
            nd = b"\n".join(raw_items)
            table = paj.read_json(io.BytesIO(nd), parse_options=item_opts, memory_pool=_pool(),
                                  read_options=paj.ReadOptions(use_threads=False,
                                                               block_size=max(1 << 21, len(nd) + 1)))
            items = pl.from_arrow(table)
        else:
            # The whole page is one JSON object: one row whose "items" list holds the events.
            table = paj.read_json(io.BytesIO(body), parse_options=page_opts, memory_pool=_pool(),
                                  read_options=paj.ReadOptions(use_threads=False,
                                                               block_size=max(1 << 21, len(body) + 1)))
            items = pl.from_arrow(table).get_column("items").explode().struct.unnest()  # type: ignore[union-attr]
        assert isinstance(items, pl.DataFrame)
        times = items.get_column("EventTime")
        if times.dtype != schema.TIME_DTYPE:
            times = times.cast(schema.TIME_DTYPE)
    except Exception:  # noqa: BLE001 - any surprise: take the careful path
        return None
    return items, times


def _headers_and_info(body: bytes, bare: bool, plain: int) -> tuple[Any, Any] | None:
    """(Headers, User.Info) when the body holds keys beyond the plain ones, as
    expressions (None, None when it holds none); None when the key count still differs
    (the careful path then reads the page)."""
    marks = schema.key_marks(body)
    headers = info = None
    if marks != plain:
        try:
            rich = (_RICH_LIST_DECODER.decode(body) if bare else _RICH_DECODER.decode(body).items)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        headers = pl.Series("Headers", [bytes(it.Headers) for it in rich], pl.Binary).cast(pl.String)
        info = pl.Series("Info", [b"" if it.User is None else bytes(it.User.Info) for it in rich],
                         pl.Binary).cast(pl.String)
        extra = int(schema.key_marks_in(headers).sum() or 0) + int(schema.key_marks_in(info).sum() or 0)
        extra += int((headers != "").sum()) + int((info != "").sum())
        if marks != plain + extra:
            return None
        headers = pl.when(pl.lit(headers) == "").then(None).otherwise(pl.lit(headers))
        info = pl.when(pl.lit(info) == "").then(None).otherwise(pl.lit(info))
    return headers, info


#: Top-level keys the Arrow pass reads (User is counted apart).
_ARROW_TOP = (*schema.STRING_COLUMNS, "EventTime")


def _slow_page(body: bytes) -> tuple[pl.DataFrame, int]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if isinstance(data, list):  # some deployments answered a bare array
        return parse_items(data), len(data)
    if not isinstance(data, dict):
        raise ValueError("response is neither an object nor an array")
    items = data.get("items", data.get("Items"))
    if items is None:
        raise ValueError("response has no 'items'")
    total = data.get("total", data.get("Total"))
    frame = parse_items(items)
    return frame, int(total) if total is not None else frame.height


_TAIL_TOTAL = re.compile(rb'"total"\s*:\s*(\d+)\s*(?:,\s*"count"\s*:\s*\d+\s*)?\}\s*$')
_HEAD_TOTAL = re.compile(rb'\A\s*\{\s*(?:"count"\s*:\s*\d+\s*,\s*)?"total"\s*:\s*(\d+)\s*,')


def peek_total(body: bytes) -> int | None:
    """``total`` read off the start or end of a page body without parsing it (None when
    it is not plainly there). Only decides whether to send the next request early; the
    parsed total is what the exactness checks use."""
    m = _TAIL_TOTAL.search(body[-96:]) or _HEAD_TOTAL.match(body[:96])
    return int(m.group(1)) if m else None



_TIME_KEY = b'"EventTime":"'
_API_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}Z")


def peek_last_time(body: bytes) -> str | None:
    """The last ``EventTime`` text of a page body, read off its end without parsing it
    (None unless it is plainly there in the API's 7-digit form). Only used to ask for the
    next page early; the caller checks it against the parsed page."""
    i = body.rfind(_TIME_KEY)
    if i < 0:
        return None
    j = body.find(b'"', i + len(_TIME_KEY))
    text = body[i + len(_TIME_KEY):j].decode("ascii", "replace") if 0 < j - i < 64 else ""
    return text if _API_TIME.fullmatch(text) else None


# --------------------------------------------------------------------------- API JSON out

def _absent(col: pl.Expr) -> pl.Expr:
    # "" is never JSON text: a frame whose strings were filled with "" (KQL does that)
    # means absent by it, as null does.
    return col.is_null() | (col == "")


_HEAD_KEYS = tuple(c for c in schema.API_ORDER if c not in ("User", "Payload"))


def api_json_lines(frame: pl.DataFrame) -> pl.Series:
    """One JSON object per event, exactly as the API returns it (vectorised).

    Keys in the API's order; ``User.Info`` and ``Headers`` only when the event has them
    (their JSON text as kept); the fields in ``Extras`` back at the top level (and a
    ``"User"`` entry of Extras back inside the User object).
    """
    df = schema.normalize(frame)
    user = (
        pl.lit('"User":')
        + pl.struct(pl.col("User").struct.field("Email"), pl.col("User").struct.field("Name"))
        .struct.json_encode().str.head(-1)
        + pl.when(_absent(pl.col("User").struct.field("Info"))).then(pl.lit(""))
        .otherwise(',"Info":' + pl.col("User").struct.field("Info"))
        + "}"
    )
    line = (
        pl.struct([(schema.format_time_expr(pl.col(c)) if c == "EventTime" else pl.col(c)).alias(c)
                   for c in _HEAD_KEYS]).struct.json_encode().str.head(-1)
        + "," + user
        + ',"Payload":' + pl.col("Payload").fill_null("null")
        + pl.when(_absent(pl.col("Headers"))).then(pl.lit("")).otherwise(',"Headers":' + pl.col("Headers"))
        + "}"
    )
    lines = df.select(line.alias("json")).to_series()
    extras = df.get_column(schema.EXTRAS)
    if extras.null_count() == df.height:
        return lines
    idx = (extras.is_not_null() & (extras != "")).arg_true()
    if len(idx) == 0:
        return lines
    merged = []
    for text, extra in zip(lines.gather(idx).to_list(), extras.gather(idx).to_list(), strict=True):
        obj = orjson.loads(text)
        more = orjson.loads(extra)
        if isinstance(more, dict):
            u = more.pop("User", None)
            if isinstance(u, dict):
                obj["User"].update(u)
            elif u is not None:
                more["User"] = u
            for k, v in more.items():
                obj.setdefault(k, v)
        merged.append(orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode())
    return lines.scatter(idx, pl.Series(merged, dtype=pl.String))



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
