"""The Jupyter layer: the ``%kql`` magic, ipywidgets explorers and Altair chart builders.

Nothing here is imported by ``import psanalytics``; IPython, ipywidgets and Altair are
only loaded when you use this subpackage:

>>> from psanalytics.jupyter import charts
>>> charts.events_over_time(events)            # an Altair chart you can still compose

``%load_ext psanalytics`` registers the magic (see :mod:`psanalytics.jupyter.magic`).

Importing this package (which ``%load_ext psanalytics`` does) makes Altair draw charts with
no network: the ``"psanalytics"`` renderer of :mod:`psanalytics.jupyter.offline` ships
vega/vega-lite/vega-embed inline instead of loading them from a CDN.
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
_SUBMODULES = {"charts", "magic", "widgets", "demo", "offline", "complete", "tracebacks"}

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


def _enable_offline() -> None:
    """Make Altair draw offline (:mod:`psanalytics.jupyter.offline`) now if Altair is
    imported, else right after it is (this package stays lazy: importing it does not
    import Altair)."""
    import sys

    altair = sys.modules.get("altair")
    if altair is not None:
        if hasattr(altair, "renderers"):  # fully imported
            from psanalytics.jupyter import offline

            offline.enable()
        return
    if not any(isinstance(f, _AfterAltair) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterAltair())


class _AfterAltair:
    """A meta-path finder that only wraps Altair's loader to enable the offline renderer
    once ``import altair`` has run (then removes itself). A mere lookup
    (``importlib.util.find_spec("altair")``, as libraries do to test for it) leaves it in
    place: the wrapped loader of such a spec is never run."""

    busy = False

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "altair" or self.busy:
            return None
        import importlib.util
        import sys

        self.busy = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.busy = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        original = loader.exec_module
        finder = self

        def exec_module(module: Any) -> None:
            original(module)
            if finder in sys.meta_path:
                sys.meta_path.remove(finder)
            _enable_offline()

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _install_tracebacks() -> None:
    """In a running IPython, show project errors without the internal traceback."""
    import sys

    if "IPython" in sys.modules:
        from psanalytics.jupyter import tracebacks

        tracebacks.install()


_enable_offline()
_install_tracebacks()
