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
    """Canonical frame -> Tracking API bodies (camelCase; Payload decoded to an object).

    ``trackId`` (the service's dedupe key: a re-send within 72 hours is skipped, so
    sending twice is safe) and ``sessionId`` (Tracking.Core 1.9+) are sent when the event
    has them; ``user.info`` when ``User.Info`` is there. Empty strings are left out.
    """
    df = schema.normalize(frame)
    times = df.select(schema.format_time_expr(pl.col("EventTime"))).to_series().to_list()
    out = []
    for row, t in zip(df.iter_rows(named=True), times, strict=True):
        body: dict[str, Any] = {}
        if row["TrackId"]:
            body["trackId"] = row["TrackId"]
        body |= {
            "deviceId": row["DeviceId"],
            "eventType": row["EventType"],
            "value": row["Value"],
        }
        if t:
            body["eventTime"] = t
        for src, dst in (("PageUri", "pageUri"), ("PageTitle", "pageTitle"), ("Scope", "scope"),
                         ("RemoteAddress", "remoteAddress"), ("SessionId", "sessionId")):
            if row[src]:
                body[dst] = row[src]
        user = row["User"] or {}
        if user.get("Email") or user.get("Name") or user.get("Info") is not None:
            body["user"] = {"email": user.get("Email", ""), "name": user.get("Name", "")}
            if user.get("Info") is not None:
                body["user"]["info"] = orjson.loads(user["Info"])
        if row["Payload"] is not None:
            try:
                body["payload"] = orjson.loads(row["Payload"])
            except orjson.JSONDecodeError:
                body["payload"] = row["Payload"]
        out.append(body)
    return out

