"""Input resolution: any events source -> the canonical frame with input offsets, sessions
and visitor ids; consistent sampling."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import polars as pl

from psanalytics.replay._text import _USER_NAMESPACE, truncate_ip_expr
from psanalytics.replay.event_map import MappingError

__all__ = ["sample_mask"]


def _as_frame(events: Any) -> tuple[pl.DataFrame, pl.Series | None]:
    from psanalytics.schema import EVENTS_SCHEMA, normalize

    if isinstance(events, (str, Path)):
        from psanalytics.exports import read_events

        events = read_events(events)
    if isinstance(events, pl.LazyFrame):
        events = events.collect()
    extra = None
    if isinstance(events, pl.DataFrame) and "session_id" in events.columns:
        extra = events.get_column("session_id").cast(pl.String)
        events = events.drop("session_id")
    if isinstance(events, pl.DataFrame) and events.schema != EVENTS_SCHEMA:
        keep = [c for c in events.columns if c in EVENTS_SCHEMA.names() or c.startswith("User.")]
        if set(keep) == set(EVENTS_SCHEMA.names()):
            events = events.select(EVENTS_SCHEMA.names())
    return normalize(events), extra


def _resolve(
    events: Any,
    *,
    sessions: Any = None,
    visitor_id: str = "DeviceId",
    truncate_ips: bool = False,
) -> pl.DataFrame:
    """Canonical frame + ``_offset`` (input row), ``_sid`` (session) and ``_vid`` (visitor)."""
    frame, session_col = _as_frame(events)
    frame = frame.with_row_index("_offset")

    sid = _session_ids(frame, sessions, session_col)
    frame = frame.with_columns(
        (sid.fill_null("") if sid is not None else pl.lit("", pl.String)).alias("_sid")
    )

    frame, vid = _visitor_ids(frame, visitor_id)
    frame = frame.with_columns(vid.alias("_vid"))
    if frame.height and (frame.get_column("_vid") == "").any():
        bad = int(frame.select((pl.col("_vid") == "").arg_max()).item())
        raise MappingError(f"event at row {bad} has no visitor id (empty DeviceId)")

    if truncate_ips:
        frame = frame.with_columns(truncate_ip_expr(pl.col("RemoteAddress")).alias("RemoteAddress"))

    return frame


def _session_ids(frame: pl.DataFrame, sessions: Any, session_col: pl.Series | None) -> pl.Series | None:
    """Each event's session id (by ``sessions=``), or None for none."""
    if sessions is not None and hasattr(sessions, "events") and hasattr(sessions, "sessions"):
        sessions = sessions.events  # a psanalytics.sessions.Sessionized result
    if sessions is None:
        sid = session_col
    elif sessions is True or (isinstance(sessions, str) and sessions == "sessionize"):
        if session_col is not None:
            sid = session_col
        else:
            from psanalytics.sessions import sessionize

            sid = sessionize(frame.drop("_offset")).events.get_column("session_id")
    elif isinstance(sessions, str):
        if sessions == "session_id" and session_col is not None:
            sid = session_col
        elif sessions in frame.columns:
            sid = frame.get_column(sessions).cast(pl.String)
        else:
            raise MappingError(f"sessions={sessions!r} names no column of the events frame")
    elif isinstance(sessions, pl.DataFrame | pl.LazyFrame):
        s = sessions.collect() if isinstance(sessions, pl.LazyFrame) else sessions
        missing = {"DeviceId", "EventTime", "session_id"} - set(s.columns)
        if missing:
            raise MappingError(
                f"sessions frame lacks columns {sorted(missing)}; expected DeviceId, EventTime, "
                "session_id (as psanalytics.sessionize(...).events has them)"
            )
        s = s.select(
            pl.col("DeviceId").cast(pl.String),
            pl.col("EventTime").cast(frame.schema["EventTime"]),
            pl.col("session_id").cast(pl.String),
        ).unique(["DeviceId", "EventTime"], keep="first")
        sid = (
            frame.select("_offset", "DeviceId", "EventTime")
            .join(s, on=["DeviceId", "EventTime"], how="left")
            .sort("_offset")
            .get_column("session_id")
        )
    else:
        raise MappingError(
            "sessions must be None, True ('sessionize'), a column name, a Sessionized result, or a "
            "frame with DeviceId, EventTime, session_id"
        )
    return sid


def _visitor_ids(frame: pl.DataFrame, visitor_id: str) -> tuple[pl.DataFrame, pl.Expr]:
    """The expression for each event's visitor id (by ``visitor_id=``), and the frame it
    reads (a stitched user id is joined in)."""
    if visitor_id == "DeviceId":
        vid = pl.col("DeviceId")
    elif visitor_id in ("user", "User", "stitched"):
        # Stitch (psanalytics.sessions.stitch): a device maps to its latest non-empty
        # User.Email; the id sent is a uuid5 of that address (no raw PII leaves).
        from psanalytics.sessions import stitch

        users = stitch(frame.drop("_offset")).select("device_id", "user_email")
        uniq = users.get_column("user_email").unique().to_list()
        ids = dict(zip(uniq, (str(uuid.uuid5(_USER_NAMESPACE, e)) for e in uniq), strict=True))
        users = users.select(
            pl.col("device_id").alias("DeviceId"),
            pl.col("user_email").replace_strict(ids, default=None).alias("_uid"),
        )
        frame = frame.join(users, on="DeviceId", how="left").sort("_offset")
        vid = pl.coalesce(pl.col("_uid"), pl.col("DeviceId"))
    elif visitor_id in frame.columns:
        vid = pl.col(visitor_id).cast(pl.String)
    else:
        raise MappingError(f"visitor_id={visitor_id!r}: use 'DeviceId', 'user', or a column name")
    return frame, vid


def sample_mask(ids: pl.Series, fraction: float) -> pl.Series:
    """Consistent sampling: True for ids whose SHA-1 falls in the first ``fraction`` of
    the hash space (the same ids on every run and machine)."""
    cut = int(fraction * 2**32)
    uniq = ids.unique().to_list()
    keep = [v for v in uniq if int.from_bytes(hashlib.sha1(v.encode()).digest()[:4], "big") < cut]
    return ids.is_in(keep)
