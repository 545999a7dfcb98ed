"""Local KQL engine: lexer -> parser (AST with spans) -> compiler to Polars.

The back end, bottom up: ``types`` (values, tables, dtypes, scope), ``naming`` (output
column names), the ``functions`` package (scalar functions and aggregates, registered per
family; the catalogue is computed from the registries), ``operators`` and ``compiler``
(operators and expressions; the compiler is handed to each function, never imported by
one), ``engine`` (run, validate, explain).

Public API::

    kql(query, events=None, *, now=None, limit=None, tables=None, params=None) -> DataFrame
    execute(query, tables, *, now=None, limit=None, params=None) -> KqlResult
    validate(query, *, schema=EVENTS_SCHEMA, tables=None, params=None) -> None
    parse(query) -> Query          format(ast) -> str          explain(query) -> str

Errors: :class:`KqlError` (``.line``, ``.column``, ``.snippet``, ``.suggestion``) and its
subclasses :class:`KqlSyntaxError`, :class:`KqlSemanticError`, :class:`KqlUnsupported`,
:class:`KqlRuntimeError`. Semantics: ``docs/kql.md``.
"""

from __future__ import annotations

from psanalytics.query.kql.compiler import RenderSpec
from psanalytics.query.kql.engine import KqlResult, execute, explain, kql, plan, validate
from psanalytics.query.kql.errors import (
    KqlError,
    KqlRuntimeError,
    KqlSemanticError,
    KqlSyntaxError,
    KqlUnsupported,
)
from psanalytics.query.kql.formatter import format
from psanalytics.query.kql.parser import parse

__all__ = [
    "KqlError",
    "KqlResult",
    "KqlRuntimeError",
    "KqlSemanticError",
    "KqlSyntaxError",
    "KqlUnsupported",
    "RenderSpec",
    "execute",
    "explain",
    "format",
    "kql",
    "parse",
    "plan",
    "validate",
]
