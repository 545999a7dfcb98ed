"""The Jupyter layer: the ``%kql`` magic, ipywidgets explorers and Altair chart builders.

Nothing here is imported by ``import psanalytics``; IPython, ipywidgets and Altair are
only loaded when you use this subpackage:

>>> from psanalytics.jupyter import charts
>>> charts.events_over_time(events)            # an Altair chart you can still compose

``%load_ext psanalytics`` registers the magic (see :mod:`psanalytics.jupyter.magic`).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, tuple[str, str]] = {
    "load_ipython_extension": ("psanalytics.jupyter.magic", "load_ipython_extension"),
    "KqlMagic": ("psanalytics.jupyter.magic", "KqlMagic"),
    "EventExplorer": ("psanalytics.jupyter.widgets", "EventExplorer"),
    "VisitorPlayer": ("psanalytics.jupyter.widgets", "VisitorPlayer"),
    "KqlConsole": ("psanalytics.jupyter.widgets", "KqlConsole"),
}
_SUBMODULES = {"charts", "magic", "widgets", "demo"}

__all__ = sorted([*_LAZY, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if name in _SUBMODULES:
        return importlib.import_module(f"psanalytics.jupyter.{name}")
    raise AttributeError(f"module 'psanalytics.jupyter' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY, *_SUBMODULES])
