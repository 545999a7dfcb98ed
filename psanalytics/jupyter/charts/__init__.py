"""Altair chart builders for track events, sessions and journeys.

Every function aggregates in Polars first and ships only the aggregate to the browser
(never more than :data:`MAX_ROWS` rows), then returns an ordinary Altair chart, so you
can keep composing it::

    from psanalytics.jupyter import charts
    charts.events_over_time(events) | charts.country_bars(events)
    charts.top_pages(events, top=10).properties(title="Top pages this week")

Inputs are the canonical events frame (:mod:`psanalytics.schema`), or the sessions /
funnel / transitions frames of :mod:`psanalytics.sessions` and :mod:`psanalytics.journeys`.
A ``LazyFrame`` is aggregated lazily and only the aggregate is collected.

The builders live by what they draw: :mod:`.events` (raw events), :mod:`.sessions`
(session lengths, transitions), :mod:`.journeys` (funnels, retention, paths, attribution),
:mod:`.visitor` (one visitor's timeline) and :mod:`.render` (KQL ``| render``); all are
importable from here.
"""

from __future__ import annotations

from psanalytics.jupyter.charts._base import (
    HEIGHT,
    MAX_ROWS,
    OTHER,
    UNKNOWN,
    WIDTH,
    ChartDataError,
    alt,
    chart_rows,
    url_path,
    url_paths,
)
from psanalytics.jupyter.charts.events import country_bars, events_over_time, top_pages
from psanalytics.jupyter.charts.journeys import (
    attribution,
    funnel,
    funnel_breakdown,
    retention_heatmap,
    sankey,
    time_to_convert,
)
from psanalytics.jupyter.charts.render import render
from psanalytics.jupyter.charts.sessions import (
    session_duration_histogram,
    session_length_histogram,
    transition_heatmap,
)
from psanalytics.jupyter.charts.visitor import pick_visitor, visitor_frame, visitor_timeline

ChartDataError.__module__ = __name__  # users meet it as psanalytics.jupyter.charts.ChartDataError

__all__ = [
    "HEIGHT",
    "MAX_ROWS",
    "OTHER",
    "UNKNOWN",
    "WIDTH",
    "ChartDataError",
    "alt",
    "attribution",
    "chart_rows",
    "country_bars",
    "events_over_time",
    "funnel",
    "funnel_breakdown",
    "pick_visitor",
    "render",
    "retention_heatmap",
    "sankey",
    "session_duration_histogram",
    "session_length_histogram",
    "time_to_convert",
    "top_pages",
    "transition_heatmap",
    "url_path",
    "url_paths",
    "visitor_frame",
    "visitor_timeline",
]
