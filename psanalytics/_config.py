"""``psanalytics.Config``: global settings, like ``polars.Config`` (bottom layer).

Set once for a whole notebook, or for a block with ``with``::

    import psanalytics as ps

    ps.Config.set_progress(False)        # no progress bars anywhere from now on
    with ps.Config(progress=True):       # bars inside this block only
        store.events()

A value passed to a call (``store.events(progress=True)``) or to a connection
(``connect(progress=False)``) wins over the global setting; ``None`` (the default
everywhere) means "follow ``Config``", and when ``Config`` says nothing either, each
function keeps its own default (the API's fetches show a bar; ``sessionize`` shows one
for more than one bucket; a replay shows one in a terminal or a notebook).

The environment variable ``PSANALYTICS_PROGRESS=0`` (or ``1``) sets the starting value,
so a CI run of the notebooks can turn bars off without touching them.

>>> Config.set_progress(False).state()
{'progress': False}
>>> with Config(progress=True):
...     progress_enabled(None, default=False)
True
>>> progress_enabled(None, default=True)
False
>>> Config.restore_defaults().state()
{'progress': None}
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any

__all__ = ["Config", "progress_enabled"]


def _env_progress() -> bool | None:
    raw = os.environ.get("PSANALYTICS_PROGRESS", "").strip().lower()
    if raw in ("0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    return None


_DEFAULTS: dict[str, Any] = {"progress": None}
_STATE: dict[str, Any] = {"progress": _env_progress()}


class Config:
    """Global settings. Use the class methods to set them, or an instance as a context
    manager (or decorator) to set them for a block and restore them after.

    Settings:
        progress: ``True``/``False`` turns every progress bar on/off; ``None`` lets each
            function decide (its documented default).
    """

    def __init__(self, *, restore_defaults: bool = False, **options: Any) -> None:
        unknown = sorted(set(options) - set(_DEFAULTS))
        if unknown:
            raise TypeError(
                f"Config has no option(s) {', '.join(unknown)}; options: {', '.join(_DEFAULTS)}"
            )
        self._restore_defaults = restore_defaults
        self._options = options
        self._saved: dict[str, Any] | None = None

    def __enter__(self) -> Config:
        self._saved = dict(_STATE)
        if self._restore_defaults:
            _STATE.update(_DEFAULTS)
        for name, value in self._options.items():
            getattr(Config, f"set_{name}")(value)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._saved is not None:
            _STATE.clear()
            _STATE.update(self._saved)
            self._saved = None

    def __call__(self, fn: Any) -> Any:  # as a decorator, like pl.Config
        import functools

        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with Config(restore_defaults=self._restore_defaults, **self._options):
                return fn(*args, **kwargs)

        return wrapped

    @classmethod
    def set_progress(cls, active: bool | None = True) -> type[Config]:
        """Progress bars on (``True``), off (``False``), or each function's own default
        (``None``). Returns the class, so calls chain like ``pl.Config``'s."""
        if active is not None and not isinstance(active, bool):
            raise TypeError(f"set_progress takes True, False or None, not {active!r}")
        _STATE["progress"] = active
        return cls

    @classmethod
    def state(cls) -> dict[str, Any]:
        """The current settings, by name."""
        return dict(_STATE)

    @classmethod
    def restore_defaults(cls) -> type[Config]:
        """Every setting back to its default (``PSANALYTICS_PROGRESS`` is not re-read)."""
        _STATE.update(_DEFAULTS)
        return cls


def progress_enabled(explicit: bool | None, *, default: bool) -> bool:
    """Whether to show a bar: ``explicit`` when given, else ``Config``'s, else ``default``."""
    if explicit is not None:
        return bool(explicit)
    configured = _STATE.get("progress")
    return default if configured is None else bool(configured)
