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
Errors show the query line with a caret and a suggestion, not a traceback.

Configuration: ``%config KqlMagic.<option> = value`` (see :class:`KqlMagic`), with defaults
read from ``[tool.psanalytics.magic]`` in the nearest ``pyproject.toml``.
"""

from __future__ import annotations

import ast
import html
import json
import re
import shlex
import time
import tomllib
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display
from traitlets import Bool, Enum, Int, Unicode

from psanalytics import _time
from psanalytics.errors import PsaError
from psanalytics.wire.limits import PREVIEW_CAP  # the preview API's row cap (one home)

__all__ = [
    "KqlComparison",
    "KqlMagic",
    "KqlMagicError",
    "KqlRun",
    "compare_frames",
    "load_ipython_extension",
    "parse_param",
    "typed_remote",
]

_BIND = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*<<\s*")
#: A duration such as ``30m``, ``1h30m``, ``500ms`` (units: ``_time.DURATION_UNITS``).
_TIMESPAN = re.compile(r"^(\d+(?:\.\d+)?[a-zµ]+)+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ][0-9:.]+)?(Z|[+-]\d{2}:?\d{2})?$")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNKNOWN_NAME = re.compile(r"unknown column or name '([A-Za-z_][A-Za-z0-9_]*)'")
_PARAM_TYPES = (str, int, float, bool, datetime, timedelta, list, tuple)


class KqlMagicError(PsaError):
    """A ``%kql`` cell failed: shown as the message (with the query line and a caret for KQL
    errors) instead of a traceback. ``.error`` is the underlying exception."""

    def __init__(self, message: str, error: BaseException | None = None):
        super().__init__(message)
        self.error = error

    def _render_traceback_(self) -> list[str]:  # IPython shows these lines instead of a traceback
        name = type(self.error).__name__ if self.error is not None else "KqlMagicError"
        return [f"\x1b[0;31m{name}\x1b[0m: {self}"]


# --------------------------------------------------------------------------- results


@dataclass
class KqlRun:
    """What one ``%kql`` run did (kept as ``_kql_last`` / :attr:`KqlMagic.last`)."""

    query: str
    engine: str  # "local" | "remote"
    rows: int
    elapsed_s: float
    truncated: bool
    cap: int | None
    frame: pl.DataFrame
    render: Any = None
    source: str = ""  # frame name or client description
    note: str = ""  # e.g. a --limit above the cap

    def footer(self) -> str:
        trunc = (
            f"truncated at the {self.cap:,}-row cap"
            if self.truncated and self.cap
            else ("truncated" if self.truncated else "complete")
        )
        where = f" on {self.source}" if self.source else ""
        return (
            f"kql {self.engine}{where} · {self.rows:,} row{'s' if self.rows != 1 else ''} · "
            f"{_fmt_elapsed(self.elapsed_s)} · {trunc}" + (f" · {self.note}" if self.note else "")
        )


def _fmt_elapsed(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


@dataclass
class KqlComparison:
    """``%kql --compare``: the same query on the local and the remote engine.

    ``same`` is True when both returned the same rows (as a multiset, after aligning column
    types); ``only_local`` / ``only_remote`` hold the rows found on one side only.
    """

    query: str
    local: pl.DataFrame
    remote: pl.DataFrame
    local_elapsed_s: float
    remote_elapsed_s: float
    local_truncated: bool
    remote_truncated: bool
    columns_only_local: list[str] = field(default_factory=list)
    columns_only_remote: list[str] = field(default_factory=list)
    dtype_differences: dict[str, tuple[str, str]] = field(default_factory=dict)
    only_local: pl.DataFrame = field(default_factory=pl.DataFrame)
    only_remote: pl.DataFrame = field(default_factory=pl.DataFrame)
    same_order: bool = True
    local_source: str = ""  # what the local side read, e.g. "events, Scope == 'default' ..."
    remote_source: str = ""  # e.g. "emulator, scope 'default'"

    @property
    def same(self) -> bool:
        return (
            not self.columns_only_local
            and not self.columns_only_remote
            and self.local.height == self.remote.height
            and self.only_local.height == 0
            and self.only_remote.height == 0
        )

    def summary(self) -> list[str]:
        lines = [
            f"local: {self.local.height:,} rows in {_fmt_elapsed(self.local_elapsed_s)}"
            + (" (truncated)" if self.local_truncated else "")
            + f" · remote: {self.remote.height:,} rows in {_fmt_elapsed(self.remote_elapsed_s)}"
            + (" (truncated)" if self.remote_truncated else "")
        ]
        if self.local_source or self.remote_source:
            lines.append(
                f"local read {self.local_source or '?'} · remote read {self.remote_source or '?'}"
            )
        if self.same:
            lines.append(
                "same rows and columns" + ("" if self.same_order else " (in a different order)")
            )
            return lines
        if self.columns_only_local or self.columns_only_remote:
            lines.append(
                f"columns only local: {self.columns_only_local or '-'}; "
                f"only remote: {self.columns_only_remote or '-'}"
            )
        for col, (a, b) in self.dtype_differences.items():
            lines.append(f"column {col}: local {a}, remote {b}")
        if self.local.height != self.remote.height:
            lines.append(
                f"row counts differ: local {self.local.height:,}, remote {self.remote.height:,}"
            )
        lines.append(
            f"{self.only_local.height:,} rows only local, {self.only_remote.height:,} rows only remote"
        )
        return lines

    def __repr__(self) -> str:
        out = ["KqlComparison: " + ("SAME" if self.same else "DIFFERENT"), *self.summary()]
        if self.only_local.height:
            out += ["first rows only local:", str(self.only_local.head(5))]
        if self.only_remote.height:
            out += ["first rows only remote:", str(self.only_remote.head(5))]
        return "\n".join(out)

    def _repr_html_(self) -> str:
        color = "#1a7f37" if self.same else "#cf222e"
        parts = [
            f"<div><b style='color:{color}'>{'same' if self.same else 'different'}</b>: "
            + html.escape(self.summary()[0])
            + "</div>"
        ]
        parts += [f"<div>{html.escape(line)}</div>" for line in self.summary()[1:]]
        for label, frame in (("only local", self.only_local), ("only remote", self.only_remote)):
            if frame.height:
                parts.append(f"<div>first rows {label}:</div>{frame.head(5)._repr_html_()}")
        return "\n".join(parts)


def _comparable(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """Columns as text, so frames from two engines compare by value (1 == 1.0, same instant)."""
    exprs = []
    for c in columns:
        dtype = frame.schema[c]
        col = pl.col(c)
        if dtype.is_numeric():
            col = col.cast(pl.Float64).cast(pl.String)
        elif isinstance(dtype, pl.Datetime):
            col = (
                col.dt.convert_time_zone("UTC")
                if dtype.time_zone
                else col.dt.replace_time_zone("UTC")
            )
            col = col.dt.cast_time_unit("ns").dt.strftime("%Y-%m-%dT%H:%M:%S%.9f")
        elif isinstance(dtype, pl.Duration):
            col = col.dt.cast_time_unit("ns").cast(pl.Int64).cast(pl.String)
        elif isinstance(dtype, pl.Struct | pl.List | pl.Array):
            col = pl.col(c).map_elements(
                lambda v: json.dumps(_plain(v), sort_keys=True, default=str),
                return_dtype=pl.String,
                skip_nulls=True,
            )
        elif dtype != pl.String:
            col = col.cast(pl.String)
        exprs.append(col.fill_null("\x00null").alias(c))
    return frame.select(exprs) if exprs else frame.select()


def _scoped(frame: Any, name: str, scope: str) -> tuple[Any, str]:
    """``frame`` restricted to one Profile Store scope (as the preview API reads it), and a
    description of what was read."""
    schema = frame.collect_schema() if isinstance(frame, pl.LazyFrame) else frame.schema
    if "Scope" not in schema:
        return frame, f"{name} (no Scope column: all its rows)"
    eager = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    # an event without a scope is in 'default' (as the service and the emulator read it)
    mine = [scope, ""] if scope == "default" else [scope]
    kept = eager.filter(pl.col("Scope").is_in(mine))
    others = sorted({s for s in eager.get_column("Scope").unique().to_list() if s not in mine})
    text = f"{name} where Scope == {scope!r} ({kept.height:,} of {eager.height:,} rows"
    text += f"; left out: {', '.join(map(repr, others))})" if others else ")"
    return kept, text


def _plain(value: Any) -> Any:
    """A list/struct value with numbers by value (1 == 1.0), for comparing engines."""
    if isinstance(value, pl.Series):
        value = value.to_list()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(value)
    return value


_ISO_UTC = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$"


_KUSTO_TIMESPAN = re.compile(r"^(-)?(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?$")


def _timespan_ns(value: Any) -> int | None:
    """A remote timespan as nanoseconds: seconds (a number, as the emulator sends it) or
    Kusto's text form ``[-][d.]hh:mm:ss[.fffffff]``."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return round(value * 1_000_000_000)
    m = _KUSTO_TIMESPAN.match(str(value).strip())
    if m is None:
        try:
            return round(float(value) * 1_000_000_000)
        except ValueError:
            return None
    sign, days, hh, mm, ss, frac = m.groups()
    ns = ((int(days or 0) * 24 + int(hh)) * 60 + int(mm)) * 60 + int(ss)
    ns = ns * 1_000_000_000 + int((frac or "").ljust(9, "0")[:9] or 0)
    return -ns if sign else ns


def _to_dtype(series: pl.Series, dtype: pl.DataType) -> pl.Series | None:
    """``series`` (as the preview API sent it) in the local engine's ``dtype``, or None
    when it does not convert."""
    current = series.dtype
    if current == dtype:
        return None
    try:
        if isinstance(dtype, pl.Datetime):
            if current != pl.String:
                return None
            out = (
                series.replace("", None)
                .str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_unit="ns", time_zone="UTC", strict=False)
            )
            return out.cast(dtype)
        if isinstance(dtype, pl.Duration):
            ns = pl.Series(series.name, [_timespan_ns(v) for v in series.to_list()], dtype=pl.Int64)
            return ns.cast(pl.Duration("ns")).cast(dtype)
        if isinstance(dtype, pl.List | pl.Array | pl.Struct):
            if current != pl.String:
                return None
            return series.str.json_decode(dtype)
        if dtype.is_numeric() or dtype == pl.Boolean:
            if current == pl.String and dtype.is_numeric():
                return series.replace("", None).cast(dtype, strict=False)
            if current == pl.Null or current.is_numeric():
                return series.cast(dtype, strict=False)
            return None
        if dtype == pl.String and current == pl.Null:
            return series.cast(pl.String)
    except (pl.exceptions.PolarsError, ValueError, TypeError):
        return None
    return None


def typed_remote(frame: pl.DataFrame, schema: Any = None) -> pl.DataFrame:
    """Give a preview result the types the local engine gives the same query.

    The preview API answers JSON: times as ISO text, timespans as seconds (or Kusto's
    ``d.hh:mm:ss``), ``make_set``/``pack`` as JSON text, an all-null column as nulls.
    With ``schema`` (the local engine's result schema for the query, see
    :func:`query_schema`) every column it names is converted to that type; columns it cannot
    convert stay as sent. Without it, a String column whose every non-empty value is an
    ISO 8601 UTC time becomes ``Datetime("ns", "UTC")``.
    """
    fixes = []
    if schema is not None:
        for name, dtype in schema.items():
            if name in frame.columns:
                converted = _to_dtype(frame.get_column(name), dtype)
                if converted is not None:
                    fixes.append(converted.alias(name))
        return frame.with_columns(fixes) if fixes else frame
    for name, dtype in frame.schema.items():
        if dtype != pl.String or frame.height == 0:
            continue
        col = frame.get_column(name)
        filled = col.filter(col.is_not_null() & (col != ""))
        if filled.len() and filled.str.contains(_ISO_UTC).all():
            fixes.append(
                pl.when(pl.col(name) == "")
                .then(None)
                .otherwise(pl.col(name))
                .str.to_datetime(
                    "%Y-%m-%dT%H:%M:%S%.fZ", time_unit="ns", time_zone="UTC", strict=False
                )
                .alias(name)
            )
    return frame.with_columns(fixes) if fixes else frame


def query_schema(query: str, params: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """The local engine's result schema and ``RenderSpec`` for ``query``, found by running
    it on an empty ``Events`` table (cheap); ``(None, None)`` when it does not run there
    (e.g. another table)."""
    try:
        from psanalytics.query.kql import execute
        from psanalytics.schema import empty_frame

        result = execute(query, {"Events": empty_frame()}, params=params or None)
    except Exception:  # noqa: BLE001 - the remote accepted the query; types stay as sent
        return None, None
    return result.frame.schema, result.render


def _align(
    local: pl.DataFrame, remote: pl.DataFrame, common: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Bring remote columns to the local dtype where the API sends text (JSON, times,
    timespans); numbers compare by value anyway."""
    fixes = []
    for c in common:
        lt, rt = local.schema[c], remote.schema[c]
        if lt == rt or (lt.is_numeric() and rt.is_numeric()):
            continue
        converted = _to_dtype(remote.get_column(c), lt)
        if converted is not None:
            fixes.append(converted.alias(c))
    return local, (remote.with_columns(fixes) if fixes else remote)


def compare_frames(
    local: pl.DataFrame,
    remote: pl.DataFrame,
    *,
    query: str = "",
    local_elapsed_s: float = 0.0,
    remote_elapsed_s: float = 0.0,
    local_truncated: bool = False,
    remote_truncated: bool = False,
    local_source: str = "",
    remote_source: str = "",
) -> KqlComparison:
    """Compare two results as multisets of rows on their common columns."""
    common = [c for c in local.columns if c in remote.columns]
    local, remote = _align(local, remote, common)
    dtypes = {
        c: (str(local.schema[c]), str(remote.schema[c]))
        for c in common
        if local.schema[c] != remote.schema[c]
        and not (local.schema[c].is_numeric() and remote.schema[c].is_numeric())
    }
    a, b = _comparable(local, common), _comparable(remote, common)
    if common:
        a = a.with_columns(pl.int_range(pl.len()).over(common).alias("_dup"))
        b = b.with_columns(pl.int_range(pl.len()).over(common).alias("_dup"))
        keys = [*common, "_dup"]
        only_a = local.filter(a.join(b, on=keys, how="anti", nulls_equal=True).pipe(_mask(a, keys)))
        only_b = remote.filter(
            b.join(a, on=keys, how="anti", nulls_equal=True).pipe(_mask(b, keys))
        )
        same_order = a.drop("_dup").equals(b.drop("_dup")) if a.height == b.height else False
    else:
        only_a, only_b, same_order = local, remote, False
    return KqlComparison(
        query=query,
        local=local,
        remote=remote,
        local_elapsed_s=local_elapsed_s,
        remote_elapsed_s=remote_elapsed_s,
        local_truncated=local_truncated,
        remote_truncated=remote_truncated,
        columns_only_local=[c for c in local.columns if c not in remote.columns],
        columns_only_remote=[c for c in remote.columns if c not in local.columns],
        dtype_differences=dtypes,
        only_local=only_a,
        only_remote=only_b,
        same_order=same_order,
        local_source=local_source,
        remote_source=remote_source,
    )


def _mask(full: pl.DataFrame, keys: list[str]):  # noqa: ANN202 - small closure factory
    """Turn an anti-join result into a boolean mask over ``full``'s rows (keeps row order)."""

    def build(missing: pl.DataFrame) -> pl.Series:
        flagged = full.with_row_index("_row").join(
            missing.with_columns(pl.lit(True).alias("_hit")), on=keys, how="left", nulls_equal=True
        )
        return flagged.sort("_row")["_hit"].fill_null(False)

    return build


# --------------------------------------------------------------------------- params


def parse_param(text: str, namespace: dict[str, Any] | None = None) -> tuple[str, Any]:
    """``--param`` text -> (name, typed Python value); the engine injects it as a typed ``let``.

    ``k=42`` int, ``k=1.5`` float, ``k=true`` bool, ``k=2024-03-04T10:00:00Z`` datetime,
    ``k=1h``/``30m``/``7d``/``500ms`` timedelta, ``k=["a","b"]`` list (JSON), ``k='x'`` or
    ``k=x`` string; ``k`` alone takes the notebook variable ``k``.
    """
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not _IDENT.fullmatch(name):
        raise KqlMagicError(f"--param {text!r}: {name!r} is not a valid KQL name")
    if not sep:
        ns = namespace or {}
        if name not in ns:
            raise KqlMagicError(
                f"--param {name}: no variable {name!r} in the notebook; use --param {name}=VALUE"
            )
        return name, ns[name]
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return name, raw[1:-1]
    if raw.lower() in ("true", "false"):
        return name, raw.lower() == "true"
    if re.fullmatch(r"[+-]?\d+", raw):
        return name, int(raw)
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?", raw):
        return name, float(raw)
    if _TIMESPAN.fullmatch(raw):
        try:
            return name, timedelta(microseconds=_time.parse_duration(raw) / 1_000)
        except _time.TimeError:
            pass  # e.g. 12abc: a plain string
    if _DATE.fullmatch(raw):
        try:
            return name, _time.from_ns(_time.parse_instant(raw))
        except _time.TimeError:
            raise KqlMagicError(
                f"--param {text!r}: {raw!r} is not a valid ISO 8601 datetime"
            ) from None
    if raw.startswith("["):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise KqlMagicError(f"--param {text!r}: not a JSON list ({exc.msg})") from None
        return name, value
    return name, raw


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
        for ident in set(_IDENT.findall(query)):
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
        with pl.Config(tbl_rows=self.display_limit):
            body = run.frame._repr_html_()
        if not self.footer:
            return body
        return body + f"<div style='font-size:85%;color:#57606a'>{html.escape(run.footer())}</div>"

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
        if m := _BIND.match(line):
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


def _render_spec(query: str, params: dict[str, Any]) -> Any:
    """The RenderSpec of a query run remotely: the local engine runs it on an empty Events
    table (cheap) just to read its ``render`` operator; the data stays the remote's."""
    if "render" not in query:
        return None
    try:
        from psanalytics.query.kql import execute
        from psanalytics.schema import empty_frame

        return execute(query, {"Events": empty_frame()}, params=params or None).render
    except Exception:  # noqa: BLE001 - the remote accepted the query; no chart then
        return None


def _take_word(line: str, k: int) -> tuple[str, int]:
    """The shell-like word starting at ``k`` (quotes may hold spaces) and where it ends."""
    quote = ""
    m = k
    while m < len(line):
        ch = line[m]
        if ch == "\\" and quote != "'":
            m += 2
            continue
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch.isspace():
            break
        m += 1
    return line[k:m], m


def _split_options(line: str) -> tuple[str, str]:
    """Split ``--opt ... QUERY`` into the options text and the query text (kept verbatim).

    Options come first; the query starts at the first word that is neither an option nor
    an option's value. ``--local`` takes a value only when the next word is a plain name
    that is not followed by ``|`` (so ``%kql --local Events | take 1`` runs on the default
    frame), or with ``--local=FRAME``.
    """
    takes_value = {"--limit", "--param", "--out", "--scope", "--client"}
    i, n = 0, len(line)
    opts: list[str] = []
    while True:
        while i < n and line[i].isspace():
            i += 1
        if i >= n or not line.startswith("-", i):
            break
        word, i = _take_word(line, i)
        opts.append(word)
        key = word.split("=", 1)[0]
        if "=" in word or (key not in takes_value and key != "--local"):
            continue
        k = i
        while k < n and line[k].isspace():
            k += 1
        if k >= n:
            break
        value, end = _take_word(line, k)
        if key == "--local" and (
            not _IDENT.fullmatch(value) or line[end:].lstrip().startswith("|")
        ):
            continue
        opts.append(value)
        i = end
    return " ".join(opts), line[i:]


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
    from psanalytics.jupyter import tracebacks

    tracebacks.install(ipython)
    magic = KqlMagic(shell=ipython, parent=ipython)
    _apply_pyproject(magic)
    ipython.register_magics(magic)
    ipython.configurables.append(magic)
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
