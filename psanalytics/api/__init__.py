"""Profile Store and Event API clients.

``psanalytics.api.http`` builds every HTTP client (timeouts, auth, retries, redaction);
``profile_store`` holds :func:`connect` and :class:`ProfileStore`; ``windows`` plans the
time windows that keep each query under the 10,000-row result window; ``event_api``
sends Event API bodies.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "connect": "psanalytics.api.profile_store",
    "ProfileStore": "psanalytics.api.profile_store",
    "ExportReport": "psanalytics.api.profile_store",
    "WindowReport": "psanalytics.api.profile_store",
    "DeleteReport": "psanalytics.api.profile_store",
    "TrackReport": "psanalytics.api.profile_store",
    "OrderError": "psanalytics.api.profile_store",
    "PreviewTruncatedWarning": "psanalytics.api.profile_store",
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
