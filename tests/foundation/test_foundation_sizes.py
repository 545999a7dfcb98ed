"""The size rule (issue 12, "Done means"): no file in psanalytics/ over 600 lines without
a reason in its docstring, no function over 80 lines without a comment saying why.

A long file states why in a module-docstring paragraph starting ``Why this file is
long:``; a long function in a ``# Long because:`` comment in its body (the generator's
fixed random-draw order, say). Split instead when the parts are
separate concerns.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "psanalytics"
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80
FILE_REASON = "Why this file is long:"
FUNCTION_REASON = "# Long because:"


def _modules() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def long_files(paths: list[Path], root: Path = ROOT) -> list[str]:
    """'path (n lines)' for every file over the limit whose docstring gives no reason."""
    out = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        n = text.count("\n")
        if n > MAX_FILE_LINES and FILE_REASON not in (ast.get_docstring(ast.parse(text)) or ""):
            out.append(f"{path.relative_to(root.parent)} ({n} lines)")
    return out


def long_functions(paths: list[Path], root: Path = ROOT) -> list[str]:
    """'path:line name (n lines)' for every function over the limit without a reason."""
    out = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            n = node.end_lineno - node.lineno + 1  # type: ignore[operator]
            body = "\n".join(lines[node.lineno - 1:node.end_lineno])
            if n > MAX_FUNCTION_LINES and FUNCTION_REASON not in body:
                out.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_no_file_over_600_lines_without_a_reason() -> None:
    assert long_files(_modules()) == []


def test_no_function_over_80_lines_without_a_reason() -> None:
    assert long_functions(_modules()) == []


def test_the_checks_find_what_breaks_the_rule(tmp_path: Path) -> None:
    pkg = tmp_path / "psanalytics"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(85))
    (pkg / "f.py").write_text(f'"""Doc."""\n\n\ndef big():\n{body}\n', encoding="utf-8")
    (pkg / "g.py").write_text(f'"""Doc."""\n\n\ndef big():\n    # Long because: a test.\n{body}\n',
                              encoding="utf-8")
    (pkg / "h.py").write_text('"""Doc."""\n' + "x = 1\n" * 601, encoding="utf-8")
    (pkg / "i.py").write_text('"""Doc.\n\nWhy this file is long: a test.\n"""\n' + "x = 1\n" * 601,
                              encoding="utf-8")
    files = sorted(pkg.glob("*.py"))
    assert long_functions(files, pkg) == ["psanalytics/f.py:4 big (86 lines)"]
    assert long_files(files, pkg) == ["psanalytics/h.py (602 lines)"]
