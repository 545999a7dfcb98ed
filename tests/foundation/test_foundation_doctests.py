"""The examples in the public docstrings run, and say what they print (as Polars' do).

Every module listed here has its ``>>>`` examples executed; a module without any fails
(an example deleted by accident). Add a module when you give its functions examples.
"""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "psanalytics._time",
    "psanalytics._config",
    "psanalytics._files",
    "psanalytics.schema",
    "psanalytics.exports",
    "psanalytics.query.odata",
    "psanalytics.query.kql.engine",
    "psanalytics.sessions._api",
    "psanalytics.samples._campaigns",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    from psanalytics import Config

    module = importlib.import_module(name)
    with Config(restore_defaults=True):  # examples see the default settings, and leave them
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                                 report=True, verbose=False)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
