"""``psanalytics demo`` (``make demo``): the main job on the embedded default.

1. Loads the sample events (the same data ``psanalytics.connect()`` serves with no
   credentials) and prints a summary of what is in it.
2. Draws the standard charts of :mod:`psanalytics.jupyter.charts` as static SVG files.
3. Executes every notebook in ``notebooks/`` against the embedded emulator (credentials are
   removed from the kernel's environment) and writes each as HTML with its charts rendered
   as static SVG (vl-convert), plus an ``index.html`` linking everything, to ``build/``.

Nothing here needs a network connection.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

__all__ = ["DemoReport", "NotebookRun", "run_demo", "summarize_events"]

# Runs first in every demo kernel (and is removed from the written notebook): charts become
# static SVG so the HTML needs no JavaScript.
_SETUP_CELL = "import altair as _alt\n_alt.renderers.enable('svg')\ndel _alt"
_SETUP_TAG = "psanalytics-demo-setup"


@dataclass
class NotebookRun:
    """What executing one notebook produced."""

    name: str
    html: Path | None
    cells: int
    charts: int
    elapsed_s: float
    error: str | None = None


@dataclass
class DemoReport:
    """Result of :func:`run_demo`."""

    out_dir: Path
    index: Path
    summary: str
    charts: list[Path] = field(default_factory=list)
    notebooks: list[NotebookRun] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return all(nb.error is None for nb in self.notebooks)


def summarize_events(events: pl.DataFrame, *, top: int = 5) -> str:
    """A few lines describing an events frame: size, time range, visitors, types, countries."""
    if events.height == 0:
        return "0 events"
    lo, hi = events["EventTime"].min(), events["EventTime"].max()
    emails = events.select(pl.col("User").struct.field("Email")).to_series()
    lines = [
        f"{events.height:,} events from {events['DeviceId'].n_unique():,} devices "
        f"({(emails != '').sum():,} events carry a user email)",
        f"time range: {lo:%Y-%m-%d %H:%M} .. {hi:%Y-%m-%d %H:%M} UTC ({(hi - lo).days} days)",
        f"{events['SessionId'].n_unique():,} Profile Store SessionIds, "
        f"{events['EventType'].n_unique()} event types, {events['CountryCode'].n_unique()} countries",
    ]
    for column in ("EventType", "CountryCode"):
        counts = (
            events.group_by(column)
            .agg(pl.len().alias("n"))
            .sort(["n", column], descending=[True, False])
            .head(top)
        )
        parts = ", ".join(
            f"{row[column] or '(none)'} {row['n']:,}" for row in counts.iter_rows(named=True)
        )
        lines.append(f"top {column}: {parts}")
    return "\n".join(lines)


def _sample_charts(events: pl.DataFrame) -> dict[str, Any]:
    from psanalytics.jupyter import charts

    return {
        "events-over-time": charts.events_over_time(events),
        "top-pages": charts.top_pages(events, top=12),
        "countries": charts.country_bars(events, metric="visitors"),
        "session-length": charts.session_length_histogram(events),
        "session-duration": charts.session_duration_histogram(events),
        "transitions": charts.transition_heatmap(events),
        "visitor-timeline": charts.visitor_timeline(events),
    }


def _svg(chart: Any) -> str:
    import vl_convert as vlc

    return vlc.vegalite_to_svg(chart.to_json())


def _kernel_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSANALYTICS_")}
    return env


def _count_charts(nb: Any) -> int:
    n = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/svg+xml" in data or "image/png" in data or any("vegalite" in k for k in data):
                n += 1
    return n


_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
_REMOTE_TAG = re.compile(
    r"<script\b[^>]*\bsrc=[\"']?(?:https?:)?//[^>]*>\s*</script>"
    r"|<link\b[^>]*\bhref=[\"']?(?:https?:)?//[^>]*>"
    # inline scripts that import a library from the web (nbconvert's mermaid loader)
    r"|<script\b[^>]*>(?:(?!</script>).)*?https?://[^\"'\s]+\.m?js\b(?:(?!</script>).)*?</script>",
    re.I | re.S,
)


def committed_notebooks(folder: str | Path = "notebooks") -> list[Path]:
    """The notebooks of ``folder`` that git tracks (sorted), so a scratch notebook lying
    there is not run; every ``*.ipynb`` when the folder is not in a git checkout."""
    folder = Path(folder)
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--", "*.ipynb"],
            cwd=folder,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return sorted(folder.glob("*.ipynb"))
    names = [n for n in out.stdout.split("\0") if n and "/" not in n]
    return sorted(folder / n for n in names if (folder / n).is_file())


def _output_html(output: dict[str, Any]) -> str:
    """One stored output (of a widget's Output) as static HTML."""
    kind = output.get("output_type")
    if kind == "stream":
        return f"<pre>{html.escape(''.join(output.get('text', '')))}</pre>"
    if kind == "error":
        return f"<pre style='color:#cf222e'>{html.escape(output.get('ename', ''))}: {html.escape(output.get('evalue', ''))}</pre>"
    data = output.get("data", {})
    if "image/svg+xml" in data:
        svg = data["image/svg+xml"]
        return "".join(svg) if isinstance(svg, list) else svg
    if "image/png" in data:
        return f"<img src='data:image/png;base64,{data['image/png']}'>"
    if "text/html" in data:
        text = data["text/html"]
        return "".join(text) if isinstance(text, list) else text
    if "text/plain" in data:
        text = data["text/plain"]
        return f"<pre>{html.escape(''.join(text) if isinstance(text, list) else text)}</pre>"
    return ""


def widget_html(model_id: str, models: dict[str, Any]) -> str:
    """A static rendering of a widget from its saved state (``store_widget_state``): boxes,
    HTML, the outputs (charts) and the controls as they were, disabled."""
    model = models.get(model_id)
    if model is None:
        return ""
    name = model.get("model_name", "")
    state = model.get("state", {})
    layout = models.get(str(state.get("layout", "")).removeprefix("IPY_MODEL_"), {})
    if layout.get("state", {}).get("display") == "none":
        return ""
    desc = html.escape(str(state.get("description", "") or ""))
    label = f"<span class='psa-w-label'>{desc}</span> " if desc else ""
    if name in ("VBoxModel", "HBoxModel", "BoxModel", "GridBoxModel"):
        inner = "".join(
            widget_html(str(c).removeprefix("IPY_MODEL_"), models) for c in state.get("children", [])
        )
        direction = "row" if name == "HBoxModel" else "column"
        return f"<div style='display:flex;flex-direction:{direction};gap:6px;flex-wrap:wrap'>{inner}</div>"
    if name in ("HTMLModel", "HTMLMathModel"):
        return f"<div>{label}{state.get('value', '')}</div>"
    if name == "LabelModel":
        return f"<div>{label}{html.escape(str(state.get('value', '')))}</div>"
    if name == "OutputModel":
        return "<div>" + "".join(_output_html(o) for o in state.get("outputs", [])) + "</div>"
    if name == "ButtonModel":
        return f"<button disabled>{desc}</button>"
    labels = state.get("_options_labels")
    if labels is not None:
        index = state.get("index")
        picked = index if isinstance(index, list) else ([] if index is None else [index])
        chosen = [labels[i] for i in picked if isinstance(i, int) and 0 <= i < len(labels)]
        if name == "SelectionRangeSliderModel" and len(chosen) == 2:
            text = f"{chosen[0]} – {chosen[1]}"
        else:
            text = ", ".join(chosen) or "(all)"
        return f"<div>{label}<code>{html.escape(text)}</code></div>"
    if "value" in state:
        return f"<div>{label}<code>{html.escape(str(state['value']))}</code></div>"
    return ""


def static_widgets(nb: Any) -> int:
    """Replace every widget view in ``nb`` by a static rendering of its saved state and drop
    the state (so the HTML needs no widget manager from a CDN). Returns how many."""
    state = nb.metadata.get("widgets", {}).get(_WIDGET_STATE, {}).get("state", {})
    n = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if _WIDGET_VIEW not in data:
                continue
            view = data.pop(_WIDGET_VIEW)
            model_id = view.get("model_id", "") if isinstance(view, dict) else ""
            snapshot = widget_html(model_id, state)
            data["text/html"] = (
                "<div class='psa-widget-snapshot' style='border-left:3px solid #d0d7de;padding-left:8px'>"
                "<div style='font-size:85%;color:#57606a'>widget as it was when the notebook ran "
                "(static: run the notebook in Jupyter to use it)</div>"
                f"{snapshot}</div>"
            )
            n += 1
    nb.metadata.pop("widgets", None)
    return n


def offline_html(body: str) -> str:
    """Drop every ``<script src>``/``<link href>`` that points off the machine (nbconvert
    adds require.js and MathJax from a CDN; the demo pages need neither)."""
    return _REMOTE_TAG.sub("", body)


def execute_notebook(path: Path, out_dir: Path, *, timeout: int = 300) -> NotebookRun:
    """Execute one notebook against the embedded emulator and write it as HTML to ``out_dir``."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbconvert import HTMLExporter

    nb = nbformat.read(path, as_version=4)
    setup = nbformat.v4.new_code_cell(_SETUP_CELL, metadata={"tags": [_SETUP_TAG]})
    nb.cells.insert(0, setup)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent.resolve())}},
        store_widget_state=True,
    )
    started = time.perf_counter()
    error: str | None = None
    try:
        client.execute(env=_kernel_env())
    except CellExecutionError as exc:
        text = str(exc).strip().splitlines()
        error = text[-1] if text else "cell failed"
    except Exception as exc:  # noqa: BLE001 - report any kernel failure, keep going
        error = f"{type(exc).__name__}: {exc}"
    if error is not None:
        client.set_widgets_metadata()  # (only done after the last cell otherwise)
    elapsed = time.perf_counter() - started
    nb.cells = [c for c in nb.cells if _SETUP_TAG not in c.get("metadata", {}).get("tags", [])]
    static_widgets(nb)
    body, _ = HTMLExporter().from_notebook_node(nb)
    body = offline_html(body)
    target = out_dir / (path.stem + ".html")
    target.write_text(body, encoding="utf-8")
    return NotebookRun(path.stem, target, len(nb.cells), _count_charts(nb), elapsed, error)


def _index_html(report: DemoReport, svgs: dict[str, str]) -> str:
    parts = [
        "<!doctype html><meta charset='utf-8'><title>psanalytics demo</title>",
        "<p style='color:#57606a'>Everything on these pages is in this folder: they open "
        "with no network (charts are static SVG, widgets static snapshots).</p>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:980px}"
        "pre{background:#f5f5f5;padding:1em}figure{margin:1.5em 0}</style>",
        "<h1>psanalytics demo</h1><h2>Sample data</h2>",
        f"<pre>{html.escape(report.summary)}</pre>",
    ]
    if report.notebooks:
        parts.append("<h2>Notebooks (executed against the embedded emulator)</h2><ul>")
        for nb in report.notebooks:
            status = "ok" if nb.error is None else f"FAILED: {html.escape(nb.error)}"
            link = f"<a href='{nb.html.name}'>{nb.name}</a>" if nb.html else nb.name
            parts.append(
                f"<li>{link}: {nb.cells} cells, {nb.charts} charts, {nb.elapsed_s:.1f} s, {status}</li>"
            )
        parts.append("</ul>")
    parts.append("<h2>Charts of the sample</h2>")
    for name, svg in svgs.items():
        parts.append(f"<figure><figcaption>{name}</figcaption>{svg}</figure>")
    return "\n".join(parts)


def run_demo(
    out_dir: str | Path = "build",
    *,
    notebooks: str | Path | Sequence[str | Path] | None = "notebooks",
    events: pl.DataFrame | None = None,
    execute: bool = True,
    echo: Callable[[str], None] = print,
) -> DemoReport:
    """Run the demo and write it to ``out_dir`` (created); returns a :class:`DemoReport`.

    ``notebooks`` is a folder (the ``*.ipynb`` git tracks in it, sorted: a scratch notebook
    there is not run; every ``*.ipynb`` outside a git checkout), a list of notebook paths, or
    None. ``events`` defaults to :func:`psanalytics.samples.default_events`.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    (out / "charts").mkdir(parents=True, exist_ok=True)
    if events is None:
        from psanalytics import samples

        events = samples.default_events()
    summary = summarize_events(events)
    echo("Sample data (what psanalytics.connect() serves with no credentials):")
    for line in summary.splitlines():
        echo(f"  {line}")

    svgs: dict[str, str] = {}
    chart_paths: list[Path] = []
    for name, chart in _sample_charts(events).items():
        svg = _svg(chart)
        svgs[name] = svg
        target = out / "charts" / f"{name}.svg"
        target.write_text(svg, encoding="utf-8")
        chart_paths.append(target)
    echo(f"{len(chart_paths)} charts of the sample written to {out / 'charts'}")

    if notebooks is None or not execute:
        paths: list[Path] = []
    elif isinstance(notebooks, str | Path):
        folder = Path(notebooks)
        paths = committed_notebooks(folder) if folder.is_dir() else []
    else:
        paths = [Path(p) for p in notebooks]
    report = DemoReport(out, out / "index.html", summary, chart_paths)
    if not paths:
        echo("no notebooks to execute")
    for path in paths:
        echo(f"executing {path} ...")
        run = execute_notebook(path, out)
        report.notebooks.append(run)
        status = "ok" if run.error is None else f"FAILED: {run.error}"
        echo(
            f"  {run.name}: {run.cells} cells, {run.charts} charts, {run.elapsed_s:.1f} s, {status}"
        )
    report.index.write_text(_index_html(report, svgs), encoding="utf-8")
    report.elapsed_s = time.perf_counter() - started
    if report.notebooks:
        total = sum(nb.elapsed_s for nb in report.notebooks)
        echo(f"{len(report.notebooks)} notebooks executed in {total:.1f} s")
    echo(f"demo written to {report.index.resolve()} ({report.elapsed_s:.1f} s)")
    return report
