"""Tracking API bodies: the camelCase JSON ``api/v1.0/Track`` and ``TrackBulk`` take.

The one encoder of a canonical event into a Tracking body. :func:`tracking_json` builds
the JSON text of every event in one vectorised pass (the replayer's Tracking sink batches
those texts); :func:`tracking_bodies` is the same bodies as dicts (``ProfileStore.track``).

A body has, in this order: ``deviceId``, ``eventType``, ``value`` (always: the API
requires them), then ``trackId``, ``sessionId``, ``eventTime``, ``pageUri``,
``pageTitle``, ``scope``, ``remoteAddress`` when the event has them (an empty string is
left out, as a tracker leaves out what it does not know), ``user`` when the event has
an e-mail, a name or ``Info`` (``{"email", "name"}`` plus ``"info"``: the Info object),
and ``payload`` (the Payload JSON as an object) when there is one.

- ``trackId`` is the service's dedupe key: a repeat in the same scope within 72 hours is
  skipped, so a re-sent batch is not stored twice (events tracked without one are).
  The service dedupes on *arrival*, so a TrackId that repeats in the events sent (same
  scope, same first 64 characters; the source kept both, e.g. tracked more than 72 hours
  apart) would lose the later events: only its first event carries ``trackId``, the
  later ones are sent without one (kept, like any event without a TrackId).
- ``sessionId`` is a Tracking.Core 1.9+ body field.
- ``TrackId`` and ``SessionId`` travel; ``CountryCode`` and ``City`` do not (the service
  derives them from the address), nor ``Headers`` or the fields in ``Extras`` (the
  Tracking API has no place for them).
- A Payload that is not JSON text is sent as a JSON string, never dropped.
"""

from __future__ import annotations

from typing import Any

import orjson
import polars as pl

from psanalytics import schema
from psanalytics.wire import api_json
from psanalytics.wire.limits import TRACK_ID_CHARS

__all__ = ["TRACKING_KEYS", "repeated_track_ids", "tracking_bodies", "tracking_json"]

#: Body keys in the order :func:`tracking_json` writes them.
TRACKING_KEYS = ("deviceId", "eventType", "value", "trackId", "sessionId", "eventTime",
                 "pageUri", "pageTitle", "scope", "remoteAddress", "user", "payload")
_OPTIONAL = ("trackId", "sessionId", "eventTime", "pageUri", "pageTitle", "scope",
             "remoteAddress")
# A JSON-encoded string value never holds `,"key":null` (its quotes are escaped), so this
# removes exactly the optional keys the struct encoder wrote as null.
_NULL_KEYS = r',"(?:' + "|".join(_OPTIONAL) + r')":null'


def _present(col: pl.Expr) -> pl.Expr:
    """The text, or null when it is missing or empty."""
    return pl.when(col == "").then(None).otherwise(col)


_SENT_ID = "__trackId_sent"


def _first_track_id() -> pl.Expr:
    """TrackId, or null when empty or when an earlier row has the same dedupe key (scope,
    ``""`` meaning ``default``, and the first 64 characters): the service would skip it."""
    tid = pl.col("TrackId")
    scope = pl.col("Scope").fill_null("")
    key = pl.concat_str(pl.when(scope == "").then(pl.lit("default")).otherwise(scope),
                        pl.lit("\x00"), tid.str.slice(0, TRACK_ID_CHARS))
    return pl.when((tid == "") | ~key.is_first_distinct()).then(None).otherwise(tid)


def repeated_track_ids(frame: pl.DataFrame) -> int:
    """How many rows of ``frame`` repeat an earlier row's dedupe key (so
    :func:`tracking_json` sends them without ``trackId``)."""
    if frame.height == 0:
        return 0
    return int(frame.select((pl.col("TrackId") != "") & _first_track_id().is_null()).to_series().sum())


def _looks_json(col: pl.Expr) -> pl.Expr:
    """Text that starts and ends like a JSON object or array (cheap: not a parse)."""
    return (col.str.starts_with("{") & col.str.ends_with("}")) | (
        col.str.starts_with("[") & col.str.ends_with("]"))


def _as_json(text: str | None) -> str | None:
    """JSON text as it is; any other text as a JSON string (never dropped)."""
    if text is None:
        return None
    try:
        orjson.loads(text)
        return text
    except orjson.JSONDecodeError:
        return orjson.dumps(text).decode()


def _encode(frame: pl.DataFrame, ip: pl.Expr | None) -> pl.DataFrame:
    """Columns ``json`` (the body) and ``check`` (Payload or Info may not be JSON)."""
    if ip is not None:  # computed once (an eager select would evaluate it per use)
        frame = frame.with_columns(ip.alias("RemoteAddress"))
    user = pl.col("User")
    info = user.struct.field("Info")
    has_info = info.is_not_null() & (info != "")
    head = pl.struct(
        pl.col("DeviceId").fill_null("").alias("deviceId"),
        pl.col("EventType").fill_null("").alias("eventType"),
        pl.col("Value").fill_null("").alias("value"),
        pl.col(_SENT_ID).alias("trackId"),
        _present(pl.col("SessionId")).alias("sessionId"),
        schema.format_time_expr(pl.col("EventTime")).alias("eventTime"),
        _present(pl.col("PageUri")).alias("pageUri"),
        _present(pl.col("PageTitle")).alias("pageTitle"),
        _present(pl.col("Scope")).alias("scope"),
        _present(pl.col("RemoteAddress")).alias("remoteAddress"),
    ).struct.json_encode().str.replace_all(_NULL_KEYS, "").str.head(-1)
    email = user.struct.field("Email").fill_null("")
    name = user.struct.field("Name").fill_null("")
    user_part = (
        pl.when((email != "") | (name != "") | has_info)
        .then(pl.concat_str(
            pl.lit(',"user":'),
            pl.struct(email.alias("email"), name.alias("name")).struct.json_encode().str.head(-1),
            pl.when(has_info).then(',"info":' + info).otherwise(pl.lit("")),
            pl.lit("}"),
        ))
        .otherwise(pl.lit(""))
    )
    payload = pl.col("Payload")
    return frame.select(
        pl.concat_str(
            head, user_part,
            pl.when(payload.is_null()).then(pl.lit("")).otherwise(',"payload":' + payload),
            pl.lit("}"),
        ).alias("json"),
        ((payload.is_not_null() & ~_looks_json(payload))
         | (has_info & ~_looks_json(info))).alias("check"),
    )


def tracking_json(frame: pl.DataFrame, *, remote_address: pl.Expr | None = None) -> pl.Series:
    """One Tracking API body (JSON text) per row of a canonical ``frame``, in row order.

    ``remote_address`` replaces the ``RemoteAddress`` column (the replayer passes its
    IP-truncating expression). Vectorised: no Python per event, except for the rare
    Payload or Info that does not look like a JSON object or array (parsed one by one;
    one that is not JSON is sent as a JSON string).
    """
    # Which rows send their TrackId is decided on the whole frame (a repeat of an earlier
    # row's key is left out), before any row is re-encoded on its own below.
    frame = frame.with_columns(_first_track_id().alias(_SENT_ID))
    out = _encode(frame, remote_address)
    texts = out.get_column("json")
    odd = out.get_column("check").arg_true()
    if len(odd) == 0:
        return texts
    sub = frame[odd]
    user = sub.get_column("User").struct.unnest()
    sub = sub.with_columns(
        pl.Series("Payload", [_as_json(t) for t in sub.get_column("Payload").to_list()],
                  dtype=pl.String),
        user.with_columns(
            pl.Series("Info", [_as_json(t) or None for t in user.get_column("Info").to_list()],
                      dtype=pl.String)
        ).to_struct("User"),
    )
    return texts.scatter(odd, _encode(sub, remote_address).get_column("json"))


def tracking_bodies(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Canonical frame (or anything :func:`psanalytics.schema.normalize` reads) ->
    Tracking API bodies as dicts: :func:`tracking_json`, decoded."""
    df = schema.normalize(frame)
    texts = tracking_json(df)
    if texts.len() == 0:
        return []
    return orjson.loads(api_json.join_api_json(texts))
