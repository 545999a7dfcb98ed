"""The shipped notebooks' answers: cells of notebooks/make_notebooks.py run on small data."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Any

import polars as pl

import psanalytics as ps
from psanalytics.jupyter import charts

ROOT = Path(__file__).resolve().parents[2]


def _notebooks() -> Any:
    spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "notebooks" / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cell(cells: list, marker: str) -> str:
    found = [c[1] for c in cells if c[0] == "code" and marker in c[1]]
    assert len(found) == 1, f"{marker!r} is in {len(found)} code cells"
    return found[0]


def _run(code: str, ns: dict[str, Any]) -> Any:
    """Run a cell; return the value of its last expression (what the notebook shows)."""
    tree = ast.parse(code)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<cell>", "exec"), ns)  # noqa: S102 - our own notebook source
    return eval(compile(ast.Expression(last.value), "<cell>", "eval"), ns) if last else None  # noqa: S307


def test_03_landing_pages_chart_counts_every_session(small_events):
    # it filtered event_index_in_session == 0, but the index starts at 1: an empty chart
    s = ps.sessionize(small_events)
    chart = _run(_cell(_notebooks().NB03, "Landing pages"), {"s": s, "charts": charts, "pl": pl})
    assert chart.data["events"].sum() == s.sessions.height == 3
