"""The ``psanalytics`` command: samples, info, serve, fetch, preview, sessionize, replay, demo.

Each command imports what it needs when it runs, so ``psanalytics --help`` is instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from psanalytics import __version__

app = typer.Typer(
    name="psanalytics",
    help="Get Optimizely Profile Store track events out, understand them, and move them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"psanalytics {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(  # noqa: UP007
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """psanalytics command line."""


# Commands are added below, one block per room (keep each block self-contained).
# >>> commands


def main() -> None:
    app()


if __name__ == "__main__":
    main()
