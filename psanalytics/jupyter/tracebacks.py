"""Project errors in a notebook: the message, not the internal traceback.

A typo in ``ps.kql(...)`` or ``store.preview(...)`` raises a :class:`~psanalytics.errors.PsaError`
whose message already says what was wrong and where (the query line, a caret, the
suggestion; or the HTTP request and the server's answer). IPython would print 40 lines of
parser frames above it. :func:`install` (done by ``%load_ext psanalytics`` and
``import psanalytics.jupyter`` in a kernel) registers an IPython exception handler for
``PsaError`` that shows the exception's type and message and the line of the cell that
raised it; ``%tb`` still prints the full traceback.
"""

from __future__ import annotations

import sys
from typing import Any

from psanalytics.errors import PsaError

__all__ = ["install", "short_traceback"]

_RED, _RESET = "\x1b[0;31m", "\x1b[0m"


def short_traceback(etype: type, value: BaseException, tb: Any) -> list[str]:
    """The lines shown for a project error: where in the user's code, then type: message."""
    render = getattr(value, "_render_traceback_", None)
    if callable(render):
        return render()
    lines: list[str] = []
    frame = tb
    while frame is not None:  # the first frame outside IPython's own is the cell
        code = frame.tb_frame.f_code
        if "IPython" not in code.co_filename.replace("\\", "/").split("/"):
            lines.append(f"in cell line {frame.tb_lineno}" if code.co_name == "<module>" else
                         f"in {code.co_name}, line {frame.tb_lineno}")
            break
        frame = frame.tb_next
    lines.append(f"{_RED}{etype.__name__}{_RESET}: {value}")
    lines.append("(the full traceback: %tb)")
    return lines


def _handler(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None) -> list[str]:
    sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb  # for %tb
    stb = short_traceback(etype, value, tb)
    shell._showtraceback(etype, value, stb)
    return stb


def install(shell: Any = None) -> bool:
    """Show project errors compactly in ``shell`` (default: the running IPython). Returns
    whether it was installed (not when another custom handler is already registered)."""
    if shell is None:
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return False
    current = getattr(shell, "custom_exceptions", ())
    if current and current != (PsaError,):
        return False  # someone else's handler: leave it
    shell.set_custom_exc((PsaError,), _handler)
    return True
