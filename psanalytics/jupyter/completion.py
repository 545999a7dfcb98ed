"""Tab completion inside ``%kql`` / ``%%kql`` (IPython's completer API, matcher API v2).

:func:`complete` reads the cell up to the cursor and answers what fits there, in this order:

- on the first line of ``%%kql`` (or before the query of ``%kql``): the options
  (``--local``, ``--limit`` ...); after ``--local``: the notebook's frames;
- the first word of a query: the tables (``Events`` and the notebook's frames);
- right after a ``|``: the operators the local engine runs (``where``, ``summarize``,
  ``mv-expand`` ...); after ``render``: the chart kinds;
- anywhere else in an expression: the columns the query has at that point (the bound frame's
  columns, changed by the operators before the last ``|``: ``extend``, ``project``,
  ``summarize`` ...; found by running that part of the query on an empty frame), then the
  scalar functions, then (inside ``summarize``, ``make-series`` and ``top-nested``) the
  aggregates;
- after ``Payload.``: the keys seen in the bound frame's ``Payload`` JSON (nested ones as
  ``Payload.a.b``; the first 20,000 payloads are read, once per frame); after ``User.``
  (any struct column): its fields.

The bound frame is ``--local FRAME``, else the variable named by ``KqlMagic.local_frame``
(``events``) when the notebook has it, else the canonical events schema (no Payload keys).
Names match by prefix, case-insensitively. Operator and function names come from the
engine's catalogue (:func:`catalogue`), so they cannot drift from what runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import polars as pl

from psanalytics.jupyter.magic_args import BIND, IDENT, _split_options

__all__ = ["OPTIONS", "catalogue", "complete", "install"]

#: The ``%kql`` options, as completed before the query.
OPTIONS = (
    "--local",
    "--remote",
    "--client",
    "--limit",
    "--compare",
    "--explain",
    "--param",
    "--out",
    "--scope",
)
#: Stages whose expressions may call aggregates.
_AGGREGATING = ("summarize", "make-series", "top-nested")
#: Render kinds ``| render`` draws (as :func:`psanalytics.jupyter.charts.render`).
RENDER_KINDS = (
    "timechart",
    "linechart",
    "areachart",
    "barchart",
    "columnchart",
    "piechart",
    "scatterchart",
    "table",
)
PAYLOAD_ROWS = 20_000
_LINE_MAGIC = re.compile(r"(?:^|[\s=(])%kql\b")
_CELL_MAGIC = re.compile(r"^\s*%%kql\b")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]*)*$")
_OPERATOR_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*$")

Completion = tuple[str, str]  # (text, kind)


@lru_cache(maxsize=1)
def catalogue() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """``(operators, scalar functions, aggregates)`` the local engine runs, sorted.

    Read from the engine's own registries (imported on first use): the function catalogue
    (``SCALAR_FUNCTIONS``/``AGGREGATES``), or the registries it is computed from where the
    catalogue is not there (``FUNC_IMPLS``/``AGG_IMPLS``); the parser's operator table.
    """
    try:
        from psanalytics.query.kql.functions import AGGREGATES as aggs
        from psanalytics.query.kql.functions import SCALAR_FUNCTIONS as scalars
    except ImportError:  # the registries the catalogue is built from
        from psanalytics.query.kql.functions import AGG_IMPLS as aggs
        from psanalytics.query.kql.functions import FUNC_IMPLS as scalars
    try:
        from psanalytics.query.kql.parser import SUPPORTED_OPERATORS as ops
    except ImportError:  # pragma: no cover - the table's own module
        from psanalytics.query.kql.parse_ops import SUPPORTED_OPERATORS as ops

    def names(items: Iterable[str], pattern: str) -> tuple[str, ...]:
        return tuple(sorted({n for n in items if re.fullmatch(pattern, n)}))

    word = r"[A-Za-z][A-Za-z0-9_]*"
    return names(ops, r"[a-z][a-z-]*"), names(scalars, word), names(aggs, word)


# --------------------------------------------------------------------------- where am I


def _query_before(before: str) -> tuple[str, str | None] | None:
    """``(options text, query text)`` up to the cursor when it is in a ``%kql`` line or a
    ``%%kql`` cell, else None. While the cursor is still among the options, the query
    text is None and the options text ends at the cursor."""
    lines = before.split("\n")
    if _CELL_MAGIC.match(lines[0]):
        head = _CELL_MAGIC.sub("", lines[0], count=1)
        if m := BIND.match(head):
            head = head[m.end() :]
        if len(lines) == 1:
            return head, None
        return head, "\n".join(lines[1:])
    last = lines[-1]
    found = list(_LINE_MAGIC.finditer(last))
    if not found:
        return None
    rest = last[found[-1].end() :]
    if m := BIND.match(rest):
        rest = rest[m.end() :]
    opts, query = _split_options(rest)
    if not query.strip() and rest and (not rest[-1].isspace() or opts.split()[-1:] == ["--local"]):
        return rest, None
    return opts, query


def _scan(query: str) -> tuple[bool, int, int]:
    """``(inside a string or comment, position of the last top-level |, of the last ;)``."""
    quote, i, pipe, semi, depth = "", 0, -1, -1, 0
    n = len(query)
    while i < n:
        ch = query[i]
        if quote:
            if ch == "\\" and not quote.startswith("@"):  # @"..." has no escapes
                i += 2
                continue
            if ch == quote[-1]:
                quote = ""
        elif query.startswith("//", i):
            end = query.find("\n", i)
            if end < 0:
                return True, pipe, semi
            i = end
        elif ch in "'\"":
            quote = ("@" if i and query[i - 1] == "@" else "") + ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif ch == "|" and depth == 0:
            pipe = i
        elif ch == ";" and depth == 0:
            semi, pipe = i, -1
        i += 1
    return bool(quote), pipe, semi


# --------------------------------------------------------------------------- what fits


def _frames(namespace: dict[str, Any]) -> dict[str, pl.DataFrame | pl.LazyFrame]:
    return {
        k: v
        for k, v in namespace.items()
        if not k.startswith("_") and isinstance(v, pl.DataFrame | pl.LazyFrame)
    }


def _empty(frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    schema = frame.collect_schema() if isinstance(frame, pl.LazyFrame) else frame.schema
    return pl.DataFrame(schema=schema)


def _stage_schema(prefix: str, base: pl.DataFrame, namespace: dict[str, Any]) -> pl.Schema:
    """The columns the query has after ``prefix`` (run on empty frames); ``base``'s when
    ``prefix`` does not run (yet)."""
    if not prefix.strip():
        return base.schema
    from psanalytics.query.kql import execute

    tables: dict[str, Any] = {"Events": base}
    for name, frame in _frames(namespace).items():
        if name != "Events" and re.search(rf"\b{re.escape(name)}\b", prefix):
            tables[name] = _empty(frame)
    try:
        return execute(prefix, tables, limit=1).frame.schema
    except Exception:  # noqa: BLE001 - an unfinished query: offer the frame's columns
        return base.schema


def _payload_keys(frame: pl.DataFrame | pl.LazyFrame) -> tuple[str, ...]:
    """Dotted key paths (``a``, ``a.b``) of the JSON objects in the first
    :data:`PAYLOAD_ROWS` non-null ``Payload`` values."""
    key = (id(frame), _height(frame))
    if _PAYLOAD_CACHE.get("key") == key:
        return _PAYLOAD_CACHE["value"]
    texts = (
        frame.lazy()
        .select(pl.col("Payload"))
        .filter(pl.col("Payload").is_not_null() & (pl.col("Payload") != ""))
        .head(PAYLOAD_ROWS)
        .collect()
        .get_column("Payload")
        .unique()
        .to_list()
    )
    paths: set[str] = set()

    def walk(obj: Any, prefix: str, depth: int) -> None:
        if not isinstance(obj, dict) or depth > 3:
            return
        for k, v in obj.items():
            if isinstance(k, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
                paths.add(prefix + k)
                walk(v, prefix + k + ".", depth + 1)

    for text in texts:
        try:
            walk(json.loads(text), "", 0)
        except (TypeError, ValueError):
            continue
    value = tuple(sorted(paths, key=str.lower))
    _PAYLOAD_CACHE.update(key=key, value=value)
    return value


_PAYLOAD_CACHE: dict[str, Any] = {}


def _height(frame: pl.DataFrame | pl.LazyFrame) -> int | None:
    return frame.height if isinstance(frame, pl.DataFrame) else None


def _dotted(
    word: str, schema: pl.Schema, frame: pl.DataFrame | pl.LazyFrame | None
) -> list[Completion]:
    """Completions of ``Column.path``: Payload keys (from the bound frame's JSON) or the
    fields of a struct column."""
    column, _, _rest = word.partition(".")
    dtype = schema.get(column)
    if dtype is None:
        return []
    if isinstance(dtype, pl.Struct):
        return [(f"{column}.{f.name}", "field") for f in dtype.fields]
    if column == "Payload" and frame is not None and dtype == pl.String:
        bound = frame.collect_schema() if isinstance(frame, pl.LazyFrame) else frame.schema
        if bound.get("Payload") == pl.String:
            return [(f"Payload.{k}", "Payload key") for k in _payload_keys(frame)]
    return []


def _matching(word: str, items: Iterable[Completion]) -> list[Completion]:
    low = word.lower()
    seen: set[str] = set()
    out = []
    for text, kind in items:
        if text.lower().startswith(low) and text not in seen:
            seen.add(text)
            out.append((text, kind))
    return out


def complete(
    before: str, namespace: dict[str, Any] | None = None, local_frame: str = "events"
) -> tuple[str, list[Completion]] | None:
    """What completes the word before the cursor, when the cursor is in a ``%kql`` query.

    ``before`` is the cell's text up to the cursor; ``namespace`` the notebook's variables;
    ``local_frame`` the variable ``--local`` means without a name. Returns ``(fragment,
    [(text, kind), ...])``: each text replaces ``fragment`` (the end of ``before``); kinds
    are ``option``, ``frame``, ``table``, ``operator``, ``render kind``, ``column``,
    ``field``, ``Payload key``, ``function``, ``aggregate``. None when the cursor is not
    in a ``%kql`` query (or is inside a string or a comment).
    """
    ns = namespace or {}
    where = _query_before(before)
    if where is None:
        return None
    opts, query = where
    frames = _frames(ns)
    if query is None:  # among the options
        word = re.search(r"[\w-]*$", opts).group(0)  # type: ignore[union-attr]
        previous = opts[: len(opts) - len(word)].split()
        if previous and previous[-1] == "--local" and not word.startswith("-"):
            names = [(n, "frame") for n in frames] + [("Events", "table")]
            return word, _matching(word, names)
        if word.startswith("-"):
            return word, _matching(word, [(o, "option") for o in OPTIONS])
        return None
    in_text, pipe, semi = _scan(query)
    if in_text:
        return None
    m = re.search(r"--local(?:=|\s+)([A-Za-z_][A-Za-z0-9_]*)", opts)
    name = m.group(1) if m else local_frame
    bound = frames.get(name)
    if bound is None:
        from psanalytics.schema import empty_frame

        base = empty_frame()
    else:
        base = _empty(bound)
    stage = query[max(pipe, semi) + 1 :]
    piped = pipe > semi  # the statement has a pipe: the stage is an operator's
    if piped and not stage.strip():
        return "", _matching("", [(o, "operator") for o in catalogue()[0]])
    op_word = _OPERATOR_WORD.search(stage)
    if piped and op_word and not stage[: op_word.start()].strip():
        word = op_word.group(0)
        return word, _matching(word, [(o, "operator") for o in catalogue()[0]])
    m_word = _WORD.search(stage)
    word = m_word.group(0) if m_word else ""
    if m_word and m_word.start() > 0 and stage[m_word.start() - 1] in "0123456789.@$":
        return None  # the end of a literal (1d, 1e5) or of a name
    head = stage[: len(stage) - len(word)]
    if not piped:  # a table comes first
        if head.strip():
            return None
        tables = [("Events", "table")] + [(n, "frame") for n in frames if n != "Events"]
        return word, _matching(word, tables)
    operator = head.split()[0] if head.strip() else ""
    if operator == "render":
        if len(head.split()) == 1 and "." not in word:
            return word, _matching(word, [(k, "render kind") for k in RENDER_KINDS])
        return None
    schema = _stage_schema(query[:pipe], base, ns)
    if "." in word:
        return word, _matching(word, _dotted(word, schema, bound))
    _, scalars, aggs = catalogue()
    items: list[Completion] = [(c, "column") for c in schema.names() if IDENT.fullmatch(c)]
    items += [(f, "function") for f in scalars]
    if operator in _AGGREGATING:
        items += [(a, "aggregate") for a in aggs]
    return word, _matching(word, items)


# --------------------------------------------------------------------------- IPython


def install(ipython: Any, magic: Any) -> None:
    """Add the ``%kql`` matcher to ``ipython``'s completer (once)."""
    from IPython.core.completer import SimpleCompletion, context_matcher

    completer = getattr(ipython, "Completer", None)
    if completer is None:  # pragma: no cover - a shell without a completer
        return
    if any(
        getattr(m, "matcher_identifier", "") == "psanalytics.kql" for m in completer.custom_matchers
    ):
        return

    @context_matcher(identifier="psanalytics.kql")
    def kql_matcher(context: Any) -> dict[str, Any]:
        lines = context.full_text.split("\n")
        before = "\n".join([*lines[: context.cursor_line], context.text_until_cursor])
        found = complete(before, magic.ns, magic.local_frame)
        if found is None:
            return {"completions": [], "suppress": False}
        fragment, items = found
        return {
            "completions": [SimpleCompletion(text, type=kind) for text, kind in items],
            "matched_fragment": fragment,
            "suppress": True,
            "ordered": True,
        }

    completer.custom_matchers.append(kql_matcher)
