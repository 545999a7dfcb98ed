"""KQL errors: every one points at the query (1-based line and column, snippet, caret)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from psanalytics.errors import PsaError


def line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of a character offset in ``text`` (clamped into the text)."""
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    start = text.rfind("\n", 0, offset) + 1
    return line, offset - start + 1


def make_snippet(text: str, line: int, column: int, width: int = 1) -> str:
    """The query line holding the position, and a caret line under it."""
    lines = text.split("\n")
    if not lines:
        return ""
    line = max(1, min(line, len(lines)))
    src = lines[line - 1].replace("\t", " ")
    caret = " " * (column - 1) + "^" * max(1, min(width, max(1, len(src) - column + 1)))
    return f"{src}\n{caret}"


class KqlError(PsaError, ValueError):
    """A KQL query could not be run. ``str(err)`` = message, position and snippet.

    Attributes: ``message``, ``line`` and ``column`` (1-based), ``snippet`` (the query line
    and a caret line), ``suggestion`` (a "did you mean" name or None), ``kind`` (the class
    name) and ``span`` (0-based character offsets ``(start, end)`` into the query).
    """

    kind = "KqlError"

    def __init__(
        self,
        message: str,
        *,
        query: str | None = None,
        span: tuple[int, int] | None = None,
        line: int | None = None,
        column: int | None = None,
        suggestion: str | None = None,
        snippet: str | None = None,
    ) -> None:
        self.message = message
        self.suggestion = suggestion
        self.span = span
        self.query = query
        if query is not None and span is not None:
            line, column = line_col(query, span[0])
            if snippet is None:
                snippet = make_snippet(query, line, column, span[1] - span[0])
        self.line = line
        self.column = column
        self.snippet = snippet
        super().__init__(self._render())

    def _render(self) -> str:
        text = self.message
        if self.suggestion:
            text += f" (did you mean '{self.suggestion}'?)"
        if self.line is not None:
            text += f" at line {self.line}, column {self.column}"
        if self.snippet:
            text += "\n" + self.snippet
        return text

    def __str__(self) -> str:
        return self._render()

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (used by the emulator's 400 bodies and the magic)."""
        return {
            "kind": self.kind,
            "message": self.message,
            "line": self.line,
            "column": self.column,
            "snippet": self.snippet,
            "suggestion": self.suggestion,
        }

    def with_query(self, query: str) -> KqlError:
        """Attach the query text (computes line/column/snippet from the span)."""
        if self.query is None and self.span is not None:
            return type(self)(self.message, query=query, span=self.span,
                              suggestion=self.suggestion)
        return self

    @classmethod
    def from_remote(cls, message: str, query: str | None = None) -> KqlError:
        """Map a Kusto/API error message (HTTP 400) to the matching class and position.

        Recognises ``[line:position=L:C]``, ``line [L,C]``, ``line L, column C`` and
        ``at L:C`` positions, and the text of this engine's own errors (as the emulator
        sends them: message, "did you mean", position and snippet). The class comes from
        the message's words (syntax/parse/expected -> :class:`KqlSyntaxError`, not
        supported -> :class:`KqlUnsupported`, semantic/resolve/unknown name ->
        :class:`KqlSemanticError`, otherwise :class:`KqlRuntimeError`).
        """
        first = message.split("\n", 1)[0].strip()
        suggestion = None
        own = re.fullmatch(r"(?P<msg>.*?)(?: \(did you mean '(?P<sug>[^']*)'\?\))?"
                           r" at line (?P<l>\d+), column (?P<c>\d+)", first)
        if own:
            text = own.group("msg")
            suggestion = own.group("sug")
        else:
            text = message.strip()
        low = text.lower()
        klass: type[KqlError]
        if "not supported" in low or "unsupported" in low:
            klass = KqlUnsupported
        elif any(w in low for w in (
                "syntax", "parse", "unexpected", "expected ", "unterminated",
                "unknown operator", "unknown timespan unit", "invalid datetime literal",
                "invalid timespan literal", "invalid number", "must be the last operator",
                "cannot be chained", "nested too deeply", "escape sequence")):
            klass = KqlSyntaxError
        elif any(w in low for w in ("semantic", "resolve", "unknown", "does not refer",
                                    "cannot compare", "both a column", "needs", "expects")):
            klass = KqlSemanticError
        else:
            klass = KqlRuntimeError if cls is KqlError else cls
        line = column = None
        for pat in (
            r"line:position\s*=\s*(\d+)\s*:\s*(\d+)",
            r"line\s*\[\s*(\d+)\s*,\s*(\d+)\s*\]",
            r"line\s+(\d+)\s*,\s*(?:column|col|position|pos)\s+(\d+)",
            r"\bat\s+(\d+):(\d+)\b",
        ):
            m = re.search(pat, message, re.IGNORECASE)
            if m:
                line, column = int(m.group(1)), int(m.group(2))
                break
        snippet = None
        if own and "\n" in message:
            snippet = message.split("\n", 1)[1]
        elif query is not None and line is not None and column is not None:
            snippet = make_snippet(query, line, column)
        return klass(text, line=line, column=column, snippet=snippet, suggestion=suggestion)


class KqlSyntaxError(KqlError):
    """The text is not valid KQL (lexing or parsing failed)."""

    kind = "KqlSyntaxError"


class KqlSemanticError(KqlError):
    """Valid syntax, but an unknown table/column/function, a type mismatch or an ambiguity."""

    kind = "KqlSemanticError"


class KqlUnsupported(KqlError):
    """Valid KQL that the local engine does not implement (never guessed at)."""

    kind = "KqlUnsupported"


class KqlRuntimeError(KqlError):
    """The query was valid but failed while running (e.g. an invalid regex in the data path)."""

    kind = "KqlRuntimeError"


def edit_distance(a: str, b: str, limit: int = 3) -> int:
    """Damerau-Levenshtein (optimal string alignment) distance, capped at ``limit``."""
    if a == b:
        return 0
    if abs(len(a) - len(b)) >= limit:
        return limit
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return min(prev[-1], limit)


def suggest(name: str, candidates: Iterable[str], max_distance: int = 2) -> str | None:
    """The closest candidate within ``max_distance`` edits (case-insensitive match first)."""
    cands = list(dict.fromkeys(candidates))
    for c in cands:
        if c != name and c.lower() == name.lower():
            return c
    best: tuple[int, str] | None = None
    for c in cands:
        if c == name:
            continue
        d = edit_distance(name, c, max_distance + 1)
        if d <= max_distance and (best is None or d < best[0]):
            best = (d, c)
    return best[1] if best else None
