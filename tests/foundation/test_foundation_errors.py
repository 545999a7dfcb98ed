"""psanalytics.errors documents the whole exception family as a tree: the tree is true."""

from __future__ import annotations

import importlib
import pkgutil
import re
import warnings

import psanalytics
from psanalytics import errors

_SKIP = {"psanalytics.__main__"}


def _import_all() -> dict[str, type]:
    """Every class of ours, by name, after importing every module of the package."""
    for mod in pkgutil.walk_packages(psanalytics.__path__, "psanalytics."):
        if mod.name not in _SKIP:
            importlib.import_module(mod.name)
    found: dict[str, type] = {}

    def walk(cls: type) -> None:
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("psanalytics") and not sub.__name__.startswith("_"):
                found[sub.__name__] = sub
                walk(sub)

    walk(errors.PsaError)
    walk(errors.PsaWarning)
    return found


def _documented() -> dict[str, tuple[str | None, bool]]:
    """name -> (documented parent, documented as ValueError) from the docstring's trees."""
    doc = errors.__doc__ or ""
    out: dict[str, tuple[str | None, bool]] = {}
    stack: list[tuple[int, str]] = []
    for line in doc.splitlines():
        m = re.match(r"^    ([ │├└─]*)(\w+)( \(ValueError\))?", line)
        if not m or not m.group(2)[0].isupper():
            continue
        depth = len(m.group(1)) // 4
        while stack and stack[-1][0] >= depth:
            stack.pop()
        out[m.group(2)] = (stack[-1][1] if stack else None, bool(m.group(3)))
        stack.append((depth, m.group(2)))
    return out


def test_the_documented_tree_is_the_real_tree() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        real = _import_all()
    doc = _documented()
    assert doc["PsaError"] == (None, False) and doc["PsaWarning"] == (None, False)
    assert sorted(real) == sorted(set(doc) - {"PsaError", "PsaWarning"})
    for name, cls in real.items():
        parent, is_value_error = doc[name]
        ours = [b for b in cls.__bases__ if b.__module__.startswith("psanalytics")]
        assert [b.__name__ for b in ours] == [parent], name
        assert issubclass(cls, ValueError) == (is_value_error or issubclass(ours[0], ValueError)), name


def test_warnings_are_user_warnings_under_one_root() -> None:
    from psanalytics.api.profile_store import PreviewTruncatedWarning
    from psanalytics.exports import SkippedInputWarning

    for w in (PreviewTruncatedWarning, SkippedInputWarning):
        assert issubclass(w, errors.PsaWarning) and issubclass(w, UserWarning)


def test_journey_errors_are_sessionize_errors() -> None:
    import polars as pl
    import pytest

    from psanalytics import journeys
    from psanalytics.sessions import SessionizeError

    with pytest.raises(errors.JourneyError, match="funnel needs at least one step") as ei:
        journeys.funnel(pl.DataFrame({"EventTime": [], "DeviceId": []}), [])
    assert isinstance(ei.value, SessionizeError) and isinstance(ei.value, errors.PsaError)
