"""``make demo``'s pages open from a folder (a USB stick) in Chromium with no network: the
sample's charts and a notebook's charts and widgets draw, and nothing is requested
off the machine."""

from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from psanalytics import samples
from psanalytics.jupyter.demo import run_demo

NOTEBOOK = [
    "import psanalytics as ps\nfrom psanalytics.jupyter import charts\n"
    "from psanalytics.jupyter.widgets import EventExplorer\n"
    "events = ps.samples.generate(400, seed=3)",
    "charts.top_pages(events, top=5)",
    "EventExplorer(events)",
]

IMAGES = """() => Array.from(document.images).map((i) => ({
  complete: i.complete, width: i.naturalWidth, src: i.src.slice(0, 40)}))"""

SNAPSHOT_SVGS = """() => Array.from(document.querySelectorAll('.psa-widget-snapshot svg'))
  .filter((s) => !s.parentElement.closest('svg'))
  .map((s) => { const r = s.getBoundingClientRect();
    return [r.width, r.height, s.querySelectorAll('path, rect, text').length]; })"""


def _load(browser, path):  # noqa: ANN001, ANN202
    """Open ``path`` with every http(s) request aborted; returns (page, context, requested)."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    requested: list[str] = []

    def route(r):  # noqa: ANN001, ANN202
        requested.append(r.request.url)
        return r.abort("internetdisconnected")

    context.route("http*://**", route)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, context, requested, errors


def test_demo_pages_draw_from_a_folder_with_no_network(tmp_path, browser):  # noqa: ANN001
    nb = new_notebook(
        cells=[new_code_cell(c) for c in NOTEBOOK],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    nbformat.write(nb, tmp_path / "tiny.ipynb")
    out = tmp_path / "build"
    report = run_demo(out, notebooks=[tmp_path / "tiny.ipynb"], events=samples.generate(2_000, seed=1), echo=lambda _s: None)
    assert report.ok, [n.error for n in report.notebooks]

    page, context, requested, errors = _load(browser, report.index)
    try:
        figures = page.evaluate(
            "() => Array.from(document.querySelectorAll('figure')).map((f) => {"
            " const s = f.querySelector('svg'); const r = s && s.getBoundingClientRect();"
            " return s ? [r.width > 0 && r.height > 0, s.querySelectorAll('path, rect, text').length] : [false, 0]; })"
        )
        assert len(figures) == 7 and all(drawn and marks > 10 for drawn, marks in figures), figures
        assert page.locator("a", has_text="tiny").count() == 1
        assert requested == [] and errors == []
    finally:
        context.close()

    page, context, requested, errors = _load(browser, out / "tiny.html")
    try:
        images = page.evaluate(IMAGES)
        # the chart cell: a static SVG image that decoded
        assert len(images) == 1, images
        assert all(i["complete"] and i["width"] > 0 and i["src"].startswith("data:image/svg+xml") for i in images), images
        # the explorer's three charts: inline SVG in the widget's snapshot, drawn
        charts = page.evaluate(SNAPSHOT_SVGS)
        assert len(charts) == 3 and all(w > 0 and h > 0 and marks > 5 for w, h, marks in charts), charts
        assert page.locator(".psa-widget-snapshot").count() == 1
        assert "of 400 events" in page.locator(".psa-widget-snapshot").inner_text()
        assert page.locator(".psa-widget-snapshot table.psa-table tr").count() == 21  # header + 20 rows
        assert requested == [] and errors == []
    finally:
        context.close()
