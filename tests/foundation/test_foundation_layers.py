"""The import contract (.importlinter: DESIGN.md's layering, no cycles) holds.

Runs import-linter's ``lint-imports`` on the package: `make test` fails on an import that
crosses the layering (the emulator importing api, the core importing IPython, a lower
layer importing a higher one, a cycle between sibling modules).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contract_is_kept() -> None:
    exe = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run(
        [str(exe), "--config", str(ROOT / ".importlinter"), "--no-cache"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    report = res.stdout + res.stderr
    assert res.returncode == 0, report
    assert "0 broken" in report and "6 kept" in report, report
