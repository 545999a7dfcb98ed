"""psanalytics: Optimizely Profile Store track events in typed Polars frames.

The public face. Heavy parts are imported on first use, so ``import psanalytics`` stays
fast and never imports IPython, ipywidgets or Altair.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> (module, attribute)
_LAZY: dict[str, tuple[str, str]] = {
    "connect": ("psanalytics._connect", "connect"),
    "ProfileStore": ("psanalytics.api.profile_store", "ProfileStore"),
    "F": ("psanalytics.query.odata", "F"),
    "read_events": ("psanalytics.exports", "read_events"),
    "scan_events": ("psanalytics.exports", "scan_events"),
    "normalize": ("psanalytics.schema", "normalize"),
    "EVENTS_SCHEMA": ("psanalytics.schema", "EVENTS_SCHEMA"),
    "kql": ("psanalytics.query.kql", "kql"),
    "sessionize": ("psanalytics.sessions", "sessionize"),
    "stitch": ("psanalytics.sessions", "stitch"),
    "PsaError": ("psanalytics.errors", "PsaError"),
    "PsaWarning": ("psanalytics.errors", "PsaWarning"),
    "Config": ("psanalytics._config", "Config"),
}
_SUBMODULES = {"samples", "journeys", "schema", "errors", "exports", "sessions", "query",
               "api", "emulator", "replay", "jupyter", "cli"}

__all__ = sorted([*_LAZY, "__version__", "load_ipython_extension"])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"psanalytics.{name}")
    raise AttributeError(f"module 'psanalytics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY, *_SUBMODULES])


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext psanalytics``: registers the ``%kql`` / ``%%kql`` magic, prints nothing."""
    from psanalytics.jupyter.magic import load_ipython_extension as _load

    _load(ipython)


if TYPE_CHECKING:  # pragma: no cover
    # ruff: noqa: F401 (re-exported lazily through __getattr__)
    from psanalytics._config import Config
    from psanalytics._connect import connect
    from psanalytics.api.profile_store import ProfileStore
    from psanalytics.errors import PsaError, PsaWarning
    from psanalytics.exports import read_events, scan_events
    from psanalytics.query.kql import kql
    from psanalytics.query.odata import F
    from psanalytics.schema import EVENTS_SCHEMA, normalize
    from psanalytics.sessions import sessionize, stitch
