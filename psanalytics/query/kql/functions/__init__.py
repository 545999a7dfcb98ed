"""KQL scalar functions and aggregates, one module per family; each compiles a call to
vectorised Polars expressions.

The package imports only the shared vocabulary below it (:mod:`..types`, :mod:`..nodes`,
:mod:`..errors`): the compiler is handed in as the first argument of every
implementation (``impl(compiler, call, table) -> Val``), never imported. Importing this
package registers every implementation in :data:`FUNC_IMPLS` / :data:`AGG_IMPLS`; the
catalogue (:data:`SCALAR_FUNCTIONS`, :data:`AGGREGATES`, :data:`UNSUPPORTED_FUNCTIONS`)
is computed from those registries, so it cannot drift from what is implemented.
"""

from __future__ import annotations

from psanalytics.query.kql.functions._base import AGG_IMPLS, FUNC_IMPLS, Impl
from psanalytics.query.kql.functions.catalogue import (
    AGGREGATES,
    KNOWN_KQL_FUNCTIONS,
    SCALAR_FUNCTIONS,
    UNSUPPORTED_FUNCTIONS,
)

__all__ = [
    "AGGREGATES",
    "AGG_IMPLS",
    "FUNC_IMPLS",
    "KNOWN_KQL_FUNCTIONS",
    "SCALAR_FUNCTIONS",
    "UNSUPPORTED_FUNCTIONS",
    "Impl",
]
