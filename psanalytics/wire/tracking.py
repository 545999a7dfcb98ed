"""Tracking API bodies: the camelCase JSON ``api/v1.0/Track`` and ``TrackBulk`` take.

One home for the body a canonical event becomes (used by ``ProfileStore.track`` and the
replayer's Tracking sink).
"""

from __future__ import annotations

from typing import Any

import orjson
import polars as pl

from psanalytics import schema

__all__ = ["tracking_bodies"]


def tracking_bodies(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Canonical frame -> Tracking API bodies (camelCase; Payload decoded to an object)."""
    df = schema.normalize(frame)
    times = df.select(schema.format_time_expr(pl.col("EventTime"))).to_series().to_list()
    out = []
    for row, t in zip(df.iter_rows(named=True), times, strict=True):
        body: dict[str, Any] = {
            "deviceId": row["DeviceId"],
            "eventType": row["EventType"],
            "value": row["Value"],
        }
        if t:
            body["eventTime"] = t
        for src, dst in (("PageUri", "pageUri"), ("PageTitle", "pageTitle"), ("Scope", "scope"),
                         ("RemoteAddress", "remoteAddress")):
            if row[src]:
                body[dst] = row[src]
        user = row["User"] or {}
        if user.get("Email") or user.get("Name"):
            body["user"] = {"email": user.get("Email", ""), "name": user.get("Name", "")}
        if row["Payload"] is not None:
            try:
                body["payload"] = orjson.loads(row["Payload"])
            except orjson.JSONDecodeError:
                body["payload"] = row["Payload"]
        out.append(body)
    return out

