"""KQL preview: ``POST api/v2.0/TrackEvents/preview`` with local validation and typed params.

:func:`preview` is what :meth:`ProfileStore.preview
<psanalytics.api.profile_store.ProfileStore.preview>` runs; :func:`with_params` shows the
text that is sent.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from typing import Any

import httpx
import orjson
import polars as pl

from psanalytics import schema
from psanalytics.api._paging import PREFIX_V2
from psanalytics.api.http import ApiError, RequestStats, RetryPolicy, redact, send_json
from psanalytics.errors import PsaWarning
from psanalytics.wire.api_json import parse_items
from psanalytics.wire.limits import PREVIEW_CAP

__all__ = ["preview", "with_params", "PreviewTruncatedWarning", "PREVIEW_CAP"]

_API_KEYS = frozenset(schema.API_ORDER)


class PreviewTruncatedWarning(PsaWarning):
    """A KQL preview returned the API's 1,000-row cap: more rows may exist."""


def _decode_json(resp: httpx.Response) -> Any:
    return orjson.loads(resp.content)


def _raw_message(exc: ApiError) -> str:
    """The server's ``error.message`` (without the code prefix), for KQL position mapping."""
    if exc.body:
        try:
            data = orjson.loads(exc.body)
            msg = data["error"]["message"]
            if isinstance(msg, str) and msg:
                return redact(msg)
        except (orjson.JSONDecodeError, KeyError, TypeError):
            pass
    return exc.server_message



_KQL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def with_params(query: str, params: Mapping[str, Any] | None) -> str:
    """The KQL text :meth:`ProfileStore.preview` sends: ``params`` as typed leading lets.

    Each parameter becomes a ``let name = <typed literal>;`` statement on its own line,
    built as an AST node (:func:`psanalytics.query.kql.compiler.param_literal`: string,
    long, real, bool, datetime, timespan or dynamic list) and formatted by the KQL
    formatter; the query follows unchanged on the next line, so line ``L`` of the query
    as written is line ``L + len(params)`` of the text sent. Values never touch the
    query text. No params: the query is returned as is.

    >>> with_params("Events | where CountryCode in (codes)", {"codes": ["SE", "NO"]})
    'let codes = dynamic(["SE", "NO"]);\nEvents | where CountryCode in (codes)'
    """
    return _with_params(query, params)[0]


def _with_params(query: str, params: Mapping[str, Any] | None) -> tuple[str, int]:
    """(text to send, number of let lines put in front)."""
    if not params:
        return query, 0
    from psanalytics.query.kql import format as kql_format
    from psanalytics.query.kql import nodes
    from psanalytics.query.kql import parse as kql_parse
    from psanalytics.query.kql.compiler import param_literal
    from psanalytics.query.kql.errors import KqlSemanticError

    source = kql_parse("Events").body
    lines = []
    for name, value in params.items():
        if not isinstance(name, str) or not _KQL_NAME.fullmatch(name):
            raise KqlSemanticError(f"parameter name {name!r} is not a valid KQL identifier")
        let = nodes.Let(name, param_literal(name, value))
        # The formatter writes each let as one line (strings escape their newlines).
        line = kql_format(nodes.Query([let], source)).split("\n", 1)[0]
        if not (line.startswith("let ") and line.endswith(";")):  # pragma: no cover - guard
            raise KqlSemanticError(f"parameter {name!r}: cannot be written as one let line")
        lines.append(line)
    return "\n".join([*lines, _fill_placeholders(query, set(params))]), len(lines)


def _fill_placeholders(query: str, names: set[str]) -> str:
    """``{{name}}`` (a filter-definition placeholder) -> ``name`` padded with spaces to the
    same width, for the names given as params: the let in front holds the value, and every
    later character keeps its column (so server errors still point at the text as written).
    Found with the KQL lexer, so text inside string literals is never touched."""
    from psanalytics.query.kql.errors import KqlError
    from psanalytics.query.kql.lexer import tokenize

    try:
        toks = tokenize(query)
    except KqlError:
        return query
    out = query
    for t in reversed(toks):
        raw = query[t.start:t.end]
        if t.kind == "IDENT" and t.quoted and raw.startswith("{{") and t.value in names:
            out = out[:t.start] + t.value.ljust(t.end - t.start) + out[t.end:]
    return out


def _as_written(err: Any, query: str, n_lets: int) -> Any:
    """A server error on the text sent, re-pointed at the query as written (the let lines
    in front shift it by ``n_lets`` lines; the query's own lines are sent unchanged)."""
    if not n_lets or err.line is None or err.line <= n_lets:
        return err
    from psanalytics.query.kql.errors import make_snippet

    line = err.line - n_lets
    # The server's snippet (if any) already shows the user's line, unchanged.
    snippet = err.snippet or make_snippet(query, line, err.column or 1)
    return type(err)(err.message, line=line, column=err.column, snippet=snippet,
                     suggestion=err.suggestion)



def _preview_frame(items: list[Any]) -> pl.DataFrame:
    if not items:
        return schema.empty_frame()
    keys = set(items[0]) if isinstance(items[0], dict) else set()
    if {"TrackId", "EventTime", "EventType", "DeviceId"} <= keys and keys <= _API_KEYS | {"Headers"}:
        return parse_items(items)
    # Projected / summarized columns: keep them as they are (nested values as JSON text).
    rows = [{k: (orjson.dumps(v).decode() if isinstance(v, (dict, list)) else v) for k, v in it.items()}
            for it in items]
    frame = pl.from_dicts(rows, infer_schema_length=None)
    if "EventTime" in frame.columns and frame.schema["EventTime"] == pl.String:
        frame = frame.with_columns(schema.parse_time_expr(pl.col("EventTime")).alias("EventTime"))
    return frame



def preview(client: httpx.Client, policy: RetryPolicy, stats: RequestStats, query: str, *,
            scope: str, validate: bool = True,
            params: Mapping[str, Any] | None = None) -> pl.DataFrame:
    """Run a KQL query on the API's preview endpoint (at most 1,000 rows).

    ``params`` (``{"country": "SE", "since": datetime(...), "codes": ["SE", "NO"]}``)
    are sent as typed ``let`` statements in front of the query (see
    :func:`with_params`); the query refers to them by name. Values are never pasted
    into the query text, so a quote in a value stays data.

    The query is checked locally first (``validate=True``): a syntax or semantic error
    raises :class:`~psanalytics.query.kql.KqlError` with the line:column of the text as
    written and a caret, before any request. An error the server reports (HTTP 400) is
    raised as a ``KqlError`` too, its line counted in the text as written. Rows that
    are whole events come back in the canonical schema; a ``project``/``summarize``
    result keeps its own columns. When the API's 1,000-row cap was reached the frame's
    ``truncated`` attribute is True and a :class:`PreviewTruncatedWarning` is issued.
    """
    params = dict(params) if params else None
    if validate:
        from psanalytics.query.kql import validate as kql_validate

        kql_validate(query, params=params)
    sent, n_lets = _with_params(query, params)
    body = {"Query": sent, "Scope": scope}
    try:
        _resp, data = send_json(client, "POST", f"{PREFIX_V2}/preview",
                                content=orjson.dumps(body),
                                headers={"Content-Type": "application/json"},
                                policy=policy, decode=_decode_json, stats=stats)
    except ApiError as exc:
        if exc.status == 400:
            try:
                from psanalytics.query.kql import KqlError
            except ImportError:  # pragma: no cover
                raise exc from None
            err = KqlError.from_remote(_raw_message(exc), sent)
            raise _as_written(err, query, n_lets) from exc
        raise
    items = data.get("items", data.get("Items", [])) if isinstance(data, dict) else data
    frame = _preview_frame(items)
    truncated = frame.height >= PREVIEW_CAP
    if truncated:
        warnings.warn(
            f"preview returned {frame.height:,} rows, the API's cap of {PREVIEW_CAP:,}: more rows "
            "may match. Use store.events() with a $filter for everything, or run the KQL "
            "locally with psanalytics.kql() on the fetched frame.",
            PreviewTruncatedWarning, stacklevel=3,
        )
    frame.truncated = truncated  # type: ignore[attr-defined]
    return frame
