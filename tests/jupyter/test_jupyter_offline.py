"""Charts draw with no network: the "psanalytics" Altair renderer ships Vega inline."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from psanalytics.jupyter import charts, offline
from psanalytics.jupyter.charts import alt

CDN = re.compile(r"cdn\.jsdelivr|unpkg\.com|<script[^>]+src=", re.I)


@pytest.fixture(autouse=True)
def _fresh_state():
    saved = dict(offline._state)
    offline._state.update(sent=False, cell=None, current_cell=None)
    yield
    offline._state.update(saved)


@pytest.mark.parametrize("first", ["altair", "psanalytics.jupyter"])
def test_importing_the_jupyter_layer_makes_altair_draw_offline(first):
    # either order: the package stays lazy (Altair is not imported by it) yet sets it up
    code = (
        f"import {first}\n"
        "import sys, importlib.util; lazy = 'altair' not in sys.modules\n"
        "assert importlib.util.find_spec('altair') is not None  # a lookup, not an import\n"
        "import altair as alt, psanalytics.jupyter\n"
        "print(lazy, alt.renderers.active)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(first == "psanalytics.jupyter"), "psanalytics"]


def test_a_chosen_renderer_is_kept_unless_forced():
    alt.renderers.enable("svg")
    try:
        assert offline.enable() is False
        assert alt.renderers.active == "svg"
        assert offline.enable(force=True) is True
    finally:
        alt.renderers.enable(offline.RENDERER)


def test_chart_output_has_the_bundle_inline_and_no_cdn(small_events):
    bundle = alt.Chart(small_events.select("EventType")).mark_bar().encode(x="count()", y="EventType")
    out = bundle._repr_mimebundle_()
    data = out[0] if isinstance(out, tuple) else out
    html = data["text/html"]
    assert "window.psaVega" in html and "psa-vega-ready" in html
    assert len(html) > 500_000  # vega + vega-lite + vega-embed, inline
    assert not CDN.search(html)
    assert "</script" not in html.split("data-psanalytics='vega-bundle'>", 1)[1].split("\n</script>")[0]


def test_bundle_travels_once_per_session_and_again_when_its_cell_reruns(small_events):
    spec = charts.country_bars(small_events).to_dict()
    offline._pre_run_cell(type("Info", (), {"cell_id": "A"})())
    first = offline.mimebundle(spec)["text/html"]
    second = offline.mimebundle(spec)["text/html"]  # same cell, second chart: carries it too
    offline._pre_run_cell(type("Info", (), {"cell_id": "B"})())
    other = offline.mimebundle(spec)["text/html"]
    offline._pre_run_cell(type("Info", (), {"cell_id": "A"})())  # re-run clears A's output
    again = offline.mimebundle(spec)["text/html"]
    assert ["vega-bundle" in h for h in (first, second, other, again)] == [True, True, False, True]
    assert len(other) < 50_000
    assert "Re-run this cell" in other  # what a chart says when no bundle ever arrives


def test_spec_text_cannot_close_the_script(small_events):
    import polars as pl

    frame = small_events.with_columns(EventType=pl.lit("</script><b>x"))
    chart = alt.Chart(frame.select("EventType")).mark_point().encode(x="EventType")
    html = offline.chart_html(chart.to_dict(), include_bundle=False)
    assert "</script><b>" not in html
    assert "\\u003c/script>\\u003cb>x" in html
