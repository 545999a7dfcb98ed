"""Profile Store and Event API clients.

``psanalytics.api.http`` builds every HTTP client (timeouts, auth, retries, redaction);
``profile_store`` holds the :class:`ProfileStore` facade over ``_paging`` (the exact-paging
engine), ``export`` (export with its checkpoint), ``preview``, ``tracking`` and
``deletes``; ``windows`` plans the time windows that keep each query under the 10,000-row
result window; ``event_api`` sends Event API bodies. :func:`psanalytics.connect` lives in
``psanalytics/_connect.py`` (above this room: it may start the emulator).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ProfileStore": "psanalytics.api.profile_store",
    "ExportReport": "psanalytics.api.export",
    "WindowReport": "psanalytics.api._paging",
    "DeleteReport": "psanalytics.api.deletes",
    "TrackReport": "psanalytics.api.tracking",
    "OrderError": "psanalytics.api._paging",
    "PreviewTruncatedWarning": "psanalytics.api.preview",
    "Window": "psanalytics.api.windows",
    "WindowOverflowError": "psanalytics.api.windows",
    "RetryAfterTooLong": "psanalytics.api.http",
    "EventApi": "psanalytics.api.event_api",
    "EventApiRejected": "psanalytics.api.event_api",
    "ApiError": "psanalytics.api.http",
    "RetryPolicy": "psanalytics.api.http",
    "SendResult": "psanalytics.api.http",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'psanalytics.api' has no attribute {name!r}")
