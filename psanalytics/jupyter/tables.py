"""Tidy HTML tables of frames, for widgets and the results ``%kql`` displays.

Polars' own HTML puts ``shape: (20, 6)`` above the table, draws a border of its own inside
JupyterLab's (double borders), prints times to the nanosecond and wraps long values over
several lines. :func:`frame_html` instead draws:

- one line per row: a long value is cut with an ellipsis, the whole value is its tooltip;
- times in the kernel's local time zone to the second (the header names the zones of the
  rows shown, e.g. ``EventTime (UTC)`` or ``EventTime (CET/CEST)``), the exact UTC value with all its digits in the tooltip;
- URLs (``PageUri`` and any column whose values are URLs) as their path
  (:func:`psanalytics.jupyter.urls.url_path`), the full URL in the tooltip;
- ``User`` as ``Name <Email>``, other structs and lists as compact JSON; numbers right-aligned;
  nulls as a grey ``null``;
- single rules between rows (no border of its own), and ``first N of M rows`` once, under it.
"""

from __future__ import annotations

import html
import json
import math
from datetime import date, datetime, time, timedelta
from typing import Any

import polars as pl

from psanalytics.jupyter.urls import url_paths

__all__ = ["frame_html", "local_zone"]

_STYLE = """<style>
table.psa-table{border-collapse:collapse;border:none;font-size:12px;line-height:1.5;margin:2px 0}
table.psa-table th,table.psa-table td{border:none;border-bottom:1px solid #d0d7de;
padding:2px 8px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;max-width:24em;
text-align:left;vertical-align:top;background:none}
table.psa-table th{border-bottom:1px solid #8c959f;font-weight:600}
table.psa-table .n{text-align:right}
table.psa-table .null{color:#8c959f}
</style>"""
_NOTE = "font-size:85%;color:#57606a"
_URL = r"^[A-Za-z][A-Za-z0-9+.-]*://"


def local_zone() -> str:
    """The kernel's local time zone now, as a short name (``UTC``, ``CET``, ``UTC+05:30``)."""
    return _zone(datetime.now().astimezone())


def _zone(value: datetime) -> str:
    local = value.astimezone()
    name = local.tzname() or ""
    if name and name[0] not in "+-":
        return name
    minutes = int((local.utcoffset() or timedelta(0)).total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _url_columns(frame: pl.DataFrame) -> list[str]:
    out = []
    for name, dtype in frame.schema.items():
        if dtype != pl.String:
            continue
        filled = (
            frame.get_column(name).drop_nulls().filter(frame.get_column(name).drop_nulls() != "")
        )
        if name == "PageUri" or (filled.len() and filled.str.contains(_URL).all()):
            out.append(name)
    return out


def _number(value: float | int) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value != 0 and (abs(value) >= 1e15 or abs(value) < 1e-4):
        return f"{value:.6g}"
    return f"{value:,.4f}".rstrip("0").rstrip(".")


def _cell(value: Any, dtype: pl.DataType, shown: str | None = None, full: str | None = None) -> str:
    """One ``<td>``: the short text, with the full value as its tooltip when they differ."""
    if value is None:
        return "<td class='null'>null</td>"
    cls = " class='n'" if dtype.is_numeric() else ""
    if shown is not None:
        full = full or str(value)
    elif isinstance(value, datetime):
        local = value.astimezone() if value.tzinfo is not None else value
        shown = local.strftime("%Y-%m-%d %H:%M:%S")
        full = full or value.isoformat()
    elif isinstance(value, date | time):
        shown = full = value.isoformat()
    elif isinstance(value, timedelta):
        shown = full = str(value)
    elif isinstance(value, int | float):
        shown, full = _number(value), repr(value)
    elif isinstance(value, dict) and set(value) >= {"Email", "Name"}:
        name, email = value["Name"] or "", value["Email"] or ""
        shown = f"{name} <{email}>".strip() if email else name
        full = json.dumps(value, ensure_ascii=False, default=str) if shown else ""
    elif isinstance(value, dict | list):
        shown = full = json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
    else:
        shown = full = str(value)
    title = f" title='{html.escape(full, quote=True)}'" if full != shown or len(shown) > 40 else ""
    return f"<td{cls}{title}>{html.escape(shown)}</td>"


def frame_html(frame: pl.DataFrame, rows: int = 20, *, footer: str | None = None) -> str:
    """An HTML table of the first ``rows`` rows, tidy (see the module's doc), with ``first
    N of M rows`` (or ``M rows``) once under it; with ``footer`` (a line that already gives
    the row count, as ``%kql``'s does), ``first N shown · <footer>`` instead."""
    head = frame.head(rows)
    paths = {c: url_paths(head.get_column(c)).to_list() for c in _url_columns(head)}
    exact = {  # every digit the frame holds (Python datetimes stop at microseconds)
        name: head.get_column(name)
        .dt.convert_time_zone("UTC")
        .dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ")
        .to_list()
        for name, dtype in head.schema.items()
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None
    }
    zone = local_zone()
    headers = []
    for name, dtype in head.schema.items():
        label = name
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
            shown_zones = [_zone(v) for v in head.get_column(name).to_list() if v is not None]
            label += f" ({'/'.join(dict.fromkeys(shown_zones)) or zone})"
        elif name in paths:
            label += " (path)"
        headers.append(
            f"<th{' class=n' if dtype.is_numeric() else ''} title='{html.escape(str(dtype), quote=True)}'>{html.escape(label)}</th>"
        )
    body = []
    columns = [
        (name, dtype, head.get_column(name).to_list()) for name, dtype in head.schema.items()
    ]
    for i in range(head.height):
        cells = []
        for name, dtype, values in columns:
            shown = paths[name][i] if name in paths and values[i] is not None else None
            full = exact[name][i] if name in exact else None
            cells.append(_cell(values[i], dtype, shown, full))
        body.append("<tr>" + "".join(cells) + "</tr>")
    if footer is None:
        count = (
            f"first {head.height:,} of {frame.height:,} rows"
            if frame.height > head.height
            else f"{frame.height:,} row{'' if frame.height == 1 else 's'}"
        )
    else:  # the footer gives the row count: say only how many of them are shown
        count = (f"first {head.height:,} shown · " if frame.height > head.height else "") + footer
    return (
        f"{_STYLE}<table class='psa-table'><thead><tr>{''.join(headers)}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
        f"<div style='{_NOTE}'>{html.escape(count)}</div>"
    )
