"""What ``%kql`` returns: a run (:class:`KqlRun`, with its footer), ``--compare``'s
:class:`KqlComparison` (the same query on two engines, compared like with like), and
preview results given the local engine's types (:func:`typed_remote`)."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from typing import Any

import polars as pl

__all__ = ["KqlComparison", "KqlRun", "compare_frames", "query_schema", "typed_remote"]


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
            out = series.replace("", None).str.to_datetime(
                "%Y-%m-%dT%H:%M:%S%.fZ", time_unit="ns", time_zone="UTC", strict=False
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
