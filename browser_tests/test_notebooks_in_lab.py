"""Every committed notebook, run in JupyterLab in headless Chromium with the network
blocked: all cells run, every chart draws, widgets are live, no error outputs.

Screenshots go to build/screenshots/<notebook>.png.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ROOT, SHOTS, wait_until

from psanalytics.jupyter.demo import committed_notebooks

NOTEBOOKS = [p.name for p in committed_notebooks(ROOT / "notebooks")]

PANEL = """const panel = (name) => {
    for (const w of window.jupyterapp.shell.widgets('main')) {
      if (w.context && w.context.path === name) return w;
    }
    return null;
  };"""

READY = """(name) => {
  if (!window.jupyterapp) return false;
  PANEL
  const w = panel(name);
  const s = w && w.sessionContext && w.sessionContext.session;
  const k = s && s.kernel;
  return !!(w && w.content && w.context.isReady && k && k.status === 'idle');
}""".replace("PANEL", PANEL)

RUN_ALL = """(name) => {
  PANEL
  window.__psaDone = null;
  window.jupyterapp.shell.activateById(panel(name).id);
  window.jupyterapp.commands.execute('notebook:run-all-cells').then(
    (r) => { window.__psaDone = {ok: r}; },
    (e) => { window.__psaDone = {error: String(e)}; });
  return true;
}""".replace("PANEL", PANEL)

DONE = """(name) => {
  PANEL
  const s = panel(name).sessionContext.session;
  if (!s || !s.kernel) return {error: 'the notebook has no kernel any more (did it die?)'};
  // run-all's promise settles early when a cell tagged raises-exception answers with an
  // error (JupyterLab rejects the batch there while later cells are still queued), and
  // the kernel is briefly idle between cells: so done means every code cell has answered.
  const pending = panel(name).content.widgets.filter(
    (c) => c.model.type === 'code' && c.model.sharedModel.getSource().trim() && c.model.executionCount === null);
  return window.__psaDone && s.kernel.status === 'idle' && pending.length === 0 ? window.__psaDone : null;
}""".replace("PANEL", PANEL)

CELLS = """(name) => {
  PANEL
  const nb = panel(name).content;
  return nb.widgets.filter((c) => c.model.type === 'code').map((c, i) => {
    const outs = c.model.outputs.toJSON();
    return {
      index: i,
      source: c.model.sharedModel.getSource().slice(0, 80),
      tags: c.model.getMetadata('tags') || [],
      count: c.model.executionCount,
      errors: outs.filter((o) => o.output_type === 'error').map((o) => o.ename + ': ' + o.evalue),
      text: outs.map((o) => [].concat(o.text || (o.data && o.data['text/plain']) || '').join('')).join('\\n'),
    };
  });
}""".replace("PANEL", PANEL)

CHARTS = """() => {
  const charts = Array.from(document.querySelectorAll('.psa-chart'));
  return {
    total: charts.length,
    drawn: charts.filter((c) => c.querySelector('canvas.marks, svg.marks')).length,
    errors: Array.from(document.querySelectorAll('.psa-chart-error')).map((e) => e.textContent),
    loadingScript: document.body.innerText.includes('Error loading script'),
    widgetErrors: document.body.innerText.includes('Error displaying widget'),
    bundles: document.querySelectorAll("script[data-psanalytics='vega-bundle']").length,
    vega: !!window.psaVega,
  };
}"""


def _open(page, lab, name: str) -> None:  # noqa: ANN001
    # ?reset: a fresh workspace (not the notebooks the previous test left open)
    page.goto(f"{lab['base']}/lab/tree/{name}?reset&token={lab['token']}")
    wait_until(lambda: page.evaluate(READY, name), timeout=180, what=f"{name} open, kernel idle")


def _run_all(page, name: str) -> list[dict]:  # noqa: ANN001
    page.evaluate(RUN_ALL, name)
    done = wait_until(lambda: page.evaluate(DONE, name), timeout=300, what=f"{name}: every code cell answered after run-all")
    cells = page.evaluate(CELLS, name)
    assert "error" not in done, done
    return cells


def _all_charts_drawn(page, name: str) -> dict:  # noqa: ANN001
    def check():  # noqa: ANN202
        state = page.evaluate(CHARTS)
        if state["errors"] or state["loadingScript"] or state["widgetErrors"]:
            return state  # stop waiting: it failed
        return state if state["drawn"] == state["total"] else None

    state = wait_until(check, timeout=120, what=f"{name}: every chart drawn (an svg/canvas)")
    assert not state["errors"], f"{name}: charts said {state['errors']} {state} {page.console_errors[:5]}"
    assert not state["loadingScript"], f"{name}: 'Error loading script' on the page"
    assert not state["widgetErrors"], f"{name}: 'Error displaying widget' on the page"
    assert state["drawn"] == state["total"], state
    return state


def _status_count(page) -> str:  # noqa: ANN001
    text = page.locator(".widget-html", has_text=re.compile(r"of [\d,]+ events")).first.inner_text()
    return re.search(r"([\d,]+) of [\d,]+ events", text).group(1)


def _explorer_is_live(page) -> None:  # noqa: ANN001
    before = _status_count(page)
    where = page.locator("input[placeholder^='KQL: PageUri contains']").first
    where.fill('EventType == "order"')
    page.locator("button", has_text="Apply").first.click()
    after = wait_until(
        lambda: (c := _status_count(page)) != before and c,
        timeout=60,
        what=f"EventExplorer's count to change after Apply (was {before})",
    )
    assert int(after.replace(",", "")) < int(before.replace(",", "")) or after != before


def _player_is_live(page, cells: list[dict]) -> None:  # noqa: ANN001
    last = cells[-1]
    assert last["text"].startswith("(3, "), last  # player.next() x3 from code: step 3
    details = page.locator(".widget-html", has_text=re.compile(r"event [\d,]+ of [\d,]+")).first
    assert re.search(r"\bevent 4 of ", details.inner_text()), details.inner_text()
    page.locator("button[title='next event']").first.click()
    wait_until(
        lambda: re.search(r"\bevent 5 of ", details.inner_text()),
        timeout=60,
        what="VisitorPlayer to step to event 5 after a click",
    )
    readout = page.locator(".widget-readout").first
    wait_until(lambda: readout.inner_text().strip() == "4", timeout=30, what="slider at 4")


NEW_CELL = """(name) => {
  PANEL
  const p = panel(name);
  window.jupyterapp.shell.activateById(p.id);
  p.content.activeCellIndex = p.content.widgets.length - 1;
  return window.jupyterapp.commands.execute('notebook:insert-cell-below')
    .then(() => window.jupyterapp.commands.execute('notebook:enter-edit-mode'))
    .then(() => true);
}""".replace("PANEL", PANEL)

ACTIVE_SOURCE = """(name) => {
  PANEL
  return panel(name).content.activeCell.model.sharedModel.getSource();
}""".replace("PANEL", PANEL)


def _tab_completes_kql(page, name: str) -> None:  # noqa: ANN001
    """``%kql Events | whe`` + Tab in a new cell: the kernel's %kql matcher answers
    ``where``, which JupyterLab lists (typed ``operator``) or inserts."""
    page.evaluate(NEW_CELL, name)
    editor = page.locator(".jp-Notebook .jp-Cell.jp-mod-active .cm-content").first
    editor.click()
    editor.type("%kql Events | whe")
    wait_until(
        lambda: page.evaluate(ACTIVE_SOURCE, name) == "%kql Events | whe",
        timeout=30,
        what="the new cell to hold the typed text",
    )
    page.keyboard.press("Tab")
    seen: list = []

    def completed():  # noqa: ANN202
        source = page.evaluate(ACTIVE_SOURCE, name)
        items = page.locator(".jp-Completer-item").all_inner_texts()
        seen[:] = [source, items]
        # an item reads "o\nwhere\noperator" (icon letter, text, type)
        if source == "%kql Events | where" or any("where" in i.split() for i in items):
            return True
        return None

    try:
        wait_until(completed, timeout=60, what="Tab after '%kql Events | whe' to complete 'where'")
    except AssertionError as exc:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "tab-completion-failed.png"))
        raise AssertionError(f"{exc}; cell source and completer items: {seen}") from None


def _shutdown_kernels(lab: dict) -> None:
    """Stop every kernel the server runs (each notebook's, once its test is over)."""
    import json
    import urllib.request

    url = f"{lab['base']}/api/sessions?token={lab['token']}"
    with urllib.request.urlopen(url, timeout=10) as r:
        sessions = json.loads(r.read())
    for s in sessions:
        req = urllib.request.Request(
            f"{lab['base']}/api/sessions/{s['id']}?token={lab['token']}", method="DELETE"
        )
        urllib.request.urlopen(req, timeout=30).close()


@pytest.fixture
def clean_lab(lab):  # noqa: ANN001, ANN201
    yield lab
    _shutdown_kernels(lab)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_and_draws_offline(page, clean_lab, name: str) -> None:  # noqa: ANN001
    lab = clean_lab
    _open(page, lab, name)
    cells = _run_all(page, name)
    errors = [(c["source"], c["errors"]) for c in cells if c["errors"] and "raises-exception" not in c["tags"]]
    assert not errors, f"{name}: error outputs {errors}"
    not_run = [c["source"] for c in cells if c["count"] is None and c["source"].strip()]
    first = next((i for i, c in enumerate(cells) if c["count"] is None and c["source"].strip()), 0)
    # the cells just before the first one that did not run: what stopped the run
    assert not not_run, f"{name}: cells that did not run: {not_run} (before them: {cells[max(0, first - 2):first]})"
    state = _all_charts_drawn(page, name)
    if name.startswith("01"):
        _explorer_is_live(page)
    if name.startswith("04"):
        _player_is_live(page, cells)
    if name.startswith("02"):
        _tab_completes_kql(page, name)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{Path(name).stem}.png"))
    print(f"{name}: {len(cells)} code cells, {state['drawn']} charts drawn; blocked: {page.blocked[:5]}")
