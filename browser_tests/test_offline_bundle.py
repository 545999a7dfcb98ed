"""The offline renderer's HTML alone draws a chart in Chromium with every request aborted."""

from __future__ import annotations

import polars as pl

from psanalytics.jupyter import charts, offline


def test_the_bundle_draws_a_chart_in_a_browser_with_no_network(tmp_path, browser):
    """The inline HTML alone (no server, every request off the machine aborted) draws."""
    frame = pl.DataFrame({"CountryCode": ["SE", "DE"], "events": [3, 2]})
    spec = charts.country_bars(frame.select(pl.col("CountryCode").repeat_by("events").explode())).to_dict()
    page_html = "<html><body>" + offline.chart_html(spec, include_bundle=True)
    page_html += offline.chart_html(spec, include_bundle=True) + "</body></html>"  # twice: harmless
    (tmp_path / "c.html").write_text(page_html)
    context = browser.new_context()
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.route("http*://**", lambda r: r.abort())
        page.goto((tmp_path / "c.html").as_uri())
        page.wait_for_function(
            "Array.from(document.querySelectorAll('.psa-chart'))"
            ".filter((c) => c.querySelector('svg.marks, canvas.marks')).length == 2",
            timeout=30_000,
        )
        assert errors == []
    finally:
        context.close()
