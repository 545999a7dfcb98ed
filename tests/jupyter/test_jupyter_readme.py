"""The README's tour works as written from a notebook in notebooks/ (make lab's folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _blocks() -> tuple[str, list[str]]:
    text = (ROOT / "README.md").read_text()
    tour = text[text.index("## A tour") : text.index("From the shell:")]
    blocks: list[tuple[str, str]] = []
    lang, body = None, []
    for line in tour.splitlines():
        if line.startswith("```") and lang is None:
            lang, body = line[3:].strip(), []
        elif line.startswith("```"):
            blocks.append((lang, "\n".join(body)))
            lang = None
        elif lang is not None:
            body.append(line)
    python = [b for k, b in blocks if k == "python"]
    cells = [b for k, b in blocks if k == ""]
    return python[0], cells


@pytest.mark.slow
def test_readme_tour_runs_from_notebooks_folder(shell, monkeypatch):
    # it read "data/samples/..." relative to the repo, wrote export/ and bodies.jsonl.gz into
    # the working folder, put %%kql in the same cell as %load_ext, and summed currencies
    code, cells = _blocks()
    monkeypatch.chdir(ROOT / "notebooks")
    before = set((ROOT / "notebooks").iterdir())
    r = shell.run_cell(code)
    assert r.success, r.error_in_exec
    assert set((ROOT / "notebooks").iterdir()) == before  # nothing written next to the notebooks
    scratch = shell.user_ns["scratch"]
    assert (scratch / "bodies.jsonl.gz").is_file() and (scratch / "export").is_dir()
    assert [c.splitlines()[0] for c in cells] == ["%load_ext psanalytics", "%%kql orders <<"]
    for cell in cells:
        r = shell.run_cell(cell)
        assert r.success, r.error_in_exec
    orders = shell.user_ns["orders"]
    assert orders.columns == ["CountryCode", "currency", "revenue"]
    assert orders.select("CountryCode", "currency").is_duplicated().sum() == 0
    assert orders.height > 1
