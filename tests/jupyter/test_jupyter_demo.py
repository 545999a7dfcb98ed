"""The demo command and the import isolation of the Jupyter layer."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from psanalytics.cli import app
from psanalytics.jupyter.demo import run_demo, summarize_events


def test_summarize_events_exact(small_events):
    text = summarize_events(small_events, top=2)
    assert text.splitlines() == [
        "8 events from 2 devices (0 events carry a user email)",
        "time range: 2024-03-04 10:05 .. 2024-03-04 12:06 UTC (0 days)",
        "3 Profile Store SessionIds, 4 event types, 3 countries",
        "top EventType: home 3, product 3",
        "top CountryCode: SE 5, DE 2",
    ]


def test_run_demo_without_notebooks_writes_charts(tmp_path, small_events):
    lines: list[str] = []
    report = run_demo(tmp_path / "out", notebooks=None, events=small_events, echo=lines.append)
    assert report.ok and report.notebooks == []
    assert sorted(p.name for p in report.charts) == [
        "countries.svg",
        "events-over-time.svg",
        "session-duration.svg",
        "session-length.svg",
        "top-pages.svg",
        "transitions.svg",
        "visitor-timeline.svg",
    ]
    assert all(p.read_text().startswith("<svg") for p in report.charts)
    index = report.index.read_text()
    assert "8 events from 2 devices" in index and index.count("<svg") == 7
    assert lines[0].startswith("Sample data")
    assert lines[-1].startswith(f"demo written to {report.index.resolve()}")


def test_cli_demo_no_execute(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--no-execute"])
    assert result.exit_code == 0, result.output
    assert "50,000 events" in result.output
    assert (tmp_path / "index.html").exists()


# The core (everything but jupyter/ and cli) must import without the notebook stack.
CORE = [
    "psanalytics.schema",
    "psanalytics.samples",
    "psanalytics.exports",
    "psanalytics.query.odata",
    "psanalytics.query.kql",
    "psanalytics.sessions",
    "psanalytics.journeys",
    "psanalytics.api.http",
    "psanalytics.api.profile_store",
    "psanalytics.api.event_api",
    "psanalytics.emulator",
    "psanalytics.replay",
]


def test_import_psanalytics_does_not_import_jupyter_stack():
    code = (
        "import importlib, sys, psanalytics\n"
        "psanalytics.__dir__()\n"
        "for m in CORE:\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except ModuleNotFoundError as e:\n"
        "        if not (e.name or '').startswith('psanalytics'):\n"
        "            raise\n"
        "bad = sorted(m for m in ('IPython', 'ipywidgets', 'altair', 'traitlets', 'vl_convert') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    code = f"CORE = {CORE!r}\n" + code
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_importing_jupyter_package_stays_lazy():
    code = (
        "import sys, psanalytics.jupyter\n"
        "print(','.join(sorted(m for m in ('IPython', 'ipywidgets', 'altair') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.slow
def test_execute_notebook_writes_html_with_static_charts(tmp_path, monkeypatch):
    """A tiny notebook through the real kernel: charts come out as static SVG, credentials
    are removed from the kernel's environment, and a failing cell is reported."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from psanalytics.jupyter.demo import execute_notebook

    monkeypatch.setenv("PSANALYTICS_API_KEY", "secret-key-123")
    nb = new_notebook(
        cells=[
            new_code_cell(
                "import os\nprint('key' if 'PSANALYTICS_API_KEY' in os.environ else 'no key')"
            ),
            new_code_cell(
                "import altair as alt, polars as pl\n"
                "alt.Chart(pl.DataFrame({'a': ['x', 'y'], 'n': [1, 2]})).mark_bar().encode(x='a', y='n')"
            ),
            new_code_cell(
                "import ipywidgets as w\n"
                "w.VBox([w.HTML('<b>live count 42</b>'), w.Button(description='Apply'),\n"
                "        w.Dropdown(options=['a', 'b'], value='b', description='pick')])"
            ),
            new_code_cell("1/0"),
        ],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    out = tmp_path / "out"
    out.mkdir()
    run = execute_notebook(path, out)
    assert run.cells == 4 and run.charts == 1
    assert run.error is not None and "ZeroDivisionError" in run.error
    page = (out / "tiny.html").read_text()
    assert "data:image/svg+xml" in page and "no key" in page
    assert "secret-key-123" not in page
    assert "_alt.renderers" not in page  # the setup cell is not in the output
    # widgets: a static snapshot of their state, and nothing loaded from a CDN
    assert "<b>live count 42</b>" in page and '<button disabled="">Apply</button>' in page
    assert '<span class="psa-w-label">pick</span> <code>b</code>' in page
    assert "widget-view+json" not in page and "widget-state+json" not in page
    assert not re.search(r"cdn\.jsdelivr|unpkg\.com|cdnjs|<script[^>]+src=.(https?:)?//", page)


def test_committed_notebooks_skip_scratch_ones(tmp_path):
    from psanalytics.jupyter.demo import committed_notebooks

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    for name in ("01-a.ipynb", "02-b.ipynb", "Untitled.ipynb"):
        (tmp_path / name).write_text("{}")
    subprocess.run(["git", "add", "01-a.ipynb", "02-b.ipynb"], cwd=tmp_path, check=True)
    assert [p.name for p in committed_notebooks(tmp_path)] == ["01-a.ipynb", "02-b.ipynb"]
    outside = tmp_path.parent / (tmp_path.name + "-plain")
    outside.mkdir()
    (outside / "x.ipynb").write_text("{}")
    assert [p.name for p in committed_notebooks(outside)] == ["x.ipynb"]


def test_charts_import_leaves_rfc3987_importable_later():
    code = (
        "import sys, psanalytics.jupyter.charts as c\n"
        "assert 'rfc3987_syntax' not in sys.modules and c.alt.Chart is not None\n"
        "import importlib.util\n"
        "print(importlib.util.find_spec('rfc3987_syntax') is None or __import__('rfc3987_syntax') is not None)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
