"""The ``%kql`` / ``%%kql`` magic (``%load_ext psanalytics``).

JupySQL-style, one ``line_cell_magic``::

    %kql Events | where EventType == "order" | take 5
    %%kql top <<  --local events --limit 100
    Events
    | summarize n = count() by EventType
    | render barchart

Options (``%kql?`` shows them):

``--local [FRAME]``    run with the local engine on a frame of the notebook (default: the
                       variable named by ``KqlMagic.local_frame``, ``events``)
``--remote``           run on the connected Profile Store's preview endpoint (the default)
``--client VAR``       use the ``ProfileStore`` held in ``VAR`` (default: the only one in the
                       namespace, else ``psanalytics.connect()``, the embedded emulator when no
                       credentials are set)
``--limit N``          at most N rows (the 1,000-row preview cap always applies)
``--compare``          run locally and remotely and show the difference
``--explain``          show the plan instead of running
``--param k=v``        a typed ``let`` (repeatable): ints, floats, true/false, ISO datetimes,
                       timespans like ``1h``/``30m``/``7d``, JSON lists, else a string;
                       ``--param k`` takes the notebook variable ``k``. Never text templating.
                       A name the query uses that is neither a column nor a ``let`` but a
                       scalar variable of the notebook becomes such a ``let`` on its own.
``--out polars|pandas`` result type (default ``KqlMagic.out``)
``--scope S``          Profile Store scope for the remote engine

The result is a real ``polars.DataFrame`` (or pandas), displayed with a one-line footer:
engine, rows, elapsed, and whether the 1,000-row cap truncated it. A trailing ``;`` on the
query suppresses the display (the result is still bound by ``name <<`` and kept in
``_kql``). ``| render timechart|barchart|columnchart|piechart`` also draws an Altair chart.
Errors show the query line with a caret and a suggestion, not a traceback. Tab completes
options, tables, operators, functions, columns and ``Payload.`` keys (:mod:`.completion`).

Configuration: ``%config KqlMagic.<option> = value`` (see :class:`KqlMagic`), with defaults
read from ``[tool.psanalytics.magic]`` in the nearest ``pyproject.toml``.
"""

from __future__ import annotations

import ast
import html
import re
import shlex
import time
import tomllib
import warnings
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display
from traitlets import Bool, Enum, Int, Unicode

from psanalytics.errors import PsaError
from psanalytics.jupyter.magic_args import (
    BIND,
    IDENT,
    KqlMagicError,
    _split_options,
    parse_param,
)
from psanalytics.jupyter.results import (
    KqlComparison,
    KqlRun,
    _scoped,
    compare_frames,
    query_schema,
    typed_remote,
)
from psanalytics.wire.limits import PREVIEW_CAP  # the preview API's row cap (one home)

__all__ = [
    "KqlComparison",
    "KqlMagic",
    "KqlMagicError",
    "KqlRun",
    "compare_frames",
    "load_ipython_extension",
    "parse_param",
    "query_schema",
    "typed_remote",
]

_UNKNOWN_NAME = re.compile(r"unknown column or name '([A-Za-z_][A-Za-z0-9_]*)'")
_PARAM_TYPES = (str, int, float, bool, datetime, timedelta, list, tuple)


# --------------------------------------------------------------------------- results


# --------------------------------------------------------------------------- the magic


def _find_pyproject(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


@magics_class
class KqlMagic(Magics):
    """The ``%kql`` magic and its settings (``%config KqlMagic.<option> = value``)."""

    engine = Enum(
        ["remote", "local"],
        default_value="remote",
        help="Engine when neither --local nor --remote is given.",
    ).tag(config=True)
    local_frame = Unicode(
        "events", help="Notebook variable that --local (and --compare) use when no FRAME is named."
    ).tag(config=True)
    client = Unicode(
        "",
        help="Notebook variable holding the ProfileStore for remote queries ('' = find or connect()).",
    ).tag(config=True)
    row_cap = Int(PREVIEW_CAP, help="Row cap of a local run (the preview API's cap is 1,000).").tag(
        config=True
    )
    display_limit = Int(10, help="Rows shown when a result is displayed.").tag(config=True)
    out = Enum(["polars", "pandas"], default_value="polars", help="Result type.").tag(config=True)
    footer = Bool(True, help="Show the one-line footer under a displayed result.").tag(config=True)
    charts = Bool(True, help="Draw '| render' charts.").tag(config=True)
    raise_errors = Bool(
        True,
        help="Raise on a failed query (compact message, no traceback); False only displays it.",
    ).tag(config=True)
    scope = Unicode("", help="Profile Store scope for remote queries ('' = the client's).").tag(
        config=True
    )

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.last: KqlRun | KqlComparison | None = None
        self._client: Any = None
        self._shown: dict[int, tuple[Any, KqlRun]] = {}
        self._cell = ""  # raw text of the running cell (from the pre_run_cell event)

    # -- helpers --------------------------------------------------------------------
    @property
    def ns(self) -> dict[str, Any]:
        return self.shell.user_ns if self.shell is not None else {}

    def _local_tables(self, frame_name: str | None, query: str) -> tuple[dict[str, Any], str]:
        name = frame_name or self.local_frame
        if name not in self.ns:
            raise KqlMagicError(
                f"--local: no frame named {name!r} in the notebook; load one (e.g. "
                f"{name} = psanalytics.connect().events(...)) or pass --local FRAME"
            )
        frame = self._as_polars(self.ns[name], name)
        tables: dict[str, Any] = {"Events": frame}
        # other frames of the notebook named in the query are tables too
        for ident in set(IDENT.findall(query)):
            if ident in tables or ident.startswith("_") or ident not in self.ns:
                continue
            value = self.ns[ident]
            if isinstance(value, pl.DataFrame | pl.LazyFrame):
                tables[ident] = value
        return tables, name

    @staticmethod
    def _as_polars(value: Any, name: str) -> pl.DataFrame | pl.LazyFrame:
        if isinstance(value, pl.DataFrame | pl.LazyFrame):
            return value
        try:
            import pandas as pd

            if isinstance(value, pd.DataFrame):
                from psanalytics.schema import normalize

                return normalize(value)
        except ImportError:  # pragma: no cover
            pass
        raise KqlMagicError(
            f"--local {name}: {name!r} is a {type(value).__name__}, not a Polars or pandas frame"
        )

    def _get_client(self, var: str | None) -> Any:
        from psanalytics.api.profile_store import ProfileStore

        name = var or self.client
        if name:
            if name not in self.ns:
                raise KqlMagicError(f"--client {name}: no variable {name!r} in the notebook")
            value = self.ns[name]
            if not isinstance(value, ProfileStore):
                raise KqlMagicError(
                    f"--client {name}: {name!r} is a {type(value).__name__}, not a ProfileStore"
                )
            return value
        found = [
            v for k, v in self.ns.items() if not k.startswith("_") and isinstance(v, ProfileStore)
        ]
        unique = list({id(v): v for v in found}.values())
        if len(unique) == 1:
            return unique[0]
        if len(unique) > 1:
            raise KqlMagicError(
                "several ProfileStore clients in the notebook; pick one with --client VAR "
                "or %config KqlMagic.client = 'VAR'"
            )
        if self._client is None:
            import psanalytics

            self._client = psanalytics.connect()
        return self._client

    # -- running --------------------------------------------------------------------
    def _resolving(self, run: Any, params: dict[str, Any]) -> Any:
        """Call ``run(params)``; a name the engine does not know that is a scalar variable of
        the notebook (str, int, float, bool, datetime, timedelta, list) is added to
        ``params`` as a typed ``let`` and the query retried (Kqlmagic-style parameters)."""
        from psanalytics.query.kql import KqlError

        params = dict(params)
        for _ in range(20):
            try:
                return run(params)
            except KqlError as exc:
                m = _UNKNOWN_NAME.match(getattr(exc, "message", "") or str(exc))
                name = m.group(1) if m else None
                if name is None or name in params or name not in self.ns:
                    raise
                value = self.ns[name]
                if not isinstance(value, _PARAM_TYPES) or isinstance(
                    value, pl.DataFrame | pl.LazyFrame
                ):
                    raise
                params[name] = value
        raise KqlMagicError("too many notebook variables to resolve")  # pragma: no cover

    def _run_local(
        self,
        query: str,
        frame_name: str | None,
        limit: int | None,
        params: dict[str, Any],
        scope: str | None = None,
    ) -> KqlRun:
        from psanalytics.query.kql import execute

        tables, name = self._local_tables(frame_name, query)
        source = name
        if scope is not None:
            tables["Events"], source = _scoped(tables["Events"], name, scope)
        cap = min(limit, self.row_cap) if limit is not None else self.row_cap
        started = time.perf_counter()
        result = self._resolving(
            lambda p: execute(query, tables, limit=cap, params=p or None), params
        )
        elapsed = time.perf_counter() - started
        note = ""
        if limit is not None and limit > self.row_cap:
            note = (
                f"--limit {limit:,} is above the {self.row_cap:,}-row cap of a %kql run "
                f"(raise it with %config KqlMagic.row_cap = {limit})"
            )
        return KqlRun(
            query,
            "local",
            result.frame.height,
            elapsed,
            bool(result.truncated),
            cap,
            result.frame,
            result.render,
            source,
            note,
        )

    def _run_remote(
        self,
        query: str,
        client_var: str | None,
        limit: int | None,
        params: dict[str, Any],
        scope: str | None,
    ) -> KqlRun:
        client = self._get_client(client_var)
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the footer says when the cap truncated
            frame, params = self._resolving(
                lambda p: (
                    self._preview(client, query, p, scope),
                    p,
                ),
                params,
            )
        elapsed = time.perf_counter() - started
        truncated = bool(getattr(frame, "truncated", frame.height >= PREVIEW_CAP))
        schema, render = query_schema(query, params)
        frame = typed_remote(frame, schema)
        cap = PREVIEW_CAP
        note = ""
        if limit is not None and limit > PREVIEW_CAP:
            note = (
                f"--limit {limit:,} is above the preview API's {PREVIEW_CAP:,}-row cap "
                "(for every row use store.events(...) and --local)"
            )
        if limit is not None and frame.height > limit:
            frame, truncated, cap = frame.head(limit), True, limit
        where = "emulator" if getattr(client, "emulator", None) is not None else "Profile Store"
        used = scope or self.scope or getattr(client, "scope", None)
        source = f"{where}, scope {used!r}" if used else where
        return KqlRun(
            query, "remote", frame.height, elapsed, truncated, cap, frame, render, source, note
        )

    def _remote_scope(self, client_var: str | None, scope: str | None) -> str:
        if scope or self.scope:
            return scope or self.scope
        return getattr(self._get_client(client_var), "scope", None) or "default"

    def _preview(
        self, client: Any, query: str, params: dict[str, Any], scope: str | None
    ) -> pl.DataFrame:
        # The API validates the text as written (errors point at the user's line:column)
        # and sends the params as typed leading lets (ProfileStore.preview(params=...)).
        return client.preview(query, scope=scope or self.scope or None, params=params or None)

    def _explain(
        self, query: str, frame_name: str | None, params: dict[str, Any], local: bool
    ) -> str:
        from psanalytics.query import kql

        tables = None
        if local and (frame_name or self.local_frame) in self.ns:
            tables, _ = self._local_tables(frame_name, query)
        return kql.explain(query, tables=tables, params=params or None)

    # -- display --------------------------------------------------------------------
    def _show(self, value: Any, run: KqlRun) -> None:
        self._shown = {id(value): (value, run)}

    def _shown_run(self, obj: Any) -> KqlRun | None:
        hit = self._shown.get(id(obj))
        return hit[1] if hit is not None and hit[0] is obj else None

    def html_for(self, frame: Any) -> str | None:
        run = self._shown_run(frame)
        if run is None:
            return None
        from psanalytics.jupyter.tables import frame_html

        return frame_html(
            run.frame, self.display_limit, footer=run.footer() if self.footer else None
        )

    def text_for(self, frame: Any) -> str | None:
        run = self._shown_run(frame)
        if run is None:
            return None
        with pl.Config(tbl_rows=self.display_limit):
            body = repr(run.frame)
        return body + ("\n" + run.footer() if self.footer else "")

    @magic_arguments()
    @argument(
        "--local",
        nargs="?",
        const="",
        default=None,
        metavar="FRAME",
        help="Run with the local engine on FRAME (default: KqlMagic.local_frame).",
    )
    @argument(
        "--remote",
        action="store_true",
        help="Run on the connected Profile Store (preview endpoint).",
    )
    @argument(
        "--client", default=None, metavar="VAR", help="Notebook variable holding the ProfileStore."
    )
    @argument("--limit", type=int, default=None, metavar="N", help="At most N rows.")
    @argument(
        "--compare", action="store_true", help="Run locally and remotely and show the difference."
    )
    @argument("--explain", action="store_true", help="Show the plan instead of running.")
    @argument(
        "--param",
        action="append",
        default=[],
        metavar="K=V",
        help="Typed let binding (repeatable).",
    )
    @argument("--out", choices=["polars", "pandas"], default=None, help="Result type.")
    @argument("--scope", default=None, help="Profile Store scope (remote).")
    @argument("query", nargs="*", help="The query (line form).")
    @line_cell_magic
    def kql(self, line: str, cell: str | None = None) -> Any:
        """Run a KQL query on a local frame or on Profile Store's preview endpoint.

        ``%kql [name <<] [options] QUERY`` or ``%%kql [name <<] [options]`` + the query.
        """
        try:
            return self._kql(line, cell)
        except KqlMagicError as exc:
            return self._fail(exc)
        except PsaError as exc:
            return self._fail(KqlMagicError(_describe(exc), exc))

    def _fail(self, exc: KqlMagicError) -> None:
        if self.raise_errors:
            raise exc from None
        text = f"{type(exc.error).__name__ if exc.error else 'KqlMagicError'}: {exc}"
        display(
            {
                "text/plain": text,
                "text/html": f"<pre style='color:#cf222e'>{html.escape(text)}</pre>",
            },
            raw=True,
        )
        return None

    def _kql(self, line: str, cell: str | None) -> Any:
        bind = None
        if m := BIND.match(line):
            bind, line = m.group(1), line[m.end() :]
        opts_text, inline_query = _split_options(line)
        try:
            args = self.kql.parser.parse_args(shlex.split(opts_text))
        except Exception as exc:  # UsageError from argparse
            raise KqlMagicError(f"bad options {opts_text!r}: {exc}") from None
        if args.query:  # only possible when options text holds extra words
            inline_query = " ".join(args.query) + (" " + inline_query if inline_query else "")
        query = (cell if cell is not None else inline_query).strip()
        if cell is not None and inline_query.strip():
            raise KqlMagicError(
                f"%%kql: unexpected text after the options on the first line: {inline_query.strip()!r} "
                "(put the query in the cell body)"
            )
        if not query:
            raise KqlMagicError(
                "no query: write %kql Events | take 5, or put the query under %%kql"
            )
        quiet = query.endswith(";")
        params = dict(parse_param(p, self.ns) for p in args.param)
        out = args.out or self.out
        local = args.local is not None or (self.engine == "local" and not args.remote)

        if args.explain:
            text = self._explain(query, args.local or None, params, local)
            if not quiet:
                print(text)
            return None

        if args.compare:
            # like with like: the preview reads one scope, so the local side reads the same
            scope = self._remote_scope(args.client, args.scope)
            lrun = self._run_local(query, args.local or None, args.limit, params, scope)
            rrun = self._run_remote(query, args.client, args.limit, params, scope)
            result: Any = compare_frames(
                lrun.frame,
                rrun.frame,
                query=query,
                local_elapsed_s=lrun.elapsed_s,
                remote_elapsed_s=rrun.elapsed_s,
                local_truncated=lrun.truncated,
                remote_truncated=rrun.truncated,
                local_source=lrun.source,
                remote_source=rrun.source,
            )
            self.last = result
            self.ns["_kql"] = result
            if bind:
                self.ns[bind] = result
            return None if quiet else result

        if local:
            run = self._run_local(query, args.local or None, args.limit, params)
        else:
            run = self._run_remote(query, args.client, args.limit, params, args.scope)
        self.last = run
        value: Any = run.frame if out == "polars" else run.frame.to_pandas()
        self.ns["_kql"] = value
        self.ns["_kql_last"] = run
        if bind:
            self.ns[bind] = value
        if quiet and not self._assigned():
            return None
        if run.render is not None and self.charts and not quiet:
            chart = self._chart(run)
            if chart is not None:
                display(chart)
        self._show(value, run)
        return value

    def _chart(self, run: KqlRun) -> Any:
        from psanalytics.jupyter import charts

        if run.frame.height == 0:
            return None
        try:
            partial = f"{run.cap:,}-row cap" if run.truncated and run.cap else None
            return charts.render(run.frame, run.render, partial=partial)
        except charts.ChartDataError as exc:
            print(f"render: {exc}")
            return None

    def _assigned(self) -> bool:
        """Is the running ``%kql`` line the value of an assignment (``df = %kql ...``)?"""
        try:
            tree = ast.parse(self.shell.transform_cell(self._cell))
        except Exception:  # noqa: BLE001
            return False
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign) and isinstance(
                node.value, ast.Call
            ):
                func = node.value.func
                if isinstance(func, ast.Attribute) and func.attr == "run_line_magic":
                    args = node.value.args
                    if args and isinstance(args[0], ast.Constant) and args[0].value == "kql":
                        return True
        return False


def _describe(exc: BaseException) -> str:
    """A compact message: KQL errors already carry the position, caret line and suggestion."""
    text = str(exc)
    suggestion = getattr(exc, "suggestion", None)
    if suggestion and suggestion not in text:
        text += f"\nsuggestion: {suggestion}"
    return text


# --------------------------------------------------------------------------- loading


def _apply_pyproject(magic: KqlMagic) -> None:
    path = _find_pyproject(Path.cwd())
    if path is None:
        return
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return
    table = data.get("tool", {}).get("psanalytics", {}).get("magic", {})
    traits = magic.class_traits(config=True)
    for key, value in table.items():
        if key in traits:
            setattr(magic, key, value)


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%kql``/``%%kql`` and ``%config KqlMagic``; prints nothing."""
    for existing in getattr(ipython, "configurables", []):
        if isinstance(existing, KqlMagic):
            return  # already loaded
    from psanalytics.jupyter import completion, tracebacks

    tracebacks.install(ipython)
    magic = KqlMagic(shell=ipython, parent=ipython)
    _apply_pyproject(magic)
    ipython.register_magics(magic)
    ipython.configurables.append(magic)
    completion.install(ipython, magic)  # Tab in %kql: operators, functions, columns, Payload keys
    ipython.events.register(
        "pre_run_cell", lambda info: setattr(magic, "_cell", info.raw_cell or "")
    )

    formatter = ipython.display_formatter.formatters

    def as_html(obj: Any) -> str | None:
        return magic.html_for(obj) or obj._repr_html_()

    def as_text(obj: Any, p: Any, cycle: bool) -> None:
        text = magic.text_for(obj)
        p.text(text if text is not None else repr(obj))

    formatter["text/html"].for_type(pl.DataFrame, as_html)
    formatter["text/plain"].for_type(pl.DataFrame, as_text)

    def pandas_html(obj: Any) -> str | None:
        extra = magic._shown_run(obj)
        body = obj._repr_html_()
        if extra is None or not magic.footer:
            return body
        return (
            body or ""
        ) + f"<div style='font-size:85%;color:#57606a'>{html.escape(extra.footer())}</div>"

    # by name: loading the extension does not import pandas
    for module in ("pandas", "pandas.core.frame"):  # pandas >= 3 reports "pandas"
        formatter["text/html"].for_type_by_name(module, "DataFrame", pandas_html)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext psanalytics``: forget the configurable (the magic stays registered)."""
    ipython.configurables[:] = [c for c in ipython.configurables if not isinstance(c, KqlMagic)]
