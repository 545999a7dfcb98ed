"""URLs as their paths, for charts and tables (Polars only: a table needs no Altair)."""

from __future__ import annotations

import polars as pl

__all__ = ["url_path", "url_paths"]

_URL = r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)"


def url_path(expr: pl.Expr, values: pl.Series | None = None) -> pl.Expr:
    """A URL's path (with its query), ``/`` for the site root: what tells pages apart in a
    chart or a table (the host is the same everywhere). When ``values`` holds URLs of
    several hosts, the host is kept for those whose path is not unique. An empty value
    (an event with no page) stays empty."""
    path = (
        pl.when(expr == "")
        .then(pl.lit(""))  # no page stays no page
        .otherwise(expr.str.replace(_URL, "").str.replace(r"^$", "/"))
    )
    if values is None:
        return path
    hosts = values.str.extract(_URL, 1).drop_nulls().unique()
    if hosts.len() <= 1:
        return path
    host_path = expr.str.replace(r"^[A-Za-z][A-Za-z0-9+.-]*://", "")
    return pl.when(path.is_duplicated()).then(host_path).otherwise(path)


def url_paths(values: pl.Series) -> pl.Series:
    """:func:`url_path` of each value of ``values`` (which may repeat: the host is kept only
    where different URLs share a path)."""
    unique = values.drop_nulls().unique()
    table = pl.DataFrame({"u": unique}).select("u", url_path(pl.col("u"), unique).alias("p"))
    return values.replace_strict(table["u"], table["p"], default=None, return_dtype=pl.String)
