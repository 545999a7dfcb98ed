"""One exception family for psanalytics. Every message says what went wrong and where."""

from __future__ import annotations


class PsaError(Exception):
    """Root of every error psanalytics raises on purpose."""


class SchemaError(PsaError, ValueError):
    """Input could not be turned into the canonical events frame."""


class InputError(PsaError, ValueError):
    """A file or record could not be read; the message names the file and line."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
