"""NDJSON text (one event per line, as exports and the API's files hold them) -> the
canonical frame: the fast columnar reader, its read plan, and the checks that name the
first bad line. (``psanalytics.schema`` still answers to the public names.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
import polars as pl

from psanalytics import schema
from psanalytics.errors import SchemaError


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
    """How to read NDJSON whose sampled lines have ``keys`` column-wise: (Polars read
    schema without Payload, source -> canonical renames, the fields this plan cannot read
    (outside the schema, ``Headers``, ``User.Info``: the exact reader keeps them), the
    Payload key).

    Keys are sampled from the first lines; when ``data`` is given, canonical fields missing
    from the sample are looked for in the whole text (a fast byte search), so a field that
    first appears late in a file is still read.
    """
    keys = list(keys)
    if data is not None:
        have = {schema.canonical_name(k) for k in keys}
        for c in schema.COLUMNS:
            if c in have or c == schema.EXTRAS:
                continue
            for variant in (c, c[0].lower() + c[1:]):
                if data.find(f'"{variant}"'.encode()) >= 0:
                    keys.append(variant)
                    break
    read_schema: dict[str, pl.DataType] = {}
    rename: dict[str, str] = {}
    unread: list[str] = []
    payload_key: str | None = None
    for k in keys:
        c = schema._RECORD_ALIASES.get(k.lower())
        if c is None or c == "Headers" or c.startswith("User."):
            unread.append(k)
            continue
        if c in rename.values():
            continue
        rename[k] = c
        if c == "Payload":
            payload_key = k
        elif c == "User":
            ex = examples.get(k)
            fields = {f.lower(): f for f in ex} if isinstance(ex, dict) else {}
            unread.extend(f"{k}.{f}" for low, f in fields.items() if low not in ("email", "name"))
            read_schema[k] = pl.Struct(
                {fields.get("email", "Email"): pl.String, fields.get("name", "Name"): pl.String}
            )
        elif c == "EventTime" and isinstance(examples.get(k), int):
            read_schema[k] = pl.Int64
        else:
            read_schema[k] = pl.String
    return read_schema, rename, unread, payload_key


def ndjson_to_frame(data: bytes) -> pl.DataFrame:
    """Parse NDJSON event objects (API PascalCase or camelCase Tracking bodies), exactly.

    Fast path (the plain fields only): Polars reads the columns and ``Payload`` keeps the
    exact JSON text of the line when the objects are laid out as the API writes them
    (``Payload`` last; otherwise it is re-encoded compactly); a count of the keys in the
    text against the keys read proves nothing else was there. Anything more (``Headers``,
    ``User.Info``, fields outside the schema, kept in ``Extras``) is read line by line.
    Raises :class:`NdjsonError` naming the first bad line when a line is not a JSON object.
    """
    if not data or (len(data) < 4096 and not data.strip()):
        return schema.empty_frame()
    keys, examples = _sample_keys(data)
    if not keys:
        bad = first_bad_ndjson_lines(data)
        line, reason = bad[0] if bad else (1, "no JSON object found")
        raise NdjsonError(reason, line=line)
    read_schema, rename, unread, payload_key = ndjson_read_plan(keys, examples, data)
    if not rename:
        shown = ", ".join(keys[:10]) + (", ..." if len(keys) > 10 else "")
        raise NdjsonError(f"none of the fields is an event field ({shown}); expected TrackId, "
                          "EventTime, EventType, ...", line=None)
    if unread:
        return _ndjson_exact(data)
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
    expected = 0
    for k, dt in read_schema.items():
        col = frame.get_column(k)
        expected += frame.height - col.null_count()
        if isinstance(dt, pl.Struct):
            expected += sum(frame.height - col.struct.field(f.name).null_count() for f in dt.fields)
    if payload_key is not None and lines is not None:
        others = (set(keys) | set(schema.API_ORDER)) - {payload_key}
        payload, present = _payload_text(lines, payload_key, others)
        expected += present + int(schema.key_marks_in(payload).sum() or 0)
        frame = frame.with_columns(payload.alias(payload_key))
    if schema.key_marks(data) != expected:
        # A key not read (a field first seen late, a key holding null, `":` inside a
        # value): read it line by line instead, so nothing is lost.
        return _ndjson_exact(data)
    frame = frame.rename(rename)
    return schema._frame_to_canonical(frame)


def _ndjson_exact(data: bytes) -> pl.DataFrame:
    """NDJSON read line by line (orjson): every field kept, JSON values exact."""
    records: list[Any] = []
    for i, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise NdjsonError(f"not valid JSON ({exc})", line=i) from None
        if not isinstance(obj, dict):
            raise NdjsonError(f"expected a JSON object, got {type(obj).__name__}", line=i)
        records.append(obj)
    if not records:
        return schema.empty_frame()
    return schema.api_records_frame(records)


def _payload_text(lines: pl.Series, key: str, others: Iterable[str]) -> tuple[pl.Series, int]:
    """The exact JSON text of each line's ``key`` value, without parsing it, and how many
    lines have the key.

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
                [schema._json_text(orjson.loads(t).get(key)) for t in todo.to_list()], dtype=pl.String
            )
        else:  # a whole file in another layout: stay vectorised
            parsed = todo.str.json_path_match(f"$.{key}")
        sliced = sliced.scatter(idx, parsed)
    present = len(start) - start.null_count()
    return pl.select(
        pl.when(pl.lit(sliced) == "null").then(None).otherwise(pl.lit(sliced))
    ).to_series(), present
