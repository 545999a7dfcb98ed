"""Stitching: each device's latest non-empty ``User.Email``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from psanalytics.sessions._rules import SessionizeError, _check_columns, _collect


def _device_users(frame: pl.DataFrame) -> pl.DataFrame:
    """The stitching rule, written once: from rows ``dev``, ``row`` (input order), ``t``,
    ``email`` (raw ``User.Email``) and ``name``, one row per ``dev`` with an e-mail:
    ``user_email`` (the latest non-empty e-mail, trimmed and lower-cased; ties in time go to
    the later row), ``user_name`` (the name on that event, null when empty), ``n_emails``
    (distinct e-mails, UInt32), ``first_identified_at`` and ``last_identified_at``."""
    return (
        frame.filter(pl.col("email").str.len_bytes() > 0)  # cheap: most events are anonymous
        .with_columns(pl.col("email").str.strip_chars().str.to_lowercase())
        .filter(pl.col("email") != "")
        .sort(["t", "row"])
        .group_by("dev")
        .agg(
            pl.col("email").last().alias("user_email"),
            pl.col("name")
            .last()
            .fill_null("")
            .str.strip_chars()
            .replace("", None)
            .alias("user_name"),
            pl.col("email").n_unique().cast(pl.UInt32).alias("n_emails"),
            pl.col("t").min().alias("first_identified_at"),
            pl.col("t").max().alias("last_identified_at"),
        )
    )


def _stitched(
    df: pl.DataFrame, time_col: str, ev_key: np.ndarray, dev_ord: np.ndarray
) -> list[pl.Series]:
    """``user_email``, ``user_name``, ``n_user_emails`` per session (output order), with the
    rule of :func:`stitch` (:func:`_device_users`), computed on the few rows that carry an
    e-mail, keyed by the device ordinal of each row's session (no string join)."""
    ns = dev_ord.size
    user = df.get_column("User")
    email = user.struct.field("Email")
    rows = (email.str.len_bytes() > 0).fill_null(False).arg_true()
    n_dev = int(dev_ord.max()) + 1 if ns else 0
    if rows.len() == 0 or ns == 0:
        return [
            pl.repeat(None, ns, dtype=pl.String, eager=True).alias("user_email"),
            pl.repeat(None, ns, dtype=pl.String, eager=True).alias("user_name"),
            pl.Series("n_user_emails", np.zeros(ns, np.uint8)),
        ]
    r = rows.to_numpy()
    sub = _device_users(
        pl.DataFrame(
            {
                "dev": dev_ord[ev_key[r]],
                "row": r,
                "t": df.get_column(time_col).gather(rows),
                "email": email.gather(rows),
                "name": user.struct.field("Name").gather(rows),
            }
        )
    )
    dev_idx = sub.get_column("dev").cast(pl.UInt32)
    per_dev_email = pl.repeat(None, n_dev, dtype=pl.String, eager=True).scatter(
        dev_idx, sub.get_column("user_email")
    )
    per_dev_name = pl.repeat(None, n_dev, dtype=pl.String, eager=True).scatter(
        dev_idx, sub.get_column("user_name")
    )
    per_dev_n = np.zeros(n_dev, dtype=np.uint8)
    per_dev_n[dev_idx.to_numpy()] = np.minimum(sub.get_column("n_emails").to_numpy(), 255)
    take = pl.Series(dev_ord.astype(np.uint32))
    return [
        per_dev_email.gather(take).alias("user_email"),
        per_dev_name.gather(take).alias("user_name"),
        pl.Series("n_user_emails", per_dev_n[dev_ord]),
    ]


def stitch(
    events: pl.DataFrame | pl.LazyFrame,
    *,
    key: str | Sequence[str] = "DeviceId",
    time_col: str = "EventTime",
) -> pl.DataFrame:
    """Map each device to a user: the device's most recent non-empty ``User.Email``.

    E-mails are trimmed and lower-cased. Ties in time are decided by input order (the later
    row wins). Only devices with at least one e-mail appear.

    A ``LazyFrame`` (for example :func:`psanalytics.scan_events` over a large export) is
    read with Polars' streaming engine keeping only the rows that carry an e-mail, so memory
    follows the identified events, not the input.

    Returns:
        A frame with ``device_id``, ``user_email`` (latest), ``user_name`` (the ``User.Name``
        on that latest event, or null when empty), ``n_emails`` (distinct e-mails, UInt32),
        ``first_identified_at``, ``last_identified_at`` and ``is_shared`` (``n_emails > 1``),
        sorted by ``device_id``.
    """
    if isinstance(events, pl.LazyFrame):
        lf = events
        names = lf.collect_schema().names()
    elif isinstance(events, pl.DataFrame):
        lf = events.lazy()
        names = events.columns
    else:
        _collect(events)  # raises the usual error
        raise AssertionError  # pragma: no cover
    _check_columns(pl.DataFrame(schema=dict.fromkeys(names, pl.Null)), ["User", time_col], "stitch")
    keys = [key] if isinstance(key, str) else list(key)
    if not keys:
        raise SessionizeError("key must name at least one column")
    _check_columns(pl.DataFrame(schema=dict.fromkeys(names, pl.Null)), keys, "stitch(key=...)")
    dev = (
        pl.col(keys[0]).cast(pl.String)
        if len(keys) == 1
        else pl.concat_str(
            [pl.col(k).cast(pl.String).fill_null("") for k in keys], separator="\x1f"
        )
    )
    frame = (
        lf.select(
            dev.alias("dev"),
            pl.col(time_col).alias("t"),
            pl.col("User").struct.field("Email").alias("email"),
            pl.col("User").struct.field("Name").alias("name"),
        )
        .with_row_index("row")
        .filter(pl.col("email").str.len_bytes() > 0)
        .collect(engine="streaming")
    )
    return (
        _device_users(frame)
        .rename({"dev": "device_id"})
        .with_columns((pl.col("n_emails") > 1).alias("is_shared"))
        .sort("device_id")
    )
