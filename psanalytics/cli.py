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


# --- foundation room: samples, info ------------------------------------------------------
@app.command("samples")
def samples_cmd(
    path: Path = typer.Argument(
        ...,
        help="Output file; the format comes from the name: .ndjson, .jsonl, .json, "
        ".page.json (API page), .csv, .parquet, optionally + .gz or .zst.",
    ),
    events: int = typer.Option(50_000, "--events", "-n", help="Number of events."),
    devices: int | None = typer.Option(
        None, "--devices", help="Number of devices (default: events / 20)."
    ),
    days: float = typer.Option(14, "--days", help="Length of the time window in days."),
    start: str | None = typer.Option(
        None, "--start", help="First instant, ISO 8601 (default 2024-03-04T00:00:00Z)."
    ),
    seed: int = typer.Option(20240304, "--seed", help="Random seed (default: the committed sample's)."),
    burst: bool = typer.Option(False, "--burst", help="Add 12,000 events inside one minute."),
    format: str | None = typer.Option(
        None, "--format", help="ndjson, json, pages, csv or parquet (default: from the name)."
    ),
) -> None:
    """Write generated sample events to PATH (defaults reproduce data/samples/ exactly)."""
    from datetime import datetime

    from psanalytics import exports, samples
    from psanalytics.errors import PsaError

    try:
        t0 = datetime.fromisoformat(start.replace("Z", "+00:00")) if start else None
    except ValueError:
        typer.echo(f"error: --start {start!r} is not an ISO 8601 time", err=True)
        raise typer.Exit(2) from None
    try:
        frame = samples.generate(
            events, n_devices=devices, days=days, start=t0, seed=seed, burst=burst
        )
        out = exports.write_events(frame, path, format=format)
    except (PsaError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {frame.height:,} events to {out} ({out.stat().st_size:,} bytes)")


@app.command("info")
def info_cmd(
    path: list[str] = typer.Argument(..., help="Export file(s), folder or glob."),
    format: str | None = typer.Option(
        None, "--format", help="ndjson, json, csv or parquet (default: from the name)."
    ),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip malformed lines, report them."),
) -> None:
    """Summarise exported events: rows, time range, devices, event types, scopes."""
    import polars as pl

    from psanalytics import exports
    from psanalytics.errors import PsaError

    try:
        frame, report = exports.read_events_with_report(
            path if len(path) > 1 else path[0], format=format,
            on_error="skip" if skip_bad else "raise",
        )
    except (PsaError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"files:    {len(report.files)}")
    typer.echo(f"rows:     {frame.height:,}")
    if report.skipped:
        typer.echo(f"skipped:  {report.summary()}")
    if frame.height:
        from psanalytics.schema import format_time_expr

        lo, hi = frame.select(
            format_time_expr(pl.col("EventTime").min()).alias("lo"),
            format_time_expr(pl.col("EventTime").max()).alias("hi"),
        ).row(0)
        typer.echo(f"from:     {lo or '-'}")
        typer.echo(f"to:       {hi or '-'}")
    typer.echo(f"devices:  {frame.get_column('DeviceId').n_unique():,}")
    emails = frame.get_column("User").struct.field("Email")
    typer.echo(f"users:    {emails.filter(emails != '').n_unique():,} (distinct User.Email)")
    typer.echo("event types:")
    counts = frame.group_by("EventType").len().sort(["len", "EventType"], descending=[True, False])
    for et, n in counts.iter_rows():
        typer.echo(f"  {et or '(empty)':<24}{n:>12,}")
    typer.echo("scopes:")
    scopes = frame.group_by("Scope").len().sort(["len", "Scope"], descending=[True, False])
    for sc, n in scopes.iter_rows():
        typer.echo(f"  {sc or '(empty)':<24}{n:>12,}")


# --- api room: fetch, preview -------------------------------------------------------
def _api_store(url: str | None, api_key: str | None, progress: bool, concurrency: int = 4):
    from psanalytics.api.profile_store import connect

    return connect(url, api_key, progress=progress, concurrency=concurrency)


@app.command()
def fetch(
    output: Path = typer.Argument(..., help="A .parquet/.ndjson/.csv file, or a folder for a resumable export."),
    filter: str | None = typer.Option(None, "--filter", "-f", help="$filter, e.g. \"EventType eq order\"."),
    start: str | None = typer.Option(None, "--start", help="First EventTime (ISO 8601, inclusive)."),
    end: str | None = typer.Option(None, "--end", help="Last EventTime (ISO 8601, exclusive)."),
    url: str | None = typer.Option(None, "--url", envvar="PSANALYTICS_URL", help="Profile Store URL (default: in-process emulator)."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="PSANALYTICS_API_KEY", help="API key (read from PSANALYTICS_API_KEY).", show_default=False),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Folder export: keep finished windows of an interrupted run."),
    concurrency: int = typer.Option(4, "--concurrency", help="Windows fetched at once."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the planned windows and requests, fetch nothing."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Fetch every matching track event exactly once (past the 10,000-row window) into a file
    or a partitioned Parquet folder (resumable)."""
    from psanalytics.errors import PsaError

    try:
        store = _api_store(url, api_key, progress, concurrency)
        if dry_run:
            plan = store.plan(filter, start=start, end=end)
            for w in plan:
                typer.echo(f"{w!r}")
            typer.echo(f"{len(plan)} windows, {sum(w.count or 0 for w in plan):,} events, "
                       f"about {len(plan)} page requests")
            return
        suffix = output.suffix.lower()
        if suffix in (".parquet", ".ndjson", ".jsonl", ".json", ".csv"):
            frame = store.events(filter, start=start, end=end)
            output.parent.mkdir(parents=True, exist_ok=True)
            if suffix == ".parquet":
                frame.write_parquet(output)
            elif suffix == ".csv":
                import polars as pl

                frame.with_columns(
                    pl.col("User").struct.field("Email").alias("User.Email"),
                    pl.col("User").struct.field("Name").alias("User.Name"),
                ).drop("User").write_csv(output)
            elif suffix == ".json":
                from psanalytics.schema import to_api_json

                output.write_bytes(to_api_json(frame))
            else:
                from psanalytics.schema import api_json_lines

                lines = api_json_lines(frame)
                output.write_text("".join(s + "\n" for s in lines.to_list()), encoding="utf-8")
            typer.echo(f"{frame.height:,} events -> {output}")
        else:
            rep = store.export(output, filter, start=start, end=end, resume=resume)
            typer.echo(
                f"{rep.rows:,} events in {len(rep.windows)} windows -> {output} "
                f"({rep.resumed_windows} resumed, {rep.requests} requests, {rep.retries} retries, "
                f"{rep.duration_s:.1f} s)"
            )
    except PsaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def preview(
    query: str = typer.Argument(..., help="KQL over the Events table, e.g. \"Events | take 10\"."),
    scope: str | None = typer.Option(None, "--scope", help="Scope (default: default)."),
    url: str | None = typer.Option(None, "--url", envvar="PSANALYTICS_URL", help="Profile Store URL (default: in-process emulator)."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="PSANALYTICS_API_KEY", help="API key (read from PSANALYTICS_API_KEY).", show_default=False),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the rows to .parquet/.csv/.ndjson instead of printing."),
    rows: int = typer.Option(20, "--rows", help="Rows to print."),
) -> None:
    """Preview a KQL query on the API's preview endpoint (checked locally first; at most
    1,000 rows, and says so when the cap cut the result)."""
    import warnings

    from psanalytics.errors import PsaError

    try:
        store = _api_store(url, api_key, False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = store.preview(query, scope=scope)
    except PsaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2 if type(exc).__name__.startswith("Kql") else 1) from None
    if output is not None:
        suffix = output.suffix.lower()
        if suffix == ".parquet":
            frame.write_parquet(output)
        elif suffix == ".csv":
            frame.select([c for c, t in frame.schema.items() if not t.is_nested()]).write_csv(output)
        else:
            frame.write_ndjson(output)
        typer.echo(f"{frame.height:,} rows -> {output}")
    else:
        import polars as pl

        with pl.Config(tbl_rows=rows, tbl_cols=-1, fmt_str_lengths=40):
            typer.echo(frame.head(rows))
    if getattr(frame, "truncated", False):
        typer.echo(f"note: the API returned its cap of {frame.height:,} rows; more rows may match", err=True)


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
