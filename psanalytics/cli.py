"""The ``psanalytics`` command: samples, info, serve, fetch, preview, sessionize, replay, demo.

Each command imports what it needs when it runs, so ``psanalytics --help`` is instant.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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
    version: bool | None = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """psanalytics command line."""


# Commands are added below, one block per room (keep each block self-contained).
# >>> commands


# --- sessions room: sessionize ----------------------------------------------------------
@app.command("sessionize")
def sessionize_cmd(
    input: list[Path] = typer.Argument(..., help="Exported events: files, folders or globs (NDJSON, JSON, CSV, Parquet, .gz)."),  # noqa: A002
    out: Path = typer.Option(..., "--out", "-o", help="Sessions table to write: .parquet or .csv."),
    timeout: str = typer.Option("30m", "--timeout", help="Inactivity that ends a session (more than this); 'profile_store_visits' = 15m."),
    max_duration: str = typer.Option("24h", "--max-duration", help="Cap on a session's length; 'none' for no cap."),
    midnight: str | None = typer.Option(None, "--split-at-midnight", help="Time zone (e.g. Europe/Stockholm): new session at local midnight."),
    campaign: bool = typer.Option(False, "--split-on-campaign", help="New session when the utm_*/gclid campaign changes."),
    identity: bool = typer.Option(False, "--split-on-identity-change", help="New session when a different User.Email appears."),
    key: list[str] = typer.Option(["DeviceId"], "--key", help="Column(s) sessions are cut by (repeat for several)."),
    events_out: Path | None = typer.Option(None, "--events-out", help="Also write the events with their session columns (.parquet or .csv)."),
    minimal: bool = typer.Option(False, "--minimal", help="Same as --columns minimal."),
    columns: str = typer.Option("all", "--columns", help="Sessions-table columns: all, minimal, or names separated by commas."),
    memory: str | None = typer.Option(None, "--memory", help="Memory budget (e.g. 4GB; default 2GB): devices are processed in hash buckets that fit it."),
    on_error: str = typer.Option("raise", "--on-error", help="'raise' or 'skip' bad input lines."),
) -> None:
    """Cut exported events into sessions and write the sessions table (bounded memory)."""
    from psanalytics.errors import PsaError
    from psanalytics.exports import read_events
    from psanalytics.sessions import sessionize

    try:
        # Files are scanned lazily (bounded memory); --on-error skip needs the eager reader.
        files = [str(p) for p in input]
        events = files if on_error == "raise" else read_events(files, on_error=on_error)  # type: ignore[arg-type]
        result = sessionize(
            events,
            timeout=timeout,
            max_duration=None if max_duration.strip().lower() in ("none", "off", "0", "") else max_duration,
            split_at_midnight=midnight,
            split_on_campaign=campaign,
            split_on_identity_change=identity,
            key=key[0] if len(key) == 1 else key,
            columns=columns if "," not in columns else [c.strip() for c in columns.split(",") if c.strip()],
            minimal=minimal,
            out=out,
            events_out=events_out,
            memory=memory,
        )
    except PsaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"{result.n_events:,} events -> {result.n_sessions:,} sessions "
        f"({result.n_devices:,} devices) -> {out}"
    )


# --- emulator room: serve -------------------------------------------------------------
@app.command("serve")
def serve_cmd(
    data: Path | None = typer.Option(
        None, "--data", help="Events to serve: an export file/folder (default: the sample data)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8077, "--port", help="Port (0 = any free port)."),
    faults: str | None = typer.Option(
        None, "--faults", help='Fault knobs, e.g. "error_rate=0.1,latency=0.01,seed=3".'
    ),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="PSANALYTICS_EMULATOR_KEY", show_default=False,
        help="API key clients must send (default: a random one, printed).",
    ),
    lenient: bool = typer.Option(False, "--lenient", help="Accept contains/startswith/endswith/in."),
    snapshot: Path | None = typer.Option(
        None, "--snapshot", help="On exit, write the events and Event API log to this Parquet folder."
    ),
    real_shaped: bool = typer.Option(
        False, "--real-shaped",
        help="Serve the events as the real service holds such data: 30% without TrackId, "
             "identical pairs, User.Info, Headers, an unknown field, e-mail campaign events.",
    ),
) -> None:
    """Run the Profile Store / Tracking / Event API emulator on a real port (Ctrl-C stops it)."""
    import time as _time

    from psanalytics.emulator import serve as _serve
    from psanalytics.errors import PsaError

    try:
        ctx = _serve(str(data) if data else None, api_key=api_key, host=host, port=port,
                     faults=faults, lenient=lenient, real_shaped=real_shaped)
        srv = ctx.__enter__()
    except (PsaError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    note = "" if host in ("127.0.0.1", "::1", "localhost") else "  (NOT loopback: reachable from the network)"
    typer.echo(f"psanalytics emulator listening on {srv.url} (bound to {host}){note}")
    typer.echo(f"events:  {len(srv.emulator.store):,}")
    typer.echo(f"api key: {srv.api_key}")
    typer.echo(f"try:     curl -H 'Authorization: epi-single {srv.api_key}' '{srv.url}/api/v2.0/TrackEvents?$top=2'")
    typer.echo("press Ctrl-C to stop")
    import signal as _signal

    def _on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # docker stop, systemd, CI: stop as on Ctrl-C

    previous = _signal.signal(_signal.SIGTERM, _on_term)
    try:
        while True:
            _time.sleep(0.5)
    except KeyboardInterrupt:
        typer.echo("stopping")
    finally:
        _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)  # a second TERM must not cut the snapshot
        try:
            if snapshot is not None:
                out = srv.emulator.snapshot(snapshot)
                typer.echo(f"snapshot written to {out}")
            ctx.__exit__(None, None, None)
        finally:
            _signal.signal(_signal.SIGTERM, previous)


# --- replay room: replay -------------------------------------------------------------
@app.command("replay")
def replay_cmd(
    input: Path = typer.Argument(..., metavar="INPUT", help="Track events: an export file (NDJSON, JSON, CSV, Parquet, .gz/.zst)."),
    to: str = typer.Option("event-api", "--to", help="event-api (POST /v1/events), tracking (TrackBulk) or odp "
                           "(Optimizely Data Platform POST /v3/events; key from PSANALYTICS_ODP_API_KEY)."),
    url: str | None = typer.Option(
        None, "--url", help="Target server. Default: an in-process emulator (nothing leaves the machine). "
        "Production Event API only when named: us, eu or its full URL."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="PSANALYTICS_API_KEY",
                                       help="Tracking API key (--to tracking)."),
    account_id: str | None = typer.Option(None, "--account-id", envvar="OPTIMIZELY_ACCOUNT_ID",
                                          help="Optimizely account id (required for the Event API)."),
    project_id: str | None = typer.Option(None, "--project-id", help="Optimizely project id."),
    speed: float | None = typer.Option(None, "--speed", help="Replay at the original timing x N."),
    rate: float | None = typer.Option(None, "--rate", help="At most N events per second."),
    max_idle: float = typer.Option(5.0, "--max-idle", help="With --speed: longest pause, in seconds."),
    dry_run: Path | None = typer.Option(None, "--dry-run", help="Write the exact bodies to FILE (JSON lines, .gz ok); send nothing."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Checkpoint file (default with --resume: INPUT.replay-checkpoint.jsonl)."),
    resume: bool = typer.Option(False, "--resume", help="Resume from the checkpoint: acknowledged batches are not sent again."),
    event_map: Path | None = typer.Option(None, "--event-map", help="JSON file: {EventType: entity_id | {entity_id, key, revenue, decision, skip}}, or {\"events\": {...}, \"unmapped\": \"skip\", \"attributes\": {...}}."),
    sessions: bool = typer.Option(False, "--sessions", help="Send the events' SessionId as session_id (one visitor object per session)."),
    visitor_id: str = typer.Option("DeviceId", "--visitor-id", help="DeviceId, user (stitched by e-mail, pseudonymous) or a column."),
    strict: bool = typer.Option(False, "--strict", help="Ask the Event API for 400s on invalid fields (X-Optimizely-Strict)."),
    truncate_ips: bool = typer.Option(False, "--truncate-ips", help="Zero the last IPv4 octet / last 80 IPv6 bits locally."),
    no_anonymize_ip: bool = typer.Option(False, "--no-anonymize-ip", help="Send anonymize_ip=false."),
    workers: int = typer.Option(4, "--workers", help="Concurrent requests."),
    max_visitors: int = typer.Option(500, "--max-visitors", help="Visitors per Event API body."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    bodies: bool = typer.Option(False, "--bodies", help="INPUT holds request bodies (a dry-run, failed or rejected file): send them again as they are."),
    profiles: bool = typer.Option(False, "--profiles", help="--to odp: also send customer profiles (User.Email/Name/Info and their devices) to /v3/profiles."),
    profiles_file: Path | None = typer.Option(None, "--profiles-file", help="--to odp: send these Profile Store profiles (store.profiles() written as .parquet, .json or .ndjson) to /v3/profiles."),
) -> None:
    """Replay track events into the Optimizely Event API or a Profile Store Tracking API.

    Exit status: 0 all sent, 1 error, 2 bad usage, 3 finished with rejected, failed or
    quarantined events (see the files named in the report).
    """
    import orjson

    from psanalytics.errors import PsaError

    api_key, extra = _replay_usage(to, url, api_key, profiles=profiles, profiles_file=profiles_file,
                                   dry_run=dry_run, speed=speed, rate=rate)
    if resume and checkpoint is None:
        checkpoint = input.with_name(input.name + ".replay-checkpoint.jsonl")
    try:
        from psanalytics.exports import read_events
        from psanalytics.replay import replay

        if bodies:
            from psanalytics.replay import resend

            report = resend(input, url, to=to, api_key=api_key, strict=strict, checkpoint=checkpoint,
                            resume=resume, workers=workers, rate=rate, progress=progress)
            typer.echo(orjson.dumps(report.to_dict(), default=str, option=orjson.OPT_INDENT_2
                                    | orjson.OPT_NON_STR_KEYS).decode() if as_json else str(report))
            raise typer.Exit(0 if report.ok else 3)
        emap = _read_json_file(event_map) if event_map is not None else None
        if to == "odp":
            extra["mapping"], emap = emap, None
        events = read_events(input)
        report = replay(
            events, url, to=to, api_key=api_key, account_id=account_id, project_id=project_id,
            speed=speed, rate=rate, max_idle=max_idle, dry_run=dry_run, checkpoint=checkpoint,
            resume=resume, event_map=emap, sessions="SessionId" if sessions else None,
            visitor_id=visitor_id, strict=strict, truncate_ips=truncate_ips,
            anonymize_ip=not no_anonymize_ip, workers=workers, max_visitors=max_visitors,
            progress=progress, **extra,
        )
    except (PsaError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    _print_replay_report(report, odp=to == "odp", as_json=as_json)
    if not report.ok:
        raise typer.Exit(3)


def _replay_usage(to: str, url: str | None, api_key: str | None, *, profiles: bool,
                  profiles_file: Path | None, dry_run: Path | None, speed: float | None,
                  rate: float | None) -> tuple[str | None, dict]:
    """Check ``replay``'s option combinations (exit 2 with the reason); return the API key
    to use and the keywords only ``--to odp`` takes."""
    if to not in ("event-api", "tracking", "odp"):
        typer.echo(f"error: --to must be event-api, tracking or odp, not {to!r}", err=True)
        raise typer.Exit(2)
    if (profiles or profiles_file is not None) and to != "odp":
        typer.echo("error: --profiles and --profiles-file go with --to odp", err=True)
        raise typer.Exit(2)
    if profiles and profiles_file is not None:
        typer.echo("error: give --profiles (customers from the events) or --profiles-file, not both", err=True)
        raise typer.Exit(2)
    extra: dict = {}
    if to == "odp":
        import os

        # the ODP key comes from its own variable (never from the Profile Store's)
        api_key = os.environ.get("PSANALYTICS_ODP_API_KEY") or None
        if url is not None and not api_key and dry_run is None:
            typer.echo("error: --to odp needs the ODP API key in PSANALYTICS_ODP_API_KEY", err=True)
            raise typer.Exit(2)
        extra["profiles"] = profiles_file if profiles_file is not None else profiles
    if speed is not None and rate is not None:
        typer.echo("error: give --speed or --rate, not both", err=True)
        raise typer.Exit(2)
    return api_key, extra


def _print_replay_report(report: Any, *, odp: bool, as_json: bool) -> None:
    """The report (and ODP's reconcile table), as text or JSON."""
    import orjson

    table = report.reconcile() if odp else None
    if as_json:
        d = report.to_dict()
        if table is not None:
            d["reconcile"] = table.with_columns(table["day"].cast(str)).to_dicts()
        typer.echo(orjson.dumps(d, default=str,
                                option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())
    else:
        typer.echo(str(report))
        if table is not None:
            from psanalytics.replay.reconcile import summary

            typer.echo(summary(table))


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
    campaigns: int = typer.Option(
        0, "--campaigns", help="Add this many e-mail mailings (sends, opens, clicks; other events unchanged)."
    ),
    real_shaped: bool = typer.Option(
        False, "--real-shaped",
        help="As the real service holds such data: 30% without TrackId, identical pairs, "
             "User.Info, Headers, an unknown field, three mailings (unless --campaigns).",
    ),
    format: str | None = typer.Option(
        None, "--format", help="ndjson, json, pages, csv or parquet (default: from the name)."
    ),
) -> None:
    """Write generated sample events to PATH (defaults reproduce data/samples/ exactly)."""
    from psanalytics import exports, samples
    from psanalytics._time import from_ns, parse_instant
    from psanalytics.errors import PsaError, TimeError

    try:
        t0 = from_ns(parse_instant(start)) if start else None
    except TimeError:
        typer.echo(f"error: --start {start!r} is not an ISO 8601 time", err=True)
        raise typer.Exit(2) from None
    try:
        frame = samples.generate(
            events, n_devices=devices, days=days, start=t0, seed=seed, burst=burst,
            campaigns=0 if real_shaped else campaigns,
        )
        if real_shaped:
            frame = samples.real_shaped(frame, seed=seed, campaigns=campaigns or 3)
        out = exports.write_events(frame, path, format=format)
    except PsaError as exc:
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
    except PsaError as exc:
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


def _read_json_file(path: Path) -> object:
    """A JSON file's value; bad JSON is an InputError naming the file and line."""
    import orjson

    from psanalytics.errors import InputError

    text = path.read_bytes()
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg} (column {exc.colno})", path=str(path),
                         line=exc.lineno) from None


# --- api room: fetch, preview -------------------------------------------------------
def _check_output_file(output: Path) -> None:
    """Fail before any request when ``output`` cannot be written as a file: it is a
    folder, or its folder cannot be created or written to."""
    from psanalytics.errors import ArgumentError

    if output.is_dir():
        raise ArgumentError(f"{output} is a folder; give a file name to write one file "
                            "(or a name without a file suffix for a folder export)")
    parent = output.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArgumentError(f"cannot create the folder {parent} for {output.name}: "
                            f"{exc.strerror or exc}") from None
    if not os.access(parent, os.W_OK):
        raise ArgumentError(f"cannot write into {parent} (permission denied)")


def _api_store(url: str | None, api_key: str | None, progress: bool, concurrency: int = 4):
    from psanalytics._connect import connect

    return connect(url, api_key, progress=progress, concurrency=concurrency)


@app.command()
def fetch(
    output: Path = typer.Argument(..., help="A .parquet/.ndjson/.json/.csv file (optionally + .gz/.zst), or a folder for a resumable export."),
    filter: str | None = typer.Option(None, "--filter", "-f", help="$filter, e.g. \"EventType eq order\"."),
    start: str | None = typer.Option(None, "--start", help="First EventTime (ISO 8601, inclusive)."),
    end: str | None = typer.Option(None, "--end", help="Last EventTime (ISO 8601, exclusive)."),
    settle: str | None = typer.Option(None, "--settle", help="Read only events at least this old, e.g. 5m (end moves back to now - 5m)."),
    url: str | None = typer.Option(None, "--url", envvar="PSANALYTICS_URL", help="Profile Store URL (default: in-process emulator)."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="PSANALYTICS_API_KEY", help="API key (read from PSANALYTICS_API_KEY).", show_default=False),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Folder export: keep finished windows of an interrupted run."),
    top_up: bool = typer.Option(False, "--top-up", help="Folder export: extend a finished export to a later --end, fetching only what it lacks (and the last --look-back again)."),
    look_back: str = typer.Option("1h", "--look-back", help="With --top-up: how much of the old end to read again for late events."),
    concurrency: int = typer.Option(4, "--concurrency", help="Windows fetched at once."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the planned windows and requests, fetch nothing."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Fetch every matching track event exactly once (past the 10,000-row window) into a file
    or a partitioned Parquet folder (resumable)."""
    from psanalytics import exports
    from psanalytics.errors import PsaError

    try:
        store = _api_store(url, api_key, progress, concurrency)
        if dry_run:
            from psanalytics.api.windows import page_requests

            plan = store.plan(filter, start=start, end=end, settle=settle)
            for w in plan:
                typer.echo(f"{w!r}")
            # each window is paged as page_requests() lays out (one request when empty)
            pages = sum(max(1, len(list(page_requests(w.count or 0, store.page_size))))
                        for w in plan)
            typer.echo(f"{len(plan)} windows, {sum(w.count or 0 for w in plan):,} events, "
                       f"about {pages} page requests")
            return
        if exports.detect_format(output) is not None:  # a file: written as exports writes
            _check_output_file(output)
            frame = store.events(filter, start=start, end=end, settle=settle)
            exports.write_events(frame, output)
            typer.echo(f"{frame.height:,} events -> {output}")
        else:
            rep = store.export(output, filter, start=start, end=end, resume=resume, settle=settle,
                               top_up=top_up, look_back=look_back)
            typer.echo(
                f"{rep.rows:,} events in {len(rep.windows)} windows -> {output} "
                f"({rep.resumed_windows} resumed, {rep.requests} requests, {rep.retries} retries, "
                f"{rep.duration_s:.1f} s)"
            )
    except (PsaError, OSError) as exc:
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
        if output is not None:
            _check_output_file(output)
        store = _api_store(url, api_key, False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = store.preview(query, scope=scope)
    except PsaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2 if type(exc).__name__.startswith("Kql") else 1) from None
    if output is not None:
        suffix = output.suffix.lower()
        try:
            if suffix == ".parquet":
                frame.write_parquet(output)
            elif suffix == ".csv":
                frame.select([c for c, t in frame.schema.items() if not t.is_nested()]).write_csv(output)
            else:
                frame.write_ndjson(output)
        except OSError as exc:
            typer.echo(f"error: cannot write {output}: {exc.strerror or exc}", err=True)
            raise typer.Exit(1) from None
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
