"""Hand-built event streams for the sessions and journeys tests.

A module with a unique name (not conftest): ``from conftest import`` resolves to whichever
conftest.py was imported first when several test folders run together.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from psanalytics import schema

T0 = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)


def ev(
    device: str,
    t: datetime | timedelta | float,
    *,
    page: str = "https://shop.example/",
    event_type: str = "epiPageView",
    email: str = "",
    name: str = "",
    session_id: str = "",
    title: str = "",
    payload: str | None = None,
    track_id: str = "",
    ns: int = 0,
) -> dict:
    """One event; ``t`` is a datetime, or an offset from T0 (timedelta or seconds); add
    ``ns`` nanoseconds on top (for boundaries finer than a microsecond)."""
    if isinstance(t, int | float):
        t = T0 + timedelta(seconds=t)
    elif isinstance(t, timedelta):
        t = T0 + t
    t_ns = int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000 + ns
    return {
        "TrackId": track_id,
        "DeviceId": device,
        "EventType": event_type,
        "PageUri": page,
        "PageTitle": title,
        "SessionId": session_id,
        "EventTime": t,
        "_ns": t_ns,
        "User": {"Email": email, "Name": name},
        "Payload": payload,
        "Scope": "default",
        "CountryCode": "SE",
        "City": "Stockholm",
    }


def frame(events: list[dict]) -> pl.DataFrame:
    """Canonical frame in the given row order (normalize keeps order)."""
    df = schema.normalize([{k: v for k, v in e.items() if k != "_ns"} for e in events])
    # exact nanoseconds (a Python datetime stops at microseconds)
    return df.with_columns(
        pl.Series("EventTime", [e["_ns"] for e in events], dtype=pl.Int64).cast(pl.Datetime("ns", "UTC"))
    )
