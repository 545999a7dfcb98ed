"""Encoding a preview's result frame (any columns) as the API's JSON rows."""

from __future__ import annotations

import polars as pl

from psanalytics import schema
from psanalytics.wire import api_json

__all__ = ["encode_generic"]


def encode_generic(frame: pl.DataFrame) -> list[str]:
    """JSON object text per row for any frame (datetimes as 7-digit ``Z`` text; a String
    ``Payload`` column is embedded as JSON, as the API does)."""
    if frame.height == 0:
        return []
    if frame.schema == schema.EVENTS_SCHEMA:
        return api_json.api_json_lines(frame).to_list()
    exprs = []
    payload = "Payload" in frame.columns and frame.schema["Payload"] == pl.String
    for name, dtype in frame.schema.items():
        if payload and name == "Payload":
            continue
        col = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            if dtype.time_zone is None:
                col = col.dt.replace_time_zone("UTC")
            col = schema.format_time_expr(col.dt.cast_time_unit("ns"))
        elif isinstance(dtype, (pl.Date, pl.Time)):
            col = col.cast(pl.String)
        elif isinstance(dtype, pl.Duration):
            col = col.dt.total_microseconds().cast(pl.Float64) / 1e6
        elif dtype == pl.Object or dtype == pl.Decimal:
            col = col.cast(pl.String)
        exprs.append(col.alias(name))
    if not exprs:
        head = pl.Series(["{}"] * frame.height)
    else:
        head = frame.select(pl.struct(exprs).struct.json_encode().alias("j")).to_series()
    if payload:
        pl_text = frame.get_column("Payload").fill_null("null")
        joined = pl.select(
            pl.when(pl.lit(head) == "{}")
            .then('{"Payload":' + pl.lit(pl_text) + "}")
            .otherwise(pl.lit(head).str.head(-1) + ',"Payload":' + pl.lit(pl_text) + "}")
        ).to_series()
        return joined.to_list()
    return head.to_list()
