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


# --- jupyter room: demo -------------------------------------------------------------
@app.command()
def demo(
    out: Path = typer.Option(Path("build"), "--out", help="Folder to write the demo to."),
    notebooks: Path = typer.Option(Path("notebooks"), "--notebooks", help="Folder of notebooks to execute."),
    execute: bool = typer.Option(True, "--execute/--no-execute", help="Execute the notebooks."),
) -> None:
    """Run the main job on the embedded default: summarize the sample data, draw its charts,
    execute the notebooks against the in-process emulator and write them as HTML to build/."""
    from psanalytics.jupyter.demo import run_demo

    report = run_demo(out, notebooks=notebooks, execute=execute, echo=typer.echo)
    if not report.ok:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
