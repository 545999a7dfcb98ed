"""Entry points: run, validate and explain KQL on Polars frames."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.compiler import (
    Compiled,
    RenderSpec,
    _ns,
    compile_query,
)
from psanalytics.query.kql.errors import KqlError, KqlRuntimeError
from psanalytics.query.kql.parser import parse
from psanalytics.query.kql.types import DYNAMIC_TEXT_COLUMNS

Tables = Mapping[str, "pl.DataFrame | pl.LazyFrame"]


@dataclass
class KqlResult:
    """The result of :func:`execute`.

    ``frame``: the rows; ``render``: the ``| render`` request or None; ``truncated``: more
    rows existed than ``limit``; ``elapsed_s``: wall time of parse+compile+run;
    ``query``: the query text.
    """

    frame: pl.DataFrame
    render: RenderSpec | None
    truncated: bool
    elapsed_s: float
    query: str


def schema_tables(tables: Mapping[str, Any] | None) -> dict[str, pl.LazyFrame]:
    """Table mapping (frames, LazyFrames or schemas) -> empty/lazy frames for checking."""
    from psanalytics.schema import EVENTS_SCHEMA

    if tables is None:
        return {"Events": pl.LazyFrame(schema=EVENTS_SCHEMA)}
    out: dict[str, pl.LazyFrame] = {}
    for k, v in tables.items():
        if isinstance(v, pl.LazyFrame):
            out[k] = v
        elif isinstance(v, pl.DataFrame):
            out[k] = v.lazy()
        else:
            out[k] = pl.LazyFrame(schema=pl.Schema(v))
    return out


def _now_ns(now: datetime | None) -> int:
    if now is None:
        now = datetime.now(UTC)
    return _ns(now)


class _Tables(dict):  # type: ignore[type-arg]
    """name -> LazyFrame, plus the names whose string columns are known to hold no nulls."""

    clean: set[str]


def _lazy_tables(tables: Tables | None, events: Any = None) -> _Tables:
    out = _Tables()
    out.clean = set()
    items = list((tables or {}).items())
    if events is not None:
        items.insert(0, ("Events", events))
    for k, v in items:
        if isinstance(v, pl.DataFrame):
            # KQL strings are never null: fill the (rare) nulls of string columns here,
            # where null counts are free, so the plan needs no fill_null step
            nulls = [c for c, d in v.schema.items()
                     if d == pl.String and c not in DYNAMIC_TEXT_COLUMNS and v[c].null_count()]
            if nulls:
                v = v.with_columns(pl.col(nulls).fill_null(""))
            out[k] = v.lazy()
            out.clean.add(k)
        elif isinstance(v, pl.LazyFrame):
            out[k] = v
        else:
            raise TypeError(f"table {k!r} must be a Polars DataFrame or LazyFrame, "
                            f"not {type(v).__name__}")
    return out


@functools.lru_cache(maxsize=256)
def _parse_cached(query: str) -> N.Query:
    # The compiler never mutates the AST, so repeated queries (notebook re-runs, the
    # preview endpoint) skip lexing and parsing.
    return parse(query)


def _compile(query: str | N.Query, tables: Mapping[str, pl.LazyFrame], *,
             now: datetime | None, params: Mapping[str, Any] | None,
             distinct_json: bool = False) -> Compiled:
    text = query if isinstance(query, str) else None
    ast = _parse_cached(query) if isinstance(query, str) else query
    try:
        return compile_query(ast, tables, text=text, params=params, now_ns=_now_ns(now),
                             clean=getattr(tables, "clean", None), distinct_json=distinct_json)
    except KqlError:
        raise
    except (pl.exceptions.PolarsError, TypeError, ValueError, OverflowError) as exc:
        # An internal failure: report it against the query instead of leaking a
        # traceback, but never as "unsupported" (that would hide a bug as a limitation).
        raise KqlRuntimeError(f"internal error while compiling this query ({type(exc).__name__}:"
                              f" {exc}); please report it",
                              query=text, span=(0, 1) if text else None) from exc
    except pl.exceptions.PanicException as exc:  # a BaseException: `except Exception` misses it
        raise KqlRuntimeError(f"the engine (Polars) panicked while compiling this query: "
                              f"{_panic_text(exc)}", query=text, span=(0, 1) if text else None) from None


def _panic_text(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or ["no message"])[0][:300]


def plan(query: str | N.Query, tables: Tables, *, now: datetime | None = None,
         params: Mapping[str, Any] | None = None) -> pl.LazyFrame:
    """Compile ``query`` to a Polars LazyFrame (nothing is run)."""
    return _compile(query, _lazy_tables(tables), now=now, params=params).lf


def _collect(lf: pl.LazyFrame, kwargs: dict[str, Any], timeout_s: float | None) -> pl.DataFrame:
    """``lf.collect(**kwargs)``; with ``timeout_s``, in the background, cancelled (Polars
    stops at its next check) once the time is up: raises TimeoutError."""
    if timeout_s is None:
        return lf.collect(**kwargs)
    q = lf.collect(background=True, **kwargs)
    deadline = time.monotonic() + timeout_s
    while True:
        if time.monotonic() >= deadline:
            q.cancel()
            raise TimeoutError
        out = q.fetch()
        if out is not None:
            return out
        time.sleep(0.005)


def execute(query: str, tables: Tables, *, now: datetime | None = None,
            limit: int | None = None, params: Mapping[str, Any] | None = None,
            timeout_s: float | None = None) -> KqlResult:
    """Run ``query`` on ``tables`` (name -> DataFrame/LazyFrame) and return a KqlResult.

    ``now`` fixes ``now()``/``ago()`` (default: the current UTC time, captured once);
    ``limit`` caps the rows returned and sets ``truncated`` when more existed (the preview
    endpoint uses 1000); ``params`` are injected as typed ``let`` statements;
    ``timeout_s`` stops the run (Polars' cancellation) when it takes longer and raises
    :class:`KqlRuntimeError` saying so (the emulator's preview uses it).
    Raises a :class:`KqlError` subclass pointing at the query.
    """
    t0 = time.perf_counter()
    compiled = _compile(query, _lazy_tables(tables), now=now, params=params, distinct_json=True)
    lf = compiled.lf
    if limit is not None:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        lf = lf.head(limit + 1)
    try:
        if compiled.in_memory:
            # (common-subexpression elimination turns the per-distinct-document mapping
            # into a per-row one that Polars 2.1 cannot run)
            frame = _collect(lf, {"engine": "in-memory",
                                  "optimizations": pl.QueryOptFlags(comm_subexpr_elim=False)}, timeout_s)
        else:
            frame = _collect(lf, {}, timeout_s)
    except TimeoutError:
        raise KqlRuntimeError(f"the query ran longer than {timeout_s:g} s and was stopped; make it "
                              "lighter (filter on EventTime first, take fewer rows)") from None
    except pl.exceptions.PolarsError as exc:
        msg = str(exc).split("\n\nThis error occurred")[0].strip()
        raise KqlRuntimeError(f"the query failed while running: {msg}",
                              query=query if isinstance(query, str) else None,
                              span=(0, 1)) from exc
    except pl.exceptions.PanicException as exc:  # a BaseException: `except Exception` misses it
        raise KqlRuntimeError(f"the query failed while running: the engine (Polars) panicked: "
                              f"{_panic_text(exc)}; rewrite the query (e.g. group by a column, "
                              "not a constant)", query=query if isinstance(query, str) else None,
                              span=(0, 1)) from None
    truncated = False
    if limit is not None and frame.height > limit:
        frame = frame.head(limit)
        truncated = True
    return KqlResult(frame, compiled.render, truncated, time.perf_counter() - t0,
                     query if isinstance(query, str) else "")


def kql(query: str, events: pl.DataFrame | pl.LazyFrame | None = None, *,
        now: datetime | None = None, limit: int | None = None,
        tables: Tables | None = None, params: Mapping[str, Any] | None = None
        ) -> pl.DataFrame:
    """Run a KQL query on a frame of events (table ``Events``) and return a DataFrame.

    Example: ``kql('Events | where EventType == "order" | count', frame)``. Other tables
    go in ``tables={"Name": frame}``; ``now``, ``limit`` and ``params`` as in
    :func:`execute`.

    >>> from psanalytics import normalize
    >>> ev = normalize([
    ...     {"TrackId": "a", "DeviceId": "d1", "EventType": "home",
    ...      "EventTime": "2024-03-04T10:00:00.1234567Z"},
    ...     {"TrackId": "b", "DeviceId": "d1", "EventType": "order",
    ...      "EventTime": "2024-03-04T10:05:00Z"},
    ...     {"TrackId": "c", "DeviceId": "d2", "EventType": "home",
    ...      "EventTime": "2024-03-04T11:00:00Z"},
    ... ])
    >>> kql("Events | summarize n = count() by EventType | order by n desc", ev).rows()
    [('home', 2), ('order', 1)]
    >>> kql("Events | where EventType == kind | project TrackId", ev,
    ...     params={"kind": "order"}).rows()
    [('b',)]
    """
    all_tables: dict[str, Any] = {}
    if events is not None:
        all_tables["Events"] = events
    all_tables.update(tables or {})
    return execute(query, all_tables, now=now, limit=limit, params=params).frame


def validate(query: str, *, schema: Any = None, tables: Mapping[str, Any] | None = None,
             params: Mapping[str, Any] | None = None) -> None:
    """Parse and check ``query`` without data; raises a :class:`KqlError` when invalid.

    ``schema`` is the ``Events`` schema (default: the canonical events schema);
    ``tables`` maps further names to a schema, frame or LazyFrame.
    """
    from psanalytics.schema import EVENTS_SCHEMA

    t: dict[str, Any] = {"Events": pl.Schema(schema) if schema is not None else EVENTS_SCHEMA}
    t.update(tables or {})
    _compile(query, schema_tables(t), now=None, params=params)


def explain(query: str, tables: Tables | None = None, *, now: datetime | None = None,
            params: Mapping[str, Any] | None = None, optimized: bool = True) -> str:
    """The Polars plan the query compiles to (``LazyFrame.explain``)."""
    from psanalytics.schema import empty_frame

    t = dict(tables) if tables is not None else {"Events": empty_frame()}
    lf = plan(query, t, now=now, params=params)
    return lf.explain(optimized=optimized)


__all__ = ["KqlResult", "RenderSpec", "KqlError", "execute", "kql", "validate", "explain",
           "plan"]
